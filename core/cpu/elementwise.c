/* elementwise.c - CPU kernels for memory, copy/cast, fill and binary ops over
 * strided (and broadcast, stride 0) operands, and axpy (the unary ops are in
 * unary.c). float32/float64 have typed loops, bfloat16 widens chunks to
 * float32 for the float32 loops (one rounding per result); other dtypes go
 * through double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

/* ---- memory -------------------------------------------------------------- */

/* rn_cpu_alloc, rn_cpu_free and rn_cpu_memcpy are in alloc.c. */

/* ---- iteration ----------------------------------------------------------- */

#define SPLIT_MIN 2048     /* elements: rows shorter than this are not split */
#define SPLIT_PIECE 16384  /* elements per piece of a split row */

void rn_iter_init(rn_iter *it, int nops, const rn_tensor *const *ts) {
  const rn_tensor *t0 = ts[0];
  it->nops = nops;
  int nd = rn_coalesce(nops, ts, it->shape, it->stride);
  it->ndim = nd;
  it->inner = it->shape[nd - 1];
  for (int k = 0; k < nops; k++) it->istride[k] = it->stride[k][nd - 1];
  /* Few long rows (a contiguous tensor is one row): split the last dim into
   * (n/piece, piece) so the rows spread over the threads. piece is a power of
   * two dividing n (elementwise results do not depend on the split). */
  int64_t n = it->inner, piece = n & -n;
  if (piece > SPLIT_PIECE) piece = SPLIT_PIECE;
  if (nd < RN_MAXDIM && n >= 4 * SPLIT_MIN && piece >= SPLIT_MIN && piece < n) {
    it->shape[nd - 1] = n / piece;
    it->shape[nd] = piece;
    for (int k = 0; k < nops; k++) {
      it->stride[k][nd] = it->stride[k][nd - 1];
      it->stride[k][nd - 1] *= piece;
    }
    it->ndim = ++nd;
    it->inner = piece;
  }
  it->outer = 1;
  for (int d = 0; d < nd - 1; d++) it->outer *= it->shape[d];
  if (rn_numel(t0) == 0) it->outer = 0;
}

void rn_iter_row(const rn_iter *it, int64_t row, int64_t *off) {
  for (int k = 0; k < it->nops; k++) off[k] = 0;
  for (int d = it->ndim - 2; d >= 0; d--) {
    int64_t i = row % it->shape[d];
    row /= it->shape[d];
    for (int k = 0; k < it->nops; k++) off[k] += i * it->stride[k][d];
  }
}

#define PAR_MIN 32768 /* elements below which a loop stays on one thread */

/* ---- copy and fill ------------------------------------------------------- */

int rn_cpu_copy(rn_tensor *dst, const rn_tensor *src) {
  const rn_tensor *ts[2] = {dst, src};
  rn_iter it;
  rn_iter_init(&it, 2, ts);
  char *yp = rn_ptr(dst);
  const char *xp = rn_ptr(src);
  size_t ey = rn_dtype_size(dst->dtype), ex = rn_dtype_size(src->dtype);
  if (dst->dtype == src->dtype && it.outer == 1 && it.istride[0] == 1 && it.istride[1] == 1) {
    memmove(yp, xp, (size_t)it.inner * ey);
    return 0;
  }
#pragma omp parallel for if (it.outer * it.inner > PAR_MIN)
  for (int64_t r = 0; r < it.outer; r++) {
    int64_t off[3];
    rn_iter_row(&it, r, off);
    if (dst->dtype == RN_F32 && src->dtype == RN_F32) {
      float *y = (float *)yp + off[0];
      const float *x = (const float *)xp + off[1];
      for (int64_t i = 0; i < it.inner; i++) y[i * it.istride[0]] = x[i * it.istride[1]];
    } else if (dst->dtype == RN_F32 && src->dtype == RN_F64) {
      float *y = (float *)yp + off[0];
      const double *x = (const double *)xp + off[1];
      for (int64_t i = 0; i < it.inner; i++) y[i * it.istride[0]] = (float)x[i * it.istride[1]];
    } else if (dst->dtype == RN_F64 && src->dtype == RN_F32) {
      double *y = (double *)yp + off[0];
      const float *x = (const float *)xp + off[1];
      for (int64_t i = 0; i < it.inner; i++) y[i * it.istride[0]] = x[i * it.istride[1]];
    } else if (dst->dtype == RN_BF16 && src->dtype == RN_F32) {
      /* round to nearest even, NaN kept quiet (rn_f32_to_bf16), vectorizable */
      uint16_t *y = (uint16_t *)yp + off[0];
      const uint32_t *x = (const uint32_t *)xp + off[1];
      int64_t sy = it.istride[0], sx = it.istride[1];
#pragma omp simd
      for (int64_t i = 0; i < it.inner; i++) {
        uint32_t u = x[i * sx];
        uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        y[i * sy] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
      }
    } else if (dst->dtype == RN_F32 && src->dtype == RN_BF16) {
      uint32_t *y = (uint32_t *)yp + off[0];
      const uint16_t *x = (const uint16_t *)xp + off[1];
      int64_t sy = it.istride[0], sx = it.istride[1];
#pragma omp simd
      for (int64_t i = 0; i < it.inner; i++) y[i * sy] = (uint32_t)x[i * sx] << 16;
    } else if (dst->dtype == src->dtype) {
      for (int64_t i = 0; i < it.inner; i++)
        memcpy(yp + (size_t)(off[0] + i * it.istride[0]) * ey,
               xp + (size_t)(off[1] + i * it.istride[1]) * ex, ey);
    } else {
      for (int64_t i = 0; i < it.inner; i++)
        rn_store(yp + (size_t)(off[0] + i * it.istride[0]) * ey, dst->dtype,
                 rn_load(xp + (size_t)(off[1] + i * it.istride[1]) * ex, src->dtype));
    }
  }
  return 0;
}

