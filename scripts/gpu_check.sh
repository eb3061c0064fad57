#!/usr/bin/env bash
# gpu_check.sh - one prepared, bounded run of the CUDA checks on a GPU
# machine that has no package registry (the device machines: nvcc, PyTorch
# as python3 with cuBLAS/cuDNN inside its site-packages, compute-sanitizer).
#
#   scripts/gpu_check.sh [OUTDIR]     run the checks; logs go to OUTDIR
#                                     (default: $OUT, else out/gpu_check)
#   scripts/gpu_check.sh --bundle     run HERE, before carrying: copies the
#                                     shared libraries ./rnlua needs beyond
#                                     glibc/libstdc++ (oneDNN, OpenBLAS,
#                                     readline...) gzipped into .gpulibs/
#                                     (git-excluded; libdnnl + libopenblas
#                                     are ~76 MB raw, over the 64 MiB carry
#                                     limit, ~22 MB gzipped); the check
#                                     unpacks them into a temp dir; and a
#                                     Fashion-MNIST subset into .gpudata/
#
# Steps, each under its own timeout, each logged to OUTDIR/<step>.log
# (RN_GPU_PACK=1, as on the device: logs packed into OUTDIR/logs.tgz beside
# summary.txt, since the device tool returns at most 8 files):
#   env        nvidia-smi, nvcc, python3, the binary's shared libraries
#   libs       dirs of libcublas/libcudnn (and libnvrtc/libnvJitLink, which
#              cuDNN's run-time compiled engines load) from python3's nvidia
#              packages, else a bounded find, put on LD_LIBRARY_PATH, with
#              .gpulibs/ if present (logged in env.log)
#   build      ./rnlua if present (built elsewhere and carried: carry
#              ["rnlua", ".gpulibs", ".gpudata"]) and built with CUDA; else `make` where
#              nvcc exists
# Phase 1, correctness: these run side by side (4 threads each), since none
# of them times anything:
#   cuda_tests test_cuda, test_determinism, test_cuda_data, test_optim_fused
#              (the one-launch optimizer against the per-tensor one and the CPU
#              twin), test_graph (fit's whole-step CUDA graph against eager),
#              test_l2_fused, test_cuda_bn_relu, test_profile, all but the
#              out-of-memory test; then the conv tests again with each issue-19
#              switch turned back (RN_CUDNN_DESC_CACHE=0, RN_CUDNN_FILTER_CACHE=0),
#              on cuDNN's graph API (RN_CUDNN_GRAPH=1), and the batch-norm tests
#              with RN_CUDA_BN_RELU=0; issue #18: test_cuda_bf16act (bf16 batch
#              norm, fused BN+ReLU and pooling against the CPU, a model passing
#              bf16 activations), then again with RN_CUDA_BF16_ACT=0 (float32
#              activations on the GPU, bf16 BN/pooling converting) with the
#              mixed_bfloat16 tests of test_cuda
#   cuda_ops2  tests/test_cuda_ops2.lua: the newer ops against the CPU (grouped,
#              depthwise, transposed convolution, attention, resize, bf16
#              tensors, MobileNetV2/ViT steps), then its conv tests on the graph API,
#              and its bfloat16 tests on the converting path (RN_CUDA_BF16_NATIVE=0
#              RN_CUDA_BF16_ACT=0)
#   sanitizer  compute-sanitizer memcheck on the light CUDA tests and on a short
#              training run of the seed ResNet
#   nccl       tests/dist/nccl_check.lua: the nccl backend at world size 1
#              (collectives, and fit over NCCL bit-equal to the plain GPU run)
#   train      scripts/resnet_cifar.lua, 4 epochs of 12,800 images (a loss
#              curve; data: CIFAR-10, else Fashion-MNIST, else the subset
#              that --bundle writes to .gpudata/; arguments: $RN_GPU_TRAIN_ARGS)
# then
#   oom        the out-of-memory test alone (it fills the card)
# Phase 2, speed, one at a time:
#   bench      seed ResNet training throughput at batch 128 and 512:
#              scripts/bench_gpu.lua (rnlua, cuda; $RN_GPU_BENCH_ARGS), fp32 and
#              bf16 with cuDNN's heuristics (the default), per-layer profile at
#              128; fp32 on the paths before issue 19 ("+legacy"); fp32 and bf16
#              through the whole-step CUDA graph ("+graph"); fp32 on cuDNN's
#              graph API ("+cudnngraph"); bf16 with float32 activations
#              ("+f32act"); the graph runs again with measured algorithms
#              (RN_CUDNN_FIND=1, as cudnn.benchmark: "+find")
#   bench_torch scripts/bench_gpu_torch.py (PyTorch eager fp32, eager AMP
#              channels_last, torch.compile; $RN_GPU_TORCH_ARGS); the RESULT
#              lines of both become a table (images/s, s/epoch, rnlua/torch
#              ratios) in summary.txt
#   arch       MobileNetV2 and ViT training steps, rnlua beside PyTorch
#   kernels    Nsight Compute's kernel durations of a short fp32 and bf16 run:
#              the kernel time per step against the measured step time, and
#              the float32<->bf16 conversion kernels (scripts/gpu_kernels.py)
# A summary table comes last (after the bench table). Re-runnable: it only
# writes OUTDIR (and, for `make`, the build dir). Bounded: every step has a
# timeout, cut to what is left of $RN_GPU_BUDGET seconds (default 330: run
# it with a device timeout_s of 360 or more; 480 runs every step to its
# end), in priority order, so a slow step starves the later, less important
# ones, never the summary.
set -u

