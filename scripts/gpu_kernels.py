#!/usr/bin/env python3
"""gpu_kernels.py - where a GPU training step's time goes, from Nsight
Compute's per-kernel durations (a device-side tool of scripts/gpu_check.sh,
like the PyTorch benchmark peers; not part of rnlua).

    ncu --clock-control none --metrics gpu__time_duration.sum --csv \
        ./rnlua scripts/bench_gpu.lua ... >ncu.csv
    python3 scripts/gpu_kernels.py ncu.csv --steps N [--step-ms MS]

Prints, per kernel name (template arguments cut), the launches and the
summed duration over the whole profiled run, the top entries by time, the
total kernel time per step (total / N: the run's warm-up and timed steps;
the first step's one-time work is included, so this is an upper bound), and
the kernels that convert between float32 and bfloat16 (rnlua's copy/convert
kernels with a bf16 type; PyTorch calls them "to_copy"), which the bf16 step
should not have. With --step-ms (the step time the benchmark measured
without the profiler), the ratio of step time to kernel time.
"""
import argparse
import csv
import re
import sys
from collections import defaultdict


def short(name):
    # "void (anonymous namespace)::copy_kernel<rnk::bf16, float>(...)" -> "copy_kernel<rnk::bf16, float>"
    n = name.strip().replace("(anonymous namespace)::", "")
    if n.endswith(")"):  # cut the argument list: back to the "(" that matches the last ")"
        depth = 0
        for i in range(len(n) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(n[i], 0)
            if depth == 0:
                n = n[:i]
                break
    n = re.sub(r"^void\s+", "", n)
    return n[:110]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--step-ms", type=float, default=0)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    rows = []
    with open(a.csv, newline="", errors="replace") as f:
        lines = [ln for ln in f if ln.startswith('"')]  # ncu's own log lines start otherwise
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        unit = r.get("Metric Unit", "ns")
        try:
            v = float(r["Metric Value"].replace(",", ""))
        except (KeyError, ValueError):
            continue
        scale = {"ns": 1e-6, "nsecond": 1e-6, "usecond": 1e-3, "us": 1e-3, "msecond": 1.0, "ms": 1.0}.get(unit, 1e-6)
        rows.append((short(r.get("Kernel Name", "?")), v * scale))
    if not rows:
        print("gpu_kernels: no kernel durations in", a.csv)
        return 1
    by = defaultdict(lambda: [0, 0.0])
    for n, ms in rows:
        by[n][0] += 1
        by[n][1] += ms
    total = sum(ms for _, ms in rows)
    print(f"gpu_kernels: {len(rows)} launches, {len(by)} kernels, {total:.3f} ms of kernel time "
          f"over {a.steps} step(s): {total / a.steps:.3f} ms per step")
    print(f"{'launches':>9} {'ms':>10} {'share':>6}  kernel")
    for n, (c, ms) in sorted(by.items(), key=lambda kv: -kv[1][1])[: a.top]:
        print(f"{c:9d} {ms:10.3f} {100 * ms / total:5.1f}%  {n}")
    conv = {n: v for n, v in by.items()
            if re.search(r"(copy|convert|cast|to_copy)", n, re.I) and re.search(r"(bf16|bfloat16|f32_to|to_bf)", n, re.I)}
    cn = sum(v[0] for v in conv.values())
    cms = sum(v[1] for v in conv.values())
    print(f"gpu_kernels: float32<->bfloat16 conversion kernels: {cn} launches, {cms:.3f} ms "
          f"({cn / a.steps:.1f} per step)")
    for n, (c, ms) in sorted(conv.items(), key=lambda kv: -kv[1][1])[:8]:
        print(f"    {c:7d} {ms:9.3f} ms  {n}")
    if a.step_ms > 0:
        per = total / a.steps
        print(f"gpu_kernels: step {a.step_ms:.3f} ms / kernels {per:.3f} ms per step = {a.step_ms / per:.2f}x "
              f"(target of issue 19: within 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
