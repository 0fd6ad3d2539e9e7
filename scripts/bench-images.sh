#!/usr/bin/env bash
# The image benchmarks of the OCI/stats issue, on real data:
#  1. two related Debian root filesystems (debootstrap --variant=minbase, and the same with a
#     few more packages), each packed as a one-layer OCI image with umoci, imported into a fresh
#     store: import throughput, and the bytes stored against the bytes that are unique across
#     both images at the store's block size (`tessera analyze`, which reads without importing);
#  2. `tessera stats` on a store holding 100,000 files;
#  3. compression: the same two images, and 1 GiB of incompressible data, imported into a
#     store made with `--compression none` and one made with `--compression zstd:3`, side by
#     side: stored bytes, import throughput, and a cold sequential read of every file through
#     a mount (caches dropped, daemon restarted).
# Needs root, network access to the Debian mirror of /etc/apt, and a release build:
#   cargo build --release -p tessera-tools && scripts/bench-images.sh
# WORK (default /var/tmp/tessera-images) keeps the root filesystems between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
TESSERA=${TESSERA:-$PWD/target/release/tessera}
WORK=${WORK:-/var/tmp/tessera-images}
SUITE=${SUITE:-bookworm}
EXTRA=${EXTRA:-python3-minimal,curl,ca-certificates,less}
FILES=${FILES:-100000}
# SECTIONS: which of 1, 2, 3 to run (default all).
SECTIONS=${SECTIONS:-123}
# COMPRESSIONS: the stores section 3 compares (`init --compression` values).
COMPRESSIONS=${COMPRESSIONS:-none zstd:3}

for tool in debootstrap umoci python3; do
    command -v "$tool" > /dev/null || { echo "bench-images: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
[ -x "$TESSERA" ] || { echo "bench-images: no $TESSERA (cargo build --release -p tessera-tools)" >&2; exit 1; }
mkdir -p "$WORK"

now() { date +%s.%N; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r)"
echo "work dir: $WORK on $(df -T "$WORK" | awk 'NR==2 {print $2" ("$1")"}')"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tessera: $("$TESSERA" --version)"
echo

# 1. Two related root filesystems as OCI images.
for variant in a b; do
    rootfs=$WORK/rootfs-$variant
    if [ ! -e "$rootfs/.complete" ]; then
        rm -rf "$rootfs"
        include=()
        [ "$variant" = b ] && include=(--include="$EXTRA")
        echo "debootstrap $variant (${include[*]:-minbase only})..."
        debootstrap --variant=minbase "${include[@]}" "$SUITE" "$rootfs" > "$WORK/debootstrap-$variant.log" 2>&1 \
            || { tail -20 "$WORK/debootstrap-$variant.log" >&2; exit 1; }
        touch "$rootfs/.complete"
    fi
done
oci=$WORK/oci
if [ ! -e "$oci/.complete" ]; then
    rm -rf "$oci" "$WORK/bundle"
    umoci init --layout "$oci"
    for variant in a b; do
        umoci new --image "$oci:$variant"
        umoci unpack --image "$oci:$variant" "$WORK/bundle"
        cp -a "$WORK/rootfs-$variant/." "$WORK/bundle/rootfs/"
        rm -f "$WORK/bundle/rootfs/.complete"
        umoci repack --image "$oci:$variant" "$WORK/bundle"
        rm -rf "$WORK/bundle"
    done
    umoci gc --layout "$oci"
    touch "$oci/.complete"
fi

store=$WORK/store
rm -rf "$store"
export TESSERA_STORE=$store
if [[ $SECTIONS == *1* ]]; then
"$TESSERA" init > /dev/null
block_size=$("$TESSERA" stats --json | json "d['block_size']")
sync
echo 3 > /proc/sys/vm/drop_caches
echo "### import of two related root filesystems (OCI layouts packed by umoci, gzip layers; caches dropped first)"
printf '%-8s %12s %12s %10s %12s\n' image files_bytes seconds MB/s stored_total
for variant in a b; do
    start=$(now)
    "$TESSERA" import "$oci:$variant" --name "debian:$variant" > "$WORK/import-$variant.log"
    end=$(now)
    logical=$("$TESSERA" analyze "$oci:$variant" --block-sizes 64K --json | json "d['logical_bytes']")
    stored=$("$TESSERA" stats --json | json "d['store']['stored_block_bytes']")
    python3 -c "l=$logical; t=$end-$start; print(f'debian:$variant {l:>12} {t:>12.2f} {l/t/1e6:>10.0f} {$stored:>12}')"
done
analyze=$("$TESSERA" analyze "$oci:a" "$oci:b" --block-sizes "$block_size" --json)
unique=$(echo "$analyze" | json "d['block_sizes'][0]['unique_bytes']")
logical=$(echo "$analyze" | json "d['logical_bytes']")
stored=$("$TESSERA" stats --json | json "d['store']['stored_block_bytes']")
python3 - "$logical" "$unique" "$stored" "$block_size" <<'EOF'
import sys
logical, unique, stored, bs = map(int, sys.argv[1:])
print(f"sum of both images' file bytes: {logical}")
print(f"unique across both at {bs // 1024} KiB blocks (tessera analyze): {unique}")
print(f"stored block bytes after both imports (tessera stats): {stored}")
print(f"stored / unique: {stored / unique:.4f} (target: within 5%, i.e. <= 1.05)")
print(f"stored / sum of images: {stored / logical:.4f}")
EOF
echo
fi

# 2. stats on a store with many files.
if [[ $SECTIONS == *2* ]]; then
rm -rf "$store"
"$TESSERA" init > /dev/null
tree=$WORK/tree-$FILES
if [ ! -e "$tree/.complete" ]; then
    rm -rf "$tree"
    python3 - "$tree" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:03}")
    if i % 1000 == 0:
        os.makedirs(d)
    with open(os.path.join(d, f"f{i:06}"), "w") as f:
        f.write(f"file {i}\n" * (1 + i % 50))