cd "$(dirname "$0")/.." || exit 2

# ---- bundle mode (on the build machine) --------------------------------------
if [ "${1:-}" = "--bundle" ]; then
  [ -x ./rnlua ] || { echo "gpu_check: ./rnlua not built; run make first" >&2; exit 2; }
  rm -rf .gpulibs
  mkdir -p .gpulibs
  grep -qx '/.gpulibs/' .git/info/exclude 2>/dev/null || echo '/.gpulibs/' >> .git/info/exclude
  ldd ./rnlua | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libresolv.so*|libutil.so*|\
      libgcc_s.so*|libstdc++.so*) continue ;;
    esac
    gzip -6 -c "$lib" >".gpulibs/$(basename "$lib").gz" # follows the link, keeps its soname
  done
  echo "gpu_check: bundled into .gpulibs/ ($(du -sh .gpulibs | cut -f1); carry limit 64 MiB with ./rnlua):"
  ls -la .gpulibs
  # the training step's data: the first images of each Fashion-MNIST split
  # (the device machines have no /usr/share/datasets; the whole set is 31 MB,
  # too much beside the libraries), as IDX files with the count rewritten
  rm -rf .gpudata
  grep -qx '/.gpudata/' .git/info/exclude 2>/dev/null || echo '/.gpudata/' >> .git/info/exclude
  FM=/usr/share/datasets/fashion-mnist
  if [ -f $FM/train-images-idx3-ubyte.gz ]; then
    mkdir -p .gpudata/fashion-mnist
    idx_head() { # idx_head SRC DST N ITEMBYTES MAGIC3: an IDX file cut to N items
      local hdr=$((4 + 4 * $5)) # magic, then a 4-byte size per dim
      { printf "\\x00\\x00\\x08\\x$(printf %02x "$5")"
        printf "\\x$(printf %02x $(($3 >> 24 & 255)))\\x$(printf %02x $(($3 >> 16 & 255)))"
        printf "\\x$(printf %02x $(($3 >> 8 & 255)))\\x$(printf %02x $(($3 & 255)))"
        gzip -dc "$1" | tail -c +9 | head -c $((hdr - 8 + $3 * $4))
      } | gzip -1 >"$2"
    }
    idx_head $FM/train-images-idx3-ubyte.gz .gpudata/fashion-mnist/train-images-idx3-ubyte.gz 12800 784 3
    idx_head $FM/train-labels-idx1-ubyte.gz .gpudata/fashion-mnist/train-labels-idx1-ubyte.gz 12800 1 1
    idx_head $FM/t10k-images-idx3-ubyte.gz .gpudata/fashion-mnist/t10k-images-idx3-ubyte.gz 2000 784 3
    idx_head $FM/t10k-labels-idx1-ubyte.gz .gpudata/fashion-mnist/t10k-labels-idx1-ubyte.gz 2000 1 1
    echo "gpu_check: Fashion-MNIST subset (12,800 train, 2,000 test) in .gpudata/ ($(du -sh .gpudata | cut -f1))"
  fi
  echo "carry [\"rnlua\", \".gpulibs\", \".gpudata\"] and run: scripts/gpu_check.sh \"\$OUT\""
  exit 0
fi

OUTDIR=${1:-${OUT:-out/gpu_check}}
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)

