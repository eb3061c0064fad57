#!/usr/bin/env bash
# bench_arch.sh - `make bench-arch`: one training step per example
# architecture (scripts/architectures.lua) in rnlua and the same models in
# PyTorch (scripts/bench_arch_torch.py, /usr/bin/python3 with Debian's torch)
# in the same run, same threads and batch; prints both and the ratio. The
# machine, ISA and date head the output.
#   scripts/bench_arch.sh [--reps 5] [--warmup 2] [--batch 64]
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
threads=$(nproc 2>/dev/null || echo 2)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== architectures: rnlua vs PyTorch, one training step (CPU) =="
echo "machine: $(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo), $threads CPU(s); $(./rnlua -e 'local f = require("rn").cpu.features(); io.write("oneDNN ISA ", f.isa, f.isa_cap and (" (capped: " .. f.isa_cap .. ")") or "")')"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
./rnlua scripts/bench_arch.lua --threads "$threads" "${args[@]}" | tee "$tmp/rn.out"
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  /usr/bin/python3 scripts/bench_arch_torch.py --threads "$threads" "${args[@]}" | tee "$tmp/torch.out"
else
  echo "torch: not available (/usr/bin/python3 has no torch: apt install python3-torch)"; : > "$tmp/torch.out"
fi
printf '%-14s %12s %12s %8s\n' model "rnlua img/s" "torch img/s" ratio
awk '$1 == "RESULT" {v[$2 " " $3] = $5; m[$3] = 1} END {
  for (k in m) { r = v["rnlua " k]; t = v["torch " k];
    printf "%-14s %12s %12s %8s\n", k, r == "" ? "-" : sprintf("%.1f", r), t == "" ? "-" : sprintf("%.1f", t),
      (r != "" && t != "") ? sprintf("%.2fx", r / t) : "-" } }' "$tmp/rn.out" "$tmp/torch.out" | sort
