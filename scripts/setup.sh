#!/usr/bin/env bash
# Installs what lazypull needs on Debian 12 (system packages and npm dependencies) and builds it.
# Idempotent: a second run installs nothing and only rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  containerd runc
  docker-registry
  skopeo umoci
  libfuse2 fuse3
  stargz-snapshotter
  golang-github-containerd-containerd-dev
  zstd pigz tar attr time openssl
  flatbuffers-compiler
  build-essential python3
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  [[ "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "setup: building"
npm run --silent build
