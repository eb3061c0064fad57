/* nn.c (cuda) - the pool2d_fwd/bwd and bn_fwd_train/bn_fwd_infer/bn_bwd
 * (and, issue 19, their fused BN+ReLU forms bn_relu_*: the ReLU and its
 * backward folded into the affine and partials passes; RN_CUDA_BN_RELU=0
 * leaves the slots empty, so batch norm and relu run as two ops)
 * slots: check layouts and dtypes, allocate the small double scratch
 * (per-block partial sums, per-channel coefficients) from the caching
 * allocator, and launch kernels/nn.cu on the one stream.
 *
 * Pooling, NHWC: x, gx (N,H,W,C), y, gy (N,OH,OW,C), contiguous; the front
 * end (core/ops/pool.c) resolves "same" to explicit pads, which are
 * resolved here too for a direct caller, as the CPU does.
 * Batch norm: x, y, gx, gy (R,C) contiguous; gamma, beta, running_*,
 * save_* (C) contiguous, x's dtype (float32/float64). Statistics in double,
 * summed in the CPU's block order (core/cpu/norm.c).
 *
 * bfloat16 (issue #18, the mixed_bfloat16 policy on the GPU): pooling takes
 * bf16 x/y/gx/gy; batch norm takes a bf16 x, y, gy, gx with float32 gamma,
 * beta, running and saved statistics and parameter gradients (the mixed
 * case, as the CPU's norm.c): the kernels over data read bf16 and write it
 * rounded once, the per-channel ones run in float32/double on the
 * parameters. A bf16 x with bf16 parameters is refused here; core/cuda/
 * bf16.c sends that case (and every bf16 call under RN_CUDA_BF16_ACT=0)
 * through the converting path instead. */
#include "cuda.h"

static int check_float(rn_dtype dt, const char *op) {
  if (dt == RN_F32 || dt == RN_F64 || dt == RN_BF16) return 0;
  return rn_err("%s: dtype %s is not supported on cuda (float32, float64, bfloat16)", op,
                rn_dtype_name(dt));
}

/* The dtype of batch norm's (C) tensors for data of dtype dt: float32 for
 * bfloat16 data (the mixed case), else dt. */
static rn_dtype param_dtype(rn_dtype dt) { return dt == RN_BF16 ? RN_F32 : dt; }

/* ---- pooling ------------------------------------------------------------- */

/* x: (N,H,W,C), y: (N,OH,OW,C) */
static int pool_geom(rnk_pool_geom *g, const rn_tensor *x, const rn_tensor *y,
                     const rn_pool_params *p, const char *op) {
  if (check_float(x->dtype, op) < 0) return -1;
  if (x->ndim != 4 || y->ndim != 4)
    return rn_err("%s: the cuda kernel needs 4-d (N,H,W,C) tensors", op);
  g->N = x->shape[0]; g->H = x->shape[1]; g->W = x->shape[2]; g->C = x->shape[3];
  g->OH = y->shape[1]; g->OW = y->shape[2];
  g->kh = p->kh; g->kw = p->kw; g->sh = p->stride_h; g->sw = p->stride_w;
  int pt = p->pad_top, pb = p->pad_bottom, pl = p->pad_left, pr = p->pad_right;
  g->pt = pt; g->pl = pl;
  g->cip = p->count_include_pad ? 1 : 0;
  if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1)
    return rn_err("%s: kernel (%lld,%lld) and stride (%lld,%lld) must be >= 1", op,
                  (long long)g->kh, (long long)g->kw, (long long)g->sh, (long long)g->sw);
  if (pt < 0 || pb < 0 || pl < 0 || pr < 0)
    return rn_err("%s: padding (top %d, bottom %d, left %d, right %d) must be >= 0", op, pt, pb,
                  pl, pr);
  int64_t eh = g->H + pt + pb - g->kh, ew = g->W + pl + pr - g->kw;
  int64_t oh = eh < 0 ? 0 : eh / g->sh + 1, ow = ew < 0 ? 0 : ew / g->sw + 1;
  if (y->shape[0] != g->N || y->shape[3] != g->C || oh != g->OH || ow != g->OW) {
    char b1[128], b2[128];
    return rn_err("%s: output %s does not match input %s (expected (%lld,%lld,%lld,%lld))", op,
                  rn_shape_str(y, b1, sizeof b1), rn_shape_str(x, b2, sizeof b2),
                  (long long)g->N, (long long)oh, (long long)ow, (long long)g->C);
  }
  if (!rn_is_contiguous(x) || !rn_is_contiguous(y))
    return rn_err("%s: the cuda kernel needs contiguous tensors", op);
  return 0;
}

