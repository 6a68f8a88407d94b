#!/usr/bin/env python3
"""Turns one bench/run.sh result directory into the Markdown report (stdout).

    report.py RESULT_DIR

Reads raw.tsv (one row per timed command), sizes.tsv and env.txt. Prints medians per
(workload, metric, tool), kiln/peer ratios, the issue's targets with "met"/"MISSED", peak
memory of cold builds, and archive sizes.
"""

import csv
import os
import statistics
import sys
from collections import defaultdict

# (workload, metric) -> target for kiln / BuildKit (issue 9). Exports compare with skopeo
# copying Docker's image, push with docker push, run with docker run: the buildkit column.
TARGETS = {
    ("app", "noop"): 0.15,
    ("bigctx", "noop"): 0.15,
    ("app", "cold"): 0.4,
    ("chain40", "cold"): 0.15,
    ("stages", "cold"): 0.6,
    ("bigctx", "cold"): 0.5,
    ("bigctx", "edit"): 0.2,
    ("app", "export-gz"): 0.5,
    ("bigctx", "export-gz"): 0.5,
    ("app", "push"): 0.3,
    ("bigctx", "push"): 0.3,
    # issue 22 tightened this from issue 9's 0.1
    ("container", "run"): 0.06,
}
MEM_TARGET_MIB = 150  # peak memory of a cold build of the big context
METRIC_ORDER = ["cold", "noop", "edit", "export-tar", "export-gz", "export-zstd", "push", "run",
                "run-init", "run-port"]
BASE_TOOLS = ["kiln", "buildkit", "legacy", "buildah"]


