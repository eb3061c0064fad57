#!/usr/bin/env python3
"""bench_arch_torch.py - the PyTorch peer of scripts/bench_arch.lua: the same
example architectures at the same sizes (32x32x3, 10 classes), Adam lr 1e-3,
cross-entropy, synthetic data already on the device; the median of --reps
training steps after --warmup. Prints per model "RESULT torch <model> <batch>
<images/s>" (on the CPU in fp32, the faster of NCHW and channels_last for the
convolutional ones), flushed at once.

  python3 scripts/bench_arch_torch.py [--reps 5] [--warmup 2] [--batch 64] [--threads N]
      [--models a,b] [--device cpu|cuda] [--precision fp32,bf16] [--budget SECONDS]

--device cuda: cudnn.benchmark on, TF32 off (rnlua's strict float32), each
step closed by torch.cuda.synchronize(); exits 1 without a device. The model
field is then <model>-<device>-<precision> (as bench_arch.lua prints its
peers), as on the CPU when --precision is given. fp32: eager NCHW on the GPU;
bf16: torch.amp.autocast bfloat16, channels_last for the convolutional
models. --budget: the runs share it as in bench_arch.lua (a run stops its
steps when its share is spent, at least one timed step; a run that would
start after it is skipped). Runs with Debian's torch 1.13 on the CPU and
PyTorch 2.x on the GPU.
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin, cout, k, stride=1, groups=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(act())
    return nn.Sequential(*layers)


class InvRes(nn.Module):
    def __init__(self, cin, cout, stride, exp):
        super().__init__()
        mid = cin * exp
        layers = [conv_bn(cin, mid, 1, act=nn.ReLU6)] if exp != 1 else []
        layers += [conv_bn(mid, mid, 3, stride, groups=mid, act=nn.ReLU6), conv_bn(mid, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.res else y


def mobilenet_v2(classes=10):
    spec = [(16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (32, 1, 6), (64, 2, 6), (64, 1, 6),
            (64, 1, 6), (64, 1, 6), (96, 1, 6), (96, 1, 6), (96, 1, 6), (160, 2, 6), (160, 1, 6), (160, 1, 6),
            (320, 1, 6)]
    layers, cin = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
    for f, s, e in spec:
        layers.append(InvRes(cin, f, s, e))
        cin = f
    layers += [conv_bn(cin, 1280, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes)]
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride, groups, wpg):
        super().__init__()
        width, out = planes * wpg // 64 * groups, planes * 4
        self.body = nn.Sequential(conv_bn(cin, width, 1), conv_bn(width, width, 3, stride, groups),
                                  conv_bn(width, out, 1, act=None))
        self.short = conv_bn(cin, out, 1, stride, act=None) if stride != 1 or cin != out else nn.Identity()

    def forward(self, x):
        return F.relu(self.body(x) + self.short(x))


def resnext(classes=10):
    layers, cin = [conv_bn(3, 32, 3)], 32
    for s, planes in enumerate([32, 64, 128]):
        layers.append(Bottleneck(cin, planes, 2 if s > 0 else 1, 8, 4))
        cin = planes * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


class DenseLayer(nn.Module):
    def __init__(self, cin, g):
        super().__init__()
        self.f = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * g, 1, bias=False),
                               nn.BatchNorm2d(4 * g), nn.ReLU(), nn.Conv2d(4 * g, g, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.f(x)], 1)


def densenet(classes=10, blocks=(4, 4, 4), g=12):
    layers, c = [nn.Conv2d(3, 2 * g, 3, padding=1, bias=False)], 2 * g
    for i, n in enumerate(blocks):
        for _ in range(n):
            layers.append(DenseLayer(c, g))
            c += g
        if i < len(blocks) - 1:
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
            c //= 2
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*layers)


class ViT(nn.Module):
    def __init__(self, classes=10, patch=4, dim=128, depth=4, heads=4, mlp=256, size=32):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        n = (size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, mlp, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True, layer_norm_eps=1e-6)
        # no nested-tensor fast path (inference only; PyTorch 2.x warns that norm_first excludes it)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


MODELS = [("mobilenet_v2", mobilenet_v2, True), ("resnext", resnext, True), ("densenet", densenet, True),
          ("vit", ViT, False)]


def time_run(a, dev, ctor, prec, cl, deadline):
    """One run: (median s/step, mean s/step, warm-up steps done, timed steps done, last loss)."""
    torch.manual_seed(0)
    m = ctor().to(dev)
    x = torch.randn(a.batch, 3, 32, 32, device=dev)
    if cl:
        m, x = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch,), device=dev)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    cuda = dev.type == "cuda"

    def step():
        opt.zero_grad(set_to_none=True)
        if prec == "bf16":
            with torch.amp.autocast(dev.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(m(x), y)
        else:
            loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss

    def spent():
        return deadline is not None and time.perf_counter() >= deadline

    warm, loss = 0, None
    while warm < a.warmup and not spent():
        loss = step()
        warm += 1
    if cuda:
        torch.cuda.synchronize()
    ts = []
    while True:
        t0 = time.perf_counter()
        loss = step()
        if cuda:
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
        if len(ts) >= a.reps or spent():
            break
    return statistics.median(ts), sum(ts) / len(ts), warm, len(ts), loss.item()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--models", default="")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", default="")
    p.add_argument("--budget", type=float, default=0)
    a = p.parse_args()
    names = [n for n, _, _ in MODELS]
    only = [m for m in a.models.split(",") if m]
    for m in only:
        if m not in names:
            p.error(f"unknown model '{m}' ({', '.join(names)})")
    precs = [q for q in a.precision.split(",") if q] or ["fp32"]
    for q in precs:
        if q not in ("fp32", "bf16"):
            p.error(f"--precision takes fp32 and/or bf16 (comma list), not '{q}'")
    if a.reps < 1 or a.warmup < 0 or a.batch < 1 or a.budget < 0:
        p.error("--reps and --batch must be >= 1, --warmup and --budget >= 0")
    tagged = a.device == "cuda" or bool(a.precision)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if a.device == "cuda":
        if not torch.cuda.is_available():
            print("bench_arch_torch.py: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
            return 1
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        where = f"cuda ({torch.cuda.get_device_name(0)}, cuDNN {torch.backends.cudnn.version()}, TF32 off)"
    else:
        where = f"cpu, {torch.get_num_threads()} thread(s)"
    print(f"bench_arch_torch: torch {torch.__version__} on {where}, batch {a.batch}, {a.warmup} warm-up + "
          f"{a.reps} timed steps (median)" + (f", budget {a.budget:g}s" if a.budget else ""), flush=True)
    # one run per (model, precision, layout); the layouts of one model and
    # precision are the candidates of its one RESULT line (the faster)
    runs = []
    for name, ctor, conv in MODELS:
        if only and name not in only:
            continue
        for prec in precs:
            if not conv:
                layouts = [False]
            elif a.device == "cuda":
                layouts = [prec == "bf16"]  # fp32 eager NCHW; bf16 autocast channels_last
            else:
                layouts = [True] if prec == "bf16" else [False, True]
            tag = f"{name}-{a.device}-{prec}" if tagged else name
            for k, cl in enumerate(layouts):
                runs.append((tag, ctor, prec, cl, k == len(layouts) - 1))
    t_start = time.perf_counter()
    best = 0.0
    for k, (tag, ctor, prec, cl, last) in enumerate(runs):
        layout = "channels_last" if cl else "NCHW"
        deadline, skip = None, False
        if a.budget:
            left = a.budget - (time.perf_counter() - t_start)
            if left <= 0:
                print(f"torch {tag:<22} {layout:<13} batch {a.batch}: skipped (budget of {a.budget:g}s spent)",
                      flush=True)
                skip = True
            else:
                deadline = time.perf_counter() + left / (len(runs) - k)
        if not skip:
            try:
                med, mean, warm, n, loss = time_run(a, dev, ctor, prec, cl, deadline)
            except Exception as e:  # noqa: BLE001 - report and go on with the next run
                print(f"torch {tag:<22} {layout:<13} batch {a.batch}: failed: {type(e).__name__}: {e}", flush=True)
            else:
                cut = f", budget: {warm} warm-up, {n} timed" if warm < a.warmup or n < a.reps else ""
                print(f"torch {tag:<22} {layout:<13} batch {a.batch}: {med * 1000:8.2f} ms/step (mean "
                      f"{mean * 1000:.2f}), {a.batch / med:9.1f} images/s  (loss {loss:.4f}{cut})", flush=True)
                best = max(best, a.batch / med)
            if a.device == "cuda":
                torch.cuda.empty_cache()
        if last:
            if best > 0:
                print(f"RESULT torch {tag} {a.batch} {best:.3f}", flush=True)
            best = 0.0
    return 0


if __name__ == "__main__":
    sys.exit(main())
