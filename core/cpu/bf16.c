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
 * inputs, rounded once (tests/test_bf16.lua compares them). */
#include <string.h>

#include "cpu.h"

#define CV_MAX 12

/* The temporaries of one wrapped call: up to CV_MAX float32 twins, with the
 * 16-bit tensor each stands for (outputs are rounded back by cv_end). */
typedef struct {
  rn_tensor *tmp[CV_MAX];
  rn_tensor *dst[CV_MAX]; /* output to round into, or NULL for an input */
  int n, fail;
} cv;

static bool half(const rn_tensor *t) { return t && (t->dtype == RN_BF16 || t->dtype == RN_F16); }

static rn_tensor *twin(cv *c, const rn_tensor *t, rn_tensor *dst, bool values) {
  if (!half(t)) return (rn_tensor *)t;
  if (c->fail) return NULL;
  rn_tensor *f = rn_empty(t->ndim, t->shape, RN_F32, RN_CPU);
  if (!f || c->n == CV_MAX || (values && rn_cpu_copy(f, t) < 0)) {
    rn_release(f);
    c->fail = 1;
    return NULL;
  }
  c->tmp[c->n] = f;
  c->dst[c->n++] = dst;
  return f;
}

/* input: a float32 copy of a 16-bit tensor, else t itself */
static const rn_tensor *in(cv *c, const rn_tensor *t) { return twin(c, t, NULL, true); }
/* output: a float32 tensor rounded into t at the end (with t's values when
 * the kernel adds into them), else t itself */
static rn_tensor *out(cv *c, rn_tensor *t, bool values) { return twin(c, t, t, values); }

/* Rounds the outputs back (when rc == 0) and frees the twins. */
static int cv_end(cv *c, int rc) {
  if (c->fail && rc == 0) rc = -1;
  for (int i = 0; i < c->n; i++) {
    if (rc == 0 && c->dst[i] && rn_cpu_copy(c->dst[i], c->tmp[i]) < 0) rc = -1;
    rn_release(c->tmp[i]);
  }
  return rc;
}

#define RUN(call) (c.fail ? cv_end(&c, -1) : cv_end(&c, (call)))

bool rn_cpu_is_half(const rn_tensor *t) { return half(t); }

int rn_bf16_unary_backward(rn_unop op, const double *p, rn_tensor *gx, const rn_tensor *gy,
                           const rn_tensor *x, const rn_tensor *y) {
  cv c = {0};
  rn_tensor *GX = out(&c, gx, false);
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x), *Y = in(&c, y);
  return RUN(rn_cpu_unary_backward(op, p, GX, GY, X, Y));
}

int rn_bf16_softmax(rn_tensor *y, const rn_tensor *x, bool log) {
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x);
  return RUN(rn_cpu_softmax(Y, X, log));
}

int rn_bf16_softmax_backward(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *y, bool log) {
  cv c = {0};
  rn_tensor *GX = out(&c, gx, false);
  const rn_tensor *GY = in(&c, gy), *Y = in(&c, y);
  return RUN(rn_cpu_softmax_backward(GX, GY, Y, log));
}

int rn_bf16_cross_entropy(rn_tensor *loss, rn_tensor *dlogits, const rn_tensor *logits,
                          const rn_tensor *labels, double smoothing) {
  cv c = {0};
  rn_tensor *L = out(&c, loss, false), *D = dlogits ? out(&c, dlogits, false) : NULL;
  const rn_tensor *X = in(&c, logits);
  return RUN(rn_cpu_cross_entropy(L, D, X, labels, smoothing));
}

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

int rn_bf16_pool2d_fwd(bool max, rn_tensor *y, const rn_tensor *x, const rn_pool_params *p) {
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x);
  return RUN(rn_cpu_pool2d_fwd(max, Y, X, p));
}

int rn_bf16_pool2d_bwd(bool max, rn_tensor *gx, const rn_tensor *gy, const rn_tensor *x,
                       const rn_tensor *y, const rn_pool_params *p) {
  cv c = {0};
  rn_tensor *GX = out(&c, gx, false);
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x), *Y = in(&c, y);
  return RUN(rn_cpu_pool2d_bwd(max, GX, GY, X, Y, p));
}

