/* bf16_twin.h - the converting path of 16-bit tensors, one text for every
 * backend (core/cpu/bf16.c, core/cuda/bf16.c include it, as unary_math.h is
 * made for float and double): a wrapper per kernel slot widens each
 * bfloat16/float16 operand to a contiguous float32 twin on the same device
 * (exact), runs the backend's float32 kernel (float32 accumulation, float32
 * statistics), and rounds each 16-bit output back once, to nearest even.
 * Operands already float32/float64 (batch norm's statistics and parameters,
 * attention's lse, ...) pass through, so a bf16 activation with float32
 * parameters works as it should; tensors of other dtypes reach the kernel
 * untouched.
 *
 * The includer defines, before including:
 *   BW_DEV        the device (RN_CPU, RN_CUDA)
 *   BW_COPY       its copy kernel (dst, src): converting, strided
 *   BW(slot)      the wrapper's name for a slot
 *   BW_K(slot)    the backend's own kernel for it
 *   BW_NATIVE(x)  true when the backend's batch-norm kernels read and
 *                 write x's dtype themselves (then the bn and bn_relu
 *                 wrappers pass straight through)
 *   BW_LINK       the wrappers' storage class (static, or empty where
 *                 another file's backend table names them)
 * and may define:
 *   BW_PARAM_OK(p)      with BW_NATIVE(x): the bn kernels also take the
 *                       (C) tensor p (a parameter, statistic or parameter
 *                       gradient) as it is; default true
 *   BW_POOL_NATIVE(t)   the pooling kernels read and write 16-bit tensor t
 *                       themselves; default false
 *   BW_CONV, BW_CONV_NATIVE(t)  the convolution slots (end of file) */
#include <stdbool.h>

#ifndef BW_PARAM_OK
#define BW_PARAM_OK(p) ((void)(p), true)
#endif
#ifndef BW_POOL_NATIVE
#define BW_POOL_NATIVE(t) ((void)(t), false)
#endif

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
  rn_tensor *f = rn_empty(t->ndim, t->shape, RN_F32, BW_DEV);
  if (!f || c->n == CV_MAX || (values && BW_COPY(f, t) < 0)) {
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
static rn_tensor *out_opt(cv *c, rn_tensor *t) { return t ? out(c, t, false) : NULL; }
static const rn_tensor *in_opt(cv *c, const rn_tensor *t) { return t ? in(c, t) : NULL; }

/* Rounds the outputs back (when rc == 0) and frees the twins. */
static int cv_end(cv *c, int rc) {
  if (c->fail && rc == 0) rc = -1;
  for (int i = 0; i < c->n; i++) {
    if (rc == 0 && c->dst[i] && BW_COPY(c->dst[i], c->tmp[i]) < 0) rc = -1;
    rn_release(c->tmp[i]);
  }
  return rc;
}

#define RUN(call) (c.fail ? cv_end(&c, -1) : cv_end(&c, (call)))

/* batch norm on x with the n (C) tensors p (NULL entries: absent) goes
 * straight to the backend's kernels */
static bool bn_direct(const rn_tensor *x, const rn_tensor *const *p, int n) {
  if (!BW_NATIVE(x)) return false;
  for (int i = 0; i < n; i++)
    if (p[i] && !BW_PARAM_OK(p[i])) return false;
  return true;
}

/* pooling on these tensors (NULL entries: absent) goes straight to the
 * backend's kernels: each present one 16-bit and taken natively */
static bool pool_direct(const rn_tensor *a, const rn_tensor *b, const rn_tensor *c,
                        const rn_tensor *d) {
  const rn_tensor *t[4] = {a, b, c, d};
  for (int i = 0; i < 4; i++)
    if (t[i] && !(half(t[i]) && BW_POOL_NATIVE(t[i]))) return false;
  return true;
}

BW_LINK int BW(unary_backward)(rn_unop op, const double *p, rn_tensor *gx, const rn_tensor *gy,
                              const rn_tensor *x, const rn_tensor *y) {
  cv c = {0};
  rn_tensor *GX = out(&c, gx, false);
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x), *Y = in(&c, y);
  return RUN(BW_K(unary_backward)(op, p, GX, GY, X, Y));
}

BW_LINK int BW(softmax)(rn_tensor *y, const rn_tensor *x, bool log) {
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x);
  return RUN(BW_K(softmax)(Y, X, log));
}