def load(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def fmt_s(x):
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def main():
    out = sys.argv[1]
    rows = load(os.path.join(out, "raw.tsv"))
    env = open(os.path.join(out, "env.txt")).read().strip().splitlines()

    times = defaultdict(list)
    rss = defaultdict(list)
    daemon = defaultdict(list)
    status = {}
    loads = []
    order = []
    tools_seen = []
    for r in rows:
        key = (r["workload"], r["metric"], r["tool"])
        wm = (r["workload"], r["metric"])
        if wm not in order:
            order.append(wm)
        if r["tool"] not in tools_seen:
            tools_seen.append(r["tool"])
        st = r["status"]
        if st == "ok":
            times[key].append(float(r["wall_s"]))
            if r["rss_kb"] not in ("-", ""):
                rss[key].append(int(r["rss_kb"]))
            if r["daemon_kb"] not in ("-", ""):
                daemon[key].append(int(r["daemon_kb"]))
            if r["load1"] not in ("-", ""):
                loads.append(float(r["load1"]))
        elif key not in status or status[key] == "ok":
            status[key] = st
        status.setdefault(key, "ok")
    tools = [t for t in BASE_TOOLS if t in tools_seen] + [t for t in tools_seen if t not in BASE_TOOLS]
    peers = [t for t in tools if not t.startswith("kiln")]
    # kiln-<compression> variants and kilnbase (an older binary): compared with BuildKit only,
    # to keep the table narrow
    variants = ([t for t in tools if t.startswith("kiln") and t != "kiln"]
                if "buildkit" in tools else [])
    order.sort(key=lambda wm: METRIC_ORDER.index(wm[1]) if wm[1] in METRIC_ORDER else 99)
    workloads = []
    for w, _ in order:
        if w not in workloads:
            workloads.append(w)

    def median(key):
        v = times.get(key)
        return statistics.median(v) if v else None

    def cell(key):
        m = median(key)
        if m is not None:
            n = len(times[key])
            return f"{fmt_s(m)}" + ("" if n > 1 else " (n=1)")
        st = status.get(key)
        if st == "NA":
            return "n/a (not implemented)"
        if st and st.startswith("FAIL"):
            return "failed: " + st[5:][:60].replace("|", "/")
        return "—"

    print("# kiln benchmark results\n")
    for line in env:
        print(f"- {line}")
    if loads:
        print(f"- load average (1 min) seen by the timed commands: median {statistics.median(loads):.1f}, "
              f"max {max(loads):.1f}")
    print()
    print("Median wall-clock seconds per case; ratio = kiln median / peer median (< 1: kiln is faster). "
          "Target = the issue's goal for kiln/BuildKit (exports: vs skopeo copying Docker's image; "
          "push: vs docker push; run: vs docker run).\n")
    head = (["workload", "metric"] + tools + [f"kiln/{p}" for p in peers]
            + [f"{v}/buildkit" for v in variants] + ["target", "verdict"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for w in workloads:
        for m in METRIC_ORDER:
            if (w, m) not in order:
                continue
            cells = [w, m] + [cell((w, m, t)) for t in tools]
            k = median((w, m, "kiln"))
            for p in peers:
                pm = median((w, m, p))
                cells.append(f"{k / pm:.2f}" if k is not None and pm else "—")
            for v in variants:
                vm, bk = median((w, m, v)), median((w, m, "buildkit"))
                cells.append(f"{vm / bk:.2f}" if vm is not None and bk else "—")
            target = TARGETS.get((w, m))
            verdict = ""
            if target is not None:
                bk = median((w, m, "buildkit"))
                if k is not None and bk:
                    verdict = "met" if k / bk <= target else "**MISSED**"
                elif status.get((w, m, "kiln")) == "NA":
                    verdict = "not measurable (kiln lacks the command)"
                else:
                    verdict = "not measured"
            cells += [f"≤ {target}" if target is not None else "", verdict]
            print("| " + " | ".join(cells) + " |")
    print()

    print("## Peak memory of cold builds (MiB)\n")
    print("Largest RSS of the build command's process tree (/usr/bin/time); for Docker the "
          "builder runs inside dockerd, so its peak RSS (VmHWM, reset before each build) is given "
          "after the slash. The client and the daemon's pre-existing memory are both included.\n")
    print("| workload | " + " | ".join(tools) + " |")
    print("|---|" + "---|" * len(tools))
    for w in workloads:
        if (w, "cold") not in order:
            continue
        cells = [w]
        for t in tools:
            c = rss.get((w, "cold", t))
            d = daemon.get((w, "cold", t))
            if not c:
                cells.append("—")
                continue
            s = f"{max(c) / 1024:.0f}"
            if d:
                s += f" / {max(d) / 1024:.0f}"
            cells.append(s)
        print("| " + " | ".join(cells) + " |")
    kb = rss.get(("bigctx", "cold", "kiln"))
    if kb:
        peak = max(kb) / 1024
        print(f"\nkiln's peak during the big-context cold build: {peak:.0f} MiB "
              f"(target ≤ {MEM_TARGET_MIB} MiB: {'met' if peak <= MEM_TARGET_MIB else '**MISSED**'}).")
    print()

    sizes_path = os.path.join(out, "sizes.tsv")
    if os.path.exists(sizes_path):
        sizes = defaultdict(list)
        for line in open(sizes_path):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 4:
                sizes[tuple(parts[:3])].append(int(parts[3]))
        print("## Archive sizes (MiB)\n")
        print("| workload | metric | " + " | ".join(tools) + " |")
        print("|---|---|" + "---|" * len(tools))
        for w in workloads:
            for m in ("export-tar", "export-gz", "export-zstd"):
                if (w, m) not in order:
                    continue
                cells = [w, m] + [f"{sizes[(w, m, t)][-1] / 2**20:.1f}" if sizes.get((w, m, t)) else "—"
                                  for t in tools]
                print("| " + " | ".join(cells) + " |")
        print()

    print("## Runs per case\n")
    counts = sorted({(w, m, t, len(v)) for (w, m, t), v in times.items()})
    by_n = defaultdict(int)
    for *_, n in counts:
        by_n[n] += 1
    print(", ".join(f"{c} cases with n={n}" for n, c in sorted(by_n.items())) + ". Raw rows: raw.tsv.")


if __name__ == "__main__":
    main()
