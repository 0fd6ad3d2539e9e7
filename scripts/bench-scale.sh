#!/usr/bin/env bash
# Node scale (issue 11): N mounts of one small image, each of which reads a file and writes
# one, and what serving them costs: Tessera's daemon (one process for every mount, plus its
# keeper), with four FUSE threads per mount (the default) and with one pool of FUSE workers
# (`--fuse-pool`), against fuse-overlayfs (one process per mount). Memory is PSS (shared pages split
# between the processes that map them) and RSS, summed over the processes; threads likewise.
# Needs root and FUSE; unmounts and stops everything it started on exit.
#   scripts/bench-scale.sh                 # 1, 100 and 1000 mounts
#   COUNTS="1 10" scripts/bench-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
counts=${COUNTS:-"1 100 1000"}
bin=${TESSERA:-target/release/tessera}
[ -x "$bin" ] || cargo build --release --locked -p tessera-tools --bin tessera
bin=$(realpath "$bin")
work=$(mktemp -d /var/tmp/tessera-scale.XXXXXX)
export TESSERA_STORE=$work/store
cleanup() {
  "$bin" daemon stop >/dev/null 2>&1 || true
  for m in $(awk -v w="$work" '$5 ~ "^"w { print $5 }' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  pkill -f "fuse-overlayfs.*$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The image: a few small files and one of 1 MiB.
mkdir -p "$work/image/etc" "$work/image/bin"
echo scale > "$work/image/etc/hostname"
head -c 1048576 /dev/urandom > "$work/image/bin/big"
for i in $(seq 1 50); do echo "file $i" > "$work/image/etc/f$i"; done

# kB of a field of /proc/PID/smaps_rollup or /proc/PID/status, summed over PIDS.
sum_field() {
  local file=$1 field=$2; shift 2
  local total=0 v
  for p in "$@"; do
    v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$p/$file" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
row() { # system, n, seconds, pids...
  local system=$1 n=$2 secs=$3; shift 3
  local pss rss threads
  pss=$(sum_field smaps_rollup Pss "$@")
  rss=$(sum_field status VmRSS "$@")
  threads=$(sum_field status Threads "$@")
  echo "| $system | $n | $# | $secs | $(mib "$pss") | $(mib "$rss") | $threads | $(mib $((pss / n))) |"
}
work_on() { # a mount point: read a file of the image, write one
  cat "$1/etc/hostname" "$1/bin/big" > /dev/null
  echo written > "$1/written"
}

echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| system | mounts | processes | seconds to mount all and touch each | PSS (MiB) | RSS (MiB) | threads | PSS per mount (MiB) |"
echo "|---|---|---|---|---|---|---|---|"
for n in $counts; do
  # Tessera: one store, N containers of one image, all mounted by one daemon.
  rm -rf "$TESSERA_STORE"
  "$bin" init >/dev/null
  "$bin" import --name img "$work/image" >/dev/null
  for i in $(seq 1 "$n"); do "$bin" create --from img "c$i" >/dev/null; done
  for mode in "" --fuse-pool; do
    rm -rf "$work/t"
    start=$(date +%s.%N)
    for i in $(seq 1 "$n"); do
      mkdir -p "$work/t/$i"
      # shellcheck disable=SC2086 # the flag is absent or one word
      "$bin" mount "c$i" "$work/t/$i" $mode >/dev/null
      work_on "$work/t/$i"
    done
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    status=$("$bin" daemon status --json)
    daemon=$(echo "$status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
    keeper=$(echo "$status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keeper"] or "")')
    row "tessera $mode" "$n" "$secs" "$daemon" $keeper
    "$bin" daemon stop >/dev/null
  done

  # fuse-overlayfs: one process per mount, the image directory as the lower layer.
  rm -rf "$work/f"
  start=$(date +%s.%N)
  for i in $(seq 1 "$n"); do
    mkdir -p "$work/f/$i/upper" "$work/f/$i/work" "$work/f/$i/mnt"
    fuse-overlayfs -o "lowerdir=$work/image,upperdir=$work/f/$i/upper,workdir=$work/f/$i/work" \
      "$work/f/$i/mnt" 2> >(grep -v "unknown argument ignored" >&2)
    work_on "$work/f/$i/mnt"
  done
  secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  # shellcheck disable=SC2046
  row fuse-overlayfs "$n" "$secs" $(pgrep -f "fuse-overlayfs.*$work/f/")
  for i in $(seq 1 "$n"); do umount "$work/f/$i/mnt"; done
done