int rn_bf16_bn_fwd_train(rn_tensor *y, rn_tensor *sm, rn_tensor *si, const rn_tensor *x,
                         const rn_tensor *gamma, const rn_tensor *beta, rn_tensor *rm,
                         rn_tensor *rv, double momentum, bool unbiased, double eps) {
  if (x->dtype == RN_BF16) /* norm.c reads and writes bf16 itself */
    return rn_cpu_bn_fwd_train(y, sm, si, x, gamma, beta, rm, rv, momentum, unbiased, eps);
  cv c = {0};
  rn_tensor *Y = out(&c, y, false), *SM = out(&c, sm, false), *SI = out(&c, si, false);
  rn_tensor *RM = rm ? out(&c, rm, true) : NULL, *RV = rv ? out(&c, rv, true) : NULL;
  const rn_tensor *X = in(&c, x), *G = gamma ? in(&c, gamma) : NULL, *B = beta ? in(&c, beta) : NULL;
  return RUN(rn_cpu_bn_fwd_train(Y, SM, SI, X, G, B, RM, RV, momentum, unbiased, eps));
}

int rn_bf16_bn_relu_fwd_train(rn_tensor *y, rn_tensor *sm, rn_tensor *si, const rn_tensor *x,
                              const rn_tensor *gamma, const rn_tensor *beta, rn_tensor *rm,
                              rn_tensor *rv, double momentum, bool unbiased, double eps) {
  if (x->dtype == RN_BF16) /* norm.c reads and writes bf16 itself */
    return rn_cpu_bn_relu_fwd_train(y, sm, si, x, gamma, beta, rm, rv, momentum, unbiased, eps);
  cv c = {0};
  rn_tensor *Y = out(&c, y, false), *SM = out(&c, sm, false), *SI = out(&c, si, false);
  rn_tensor *RM = rm ? out(&c, rm, true) : NULL, *RV = rv ? out(&c, rv, true) : NULL;
  const rn_tensor *X = in(&c, x), *G = gamma ? in(&c, gamma) : NULL, *B = beta ? in(&c, beta) : NULL;
  return RUN(rn_cpu_bn_relu_fwd_train(Y, SM, SI, X, G, B, RM, RV, momentum, unbiased, eps));
}

int rn_bf16_bn_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                         const rn_tensor *beta, const rn_tensor *rm, const rn_tensor *rv,
                         double eps) {
  if (x->dtype == RN_BF16) /* norm.c reads and writes bf16 itself */
    return rn_cpu_bn_fwd_infer(y, x, gamma, beta, rm, rv, eps);
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x), *G = gamma ? in(&c, gamma) : NULL, *B = beta ? in(&c, beta) : NULL;
  const rn_tensor *RM = in(&c, rm), *RV = in(&c, rv);
  return RUN(rn_cpu_bn_fwd_infer(Y, X, G, B, RM, RV, eps));
}

int rn_bf16_bn_relu_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                              const rn_tensor *beta, const rn_tensor *rm, const rn_tensor *rv,
                              double eps) {
  if (x->dtype == RN_BF16) /* norm.c reads and writes bf16 itself */
    return rn_cpu_bn_relu_fwd_infer(y, x, gamma, beta, rm, rv, eps);
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x), *G = gamma ? in(&c, gamma) : NULL, *B = beta ? in(&c, beta) : NULL;
  const rn_tensor *RM = in(&c, rm), *RV = in(&c, rv);
  return RUN(rn_cpu_bn_relu_fwd_infer(Y, X, G, B, RM, RV, eps));
}

int rn_bf16_bn_bwd(rn_tensor *gx, rn_tensor *gg, rn_tensor *gb, const rn_tensor *gy,
                   const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *sm,
                   const rn_tensor *si) {
  if (x->dtype == RN_BF16) /* norm.c reads and writes bf16 itself */
    return rn_cpu_bn_bwd(gx, gg, gb, gy, x, gamma, sm, si);
  cv c = {0};
  rn_tensor *GX = gx ? out(&c, gx, false) : NULL, *GG = gg ? out(&c, gg, false) : NULL;
  rn_tensor *GB = gb ? out(&c, gb, false) : NULL;
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x), *G = gamma ? in(&c, gamma) : NULL;
  const rn_tensor *SM = in(&c, sm), *SI = in(&c, si);
  return RUN(rn_cpu_bn_bwd(GX, GG, GB, GY, X, G, SM, SI));
}