BW_LINK int BW(softmax_backward)(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *y,
                                bool log) {
  cv c = {0};
  rn_tensor *GX = out(&c, gx, false);
  const rn_tensor *GY = in(&c, gy), *Y = in(&c, y);
  return RUN(BW_K(softmax_backward)(GX, GY, Y, log));
}

BW_LINK int BW(cross_entropy)(rn_tensor *loss, rn_tensor *dlogits, const rn_tensor *logits,
                             const rn_tensor *labels, double smoothing) {
  cv c = {0};
  rn_tensor *L = out(&c, loss, false), *D = out_opt(&c, dlogits);
  const rn_tensor *X = in(&c, logits);
  return RUN(BW_K(cross_entropy)(L, D, X, labels, smoothing));
}

BW_LINK int BW(pool2d_fwd)(bool max, rn_tensor *y, const rn_tensor *x, const rn_pool_params *p) {
  if (pool_direct(y, x, NULL, NULL)) return BW_K(pool2d_fwd)(max, y, x, p);
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x);
  return RUN(BW_K(pool2d_fwd)(max, Y, X, p));
}

BW_LINK int BW(pool2d_bwd)(bool max, rn_tensor *gx, const rn_tensor *gy, const rn_tensor *x,
                          const rn_tensor *y, const rn_pool_params *p) {
  if (pool_direct(gx, gy, x, y)) return BW_K(pool2d_bwd)(max, gx, gy, x, y, p);
  cv c = {0};
  rn_tensor *GX = out(&c, gx, false);
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x), *Y = in(&c, y);
  return RUN(BW_K(pool2d_bwd)(max, GX, GY, X, Y, p));
}

BW_LINK int BW(bn_fwd_train)(rn_tensor *y, rn_tensor *sm, rn_tensor *si, const rn_tensor *x,
                            const rn_tensor *gamma, const rn_tensor *beta, rn_tensor *rm,
                            rn_tensor *rv, double momentum, bool unbiased, double eps) {
  const rn_tensor *ps[6] = {gamma, beta, rm, rv, sm, si};
  if (bn_direct(x, ps, 6))
    return BW_K(bn_fwd_train)(y, sm, si, x, gamma, beta, rm, rv, momentum, unbiased, eps);
  cv c = {0};
  rn_tensor *Y = out(&c, y, false), *SM = out(&c, sm, false), *SI = out(&c, si, false);
  rn_tensor *RM = rm ? out(&c, rm, true) : NULL, *RV = rv ? out(&c, rv, true) : NULL;
  const rn_tensor *X = in(&c, x), *G = in_opt(&c, gamma), *B = in_opt(&c, beta);
  return RUN(BW_K(bn_fwd_train)(Y, SM, SI, X, G, B, RM, RV, momentum, unbiased, eps));
}

BW_LINK int BW(bn_fwd_infer)(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                            const rn_tensor *beta, const rn_tensor *rm, const rn_tensor *rv,
                            double eps) {
  const rn_tensor *ps[4] = {gamma, beta, rm, rv};
  if (bn_direct(x, ps, 4)) return BW_K(bn_fwd_infer)(y, x, gamma, beta, rm, rv, eps);
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x), *G = in_opt(&c, gamma), *B = in_opt(&c, beta);
  const rn_tensor *RM = in(&c, rm), *RV = in(&c, rv);
  return RUN(BW_K(bn_fwd_infer)(Y, X, G, B, RM, RV, eps));
}

BW_LINK int BW(bn_bwd)(rn_tensor *gx, rn_tensor *gg, rn_tensor *gb, const rn_tensor *gy,
                      const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *sm,
                      const rn_tensor *si) {
  const rn_tensor *ps[5] = {gamma, sm, si, gg, gb};
  if (bn_direct(x, ps, 5)) return BW_K(bn_bwd)(gx, gg, gb, gy, x, gamma, sm, si);
  cv c = {0};
  rn_tensor *GX = out_opt(&c, gx), *GG = out_opt(&c, gg), *GB = out_opt(&c, gb);
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x), *G = in_opt(&c, gamma);
  const rn_tensor *SM = in(&c, sm), *SI = in(&c, si);
  return RUN(BW_K(bn_bwd)(GX, GG, GB, GY, X, G, SM, SI));
}

