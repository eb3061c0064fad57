#!/usr/bin/env python3
"""bench_arch_torch.py - the PyTorch peer of scripts/bench_arch.lua: the same
example architectures at the same sizes (32x32x3, 10 classes), Adam lr 1e-3,
cross-entropy, synthetic data; the median of --reps training steps after
--warmup. Prints per model "RESULT torch <model> <batch> <images/s>" (the
faster of NCHW and channels_last for the convolutional ones).

  /usr/bin/python3 scripts/bench_arch_torch.py [--reps 5] [--warmup 2] [--batch 64] [--threads N]
"""
import argparse
import statistics
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
        self.blocks = nn.TransformerEncoder(layer, depth)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


MODELS = [("mobilenet_v2", mobilenet_v2, True), ("resnext", resnext, True), ("densenet", densenet, True),
          ("vit", ViT, False)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"bench_arch_torch: torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {a.batch}", flush=True)
    for name, ctor, conv in MODELS:
        best = 0
        for cl in ([False, True] if conv else [False]):
            torch.manual_seed(0)
            m = ctor()
            x = torch.randn(a.batch, 3, 32, 32)
            if cl:
                m, x = m.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (a.batch,))
            opt = torch.optim.Adam(m.parameters(), 1e-3)
            ts = []
            for i in range(a.warmup + a.reps):
                t0 = time.perf_counter()
                opt.zero_grad()
                F.cross_entropy(m(x), y).backward()
                opt.step()
                if i >= a.warmup:
                    ts.append(time.perf_counter() - t0)
            ips = a.batch / statistics.median(ts)
            print(f"torch {name:<14} {'channels_last' if cl else 'NCHW':<13} batch {a.batch}: {a.batch / ips * 1000:8.1f} ms/step, {ips:8.1f} images/s", flush=True)
            best = max(best, ips)
        print(f"RESULT torch {name} {a.batch} {best:.3f}", flush=True)


if __name__ == "__main__":
    main()