int rn_cpu_fill(rn_tensor *t, double v) {
  const rn_tensor *ts[1] = {t};
  rn_iter it;
  rn_iter_init(&it, 1, ts);
  size_t es = rn_dtype_size(t->dtype);
  unsigned char one[8];
  rn_store(one, t->dtype, v);
  char *p = rn_ptr(t);
#pragma omp parallel for if (it.outer * it.inner > PAR_MIN)
  for (int64_t r = 0; r < it.outer; r++) {
    int64_t off[3];
    rn_iter_row(&it, r, off);
    if (t->dtype == RN_F32) {
      float *y = (float *)p + off[0], f = (float)v;
      for (int64_t i = 0; i < it.inner; i++) y[i * it.istride[0]] = f;
    } else {
      for (int64_t i = 0; i < it.inner; i++)
        memcpy(p + (size_t)(off[0] + i * it.istride[0]) * es, one, es);
    }
  }
  return 0;
}

/* ---- binary -------------------------------------------------------------- */

static inline double binary_d(rn_binop op, double a, double b) {
  switch (op) {
  case RN_OP_ADD: return a + b;
  case RN_OP_SUB: return a - b;
  case RN_OP_MUL: return a * b;
  case RN_OP_DIV: return a / b;
  case RN_OP_POW: return pow(a, b);
  case RN_OP_MAXIMUM: return a >= b ? a : b;
  case RN_OP_MINIMUM: return a <= b ? a : b;
  case RN_OP_EQ: return a == b;
  case RN_OP_NE: return a != b;
  case RN_OP_LT: return a < b;
  case RN_OP_LE: return a <= b;
  case RN_OP_GT: return a > b;
  case RN_OP_GE: return a >= b;
  default: return 0;
  }
}

static inline float binary_f(rn_binop op, float a, float b) {
  switch (op) {
  case RN_OP_ADD: return a + b;
  case RN_OP_SUB: return a - b;
  case RN_OP_MUL: return a * b;
  case RN_OP_DIV: return a / b;
  case RN_OP_POW: return powf(a, b);
  default: return (float)binary_d(op, a, b);
  }
}

static void binary_row_f32(rn_binop op, int64_t n, float *y, int64_t sy, const float *a,
                           int64_t sa, const float *b, int64_t sb) {
  if (sy == 1 && sa == 1 && sb == 1) {
    switch (op) {
    case RN_OP_ADD:
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
      return;
    case RN_OP_SUB:
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = a[i] - b[i];
      return;
    case RN_OP_MUL:
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
      return;
    case RN_OP_DIV:
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = a[i] / b[i];
      return;
    default: break;
    }
  } else if (sy == 1 && sa == 1 && sb == 0) {
    float s = b[0];
    switch (op) {
    case RN_OP_ADD:
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = a[i] + s;
      return;
    case RN_OP_MUL:
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) y[i] = a[i] * s;
      return;
    default: break;
    }
  }
  for (int64_t i = 0; i < n; i++) y[i * sy] = binary_f(op, a[i * sa], b[i * sb]);
}

static void binary_row_bf16(rn_binop op, int64_t n, uint16_t *y, int64_t sy, const uint16_t *a,
                            int64_t sa, const uint16_t *b, int64_t sb) {
  float fa[RN_BF16_CHUNK], fb[RN_BF16_CHUNK], fy[RN_BF16_CHUNK];
  for (int64_t i0 = 0; i0 < n; i0 += RN_BF16_CHUNK) {
    int64_t m = n - i0 < RN_BF16_CHUNK ? n - i0 : RN_BF16_CHUNK;
    const uint16_t *ac = a + i0 * sa, *bc = b + i0 * sb;
    uint16_t *yc = y + i0 * sy;
    if (sa == 1) {
#pragma omp simd
      for (int64_t i = 0; i < m; i++) fa[i] = rn_bf16f(ac[i]);
    } else {
      for (int64_t i = 0; i < m; i++) fa[i] = rn_bf16f(ac[i * sa]);
    }
    if (sb == 1) {
#pragma omp simd
      for (int64_t i = 0; i < m; i++) fb[i] = rn_bf16f(bc[i]);
    } else {
      for (int64_t i = 0; i < m; i++) fb[i] = rn_bf16f(bc[i * sb]);
    }
    binary_row_f32(op, m, fy, 1, fa, 1, fb, 1);
    if (sy == 1) {
#pragma omp simd
      for (int64_t i = 0; i < m; i++) yc[i] = rn_f2bf16(fy[i]);
    } else {
      for (int64_t i = 0; i < m; i++) yc[i * sy] = rn_f2bf16(fy[i]);
    }
  }
}

