#!/usr/bin/env bash
# Remote builds against local ones and against BuildKit, on the big-context workload (bigctx:
# 20,000 files, 500 MiB), over loopback, interleaved:
#
#   cargo build --release -p kiln-cli && sudo bench/remote/run.sh
#
# Per round: a no-op build with each of  kiln (local) | kiln --builder (remote) | buildctl
# (buildkitd), then one file of the context edited and a build with each again. Remote kiln
# and buildctl talk to their daemon through bench/remote/count-proxy.py, which counts the
# client's bytes on the wire the same way for both. Prints a Markdown table of medians.
#
# Knobs: REPS (default 5), FILES / MIB (default 20000 / 500), KILN (default
# target/release/kiln), STATE (default /var/tmp/kiln-bench-remote), BUILDKIT
# (default ../shared/tools/buildkit/buildkit.sh; without it the BuildKit column is left out),
# CASES (default "noop edit"; "noop" for the no-op alone). Local and remote alternate which
# goes first each round, and the ratio is also given as the median of per-round (paired)
# ratios, which a machine whose load drifts between rounds disturbs less.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
REPS=${REPS:-5}
CASES=${CASES:-noop edit}
FILES=${FILES:-20000}
MIB=${MIB:-500}
KILN=${KILN:-$repo/target/release/kiln}
STATE=${STATE:-/var/tmp/kiln-bench-remote}
BUILDKIT=${BUILDKIT:-$repo/../shared/tools/buildkit/buildkit.sh}
[ -x "$KILN" ] || { echo "no kiln binary at $KILN (cargo build --release -p kiln-cli)" >&2; exit 1; }
mkdir -p "$STATE"
ctx=$STATE/ctx-$FILES-$MIB
edit_file=$ctx/src/m07/p03/f00482.py
worker_port=${WORKER_PORT:-17710}
kiln_proxy=${KILN_PROXY:-17711}
bk_proxy=${BK_PROXY:-17712}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${have_bk:-}" ] && "$BUILDKIT" stop "$STATE/bk" || true
}
trap cleanup EXIT

# The context (deterministic; kept between runs).
if [ ! -f "$ctx/Dockerfile" ] || [ ! -f "$ctx.stamp" ]; then
  python3 "$repo/bench/lib/gen-context.py" "$ctx" --files "$FILES" --mib "$MIB" --seed 9 \
    --dockerfile "$repo/bench/workloads/bigctx/Dockerfile" >&2
fi

