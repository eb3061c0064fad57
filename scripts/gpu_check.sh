#!/usr/bin/env bash
# gpu_check.sh - one prepared, bounded run of the CUDA checks on a GPU
# machine that has no package registry (the device machines: nvcc, PyTorch
# as python3 with cuBLAS/cuDNN inside its site-packages, compute-sanitizer).
#
#   scripts/gpu_check.sh [OUTDIR]     run the checks; logs go to OUTDIR
#                                     (default: $OUT, else out/gpu_check)
#   scripts/gpu_check.sh --bundle     run HERE, before carrying: copies the
#                                     shared libraries ./rnlua needs beyond
#                                     glibc/libstdc++ (OpenBLAS, readline...)
#                                     into .gpulibs/ (git-excluded)
#
# Steps, each under its own timeout, each logged to OUTDIR/<step>.log:
#   env        nvidia-smi, nvcc, python3, the binary's shared libraries
#   libs       dirs of libcublas/libcudnn (and libnvrtc/libnvJitLink, which
#              cuDNN's run-time compiled engines load) from python3's nvidia
#              packages, else a bounded find, put on LD_LIBRARY_PATH, with
#              .gpulibs/ if present
#              (logged in env.log)
#   build      ./rnlua if present (built elsewhere and carried: carry
#              ["rnlua", ".gpulibs"]) and built with CUDA; else `make` where
#              nvcc exists
#   cuda_tests ./rnlua tests/run.lua tests/test_cuda.lua tests/test_determinism.lua tests/test_cuda_data.lua
#   sanitizer  compute-sanitizer memcheck on a light run of the same tests
#   train      scripts/resnet_cifar.lua briefly, if that file exists
#              (arguments: $RN_GPU_TRAIN_ARGS)
#   bench      seed ResNet training throughput at batch 128 and 512:
#              scripts/bench_gpu.lua (rnlua, cuda; $RN_GPU_BENCH_ARGS), then
#              scripts/bench_gpu_torch.py (PyTorch eager fp32, eager AMP
#              channels_last, torch.compile; $RN_GPU_TORCH_ARGS) where python3
#              has torch; their RESULT lines become bench_table.txt (images/s,
#              s/epoch, rnlua/torch ratios), printed before the summary
# A summary table comes last. Re-runnable: it only writes OUTDIR (and, for
# `make`, the build dir). Bounded: every step has a timeout, and all of them
# together stay within $RN_GPU_BUDGET seconds (default 540); the timeouts
# (tests 120, sanitizer 100, train 60, bench 70 + 150) leave room for a build.
# $RN_GPU_FULL_SUITE=1 also runs the whole suite.
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)

# ---- bundle mode (on the build machine) --------------------------------------
if [ "${1:-}" = "--bundle" ]; then
  [ -x ./rnlua ] || { echo "gpu_check: ./rnlua not built; run make first" >&2; exit 2; }
  mkdir -p .gpulibs
  grep -qx '/.gpulibs/' .git/info/exclude 2>/dev/null || echo '/.gpulibs/' >> .git/info/exclude
  ldd ./rnlua | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libresolv.so*|libutil.so*|\
      libgcc_s.so*|libstdc++.so*) continue ;;
    esac
    cp -L "$lib" .gpulibs/
  done
  echo "gpu_check: bundled into .gpulibs/ ($(du -sh .gpulibs | cut -f1)):"
  ls .gpulibs
  echo "carry [\"rnlua\", \".gpulibs\"] and run: scripts/gpu_check.sh \"\$OUT\""
  exit 0
fi

OUTDIR=${1:-${OUT:-out/gpu_check}}
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)

NAMES=()
STATUS=()
TIMES=()
NOTES=()
record() { NAMES+=("$1"); STATUS+=("$2"); TIMES+=("$3"); NOTES+=("${4:-}"); }

# the line of a log worth showing in the summary (test totals, sanitizer count)
note_of() {
  grep -E '^[0-9]+ passed, [0-9]+ failed|ERROR SUMMARY' "$1" 2>/dev/null | tail -n 1
}

# The whole run stays within $RN_GPU_BUDGET seconds (default 540: one device
# command may run 600): each step's timeout is cut to what is left.
BUDGET=${RN_GPU_BUDGET:-540}