int rn_cuda_pool2d_fwd(bool max, rn_tensor *y, const rn_tensor *x, const rn_pool_params *p) {
  const char *op = max ? "max_pool2d" : "avg_pool2d";
  rnk_pool_geom g;
  if (pool_geom(&g, x, y, p, op) < 0) return -1;
  if (y->dtype != x->dtype)
    return rn_err("%s: output dtype %s differs from the input's %s", op,
                  rn_dtype_name(y->dtype), rn_dtype_name(x->dtype));
  return CU(rnk_pool2d_fwd((int)x->dtype, max, g, rn_ptr(y), rn_ptr(x), rn_cuda_stream()));
}

int rn_cuda_pool2d_bwd(bool max, rn_tensor *gx, const rn_tensor *gy, const rn_tensor *x,
                       const rn_tensor *y, const rn_pool_params *p) {
  const char *op = max ? "max_pool2d backward" : "avg_pool2d backward";
  rnk_pool_geom g;
  if (pool_geom(&g, gx, gy, p, op) < 0) return -1;
  if (gy->dtype != gx->dtype)
    return rn_err("%s: gradient dtype %s differs from the input's %s", op,
                  rn_dtype_name(gy->dtype), rn_dtype_name(gx->dtype));
  if (max) {
    if (!x || !y) return rn_err("%s: needs the forward input and output", op);
    if (x->dtype != gx->dtype || y->dtype != gx->dtype || !rn_is_contiguous(x) ||
        !rn_is_contiguous(y) || rn_numel(x) != rn_numel(gx) || rn_numel(y) != rn_numel(gy))
      return rn_err("%s: the forward input and output must match the gradients (contiguous)",
                    op);
  }
  return CU(rnk_pool2d_bwd((int)gx->dtype, max, g, rn_ptr(gx), rn_ptr(gy),
                           max ? rn_ptr(x) : NULL, max ? rn_ptr(y) : NULL, rn_cuda_stream()));
}

/* ---- batch norm ---------------------------------------------------------- */

/* (R,C) of contiguous x (C = its last dim) */
static int bn_dims(const rn_tensor *x, const char *op, int64_t *R, int64_t *C) {
  if (check_float(x->dtype, op) < 0) return -1;
  if (x->ndim < 1) return rn_err("%s: x must have at least 1 dim", op);
  if (!rn_is_contiguous(x)) return rn_err("%s: the cuda kernel needs contiguous tensors", op);
  *C = x->shape[x->ndim - 1];
  *R = *C ? rn_numel(x) / *C : 0;
  return 0;
}

/* An optional (C) parameter: NULL, or contiguous with C elements of dt. */
static int bn_param(const rn_tensor *t, const char *what, rn_dtype dt, int64_t C, const char *op) {
  if (!t) return 0;
  if (t->dtype != dt || rn_numel(t) != C || !rn_is_contiguous(t))
    return rn_err("%s: %s must be a contiguous (%lld) %s tensor on cuda", op, what,
                  (long long)C, rn_dtype_name(dt));
  return 0;
}

static void *pp(const rn_tensor *t) { return t ? rn_ptr(t) : NULL; }

/* Device scratch: the block partials (2*C doubles per block), the shift or
 * mean (C doubles) and the coefficients (4*C doubles), one allocation. */
static double *bn_scratch(int64_t R, int64_t C, double **shift, double **coef) {
  int64_t nblk = rnk_bn_nblk(R, C);
  size_t n = (size_t)(nblk > 0 ? nblk : 1) * 2 * (size_t)C + 5 * (size_t)C;
  double *part = rn_cuda_alloc(n * sizeof(double));
  if (!part) return NULL;
  *shift = part + (size_t)(nblk > 0 ? nblk : 1) * 2 * (size_t)C;
  *coef = *shift + C;
  return part;
}

