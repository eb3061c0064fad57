/* precision.c - the math-precision policy and the CPU's features.
 *
 * Policy: RN_F32 (default) or RN_BF16 ("mixed_bfloat16"): convolutions
 * compute in bfloat16 with float32 accumulation; every tensor (activations,
 * weights, gradients, optimizer state, BN statistics) stays float32, so the
 * master weights are float32. On the CPU it needs AVX512-BF16 or AMX (the
 * setter refuses otherwise, naming what the CPU has); cuDNN honours it on
 * the GPU.
 *
 * Features are read once with CPUID (leaf 7), so one binary runs everywhere
 * and uses what the machine has. */
#include <cpuid.h>
#include <string.h>

#include "rn.h"

static rn_dtype math = RN_F32;

static rn_cpu_features feats;
static int feats_done;

const rn_cpu_features *rn_cpu_features_get(void) {
  if (feats_done) return &feats;
  feats_done = 1;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (__get_cpuid_count(1, 0, &a, &b, &c, &d)) {
    feats.fma = (c >> 12) & 1;
    feats.avx = (c >> 28) & 1;
  }
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    unsigned max_sub = a;
    feats.avx2 = (b >> 5) & 1;
    feats.avx512f = (b >> 16) & 1;
    feats.avx512bw = (b >> 30) & 1;
    feats.avx512vl = (b >> 31) & 1;
    feats.avx512_vnni = (c >> 11) & 1;
    feats.amx_bf16 = (d >> 22) & 1;
    feats.amx_tile = (d >> 24) & 1;
    feats.amx_int8 = (d >> 25) & 1;
    if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d))
      feats.avx512_bf16 = (a >> 5) & 1;
  }
#endif
  return &feats;
}

bool rn_cpu_has_bf16(void) {
  const rn_cpu_features *f = rn_cpu_features_get();
  return f->avx512_bf16 || (f->amx_bf16 && f->amx_tile);
}

rn_dtype rn_math_precision(void) { return math; }

int rn_set_math_precision(rn_dtype dt, bool cpu_needed) {
  if (dt != RN_F32 && dt != RN_BF16)
    return rn_err("math precision: %s is not supported (float32, bfloat16)", rn_dtype_name(dt));
  if (dt == RN_BF16 && cpu_needed && !rn_cpu_has_bf16()) {
    const rn_cpu_features *f = rn_cpu_features_get();
    return rn_err("math precision bfloat16 needs a CPU with AVX512-BF16 or AMX-BF16; this CPU "
                  "has %s (use float32 here, or a GPU)",
                  f->avx512f ? "AVX-512 without BF16" : f->avx2 ? "AVX2 only" : "neither");
  }
  math = dt;
  return 0;
}