# step NAME TIMEOUT CMD...: runs CMD with a timeout, output to OUTDIR/NAME.log
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - SECONDS - 5))
  if [ "$left" -lt 20 ]; then
    skip "$name" "no time left of the ${BUDGET}s budget"
    return 124
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS rc
  echo "== $name (timeout ${limit}s)"
  timeout -k 10 "$limit" "$@" >"$OUTDIR/$name.log" 2>&1
  rc=$?
  local st=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then st="TIMEOUT"
  elif [ $rc -ne 0 ]; then st="FAIL(rc=$rc)"; fi
  record "$name" "$st" $((SECONDS - t0)) "$(note_of "$OUTDIR/$name.log")"
  tail -n 15 "$OUTDIR/$name.log"
  return $rc
}

skip() { echo "== $1: skipped: $2"; record "$1" "skipped: $2" 0; }

# shellcheck disable=SC2317  # called by the EXIT trap
summary() {
  echo
  echo "== summary (logs in $OUTDIR)"
  {
    printf '%-11s %-48s %7s  %s\n' step status seconds note
    for i in "${!NAMES[@]}"; do
      printf '%-11s %-48s %7s  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${TIMES[$i]}" "${NOTES[$i]}"
    done
  } | tee "$OUTDIR/summary.txt"
}
trap summary EXIT

# ---- env ----------------------------------------------------------------------
# (env.log also gets the library dirs below; at most 8 files come back from $OUT)
env_info() {
  echo "# date: $(date -u)"
  echo "# uname: $(uname -a)"
  echo "# nvidia-smi"
  if command -v nvidia-smi >/dev/null; then timeout 30 nvidia-smi; else echo "not found"; fi
  echo "# nvcc"
  if command -v nvcc >/dev/null; then timeout 30 nvcc --version; else echo "not on PATH"; fi
  echo "# python3"
  if command -v python3 >/dev/null; then timeout 30 python3 --version; else echo "not found"; fi
  echo "# compute-sanitizer"
  if command -v compute-sanitizer >/dev/null; then timeout 30 compute-sanitizer --version | head -3
  else echo "not on PATH"; fi
  if [ -x ./rnlua ]; then echo "# ldd ./rnlua"; ldd ./rnlua; fi
}
T0=$SECONDS
env_info >"$OUTDIR/env.log" 2>&1
record env ok $((SECONDS - T0))
cat "$OUTDIR/env.log"

# ---- libs ---------------------------------------------------------------------
find_libs() {
  local dirs=""
  if command -v python3 >/dev/null; then
    dirs=$(timeout 60 python3 - <<'EOF' 2>/dev/null
import os
try:
    import nvidia
    seen = set()
    for p in list(nvidia.__path__):
        for d in sorted(os.listdir(p)):
            lib = os.path.join(p, d, "lib")
            if os.path.isdir(lib) and any(f.startswith(("libcublas", "libcudnn", "libnvrtc", "libnvJitLink"))
                                          for f in os.listdir(lib)):
                if lib not in seen:
                    seen.add(lib)
                    print(lib)
except Exception:
    pass
EOF
)
  fi
  if [ -z "$dirs" ]; then
    dirs=$(timeout 120 find / -xdev \( -path /proc -o -path /sys \) -prune -o \
             \( -name 'libcublas.so*' -o -name 'libcudnn.so*' \) -printf '%h\n' 2>/dev/null |
           sort -u)
  fi
  echo "$dirs"
}
LIBDIRS=$(find_libs)
{
  echo "# dirs with libcublas/libcudnn:"
  echo "${LIBDIRS:-none found}"
} >>"$OUTDIR/env.log"
for d in $LIBDIRS; do LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; done
[ -d .gpulibs ] && LD_LIBRARY_PATH="$ROOT/.gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
echo "# LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >>"$OUTDIR/env.log"
if [ -n "$LIBDIRS" ]; then record libs ok 0 "$(echo "$LIBDIRS" | wc -w) dirs on LD_LIBRARY_PATH"
else record libs "none found (loader path only)" 0; fi
echo "# LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# ---- build --------------------------------------------------------------------
PROBE=$(mktemp /tmp/rn_probe.XXXXXX.lua)
echo 'local rn = require "rn"; print(rn.built_with_cuda and "cuda" or "nocuda")' >"$PROBE"
usable() { [ -x ./rnlua ] && [ "$(timeout 30 ./rnlua "$PROBE" 2>/dev/null)" = cuda ]; }
if usable; then
  record build "ok (carried ./rnlua)" 0
