/* attention.c (cpu) - the fused sdpa slots: softmax(q k^T * scale + mask) v
 * one query row at a time with an online softmax (running max and sum,
 * rescaled as a larger score arrives), so no Tq x Tk matrix exists; sums in
 * double for float32 and float64. The backward recomputes each probability
 * from the saved log-sum-exp: a pass over query rows gives dq (and
 * D_i = dO_i . O_i), a pass over key rows gives dk and dv, each row owned by
 * one thread (deterministic, no atomics). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

static inline double ld(const void *p, bool f, int64_t i) {
  return f ? (double)((const float *)p)[i] : ((const double *)p)[i];
}
static inline void st(void *p, bool f, int64_t i, double v) {
  if (f) ((float *)p)[i] = (float)v;
  else ((double *)p)[i] = v;
}

/* whether query i of batch b attends to key j */
static inline bool attends(const rn_sdpa_params *p, const uint8_t *m, int64_t b, int64_t i,
                           int64_t j) {
  if (p->causal && j > i) return false;
  return !m || m[b * p->msb + i * p->msq + j * p->msk] != 0;
}

/* a dot product of two rows (vectorised: float32 sums in float over one
 * head's D values, float64 in double) */
static inline double dot(const void *a, int64_t ia, const void *b, int64_t ib, bool f, int64_t n) {
  if (f) {
    const float *x = (const float *)a + ia, *y = (const float *)b + ib;
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t d = 0; d < n; d++) s += x[d] * y[d];
    return s;
  }
  const double *x = (const double *)a + ia, *y = (const double *)b + ib;
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < n; d++) s += x[d] * y[d];
  return s;
}

/* acc[0..n) += e * row (vectorised) */
static inline void axpy_row(double *acc, double e, const void *row, int64_t i, bool f, int64_t n) {
  if (f) {
    const float *x = (const float *)row + i;
#pragma omp simd
    for (int64_t d = 0; d < n; d++) acc[d] += e * x[d];
  } else {
    const double *x = (const double *)row + i;
#pragma omp simd
    for (int64_t d = 0; d < n; d++) acc[d] += e * x[d];
  }
}

/* float32: the accumulators are floats too (twice the vector width) */
static inline void acc_add(void *acc, bool f, double e, const void *row, int64_t i, int64_t n) {
  if (!f) { axpy_row(acc, e, row, i, f, n); return; }
  float *a = acc, ef = (float)e;
  const float *x = (const float *)row + i;
#pragma omp simd
  for (int64_t d = 0; d < n; d++) a[d] += ef * x[d];
}
static inline double acc_get(const void *acc, bool f, int64_t d) {
  return f ? (double)((const float *)acc)[d] : ((const double *)acc)[d];
}
static inline double fexp(bool f, double x) { return f ? (double)expf((float)x) : exp(x); }

static int check(const rn_tensor *q) {
  if (q->dtype != RN_F32 && q->dtype != RN_F64)
    return rn_err("scaled_dot_product_attention: dtype %s is not float32/float64",
                  rn_dtype_name(q->dtype));
  return 0;
}

int rn_cpu_sdpa_fwd(rn_tensor *o, rn_tensor *lse, const rn_tensor *q, const rn_tensor *k,
                    const rn_tensor *v, const rn_sdpa_params *p) {
  if (check(q) < 0) return -1;
  bool f = q->dtype == RN_F32;
  const void *qp = rn_ptr(q), *kp = rn_ptr(k), *vp = rn_ptr(v);
  void *op = rn_ptr(o);
  double *lp = (double *)rn_ptr(lse);
  const uint8_t *m = p->mask ? (const uint8_t *)rn_ptr(p->mask) : NULL;
  int64_t B = p->B, Tq = p->Tq, Tk = p->Tk, D = p->D, Dv = p->Dv;
  int err = 0;
#pragma omp parallel
  {
    double *acc = malloc((size_t)(Dv > 0 ? Dv : 1) * sizeof *acc);
    if (!acc) {
#pragma omp atomic write
      err = 1;
    }
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < B * Tq; r++) {
      if (!acc) continue;
      int64_t b = r / Tq, i = r % Tq;
      if (f) { /* float32: the running sums in float, vectorised */
        float *a = (float *)acc, fm = -INFINITY, fl = 0, sc = (float)p->scale;
        const float *vb = (const float *)vp + b * Tk * Dv;
        for (int64_t d = 0; d < Dv; d++) a[d] = 0;
        for (int64_t j = 0; j < Tk; j++) {
          if (!attends(p, m, b, i, j)) continue;
          float s = sc * (float)dot(qp, r * D, kp, (b * Tk + j) * D, f, D);
          if (s > fm) {
            float c = expf(fm - s);
            fl *= c;
#pragma omp simd
            for (int64_t d = 0; d < Dv; d++) a[d] *= c;
            fm = s;
          }
          float e = expf(s - fm);
          fl += e;
          const float *vr = vb + j * Dv;
#pragma omp simd
          for (int64_t d = 0; d < Dv; d++) a[d] += e * vr[d];
        }
        for (int64_t d = 0; d < Dv; d++) ((float *)op)[r * Dv + d] = fl > 0 ? a[d] / fl : 0;
        lp[r] = fl > 0 ? (double)fm + log((double)fl) : -INFINITY;
        continue;
      }
      double mx = -INFINITY, l = 0;
      for (int64_t d = 0; d < Dv; d++) acc[d] = 0;
      for (int64_t j = 0; j < Tk; j++) {
        if (!attends(p, m, b, i, j)) continue;
        double s = p->scale * dot(qp, r * D, kp, (b * Tk + j) * D, f, D);
        if (s > mx) {
          double c = exp(mx - s); /* 0 when mx = -inf */
          l *= c;
          for (int64_t d = 0; d < Dv; d++) acc[d] *= c;
          mx = s;
        }
        double e = exp(s - mx);
        l += e;
        axpy_row(acc, e, vp, (b * Tk + j) * Dv, f, Dv);
      }
      for (int64_t d = 0; d < Dv; d++) st(op, f, r * Dv + d, l > 0 ? acc[d] / l : 0);
      lp[r] = l > 0 ? mx + log(l) : -INFINITY;
    }
    free(acc);
  }
  return err ? rn_err("scaled_dot_product_attention: out of memory") : 0;
}