static int bn_fwd_train(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                        const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                        rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                        bool unbiased, double eps, bool relu) {
  const char *op = "batch_norm";
  int64_t R, C;
  if (bn_dims(x, op, &R, &C) < 0) return -1;
  if (R == 0 && C > 0)
    return rn_err("batch_norm: training needs at least one row per channel; x has 0 rows");
  rn_dtype dt = x->dtype, pt = param_dtype(dt);
  if (y->dtype != dt || rn_numel(y) != rn_numel(x) || !rn_is_contiguous(y))
    return rn_err("%s: output must be a contiguous tensor like x", op);
  if (bn_param(gamma, "gamma", pt, C, op) < 0 || bn_param(beta, "beta", pt, C, op) < 0 ||
      bn_param(running_mean, "running_mean", pt, C, op) < 0 ||
      bn_param(running_var, "running_var", pt, C, op) < 0 ||
      bn_param(save_mean, "save_mean", pt, C, op) < 0 ||
      bn_param(save_invstd, "save_invstd", pt, C, op) < 0)
    return -1;
  if (!save_mean || !save_invstd) return rn_err("%s: save_mean and save_invstd are required", op);
  if (C == 0) return 0;
  double *shift, *coef, *part = bn_scratch(R, C, &shift, &coef);
  if (!part) return -1;
  cudaStream_t s = rn_cuda_stream();
  int d = (int)dt, dp = (int)pt; /* the data's dtype, the parameters' */
  /* shift by the first row: sums of (x - x[0]) keep precision for large means */
  int rc = CU(rnk_to_double(d, shift, rn_ptr(x), C, s));
  if (rc == 0) rc = CU(rnk_bn_partials(d, rn_ptr(x), NULL, shift, R, C, part, s));
  if (rc == 0)
    rc = CU(rnk_bn_train_stats(dp, part, R, C, shift, pp(gamma), pp(beta), rn_ptr(save_mean),
                               rn_ptr(save_invstd), pp(running_mean), pp(running_var), momentum,
                               unbiased, eps, coef, s));
  if (rc == 0) rc = CU(rnk_bn_affine_relu(d, rn_ptr(y), NULL, rn_ptr(x), coef, R, C, NULL, relu, s));
  rn_cuda_free(part); /* stream-ordered: reused only by later work on the stream */
  return rc;
}

int rn_cuda_bn_fwd_train(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                         const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                         rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                         bool unbiased, double eps) {
  return bn_fwd_train(y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var,
                      momentum, unbiased, eps, false);
}

/* issue 19: relu(batch_norm(x)) with the ReLU in the affine pass */
int rn_cuda_bn_relu_fwd_train(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                              const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                              rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                              bool unbiased, double eps) {
  return bn_fwd_train(y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var,
                      momentum, unbiased, eps, true);
}

static int bn_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                        const rn_tensor *beta, const rn_tensor *running_mean,
                        const rn_tensor *running_var, double eps, bool relu) {
  const char *op = "batch_norm";
  int64_t R, C;
  if (bn_dims(x, op, &R, &C) < 0) return -1;
  rn_dtype dt = x->dtype, pt = param_dtype(dt);
  if (y->dtype != dt || rn_numel(y) != rn_numel(x) || !rn_is_contiguous(y))
    return rn_err("%s: output must be a contiguous tensor like x", op);
  if (!running_mean || !running_var)
    return rn_err("%s: inference needs running_mean and running_var", op);
  if (bn_param(gamma, "gamma", pt, C, op) < 0 || bn_param(beta, "beta", pt, C, op) < 0 ||
      bn_param(running_mean, "running_mean", pt, C, op) < 0 ||
      bn_param(running_var, "running_var", pt, C, op) < 0)
    return -1;
  if (C == 0 || R == 0) return 0;
  double *coef = rn_cuda_alloc(4 * (size_t)C * sizeof(double));
  if (!coef) return -1;
  cudaStream_t s = rn_cuda_stream();
  int d = (int)dt, dp = (int)pt; /* the data's dtype, the parameters' */
  int rc = CU(rnk_bn_infer_coef(dp, C, pp(gamma), pp(beta), rn_ptr(running_mean),
                                rn_ptr(running_var), eps, coef, s));
  if (rc == 0) rc = CU(rnk_bn_affine_relu(d, rn_ptr(y), NULL, rn_ptr(x), coef, R, C, NULL, relu, s));
  rn_cuda_free(coef);
  return rc;
}

