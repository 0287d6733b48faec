#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (unit and integration, with real containerd,
# registry and FUSE where a test needs them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent lint
npx vitest run "$@"
