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
# host's dockerd). Our dockerd is private: own data-root, exec-root, socket and bridge.
DOCKER=${DOCKER:-/usr/bin/docker}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKERD_DIR=$STATE/dockerd
export DOCKER_HOST=unix://$DOCKERD_DIR/docker.sock
BENCH_BRIDGE=${BENCH_BRIDGE:-kbench0}
BENCH_BRIDGE_CIDR=${BENCH_BRIDGE_CIDR:-10.219.0.1/24}

REGISTRY=${BENCH_REGISTRY:-127.0.0.1:5055}
REGISTRY_DIR=$STATE/registry

# buildah with private storage (overlay driver, probed by peers.sh; vfs as a fallback)
BUILDAH_DIR=$STATE/buildah
BUILDAH_DRIVER=$(cat "$BUILDAH_DIR/driver" 2>/dev/null || echo overlay)
BUILDAH="env TMPDIR=$BUILDAH_DIR/tmp buildah --root $BUILDAH_DIR/root --runroot $BUILDAH_DIR/run --storage-driver $BUILDAH_DRIVER"
BUILDAH_STORE="containers-storage:[$BUILDAH_DRIVER@$BUILDAH_DIR/root+$BUILDAH_DIR/run]"

BASE_TAR=$STATE/base/busybox-rootfs.tar
BASE_PATH_ENV='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
docker_ok() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }
registry_ok() { curl -fsS -m 3 "http://$REGISTRY/v2/" >/dev/null 2>&1; }
kiln() { "$KILN" --root "$KILN_ROOT" "$@"; }
