#!/usr/bin/env bash
# kiln's benchmark: kiln against BuildKit (Docker's builder) and Buildah on the same machine,
# in the same run, interleaved, reported as medians and kiln/peer ratios.
#
#   cargo build --release -p kiln-cli && sudo bench/run.sh          # the whole comparison
#   QUICK=1 sudo bench/run.sh                                        # smoke run (~2 min)
#
# It installs and starts the peers where missing (bench/lib/peers.sh: Debian's docker.io with
# a private dockerd, buildah with private storage, a loopback registry), imports the same
# busybox base into every tool, then for every workload and metric runs one untimed warm-up
# per tool and REPS timed repetitions interleaved across tools (kiln buildkit buildah kiln
# buildkit buildah ...), so that load from other processes hits every tool alike. Each timed
# command runs under /usr/bin/time (peak RSS of the command's process tree); for BuildKit,
# whose work happens inside dockerd, the daemon's peak RSS is recorded too.
#
# Knobs (environment):
#   QUICK=1              1 repetition, no warm-up, workloads "app edit", exports on "app"
#   WORKLOADS="..."      default: app stages bigctx chain40 edit
#   TOOLS="..."          default: kiln buildkit buildah (also: legacy = DOCKER_BUILDKIT=0, and
#                        kiln-<compression>, e.g. kiln-uncompressed or kiln-zstd: kiln with that
#                        --compression and a store of its own; and kilnbase: the kiln binary
#                        KILN_BASE, e.g. the build before a change, with a store of its own)
#   METRICS="..."        default: cold noop edit export-tar export-gz export-zstd push run run-init run-port
#   REPS=N               timed repetitions per case (default 3; bench.env may scale it down)
#   WARMUP=N             untimed warm-up runs per tool and case (default 1; bench.env may lower it)
#   EXPORT_WORKLOADS     workloads that get export/push cases (default: app bigctx)
#   KILN=path            the kiln binary (default: $CARGO_TARGET_DIR/release/kiln)
#   KILN_BASE=path       the binary of the kilnbase tool (a before/after comparison in one run)
#   KILN_EXPORT_GZ, KILN_EXPORT_ZSTD, KILN_PUSH, KILN_RUN
#                        override kiln's command templates (placeholders below); by default
#                        they are derived from `kiln --help` at run time, and a command kiln
#                        does not have shows as "n/a (not implemented)"
#   BENCH_STATE=dir      state (default /var/tmp/kiln-bench); KEEP_PEERS=1 leaves daemons up
#   OUT_MD=file          where the Markdown report goes (default $STATE/results/<stamp>/report.md)
# Placeholders in templates: {tag} {dockerfile} {context} {out} {ref} {image}
set -uo pipefail
# shellcheck source=lib/common.sh
source "$(cd "$(dirname "$0")" && pwd)/lib/common.sh"

QUICK=${QUICK:-0}
if ((QUICK)); then
  WORKLOADS=${WORKLOADS:-app edit}
  EXPORT_WORKLOADS=${EXPORT_WORKLOADS:-app}
  REPS=${REPS:-1}
  WARMUP=0
else
  WORKLOADS=${WORKLOADS:-app stages bigctx chain40 edit}
  EXPORT_WORKLOADS=${EXPORT_WORKLOADS:-app bigctx}
  REPS=${REPS:-3}
  WARMUP=${WARMUP:-1}
fi
TOOLS=${TOOLS:-kiln buildkit buildah}
METRICS=${METRICS:-cold noop edit export-tar export-gz export-zstd push run run-init run-port}
want() { [[ " $METRICS " == *" $1 "* ]]; }
T_CMD=${T_CMD:-900}
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=$STATE/results/$STAMP
OUT_MD=${OUT_MD:-$OUT/report.md}
RAW=$OUT/raw.tsv
mkdir -p "$OUT/logs" "$OUT/tmp" "$STATE/ctx"
[[ $(id -u) == 0 ]] || die "run as root (namespaces, overlayfs, dockerd)"
if [[ " $TOOLS " == *" kiln "* && ! -x $KILN ]]; then
  die "no kiln binary at $KILN (cargo build --release -p kiln-cli, or KILN=path)"
fi

