#!/usr/bin/env bash
# The main job, end to end on this machine: set up, build a sample layer from files on this machine,
# convert it to eStargz, and show what a lazy reader sees: the TOC, one file read through its chunks,
# and how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

work=$(mktemp -d /tmp/lazypull-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
lazypull() { node bin/lazypull.js "$@"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2fs", b - a }'; }

echo "== building a sample layer from /usr/share/common-licenses and /usr/lib/python3.11"
tar -C / --sort=name --numeric-owner --format=pax -cf "$work/layer.tar" usr/share/common-licenses usr/lib/python3.11 2>/dev/null
echo "   $(du -h "$work/layer.tar" | cut -f1) uncompressed, $(tar -tf "$work/layer.tar" | wc -l) entries"

echo "== lazypull convert-layer layer.tar layer.esgz"
t=$(now)
lazypull convert-layer "$work/layer.tar" "$work/layer.esgz" > "$work/result.json"
echo "   done in $(elapsed "$t"):"
sed 's/^/   /' "$work/result.json"

echo "== lazypull toc layer.esgz (first entries)"
lazypull toc "$work/layer.esgz" > "$work/toc.json"
head -n 40 "$work/toc.json" | sed 's/^/   /'
echo "   ..."
echo "   $(grep -c '"name"' "$work/toc.json") TOC entries, TOC digest $(lazypull toc-digest "$work/layer.esgz")"

echo "== lazypull cat layer.esgz usr/share/common-licenses/Apache-2.0 (verified chunk read)"
t=$(now)
lazypull cat "$work/layer.esgz" usr/share/common-licenses/Apache-2.0 > "$work/Apache-2.0"
echo "   read and verified in $(elapsed "$t"); identical to the original: $(cmp -s "$work/Apache-2.0" /usr/share/common-licenses/Apache-2.0 && echo yes || echo NO)"
head -n 5 "$work/Apache-2.0" | sed 's/^/   /'