elif command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  if [ -x ./rnlua ]; then echo "./rnlua does not run here or lacks CUDA: rebuilding"; fi
  step build 300 make -j"$(nproc)" all
  if ! usable; then
    echo "gpu_check: no usable ./rnlua (see $OUTDIR/build.log and env.log)"
    rm -f "$PROBE"
    exit 1
  fi
else
  rm -f "$PROBE"
  skip build "no usable ./rnlua and no nvcc"
  exit 1
fi
rm -f "$PROBE"

# ---- tests --------------------------------------------------------------------
step cuda_tests 150 env RN_TEST_VERBOSE=1 ./rnlua tests/run.lua tests/test_cuda.lua \
  tests/test_determinism.lua tests/test_cuda_data.lua

if command -v compute-sanitizer >/dev/null; then
  step sanitizer 100 env RN_TEST_LIGHT=1 compute-sanitizer --tool memcheck --error-exitcode 86 \
    --print-limit 30 ./rnlua tests/run.lua tests/test_cuda.lua
else
  skip sanitizer "compute-sanitizer not on PATH"
fi

if [ "${RN_GPU_FULL_SUITE:-0}" = 1 ]; then
  step suite 300 ./rnlua tests/run.lua
fi

# ---- optional steps -------------------------------------------------------------
if [ -f scripts/resnet_cifar.lua ]; then
  # shellcheck disable=SC2086
  step train 60 ./rnlua scripts/resnet_cifar.lua ${RN_GPU_TRAIN_ARGS:---device cuda --epochs 1 \
    --train-limit 6400 --test-limit 1000}
else
  skip train "scripts/resnet_cifar.lua not present yet"
fi

# bench_table OUT LOG...: the RESULT lines of the bench logs as a table with
# s/epoch (50,000 images) and the ratio of rnlua to each PyTorch mode
bench_table() {
  local out=$1
  shift
  cat "$@" 2>/dev/null | awk '
    $1 == "RESULT" { key = $2 " " $3; ips[key, $4] = $5; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
                     if (!($4 in bs)) { bs[$4] = 1; border[++nb] = $4 }
                     if ($2 == "rnlua" && ref == "") ref = key }
    END {
      if (n == 0) { print "no benchmark results"; exit }
      printf "%-22s %6s %12s %10s %14s\n", "run", "batch", "images/s", "s/epoch", "rnlua/this"
      for (i = 1; i <= n; i++) for (j = 1; j <= nb; j++) if ((order[i], border[j]) in ips) {
        b = border[j]
        v = ips[order[i], b]; r = (ref != "" && (ref, b) in ips) ? ips[ref, b] / v : 0
        printf "%-22s %6d %12.1f %10.2f %14s\n", order[i], b, v, 50000 / v, r ? sprintf("%.3f", r) : "-"
      }
    }' | tee "$out"
}

if [ -f scripts/bench_gpu.lua ]; then
  # shellcheck disable=SC2086
  # cuDNN algorithms measured (RN_CUDNN_FIND=1), as torch.backends.cudnn.benchmark below
  step bench 70 env RN_CUDNN_FIND="${RN_CUDNN_FIND:-1}" ./rnlua scripts/bench_gpu.lua \
    ${RN_GPU_BENCH_ARGS:---batch-sizes 128,512 --warmup 3 --steps 15 --budget 60}
  if command -v python3 >/dev/null && timeout 60 python3 -c 'import torch' 2>/dev/null; then
    # shellcheck disable=SC2086
    step bench_torch 150 python3 scripts/bench_gpu_torch.py ${RN_GPU_TORCH_ARGS:---batch-sizes \
      128,512 --warmup 3 --steps 15 --budget 140}
  else
    skip bench_torch "python3 with torch not found"
  fi
  echo "== bench table (rnlua/this > 1: rnlua is faster)"
  bench_table "$OUTDIR/bench_table.txt" "$OUTDIR/bench.log" "$OUTDIR/bench_torch.log"
else
  skip bench "scripts/bench_gpu.lua not present"
fi
exit 0
