/* wino_avx512.c (cpu) - the Winograd F(4x4,3x3) block kernel (wino_kern.h)
 * for AVX-512F: 16 floats per vector. Compiled with -mavx512f -mfma
 * (Makefile); wino.c calls it only when the capped features
 * (rn_cpu_features_get, which follow ONEDNN_MAX_CPU_ISA) have AVX-512F.
 * Built without those flags it offers no kernel. */
#include "wino.h"

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

typedef __m512 vf;
#define VL 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VBCAST(s) _mm512_set1_ps(s)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define KNAME "rn_wino_f4x3:avx512"
#define ISA_FN rn_wino_isa_avx512
#include "wino_kern.h"

#else
const rn_wino_isa *rn_wino_isa_avx512(void) { return NULL; }
#endif