int rn_cpu_sdpa_bwd(rn_tensor *gq, rn_tensor *gk, rn_tensor *gv, const rn_tensor *go,
                    const rn_tensor *q, const rn_tensor *k, const rn_tensor *v, const rn_tensor *o,
                    const rn_tensor *lse, const rn_sdpa_params *p) {
  if (check(q) < 0) return -1;
  bool f = q->dtype == RN_F32;
  const void *qp = rn_ptr(q), *kp = rn_ptr(k), *vp = rn_ptr(v), *gop = rn_ptr(go), *op = rn_ptr(o);
  const double *lp = (const double *)rn_ptr(lse);
  const uint8_t *m = p->mask ? (const uint8_t *)rn_ptr(p->mask) : NULL;
  int64_t B = p->B, Tq = p->Tq, Tk = p->Tk, D = p->D, Dv = p->Dv;
  double *Di = malloc((size_t)(B * Tq > 0 ? B * Tq : 1) * sizeof *Di);
  if (!Di) return rn_err("scaled_dot_product_attention backward: out of memory");
  void *gqp = rn_ptr(gq), *gkp = rn_ptr(gk), *gvp = rn_ptr(gv);
  int err = 0;
  /* pass 1: per query row, D_i and dq_i = scale * sum_j dS_ij k_j */
#pragma omp parallel
  {
    double *acc = malloc((size_t)(D > Dv ? (D > 0 ? D : 1) : (Dv > 0 ? Dv : 1)) * 2 * sizeof *acc);
    if (!acc) {
#pragma omp atomic write
      err = 1;
    }
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < B * Tq; r++) {
      if (!acc) continue;
      int64_t b = r / Tq, i = r % Tq;
      Di[r] = dot(gop, r * Dv, op, r * Dv, f, Dv);
      memset(acc, 0, (size_t)D * sizeof *acc);
      if (lp[r] > -INFINITY)
        for (int64_t j = 0; j < Tk; j++) {
          if (!attends(p, m, b, i, j)) continue;
          int64_t kr = b * Tk + j;
          double P = fexp(f, p->scale * dot(qp, r * D, kp, kr * D, f, D) - lp[r]);
          double dS = P * (dot(gop, r * Dv, vp, kr * Dv, f, Dv) - Di[r]);
          acc_add(acc, f, dS, kp, kr * D, D);
        }
      for (int64_t d = 0; d < D; d++) st(gqp, f, r * D + d, p->scale * acc_get(acc, f, d));
    }
#pragma omp barrier
    /* pass 2: per key row, dk_j = scale * sum_i dS_ij q_i, dv_j = sum_i P_ij dO_i */
#pragma omp for schedule(dynamic, 8)
    for (int64_t kr = 0; kr < B * Tk; kr++) {
      if (!acc) continue;
      int64_t b = kr / Tk, j = kr % Tk;
      double *ak = acc, *av = acc + (D > Dv ? D : Dv); /* room for doubles; floats use less */
      memset(acc, 0, (size_t)(D > Dv ? D : Dv) * 2 * sizeof *acc);
      for (int64_t i = p->causal ? j : 0; i < Tq; i++) {
        int64_t r = b * Tq + i;
        if (!(lp[r] > -INFINITY) || !attends(p, m, b, i, j)) continue;
        double P = fexp(f, p->scale * dot(qp, r * D, kp, kr * D, f, D) - lp[r]);
        double dS = P * (dot(gop, r * Dv, vp, kr * Dv, f, Dv) - Di[r]);
        acc_add(ak, f, dS, qp, r * D, D);
        acc_add(av, f, P, gop, r * Dv, Dv);
      }
      for (int64_t d = 0; d < D; d++) st(gkp, f, kr * D + d, p->scale * acc_get(ak, f, d));
      for (int64_t d = 0; d < Dv; d++) st(gvp, f, kr * Dv + d, acc_get(av, f, d));
    }
    free(acc);
  }
  free(Di);
  return err ? rn_err("scaled_dot_product_attention backward: out of memory") : 0;
}
