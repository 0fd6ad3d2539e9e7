#!/usr/bin/env bash
# The churn run of docs/benchmarks.md: a mounted container untars and deletes FILES small files
# (new random contents each round, so nothing dedups across rounds) ROUNDS times; the store's
# allocated size is printed after each untar and each rm (no gc), after IDLE seconds idle, and
# after `tessera gc`. Needs root and FUSE. Stops its daemon and unmounts on exit.
#   scripts/bench-churn.sh            # 10 rounds of 20000 files, 30 s idle
#   ROUNDS=3 FILES=5000 IDLE=10 scripts/bench-churn.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-10}
files=${FILES:-20000}
idle=${IDLE:-30}
bin=${TESSERA:-target/release/tessera}
[ -x "$bin" ] || cargo build --release --locked -p tessera-tools --bin tessera
work=$(mktemp -d /var/tmp/tessera-churn.XXXXXX)
export TESSERA_STORE=$work/store
mnt=$work/mnt
cleanup() {
  "$bin" umount "$mnt" >/dev/null 2>&1 || umount -l "$mnt" 2>/dev/null || true
  "$bin" daemon stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A tar of $files files of 1-8 KiB in 100 directories, with contents seeded by the round.
make_tar() {
  rm -rf "$work/src" && mkdir "$work/src"
  python3 - "$work/src" "$files" "$1" <<'PY'
import os, random, sys
root, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
for i in range(n):
    d = os.path.join(root, f"d{i % 100}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 8192)))
PY
  tar -C "$work/src" -cf "$work/files.tar" .
}
mkdir -p "$work/base" "$mnt"
echo base > "$work/base/README"
"$bin" init >/dev/null
"$bin" import --name base "$work/base" >/dev/null
"$bin" create --from base c >/dev/null
"$bin" mount c "$mnt"

usage() { du -sB1 "$TESSERA_STORE" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "| step | store size (MiB) |"
echo "|---|---|"
echo "| start | $(mib "$(usage)") |"
for round in $(seq 1 "$rounds"); do
  make_tar "$round"
  mkdir "$mnt/tree"
  tar -C "$mnt/tree" -xf "$work/files.tar"
  sleep 3 # the daemon flushes within 2 s (the host's sync does not reach it)
  peak=$(usage)
  rm -rf "$mnt/tree"
  sleep 3 # the daemon flushes within 2 s (the host's sync does not reach it)
  echo "| round $round: after untar / after rm | $(mib "$peak") / $(mib "$(usage)") |"
done
sleep "$idle"
echo "| after ${idle} s idle | $(mib "$(usage)") |"
"$bin" gc >/dev/null
echo "| after tessera gc | $(mib "$(usage)") |"
