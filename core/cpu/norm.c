/* norm.c (cpu) - batch normalization kernels over channels-last data:
 * training forward (batch statistics + running-stat update), inference
 * forward (running statistics) and backward.
 *
 * Layout: x, y, gy, gx: (R,C) contiguous (R = N*H*W rows, C channels, C is
 * the fastest dim); gamma, beta, running_*, save_*: (C), same dtype as x
 * (float32 or float64; contiguous or 1-D strided), or float32/bfloat16 for
 * a bfloat16 x. bfloat16 data runs the float32 loops on rows widened into a
 * per-thread buffer, outputs rounded once (no float32 copy of the tensor).
 * Statistics are accumulated in double. Rows are cut into fixed blocks of BLK rows whose partial sums
 * are added in block order, so results do not depend on the thread count.
 * The inner loops run over the C contiguous channels and vectorize.
 *
 * Fused BN+ReLU (bn_relu_*): the same kernels with the ReLU applied to the
 * output in the same pass, and its backward mask (output > 0) applied to gy
 * inside the backward's two passes: no separate ReLU tensor or pass. The
 * backward does not read the output: it recomputes bn(x) > 0 from x, which
 * both passes read anyway, with the forward's own float coefficients (the
 * forward rounds invstd to the saved float32 value before using it, so the
 * backward rebuilds them bit for bit): one activation less to read twice.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "cpu.h"

#define BLK 256        /* rows per block of partial sums */
#define PAR_MIN 32768  /* elements below which a kernel stays on one thread */
#define SUB 32         /* rows summed in float before the double sums (float32) */

/* Element i of a 1-D (C) parameter as double; NULL gives def. */
static inline double pget(const rn_tensor *t, int64_t i, double def) {
  if (!t) return def;
  const char *p = rn_ptr(t);
  int64_t s = t->ndim ? t->stride[0] : 0;
  if (t->dtype == RN_BF16) return rn_bf16f(((const uint16_t *)p)[i * s]);
  return t->dtype == RN_F32 ? (double)((const float *)p)[i * s] : ((const double *)p)[i * s];
}

static inline void pset(rn_tensor *t, int64_t i, double v) {
  char *p = rn_ptr(t);
  int64_t s = t->ndim ? t->stride[0] : 0;
  if (t->dtype == RN_F32) ((float *)p)[i * s] = (float)v;
  else if (t->dtype == RN_BF16) ((uint16_t *)p)[i * s] = rn_f2bf16((float)v);
  else ((double *)p)[i * s] = v;
}

/* (R,C) of x: C is the last dim, R the product of the others. */
static int dims_rc(const rn_tensor *x, const char *op, int64_t *R, int64_t *C) {
  if (x->dtype != RN_F32 && x->dtype != RN_F64 && x->dtype != RN_BF16)
    return rn_err("%s: dtype %s is not supported on the cpu (float32, float64, bfloat16)", op,
                  rn_dtype_name(x->dtype));
  if (x->ndim < 1) return rn_err("%s: x must have at least 1 dim", op);
  *C = x->shape[x->ndim - 1];
  *R = *C ? rn_numel(x) / *C : 0;
  return 0;
}

/* partial_sums' per-thread float scratch (float32/bfloat16 x: 5*C floats,
 * the last two the widened rows of bf16 x and gy), or NULL (float64, or out
 * of memory: the caller checks). */
static float *sum_scratch(const rn_tensor *x, size_t C) {
  if (x->dtype != RN_F32 && x->dtype != RN_BF16) return NULL;
  return malloc(sizeof(float) * 5 * C * (size_t)omp_get_max_threads());
}

/* Row r of (R,C) data as float: the row itself (float32), or widened into
 * buf (bfloat16). */
static inline const float *row_f(const char *p, rn_dtype dt, int64_t r, int64_t C, float *buf) {
  if (dt == RN_F32) return (const float *)p + r * C;
  const uint16_t *h = (const uint16_t *)p + r * C;
#pragma omp simd
  for (int64_t c = 0; c < C; c++) buf[c] = rn_bf16f(h[c]);
  return buf;
}

static inline bool is_f32ish(rn_dtype dt) { return dt == RN_F32 || dt == RN_BF16; }

