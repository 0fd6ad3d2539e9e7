#!/usr/bin/env bash
# A one-node Ceph cluster with a RADOS Gateway on loopback: the S3 server the remote-store
# tests run against (docs/design.md §8).
#
#   scripts/s3-server.sh start   # idempotent: prints "started", or "running" when it was up
#   scripts/s3-server.sh env     # the AWS_* variables (and TESSERA_S3_BUCKET) to use, as exports
#   scripts/s3-server.sh stop    # stops the daemons this script started (by their PIDs)
#   scripts/s3-server.sh purge   # stop, then delete the state directory
#
# One monitor, one BlueStore OSD on a sparse file of $TESSERA_RGW_OSD_BYTES (4 GiB; 1 GiB memory
# target), no cephx, pools of size 1, radosgw's beast frontend on 127.0.0.1:$TESSERA_RGW_PORT, a
# user with fixed test keys and one bucket. Everything lives under $TESSERA_RGW_DIR; the data
# survives stop/start.
set -euo pipefail

DIR=${TESSERA_RGW_DIR:-/var/tmp/tessera-rgw}
PORT=${TESSERA_RGW_PORT:-17480}
MON_PORT=${TESSERA_RGW_MON_PORT:-17300}
BUCKET=${TESSERA_S3_BUCKET:-tessera}
ACCESS_KEY=tessera-test-access-key
SECRET_KEY=tessera-test-secret-key-not-a-secret
REGION=us-east-1
FSID=7c1a8c2e-0d3b-4f0e-9a57-7e55e5a00001
CONF=$DIR/ceph.conf