# RN_GPU_PACK=1 (the device run): the logs are written to a temp dir and packed
# into OUTDIR/logs.tgz at the end, beside summary.txt (the device tool returns
# at most 8 files; there are more logs than that)
FINALDIR=$OUTDIR
if [ "${RN_GPU_PACK:-0}" = 1 ]; then OUTDIR=$(mktemp -d /tmp/rn_gpu_logs.XXXXXX); fi
# one line per step, appended by record(), also from the steps run in the background
STEPS_FILE=$OUTDIR/steps.tsv
: >"$STEPS_FILE"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$STEPS_FILE"; }

# the line of a log worth showing in the summary (test totals, sanitizer count)
note_of() {
  grep -E '^[0-9]+ passed, [0-9]+ failed|ERROR SUMMARY' "$1" 2>/dev/null | tail -n 1
}

# The whole run stays within $RN_GPU_BUDGET seconds (default 330, about 5.5
# minutes of the session's 15 of device time): each step's timeout is cut to
# what is left.
BUDGET=${RN_GPU_BUDGET:-330}

# step NAME TIMEOUT CMD...: runs CMD with a timeout, output to OUTDIR/NAME.log
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - SECONDS - ${RESERVE:-5}))
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

BENCH_TABLE=$(mktemp /tmp/rn_bench_table.XXXXXX)
# shellcheck disable=SC2317  # called by the EXIT trap
summary() {
  echo
  if [ -s "$BENCH_TABLE" ]; then
    echo "== bench table (rnlua/this > 1: rnlua is faster)"
    cat "$BENCH_TABLE"
  fi
  echo "== summary (logs in $OUTDIR)"
  {
    if [ -s "$BENCH_TABLE" ]; then cat "$BENCH_TABLE"; echo; fi
    printf '%-11s %-48s %7s  %s\n' step status seconds note
    while IFS=$'\t' read -r n st t no; do
      printf '%-11s %-48s %7s  %s\n' "$n" "$st" "$t" "$no"
    done <"$STEPS_FILE"
  } >"$OUTDIR/summary.txt"
  # the step table is the last thing printed
  sed -n '/^step /,$p' "$OUTDIR/summary.txt"
  rm -f "$BENCH_TABLE"
  if [ "$OUTDIR" != "$FINALDIR" ]; then
    cp "$OUTDIR/summary.txt" "$FINALDIR/summary.txt"
    tar czf "$FINALDIR/logs.tgz" -C "$OUTDIR" . && rm -rf "$OUTDIR"
  fi
  if [ -n "${GPULIBS_TMP:-}" ]; then rm -rf "$GPULIBS_TMP"; fi
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
import importlib.util, os
want = ("libcublas", "libcudnn", "libnvrtc", "libnvJitLink")
seen = []
def add(lib):
    try:
        if lib not in seen and os.path.isdir(lib) and any(f.startswith(want) for f in os.listdir(lib)):
            seen.append(lib)
    except OSError:
        pass
# the nvidia-* wheels (nvidia/cu13/lib, nvidia/cudnn/lib, ...), found without importing torch
try:
    spec = importlib.util.find_spec("nvidia")
    for p in (spec.submodule_search_locations or []) if spec else []:
        for d in sorted(os.listdir(p)):
            add(os.path.join(p, d, "lib"))
except Exception:
    pass
# builds that ship cuDNN/cuBLAS inside torch/lib (conda, older wheels)
try:
    spec = importlib.util.find_spec("torch")
    for p in (spec.submodule_search_locations or []) if spec else []:
        add(os.path.join(p, "lib"))
except Exception:
    pass
print("\n".join(seen))
EOF
)
  fi
  if [ -z "$dirs" ]; then
    dirs=$(timeout 30 find /opt /usr /root /home -xdev \( -path /proc -o -path /sys \) -prune -o \
             \( -name 'libcublas.so*' -o -name 'libcudnn.so*' \) -printf '%h\n' 2>/dev/null |
           sort -u)
  fi
  echo "$dirs"
}
ORIG_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-} # for python3 (torch brings its own libraries)
LIBDIRS=$(find_libs)
{
  echo "# dirs with libcublas/libcudnn:"
  echo "${LIBDIRS:-none found}"
} >>"$OUTDIR/env.log"
for d in $LIBDIRS; do LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; done
# the bundled host libraries (gzipped by --bundle; plain .so files are taken too)
if [ -d .gpulibs ]; then
  GPULIBS_TMP=$(mktemp -d /tmp/rn_gpulibs.XXXXXX)
  for f in .gpulibs/*; do
    case "$f" in
      *.gz) gzip -dc "$f" >"$GPULIBS_TMP/$(basename "$f" .gz)" ;;
      *) cp -L "$f" "$GPULIBS_TMP/" ;;
    esac
  done 2>>"$OUTDIR/env.log"
  echo "# unpacked .gpulibs into $GPULIBS_TMP: $(ls "$GPULIBS_TMP" | tr '\n' ' ')" >>"$OUTDIR/env.log"
  LD_LIBRARY_PATH="$GPULIBS_TMP${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export LD_LIBRARY_PATH
# ./rnlua (and the CUDA libraries it dlopens) resolve now; log what it links
if [ -x ./rnlua ]; then { echo "# ldd ./rnlua with LD_LIBRARY_PATH"; ldd ./rnlua; } >>"$OUTDIR/env.log" 2>&1; fi
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
  export RN_CARRIED_BUILD=1 # built on another machine: nvcc/cudnn.h here say nothing of it
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

# ---- phase 1: correctness, the steps side by side ------------------------------
# The parity tests, the sanitizer, the training run and NCCL do not time
# anything: they run at once (16 cores, one GPU with room for all of them),
# each under its own timeout, 4 threads each. The benchmarks run after them,
# alone on the machine.
have_train_data() {
  [ -n "${RN_GPU_TRAIN_ARGS:-}" ] && return 0
  local p
  for p in data ./ "$HOME/data" "$HOME/datasets"; do
    ls -d "$p"/cifar-10-batches-bin "$p"/cifar-10-binary.tar.gz >/dev/null 2>&1 && return 0
  done
  [ -d /usr/share/datasets/fashion-mnist ] || [ -d .gpudata/fashion-mnist ]
}
# the default training run: 4 short epochs (a loss curve), on CIFAR-10 if it is
# found, else Fashion-MNIST (the system's, or the subset carried in .gpudata/)
TRAIN_DATA=""
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -d .gpudata/fashion-mnist ]; then
  TRAIN_DATA="--dataset fashion-mnist --data .gpudata/fashion-mnist"
fi

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
PIDS=()
# the out-of-memory test fills the card: its own step, after these
step cuda_tests 150 bash -c 'env RN_TEST_VERBOSE=2 RN_TEST_EXCLUDE="out of memory" ./rnlua tests/run.lua \
  tests/test_cuda.lua tests/test_determinism.lua tests/test_cuda_data.lua tests/test_optim_fused.lua \
  tests/test_graph.lua tests/test_l2_fused.lua tests/test_cuda_bn_relu.lua tests/test_profile.lua \
  tests/test_cuda_bf16act.lua;
  rc=$?; echo "== again with RN_CUDNN_DESC_CACHE=0 (per-call descriptors): the conv tests";
  env RN_CUDNN_DESC_CACHE=0 RN_TEST_MATCH=conv ./rnlua tests/run.lua tests/test_cuda.lua || rc=1;
  echo "== again with RN_CUDNN_FILTER_CACHE=0 (per-call filter transpose): the conv tests";
  env RN_CUDNN_FILTER_CACHE=0 RN_TEST_MATCH=conv ./rnlua tests/run.lua tests/test_cuda.lua || rc=1;
  echo "== again with RN_CUDNN_GRAPH=1 (the graph API with cached plans): the conv tests";
  env RN_CUDNN_GRAPH=1 RN_TEST_MATCH=conv ./rnlua tests/run.lua tests/test_cuda.lua || rc=1;
  echo "== again with RN_CUDA_BN_RELU=0 (batch norm, then relu): the batch norm and training tests";
  env RN_CUDA_BN_RELU=0 RN_TEST_MATCH="[bB]atch" ./rnlua tests/run.lua tests/test_cuda.lua || rc=1;
  echo "== again with RN_CUDA_BF16_ACT=0 (float32 activations on the GPU, bf16 BN/pooling converting)";
  env RN_CUDA_BF16_ACT=0 ./rnlua tests/run.lua tests/test_cuda_bf16act.lua || rc=1;
  env RN_CUDA_BF16_ACT=0 RN_TEST_MATCH=mixed_bfloat16 ./rnlua tests/run.lua tests/test_cuda.lua || rc=1;
  exit $rc' >/dev/null &
PIDS+=($!)
# the new ops (grouped/transposed convolution, attention, resize, bf16 tensors,
# MobileNetV2/ViT steps), then the new ops under the cuDNN graph API
if [ -f tests/test_cuda_ops2.lua ]; then
  step cuda_ops2 150 bash -c 'env RN_TEST_VERBOSE=2 ./rnlua tests/run.lua tests/test_cuda_ops2.lua; rc=$?;
    echo "== again with RN_CUDNN_GRAPH=1: the conv tests";
    env RN_CUDNN_GRAPH=1 RN_TEST_MATCH=conv ./rnlua tests/run.lua tests/test_cuda_ops2.lua || rc=1;
    echo "== again with RN_CUDA_BF16_NATIVE=0 RN_CUDA_BF16_ACT=0 (bf16 convolutions, batch norm, pooling through float32 copies): the bfloat16 tests";
    env RN_CUDA_BF16_NATIVE=0 RN_CUDA_BF16_ACT=0 RN_TEST_MATCH=bfloat16 ./rnlua tests/run.lua tests/test_cuda_ops2.lua || rc=1; exit $rc' >/dev/null &
  PIDS+=($!)
fi
if command -v compute-sanitizer >/dev/null; then
  # the light CUDA tests, then a short training run (a few steps of the seed ResNet)
  # shellcheck disable=SC2086
  step sanitizer 150 bash -c "env RN_TEST_LIGHT=1 compute-sanitizer --tool memcheck --error-exitcode 86 \
    --print-limit 30 ./rnlua tests/run.lua tests/test_cuda.lua tests/test_cuda_data.lua tests/test_cuda_bf16act.lua; rc=\$?;
    echo '== a short training run under memcheck';
    compute-sanitizer --tool memcheck --error-exitcode 86 --print-limit 30 ./rnlua scripts/resnet_cifar.lua \
      --device cuda --epochs 1 --train-limit 512 --test-limit 256 --batch-size 128 $TRAIN_DATA || rc=1; exit \$rc" >/dev/null &
  PIDS+=($!)
else
  skip sanitizer "compute-sanitizer not on PATH"
fi
if [ -f tests/dist/nccl_check.lua ]; then
  step nccl 90 ./rnlua tests/dist/nccl_check.lua >/dev/null &
  PIDS+=($!)
fi
if [ -f scripts/resnet_cifar.lua ] && ! have_train_data; then
  skip train "no CIFAR-10 / fashion-mnist here (set RN_GPU_TRAIN_ARGS=\"--data PATH ...\")"
elif [ -f scripts/resnet_cifar.lua ]; then
  # shellcheck disable=SC2086
  step train 90 ./rnlua scripts/resnet_cifar.lua ${RN_GPU_TRAIN_ARGS:---device cuda --epochs 4 \
    --train-limit 12800 --test-limit 2000 $TRAIN_DATA} >/dev/null &
  PIDS+=($!)
fi
wait "${PIDS[@]}"
for f in cuda_tests cuda_ops2 sanitizer nccl train; do
  [ -f "$OUTDIR/$f.log" ] && { echo "== $f (tail)"; tail -n 12 "$OUTDIR/$f.log"; }
done
unset OMP_NUM_THREADS

step oom 60 env RN_TEST_VERBOSE=2 RN_TEST_MATCH="out of memory" ./rnlua tests/run.lua tests/test_cuda.lua

if [ "${RN_GPU_FULL_SUITE:-0}" = 1 ]; then
  step suite 300 ./rnlua tests/run.lua
fi

# ---- phase 2: speed, one thing at a time ----------------------------------------
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
  # cuDNN's heuristics (the default); the last run measures them (RN_CUDNN_FIND=1, as
  # torch.backends.cudnn.benchmark): on the H200 (2026-12-04, doc/perf.md) Find
  # chose slower bf16 algorithms than the heuristics
  BENCH_ARGS=${RN_GPU_BENCH_ARGS:---batch-sizes 128,512 --warmup 3 --steps 15 --budget 40 --profile 128}
  # then fp32 on the paths before issue 19 (RESULT mode "fp32+find+legacy")
  step bench 140 bash -c "env RN_CUDNN_FIND=${RN_CUDNN_FIND:-0} ./rnlua scripts/bench_gpu.lua $BENCH_ARGS;
    rc=\$?; env RN_CUDNN_FIND=${RN_CUDNN_FIND:-0} RN_FUSED_OPTIM=0 RN_CUDNN_DESC_CACHE=0 \
    ./rnlua scripts/bench_gpu.lua --batch-sizes 128,512 --warmup 3 --steps 10 --budget 30 --modes fp32 || rc=1;
    env RN_CUDNN_FIND=${RN_CUDNN_FIND:-0} ./rnlua scripts/bench_gpu.lua --batch-sizes 128,512 --warmup 4 \
    --steps 15 --budget 30 --graph 1 || rc=1;
    env RN_CUDNN_FIND=${RN_CUDNN_FIND:-0} RN_CUDNN_GRAPH=1 ./rnlua scripts/bench_gpu.lua --batch-sizes 128,512 \
    --warmup 3 --steps 10 --budget 25 --modes fp32 || rc=1;
    env RN_CUDNN_FIND=${RN_CUDNN_FIND:-0} RN_CUDA_BF16_ACT=0 ./rnlua scripts/bench_gpu.lua --batch-sizes 128,512 \
    --warmup 4 --steps 15 --budget 20 --graph 1 --modes bf16 || rc=1;
    env RN_CUDNN_FIND=1 ./rnlua scripts/bench_gpu.lua --batch-sizes 128,512 \
    --warmup 4 --steps 15 --budget 20 --graph 1 || rc=1; exit \$rc"
  if command -v python3 >/dev/null && env LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" timeout 60 python3 -c 'import torch' 2>/dev/null; then
    HAVE_TORCH=1
    # shellcheck disable=SC2086
    step bench_torch 90 env LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" PYTHONUNBUFFERED=1 python3 scripts/bench_gpu_torch.py \
      ${RN_GPU_TORCH_ARGS:---batch-sizes 128,512 --warmup 3 --steps 15 --budget 85}
  else
    HAVE_TORCH=0
    skip bench_torch "python3 with torch not found"
  fi
  bench_table "$BENCH_TABLE" "$OUTDIR/bench.log" "$OUTDIR/bench_torch.log" >/dev/null
else
  skip bench "scripts/bench_gpu.lua not present"
fi
# one example of each new family on the GPU, rnlua beside PyTorch (same models,
# same sizes): MobileNetV2 (depthwise convolutions) and ViT (attention), fp32
# and bf16, batch 128
if [ -f scripts/bench_arch.sh ]; then
  step arch 100 env TORCH_BUDGET=50 PYTHON=python3 PYTHON_LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" scripts/bench_arch.sh \
    --device cuda --precision fp32,bf16 --models mobilenet_v2,vit --batch 128 --warmup 5 --reps 30 --budget 25
  # where MobileNetV2's and ViT's GPU time goes, per layer type (CUDA events)
  step arch_profile 40 bash -c './rnlua scripts/profile_arch.lua --device cuda --batch 128 --models mobilenet_v2,vit;
    ./rnlua scripts/profile_arch.lua --device cuda --batch 128 --models seed --precision bf16' 
else
  skip arch "scripts/bench_arch.sh not present"
fi

# where the step's time goes: Nsight Compute's duration of every kernel of a
# 2-step run (1 warm-up + 1 timed) at batch 128, bf16 then fp32, summed per
# kernel by scripts/gpu_kernels.py, beside the step time bench.log measured
# (without the profiler); the bf16 run's float32<->bf16 conversion kernels listed
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
if [ -n "$NCU" ] && [ -f scripts/gpu_kernels.py ] && [ -f scripts/bench_gpu.lua ]; then
  step kernels 100 bash -c 'for m in bf16 fp32; do
      ms=$(awk -v m="$m" '"'"'$1 == "RESULT" && $2 == "rnlua" && index($3, m) == 1 && $3 !~ /legacy|graph/ && $4 == 128 { print 128000 / $5; exit }'"'"' "'"$OUTDIR"'/bench.log")
      echo "== $m: ncu over bench_gpu.lua --batch-sizes 128 --warmup 1 --steps 1 (step time without the profiler: ${ms:-?} ms)"
      "'"$NCU"'" --clock-control none --metrics gpu__time_duration.sum --csv ./rnlua scripts/bench_gpu.lua \
        --batch-sizes 128 --warmup 1 --steps 1 --modes $m >/tmp/rn_ncu_$m.csv 2>/tmp/rn_ncu_$m.err || { echo "ncu failed:"; tail -n 20 /tmp/rn_ncu_$m.err; }
      python3 scripts/gpu_kernels.py /tmp/rn_ncu_$m.csv --steps 2 ${ms:+--step-ms $ms}
    done'
else
  skip kernels "ncu or scripts/gpu_kernels.py not found"
fi
exit 0