/* the fused BN+ReLU slots (issue 19), the same way */
BW_LINK int BW(bn_relu_fwd_train)(rn_tensor *y, rn_tensor *sm, rn_tensor *si, const rn_tensor *x,
                                 const rn_tensor *gamma, const rn_tensor *beta, rn_tensor *rm,
                                 rn_tensor *rv, double momentum, bool unbiased, double eps) {
  const rn_tensor *ps[6] = {gamma, beta, rm, rv, sm, si};
  if (bn_direct(x, ps, 6))
    return BW_K(bn_relu_fwd_train)(y, sm, si, x, gamma, beta, rm, rv, momentum, unbiased, eps);
  cv c = {0};
  rn_tensor *Y = out(&c, y, false), *SM = out(&c, sm, false), *SI = out(&c, si, false);
  rn_tensor *RM = rm ? out(&c, rm, true) : NULL, *RV = rv ? out(&c, rv, true) : NULL;
  const rn_tensor *X = in(&c, x), *G = in_opt(&c, gamma), *B = in_opt(&c, beta);
  return RUN(BW_K(bn_relu_fwd_train)(Y, SM, SI, X, G, B, RM, RV, momentum, unbiased, eps));
}

BW_LINK int BW(bn_relu_fwd_infer)(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                                 const rn_tensor *beta, const rn_tensor *rm, const rn_tensor *rv,
                                 double eps) {
  const rn_tensor *ps[4] = {gamma, beta, rm, rv};
  if (bn_direct(x, ps, 4)) return BW_K(bn_relu_fwd_infer)(y, x, gamma, beta, rm, rv, eps);
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x), *G = in_opt(&c, gamma), *B = in_opt(&c, beta);
  const rn_tensor *RM = in(&c, rm), *RV = in(&c, rv);
  return RUN(BW_K(bn_relu_fwd_infer)(Y, X, G, B, RM, RV, eps));
}

BW_LINK int BW(bn_relu_bwd)(rn_tensor *gx, rn_tensor *gg, rn_tensor *gb, const rn_tensor *gy,
                           const rn_tensor *x, const rn_tensor *y, const rn_tensor *gamma,
                           const rn_tensor *beta, const rn_tensor *sm, const rn_tensor *si) {
  const rn_tensor *ps[6] = {gamma, beta, sm, si, gg, gb};
  if (bn_direct(x, ps, 6)) return BW_K(bn_relu_bwd)(gx, gg, gb, gy, x, y, gamma, beta, sm, si);
  cv c = {0};
  rn_tensor *GX = out_opt(&c, gx), *GG = out_opt(&c, gg), *GB = out_opt(&c, gb);
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x), *Y = in(&c, y);
  const rn_tensor *G = in_opt(&c, gamma), *B = in_opt(&c, beta);
  const rn_tensor *SM = in(&c, sm), *SI = in(&c, si);
  return RUN(BW_K(bn_relu_bwd)(GX, GG, GB, GY, X, Y, G, B, SM, SI));
}

BW_LINK int BW(gnorm_fwd)(rn_tensor *y, rn_tensor *mean, rn_tensor *rstd, const rn_tensor *x,
                         const rn_tensor *gamma, const rn_tensor *beta, int64_t N, int64_t S,
                         int64_t G, int64_t Cg, double eps) {
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x), *GA = in_opt(&c, gamma), *B = in_opt(&c, beta);
  return RUN(BW_K(gnorm_fwd)(Y, mean, rstd, X, GA, B, N, S, G, Cg, eps));
}

BW_LINK int BW(gnorm_bwd)(rn_tensor *gx, rn_tensor *gg, rn_tensor *gb, const rn_tensor *gy,
                         const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *mean,
                         const rn_tensor *rstd, int64_t N, int64_t S, int64_t G, int64_t Cg) {
  cv c = {0};
  rn_tensor *GX = out_opt(&c, gx), *GG = out_opt(&c, gg), *GB = out_opt(&c, gb);
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x), *GA = in_opt(&c, gamma);
  return RUN(BW_K(gnorm_bwd)(GX, GG, GB, GY, X, GA, mean, rstd, N, S, G, Cg));
}

BW_LINK int BW(embedding_bwd)(rn_tensor *gw, const rn_tensor *gy, const rn_tensor *idx) {
  cv c = {0};
  rn_tensor *GW = out(&c, gw, true); /* zeroed by the front end, += */
  const rn_tensor *GY = in(&c, gy);
  return RUN(BW_K(embedding_bwd)(GW, GY, idx));
}

