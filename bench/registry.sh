#!/usr/bin/env bash
# kiln's registry transfer benchmark: `kiln push` and `kiln pull` of the big-context image
# against `skopeo copy` between the same loopback registry and an OCI layout, interleaved,
# reported as medians and kiln/skopeo ratios (issue 7).
#
#   cargo build --release -p kiln-cli && sudo bench/registry.sh
#
# Every timed push goes to a registry with empty storage (it is restarted with a wiped
# directory), so neither tool can skip or mount a blob; every timed pull goes into an empty
# kiln root or an empty OCI layout directory. Both tools move the same blobs: skopeo copies the
# OCI layout kiln exported of the image it built.
#
# Knobs: REPS (default 3), WORKLOAD (default bigctx; any bench/workloads/* name),
# KILN (default $CARGO_TARGET_DIR/release/kiln), BENCH_STATE (default /var/tmp/kiln-bench).
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(cd "$(dirname "$0")" && pwd)/lib/common.sh"

REPS=${REPS:-3}
WORKLOAD=${WORKLOAD:-bigctx}
[[ $(id -u) == 0 ]] || die "run as root"
[[ -x $KILN ]] || die "no kiln binary at $KILN (cargo build --release -p kiln-cli)"
command -v skopeo >/dev/null || die "skopeo is missing (apt-get install skopeo)"
command -v docker-registry >/dev/null || die "docker-registry is missing (apt-get install docker-registry)"

STAMP=$(date -u +%Y%m%d-%H%M%S)
WORK=$STATE/registry-bench
RAW=$BENCH_DIR/results/$STAMP-registry-raw.tsv
mkdir -p "$WORK" "$BENCH_DIR/results"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
REG_PID=

stop_registry() {
  if [[ -n $REG_PID ]]; then
    kill "$REG_PID" 2>/dev/null
    wait "$REG_PID" 2>/dev/null
    REG_PID=
  fi
}
note_system_cache
# skopeo's blob-info cache goes again with the registry, if this script made it.
trap 'stop_registry; remove_system_cache' EXIT

# A registry with empty storage on $REG.
fresh_registry() {
  stop_registry
  rm -rf "$WORK/registry"
  mkdir -p "$WORK/registry"
  cat >"$WORK/registry/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/storage
http:
  addr: $REG
YAML
  docker-registry serve "$WORK/registry/config.yml" </dev/null >>"$WORK/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do
    curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "the registry did not start (log: $WORK/registry.log)"
}

# Seconds (wall) that "$@" takes; its output goes to the log.
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >>"$WORK/commands.log" 2>&1 || die "failed: $* (log: $WORK/commands.log)"
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}

# 1. The image: kiln builds the workload once; its OCI layout is what skopeo pushes.
CTX=$STATE/ctx/$WORKLOAD
if [[ ! -f $CTX/Dockerfile ]]; then
  # shellcheck disable=SC1090
  source "$BENCH_DIR/workloads/$WORKLOAD/bench.env"
  if [[ -n ${GEN:-} ]]; then
    log "generating the $WORKLOAD context"
    eval "${GEN//\{context\}/$CTX}" || die "context generation failed"
  else
    mkdir -p "$CTX" && cp -a "$BENCH_DIR/workloads/$WORKLOAD/." "$CTX/"
  fi
fi
ROOT=$WORK/kiln-root
rm -rf "$ROOT" "$WORK/layout"
[[ -f $BASE_TAR ]] || { mkdir -p "$(dirname "$BASE_TAR")"; (cd "$REPO_DIR" && cargo xtask fixtures >/dev/null) && cp "${CARGO_TARGET_DIR:-$REPO_DIR/target}/fixtures/busybox-rootfs.tar" "$BASE_TAR"; }
"$KILN" --root "$ROOT" import "$BASE_TAR" busybox -c 'CMD ["sh"]' -c "ENV $BASE_PATH_ENV" >/dev/null || die "import failed"
log "building $WORKLOAD with kiln"
"$KILN" --root "$ROOT" build -q -t "bench/$WORKLOAD" "$CTX" >/dev/null || die "build failed"
"$KILN" --root "$ROOT" build -q -t "bench/$WORKLOAD" -o "type=oci,dest=$WORK/layout,tar=false" "$CTX" >/dev/null || die "export failed"
SIZE=$(du -sb "$WORK/layout/blobs" | cut -f1)
log "image: $((SIZE / 1048576)) MiB of blobs; registry on $REG; $REPS interleaved repetitions"

printf 'rep\ttool\tmetric\tseconds\n' >"$RAW"
for rep in $(seq "$REPS"); do
  # Alternate who goes first, so a slow patch of the machine hits both alike.
  if ((rep % 2)); then order="kiln skopeo"; else order="skopeo kiln"; fi
  for tool in $order; do
    fresh_registry
    if [[ $tool == kiln ]]; then
      s=$(timed "$KILN" --root "$ROOT" push "bench/$WORKLOAD" "$REG/bench/$WORKLOAD:1")
    else
      s=$(timed skopeo copy -q --dest-tls-verify=false "oci:$WORK/layout" "docker://$REG/bench/$WORKLOAD:1")
    fi
    printf '%s\t%s\tpush\t%s\n' "$rep" "$tool" "$s" >>"$RAW"
  done
  # The registry now holds the image (pushed by the last tool): both pull the same blobs.
  for tool in $order; do
    rm -rf "$WORK/pull-root" "$WORK/pull-layout"
    if [[ $tool == kiln ]]; then
      s=$(timed "$KILN" --root "$WORK/pull-root" pull "$REG/bench/$WORKLOAD:1")
    else
      s=$(timed skopeo copy -q --src-tls-verify=false "docker://$REG/bench/$WORKLOAD:1" "oci:$WORK/pull-layout")
    fi
    printf '%s\t%s\tpull\t%s\n' "$rep" "$tool" "$s" >>"$RAW"
  done
  log "repetition $rep done"
done
stop_registry
rm -rf "$WORK/pull-root" "$WORK/pull-layout" "$WORK/registry"

python3 - "$RAW" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("| metric | kiln median (s) | skopeo median (s) | kiln/skopeo |")
print("|---|---|---|---|")
for metric in ("push", "pull"):
    med = {t: statistics.median(float(r["seconds"]) for r in rows if r["tool"] == t and r["metric"] == metric) for t in ("kiln", "skopeo")}
    print(f"| {metric} | {med['kiln']:.3f} | {med['skopeo']:.3f} | {med['kiln'] / med['skopeo']:.2f} |")
PY
log "raw: $RAW; load: $(cut -d' ' -f1-3 /proc/loadavg)"