"$BENCH_DIR/lib/peers.sh" || die "peer setup failed"
# common.sh again: peers.sh may just have chosen buildah's storage driver
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"

stop_peers() {
  if [[ ${KEEP_PEERS:-0} != 1 ]]; then "$BENCH_DIR/stop.sh"; fi
}
trap stop_peers EXIT

# ------------------------------------------------------------------ kiln's commands
# The commands kiln has today decide which cases it can run; what it lacks is reported as
# "n/a (not implemented)" rather than left out, so the table shows the gap.
KILN_HELP=$("$KILN" --help 2>&1 || true)
kiln_has() { grep -qE "^  $1( |$)" <<<"$KILN_HELP"; }
KILN_BUILD_HELP=$("$KILN" build --help 2>&1 || true)
if [[ -z ${KILN_EXPORT_GZ+x} ]]; then
  KILN_EXPORT_GZ=""
  KILN_EXPORT_ZSTD=${KILN_EXPORT_ZSTD:-}
  # The OCI archive exporter lives on `build -o` (as with buildx): a cached rebuild that
  # writes the archive, the same work as copying an existing image out.
  if grep -q 'type=oci' <<<"$KILN_BUILD_HELP" && grep -q -- '--compression' <<<"$KILN_BUILD_HELP"; then
    KILN_EXPORT_GZ="$KILN --root $KILN_ROOT build -q --compression gzip -o type=oci,dest={out} -t {tag} -f {dockerfile} {context}"
    KILN_EXPORT_ZSTD="$KILN --root $KILN_ROOT build -q --compression zstd -o type=oci,dest={out} -t {tag} -f {dockerfile} {context}"
  fi
fi
KILN_EXPORT_ZSTD=${KILN_EXPORT_ZSTD:-}
if [[ -z ${KILN_PUSH+x} ]]; then
  KILN_PUSH=""
  if kiln_has push; then
    flags=""
    push_help=$("$KILN" push --help 2>&1)
    grep -q -- '--insecure' <<<"$push_help" && flags=" --insecure"
    grep -q -- '--tls-verify' <<<"$push_help" && flags=" --tls-verify=false"
    KILN_PUSH="$KILN --root $KILN_ROOT push$flags {tag} {ref}"
  fi
fi
if [[ -z ${KILN_RUN+x} ]]; then
  KILN_RUN=""
  kiln_has run && KILN_RUN="$KILN --root $KILN_ROOT run --rm {image} true"
fi
# run-init and run-port (issue 22): the same with --init, and with a port published on a
# random host port (kiln's default bridge and userspace proxy; Docker's bridge and docker-proxy)
KILN_RUN_INIT=""
KILN_RUN_PORT=""
if [[ -n $KILN_RUN ]] && "$KILN" run --help 2>&1 | grep -q -- '--init'; then
  KILN_RUN_INIT="$KILN --root $KILN_ROOT run --rm --init {image} true"
  KILN_RUN_PORT="$KILN --root $KILN_ROOT run --rm -p 80 {image} true"
fi
KILN_EXPORT_TAR=""
kiln_has save && KILN_EXPORT_TAR="$KILN --root $KILN_ROOT save -o {out} {tag}"

