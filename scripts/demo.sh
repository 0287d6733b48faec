#!/usr/bin/env bash
# The main job, end to end on this machine: set up, start a local registry, a private containerd (its
# own config, socket and root; a system containerd is never touched) and lazypull; build a sample
# python image and convert it to eStargz; lazily pull and run it; print the time to first output and
# the bytes the registry served against the image size; then stop everything it started (by PID) and
# unmount what it mounted.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
bash scripts/setup.sh

work=$(mktemp -d /tmp/lpdemo.XXXXXX)
pids=()
cleanup() {
  set +e
  if [ -S "$work/containerd.sock" ]; then
    for task in $(ctr --address "$work/containerd.sock" -n demo tasks ls -q 2>/dev/null); do
      ctr --address "$work/containerd.sock" -n demo tasks kill -s SIGKILL "$task" >/dev/null 2>&1
      ctr --address "$work/containerd.sock" -n demo tasks delete --force "$task" >/dev/null 2>&1
    done
  fi
  # Newest first: containerd, then lazypull (it unmounts its layers on SIGTERM), then the registry.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null
    for _ in $(seq 50); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "${pids[i]}" 2>/dev/null
  done
  # Whatever is still mounted under the work dir (container rootfs, layers), deepest first.
  awk -v base="$work" '$5 == base || index($5, base "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r mountpoint; do umount "$mountpoint" 2>/dev/null || umount -l "$mountpoint"; done
  if awk -v base="$work" 'index($5, base "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    echo "demo: something is still mounted under $work; leaving it" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

lazypull() { node "$repo/bin/lazypull.js" "$@"; }
ctr_() { ctr --address "$work/containerd.sock" -n demo "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "demo: $2 did not start" >&2; return 1; }
# Bytes of response bodies the registry wrote, from its access log (combined format: status, then size).
registry_bytes() { awk '$9 ~ /^[0-9]+$/ && $10 ~ /^[0-9]+$/ { sum += $10 } END { print sum + 0 }' "$work/registry.log"; }

# A one-layer OCI image layout of DIR, tagged TAG: the tar as containerd would unpack it, gzipped.
oci_layout() {
  local dir=$1 layout=$2 tag=$3
  mkdir -p "$layout/blobs/sha256"
  tar -C "$dir" --sort=name --owner=0 --group=0 --numeric-owner -cf "$layout/layer.tar" .
  gzip -n -c "$layout/layer.tar" > "$layout/layer.tar.gz"
  python3 - "$layout" "$tag" <<'PY'
import hashlib, json, os, platform, sys
layout, tag = sys.argv[1], sys.argv[2]
def digest(data): return "sha256:" + hashlib.sha256(data).hexdigest()
def blob(data):
    d = digest(data)
    with open(os.path.join(layout, "blobs", "sha256", d[7:]), "wb") as f: f.write(data)
    return d
diff_id = digest(open(os.path.join(layout, "layer.tar"), "rb").read())
layer = open(os.path.join(layout, "layer.tar.gz"), "rb").read()
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
config = json.dumps({"architecture": arch, "os": "linux", "config": {"Env": ["PATH=/usr/bin:/bin"]}, "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(layer), "size": len(layer)}]}).encode()
index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(manifest), "size": len(manifest),
    "annotations": {"org.opencontainers.image.ref.name": tag}}]}
json.dump(index, open(os.path.join(layout, "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(layout, "oci-layout"), "w"))
PY
  rm "$layout/layer.tar" "$layout/layer.tar.gz"
}

echo "== starting a registry, lazypull and a private containerd in $work"
port=$(free_port)
mkdir -p "$work/registry"
cat > "$work/registry.yml" <<EOF
version: 0.1
log: { level: error, accesslog: { disabled: false } }
storage: { filesystem: { rootdirectory: $work/registry } }
http: { addr: 127.0.0.1:$port }
EOF
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
pids+=($!)
wait_for "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:$port/v2/\")'" registry

# Background fetch off, so the byte count below is what the container's reads cost.
cat > "$work/lazypull.toml" <<EOF
[fetch]
background = false
[registry]
hosts_dir = ""
EOF
node "$repo/bin/lazypull.js" serve --config "$work/lazypull.toml" --root "$work/lazypull" --address "$work/lazypull.sock" > "$work/lazypull.log" 2>&1 &
pids+=($!)
wait_for "test -S $work/lazypull.sock" "lazypull serve"

cat > "$work/containerd.toml" <<EOF
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$work/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/containerd/opt"
[proxy_plugins]
  [proxy_plugins.lazypull]
    type = "snapshot"
    address = "$work/lazypull.sock"
EOF
containerd --config "$work/containerd.toml" > "$work/containerd.log" 2>&1 &
pids+=($!)
wait_for "ctr --address $work/containerd.sock version" containerd

echo "== building a sample image: python 3.11 with its standard library (from this machine's files)"
stage="$work/rootfs"
mkdir -p "$stage"
files=(/usr/bin/python3.11 $(ldd /usr/bin/python3.11 | awk '/\// { print ($3 ~ /^\//) ? $3 : $1 }'))
for file in "${files[@]}"; do install -D "$(readlink -f "$file")" "$stage$file"; done
ln -s python3.11 "$stage/usr/bin/python3"
tar -C / -cf - usr/lib/python3.11 2>/dev/null | tar -C "$stage" -xf -
oci_layout "$stage" "$work/oci" plain
ref="127.0.0.1:$port/demo/python:estargz"
t=$(now)
lazypull convert "oci:$work/oci:plain" "$ref" > "$work/convert.log"
echo "   converted to eStargz and pushed as $ref in $(since "$t" "$(now)") s"

echo "== lazypull rpull $ref, then ctr run ... python3 -c 'print(...)'"
served_before=$(registry_bytes)
start=$(now)
lazypull rpull --daemon "$work/lazypull.sock" --address "$work/containerd.sock" --namespace demo "$ref" | sed 's/^/   /'
first_output=""
while IFS= read -r line; do
  [ -z "$first_output" ] && first_output=$(now)
  echo "   container: $line"
done < <(ctr_ run --rm --snapshotter lazypull "$ref" demo python3 -c 'import json, sys; print("hello from a lazily pulled python", sys.version.split()[0]); print(json.dumps({"lazy": True}))')
served=$(( $(registry_bytes) - served_before ))

echo "== lazypull status"
lazypull status --address "$work/lazypull.sock" | sed 's/^/   /'
image_bytes=$(lazypull inspect "$ref" --json | python3 -c 'import json, sys; print(sum(l["size"] for l in json.load(sys.stdin)["image"]["manifest"]["layers"]))')

echo "== result"
echo "   time to first output: $(since "$start" "${first_output:-$(now)}") s (pull + container start + python's first print)"
if [ "$image_bytes" -gt 0 ]; then
  echo "   registry served $(mib "$served") for an image of $(mib "$image_bytes") ($(awk -v a="$served" -v b="$image_bytes" 'BEGIN { printf "%.1f", 100 * a / b }')%)"
else
  echo "   registry served $(mib "$served")"
fi
echo "   everything this demo started is stopped and unmounted on exit (logs were in $work)"
