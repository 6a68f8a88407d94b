#!/usr/bin/env bash
# Prepares the peers and the base image for every tool; idempotent (a second call is ~1 s).
#
#   bench/lib/peers.sh            (run.sh calls it; bench/stop.sh undoes the daemons)
#
# 1. apt-get installs what is missing: docker.io (dockerd with its embedded BuildKit), buildah,
#    skopeo, docker-registry, hyperfine, jq, time, busybox-static.
# 2. starts a private dockerd that leaves the host as it found it (see that step): its own
#    data-root, exec-root, socket, config, bridge and cgroup parent, a mount namespace of its
#    own, no iptables rules and no forwarding switch. Its PID is in $STATE/dockerd/pid.
# 3. starts docker-registry on $REGISTRY (loopback, plain HTTP), PID in $STATE/registry/pid.
# 4. builds one busybox rootfs tar from /usr/bin/busybox and imports that same tar as
#    `busybox` into kiln, docker and buildah (CMD ["sh"], the usual PATH), so every tool
#    starts from identical bytes and nothing is pulled from the internet.
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "$0")" && pwd)/common.sh"

[[ $(id -u) == 0 ]] || die "the benchmark needs root (namespaces, overlayfs, dockerd)"
mkdir -p "$STATE/base" "$DOCKERD_DIR" "$REGISTRY_DIR/data" "$BUILDAH_DIR/tmp" "$DOCKER_CONFIG"
note_system_cache

# ------------------------------------------------------------------ 1. packages
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
[[ -x $DOCKER && -x $DOCKERD ]] || missing+=(docker.io)
need buildah buildah
need skopeo skopeo
need docker-registry docker-registry
need hyperfine hyperfine
need jq jq
need curl curl
[[ -x /usr/bin/time ]] || missing+=(time)
[[ -x /usr/bin/busybox ]] || missing+=(busybox-static)
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >"$STATE/apt.log" 2>&1 || {
    tail -20 "$STATE/apt.log"
    die "apt-get install failed (log: $STATE/apt.log)"
  }
fi

# ------------------------------------------------------------------ 2. private dockerd
# It stays in the host's network namespace: docker build's RUN steps and docker run use its
# bridge, and docker push must reach the registry on the host's loopback. So everything it
# could change there is its own or turned off:
# - its bridge: $BENCH_BRIDGE, made here with a subnet no route covers and marked as ours;
#   stop.sh deletes it only when marked. Never --bridge=none, which makes dockerd delete the
#   host's docker0 (issue 23).
# - no iptables rules, no masquerading, and --ip-forward=false: by default dockerd sets the
#   host's net.ipv4.ip_forward to 1 and leaves it so.
# - a private mount namespace with tmpfs over /run, /etc/docker and /opt: a host containerd's
#   socket in /run would be used instead of dockerd starting its own, containerd puts its shim
#   sockets in /run/containerd and makes /opt/containerd, dockerd writes /etc/docker/key.json
#   and reads the host's daemon.json; its overlay mounts stay in the namespace. No pid
#   namespace: the pidfile must hold the PID stop.sh and the memory probe use.
# - its own config file, data root, exec root, socket and cgroup parent (stop.sh removes it).
if pid_alive "$DOCKERD_DIR/pid" && docker_ok; then
  log "dockerd already running (pid $(cat "$DOCKERD_DIR/pid"))"
else
  if ip link show "$BENCH_BRIDGE" >/dev/null 2>&1; then
    [[ -f $BENCH_BRIDGE_MARK ]] ||
      die "interface $BENCH_BRIDGE exists and the benchmark did not make it; set BENCH_BRIDGE to an unused name"
  else
    if ip -4 -o route show match "${BENCH_BRIDGE_CIDR%/*}" | grep -qv '^default '; then
      die "a route already covers $BENCH_BRIDGE_CIDR; set BENCH_BRIDGE_CIDR to a free subnet"
    fi
    ip link add "$BENCH_BRIDGE" type bridge
    : >"$BENCH_BRIDGE_MARK"
    ip addr add "$BENCH_BRIDGE_CIDR" dev "$BENCH_BRIDGE"
  fi
  ip link set "$BENCH_BRIDGE" up
  echo '{}' >"$DOCKERD_DIR/daemon.json"
  log "starting a private dockerd (log: $DOCKERD_DIR/log)"
  # setsid: the daemon must outlive this script (run.sh stops it by PID at the end); unshare
  # and sh exec, so the PID in the pidfile is dockerd's.
  # shellcheck disable=SC2016 # $dir and $@ are the inner shell's
  setsid unshare --mount --propagation private -- sh -c '
    set -e
    for dir in /run /etc/docker /opt; do
      if [ -d "$dir" ]; then mount -n -t tmpfs -o mode=0755 kiln-bench-dockerd "$dir"; fi
    done
    exec "$@"' sh \
    "$DOCKERD" --config-file "$DOCKERD_DIR/daemon.json" \
    --data-root "$DOCKERD_DIR/root" --exec-root "$DOCKERD_DIR/exec" \
    -H "$DOCKER_HOST" --pidfile "$DOCKERD_DIR/pid" \
    --bridge "$BENCH_BRIDGE" --iptables=false --ip6tables=false --ip-masq=false \
    --ip-forward=false --exec-opt native.cgroupdriver=cgroupfs \
    --cgroup-parent "/$BENCH_CGROUP" --storage-driver overlay2 \
    </dev/null >>"$DOCKERD_DIR/log" 2>&1 &
  for _ in $(seq 60); do
    docker_ok && break
    sleep 1
  done
  docker_ok || {
    tail -20 "$DOCKERD_DIR/log"
    die "dockerd did not come up"
  }
  log "dockerd up (pid $(cat "$DOCKERD_DIR/pid"))"