# ------------------------------------------------------------------ peers' commands
# tpl TOOL CASE -> a command template, empty when the tool cannot do it
tpl() {
  local tool=$1 case=$2
  case $tool:$case in
  kiln:build) echo "$KILN --root $KILN_ROOT build -q -t {tag} -f {dockerfile} {context}" ;;
  kiln:reset) echo "kiln_reset" ;;
  kiln:export-tar) echo "$KILN_EXPORT_TAR" ;;
  kiln:export-gz) echo "$KILN_EXPORT_GZ" ;;
  kiln:export-zstd) echo "$KILN_EXPORT_ZSTD" ;;
  kiln:push) echo "$KILN_PUSH" ;;
  kiln:run) echo "$KILN_RUN" ;;
  kiln:run-init) echo "$KILN_RUN_INIT" ;;
  kiln:run-port) echo "$KILN_RUN_PORT" ;;
  kilnbase:build) echo "$KILN_BASE --root $KILN_ROOT-base build -q -t {tag} -f {dockerfile} {context}" ;;
  kilnbase:reset) echo "kiln_reset $KILN_ROOT-base" ;;
  # the run cases for a before/after comparison of kiln run itself (the base binary's flags
  # are assumed to be today's)
  kilnbase:run) [[ -z $KILN_RUN ]] || echo "$KILN_BASE --root $KILN_ROOT-base run --rm {image} true" ;;
  kilnbase:run-init) [[ -z $KILN_RUN_INIT ]] || echo "$KILN_BASE --root $KILN_ROOT-base run --rm --init {image} true" ;;
  kilnbase:run-port) [[ -z $KILN_RUN_PORT ]] || echo "$KILN_BASE --root $KILN_ROOT-base run --rm -p 80 {image} true" ;;
  kiln-*:build)
    echo "$KILN --root $KILN_ROOT-${tool#kiln-} build -q --compression ${tool#kiln-} -t {tag} -f {dockerfile} {context}" ;;
  kiln-*:reset) echo "kiln_reset $KILN_ROOT-${tool#kiln-}" ;;
  buildkit:build) echo "DOCKER_BUILDKIT=1 $DOCKER build -q -t {tag} -f {dockerfile} {context}" ;;
  legacy:build) echo "DOCKER_BUILDKIT=0 $DOCKER build -q -t {tag} -f {dockerfile} {context}" ;;
  buildkit:reset | legacy:reset) echo "docker_reset" ;;
  buildkit:export-tar | legacy:export-tar) echo "$DOCKER save -o {out} {tag}" ;;
  # Docker 20.10 cannot write OCI archives itself: skopeo copies Docker's image out (the
  # baseline the issue names), compressing every layer
  buildkit:export-gz | legacy:export-gz)
    echo "skopeo copy -q --src-daemon-host $DOCKER_HOST docker-daemon:{tag} oci-archive:{out}" ;;
  buildkit:export-zstd | legacy:export-zstd)
    echo "skopeo copy -q --dest-compress-format zstd --src-daemon-host $DOCKER_HOST docker-daemon:{tag} oci-archive:{out}" ;;
  buildkit:push | legacy:push) echo "$DOCKER tag {tag} {ref} && $DOCKER push -q {ref}" ;;
  buildkit:run | legacy:run) echo "$DOCKER run --rm {image} true" ;;
  buildkit:run-init | legacy:run-init) echo "$DOCKER run --rm --init {image} true" ;;
  buildkit:run-port | legacy:run-port) echo "$DOCKER run --rm -p 80 {image} true" ;;
  # --jobs 4: buildah's stages run in parallel only when asked. --network host, as kiln's RUN
  # steps: buildah's default network sets up a CNI bridge (cni-podman0, 10.88.0.0/16) with
  # firewall rules on the host and leaves them there.
  buildah:build) echo "$BUILDAH bud -q --pull=never --layers --jobs 4 --network host -t {tag} -f {dockerfile} {context}" ;;
  buildah:reset) echo "buildah_reset" ;;
  buildah:export-tar) echo "$BUILDAH push -q {tag} docker-archive:{out}" ;;
  buildah:export-gz) echo "$BUILDAH push -q {tag} oci-archive:{out}" ;;
  buildah:export-zstd) echo "$BUILDAH push -q --compression-format zstd {tag} oci-archive:{out}" ;;
  buildah:push) echo "$BUILDAH push -q --tls-verify=false {tag} docker://{ref}" ;;
  # buildah has no `run --rm IMAGE`: create a working container, run, remove it
  buildah:run) echo "c=\$($BUILDAH from -q --pull=never {image}) && $BUILDAH run --network none \$c true; r=\$?; $BUILDAH rm \$c >/dev/null; exit \$r" ;;
  esac
}

