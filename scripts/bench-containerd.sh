#!/usr/bin/env bash
# The containerd benchmark of the snapshotter issue: `ctr images import` and the first `ctr run`
# of a large image with the `tessera` snapshotter (a proxy plugin served by
# `tessera snapshotter`) against containerd's built-in `overlayfs` snapshotter, side by side in
# one private containerd (scripts/containerd.sh), each snapshotter in a ctr namespace of its own:
#  1. two OCI images built here with umoci (no registry needed), one layer each: `a` is
#     busybox-static, a few small files and one 1 GiB file of incompressible data
#     (/data/big.bin); `b`, built independently (its own layer, so overlayfs cannot share it),
#     is the same except 8 MiB of big.bin changed and one extra small file;
#  2. time of `ctr images import` of both (unpacked into the snapshotter; the compressed blobs
#     are put into containerd's content store beforehand, untimed, in a namespace of their own,
#     so that neither import pays for them and the other not);
#  3. disk the snapshotter uses for both images (`du -sbx` of its directory: overlayfs's
#     snapshot directory, tessera's store with the snapshotter's state) against the bytes
#     unique across the two images (`tessera analyze` at the store's block size);
#  4. `ctr run --rm IMAGE_A ID /bin/echo hello` (caches dropped), three times: the median of
#     the seconds from start to the first line of output;
#  5. disk growth after a container changed 1 byte of /data/big.bin in place (measured while
#     the stopped container and its snapshot still exist);
#  6. what importing the layer tars itself would cost a snapshotter: `tessera import` of the
#     same archive into a store of its own (caches dropped).
# Targets: both images <= 1.1x their unique bytes; the 1-byte edit adds <= 2 blocks + 1 MiB;
# the first run <= 1.2x the overlayfs snapshotter's.
# Needs root, containerd, ctr, runc, umoci, busybox (static), openssl, python3 and a release
# build (pass another binary with TESSERA=...):
#   cargo build --release -p tessera-tools && scripts/bench-containerd.sh
# WORK (default /var/tmp/bench-containerd) holds images, archive, containerd and store; it is
# removed at the end unless KEEP=1. Everything started is stopped, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
TESSERA=${TESSERA:-$(command -v tessera || echo "$REPO/target/release/tessera")}
WORK=${WORK:-/var/tmp/bench-containerd}
KEEP=${KEEP:-0}
SEED=${SEED:-tessera-bench}

for tool in containerd ctr runc umoci busybox openssl python3; do
    command -v "$tool" > /dev/null || { echo "bench-containerd: $tool is missing (scripts/setup.sh)" >&2; exit 1; }
done
[ -x "$TESSERA" ] || { echo "bench-containerd: no $TESSERA (cargo build --release -p tessera-tools)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "bench-containerd: needs root (mounts, containerd, drop_caches)" >&2; exit 1; }
TESSERA=$(readlink -f "$TESSERA")

now() { date +%s.%N; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
bg() { nice -n 10 "$@"; }

ctd=$WORK/ctd
store=$WORK/store
oci=$WORK/oci
archive=$WORK/images.tar
ctr=(ctr -a "$ctd/containerd.sock")
tes() { "$TESSERA" --store "$store" "$@"; }
snap_pid=
declare -A NS=([tessera]=bench-tessera [overlayfs]=bench-overlay)
CONTENT_NS=bench-content

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -S "$ctd/containerd.sock" ] && [ -f "$ctd/containerd.pid" ]; then
        for ns in "${NS[@]}" "$CONTENT_NS"; do
            for task in $("${ctr[@]}" -n "$ns" tasks ls -q 2> /dev/null); do
                "${ctr[@]}" -n "$ns" tasks kill -s SIGKILL "$task" > /dev/null 2>&1
                "${ctr[@]}" -n "$ns" tasks delete -f "$task" > /dev/null 2>&1
            done
            for c in $("${ctr[@]}" -n "$ns" containers ls -q 2> /dev/null); do
                "${ctr[@]}" -n "$ns" containers rm "$c" > /dev/null 2>&1
            done
            for image in $("${ctr[@]}" -n "$ns" images ls -q 2> /dev/null); do
                "${ctr[@]}" -n "$ns" images rm --sync "$image" > /dev/null 2>&1
            done
        done
        # containerd's garbage collection removes the tessera snapshots (and their mounts).
        for _ in $(seq 1 100); do
            left=$("${ctr[@]}" -n "${NS[tessera]}" snapshots --snapshotter tessera ls 2> /dev/null | tail -n +2)
            [ -z "$left" ] && break
            sleep 0.2
        done
    fi
    scripts/containerd.sh stop "$ctd" > /dev/null 2>&1
    if [ -n "$snap_pid" ] && kill -0 "$snap_pid" 2> /dev/null; then
        kill -TERM "$snap_pid"
        for _ in $(seq 1 300); do kill -0 "$snap_pid" 2> /dev/null || break; sleep 0.1; done
        kill -0 "$snap_pid" 2> /dev/null && kill -KILL "$snap_pid"
        wait "$snap_pid" 2> /dev/null
    fi
    [ -d "$store" ] && tes daemon stop > /dev/null 2>&1
    # runc's state directories of our namespaces (empty once the tasks are gone).
    for ns in "${NS[@]}"; do rmdir "/run/containerd/runc/$ns" 2> /dev/null; done
    # Anything still mounted under WORK (deepest first).
    grep -F " $WORK/" /proc/self/mounts | awk '{print $2}' | sort -r | while read -r m; do
        umount "$m" 2> /dev/null || umount -l "$m"
    done
    if [ "$KEEP" = 1 ]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -e "$WORK" ]; then
    grep -qF " $WORK/" /proc/self/mounts && { echo "bench-containerd: something is mounted under $WORK" >&2; exit 1; }
    rm -rf "$WORK"
