#!/usr/bin/env bash
# A private containerd for Tessera's snapshotter: its own root, state, config and unix socket
# under DIR (nothing of the system's containerd is used or touched), with the proxy plugin
# `tessera` pointing at the snapshotter's socket. Installs containerd and runc (apt-get) when
# missing. Idempotent; stops only the containerd it started (by the PID it recorded).
#
#   scripts/containerd.sh start [DIR]   # default DIR: /tmp/tessera-containerd
#   scripts/containerd.sh stop [DIR]
#   scripts/containerd.sh restart [DIR]  # containerd only: running tasks keep running
#   scripts/containerd.sh demo [DIR]    # all of it: snapshotter, containerd, import, run
#
# Then (as root):
#   tessera snapshotter --address DIR/snapshotter.sock &
#   ctr -a DIR/containerd.sock image import --snapshotter tessera image.tar
#   ctr -a DIR/containerd.sock run --snapshotter tessera --rm IMAGE ID CMD
set -euo pipefail

action=${1:-}
dir=${2:-/tmp/tessera-containerd}
pidfile=$dir/containerd.pid

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# containerd alone, by the PID it recorded: TERM, then KILL after 10 s.
stop_containerd() {
  local pid
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$pidfile"
}

case "$action" in
start)
  missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if running; then
    echo "containerd already runs (pid $(cat "$pidfile")) on $dir/containerd.sock"
    exit 0
  fi
  mkdir -p "$dir/root" "$dir/state"
  cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$dir/containerd.sock"

[ttrpc]
  address = "$dir/containerd.sock.ttrpc"

[proxy_plugins.tessera]
  type = "snapshot"
  address = "$dir/snapshotter.sock"
TOML
  # Its own process group, so that a stop ends it and the shims it started.
  setsid containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    if ctr -a "$dir/containerd.sock" version >/dev/null 2>&1; then
      echo "containerd started (pid $(cat "$pidfile")) on $dir/containerd.sock"
      exit 0
    fi
    running || break
    sleep 0.1
  done
  echo "containerd did not start; see $dir/containerd.log:" >&2
  tail -5 "$dir/containerd.log" >&2
  exit 1
  ;;
stop)
  if ! running; then
    rm -f "$pidfile"
    echo "containerd is not running"
    exit 0
  fi
  # Tasks still running (a failed test's containers): killed and deleted through containerd,
  # so their shims exit.
  ctr=(ctr -a "$dir/containerd.sock")
  for ns in $("${ctr[@]}" namespaces ls -q 2>/dev/null); do
    for task in $("${ctr[@]}" -n "$ns" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" -n "$ns" tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
      "${ctr[@]}" -n "$ns" tasks delete -f "$task" >/dev/null 2>&1 || true
    done
  done
  stop_containerd
  echo "containerd stopped"
  ;;
restart)
  # containerd alone (by its PID), as an upgrade would: the shims and the tasks they run stay
  # up, and the new containerd finds them.
  running && stop_containerd
  exec "$0" start "$dir"
  ;;
demo)
  # A store and a snapshotter under DIR, an OCI archive of busybox-static built with umoci,
  # imported and run with the tessera snapshotter; then everything stopped again.
  tessera=${TESSERA:-$(command -v tessera || echo "$(dirname "$0")/../target/debug/tessera")}
  for tool in umoci busybox; do
    command -v $tool >/dev/null || { echo "demo: needs $tool (scripts/setup.sh)" >&2; exit 1; }
  done
  mkdir -p "$dir"
  store=$dir/store
  [ -d "$store" ] || "$tessera" --store "$store" init >/dev/null
  "$tessera" --store "$store" snapshotter --address "$dir/snapshotter.sock" >"$dir/snapshotter.log" 2>&1 &
  snap=$!
  trap '"$0" stop "$dir" >/dev/null; kill -TERM $snap 2>/dev/null; wait $snap 2>/dev/null' EXIT
  for _ in $(seq 1 100); do [ -S "$dir/snapshotter.sock" ] && break; sleep 0.1; done
  "$0" start "$dir"
  work=$(mktemp -d)
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:latest"
  umoci unpack --image "$work/layout:latest" "$work/bundle" >/dev/null
  mkdir -p "$work/bundle/rootfs/bin"
  cp "$(command -v busybox)" "$work/bundle/rootfs/bin/busybox"
  ln -s busybox "$work/bundle/rootfs/bin/sh"
  ln -s busybox "$work/bundle/rootfs/bin/echo"
  umoci repack --image "$work/layout:latest" "$work/bundle"
  tar -C "$work/layout" -cf "$work/image.tar" .
  ctr=(ctr -a "$dir/containerd.sock")
  "${ctr[@]}" images import --snapshotter tessera --base-name tessera.demo/busybox "$work/image.tar"
  "${ctr[@]}" run --snapshotter tessera --rm tessera.demo/busybox:latest demo \
    /bin/sh -c 'echo hello from a container on tessera'
  "${ctr[@]}" snapshots --snapshotter tessera ls
  "${ctr[@]}" images rm --sync tessera.demo/busybox:latest >/dev/null
  rm -rf "$work"
  ;;
*)
  echo "usage: $0 start|stop|restart|demo [DIR]" >&2
  exit 2
  ;;
esac
