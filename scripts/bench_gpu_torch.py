#!/usr/bin/env python3
"""bench_gpu_torch.py - the seed ResNet of scripts/resnet_cifar.lua in PyTorch,
the peer of scripts/bench_gpu.lua: training throughput on the same card with
the same model and batch sizes, synthetic data on the device, SGD momentum
0.9, warmup steps then timed steps closed by torch.cuda.synchronize().

Model: 3 stages x 7 pre-activation residual blocks (BN -> ReLU -> 3x3 conv,
twice; a 3x3 conv shortcut where the channels or stride change), 16/32/64
channels, convolutions with bias, BN -> ReLU -> global average pool ->
Dense(10); the L2(1e-4) kernel regularizers as SGD weight decay; softmax
cross-entropy on the logits. 683,306 trainable parameters + 3,168 BN running
statistics = 686,474, as Keras and rnlua count them. One
difference: TF "same" padding with stride 2 pads (0 top, 1 bottom) in rnlua
and (1, 1) here (padding=1): the same shapes and cost.

Modes (each at every batch size):
  eager-fp32     NCHW float32; TF32 off (as rnlua's strict float32) unless --tf32
  eager-amp-cl   autocast bfloat16, channels_last
  compile        torch.compile(model) float32 (TF32 as eager-fp32)
Prints images/s and s/epoch (50,000 images), and per result a line
  RESULT torch <mode> <batch> <images/s>
flushed at once, so a timeout keeps what finished. --budget SECONDS skips
what would start after 60% of it.
"""
import argparse
import sys
import time

EPOCH = 50000


def build(torch):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, ch, stride):
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin, momentum=0.01, eps=1e-3)
            self.conv1 = nn.Conv2d(cin, ch, 3, stride, 1)
            self.bn2 = nn.BatchNorm2d(ch, momentum=0.01, eps=1e-3)
            self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1)
            self.short = nn.Conv2d(cin, ch, 3, stride, 1) if (cin != ch or stride > 1) else None

        def forward(self, x):
            h = self.conv1(torch.relu(self.bn1(x)))
            h = self.conv2(torch.relu(self.bn2(h)))
            return h + (self.short(x) if self.short is not None else x)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, 1, 1)
            blocks, cin = [], 16
            for ch in (16, 32, 64):
                for i in range(7):
                    stride = 2 if (i == 0 and ch != 16) else 1
                    blocks.append(Block(cin, ch, stride))
                    cin = ch
            self.blocks = nn.Sequential(*blocks)
            self.bn = nn.BatchNorm2d(64, momentum=0.01, eps=1e-3)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            h = self.blocks(self.stem(x))
            h = torch.relu(self.bn(h)).mean((2, 3))
            return self.fc(h)

    return ResNet()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-sizes", default="128,512")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--modes", default="eager-fp32,eager-amp-cl,compile")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in the float32 modes")
    ap.add_argument("--budget", type=float, default=0)
    a = ap.parse_args()
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        print(f"bench_gpu_torch: no PyTorch: {e}")
        return 1
    if not torch.cuda.is_available():
        print("bench_gpu_torch: torch.cuda.is_available() is False")
        return 1
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    dev = torch.device("cuda")
    t_start = time.time()
    m0 = build(torch)
    nparams = sum(p.numel() for p in m0.parameters()) + sum(
        b.numel() for n, b in m0.named_buffers() if n.endswith(("running_mean", "running_var")))
    del m0
    print(f"bench_gpu_torch: torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.get_device_name(0)}, {nparams} parameters (Keras count), TF32 "
          f"{'on' if a.tf32 else 'off'}, warmup {a.warmup}, timed steps {a.steps}", flush=True)
    batches = [int(b) for b in a.batch_sizes.split(",") if b]
    for mode in [m for m in a.modes.split(",") if m]:
        for bs in batches:
            if a.budget and time.time() - t_start > 0.6 * a.budget:
                print(f"torch {mode} batch {bs}: skipped (budget of {a.budget:.0f}s nearly spent)",
                      flush=True)
                continue
            torch.manual_seed(1)
            model = build(torch).to(dev)
            cl = mode == "eager-amp-cl"
            if cl:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
            step_model = torch.compile(model) if mode == "compile" else model
            x = torch.randn(bs, 3, 32, 32, device=dev)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 10, (bs,), device=dev)
            lossf = torch.nn.CrossEntropyLoss()

            def step():
                opt.zero_grad(set_to_none=True)
                if cl:
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        loss = lossf(step_model(x), y)
                else:
                    loss = lossf(step_model(x), y)
                loss.backward()
                opt.step()
                return loss

            try:
                t0 = time.time()
                for _ in range(a.warmup):
                    loss = step()
                torch.cuda.synchronize()
                tw = time.time() - t0
                t0 = time.time()
                for _ in range(a.steps):
                    loss = step()
                torch.cuda.synchronize()
                dt = time.time() - t0
            except Exception as e:  # noqa: BLE001 - report and go on with the next mode
                print(f"torch {mode} batch {bs}: failed: {type(e).__name__}: {e}", flush=True)
                continue
            ips = bs * a.steps / dt
            print(f"torch {mode:<13} batch {bs:4d}: {ips:9.1f} images/s  {EPOCH / ips:7.2f} s/epoch  "
                  f"({1000 * dt / a.steps:.1f} ms/step, warmup {tw:.1f} s, last loss "
                  f"{loss.item():.4f})")
            print(f"RESULT torch {mode} {bs} {ips:.3f}", flush=True)
            del model, opt, step_model, x, y
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
