#!/usr/bin/env bash
# Installs the system packages Tessera's demo, tests and benchmarks use (Debian/Ubuntu).
# Idempotent: installs only what is missing. Needs root (or sudo) when something is missing.
set -euo pipefail

# Users who are not root mount through fusermount3, which opens /dev/fuse as the user:
# distributions make it 0666 (udev); some minimal machines leave it 0600.
if [ -c /dev/fuse ] && [ "$(id -u)" -eq 0 ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
  chmod 0666 /dev/fuse
fi

# radosgw and ceph-*: the one-node S3 server of the remote-store tests (scripts/s3-server.sh).
packages=(fuse3 fuse-overlayfs busybox-static sqlite3 attr acl umoci fio xfsprogs pkg-config python3-minimal chromium podman runc containerd protobuf-compiler
  curl radosgw ceph-mon ceph-osd ceph-mgr)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "setup: cannot install ${missing[*]} (no apt-get); install them by hand" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${missing[*]}" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