fi
mkdir -p "$WORK" "$ctd"

# The binary's commit, as far as the repository tells: HEAD if the binary is newer than HEAD,
# else the newest commit older than the binary (a build of a dirty tree is not detected).
built=$(date -u -r "$TESSERA" '+%Y-%m-%d %H:%M UTC')
commit=$(git -C "$REPO" rev-parse --short HEAD 2> /dev/null || echo unknown)
if [ "$commit" != unknown ] && [ "$(git -C "$REPO" log -1 --format=%ct HEAD)" -gt "$(stat -c %Y "$TESSERA")" ]; then
    commit="HEAD $commit is newer than the binary; newest commit before the build: $(git -C "$REPO" log -1 --format=%h --before="@$(stat -c %Y "$TESSERA")" HEAD)"
fi
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r)"
echo "work dir: $WORK on $(df -T "$WORK" | awk 'NR==2 {print $2" ("$1")"}')"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tessera: $("$TESSERA" --version), $TESSERA (built $built; $commit)"
echo "containerd: $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1 {print $3}'), umoci $(umoci --version | awk '{print $3}')"
echo

# 1. The two images. Data: AES-CTR keystreams (deterministic, incompressible, fast).
# (openssl ends on SIGPIPE when head has enough.)
stream() { { openssl enc -aes-128-ctr -pass "pass:$SEED-$1" -nosalt -pbkdf2 < /dev/zero 2> /dev/null || true; } | head -c "$2"; }
echo "building the images (umoci)..." >&2
bg umoci init --layout "$oci"
rootfs_a=$WORK/bundle-a/rootfs
bg umoci new --image "$oci:a"
bg umoci unpack --image "$oci:a" "$WORK/bundle-a" > /dev/null
mkdir -p "$rootfs_a/bin" "$rootfs_a/data"
cp /bin/busybox "$rootfs_a/bin/busybox"
for applet in sh echo cat dd ls test sync; do ln -s busybox "$rootfs_a/bin/$applet"; done
for d in etc proc sys dev tmp root; do mkdir -p "$rootfs_a/$d"; done
echo "tessera containerd benchmark" > "$rootfs_a/etc/motd"
stream big $((1 << 30)) > "$rootfs_a/data/big.bin"
for i in 1 2 3 4; do stream "small$i" $((i * 100000)) > "$rootfs_a/data/small$i.bin"; done
bg umoci repack --image "$oci:a" "$WORK/bundle-a"
# b: its own layer, from a fresh bundle.
bg umoci new --image "$oci:b"
bg umoci unpack --image "$oci:b" "$WORK/bundle-b" > /dev/null
rootfs_b=$WORK/bundle-b/rootfs
cp -a "$rootfs_a/." "$rootfs_b/"
stream changed $((8 << 20)) | dd of="$rootfs_b/data/big.bin" bs=1M seek=300 conv=notrunc status=none
echo "only in b" > "$rootfs_b/data/extra.txt"
bg umoci repack --image "$oci:b" "$WORK/bundle-b"
bg umoci gc --layout "$oci"
rm -rf "$WORK/bundle-a" "$WORK/bundle-b"
tar -C "$oci" -cf "$archive" .
layers=$(python3 - "$oci" <<'EOF'
import json, os, sys
oci = sys.argv[1]
blob = lambda d: os.path.join(oci, "blobs", *d.split(":"))
index = json.load(open(os.path.join(oci, "index.json")))
for m in index["manifests"]:
    manifest = json.load(open(blob(m["digest"])))
    for layer in manifest["layers"]:
        print(m["annotations"]["org.opencontainers.image.ref.name"], layer["digest"][7:19], layer["size"])
EOF
)