EOF
    touch "$tree/.complete"
fi
"$TESSERA" import "$tree" --name "files:$FILES" > /dev/null
"$TESSERA" create many --from "files:$FILES" > /dev/null
counted=$("$TESSERA" stats --json | json "d['store']['files']")
echo "### tessera stats: the store holds an image of $FILES files, a container of it and both Debian images ($counted files counted over all views)"
for run in 1 2 3; do
    start=$(now)
    "$TESSERA" stats > /dev/null
    end=$(now)
    python3 -c "print(f'run $run: {$end-$start:.2f} s (target: under 2 s)')"
done
fi

# 3. Compression, side by side with an uncompressed store.
if [[ $SECTIONS == *3* ]]; then
noise=$WORK/noise
if [ ! -e "$noise/.complete" ]; then
    mkdir -p "$noise"
    head -c 1G /dev/urandom > "$noise/random.bin"
    touch "$noise/.complete"
fi
mnt=$WORK/mnt
mkdir -p "$mnt"
cold_read() { # cold_read IMAGE: seconds to read every file of IMAGE through a mount, caches cold
    "$TESSERA" create reader --from "$1" > /dev/null
    "$TESSERA" mount reader "$mnt" > /dev/null
    sync
    echo 3 > /proc/sys/vm/drop_caches
    local start end
    start=$(now)
    find "$mnt" -type f -print0 | xargs -0 -r cat > /dev/null
    end=$(now)
    "$TESSERA" umount "$mnt" > /dev/null
    "$TESSERA" rm reader > /dev/null
    python3 -c "print(f'{$end-$start:.2f}')"
}
echo "### compression: the two Debian images, then 1 GiB of random bytes, into a store of each kind"
echo "(import: caches dropped first; cold read: every file through a fresh mount, caches dropped)"
unique=$("$TESSERA" analyze "$oci:a" "$oci:b" --block-sizes 64K --json | json "d['block_sizes'][0]['unique_bytes']")
printf '%-10s %-8s %12s %10s %8s %14s %14s %12s\n' store data logical import_s MB/s stored_bytes stored/unique cold_read_s
for compression in $COMPRESSIONS; do
    rm -rf "$store"
    "$TESSERA" init --compression "$compression" > /dev/null
    before=0
    for data in debian random; do
        sync
        echo 3 > /proc/sys/vm/drop_caches
        start=$(now)
        if [ "$data" = debian ]; then
            "$TESSERA" import "$oci:a" --name "debian:a" > /dev/null
            "$TESSERA" import "$oci:b" --name "debian:b" > /dev/null
        else
            "$TESSERA" import "$noise" --name random > /dev/null
        fi
        end=$(now)
        if [ "$data" = debian ]; then
            logical=$("$TESSERA" analyze "$oci:a" "$oci:b" --block-sizes 64K --json | json "d['logical_bytes']")
            base=$unique
        else
            logical=$(stat -c %s "$noise/random.bin")
            base=$logical
        fi
        total=$("$TESSERA" stats --json | json "d['store']['stored_block_bytes']")
        stored=$((total - before))
        before=$total
        if [ "$data" = debian ]; then
            a=$(cold_read debian:a)
            b=$(cold_read debian:b)
            read_s=$(python3 -c "print(f'{$a + $b:.2f}')")
        else
            read_s=$(cold_read random)
        fi
        python3 -c "l=$logical; t=$end-$start; print(f'{\"$compression\":<10} {\"$data\":<8} {l:>12} {t:>10.2f} {l/t/1e6:>8.0f} {$stored:>14} {$stored/$base:>14.3f} {$read_s:>12}')"
    done
done
fi
rm -rf "$store"
echo "finished $(date -u '+%Y-%m-%d %H:%M UTC'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
