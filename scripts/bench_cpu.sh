#!/usr/bin/env bash
# bench_cpu.sh - the CPU part of `make bench`: the seed ResNet trained and run
# in rnlua (scripts/bench_cpu.lua) and in PyTorch (scripts/bench_cpu_torch.py)
# in the same run, with the same threads and repetitions, then one table:
# mode, batch, rnlua images/s, torch images/s (the faster of its NCHW and
# channels_last variants), the ratio rnlua/torch and the goal of issue #6:
#   fp32-train b128  >= 1.5x torch
#   fp32-train b512  per image no slower than b128 (rnlua's b512/b128 >= 1)
#   bf16-train b128  >= 2x torch (only where the CPU has AVX512-BF16 or AMX)
#   fp32-infer b128  >= 1.5x torch
# Each figure is the median step time of --reps timed steps after --warmup
# untimed ones. The machine (CPU, cores, flags), the date and the commit head
# the output.
#
#   scripts/bench_cpu.sh [--threads N] [--reps 5] [--warmup 2] [--batches 128,512]
#                        [--no-profile] [--rnlua ./rnlua] [--python PATH]
#
# PyTorch: /usr/bin/python3 first (Debian's torch), then python3 on PATH
# ($TORCH_PYTHON before both, when set; --python PATH: that one only). The
# first interpreter with torch is the peer; an interpreter with another torch
# version is measured too, in its own table. Without torch the rnlua figures are printed with
# "torch: not available (reason)". Exit status: that of the rnlua run.
set -euo pipefail

cd "$(dirname "$0")/.."

threads=$(nproc 2>/dev/null || echo 2)
reps=5
warmup=2
batches=128,512
profile=--profile
rnlua=./rnlua
only_python=
usage() { sed -n '/^#   scripts/,/^#  *\[--no-profile/p' "$0" | sed 's/^# //'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --reps) reps=${2:?--reps needs a value}; shift 2 ;;
    --warmup) warmup=${2:?--warmup needs a value}; shift 2 ;;
    --batches) batches=${2:?--batches needs a value}; shift 2 ;;
    --no-profile) profile=; shift ;;
    --rnlua) rnlua=${2:?--rnlua needs a value}; shift 2 ;;
    --python) only_python=${2:?--python needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench_cpu.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$threads" "$reps" "$warmup"; do
  case "$v" in ''|*[!0-9]*) echo "bench_cpu.sh: --threads, --reps, --warmup take non-negative integers, got '$v'" >&2; exit 2 ;; esac
done
if [ "$threads" -lt 1 ] || [ "$reps" -lt 1 ]; then
  echo "bench_cpu.sh: --threads and --reps must be >= 1" >&2; exit 2
fi
case "$batches" in ''|*[!0-9,]*) echo "bench_cpu.sh: --batches is a list like 128,512, got '$batches'" >&2; exit 2 ;; esac
b1=${batches%%,*}
b2=${batches#*,}; b2=${b2%%,*}; [ "$b2" = "$batches" ] && b2=

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- the machine -----------------------------------------------------------------
cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
flags=" $(awk -F': *' '/^flags/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true) "
has() { case "$flags" in *" $1 "*) echo yes ;; *) echo no ;; esac; }
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git diff --quiet HEAD 2>/dev/null; then commit="$commit (+ uncommitted changes)"; fi
# An ISA cap (ONEDNN_MAX_CPU_ISA=AVX2, ...) holds for rnlua and for torch's
# oneDNN; torch's own kernels get the matching ATEN_CPU_CAPABILITY.
if [ -n "${ONEDNN_MAX_CPU_ISA:-}" ] && [ -z "${ATEN_CPU_CAPABILITY:-}" ]; then
  case "$(echo "$ONEDNN_MAX_CPU_ISA" | tr a-z A-Z)" in
    SSE41|AVX) export ATEN_CPU_CAPABILITY=default ;;
    AVX2|AVX2_VNNI) export ATEN_CPU_CAPABILITY=avx2 ;;
  esac
