/* pad.c (cpu) - the line slots (core/ops/pad.c): pad (constant, reflect,
 * replicate) and resize (nearest, bilinear with half-pixel centres) along
 * one dim of x viewed as (outer, L, inner). Pads and nearest copy elements
 * bytewise (any dtype); bilinear is float32/float64 in double. The backward
 * walks each line's outputs in order and adds into gx (deterministic; the
 * threads split the outer lines and the inner columns). */
#include <math.h>
#include <string.h>

#include "cpu.h"

/* the input index output o reads for a pad or nearest (-1: the constant) */
static inline int64_t src_index(const rn_line_params *p, int64_t o) {
  int64_t L = p->L, i = o - p->before;
  switch (p->kind) {
  case RN_LINE_CONSTANT: return i >= 0 && i < L ? i : -1;
  case RN_LINE_REPLICATE: return i < 0 ? 0 : i >= L ? L - 1 : i;
  case RN_LINE_REFLECT:
    if (i < 0) i = -i;
    if (i >= L) i = 2 * (L - 1) - i;
    return i;
  default: { /* nearest */
    int64_t s = (int64_t)floor((double)o * ((double)L / (double)p->Lout));
    return s < L - 1 ? s : L - 1;
  }
  }
}

/* bilinear taps of output o: i0, i1 with weights 1-f, f */
static inline void taps(const rn_line_params *p, int64_t o, int64_t *i0, int64_t *i1, double *f) {
  double c = ((double)o + 0.5) * ((double)p->L / (double)p->Lout) - 0.5;
  if (c < 0) c = 0;
  int64_t a = (int64_t)c;
  if (a > p->L - 1) a = p->L - 1;
  *i0 = a;
  *i1 = a < p->L - 1 ? a + 1 : a;
  *f = c - (double)a;
}

static inline double ld(const void *p, bool f, int64_t i) {
  return f ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

int rn_cpu_line_fwd(rn_tensor *y, const rn_tensor *x, const rn_line_params *p) {
  size_t es = rn_dtype_size(x->dtype);
  int64_t in = p->inner, rows = p->outer * p->Lout;
  const char *xp = rn_ptr(x);
  char *yp = rn_ptr(y);
  if (p->kind == RN_LINE_BILINEAR) {
    if (x->dtype != RN_F32 && x->dtype != RN_F64)
      return rn_err("resize: bilinear dtype %s is not float32/float64", rn_dtype_name(x->dtype));
    bool f = x->dtype == RN_F32;
#pragma omp parallel for if (rows * in > 32768)
    for (int64_t r = 0; r < rows; r++) {
      int64_t b = r / p->Lout, o = r % p->Lout, i0, i1;
      double w;
      taps(p, o, &i0, &i1, &w);
      int64_t a0 = (b * p->L + i0) * in, a1 = (b * p->L + i1) * in;
      for (int64_t k = 0; k < in; k++) {
        double v = (1 - w) * ld(xp, f, a0 + k) + w * ld(xp, f, a1 + k);
        if (f) ((float *)yp)[r * in + k] = (float)v;
        else ((double *)yp)[r * in + k] = v;
      }
    }
    return 0;
  }
  unsigned char one[8];
  rn_store(one, x->dtype, p->value);
#pragma omp parallel for if (rows * in > 32768)
  for (int64_t r = 0; r < rows; r++) {
    int64_t b = r / p->Lout, o = r % p->Lout, s = src_index(p, o);
    char *dst = yp + (size_t)(r * in) * es;
    if (s >= 0) {
      memcpy(dst, xp + (size_t)((b * p->L + s) * in) * es, (size_t)in * es);
    } else {
      for (int64_t k = 0; k < in; k++) memcpy(dst + (size_t)k * es, one, es);
    }
  }
  return 0;
}

int rn_cpu_line_bwd(rn_tensor *gx, const rn_tensor *gy, const rn_line_params *p) {
  if (gx->dtype != RN_F32 && gx->dtype != RN_F64)
    return rn_err("%s backward: dtype %s is not float32/float64",
                  p->kind >= RN_LINE_NEAREST ? "resize" : "pad", rn_dtype_name(gx->dtype));
  bool f = gx->dtype == RN_F32;
  int64_t in = p->inner, chunk = 256, nch = (in + chunk - 1) / chunk;
  const void *gp = rn_ptr(gy);
  void *xp = rn_ptr(gx);
#pragma omp parallel for if (p->outer * p->Lout * in > 32768)
  for (int64_t t = 0; t < p->outer * nch; t++) {
    int64_t b = t / nch, k0 = (t % nch) * chunk, k1 = k0 + chunk < in ? k0 + chunk : in;
    for (int64_t o = 0; o < p->Lout; o++) {
      int64_t src = (b * p->Lout + o) * in;
      int64_t i0, i1;
      double w = 0;
      if (p->kind == RN_LINE_BILINEAR) {
        taps(p, o, &i0, &i1, &w);
      } else {
        i0 = i1 = src_index(p, o);
        if (i0 < 0) continue;
      }
      int64_t d0 = (b * p->L + i0) * in, d1 = (b * p->L + i1) * in;
      for (int64_t k = k0; k < k1; k++) {
        double g = ld(gp, f, src + k);
        if (f) {
          ((float *)xp)[d0 + k] += (float)((1 - w) * g);
          if (w != 0) ((float *)xp)[d1 + k] += (float)(w * g);
        } else {
          ((double *)xp)[d0 + k] += (1 - w) * g;
          if (w != 0) ((double *)xp)[d1 + k] += w * g;
        }
      }
    }
  }
  return 0;
}