int rn_bf16_bn_relu_bwd(rn_tensor *gx, rn_tensor *gg, rn_tensor *gb, const rn_tensor *gy,
                        const rn_tensor *x, const rn_tensor *y, const rn_tensor *gamma,
                        const rn_tensor *beta, const rn_tensor *sm, const rn_tensor *si) {
  if (x->dtype == RN_BF16) /* norm.c reads and writes bf16 itself */
    return rn_cpu_bn_relu_bwd(gx, gg, gb, gy, x, y, gamma, beta, sm, si);
  cv c = {0};
  rn_tensor *GX = gx ? out(&c, gx, false) : NULL, *GG = gg ? out(&c, gg, false) : NULL;
  rn_tensor *GB = gb ? out(&c, gb, false) : NULL;
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x), *Y = in(&c, y);
  const rn_tensor *G = gamma ? in(&c, gamma) : NULL, *B = beta ? in(&c, beta) : NULL;
  const rn_tensor *SM = in(&c, sm), *SI = in(&c, si);
  return RUN(rn_cpu_bn_relu_bwd(GX, GG, GB, GY, X, Y, G, B, SM, SI));
}

int rn_bf16_gnorm_fwd(rn_tensor *y, rn_tensor *mean, rn_tensor *rstd, const rn_tensor *x,
                      const rn_tensor *gamma, const rn_tensor *beta, int64_t N, int64_t S,
                      int64_t G, int64_t Cg, double eps) {
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x), *GA = gamma ? in(&c, gamma) : NULL;
  const rn_tensor *B = beta ? in(&c, beta) : NULL;
  return RUN(rn_cpu_gnorm_fwd(Y, mean, rstd, X, GA, B, N, S, G, Cg, eps));
}

int rn_bf16_gnorm_bwd(rn_tensor *gx, rn_tensor *gg, rn_tensor *gb, const rn_tensor *gy,
                      const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *mean,
                      const rn_tensor *rstd, int64_t N, int64_t S, int64_t G, int64_t Cg) {
  cv c = {0};
  rn_tensor *GX = gx ? out(&c, gx, false) : NULL, *GG = gg ? out(&c, gg, false) : NULL;
  rn_tensor *GB = gb ? out(&c, gb, false) : NULL;
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x), *GA = gamma ? in(&c, gamma) : NULL;
  return RUN(rn_cpu_gnorm_bwd(GX, GG, GB, GY, X, GA, mean, rstd, N, S, G, Cg));
}

int rn_bf16_embedding_bwd(rn_tensor *gw, const rn_tensor *gy, const rn_tensor *idx) {
  cv c = {0};
  rn_tensor *GW = out(&c, gw, true);
  const rn_tensor *GY = in(&c, gy);
  return RUN(rn_cpu_embedding_bwd(GW, GY, idx));
}

int rn_bf16_sdpa_fwd(rn_tensor *o, rn_tensor *lse, const rn_tensor *q, const rn_tensor *k,
                     const rn_tensor *v, const rn_sdpa_params *p) {
  cv c = {0};
  rn_tensor *O = out(&c, o, false);
  const rn_tensor *Q = in(&c, q), *K = in(&c, k), *V = in(&c, v);
  return RUN(rn_cpu_sdpa_fwd(O, lse, Q, K, V, p));
}

int rn_bf16_sdpa_bwd(rn_tensor *gq, rn_tensor *gk, rn_tensor *gv, const rn_tensor *go,
                     const rn_tensor *q, const rn_tensor *k, const rn_tensor *v,
                     const rn_tensor *o, const rn_tensor *lse, const rn_sdpa_params *p) {
  cv c = {0};
  rn_tensor *GQ = gq ? out(&c, gq, false) : NULL, *GK = gk ? out(&c, gk, false) : NULL;
  rn_tensor *GV = gv ? out(&c, gv, false) : NULL;
  const rn_tensor *GO = in(&c, go), *Q = in(&c, q), *K = in(&c, k), *V = in(&c, v), *O = in(&c, o);
  return RUN(rn_cpu_sdpa_bwd(GQ, GK, GV, GO, Q, K, V, O, lse, p));
}

int rn_bf16_line_fwd(rn_tensor *y, const rn_tensor *x, const rn_line_params *p) {
  if (p->kind != RN_LINE_BILINEAR) return rn_cpu_line_fwd(y, x, p); /* bytewise: any dtype */
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x);
  return RUN(rn_cpu_line_fwd(Y, X, p));
}

int rn_bf16_line_bwd(rn_tensor *gx, const rn_tensor *gy, const rn_line_params *p) {
  cv c = {0};
  rn_tensor *GX = out(&c, gx, true);
  const rn_tensor *GY = in(&c, gy);
  return RUN(rn_cpu_line_bwd(GX, GY, p));
}