BW_LINK int BW(sdpa_fwd)(rn_tensor *o, rn_tensor *lse, const rn_tensor *q, const rn_tensor *k,
                        const rn_tensor *v, const rn_sdpa_params *p) {
  cv c = {0};
  rn_tensor *O = out(&c, o, false);
  const rn_tensor *Q = in(&c, q), *K = in(&c, k), *V = in(&c, v);
  return RUN(BW_K(sdpa_fwd)(O, lse, Q, K, V, p));
}

BW_LINK int BW(sdpa_bwd)(rn_tensor *gq, rn_tensor *gk, rn_tensor *gv, const rn_tensor *go,
                        const rn_tensor *q, const rn_tensor *k, const rn_tensor *v,
                        const rn_tensor *o, const rn_tensor *lse, const rn_sdpa_params *p) {
  cv c = {0};
  rn_tensor *GQ = out_opt(&c, gq), *GK = out_opt(&c, gk), *GV = out_opt(&c, gv);
  const rn_tensor *GO = in(&c, go), *Q = in(&c, q), *K = in(&c, k), *V = in(&c, v);
  const rn_tensor *O = in(&c, o);
  return RUN(BW_K(sdpa_bwd)(GQ, GK, GV, GO, Q, K, V, O, lse, p));
}

BW_LINK int BW(line_fwd)(rn_tensor *y, const rn_tensor *x, const rn_line_params *p) {
  if (p->kind != RN_LINE_BILINEAR) return BW_K(line_fwd)(y, x, p); /* bytewise: any dtype */
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x);
  return RUN(BW_K(line_fwd)(Y, X, p));
}

BW_LINK int BW(line_bwd)(rn_tensor *gx, const rn_tensor *gy, const rn_line_params *p) {
  cv c = {0};
  rn_tensor *GX = out(&c, gx, true); /* zeroed by the front end, += */
  const rn_tensor *GY = in(&c, gy);
  return RUN(BW_K(line_bwd)(GX, GY, p));
}

#ifdef BW_CONV /* convolution slots (the CPU's conv.c calls its own, oneDNN first) */
/* BW_CONV_NATIVE(t): the kernel takes bf16 tensor t as it is (cuDNN's bf16
 * convolutions); a failure there (no bf16 algorithm for the shape) falls
 * back to the converting path */
#ifndef BW_CONV_NATIVE
#define BW_CONV_NATIVE(t) ((void)(t), false)
#endif
#define BW_TRY_NATIVE(t, call)                        \
  do {                                                \
    if (BW_CONV_NATIVE(t)) {                          \
      if ((call) == 0) return 0;                      \
      rn_clear_error();                               \
    }                                                 \
  } while (0)

BW_LINK int BW(conv2d_fwd)(rn_tensor *y, const rn_tensor *x, const rn_tensor *w,
                           const rn_tensor *b, const rn_conv_params *p) {
  BW_TRY_NATIVE(x, BW_K(conv2d_fwd)(y, x, w, b, p));
  cv c = {0};
  rn_tensor *Y = out(&c, y, false);
  const rn_tensor *X = in(&c, x), *W = in(&c, w), *B = in_opt(&c, b);
  return RUN(BW_K(conv2d_fwd)(Y, X, W, B, p));
}

BW_LINK int BW(conv2d_bwd_data)(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                                const rn_conv_params *p) {
  BW_TRY_NATIVE(gy, BW_K(conv2d_bwd_data)(gx, gy, w, p));
  cv c = {0};
  rn_tensor *GX = out(&c, gx, false);
  const rn_tensor *GY = in(&c, gy), *W = in(&c, w);
  return RUN(BW_K(conv2d_bwd_data)(GX, GY, W, p));
}

BW_LINK int BW(conv2d_bwd_filter)(rn_tensor *gw, rn_tensor *gb, const rn_tensor *gy,
                                  const rn_tensor *x, const rn_conv_params *p) {
  BW_TRY_NATIVE(x, BW_K(conv2d_bwd_filter)(gw, gb, gy, x, p));
  cv c = {0};
  rn_tensor *GW = out(&c, gw, false), *GB = out_opt(&c, gb);
  const rn_tensor *GY = in(&c, gy), *X = in(&c, x);
  return RUN(BW_K(conv2d_bwd_filter)(GW, GB, GY, X, p));
}
#endif
