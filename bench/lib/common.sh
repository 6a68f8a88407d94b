# shellcheck shell=bash
# Settings and small helpers shared by bench/run.sh, bench/lib/peers.sh and bench/stop.sh.
# Sourcing this file only defines variables and functions; it starts nothing.

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
# Everything the benchmark creates lives here: peer daemons' data, kiln's store, generated
# contexts (the big one is 500 MiB, so it is kept between runs), raw results.
STATE=${BENCH_STATE:-/var/tmp/kiln-bench}

# kiln itself: a release build unless KILN points elsewhere.
KILN=${KILN:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/kiln}
KILN_ROOT=$STATE/kiln-root

# The Debian docker client, never another one that may be on PATH (it could talk to the
# host's dockerd). Our dockerd is private: own data-root, exec-root, socket, bridge, cgroup
# parent and mount namespace (lib/peers.sh says why each); the client gets its own config
# directory, so the user's ~/.docker is neither read nor written.
DOCKER=${DOCKER:-/usr/bin/docker}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKERD_DIR=$STATE/dockerd
export DOCKER_HOST=unix://$DOCKERD_DIR/docker.sock
export DOCKER_CONFIG=$STATE/docker-client
BENCH_BRIDGE=${BENCH_BRIDGE:-kbench0}
BENCH_BRIDGE_CIDR=${BENCH_BRIDGE_CIDR:-10.219.0.1/24}
# Present while $BENCH_BRIDGE is the one peers.sh made: stop.sh deletes only that one.
BENCH_BRIDGE_MARK=$DOCKERD_DIR/bridge.ours
BENCH_CGROUP=kiln-bench-docker

REGISTRY=${BENCH_REGISTRY:-127.0.0.1:5055}
REGISTRY_DIR=$STATE/registry

# buildah with private storage (overlay driver, probed by peers.sh; vfs as a fallback)
BUILDAH_DIR=$STATE/buildah
BUILDAH_DRIVER=$(cat "$BUILDAH_DIR/driver" 2>/dev/null || echo overlay)
# CONTAINERS_CONF: a config of the benchmark's own (peers.sh writes it), which keeps buildah's
# CNI lock and network files out of /etc/cni.
BUILDAH="env TMPDIR=$BUILDAH_DIR/tmp CONTAINERS_CONF=$BUILDAH_DIR/containers.conf buildah --root $BUILDAH_DIR/root --runroot $BUILDAH_DIR/run --storage-driver $BUILDAH_DRIVER"
BUILDAH_STORE="containers-storage:[$BUILDAH_DRIVER@$BUILDAH_DIR/root+$BUILDAH_DIR/run]"

BASE_TAR=$STATE/base/busybox-rootfs.tar
BASE_PATH_ENV='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

# skopeo and buildah keep a blob-info cache in /var/lib/containers/cache when run as root,
# whatever their storage options say. When the benchmark is what made that directory, the
# mark says so and stop.sh (registry.sh at its exit) removes it again.
SYSTEM_CACHE=/var/lib/containers
SYSTEM_CACHE_MARK=$STATE/system-cache.ours
note_system_cache() {
  [[ -e $SYSTEM_CACHE ]] || {
    mkdir -p "$STATE"
    : >"$SYSTEM_CACHE_MARK"
  }
}
remove_system_cache() {
  [[ -f $SYSTEM_CACHE_MARK ]] || return 0
  rm -f "$SYSTEM_CACHE/cache/blob-info-cache-v1.boltdb"
  rmdir "$SYSTEM_CACHE/cache" "$SYSTEM_CACHE" 2>/dev/null
  rm -f "$SYSTEM_CACHE_MARK"
}

# The mount points of the cgroup hierarchies (v1 controllers, v2, or both).
cgroup_mounts() {
  awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) ~ /^cgroup2?$/) print $5; break } }' \
    /proc/self/mountinfo
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
docker_ok() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }
registry_ok() { curl -fsS -m 3 "http://$REGISTRY/v2/" >/dev/null 2>&1; }
kiln() { "$KILN" --root "$KILN_ROOT" "$@"; }
