/* wino_avx2.c (cpu) - the Winograd F(4x4,3x3) block kernel (wino_kern.h)
 * for AVX2 + FMA: 8 floats per vector. Compiled with -mavx2 -mfma (Makefile);
 * wino.c calls it only when the capped features (rn_cpu_features_get) have
 * both. Built without those flags (another build's CFLAGS) it offers no
 * kernel, and the rest of the binary stays baseline x86-64. */
#include "wino.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

typedef __m256 vf;
#define VL 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VBCAST(s) _mm256_set1_ps(s)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define KNAME "rn_wino_f4x3:avx2"
#define ISA_FN rn_wino_isa_avx2
#include "wino_kern.h"

#else
const rn_wino_isa *rn_wino_isa_avx2(void) { return NULL; }
#endif
