{
  "targets": [
    {
      "target_name": "signal_mask",
      "sources": ["signal_mask.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
