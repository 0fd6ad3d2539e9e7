#!/usr/bin/env bash
# A private containerd for Tessera's snapshotter: its own root, state, config and unix socket
# under DIR (nothing of the system's containerd is used or touched), with the proxy plugin
# `tessera` pointing at the snapshotter's socket. Installs containerd and runc (apt-get) when
# missing. Idempotent; stops only the containerd it started (by the PID it recorded).
#
#   scripts/containerd.sh start [DIR]   # default DIR: /tmp/tessera-containerd
#   scripts/containerd.sh stop [DIR]
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
  pid=$(cat "$pidfile")
  # Tasks still running (a failed test's containers): killed and deleted through containerd,
  # so their shims exit.
  ctr=(ctr -a "$dir/containerd.sock")
  for ns in $("${ctr[@]}" namespaces ls -q 2>/dev/null); do
    for task in $("${ctr[@]}" -n "$ns" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" -n "$ns" tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
      "${ctr[@]}" -n "$ns" tasks delete -f "$task" >/dev/null 2>&1 || true
    done
  done
  kill -TERM "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$pidfile"
  echo "containerd stopped"
  ;;
*)
  echo "usage: $0 start|stop [DIR]" >&2
  exit 2
  ;;
esac
