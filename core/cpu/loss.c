/* loss.c (cpu) - softmax / log_softmax over the last dim with their
 * backward, and the fused softmax cross-entropy (with label smoothing)
 * that also yields d loss / d logits.
 *
 * Layout: x, y, gy, gx, logits, dlogits: (R,C) contiguous, float32 or
 * float64; labels: (N) contiguous uint8/int32/int64; loss: (N) like logits.
 * Every row is max-shifted (logsumexp), sums are accumulated in double, and
 * rows are split among threads (each row is computed by one thread, so the
 * results do not depend on the thread count).
 */
#include <math.h>
#include <stdlib.h>

#include "cpu.h"

#define PAR_MIN 16384 /* elements below which a kernel stays on one thread */

static int check_float(const rn_tensor *t, const char *op) {
  if (t->dtype != RN_F32 && t->dtype != RN_F64)
    return rn_err("%s: dtype %s is not supported on the cpu (float32, float64)", op,
                  rn_dtype_name(t->dtype));
  return 0;
}

static void rows_cols(const rn_tensor *t, int64_t *R, int64_t *C) {
  *C = t->ndim ? t->shape[t->ndim - 1] : 1;
  *R = *C ? rn_numel(t) / *C : 0;
}

/* max and sum(exp(x - max)) of one row, in double */
static inline void row_lse_f(const float *x, int64_t C, double *mx, double *se) {
  float m = -INFINITY;
  for (int64_t c = 0; c < C; c++) m = x[c] > m ? x[c] : m;
  double s = 0;
  for (int64_t c = 0; c < C; c++) s += (double)expf(x[c] - m);
  *mx = m;
  *se = s;
}

static inline void row_lse_d(const double *x, int64_t C, double *mx, double *se) {
  double m = -INFINITY;
  for (int64_t c = 0; c < C; c++) m = x[c] > m ? x[c] : m;
  double s = 0;
  for (int64_t c = 0; c < C; c++) s += exp(x[c] - m);
  *mx = m;
  *se = s;
}

/* y = softmax(x) or log_softmax(x) along the last dim. x, y: (R,C) */
int rn_cpu_softmax(rn_tensor *y, const rn_tensor *x, bool log_) {
  const char *op = log_ ? "log_softmax" : "softmax";
  if (check_float(x, op) < 0) return -1;
  int64_t R, C;
  rows_cols(x, &R, &C);
  const char *xp = rn_ptr(x);
  char *yp = rn_ptr(y);
  bool f32 = x->dtype == RN_F32;
#pragma omp parallel for schedule(static) if (R * C > PAR_MIN)
  for (int64_t r = 0; r < R; r++) {
    double mx, se;
    if (f32) {
      const float *xr = (const float *)xp + r * C;
      float *yr = (float *)yp + r * C;
      row_lse_f(xr, C, &mx, &se);
      if (log_) {
        float k = (float)(mx + log(se));
        for (int64_t c = 0; c < C; c++) yr[c] = xr[c] - k;
      } else {
        float m = (float)mx, inv = (float)(1.0 / se);
        for (int64_t c = 0; c < C; c++) yr[c] = expf(xr[c] - m) * inv;
      }
    } else {
      const double *xr = (const double *)xp + r * C;
      double *yr = (double *)yp + r * C;
      row_lse_d(xr, C, &mx, &se);
      if (log_) {
        double k = mx + log(se);
        for (int64_t c = 0; c < C; c++) yr[c] = xr[c] - k;
      } else {
        double inv = 1.0 / se;
        for (int64_t c = 0; c < C; c++) yr[c] = exp(xr[c] - mx) * inv;
      }
    }
  }
  return 0;
}

/* softmax:     gx = y * (gy - sum(gy*y))
 * log_softmax: gx = gy - exp(y) * sum(gy)        gx, gy, y: (R,C) */