# expand TEMPLATE TOOL WORKLOAD
expand() {
  local s=$1 tool=$2 w=$3 ctx=$STATE/ctx/$3
  s=${s//\{tag\}/bench/$w:$tool}
  s=${s//\{dockerfile\}/$ctx/Dockerfile}
  s=${s//\{context\}/$ctx}
  s=${s//\{out\}/$OUT/tmp/$w-$tool.tar}
  s=${s//\{ref\}/$REGISTRY/bench/$w-$tool:latest}
  s=${s//\{image\}/busybox}
  echo "$s"
}

# ------------------------------------------------------------------ resets (untimed)
# Cold = every build cache and bench image of that tool gone, the base image kept.
kiln_reset() { # [ROOT]
  local root=${1:-$KILN_ROOT} imgs
  imgs=$("$KILN" --root "$root" images 2>/dev/null | awk 'NR > 1 && $1 ~ /^bench\// {print $1 ":" $2}')
  [[ -z $imgs ]] || "$KILN" --root "$root" rmi $imgs >/dev/null
  "$KILN" --root "$root" builder prune --all >/dev/null
  # the context stat cache is not build cache to `prune`, but a cold build must hash the
  # context from scratch, as BuildKit does after `builder prune -af`
  rm -rf "$root/context-cache"
}
docker_reset() {
  local imgs
  imgs=$("$DOCKER" images --format '{{.Repository}}:{{.Tag}}' | grep -E "^(bench/|$REGISTRY/bench/)" || true)
  [[ -z $imgs ]] || "$DOCKER" rmi -f $imgs >/dev/null
  "$DOCKER" container prune -f >/dev/null
  "$DOCKER" image prune -f >/dev/null
  "$DOCKER" builder prune -af >/dev/null
}
buildah_reset() {
  $BUILDAH rm -a >/dev/null 2>&1
  local base keep
  base=$($BUILDAH images -q --no-trunc docker.io/library/busybox:latest)
  # two passes: an image still referenced by a child goes in the second
  for _ in 1 2; do
    keep=$($BUILDAH images -a -q --no-trunc | sort -u | grep -v "^$base$" || true)
    [[ -z $keep ]] || $BUILDAH rmi -f $keep >/dev/null 2>&1
  done
}
export -f kiln_reset docker_reset buildah_reset kiln
# kiln variants with their own store need the base image too
for tool in $TOOLS; do
  if [[ $tool == kiln-* ]] && ! "$KILN" --root "$KILN_ROOT-${tool#kiln-}" inspect busybox >/dev/null 2>&1; then
    "$KILN" --root "$KILN_ROOT-${tool#kiln-}" import "$BASE_TAR" busybox -c 'CMD ["sh"]' -c "ENV $BASE_PATH_ENV" >/dev/null
  fi
done
if [[ " $TOOLS " == *" kilnbase "* ]]; then
  [[ -x ${KILN_BASE:-} ]] || die "TOOLS has kilnbase but KILN_BASE=${KILN_BASE:-} is not a kiln binary"
  "$KILN_BASE" --root "$KILN_ROOT-base" inspect busybox >/dev/null 2>&1 ||
    "$KILN_BASE" --root "$KILN_ROOT-base" import "$BASE_TAR" busybox -c 'CMD ["sh"]' -c "ENV $BASE_PATH_ENV" >/dev/null
fi
export KILN KILN_BASE KILN_ROOT DOCKER BUILDAH REGISTRY

# ------------------------------------------------------------------ measuring
printf 'workload\tmetric\ttool\trep\twall_s\trss_kb\tdaemon_kb\tload1\tstatus\n' >"$RAW"
daemon_pid() { [[ $1 == buildkit || $1 == legacy ]] && cat "$DOCKERD_DIR/pid" || echo -; }

# timed W METRIC TOOL REP CMD -> appends one row to raw.tsv; returns the command's status
timed() {
  local w=$1 m=$2 tool=$3 rep=$4 cmd=$5 dpid t0 t1 rc rss dmem=- load
  dpid=$(daemon_pid "$tool")
  # reset the daemon's high-water mark so VmHWM is this command's peak
  [[ $dpid != - ]] && echo 5 >"/proc/$dpid/clear_refs"
  load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%M' -o "$OUT/tmp/rss" timeout -k 5 "$T_CMD" bash -c "$cmd" \
    >>"$OUT/logs/$w.$m.$tool.log" 2>&1
  rc=$?
  t1=$EPOCHREALTIME
  rss=$(tail -n1 "$OUT/tmp/rss" 2>/dev/null)
  [[ $rss =~ ^[0-9]+$ ]] || rss=-
  [[ $dpid != - ]] && dmem=$(awk '/^VmHWM/{print $2}' "/proc/$dpid/status" 2>/dev/null)
  local st=ok
  ((rc == 0)) || st="FAIL:rc=$rc"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$m" "$tool" "$rep" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')" "$rss" "${dmem:--}" "$load" "$st" >>"$RAW"
  return $rc
}

untimed() { timeout -k 5 "$T_CMD" bash -c "$1" >>"$OUT/logs/$2.log" 2>&1; }

# case W METRIC PREPARE_KIND -- warm-up then REPS interleaved rounds over the tools
# PREPARE_KIND: reset (cold), none (noop), edit, rmout (exports), registry (push)
run_case() {
  local w=$1 m=$2 prep=$3 reps=$4 tool key cmd prepcmd rep
  declare -A failed=()
  key=build
  [[ $m == export-* || $m == push || $m == run* ]] && key=$m
  log "$w $m: warm-up $WARMUP, $reps timed, tools: $TOOLS"
  for ((rep = 1 - WARMUP; rep <= reps; rep++)); do
    for tool in $TOOLS; do
      [[ -n ${failed[$tool]:-} ]] && continue
      cmd=$(tpl "$tool" "$key")
      if [[ -z $cmd ]]; then
        printf '%s\t%s\t%s\t-\t-\t-\t-\t-\tNA\n' "$w" "$m" "$tool" >>"$RAW"
        failed[$tool]=na
        continue
      fi
      cmd=$(expand "$cmd" "$tool" "$w")
      case $prep in
      reset) prepcmd=$(tpl "$tool" reset) ;;
      edit) prepcmd="printf '# edit %s\n' \$EPOCHREALTIME >> $STATE/ctx/$w/$EDIT_FILE" ;;
      rmout) prepcmd="rm -f $(expand '{out}' "$tool" "$w")" ;;
      registry) prepcmd="rm -rf $REGISTRY_DIR/data/docker/registry/v2/repositories/bench/$w-$tool" ;;
      *) prepcmd=":" ;;
      esac
      untimed "$prepcmd" "$w.$m.$tool.prep" || log "  $tool: prepare failed (see $OUT/logs/$w.$m.$tool.prep.log)"
      if ((rep < 1)); then
        untimed "$cmd" "$w.$m.$tool.warmup" || {
          log "  $tool: warm-up failed (see $OUT/logs/$w.$m.$tool.warmup.log)"
          printf '%s\t%s\t%s\t0\t-\t-\t-\t-\tFAIL:%s\n' "$w" "$m" "$tool" \
            "$(grep -m1 -iE 'error|fail|not supported' "$OUT/logs/$w.$m.$tool.warmup.log" | cut -c1-140 | tr '\t' ' ')" >>"$RAW"
          failed[$tool]=1
        }
        continue
      fi
      if ! timed "$w" "$m" "$tool" "$rep" "$cmd"; then
        log "  $tool: failed (see $OUT/logs/$w.$m.$tool.log)"
        failed[$tool]=1
      fi
      if [[ $m == export-* ]]; then
        stat -c "$w	$m	$tool	%s" "$(expand '{out}' "$tool" "$w")" >>"$OUT/sizes.tsv" 2>/dev/null
        rm -f "$(expand '{out}' "$tool" "$w")"
      fi
    done
  done
  echo "$w $m: $(awk -F'\t' -v w="$w" -v m="$m" '$1==w && $2==m && $9=="ok" {printf "%s=%s ", $3, $5}' "$RAW")" >&2
}

# ------------------------------------------------------------------ environment
{
  echo "date: $(date -u -Is)"
  echo "host: $(uname -sr), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, root fs $(df -T "$STATE" | awk 'NR==2{print $2}')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  # KILN_COMMIT: say which commit the binary was built from when it is not this checkout
  echo "kiln: $KILN ($("$KILN" --version 2>/dev/null), built from ${KILN_COMMIT:-$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO_DIR" diff --quiet 2>/dev/null || echo '+uncommitted changes')})"
  [[ " $TOOLS " == *" kilnbase "* ]] && echo "kilnbase: $KILN_BASE (${KILN_BASE_COMMIT:-commit not given: KILN_BASE_COMMIT})"
  echo "docker: $("$DOCKER" version -f '{{.Server.Version}}') ($("$DOCKER" info -f '{{.Driver}}'), cgroup v$("$DOCKER" info -f '{{.CgroupVersion}}')); buildah: $(buildah --version | awk '{print $3}') ($BUILDAH_DRIVER); skopeo: $(skopeo --version | awk '{print $3}')"
  echo "mode: $( ((QUICK)) && echo "QUICK (1 run, no warm-up: a smoke test, not a measurement)" || echo "full: $REPS runs (scaled per workload) + $WARMUP warm-up, interleaved")"
  echo "tools: $TOOLS"
} >"$OUT/env.txt"
log "results in $OUT"