/* The fused ReLU's mask recomputed in the backward: keep gy where
 * b*(x - mean) + d > 0, evaluated as the forward evaluated its output (in
 * float for float32 x: bf, df and the float mean; in double for float64). */
typedef struct {
  const double *b, *d;
  const float *bf, *df;
} relu_mask;

/* Per-block partial sums of (x - shift) and (x - shift)^2, or with gy given,
 * of g and g*(x - shift) where g = gy, or gy masked by the ReLU's mask (the
 * fused BN+ReLU's backward; shift is then the batch mean) when rm is given.
 * part: [nblk][2][C] doubles. float32 data is summed in float over runs of
 * SUB rows (vectorizes 4-16 wide), each run then added into the block's
 * double sums: the float error stays that of a SUB-term sum. scratch:
 * 3*C floats per thread (float32 only). */
static void partial_sums(const rn_tensor *x, const rn_tensor *gy, const relu_mask *rm,
                         const double *shift, int64_t R, int64_t C, double *part,
                         float *scratch) {
  int64_t nblk = (R + BLK - 1) / BLK;
  const char *xp = rn_ptr(x);
  const char *gp = gy ? rn_ptr(gy) : NULL;
  bool f32 = is_f32ish(x->dtype);
#pragma omp parallel for schedule(static) if (R * C > PAR_MIN)
  for (int64_t b = 0; b < nblk; b++) {
    double *s1 = part + (size_t)b * 2 * (size_t)C, *s2 = s1 + C;
    for (int64_t c = 0; c < C; c++) s1[c] = s2[c] = 0;
    int64_t r0 = b * BLK, r1 = r0 + BLK < R ? r0 + BLK : R;
    if (f32) {
      float *f1 = scratch + (size_t)omp_get_thread_num() * 5 * (size_t)C, *f2 = f1 + C,
            *fs = f2 + C, *xb = fs + C, *gb = xb + C;
      for (int64_t c = 0; c < C; c++) fs[c] = (float)shift[c];
      for (int64_t q0 = r0; q0 < r1; q0 += SUB) {
        int64_t q1 = q0 + SUB < r1 ? q0 + SUB : r1;
        for (int64_t c = 0; c < C; c++) f1[c] = f2[c] = 0;
        for (int64_t r = q0; r < q1; r++) {
          const float *xr = row_f(xp, x->dtype, r, C, xb);
          if (gp && rm) {
            const float *gr = row_f(gp, gy->dtype, r, C, gb);
            const float *bf = rm->bf, *df = rm->df;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
              float xc = xr[c] - fs[c], gv = gr[c]; /* loaded: the select vectorizes */
              float v = bf[c] * xc + df[c];
              float g = v > 0 ? gv : 0.0f;
              f1[c] += g;
              f2[c] += g * xc;
            }
          } else if (gp) {
            const float *gr = row_f(gp, gy->dtype, r, C, gb);
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
              f1[c] += gr[c];
              f2[c] += gr[c] * (xr[c] - fs[c]);
            }
          } else {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
              float d = xr[c] - fs[c];
              f1[c] += d;
              f2[c] += d * d;
            }
          }
        }
        for (int64_t c = 0; c < C; c++) {
          s1[c] += f1[c];
          s2[c] += f2[c];
        }
      }
      continue;
    }
    for (int64_t r = r0; r < r1; r++) {
      const double *xr = (const double *)xp + r * C;
      if (gp) {
        const double *gr = (const double *)gp + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
          double xc = xr[c] - shift[c], gv = gr[c];
          double g = !rm || rm->b[c] * xc + rm->d[c] > 0 ? gv : 0.0;
          s1[c] += g;
          s2[c] += g * xc;
        }
      } else {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
          double d = xr[c] - shift[c];
          s1[c] += d;
          s2[c] += d * d;
        }
      }
    }
  }
  /* fold the blocks into block 0, in order */
  for (int64_t b = 1; b < nblk; b++) {
    const double *p = part + (size_t)b * 2 * (size_t)C;
    for (int64_t c = 0; c < 2 * C; c++) part[c] += p[c];
  }
  if (nblk == 0)
    for (int64_t c = 0; c < 2 * C; c++) part[c] = 0;
}

