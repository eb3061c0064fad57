#!/usr/bin/env python3
"""bench_cpu_torch.py - the PyTorch peer of scripts/bench_cpu.lua on the CPU
(the torch half of `make bench`; scripts/bench_cpu.sh runs both with the same
threads and repetitions and prints the comparison).

Model: build() of scripts/bench_gpu_torch.py, the seed ResNet (686,474
parameters as Keras counts them). Synthetic data, SGD lr 0.01 momentum 0.9
weight_decay 1e-4, CrossEntropyLoss, torch.set_num_threads(--threads).

Modes (the same names as bench_cpu.lua's):
  fp32-train   float32, NCHW and channels_last, at each --batches size
  bf16-train   torch.autocast("cpu", dtype=torch.bfloat16) + channels_last, first
               batch size; only where the CPU has AVX512-BF16 or AMX-BF16
  fp32-infer   model.eval() under torch.no_grad(), NCHW and channels_last,
               first batch size
Each figure: --warmup untimed steps, then --reps timed steps each timed
alone; images/s from the median step time. Printed per figure:
  RESULT torch <mode>-<nchw|cl> <batch> <images/s>     each variant
  RESULT torch <mode> <batch> <images/s>               the faster variant (the peer)
flushed at once, so a timeout keeps what finished.

  /usr/bin/python3 scripts/bench_cpu_torch.py [--threads N] [--reps 5] [--warmup 2]
      [--batches 128,512] [--modes fp32-train,bf16-train,fp32-infer]
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_capability(torch):
    """The ISA of torch's own CPU kernels (ATen's dispatch level)."""
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if get:
        return get()
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def load_build():
    spec = importlib.util.spec_from_file_location("bench_gpu_torch", os.path.join(HERE, "bench_gpu_torch.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def median_step(step, reps, warmup):
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def report(mode, bs, s):
    ips = bs / s
    print(f"torch {mode:<16} batch {bs:4d}: {1000 * s:8.1f} ms/step, {ips:8.1f} images/s", flush=True)
    print(f"RESULT torch {mode} {bs} {ips:.3f}", flush=True)
    return ips


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batches", default="128,512")
    ap.add_argument("--modes", default="fp32-train,bf16-train,fp32-infer")
    a = ap.parse_args()
    if a.threads < 1 or a.reps < 1 or a.warmup < 0:
        ap.error("--threads and --reps must be >= 1, --warmup >= 0")
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in ("fp32-train", "bf16-train", "fp32-infer"):
            ap.error(f"unknown mode {m!r} (valid: fp32-train, bf16-train, fp32-infer)")
    batches = [int(b) for b in a.batches.split(",") if b]
    if not batches or min(batches) < 1:
        ap.error("--batches: a comma-separated list of positive integers")
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - the driver prints the reason
        print(f"bench_cpu_torch: torch: not available ({type(e).__name__}: {e})", flush=True)
        return 3
    build = load_build()
    torch.set_num_threads(a.threads)
    flags = cpu_flags()
    m0 = build(torch)
    nparams = sum(p.numel() for p in m0.parameters()) + sum(
        b.numel() for n, b in m0.named_buffers() if n.endswith(("running_mean", "running_var")))
    del m0
    print(f"bench_cpu_torch: torch {torch.__version__} ({sys.executable}), {torch.get_num_threads()} thread(s), "
          f"mkldnn {'on' if torch.backends.mkldnn.is_available() else 'off'}, {nparams} parameters (Keras count), "
          f"{a.warmup} warm-up + {a.reps} timed steps per figure (median)", flush=True)
    print(f"ISA torch {cpu_capability(torch)} onednn-cap={os.environ.get('ONEDNN_MAX_CPU_ISA') or 'none'}", flush=True)
    lossf = torch.nn.CrossEntropyLoss()

    def make(cl):
        torch.manual_seed(1)
        model = build(torch)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        return model

    def data(bs, cl):
        x = torch.randn(bs, 3, 32, 32)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, 10, (bs,))

    def train(variant, bs, bf16=False):
        cl = variant == "cl"
        model = make(cl)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        x, y = data(bs, cl)

        def step():
            opt.zero_grad(set_to_none=True)
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = lossf(model(x), y)
            else:
                loss = lossf(model(x), y)
            loss.backward()
            opt.step()

        return median_step(step, a.reps, a.warmup)

    def infer(variant, bs):
        cl = variant == "cl"
        model = make(cl)
        model.eval()
        x, _ = data(bs, cl)

        def step():
            with torch.no_grad():
                model(x)

        return median_step(step, a.reps, a.warmup)

    def both(mode, bs, fn):
        best = 0.0
        for variant in ("nchw", "cl"):
            try:
                best = max(best, report(f"{mode}-{variant}", bs, fn(variant, bs)))
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"torch {mode}-{variant} batch {bs}: failed: {type(e).__name__}: {e}", flush=True)
        if best > 0:
            print(f"RESULT torch {mode} {bs} {best:.3f}", flush=True)

    if "fp32-train" in modes:
        for bs in batches:
            both("fp32-train", bs, train)
    if "bf16-train" in modes:
        cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or "ALL").upper()
        if not ({"avx512_bf16", "amx_bf16"} & flags):
            print("torch bf16-train: skipped (this CPU has neither AVX512-BF16 nor AMX-BF16)", flush=True)
        elif cap not in ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX"):
            print(f"torch bf16-train: skipped (ONEDNN_MAX_CPU_ISA={cap} leaves no bf16 instructions)", flush=True)
        else:
            try:
                ips = report("bf16-train-cl", batches[0], train("cl", batches[0], bf16=True))
                print(f"RESULT torch bf16-train {batches[0]} {ips:.3f}", flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"torch bf16-train batch {batches[0]}: failed: {type(e).__name__}: {e}", flush=True)
    if "fp32-infer" in modes:
        both("fp32-infer", batches[0], infer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
