/* bf16.c (cpu) - bfloat16 (and float16) tensors on every CPU kernel slot:
 * the converting path.
 *
 * Where a kernel has no 16-bit loop of its own, its slot in the CPU table
 * (backend.c) is the wrapper of this file: each 16-bit operand is widened
 * to a contiguous float32 copy (exact), the float32 kernel runs (float32
 * accumulation, float32 statistics), and each 16-bit output is rounded back
 * to nearest even. Operands that are already float32/float64 (batch norm's
 * statistics and parameters, attention's lse, ...) pass through untouched,
 * so a bf16 activation with float32 parameters works as it should. On a CPU
 * without bf16 instructions this is how most ops run on bf16 tensors; the
 * convolutions run oneDNN's native bf16 kernels instead where the (capped)
 * ISA has AVX512-BF16 or AMX (conv.c, conv_dnnl.c), and come here otherwise.
 * Kernels with bf16 loops of their own: batch norm (norm.c, any CPU: the
 * bn wrappers below pass bf16 straight to it), the binary ops, axpy and the
 * unary ops (elementwise.c, unary.c).
 *
 * The bf16 result of an op is therefore its float32 result on the widened
 * inputs, rounded once (tests/test_bf16.lua compares them).
 *
 * The wrappers every backend shares are core/bf16_twin.h's, made here for
 * the CPU (with the fused BN+ReLU slots, rn_bf16_bn_relu_*); the CPU's own
 * are below it (gemm over raw pointers, the convolutions conv.c calls). */
#include "cpu.h"

static bool bn_native(const rn_tensor *x) { return x->dtype == RN_BF16; } /* norm.c */

#define BW_DEV RN_CPU
#define BW_COPY rn_cpu_copy
#define BW(slot) rn_bf16_##slot
#define BW_K(slot) rn_cpu_##slot
#define BW_NATIVE(x) bn_native(x)
#define BW_LINK
#include "../bf16_twin.h"

bool rn_cpu_is_half(const rn_tensor *t) { return half(t); }

/* A dense float32 copy of the rows x cols matrix at p (leading dim ld). */
static float *widen(const void *p, int64_t rows, int64_t cols, int64_t ld) {
  size_t n = (size_t)(rows * cols);
  float *f = rn_cpu_alloc((n ? n : 1) * sizeof(float));
  if (!f) return NULL;
  const uint16_t *h = p;
#pragma omp parallel for if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t k = 0; k < cols; k++) f[r * cols + k] = rn_bf16_to_f32(h[r * ld + k]);
  return f;
}

int rn_bf16_gemm(rn_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                 const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                 int64_t ldc) {
  if (dt != RN_BF16) return rn_cpu_gemm(dt, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  float *a = widen(A, ta ? K : M, ta ? M : K, lda), *b = a ? widen(B, tb ? N : K, tb ? K : N, ldb) : NULL;
  float *cc = b ? widen(C, M, N, ldc) : NULL; /* beta != 0 reads C */
  int rc = -1;
  if (!cc) {
    rn_err("gemm: out of memory for the float32 copies of (%lld,%lld,%lld) bf16 operands",
           (long long)M, (long long)N, (long long)K);
  } else {
    rc = rn_cpu_gemm(RN_F32, ta, tb, M, N, K, alpha, a, ta ? M : K, b, tb ? K : N, beta, cc, N);
    uint16_t *h = C;
    if (rc == 0)
#pragma omp parallel for if (M * N > 65536)
      for (int64_t r = 0; r < M; r++)
        for (int64_t k = 0; k < N; k++) h[r * ldc + k] = rn_f32_to_bf16(cc[r * N + k]);
  }
  rn_cpu_free(a);
  rn_cpu_free(b);
  rn_cpu_free(cc);
  return rc;
}

/* conv: the converting path, called by conv.c where oneDNN has no bf16
 * kernel for the call (no AVX512-BF16/AMX, deterministic mode, ...) */
int rn_bf16_conv2d_fwd(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                       const rn_conv_params *p, int post) {
  cv c = {0};
  rn_tensor *Y = out(&c, y, post & RN_POST_SUM);
  const rn_tensor *X = in(&c, x), *W = in(&c, w), *B = b ? in(&c, b) : NULL;
  if (!post) return RUN(rn_cpu_conv2d_fwd(Y, X, W, B, p));
  if (c.fail) return cv_end(&c, -1);
  int rc = rn_cpu_conv2d_fwd_fused(Y, X, W, B, p, post);
  if (rc == RN_NOT_FUSED) { /* y untouched: drop the twins without rounding */
    cv_end(&c, -1);
    return RN_NOT_FUSED;
  }
  return cv_end(&c, rc);
}

int rn_bf16_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                            const rn_conv_params *p) {
  cv c = {0};
  rn_tensor *GX = out(&c, gx, false);
  const rn_tensor *GY = in(&c, gy), *W = in(&c, w);
  return RUN(rn_cpu_conv2d_bwd_data(GX, GY, W, p));
}

int rn_bf16_conv2d_bwd_filter(rn_tensor *gw, rn_tensor *gb, const rn_tensor *gy,
                              const rn_tensor *x, const rn_conv_params *p) {
  cv c = {0};
  rn_tensor *GW = out(&c, gw, false), *GB = gb ? out(&c, gb, false) : NULL;
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x);
  return RUN(rn_cpu_conv2d_bwd_filter(GW, GB, GY, X, p));
}