# The same busybox in every store.
rm -rf "$STATE/local" "$STATE/worker" "$STATE/counts-"*
bb=$STATE/busybox.tar
if [ ! -f "$bb" ]; then
  tmp=$(mktemp -d); mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/tmp"
  cp /usr/bin/busybox "$tmp/bin/busybox"
  for a in $("$tmp/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$tmp/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$tmp/etc/passwd"; printf 'root:x:0:\n' >"$tmp/etc/group"
  tar -C "$tmp" -cf "$STATE/rootfs.tar" . && rm -rf "$tmp"
  "$KILN" --root "$STATE/local" import "$STATE/rootfs.tar" busybox -c 'CMD ["sh"]' -c 'ENV PATH=/bin' >/dev/null
  "$KILN" --root "$STATE/local" save busybox -o "$bb"
fi
"$KILN" --root "$STATE/local" load -i "$bb" >/dev/null
"$KILN" --root "$STATE/worker" load -i "$bb" >/dev/null

"$KILN" --root "$STATE/worker" serve --addr "tcp://127.0.0.1:$worker_port" >"$STATE/worker.log" 2>&1 &
pids+=($!)
python3 "$here/count-proxy.py" "$kiln_proxy" "127.0.0.1:$worker_port" "$STATE/counts-kiln" &
pids+=($!)
if [ -x "$BUILDKIT" ] && command -v runc >/dev/null && command -v skopeo >/dev/null; then
  "$BUILDKIT" start "$STATE/bk" >&2 && have_bk=1
  bk_flags=$("$BUILDKIT" base "$bb" "$STATE/bk")
  python3 "$here/count-proxy.py" "$bk_proxy" "$STATE/bk/buildkitd.sock" "$STATE/counts-bk" &
  pids+=($!)
  "$BUILDKIT" ctl "$STATE/bk" --version >/dev/null # unpacks buildctl
  buildctl=${XDG_CACHE_HOME:-$HOME/.cache}/kiln-ref-buildkit-v0.24.0/buildctl
fi
sleep 1

now() { date +%s.%N; }
# Bytes the client sent on connections closed since the last call for this counts file, in
# $SENT (not echoed: a $(...) subshell would lose the line count it keeps).
declare -A seen=()
sent() {
  local file=$1
  sleep 0.3
  local lines; lines=$(wc -l <"$file" 2>/dev/null || echo 0)
  SENT=$(awk -v skip="${seen[$file]:-0}" 'NR > skip { s += $1 } END { print s + 0 }' "$file" 2>/dev/null || echo 0)
  seen[$file]=$lines
}
run_local() { "$KILN" --root "$STATE/local" build --progress quiet -t bench:local "$ctx" >/dev/null; }
run_remote() {
  "$KILN" --root "$STATE/local" build --progress quiet --builder "tcp://127.0.0.1:$kiln_proxy" \
    -t bench:remote --metadata-file "$STATE/remote-meta.json" "$ctx" >/dev/null 2>"$STATE/remote.err"
}
run_bk() {
  # shellcheck disable=SC2086
  "$buildctl" --addr "tcp://127.0.0.1:$bk_proxy" build --frontend dockerfile.v0 \
    --local context="$ctx" --local dockerfile="$ctx" $bk_flags --output type=image,name=bench:bk \
    >/dev/null 2>"$STATE/bk.err"
}

results=$STATE/results.tsv
: >"$results"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"; }
timed() { local t0 t1; t0=$(now); "$@"; t1=$(now); echo "$t1 - $t0" | bc -l; }

echo "cold builds (not timed)..." >&2
run_local; run_remote; sent "$STATE/counts-kiln"
[ -n "${have_bk:-}" ] && { run_bk; sent "$STATE/counts-bk"; }
# One case with each tool; odd rounds run local first, even rounds remote first.
one_case() {
  local case=$1 round=$2 t
  if [ $((round % 2)) = 1 ]; then record "$case" local "$(timed run_local)" 0; fi
  t=$(timed run_remote); sent "$STATE/counts-kiln"; record "$case" remote "$t" "$SENT"
  if [ $((round % 2)) = 0 ]; then record "$case" local "$(timed run_local)" 0; fi
  if [ -n "${have_bk:-}" ]; then t=$(timed run_bk); sent "$STATE/counts-bk"; record "$case" buildkit "$t" "$SENT"; fi
}
for round in $(seq 1 "$REPS"); do
  echo "round $round/$REPS $(cut -d' ' -f1 /proc/loadavg)" >&2
  case " $CASES " in *" noop "*) one_case noop "$round" ;; esac
  case " $CASES " in *" edit "*)
    printf '// edit %s %s\n' "$round" "$(now)" >>"$edit_file"
    one_case edit "$round" ;;
  esac
done
uptime >&2

python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
def med(metric, tool, col):
    v = [float(r[col]) for r in rows if r[0] == metric and r[1] == tool]
    return statistics.median(v) if v else None
print("| case | kiln local (s) | kiln remote (s) | remote/local (medians) | remote/local (paired) | BuildKit buildctl (s) | remote bytes sent | BuildKit bytes sent | remote/BuildKit bytes |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
def paired(metric):
    l = [float(r[2]) for r in rows if r[0] == metric and r[1] == "local"]
    r = [float(r[2]) for r in rows if r[0] == metric and r[1] == "remote"]
    ratios = [b / a for a, b in zip(l, r) if a > 0]
    return (statistics.median(ratios), ratios) if ratios else (None, [])
for m in ("noop", "edit"):
    if med(m, "local", 2) is None:
        continue
    l, r, b = med(m, "local", 2), med(m, "remote", 2), med(m, "buildkit", 2)
    rb, bb = med(m, "remote", 3), med(m, "buildkit", 3)
    f = lambda x, d=2: "n/a" if x is None else f"{x:.{d}f}"
    ratio = "n/a" if not (l and r) else f"{r / l:.2f}"
    bratio = "n/a" if not (rb is not None and bb) else f"{rb / bb:.4f}"
    pm, ratios = paired(m)
    print(f"| {m} | {f(l)} | {f(r)} | {ratio} | {f(pm)} | {f(b)} | {f(rb, 0)} | {f(bb, 0)} | {bratio} |")
    print(f"<!-- {m} per-round remote/local: {' '.join(f'{x:.2f}' for x in ratios)} -->")
PY