/* out = a*in + b*(x - m) + d per channel (in may be NULL: no a term), with
 * in masked by the ReLU's mask when rm is given (m is then the batch mean),
 * and out = max(out, 0) when relu. out, in, x: (R,C); a, b, m, d: (C)
 * double. Subtracting m before scaling keeps float32 precise when |mean| >>
 * std. */
static int affine_rows(rn_tensor *out, const rn_tensor *in, const relu_mask *rm,
                       const rn_tensor *x, const double *a, const double *b, const double *m,
                       const double *d, int64_t R, int64_t C, bool relu, const char *op) {
  char *opp = rn_ptr(out);
  const char *ip = in ? rn_ptr(in) : NULL, *xp = rn_ptr(x);
  if (is_f32ish(x->dtype)) {
    /* 4 (C) coefficient rows, then per thread 3 rows for bf16 data (x, in
     * widened; out before rounding) */
    size_t n1 = (size_t)(C ? C : 1), nt = (size_t)omp_get_max_threads();
    float *af = malloc(sizeof(float) * n1 * (4 + 3 * nt));
    if (!af) return rn_err("%s: out of memory for %lld channels", op, (long long)C);
    float *bf = af + C, *mf = bf + C, *df = mf + C;
    bool h = out->dtype == RN_BF16;
    for (int64_t c = 0; c < C; c++) {
      af[c] = (float)a[c];
      bf[c] = (float)b[c];
      mf[c] = (float)m[c];
      df[c] = (float)d[c];
    }
#pragma omp parallel for schedule(static) if (R * C > PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
      float *tb = af + n1 * (4 + 3 * (size_t)omp_get_thread_num());
      float *o = h ? tb + 2 * n1 : (float *)opp + r * C;
      const float *xr = row_f(xp, x->dtype, r, C, tb);
      if (ip && rm) {
        const float *ir = row_f(ip, in->dtype, r, C, tb + n1), *rb = rm->bf, *rd = rm->df;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
          float iv = ir[c], xc = xr[c] - mf[c];
          float v = rb[c] * xc + rd[c]; /* the forward's output */
          o[c] = af[c] * (v > 0 ? iv : 0.0f) + bf[c] * xc + df[c];
        }
      } else if (ip) {
        const float *ir = row_f(ip, in->dtype, r, C, tb + n1);
#pragma omp simd
        for (int64_t c = 0; c < C; c++) o[c] = af[c] * ir[c] + bf[c] * (xr[c] - mf[c]) + df[c];
      } else if (relu) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
          float v = bf[c] * (xr[c] - mf[c]) + df[c];
          o[c] = v > 0 ? v : 0.0f;
        }
      } else {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) o[c] = bf[c] * (xr[c] - mf[c]) + df[c];
      }
      if (h) {
        uint16_t *oh = (uint16_t *)opp + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) oh[c] = rn_f2bf16(o[c]);
      }
    }
    free(af);
    return 0;
  }
#pragma omp parallel for schedule(static) if (R * C > PAR_MIN)
  for (int64_t r = 0; r < R; r++) {
    double *o = (double *)opp + r * C;
    const double *xr = (const double *)xp + r * C;
    if (ip) {
      const double *ir = (const double *)ip + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        double iv = ir[c], xc = xr[c] - m[c];
        bool keep = !rm || rm->b[c] * xc + rm->d[c] > 0;
        o[c] = a[c] * (keep ? iv : 0.0) + b[c] * xc + d[c];
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        double v = b[c] * (xr[c] - m[c]) + d[c];
        o[c] = relu && !(v > 0) ? 0.0 : v;
      }
    }
  }
  return 0;
}

/* y = (x - mean) * invstd * gamma + beta with batch statistics; save_mean,
 * save_invstd (C) receive them; running_* (C, optional) are updated:
 * running = momentum*running + (1-momentum)*batch; the variance is the
 * biased batch variance (Keras), or var*R/(R-1) when unbiased (PyTorch). */
