#!/usr/bin/env bash
# bench_arch.sh - `make bench-arch`: one training step per example
# architecture (scripts/architectures.lua) in rnlua and the same models in
# PyTorch (scripts/bench_arch_torch.py, /usr/bin/python3 with Debian's torch)
# in the same run, same threads and batch; prints both and the ratio. The
# machine, ISA and date head the output.
#   scripts/bench_arch.sh [--reps 5] [--warmup 2] [--batch 64] [--models a,b]
#                         [--device cpu|cuda] [--precision fp32,bf16] [--budget SECONDS]
# Every option goes to both scripts. --device cuda measures on the GPU (the
# model field becomes <model>-cuda-<precision>; --budget applies to each of
# the two scripts). PYTHON=python3 picks another interpreter than
# /usr/bin/python3 (a GPU machine's PyTorch); PYTHON_LD_LIBRARY_PATH, when
# set (even empty), is the LD_LIBRARY_PATH of that interpreter alone (PyTorch
# brings its own CUDA libraries; rnlua's may be on LD_LIBRARY_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
threads=$(nproc 2>/dev/null || echo 2)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=${PYTHON:-/usr/bin/python3}
pyenv=()
if [ -n "${PYTHON_LD_LIBRARY_PATH+set}" ]; then pyenv=(env LD_LIBRARY_PATH="$PYTHON_LD_LIBRARY_PATH"); fi
device=cpu
for ((k = 0; k + 1 < ${#args[@]}; k++)); do [ "${args[k]}" = --device ] && device=${args[k + 1]}; done
echo "== architectures: rnlua vs PyTorch, one training step ($device) =="
echo "machine: $(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo), $threads CPU(s); $(./rnlua -e 'local f = require("rn").cpu.features(); io.write("oneDNN ISA ", f.isa, f.isa_cap and (" (capped: " .. f.isa_cap .. ")") or "")')"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# a failing side (no device, a crash) still lets the other run; the status is kept
rc=0
./rnlua scripts/bench_arch.lua --threads "$threads" "${args[@]}" | tee "$tmp/rn.out" || rc=$?
if "${pyenv[@]}" "$py" -c 'import torch' 2>/dev/null; then
  # TORCH_BUDGET: the torch side's own --budget (cudnn.benchmark tunes each
  # new shape in its first steps), after the shared options so that it wins
  tb=()
  if [ -n "${TORCH_BUDGET:-}" ]; then tb=(--budget "$TORCH_BUDGET"); fi
  "${pyenv[@]}" env PYTHONUNBUFFERED=1 "$py" scripts/bench_arch_torch.py --threads "$threads" "${args[@]}" "${tb[@]}" |
    tee "$tmp/torch.out" || rc=$?
else
  echo "torch: not available ($py has no torch: apt install python3-torch, or PYTHON=...)"; : > "$tmp/torch.out"
fi
printf '%-22s %12s %12s %8s\n' model "rnlua img/s" "torch img/s" ratio
awk '$1 == "RESULT" {v[$2 " " $3] = $5; m[$3] = 1} END {
  for (k in m) { r = v["rnlua " k]; t = v["torch " k];
    printf "%-22s %12s %12s %8s\n", k, r == "" ? "-" : sprintf("%.1f", r), t == "" ? "-" : sprintf("%.1f", t),
      (r != "" && t != "") ? sprintf("%.2fx", r / t) : "-" } }' "$tmp/rn.out" "$tmp/torch.out" | sort
exit $rc
