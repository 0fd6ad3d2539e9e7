#!/usr/bin/env bash
# The remote benchmarks of issue 10, against a real S3 server on loopback (Ceph RGW started by
# scripts/s3-server.sh in its own state directory and ports, purged at the end):
#  1. lazy pull + mount + read of one 1 MiB file from a 2 GiB image: seconds, bytes fetched;
#  2. pushing a second image that shares most blocks with a pushed one: bytes of blocks sent
#     against the block bytes the first lacked (`tessera analyze`);
#  3. a cold sequential read of every file through a lazy mount (nothing fetched yet, caches
#     dropped) against the same read through a mount of a local store;
#  4. the metadata a lazy pull fetches against the image's size (a Debian root filesystem).
# Uses the two Debian OCI images scripts/bench-images.sh builds (run its section 1 first) and
# a release build:
#   cargo build --release -p tessera-tools && SECTIONS=1 scripts/bench-images.sh && scripts/bench-remote.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TESSERA=${TESSERA:-$PWD/target/release/tessera}
IMAGES=${IMAGES:-/var/tmp/tessera-images}
WORK=${WORK:-/var/tmp/tessera-bench-remote}
export TESSERA_RGW_DIR=$WORK/rgw TESSERA_RGW_PORT=${TESSERA_RGW_PORT:-17780}
export TESSERA_RGW_MON_PORT=${TESSERA_RGW_MON_PORT:-17700} TESSERA_RGW_OSD_BYTES=$((8 << 30))
oci=$IMAGES/oci

[ -x "$TESSERA" ] || { echo "bench-remote: no $TESSERA (cargo build --release -p tessera-tools)" >&2; exit 1; }
[ -e "$oci/.complete" ] || { echo "bench-remote: no $oci (SECTIONS=1 scripts/bench-images.sh)" >&2; exit 1; }