fi

# ------------------------------------------------------------------ 3. registry
cat >"$REGISTRY_DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
if pid_alive "$REGISTRY_DIR/pid" && registry_ok; then
  log "registry already running (pid $(cat "$REGISTRY_DIR/pid"))"
else
  registry_ok && die "something else answers on $REGISTRY; set BENCH_REGISTRY=127.0.0.1:<port>"
  setsid docker-registry serve "$REGISTRY_DIR/config.yml" </dev/null >>"$REGISTRY_DIR/log" 2>&1 &
  echo $! >"$REGISTRY_DIR/pid"
  for _ in $(seq 30); do
    registry_ok && break
    sleep 0.5
  done
  registry_ok || die "registry did not come up (log: $REGISTRY_DIR/log)"
  log "registry up on $REGISTRY (pid $(cat "$REGISTRY_DIR/pid"))"
fi

# ------------------------------------------------------------------ 4. busybox base
if [[ ! -s $BASE_TAR ]]; then
  log "making the busybox rootfs"
  r=$STATE/base/rootfs
  rm -rf "$r"
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,dev,proc,sys,var,home}
  chmod 1777 "$r/tmp"
  chmod 0700 "$r/root"
  cp /usr/bin/busybox "$r/bin/busybox"
  for applet in $(/usr/bin/busybox --list-full); do
    [[ -e $r/$applet || -L $r/$applet ]] || ln -s /bin/busybox "$r/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  : >"$r/etc/hosts"
  : >"$r/etc/resolv.conf"
  # fixed order, owner and mtime: the same tar bytes on every machine with this busybox
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$r" -cf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$r"
fi

if [[ -x $KILN ]]; then
  if ! kiln inspect busybox >/dev/null 2>&1; then
    log "kiln import busybox"
    kiln import "$BASE_TAR" busybox -c 'CMD ["sh"]' -c "ENV $BASE_PATH_ENV" >/dev/null
  fi
else
  log "kiln binary $KILN not found: build it with cargo build --release -p kiln-cli"
fi
if ! "$DOCKER" image inspect busybox:latest >/dev/null 2>&1; then
  log "docker import busybox"
  "$DOCKER" import -c 'CMD ["sh"]' -c "ENV $BASE_PATH_ENV" "$BASE_TAR" busybox:latest >/dev/null
fi
cat >"$BUILDAH_DIR/containers.conf" <<EOF
[network]
network_config_dir = "$BUILDAH_DIR/cni"
EOF
if [[ ! -f $BUILDAH_DIR/driver ]]; then
  # overlay unless this kernel/filesystem refuses it; vfs copies whole layers (much slower)
  BUILDAH_DRIVER=overlay
  BUILDAH="env TMPDIR=$BUILDAH_DIR/tmp CONTAINERS_CONF=$BUILDAH_DIR/containers.conf buildah --root $BUILDAH_DIR/root --runroot $BUILDAH_DIR/run --storage-driver overlay"
  if c=$($BUILDAH from --pull=never scratch 2>"$BUILDAH_DIR/probe.log") &&
    $BUILDAH mount "$c" >/dev/null 2>>"$BUILDAH_DIR/probe.log" && $BUILDAH rm "$c" >/dev/null; then
    echo overlay >"$BUILDAH_DIR/driver"
  else
    log "buildah: overlay failed (see $BUILDAH_DIR/probe.log), using vfs"
    echo vfs >"$BUILDAH_DIR/driver"
  fi
  # shellcheck source=common.sh
  source "$BENCH_DIR/lib/common.sh"
fi
if ! $BUILDAH inspect --type image docker.io/library/busybox:latest >/dev/null 2>&1; then
  log "buildah: busybox from docker's copy"
  # the same image docker has (same layer digest); `FROM busybox` then resolves locally
  skopeo copy -q --src-daemon-host "$DOCKER_HOST" docker-daemon:busybox:latest \
    "${BUILDAH_STORE}docker.io/library/busybox:latest"
fi
log "peers ready: docker $("$DOCKER" version -f '{{.Server.Version}}'), buildah $(buildah --version | awk '{print $3}') ($BUILDAH_DRIVER), registry $REGISTRY"
