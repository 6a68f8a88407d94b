#!/usr/bin/env bash
# Stops what bench/lib/peers.sh started, by the PIDs it recorded (never by name).
#
#   bench/stop.sh [--purge]      --purge also deletes $BENCH_STATE (stores, contexts, results)
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(cd "$(dirname "$0")" && pwd)/lib/common.sh"

stop_pid() { # NAME PIDFILE
  local name=$1 file=$2 pid
  [[ -s $file ]] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill "$pid"
    for _ in $(seq 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$file"
}

$BUILDAH rm -a >/dev/null 2>&1 || true
stop_pid registry "$REGISTRY_DIR/pid"
stop_pid dockerd "$DOCKERD_DIR/pid"
# Only the bridge peers.sh made (an interface of that name it did not make is someone else's).
if [[ -f $BENCH_BRIDGE_MARK ]]; then
  ip link show "$BENCH_BRIDGE" >/dev/null 2>&1 && ip link delete "$BENCH_BRIDGE"
  rm -f "$BENCH_BRIDGE_MARK"
fi
# dockerd's cgroup parent with what is left in it (BuildKit's `buildkit` child), deepest
# first, once its containers are gone (rmdir refuses a cgroup that still has processes).
for m in $(cgroup_mounts); do
  [[ -d $m/$BENCH_CGROUP ]] && find "$m/$BENCH_CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null
done
remove_system_cache
if [[ ${1:-} == --purge ]]; then
  # overlay mounts under the state dir must go before its files can
  grep -F " $STATE/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$STATE"
  log "removed $STATE"
fi
exit 0