now() { date +%s.%N; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
mnt=$WORK/mnt
cleanup() {
    for store in "$WORK"/store-*; do
        [ -d "$store" ] && TESSERA_STORE=$store "$TESSERA" umount "$mnt" > /dev/null 2>&1 || true
    done
    mountpoint -q "$mnt" && umount -l "$mnt"
    scripts/s3-server.sh purge > /dev/null 2>&1 || true
    # The stores hold gigabytes: nothing is kept.
    rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK" "$mnt"
scripts/s3-server.sh start > /dev/null
eval "$(scripts/s3-server.sh env)"
url=s3://$TESSERA_S3_BUCKET/bench
at() { TESSERA_STORE=$WORK/store-$1 "$TESSERA" "${@:2}"; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# read_all STORE IMAGE: seconds to read every file of IMAGE through a fresh mount, caches cold.
read_all() {
    at "$1" create reader --from "$2" > /dev/null
    at "$1" mount reader "$mnt" > /dev/null
    cold
    local start end
    start=$(now)
    find "$mnt" -type f -print0 | xargs -0 -r cat > /dev/null
    end=$(now)
    at "$1" umount "$mnt" > /dev/null
    at "$1" rm reader > /dev/null
    python3 -c "print(f'{$end-$start:.2f}')"
}

# cpu_ticks COMM...: CPU time (user + system, clock ticks) of the processes of those names.
cpu_ticks() {
    local total=0 pid comm ticks
    for pid in /proc/[0-9]*; do
        comm=$(cat "$pid/comm" 2> /dev/null) || continue
        for want in "$@"; do
            if [ "$comm" = "$want" ]; then
                ticks=$(awk '{print $14 + $15}' "$pid/stat" 2> /dev/null) || ticks=0
                total=$((total + ticks))
            fi
        done
    done
    echo "$total"
}
daemon_comm=$(basename "$TESSERA" | cut -c1-15)
# busy_ticks: CPU time of the whole machine outside idle and iowait (all CPUs, clock ticks).
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tessera: $("$TESSERA" --version); S3 server: Ceph RGW $(radosgw --version | awk '{print $3}') on 127.0.0.1"
echo

# Host A: the two Debian images, and a 2 GiB image (eight random files of 256 MiB and one of
# 1 MiB).
at a init > /dev/null
at a import "$oci:a" --name debian:a > /dev/null
at a import "$oci:b" --name debian:b > /dev/null
big=$WORK/big
mkdir -p "$big"
for i in 1 2 3 4 5 6 7 8; do head -c 256M /dev/urandom > "$big/part$i.bin"; done
head -c 1M /dev/urandom > "$big/one.bin"
at a import "$big" --name big > /dev/null
rm -rf "$big"

echo "### 2. push of a second image sharing most blocks"
first=$(at a push debian:a "$url" --json)
second=$(at a push debian:b "$url" --json)
unique_a=$("$TESSERA" analyze "$oci:a" --block-sizes 64K --json | json "d['block_sizes'][0]['unique_bytes']")
unique_ab=$("$TESSERA" analyze "$oci:a" "$oci:b" --block-sizes 64K --json | json "d['block_sizes'][0]['unique_bytes']")
python3 - "$first" "$second" "$unique_a" "$unique_ab" <<'EOF'
import json, sys
first, second = json.loads(sys.argv[1]), json.loads(sys.argv[2])
unique_a, unique_ab = int(sys.argv[3]), int(sys.argv[4])
lacked = unique_ab - unique_a
up = second["uploaded"]["block_bytes"]
print(f"first push (debian:a): {first['uploaded']['block_bytes']} block bytes, {first['bytes_sent']} bytes sent")
print(f"second push (debian:b): {up} block bytes, {second['bytes_sent']} bytes sent")
print(f"block bytes debian:b has that debian:a lacks: {lacked}")
print(f"sent / lacked: {up / lacked:.3f} block bytes, {second['bytes_sent'] / lacked:.3f} all bytes (target <= 1.05)")
EOF
at a push big "$url" > /dev/null
echo

echo "### 1. lazy pull + mount + read of one 1 MiB file from the 2 GiB image"
at b init > /dev/null
cold
start=$(now)
pulled=$(at b pull "$url" big --lazy --json)
at b create c --from big > /dev/null
at b mount c "$mnt" > /dev/null
cat "$mnt/one.bin" > /dev/null
end=$(now)
status=$(at b daemon status --json)
at b umount "$mnt" > /dev/null
python3 - "$pulled" "$status" "$start" "$end" <<'EOF'
import json, sys
pulled, status = json.loads(sys.argv[1]), json.loads(sys.argv[2])
seconds = float(sys.argv[4]) - float(sys.argv[3])
meta, read = pulled["bytes_fetched"], status["remote"]["bytes_fetched"]
print(f"pull --lazy + create + mount + cat one.bin: {seconds:.2f} s (target <= 1 s)")
print(f"bytes fetched: metadata {meta} + reads {read} = {meta + read}; "
      f"target <= metadata + 1 MiB + 2 blocks = {meta + (1 << 20) + 2 * 65536}")
EOF
echo

echo "### 3. cold sequential read: lazy mount (nothing fetched yet) against a local store"
printf '%-10s %14s %14s %8s\n' image local_s lazy_s ratio
cpu=()
for image in debian:b big; do
    store=lazy-${image%%:*}
    at "$store" init > /dev/null
    at "$store" pull "$url" "$image" --lazy > /dev/null
    local_s=$(read_all a "$image")
    before=($(cpu_ticks radosgw) $(cpu_ticks ceph-osd) $(cpu_ticks "$daemon_comm") $(busy_ticks))
    lazy_s=$(read_all "$store" "$image")
    after=($(cpu_ticks radosgw) $(cpu_ticks ceph-osd) $(cpu_ticks "$daemon_comm") $(busy_ticks))
    python3 -c "print(f'{\"$image\":<10} {$local_s:>14.2f} {$lazy_s:>14.2f} {$local_s/$lazy_s:>8.2f}')"
    cpu+=("$image: CPU during the lazy read, in CPUs busy on average: radosgw $(python3 -c "print(f'{(${after[0]}-${before[0]})/$(getconf CLK_TCK)/$lazy_s:.2f}')"), ceph-osd $(python3 -c "print(f'{(${after[1]}-${before[1]})/$(getconf CLK_TCK)/$lazy_s:.2f}')"), tessera $(python3 -c "print(f'{(${after[2]}-${before[2]})/$(getconf CLK_TCK)/$lazy_s:.2f}')"), the whole machine $(python3 -c "print(f'{(${after[3]}-${before[3]})/$(getconf CLK_TCK)/$lazy_s:.2f}')") (of $(nproc))")
done
echo "(ratio: local seconds / lazy seconds; target >= 0.50)"
printf '%s\n' "${cpu[@]}"
echo

echo "### 4. metadata a lazy pull fetches"
at c init > /dev/null
pulled=$(at c pull "$url" debian:a --lazy --json)
logical=$("$TESSERA" analyze "$oci:a" --block-sizes 64K --json | json "d['logical_bytes']")
python3 -c "m=$(echo "$pulled" | json "d['bytes_fetched']"); print(f'debian:a: {m} bytes fetched for an image of {$logical} bytes: {100*m/$logical:.3f} % (target <= 1 %)')"
echo
echo "finished $(date -u '+%Y-%m-%d %H:%M UTC'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