fi
isa_line=$("$rnlua" -e 'local f = require("rn").cpu.features()
  io.write(string.format("oneDNN %s%s, OpenBLAS %s", f.isa, f.isa_cap and (" (capped: ONEDNN_MAX_CPU_ISA=" .. f.isa_cap .. ")") or "", f.blas_core))' 2>/dev/null || echo "unknown")
rn_isa=$("$rnlua" -e 'io.write(require("rn").cpu.features().isa)' 2>/dev/null || echo "?")
echo "== CPU benchmark: the seed ResNet, rnlua vs PyTorch =="
echo "machine: ${cpu:-unknown CPU}, $(nproc 2>/dev/null || echo '?') online CPU(s); avx512f $(has avx512f), avx512_bf16 $(has avx512_bf16), amx_bf16 $(has amx_bf16), amx_tile $(has amx_tile)"
echo "isa:     rnlua: $isa_line; torch's ATen kernels: ${ATEN_CPU_CAPABILITY:-its default}"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "commit:  $commit"
echo "run:     $threads thread(s), $warmup warm-up + $reps timed steps per figure (median), batches $batches"
echo

# ---- rnlua -------------------------------------------------------------------------
rn_rc=0
echo "-- rnlua ($rnlua scripts/bench_cpu.lua)"
# shellcheck disable=SC2086 # $profile is empty or one word
"$rnlua" scripts/bench_cpu.lua --threads "$threads" --reps "$reps" --warmup "$warmup" \
  --batches "$batches" $profile 2>&1 | tee "$tmp/rnlua.out" || rn_rc=$?
[ "$rn_rc" -eq 0 ] || echo "bench_cpu.sh: the rnlua benchmark failed (exit $rn_rc)"
echo

# ---- PyTorch ----------------------------------------------------------------------
declare -a pys=() labels=()
torch_why="no python3 found"
seen=" "
primary_ver=
if [ -n "$only_python" ]; then cands=("$only_python")
else
  cands=(/usr/bin/python3 "$(command -v python3 2>/dev/null || true)")
  if [ -n "${TORCH_PYTHON:-}" ]; then cands=("$TORCH_PYTHON" "${cands[@]}"); fi
fi
for cand in "${cands[@]}"; do
  if [ -z "$cand" ] || [ ! -x "$cand" ]; then continue; fi
  # the interpreter itself (a pyenv shim or a link resolves to it)
  real=$("$cand" -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null || echo "$cand")
  case "$seen" in *" $real "*) continue ;; esac
  seen="$seen$real "
  if ver=$(timeout 120 "$cand" -c 'import torch; print(torch.__version__)' 2>"$tmp/import.err"); then
    if [ ${#pys[@]} -eq 0 ]; then
      pys+=("$cand"); labels+=(torch); primary_ver=$ver
    elif [ "$ver" != "$primary_ver" ]; then
      pys+=("$cand"); labels+=("torch-$ver")
    else
      echo "($cand has torch $ver too: measured once)"
    fi
  else
    why=$(tail -n 1 "$tmp/import.err" | cut -c1-160)
    [ ${#pys[@]} -eq 0 ] && torch_why="$cand: ${why:-import torch failed}"
    echo "($cand: no torch: ${why:-import failed})"
  fi
done

for i in "${!pys[@]}"; do
  echo "-- ${labels[$i]} (${pys[$i]} scripts/bench_cpu_torch.py)"
  t_rc=0
  "${pys[$i]}" scripts/bench_cpu_torch.py --threads "$threads" --reps "$reps" --warmup "$warmup" \
    --batches "$batches" 2>&1 | tee "$tmp/torch$i.out" || t_rc=$?
  [ "$t_rc" -eq 0 ] || echo "bench_cpu.sh: ${labels[$i]} benchmark failed (exit $t_rc)"
  echo
done

# ---- the table --------------------------------------------------------------------
# value of "RESULT <tool> <mode> <batch> <ips>" in a file, or empty
get() { awk -v m="$2" -v b="$3" '$1 == "RESULT" && $3 == m && $4 == b {v = $5} END {if (v != "") print v}' "$1" 2>/dev/null || true; }
quot() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN {print a / b}'; fi; }
fmt() { if [ -n "$1" ]; then printf '%.1f' "$1"; else printf -- '-'; fi; }
ratio() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; else printf -- '-'; fi; }
verdict() { # value goal -> met / NOT met
  if [ -z "$1" ]; then echo "(no figure)"; return; fi
  awk -v a="$1" -v g="$2" 'BEGIN {print (a + 0 >= g + 0) ? "met" : "NOT met"}'
}
table() { # label torch-output-file
  local label=$1 tf=$2 r t rr g
  local tisa
  tisa=$(awk '$1 == "ISA" && $2 == "torch" {print $3}' "$tf" 2>/dev/null | head -n 1)
  echo "== rnlua vs $label (images/s; median of $reps steps; $threads thread(s)) =="
  echo "   ${cpu:-unknown CPU}; rnlua at oneDNN ISA $rn_isa${ONEDNN_MAX_CPU_ISA:+ (capped: ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA)}, $label at ${tisa:-?}"
  printf '%-11s %6s %12s %12s %12s  %-18s %s\n' mode batch "rnlua" "$label" "rnlua/torch" "ISA rnlua/torch" goal
  row() { # mode batch goal-text goal-value [why-rnlua-has-none]
    r=$(get "$tmp/rnlua.out" "$1" "$2"); t=$(get "$tf" "$1" "$2")
    rr=$(quot "$r" "$t")
    g="$3"
    if [ -n "$4" ]; then g="$g: $(verdict "$rr" "$4")"; fi
    if [ -z "$r" ] && [ -n "$5" ]; then g="$g; rnlua $5"; fi
    printf '%-11s %6s %12s %12s %12s  %-18s %s\n' "$1" "$2" "$(fmt "$r")" "$(fmt "$t")" "$(ratio "$r" "$t")" "$rn_isa/${tisa:-?}" "$g"
  }
  row fp32-train "$b1" ">= 1.5x" 1.5
  if [ -n "$b2" ]; then
    local r1 r2 pr
    r1=$(get "$tmp/rnlua.out" fp32-train "$b1"); r2=$(get "$tmp/rnlua.out" fp32-train "$b2")
    pr=$(quot "$r2" "$r1")
    row fp32-train "$b2" "rnlua b$b2/b$b1 per image = $(ratio "$r2" "$r1") (>= 1.00x): $(verdict "$pr" 1)" ""
  fi
  local why
  why=$(grep -m1 -o 'bf16-train: \(skipped\|failed\) (.*)' "$tmp/rnlua.out" 2>/dev/null | sed 's/^bf16-train: //' || true)
  if [ -n "$(get "$tmp/rnlua.out" bf16-train "$b1")" ] || [ -n "$(get "$tf" bf16-train "$b1")" ]; then
    row bf16-train "$b1" ">= 2x" 2 "${why:-: no figure}"
  else
    local twhy
    twhy=$(grep -m1 -o 'torch bf16-train: skipped (.*)' "$tf" 2>/dev/null || true)
    printf '%-11s %6s %s\n' bf16-train "$b1" "skipped: rnlua ${why:-gave no figure}${twhy:+; $twhy}"
  fi
  row fp32-infer "$b1" ">= 1.5x" 1.5
  echo
}
if [ ${#pys[@]} -eq 0 ]; then
  echo "torch: not available ($torch_why)"
  : > "$tmp/none.out"
  table "torch" "$tmp/none.out"
else
  for i in "${!pys[@]}"; do table "${labels[$i]}" "$tmp/torch$i.out"; done
fi
exit "$rn_rc"