int rn_cpu_binary(rn_binop op, rn_tensor *y, const rn_tensor *a, const rn_tensor *b) {
  const rn_tensor *ts[3] = {y, a, b};
  rn_iter it;
  rn_iter_init(&it, 3, ts);
  char *yp = rn_ptr(y);
  const char *ap = rn_ptr(a), *bp = rn_ptr(b);
  size_t es = rn_dtype_size(a->dtype);
#pragma omp parallel for if (it.outer * it.inner > PAR_MIN)
  for (int64_t r = 0; r < it.outer; r++) {
    int64_t off[3];
    rn_iter_row(&it, r, off);
    if (a->dtype == RN_F32) {
      binary_row_f32(op, it.inner, (float *)yp + off[0], it.istride[0],
                     (const float *)ap + off[1], it.istride[1], (const float *)bp + off[2],
                     it.istride[2]);
    } else if (a->dtype == RN_BF16 && b->dtype == RN_BF16 && y->dtype == RN_BF16) {
      binary_row_bf16(op, it.inner, (uint16_t *)yp + off[0], it.istride[0],
                      (const uint16_t *)ap + off[1], it.istride[1], (const uint16_t *)bp + off[2],
                      it.istride[2]);
    } else if (a->dtype == RN_F64) {
      double *yy = (double *)yp + off[0];
      const double *aa = (const double *)ap + off[1], *bb = (const double *)bp + off[2];
      for (int64_t i = 0; i < it.inner; i++)
        yy[i * it.istride[0]] = binary_d(op, aa[i * it.istride[1]], bb[i * it.istride[2]]);
    } else {
      bool integer = !rn_dtype_is_float(a->dtype);
      for (int64_t i = 0; i < it.inner; i++) {
        double av = rn_load(ap + (size_t)(off[1] + i * it.istride[1]) * es, a->dtype);
        double bv = rn_load(bp + (size_t)(off[2] + i * it.istride[2]) * es, b->dtype);
        double v = binary_d(op, av, bv);
        if (integer && op == RN_OP_DIV) v = bv == 0 ? 0 : trunc(v);
        rn_store(yp + (size_t)(off[0] + i * it.istride[0]) * es, y->dtype, v);
      }
    }
  }
  return 0;
}

int rn_cpu_axpy(rn_tensor *y, double alpha, const rn_tensor *x) {
  const rn_tensor *ts[2] = {y, x};
  rn_iter it;
  rn_iter_init(&it, 2, ts);
  char *yp = rn_ptr(y);
  const char *xp = rn_ptr(x);
  size_t ey = rn_dtype_size(y->dtype), ex = rn_dtype_size(x->dtype);
#pragma omp parallel for if (it.outer * it.inner > PAR_MIN)
  for (int64_t r = 0; r < it.outer; r++) {
    int64_t off[3], sy = it.istride[0], sx = it.istride[1];
    rn_iter_row(&it, r, off);
    if (y->dtype == RN_F32 && x->dtype == RN_F32) {
      float *yy = (float *)yp + off[0], al = (float)alpha;
      const float *xx = (const float *)xp + off[1];
      if (sy == 1 && sx == 1) {
#pragma omp simd
        for (int64_t i = 0; i < it.inner; i++) yy[i] += al * xx[i];
      } else {
        for (int64_t i = 0; i < it.inner; i++) yy[i * sy] += al * xx[i * sx];
      }
    } else if (y->dtype == RN_F64 && x->dtype == RN_F64) {
      double *yy = (double *)yp + off[0];
      const double *xx = (const double *)xp + off[1];
      for (int64_t i = 0; i < it.inner; i++) yy[i * sy] += alpha * xx[i * sx];
    } else if (y->dtype == RN_BF16 && x->dtype == RN_BF16) {
      uint16_t *yy = (uint16_t *)yp + off[0];
      const uint16_t *xx = (const uint16_t *)xp + off[1];
      const float al = (float)alpha;
      for (int64_t i = 0; i < it.inner; i++)
        yy[i * sy] = rn_f2bf16(rn_bf16f(yy[i * sy]) + al * rn_bf16f(xx[i * sx]));
    } else {
      for (int64_t i = 0; i < it.inner; i++) {
        char *q = yp + (size_t)(off[0] + i * sy) * ey;
        rn_store(q, y->dtype, rn_load(q, y->dtype) +
                              alpha * rn_load(xp + (size_t)(off[1] + i * sx) * ex, x->dtype));
      }
    }
  }
  return 0;
}