log() { echo "s3-server: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# The last lines a daemon wrote, for an error message: CI keeps only the test's output.
tail_logs() { # tail_logs NAME...
  local name f
  for name in "$@"; do
    for f in "$DIR/log/$name.out" "$DIR/log/$name".*.log "$DIR/log/$name.log"; do
      [ -s "$f" ] || continue
      echo "--- last lines of $f:" >&2
      tail -n 15 "$f" >&2
    done
  done
}

print_env() {
  cat <<EOF
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export AWS_ALLOW_HTTP=true
export TESSERA_S3_BUCKET=$BUCKET
EOF
}

install_packages() {
  local missing=()
  for p in radosgw ceph-mon ceph-osd ceph-mgr curl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "cannot install ${missing[*]} (no apt-get)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

alive() { # alive NAME: the daemon this script started is still running
  local pid
  pid=$(cat "$DIR/run/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    # The PID is ours only while its command line is still that daemon's.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--conf $CONF"
}

wait_for() { # wait_for SECONDS NAME COMMAND...: until COMMAND succeeds, while daemon NAME lives
  local deadline=$((SECONDS + $1)) name=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ! alive "$name"; then
      tail_logs "$name"
      die "$name exited while starting (logs in $DIR/log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail_logs "$name"
      die "$name did not come up in $1 s (logs in $DIR/log)"
    fi
    sleep 0.5
  done
}

launch() { # launch NAME COMMAND...: runs a daemon in the foreground of a background job
  local name=$1
  shift
  # fd 9 (the lock) is not handed to the daemon: it would hold the lock while it runs.
  setsid "$@" --conf "$CONF" -f >>"$DIR/log/$name.out" 2>&1 </dev/null 9>&- &
  echo $! >"$DIR/run/$name.pid"
}

write_conf() {
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/mon" "$DIR/osd"
  cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
mon allow pool size one = true
mon warn on pool no redundancy = false
# A monitor refuses to start when its filesystem has less than 5% free: a test machine's
# disk may be that full and still hold this small cluster.
mon data avail crit = 0
mon data avail warn = 0
mon max pg per osd = 1000
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
keyring = $DIR/keyring
[mon]
mon data = $DIR/mon
[osd]
osd data = $DIR/osd
osd objectstore = bluestore
bluestore block create = true
bluestore block size = ${TESSERA_RGW_OSD_BYTES:-4294967296}
osd memory target = 1073741824
osd max object name len = 256
osd max object namespace len = 64
[client.rgw]
# radosgw's own defaults ask for cephx and a secure mon connection: say none and crc here.
auth client required = none
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
rgw thread pool size = 64
EOF
}

s3() { # s3 METHOD PATH: one signed request without a body to the gateway
  # RGW wants the payload's hash signed; this is sha256 of nothing.
  curl -sf -o /dev/null --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    -X "$1" "http://127.0.0.1:$PORT/$2"
}

ceph_() { timeout 30 ceph --conf "$CONF" --connect-timeout 10 "$@"; }

mkfs() {
  log "creating a one-node cluster in $DIR"
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
  ceph-mon --conf "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
}

start_mon() {
  launch mon ceph-mon -i a
  wait_for 120 mon ceph_ mon stat
}

start_osd() {
  if [ ! -e "$DIR/osd/whoami" ]; then
    local uuid
    uuid=$(cat /proc/sys/kernel/random/uuid)
    [ "$(ceph_ osd new "$uuid")" = 0 ] || die "ceph osd new did not give osd.0"
    ceph-osd --conf "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >>"$DIR/log/osd-mkfs.out" 2>&1 ||
      die "ceph-osd --mkfs failed (see $DIR/log/osd-mkfs.out)"
  fi
  launch osd ceph-osd -i 0
  wait_for 180 osd sh -c "timeout 30 ceph --conf '$CONF' --connect-timeout 10 osd dump 2>/dev/null | grep -q '^osd.0 up'"
}

start_rgw() {
  launch rgw radosgw -n client.rgw
  wait_for 180 rgw curl -sf -o /dev/null "http://127.0.0.1:$PORT/"
  if ! radosgw-admin --conf "$CONF" user info --uid=tessera >/dev/null 2>&1; then
    radosgw-admin --conf "$CONF" user create --uid=tessera --display-name=tessera \
      --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null
  fi
  # Creating a bucket one owns already succeeds: idempotent.
  wait_for 60 rgw s3 PUT "$BUCKET"
}

bring_up() { # from the cluster in $DIR, or a new one when there is none
  if [ ! -e "$DIR/mon/done" ] && [ ! -e "$DIR/mon/store.db" ]; then
    rm -rf "$DIR"
    write_conf
    mkfs
  else
    write_conf
  fi
  start_mon
  start_osd
  start_rgw
}

start() {
  if alive mon && alive osd && alive rgw && curl -sf -o /dev/null "http://127.0.0.1:$PORT/"; then
    echo running
    return
  fi
  install_packages
  stop_daemons # whatever part is still up from a failed start
  local begin=$SECONDS
  # The cluster holds only test data: when the one left by an earlier run does not come up
  # (an interrupted mkfs, a full disk back then), a new one replaces it, once.
  if ! (bring_up); then
    log "starting again from a new cluster"
    stop_daemons
    rm -rf "$DIR"
    (bring_up) || die "the S3 server did not start (logs in $DIR/log)"
  fi
  log "up in $((SECONDS - begin)) s on http://127.0.0.1:$PORT (bucket $BUCKET)"
  echo started
}

stop_daemons() {
  local name pid i
  for name in rgw osd mon; do
    if alive "$name"; then
      pid=$(cat "$DIR/run/$name.pid")
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/run/$name.pid"
  done
}

main() {
  local cmd=${1:-}
  case "$cmd" in
    start | stop | purge)
      mkdir -p "$DIR"
      # One start or stop at a time (two test binaries may race).
      exec 9>"$DIR.lock"
      flock 9
      case "$cmd" in
        start) start ;;
        stop) stop_daemons ;;
        purge)
          stop_daemons
          rm -rf "$DIR"
          ;;
      esac
      ;;
    env) print_env ;;
    *) die "usage: $0 start|stop|env|purge" ;;
  esac
}

main "$@"
