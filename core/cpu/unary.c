/* unary.c - CPU kernels of the unary ops (y = op(x; a, b)) over strided
 * operands, and of their backward (gx = gy * op'(x), contiguous). The
 * formulas are in unary_math.h, made here for float and for double;
 * bfloat16 runs the float formulas (rounded once), the integer types and
 * float16 go through double. */
#include <math.h>
#include <tgmath.h>

#include "cpu.h"

#define RN_GELU_K (M_2_SQRTPI * M_SQRT1_2) /* sqrt(2/pi) */
#define PAR_MIN 32768 /* elements below which a loop stays on one thread */

#define T float
#define UN un_f
#define DUN dun_f
#define SIG sig_f
#include "unary_math.h"
#undef T
#undef UN
#undef DUN
#undef SIG

#define T double
#define UN un_d
#define DUN dun_d
#define SIG sig_d
#include "unary_math.h"
#undef T
#undef UN
#undef DUN
#undef SIG

static const double no_params[RN_UNARY_NP];

int rn_cpu_unary(rn_unop op, const double *p, rn_tensor *y, const rn_tensor *x) {
  if (!p) p = no_params;
  const rn_tensor *ts[2] = {y, x};
  rn_iter it;
  rn_iter_init(&it, 2, ts);
  char *yp = rn_ptr(y);
  const char *xp = rn_ptr(x);
  size_t es = rn_dtype_size(x->dtype);
  const float af = (float)p[0], bf = (float)p[1];
#pragma omp parallel for if (it.outer * it.inner > PAR_MIN)
  for (int64_t r = 0; r < it.outer; r++) {
    int64_t off[3], sy = it.istride[0], sx = it.istride[1];
    rn_iter_row(&it, r, off);
    if (x->dtype == RN_F32) {
      float *yy = (float *)yp + off[0];
      const float *xx = (const float *)xp + off[1];
      if (sy == 1 && sx == 1 && op == RN_OP_RELU) {
#pragma omp simd
        for (int64_t i = 0; i < it.inner; i++) yy[i] = xx[i] > 0 ? xx[i] : 0;
      } else if (sy == 1 && sx == 1 && op == RN_OP_RELU6) { /* un_f's rule, vectorized (NaN stays NaN) */
#pragma omp simd
        for (int64_t i = 0; i < it.inner; i++) {
          float v = xx[i];
          yy[i] = v <= 0 ? 0 : v >= 6 ? 6 : v;
        }
      } else {
        for (int64_t i = 0; i < it.inner; i++) yy[i * sy] = un_f(op, xx[i * sx], af, bf);
      }
    } else if (x->dtype == RN_F64) {
      double *yy = (double *)yp + off[0];
      const double *xx = (const double *)xp + off[1];
      for (int64_t i = 0; i < it.inner; i++) yy[i * sy] = un_d(op, xx[i * sx], p[0], p[1]);
    } else if (x->dtype == RN_BF16 && y->dtype == RN_BF16) { /* in float, rounded once */
      uint16_t *yy = (uint16_t *)yp + off[0];
      const uint16_t *xx = (const uint16_t *)xp + off[1];
      if (op == RN_OP_RELU) {
        for (int64_t i = 0; i < it.inner; i++) {
          uint16_t h = xx[i * sx];
          yy[i * sy] = rn_bf16f(h) > 0 ? h : 0;
        }
      } else {
        for (int64_t i = 0; i < it.inner; i++)
          yy[i * sy] = rn_f2bf16(un_f(op, rn_bf16f(xx[i * sx]), af, bf));
      }
    } else {
      for (int64_t i = 0; i < it.inner; i++)
        rn_store(yp + (size_t)(off[0] + i * sy) * es, y->dtype,
                 un_d(op, rn_load(xp + (size_t)(off[1] + i * sx) * es, x->dtype), p[0], p[1]));
    }
  }
  return 0;
}

int rn_cpu_unary_backward(rn_unop op, const double *p, rn_tensor *gx, const rn_tensor *gy,
                          const rn_tensor *x, const rn_tensor *y) {
  if (!p) p = no_params;
  /* all four share one shape and are contiguous (the front end's contract) */
  int64_t n = rn_numel(gx);
  if (x->dtype == RN_F32) {
    float *g = (float *)rn_ptr(gx);
    const float *go = (const float *)rn_ptr(gy), *xx = (const float *)rn_ptr(x),
                *yy = (const float *)rn_ptr(y);
    const float af = (float)p[0], bf = (float)p[1];
    if (op == RN_OP_RELU) {
#pragma omp parallel for simd if (n > PAR_MIN)
      for (int64_t i = 0; i < n; i++) g[i] = xx[i] > 0 ? go[i] : 0;
      return 0;
    }
    if (op == RN_OP_RELU6) {
#pragma omp parallel for simd if (n > PAR_MIN)
      for (int64_t i = 0; i < n; i++) g[i] = xx[i] > 0 && xx[i] < 6 ? go[i] : 0;
      return 0;
    }
#pragma omp parallel for if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) g[i] = dun_f(op, go[i], xx[i], yy[i], af, bf);
  } else if (x->dtype == RN_F64) {
    double *g = (double *)rn_ptr(gx);
    const double *go = (const double *)rn_ptr(gy), *xx = (const double *)rn_ptr(x),
                 *yy = (const double *)rn_ptr(y);
#pragma omp parallel for if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) g[i] = dun_d(op, go[i], xx[i], yy[i], p[0], p[1]);
  } else {
    return rn_err("%s backward: dtype %s is not a float type", rn_unop_name(op),
                  rn_dtype_name(x->dtype));
  }
  return 0;
}