static int bn_fwd_train(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                        const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                        rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                        bool unbiased, double eps, bool relu) {
  int64_t R, C;
  if (dims_rc(x, "batch_norm", &R, &C) < 0) return -1;
  if (R == 0 && C > 0)
    return rn_err("batch_norm: training needs at least one row per channel; x has 0 rows");
  int64_t nblk = (R + BLK - 1) / BLK;
  size_t n1 = (size_t)(C ? C : 1);
  double *shift = malloc(sizeof(double) * 6 * n1);
  double *part = malloc(sizeof(double) * 2 * n1 * (size_t)(nblk ? nblk : 1));
  if (!shift || !part) {
    free(shift);
    free(part);
    return rn_err("batch_norm: out of memory for the statistics of %lld channels", (long long)C);
  }
  double *a = shift + n1, *b = a + n1, *m = b + n1, *d = m + n1, *v = d + n1;
  /* shift by the first row: sums of (x - x[0]) keep precision for large means */
  for (int64_t c = 0; c < C; c++)
    shift[c] = x->dtype == RN_F32    ? (double)((const float *)rn_ptr(x))[c]
               : x->dtype == RN_BF16 ? (double)rn_bf16f(((const uint16_t *)rn_ptr(x))[c])
                                     : ((const double *)rn_ptr(x))[c];
  float *scratch = sum_scratch(x, n1);
  if (is_f32ish(x->dtype) && !scratch) {
    free(shift);
    free(part);
    return rn_err("batch_norm: out of memory for the statistics of %lld channels", (long long)C);
  }
  partial_sums(x, NULL, NULL, shift, R, C, part, scratch);
  free(scratch);
  const double *s1 = part, *s2 = part + C;
  for (int64_t c = 0; c < C; c++) {
    double dm = s1[c] / (double)R;
    double mean = shift[c] + dm;
    double var = s2[c] / (double)R - dm * dm;
    if (var < 0) var = 0;
    double invstd = 1.0 / sqrt(var + eps);
    /* float32: the saved value, so the fused ReLU's backward rebuilds b */
    if (save_invstd->dtype == RN_F32) invstd = (double)(float)invstd;
    double g = pget(gamma, c, 1.0), be = pget(beta, c, 0.0);
    pset(save_mean, c, mean);
    pset(save_invstd, c, invstd);
    a[c] = 0;
    b[c] = g * invstd;
    m[c] = mean;
    d[c] = be;
    v[c] = unbiased && R > 1 ? var * (double)R / (double)(R - 1) : var;
  }
  int rc = affine_rows(y, NULL, NULL, x, a, b, m, d, R, C, relu, "batch_norm");
  for (int64_t c = 0; rc == 0 && c < C; c++) { /* only once nothing can fail */
    if (running_mean)
      pset(running_mean, c, momentum * pget(running_mean, c, 0) + (1 - momentum) * m[c]);
    if (running_var)
      pset(running_var, c, momentum * pget(running_var, c, 0) + (1 - momentum) * v[c]);
  }
  free(shift);
  free(part);
  return rc;
}

int rn_cpu_bn_fwd_train(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                        const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                        rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                        bool unbiased, double eps) {
  return bn_fwd_train(y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var,
                      momentum, unbiased, eps, false);
}

/* The same with y = max(y, 0) in the same pass (BN+ReLU fused). */
int rn_cpu_bn_relu_fwd_train(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                             const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                             rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                             bool unbiased, double eps) {
  return bn_fwd_train(y, save_mean, save_invstd, x, gamma, beta, running_mean, running_var,
                      momentum, unbiased, eps, true);
}

/* y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta */
static int bn_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                        const rn_tensor *beta, const rn_tensor *running_mean,
                        const rn_tensor *running_var, double eps, bool relu) {
  int64_t R, C;
  if (dims_rc(x, "batch_norm", &R, &C) < 0) return -1;
  size_t n1 = (size_t)(C ? C : 1);
  double *a = malloc(sizeof(double) * 4 * n1);
  if (!a) return rn_err("batch_norm: out of memory for %lld channels", (long long)C);
  double *b = a + n1, *m = b + n1, *d = m + n1;
  for (int64_t c = 0; c < C; c++) {
    a[c] = 0;
    b[c] = pget(gamma, c, 1.0) / sqrt(pget(running_var, c, 1.0) + eps);
    m[c] = pget(running_mean, c, 0.0);
    d[c] = pget(beta, c, 0.0);
  }
  int rc = affine_rows(y, NULL, NULL, x, a, b, m, d, R, C, relu, "batch_norm");
  free(a);
  return rc;
}