int rn_cuda_bn_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                         const rn_tensor *beta, const rn_tensor *running_mean,
                         const rn_tensor *running_var, double eps) {
  return bn_fwd_infer(y, x, gamma, beta, running_mean, running_var, eps, false);
}

int rn_cuda_bn_relu_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                              const rn_tensor *beta, const rn_tensor *running_mean,
                              const rn_tensor *running_var, double eps) {
  return bn_fwd_infer(y, x, gamma, beta, running_mean, running_var, eps, true);
}

static int bn_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                  const rn_tensor *x, const rn_tensor *mask, const rn_tensor *gamma,
                  const rn_tensor *save_mean, const rn_tensor *save_invstd) {
  const char *op = "batch_norm backward";
  int64_t R, C;
  if (bn_dims(x, op, &R, &C) < 0) return -1;
  rn_dtype dt = x->dtype, pt = param_dtype(dt);
  if (gy->dtype != dt)
    return rn_err("%s: gradient dtype %s differs from x's %s", op, rn_dtype_name(gy->dtype),
                  rn_dtype_name(dt));
  if (rn_numel(gy) != rn_numel(x) || !rn_is_contiguous(gy) ||
      (gx && (gx->dtype != dt || rn_numel(gx) != rn_numel(x) || !rn_is_contiguous(gx))))
    return rn_err("%s: gradients must be contiguous tensors like x", op);
  if (!save_mean || !save_invstd)
    return rn_err("%s: needs save_mean and save_invstd from the forward", op);
  if (bn_param(gamma, "gamma", pt, C, op) < 0 || bn_param(save_mean, "save_mean", pt, C, op) < 0 ||
      bn_param(save_invstd, "save_invstd", pt, C, op) < 0 ||
      bn_param(ggamma, "ggamma", pt, C, op) < 0 || bn_param(gbeta, "gbeta", pt, C, op) < 0)
    return -1;
  if (C == 0) return 0;
  double *mean, *coef, *part = bn_scratch(R, C, &mean, &coef);
  if (!part) return -1;
  cudaStream_t s = rn_cuda_stream();
  int d = (int)dt, dp = (int)pt; /* the data's dtype, the parameters' */
  /* mean as double, both the shift of the sums and coef's m */
  int rc = CU(rnk_to_double(dp, mean, rn_ptr(save_mean), C, s));
  if (rc == 0) rc = CU(rnk_to_double(dp, coef + 2 * C, rn_ptr(save_mean), C, s));
  if (rc == 0)
    rc = CU(rnk_bn_partials_masked(d, rn_ptr(x), rn_ptr(gy), pp(mask), mean, R, C, part, s));
  if (rc == 0)
    rc = CU(rnk_bn_bwd_coef(dp, part, R, C, pp(gamma), rn_ptr(save_invstd), pp(ggamma),
                            pp(gbeta), coef, s));
  if (rc == 0 && gx)
    rc = CU(rnk_bn_affine_relu(d, rn_ptr(gx), rn_ptr(gy), rn_ptr(x), coef, R, C, pp(mask), false,
                               s));
  rn_cuda_free(part);
  return rc;
}

int rn_cuda_bn_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                   const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *save_mean,
                   const rn_tensor *save_invstd) {
  return bn_bwd(gx, ggamma, gbeta, gy, x, NULL, gamma, save_mean, save_invstd);
}

/* issue 19: the fused BN+ReLU's backward: gy is masked by y > 0 inside the
 * two passes (no separate ReLU backward) */
int rn_cuda_bn_relu_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                        const rn_tensor *x, const rn_tensor *y, const rn_tensor *gamma,
                        const rn_tensor *beta, const rn_tensor *save_mean,
                        const rn_tensor *save_invstd) {
  (void)beta;
  if (!y || y->dtype != x->dtype || rn_numel(y) != rn_numel(x) || !rn_is_contiguous(y))
    return rn_err("batch_norm_relu backward: the forward's output must be a contiguous tensor "
                  "like x");
  return bn_bwd(gx, ggamma, gbeta, gy, x, y, gamma, save_mean, save_invstd);
}