# The store, its snapshotter, and containerd.
tes init > /dev/null
block_size=$(tes stats --json | json "d['block_size']")
"$TESSERA" --store "$store" snapshotter --address "$ctd/snapshotter.sock" > "$WORK/snapshotter.log" 2>&1 &
snap_pid=$!
for _ in $(seq 1 300); do [ -S "$ctd/snapshotter.sock" ] && break; sleep 0.1; done
[ -S "$ctd/snapshotter.sock" ] || { echo "bench-containerd: the snapshotter did not listen" >&2; cat "$WORK/snapshotter.log" >&2; exit 1; }
scripts/containerd.sh start "$ctd" > /dev/null

echo "analyzing the images (tessera analyze)..." >&2
analyze=$(bg "$TESSERA" --store "$store" analyze "$oci:a" "$oci:b" --block-sizes "$((block_size / 1024))K" --json)
unique=$(echo "$analyze" | json "d['block_sizes'][0]['unique_bytes']")
logical=$(echo "$analyze" | json "d['logical_bytes']")

# The compressed blobs, into the content store once (shared across namespaces).
start=$(now)
"${ctr[@]}" -n "$CONTENT_NS" images import --no-unpack --base-name bench/img "$archive" > /dev/null
content_s=$(python3 -c "print(f'{$(now) - $start:.1f}')")
content_bytes=$(du -sbx "$ctd/root/io.containerd.content.v1.content" | cut -f1)

# disk_of S: bytes the snapshotter S occupies (its files; mounts below are not crossed).
disk_of() {
    case $1 in
    tessera) du -sbx "$store" | cut -f1 ;;
    overlayfs) du -sbx "$ctd/root/io.containerd.snapshotter.v1.overlayfs" | cut -f1 ;;
    esac
}
# settle S: waits until the snapshotter's writes are on disk.
settle() {
    sync
    if [ "$1" = tessera ]; then
        for _ in $(seq 1 300); do
            [ "$(tes daemon status --json | json "d['dirty_bytes']")" = 0 ] && break
            sleep 0.1
        done
        sleep 3
    fi
    sync
}
# first_line CMD...: "SECONDS_TO_FIRST_LINE TOTAL_SECONDS"; CMD must print hello.
first_line() {
    python3 - "$@" <<'EOF'
import subprocess, sys, time
start = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
line = p.stdout.readline()
first = time.monotonic() - start
p.stdout.read()
rc = p.wait()
total = time.monotonic() - start
if rc != 0 or line.strip() != b"hello":
    sys.exit(f"first_line: {sys.argv[1:]} exited {rc} after printing {line!r}")
print(f"{first:.3f} {total:.3f}")
EOF
}

declare -A import_s disk0 disk stored first total edit_growth edit_stored
for s in tessera overlayfs; do
    n=(-n "${NS[$s]}")
    echo "$s: import..." >&2
    settle "$s"
    disk0[$s]=$(disk_of "$s")
    cold
    start=$(now)
    "${ctr[@]}" "${n[@]}" images import --snapshotter "$s" --base-name bench/img "$archive" > /dev/null
    import_s[$s]=$(python3 -c "print(f'{$(now) - $start:.1f}')")
    settle "$s"
    disk[$s]=$(disk_of "$s")
    [ "$s" = tessera ] && stored[$s]=$(tes stats --json | json "d['store']['stored_block_bytes']")

    echo "$s: first run..." >&2
    # drop_caches empties the kernel's caches, not the daemon's own block cache.
    [ "$s" = tessera ] && daemon_cache=$(tes daemon status --json | json "(d.get('block_cache') or {}).get('bytes', 0)")
    # Three runs, caches dropped before each; the median (one run varies by tens of ms).
    runs=()
    for i in 1 2 3; do
        cold
        runs+=("$(first_line "${ctr[@]}" "${n[@]}" run --rm --snapshotter "$s" bench/img:a "first-$s-$i" /bin/echo hello)")
    done
    read -r first[$s] total[$s] < <(printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p)

    echo "$s: 1-byte edit..." >&2
    settle "$s"
    before=$(disk_of "$s")
    [ "$s" = tessera ] && stored_before=$(tes stats --json | json "d['store']['stored_block_bytes']")
    "${ctr[@]}" "${n[@]}" run --snapshotter "$s" bench/img:a "edit-$s" /bin/sh -c \
        'printf x | dd of=/data/big.bin bs=1 seek=123456789 conv=notrunc 2>/dev/null'
    settle "$s"
    edit_growth[$s]=$(($(disk_of "$s") - before))
    [ "$s" = tessera ] && edit_stored[$s]=$(($(tes stats --json | json "d['store']['stored_block_bytes']") - stored_before))
    "${ctr[@]}" "${n[@]}" containers rm "edit-$s" > /dev/null
