#!/usr/bin/env bash
# Where a kiln cold build spends its time: wall/CPU split, per-step durations, and the
# hottest functions (perf, on-CPU samples of kiln and everything it starts).
#
#   bench/profile.sh WORKLOAD [extra kiln build flags...]     e.g. bench/profile.sh bigctx
#
# Uses the context run.sh staged under $BENCH_STATE/ctx/WORKLOAD and a store of its own
# ($BENCH_STATE/kiln-root-profile), so it never disturbs a benchmark's caches. On a shared
# machine wall time is CPU time stretched by the load; the CPU profile is what is stable.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(cd "$(dirname "$0")" && pwd)/lib/common.sh"

w=${1:?usage: bench/profile.sh WORKLOAD [kiln build flags]}
shift
ctx=$STATE/ctx/$w
[[ -f $ctx/Dockerfile ]] || die "no staged context at $ctx: run bench/run.sh (or QUICK=1 WORKLOADS=$w) first"
command -v perf >/dev/null || die "perf is not installed (apt-get install linux-perf)"
root=$STATE/kiln-root-profile
out=$STATE/profile/$w
mkdir -p "$out"
k() { "$KILN" --root "$root" "$@"; }
k inspect busybox >/dev/null 2>&1 || k import "$BASE_TAR" busybox -c 'CMD ["sh"]' -c "ENV $BASE_PATH_ENV" >/dev/null
imgs=$(k images | awk 'NR > 1 && $1 ~ /^bench\// {print $1 ":" $2}')
[[ -z $imgs ]] || k rmi $imgs >/dev/null
k builder prune --all >/dev/null
rm -rf "$root/context-cache"

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f 'wall %e s, user %U s, sys %S s, peak RSS %M KiB' -o "$out/time.txt" \
  perf record -q -F 499 -g -o "$out/perf.data" -- \
  "$KILN" --root "$root" build --progress plain "$@" -t "bench/$w:profile" "$ctx" >"$out/progress.txt" 2>&1
cat "$out/time.txt"
echo "steps:"
awk '$2 ~ /^\[/ {name[$1] = substr($0, length($1) + 2, 90)} $2 == "DONE" {printf "  %-7s %s\n", $3, name[$1]}' "$out/progress.txt"
echo "hottest functions (self time, all threads and children):"
perf report -i "$out/perf.data" --no-children --sort comm,dso,sym --stdio 2>/dev/null |
  grep -E '^ +[0-9.]+%' | head -15
log "perf data: $out/perf.data (perf report -i $out/perf.data)"