# ------------------------------------------------------------------ workloads
for w in $WORKLOADS; do
  src=$BENCH_DIR/workloads/$w
  [[ -f $src/Dockerfile ]] || {
    log "skip $w: no $src/Dockerfile"
    continue
  }
  EDIT_FILE="" GEN="" REPS_SCALE=1 WARMUP_W=$WARMUP
  # shellcheck disable=SC1091
  source "$src/bench.env"
  ctx=$STATE/ctx/$w
  if [[ -n $GEN ]]; then
    (cd "$src" && eval "${GEN//\{context\}/$ctx}") >"$OUT/logs/$w.gen.log" 2>&1 ||
      die "context generator of $w failed: $(tail -1 "$OUT/logs/$w.gen.log")"
  else
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp -a "$src/." "$ctx/"
    rm -f "$ctx/bench.env" "$ctx"/gen-*.sh
  fi
  log "$w: context $(du -sh --apparent-size "$ctx" | cut -f1), $(find "$ctx" -type f | wc -l) files"
  reps=$(((REPS + REPS_SCALE - 1) / REPS_SCALE))
  for tool in $TOOLS; do untimed "$(tpl "$tool" reset)" "$w.reset.$tool"; done
  saved_warmup=$WARMUP
  WARMUP=$WARMUP_W
  want cold && run_case "$w" cold reset "$reps"
  want noop && run_case "$w" noop none "$reps"
  if [[ -n $EDIT_FILE ]] && want edit; then
    cp -p "$ctx/$EDIT_FILE" "$OUT/tmp/editbak"
    run_case "$w" edit edit "$reps"
    # put the file back as it was (same bytes and mtime) for the next run of the bench
    cp -p "$OUT/tmp/editbak" "$ctx/$EDIT_FILE"
  fi
  if [[ " $EXPORT_WORKLOADS " == *" $w "* ]]; then
    # exports and pushes read the last build's image: rebuild (cached) so it matches the context
    for tool in $TOOLS; do untimed "$(expand "$(tpl "$tool" build)" "$tool" "$w")" "$w.rebuild.$tool"; done
    want export-tar && run_case "$w" export-tar rmout "$reps"
    want export-gz && run_case "$w" export-gz rmout "$reps"
    want export-zstd && run_case "$w" export-zstd rmout "$reps"
    want push && run_case "$w" push registry "$reps"
  fi
  WARMUP=$saved_warmup
  for tool in $TOOLS; do untimed "$(tpl "$tool" reset)" "$w.reset.$tool"; done
  # pushed blobs of random content pile up (GBs per run): drop the bench repositories
  rm -rf "$REGISTRY_DIR/data/docker/registry/v2/repositories/bench"
  timeout 300 docker-registry garbage-collect "$REGISTRY_DIR/config.yml" >/dev/null 2>&1 || true
done
want run && run_case container run none "$((REPS * 2))"
want run-init && run_case container run-init none "$((REPS * 2))"
want run-port && run_case container run-port none "$((REPS * 2))"
# The run cases made kiln's default bridge (and its firewall chains) on the host: give them back.
"$KILN" --root "$KILN_ROOT" network rm bridge >/dev/null 2>&1 || true
if [[ " $TOOLS " == *" kilnbase "* ]]; then
  "$KILN_BASE" --root "$KILN_ROOT-base" network rm bridge >/dev/null 2>&1 || true
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
python3 "$BENCH_DIR/lib/report.py" "$OUT" >"$OUT_MD" || die "report failed"
cat "$OUT_MD"
log "report: $OUT_MD (raw: $RAW)"
