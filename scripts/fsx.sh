#!/usr/bin/env bash
# fsx (fstests' ltp/fsx.c) on Tessera: N operations (default 1,000,000) with seed 42 on a
# file of a writeback-cache mount, of a --write-through mount, and of a plain directory of
# the host file system, one after the other; then `tessera fsck --verify-data`. fsx probes
# each operation (mapped reads/writes, fallocate, punch hole, zero range, collapse/insert
# range, copy/clone/dedupe range) and turns off what the file system refuses, saying so.
# Needs root, FUSE, and an fsx binary (no network here to fetch fstests: build it from a
# checkout of fstests, `gcc -O2 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Iinclude -Isrc
# -include linux/fs.h -o fsx ltp/fsx.c` with a config.h defining the HAVE_* macros).
#   FSX=/path/to/fsx scripts/fsx.sh          # 1M ops each (about 2 minutes per run here)
#   FSX=... OPS=100000 scripts/fsx.sh
# Exits non-zero when a run or fsck fails; stops its daemon and unmounts on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
fsx=${FSX:?set FSX to an fsx binary (see the comment at the top)}
ops=${OPS:-1000000}
bin=${TESSERA:-target/release/tessera}
[ -x "$bin" ] || cargo build --release --locked -p tessera-tools --bin tessera
work=$(mktemp -d /var/tmp/tessera-fsx.XXXXXX)
export TESSERA_STORE=$work/store
cleanup() {
  for m in "$work/writeback" "$work/write-through"; do
    "$bin" umount "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null || true
  done
  "$bin" daemon stop >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/image" "$work/writeback" "$work/write-through" "$work/host"
echo x >"$work/image/x"
"$bin" init >/dev/null
"$bin" import "$work/image" --name img >/dev/null
"$bin" create wb --from img >/dev/null
"$bin" create wt --from img >/dev/null
"$bin" mount wb "$work/writeback" >/dev/null
"$bin" mount wt "$work/write-through" --write-through >/dev/null

failed=0
printf '| run | ops | wall s | result | turned off by its probe |\n|---|---|---|---|---|\n' >"$work/table"
for run in writeback write-through host; do
  log=$work/logs/$run
  mkdir -p "$log"
  start=$(date +%s.%N)
  if "$fsx" -S 42 -N "$ops" -p 100000 -P "$log" "$work/$run/fsxfile" >"$log/out.txt" 2>&1; then
    result=clean
  else
    result="FAILED (see $log/out.txt)"
    failed=1
    tail -30 "$log/out.txt" >&2
  fi
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  off=$(sed -nE 's/.*does not support (fallocate mode )?(.*), disabling!/\2/p; s/.*: (.*) need.*disabling!/\1/p' "$log/out.txt" | paste -sd, - || true)
  printf '| %s | %s | %.1f | %s | %s |\n' "$run" "$ops" "$wall" "$result" "${off:-none}" >>"$work/table"
done
for m in "$work/writeback" "$work/write-through"; do "$bin" umount "$m" >/dev/null; done
if "$bin" fsck --verify-data >"$work/fsck.txt" 2>&1; then fsck=clean; else fsck=FAILED; failed=1; fi

echo "fsx -S 42 -N $ops, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r), repo at $(git rev-parse --short HEAD 2>/dev/null || echo "?"), $bin"
cat "$work/table"
echo "tessera fsck --verify-data: $fsck ($(tail -1 "$work/fsck.txt"))"
exit $failed