int rn_cpu_bn_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                        const rn_tensor *beta, const rn_tensor *running_mean,
                        const rn_tensor *running_var, double eps) {
  return bn_fwd_infer(y, x, gamma, beta, running_mean, running_var, eps, false);
}

int rn_cpu_bn_relu_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                             const rn_tensor *beta, const rn_tensor *running_mean,
                             const rn_tensor *running_var, double eps) {
  return bn_fwd_infer(y, x, gamma, beta, running_mean, running_var, eps, true);
}

/* With xhat = (x - mean)*invstd, over the R rows of each channel:
 *   gbeta = sum gy, ggamma = sum gy*xhat,
 *   gx = gamma*invstd * (gy - gbeta/R - xhat*ggamma/R). */
/* relu: the backward of the fused BN+ReLU (beta, or NULL for 0, needed for
 * the mask) */
static int bn_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                  const rn_tensor *x, bool relu, const rn_tensor *gamma, const rn_tensor *beta,
                  const rn_tensor *save_mean, const rn_tensor *save_invstd) {
  int64_t R, C;
  if (dims_rc(x, "batch_norm backward", &R, &C) < 0) return -1;
  if (gy->dtype != x->dtype)
    return rn_err("batch_norm backward: gradient dtype %s differs from x's %s",
                  rn_dtype_name(gy->dtype), rn_dtype_name(x->dtype));
  int64_t nblk = (R + BLK - 1) / BLK;
  size_t n1 = (size_t)(C ? C : 1);
  double *mean = malloc(sizeof(double) * 6 * n1 + sizeof(float) * 2 * n1);
  double *part = malloc(sizeof(double) * 2 * n1 * (size_t)(nblk ? nblk : 1));
  float *scratch = sum_scratch(x, n1);
  if (!mean || !part || (is_f32ish(x->dtype) && !scratch)) {
    free(mean);
    free(part);
    free(scratch);
    return rn_err("batch_norm backward: out of memory for %lld channels", (long long)C);
  }
  double *a = mean + n1, *b = a + n1, *d = b + n1, *rb = d + n1, *rd = rb + n1;
  float *rbf = (float *)(rd + n1), *rdf = rbf + n1;
  relu_mask rm = {rb, rd, rbf, rdf};
  for (int64_t c = 0; c < C; c++) {
    mean[c] = pget(save_mean, c, 0.0);
    /* the forward's output coefficients: bn(x) = rb*(x - mean) + rd */
    rb[c] = pget(gamma, c, 1.0) * pget(save_invstd, c, 1.0);
    rd[c] = pget(beta, c, 0.0);
    rbf[c] = (float)rb[c];
    rdf[c] = (float)rd[c];
  }
  partial_sums(x, gy, relu ? &rm : NULL, mean, R, C, part, scratch);
  free(scratch);
  const double *sg = part, *sgx = part + C; /* sum gy, sum gy*(x-mean) */
  for (int64_t c = 0; c < C; c++) {
    double is = pget(save_invstd, c, 1.0), g = pget(gamma, c, 1.0);
    double gg = sgx[c] * is; /* ggamma */
    if (ggamma) pset(ggamma, c, gg);
    if (gbeta) pset(gbeta, c, sg[c]);
    double k = g * is;
    a[c] = k;
    b[c] = R ? -k * is * gg / (double)R : 0;
    d[c] = R ? -k * sg[c] / (double)R : 0;
  }
  int rc = gx ? affine_rows(gx, gy, relu ? &rm : NULL, x, a, b, mean, d, R, C, false,
                            "batch_norm backward")
              : 0;
  free(mean);
  free(part);
  return rc;
}

int rn_cpu_bn_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                  const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *save_mean,
                  const rn_tensor *save_invstd) {
  return bn_bwd(gx, ggamma, gbeta, gy, x, false, gamma, NULL, save_mean, save_invstd);
}

/* Backward of the fused BN+ReLU. The ReLU's mask is recomputed from x (see
 * the top of this file); y, the forward's output, is not read. */
int rn_cpu_bn_relu_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                       const rn_tensor *x, const rn_tensor *y, const rn_tensor *gamma,
                       const rn_tensor *beta, const rn_tensor *save_mean,
                       const rn_tensor *save_invstd) {
  (void)y;
  return bn_bwd(gx, ggamma, gbeta, gy, x, true, gamma, beta, save_mean, save_invstd);
}