int rn_cpu_softmax_backward(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *y, bool log) {
  const char *op = log ? "log_softmax backward" : "softmax backward";
  if (check_float(y, op) < 0) return -1;
  if (gy->dtype != y->dtype)
    return rn_err("%s: gradient dtype %s differs from the output's %s", op,
                  rn_dtype_name(gy->dtype), rn_dtype_name(y->dtype));
  int64_t R, C;
  rows_cols(y, &R, &C);
  const char *gp = rn_ptr(gy), *yp = rn_ptr(y);
  char *op_ = rn_ptr(gx);
  bool f32 = y->dtype == RN_F32;
#pragma omp parallel for schedule(static) if (R * C > PAR_MIN)
  for (int64_t r = 0; r < R; r++) {
    double s = 0;
    if (f32) {
      const float *g = (const float *)gp + r * C, *yr = (const float *)yp + r * C;
      float *o = (float *)op_ + r * C;
      if (log) {
        for (int64_t c = 0; c < C; c++) s += g[c];
        float sf = (float)s;
        for (int64_t c = 0; c < C; c++) o[c] = g[c] - expf(yr[c]) * sf;
      } else {
        for (int64_t c = 0; c < C; c++) s += (double)g[c] * yr[c];
        float sf = (float)s;
        for (int64_t c = 0; c < C; c++) o[c] = yr[c] * (g[c] - sf);
      }
    } else {
      const double *g = (const double *)gp + r * C, *yr = (const double *)yp + r * C;
      double *o = (double *)op_ + r * C;
      if (log) {
        for (int64_t c = 0; c < C; c++) s += g[c];
        for (int64_t c = 0; c < C; c++) o[c] = g[c] - exp(yr[c]) * s;
      } else {
        for (int64_t c = 0; c < C; c++) s += g[c] * yr[c];
        for (int64_t c = 0; c < C; c++) o[c] = yr[c] * (g[c] - s);
      }
    }
  }
  return 0;
}

static inline int64_t label_at(const rn_tensor *labels, int64_t i) {
  const char *p = rn_ptr(labels);
  int64_t s = labels->ndim ? labels->stride[0] : 0;
  switch (labels->dtype) {
  case RN_U8: return ((const uint8_t *)p)[i * s];
  case RN_I32: return ((const int32_t *)p)[i * s];
  default: return ((const int64_t *)p)[i * s];
  }
}

/* loss[n] = -(1-s) log p[n,label] - s/C sum_c log p[n,c]
 *         = lse(x[n]) - (1-s) x[n,label] - s/C sum_c x[n,c]
 * dlogits[n,c] = p[n,c] - (1-s) [c == label] - s/C        (when not NULL)
 * logits, dlogits: (N,C); labels, loss: (N). */
int rn_cpu_cross_entropy(rn_tensor *loss, rn_tensor *dlogits, const rn_tensor *logits,
                         const rn_tensor *labels, double smoothing) {
  const char *op = "cross_entropy";
  if (check_float(logits, op) < 0) return -1;
  if (labels->dtype != RN_U8 && labels->dtype != RN_I32 && labels->dtype != RN_I64)
    return rn_err("%s: labels dtype %s is not an integer type (uint8, int32, int64)", op,
                  rn_dtype_name(labels->dtype));
  int64_t N = logits->ndim ? logits->shape[0] : 1;
  int64_t C = logits->ndim > 1 ? logits->shape[logits->ndim - 1] : 1;
  /* every label first: nothing is written when one is bad */
  for (int64_t i = 0; i < N; i++) {
    int64_t l = label_at(labels, i);
    if (l < 0 || l >= C)
      return rn_err("%s: label %lld at position %lld outside 0..%lld", op, (long long)l,
                    (long long)i + 1, (long long)C - 1);
  }
  double s = smoothing, on = 1.0 - s, off = C ? s / (double)C : 0;
  const char *xp = rn_ptr(logits);
  char *lp = rn_ptr(loss), *dp = dlogits ? rn_ptr(dlogits) : NULL;
  bool f32 = logits->dtype == RN_F32;
#pragma omp parallel for schedule(static) if (N * C > PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    int64_t l = label_at(labels, n);
    double mx, se, sx = 0, xl;
    if (f32) {
      const float *xr = (const float *)xp + n * C;
      row_lse_f(xr, C, &mx, &se);
      for (int64_t c = 0; c < C; c++) sx += xr[c];
      xl = xr[l];
      double lse = mx + log(se);
      ((float *)lp)[n] = (float)(lse - on * xl - off * sx);
      if (dp) {
        float *dr = (float *)dp + n * C;
        float m = (float)mx, inv = (float)(1.0 / se), offf = (float)off;
        for (int64_t c = 0; c < C; c++) dr[c] = expf(xr[c] - m) * inv - offf;
        dr[l] = (float)((double)expf(xr[l] - m) / se - on - off);
      }
    } else {
      const double *xr = (const double *)xp + n * C;
      row_lse_d(xr, C, &mx, &se);
      for (int64_t c = 0; c < C; c++) sx += xr[c];
      xl = xr[l];
      double lse = mx + log(se);
      ((double *)lp)[n] = lse - on * xl - off * sx;
      if (dp) {
        double *dr = (double *)dp + n * C, inv = 1.0 / se;
        for (int64_t c = 0; c < C; c++) dr[c] = exp(xr[c] - mx) * inv - off;
        dr[l] -= on;
      }
    }
  }
  return 0;
}