done

# What a snapshotter importing the layer tars itself would cost (containerd hands a proxy
# snapshotter only mounts, so none does): Tessera's importer on the same archive, both images,
# into a store of its own, caches dropped.
echo "tessera: importing the archive itself..." >&2
own=$WORK/own-store
"$TESSERA" --store "$own" init > /dev/null
cold
start=$(now)
for ref in a b; do
    "$TESSERA" --store "$own" import "$archive:$ref" --name "$ref" > /dev/null
done
own_import_s=$(python3 -c "print(f'{$(now) - $start:.1f}')")

echo "### containerd: tessera snapshotter vs overlayfs snapshotter (same containerd, same images)"
echo
echo "images (one gzip layer each, umoci): a = busybox-static + 1 GiB incompressible /data/big.bin + 4 small files;"
echo "b = a with 8 MiB of big.bin changed + 1 small file, built as its own layer. Layers (image, digest, compressed bytes):"
echo "$layers" | sed 's/^/    /'
echo "content store (compressed blobs of both, shared by both snapshotters, not counted below): $content_bytes bytes, imported in $content_s s"
echo "tessera block size: $block_size; store before import: ${disk0[tessera]} bytes; overlayfs dir before: ${disk0[overlayfs]} bytes"
echo "tessera daemon's block cache before its first run (not dropped with the kernel's): $daemon_cache bytes"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$block_size" "$logical" "$unique" "${import_s[tessera]}" "${import_s[overlayfs]}" \
    "${disk[tessera]}" "${disk[overlayfs]}" "${stored[tessera]}" "${first[tessera]}" "${first[overlayfs]}" \
    "${total[tessera]}" "${total[overlayfs]}" "${edit_growth[tessera]}" "${edit_growth[overlayfs]}" \
    "${edit_stored[tessera]}" "$own_import_s" <<'EOF'
import sys
a = sys.argv[1:]
bs, logical, unique = int(a[0]), int(a[1]), int(a[2])
imp_t, imp_o = float(a[3]), float(a[4])
disk_t, disk_o, stored_t = int(a[5]), int(a[6]), int(a[7])
first_t, first_o, total_t, total_o = map(float, a[8:12])
edit_t, edit_o, edit_stored_t = int(a[12]), int(a[13]), int(a[14])
own_t = float(a[15])
MiB = 1 << 20
def b(n): return f"{n:,} B ({n / MiB:,.1f} MiB)"
def ok(c): return "met" if c else "MISSED"
edit_limit = 2 * bs + MiB
rows = [
    ("`ctr images import` of both images (s)", f"{imp_t:.1f}", f"{imp_o:.1f}", f"{imp_t / imp_o:.2f}x (no target)"),
    ("  the same archive imported by `tessera import` itself (s, caches dropped)", f"{own_t:.1f}", "",
     f"{own_t / imp_o:.2f}x overlayfs's import"),
    ("file bytes of both images", b(logical), b(logical), ""),
    ("unique bytes across both (`tessera analyze`)", b(unique), b(unique), ""),
    ("disk used for both images (`du -sbx`)", b(disk_t), b(disk_o),
     f"tessera {disk_t / unique:.3f}x unique, overlayfs {disk_o / unique:.3f}x; target <= 1.1x: {ok(disk_t <= 1.1 * unique)}"),
    ("  of which stored blocks (`tessera stats`)", b(stored_t), "", f"{stored_t / unique:.3f}x unique"),
    ("`ctr run` to first line (s, caches dropped; median of 3)", f"{first_t:.3f}", f"{first_o:.3f}",
     f"{first_t / first_o:.2f}x; target <= 1.2x: {ok(first_t <= 1.2 * first_o)}"),
    ("  whole `ctr run --rm` (s)", f"{total_t:.3f}", f"{total_o:.3f}", f"{total_t / total_o:.2f}x"),
    ("disk growth after a 1-byte edit of big.bin", b(edit_t), b(edit_o),
     f"target <= 2 blocks + 1 MiB = {edit_limit:,} B: {ok(edit_t <= edit_limit)}"),
    ("  of which stored blocks (`tessera stats`)", b(edit_stored_t), "", ""),
]
print("| | tessera | overlayfs | ratio / target |")
print("|---|---:|---:|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
EOF
