/* precision.c - the math-precision policy and the CPU's features.
 *
 * Policy: RN_F32 (default) or RN_BF16 ("mixed_bfloat16"): convolutions
 * compute in bfloat16 with float32 accumulation; every tensor (activations,
 * weights, gradients, optimizer state, BN statistics) stays float32, so the
 * master weights are float32. On the CPU it needs AVX512-BF16 or AMX (the
 * setter refuses otherwise, naming what the CPU has); cuDNN honours it on
 * the GPU.
 *
 * Features are read once with CPUID (leaves 1 and 7), so one binary runs
 * everywhere and uses what the machine has. They are then limited by the ISA
 * cap oneDNN honours (ONEDNN_MAX_CPU_ISA, or DNNL_MAX_CPU_ISA: SSE41, AVX,
 * AVX2, AVX2_VNNI, AVX512_CORE, AVX512_CORE_VNNI, AVX512_CORE_BF16,
 * AVX512_CORE_AMX, ALL): the cap is read back from oneDNN itself
 * (dnnl_get_effective_cpu_isa), so our own choices and oneDNN's kernels
 * agree, and a capped run on an AVX-512 or AMX machine takes the code paths
 * of an AVX2-only CPU (make test-isa). rn_cpu_features_hw keeps the
 * uncapped CPUID answer for reports. */
#include <cpuid.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>
#include <string.h>

#include "rn.h"

static rn_dtype math = RN_F32;

static rn_cpu_features hw, feats;
static int feats_done;
static char model[49];
static const char *isa_name = "unknown";

static void read_cpuid(void) {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (__get_cpuid_count(1, 0, &a, &b, &c, &d)) {
    hw.fma = (c >> 12) & 1;
    hw.avx = (c >> 28) & 1;
  }
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    unsigned max_sub = a;
    hw.avx2 = (b >> 5) & 1;
    hw.avx512f = (b >> 16) & 1;
    hw.avx512bw = (b >> 30) & 1;
    hw.avx512vl = (b >> 31) & 1;
    hw.avx512_vnni = (c >> 11) & 1;
    hw.amx_bf16 = (d >> 22) & 1;
    hw.amx_tile = (d >> 24) & 1;
    hw.amx_int8 = (d >> 25) & 1;
    if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d))
      hw.avx512_bf16 = (a >> 5) & 1;
  }
  unsigned regs[12];
  if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
    for (unsigned i = 0; i < 3; i++)
      __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2],
                  &regs[4 * i + 3]);
    memcpy(model, regs, 48);
    model[48] = 0;
  }
#endif
  /* trim the brand string's padding */
  char *s = model;
  while (*s == ' ') s++;
  memmove(model, s, strlen(s) + 1);
  for (size_t n = strlen(model); n > 0 && model[n - 1] == ' '; n--) model[n - 1] = 0;
  if (!model[0]) strcpy(model, "unknown CPU");
}

/* oneDNN's ISA values are nested bit sets: a level includes every bit of
 * the levels below it (dnnl_types.h), so "at least L" is (eff & L) == L. */
static bool at_least(unsigned eff, unsigned level) { return (eff & level) == level; }

static void compute(void) {
  read_cpuid();
  unsigned eff = (unsigned)dnnl_get_effective_cpu_isa();
  static const struct { unsigned v; const char *name; } names[] = {
    {dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"},
    {dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"},
    {dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"},
    {dnnl_cpu_isa_avx512_core, "avx512_core"},
    {dnnl_cpu_isa_avx2_vnni, "avx2_vnni"},
    {dnnl_cpu_isa_avx2, "avx2"},
    {dnnl_cpu_isa_avx, "avx"},
    {dnnl_cpu_isa_sse41, "sse41"},
  };
  isa_name = "none (below sse41)";
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (eff == names[i].v) { isa_name = names[i].name; break; }
  if (!strncmp(isa_name, "none", 4) && eff) isa_name = "other";
  feats = hw;
  bool avx = at_least(eff, dnnl_cpu_isa_avx), avx2 = at_least(eff, dnnl_cpu_isa_avx2);
  bool a512 = at_least(eff, dnnl_cpu_isa_avx512_core);
  feats.avx &= avx;
  feats.fma &= avx2; /* oneDNN's AVX2 level is AVX2 + FMA */
  feats.avx2 &= avx2;
  feats.avx512f &= a512;
  feats.avx512bw &= a512;
  feats.avx512vl &= a512;
  feats.avx512_vnni &= at_least(eff, dnnl_cpu_isa_avx512_core_vnni);
  feats.avx512_bf16 &= at_least(eff, dnnl_cpu_isa_avx512_core_bf16);
  bool amx = at_least(eff, dnnl_cpu_isa_avx512_core_amx);
  feats.amx_tile &= amx;
  feats.amx_bf16 &= amx;
  feats.amx_int8 &= amx;
}

const rn_cpu_features *rn_cpu_features_get(void) {
  if (!feats_done) {
    feats_done = 1;
    compute();
  }
  return &feats;
}

const rn_cpu_features *rn_cpu_features_hw(void) {
  rn_cpu_features_get();
  return &hw;
}

const char *rn_cpu_isa_name(void) {
  rn_cpu_features_get();
  return isa_name;
}

const char *rn_cpu_isa_cap(void) {
  const char *s = getenv("ONEDNN_MAX_CPU_ISA");
  if (!s || !*s) s = getenv("DNNL_MAX_CPU_ISA");
  return s && *s ? s : NULL;
}

const char *rn_cpu_model(void) {
  rn_cpu_features_get();
  return model;
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
    const rn_cpu_features *f = rn_cpu_features_get(), *h = rn_cpu_features_hw();
    const char *cap = rn_cpu_isa_cap();
    bool capped = h->avx512_bf16 || (h->amx_bf16 && h->amx_tile);
    return rn_err("math precision bfloat16 needs the AVX512-BF16 or AMX-BF16 instructions; "
                  "this CPU %s %s%s%s%s (use float32 here, or a GPU)",
                  capped ? "has them, but the ISA cap leaves" : "has",
                  f->avx512f ? "AVX-512 without BF16" : f->avx2 ? "AVX2 only"
                  : f->avx   ? "AVX only" : "no AVX",
                  capped ? " (ONEDNN_MAX_CPU_ISA=" : "", capped ? (cap ? cap : "?") : "",
                  capped ? ")" : "");
  }
  math = dt;
  return 0;
}
