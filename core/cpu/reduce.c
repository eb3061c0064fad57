/* reduce.c (cpu) - sum/mean/max/min over any set of dims of a strided tensor,
 * accumulated in double, and argmax along one dim. */
#include <math.h>
#include <string.h>

#include "cpu.h"

/* x: any strides; y: x's rank, size 1 on reduced dims (contiguous). */
int rn_cpu_reduce(rn_redop op, rn_tensor *y, const rn_tensor *x) {
  int kd[RN_MAXDIM], rd[RN_MAXDIM], nk = 0, nr = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (y->shape[d] == 1 && x->shape[d] != 1) rd[nr++] = d;
    else if (x->shape[d] != 1) kd[nk++] = d;
  }
  int64_t nout = rn_numel(y), nred = 1;
  for (int i = 0; i < nr; i++) nred *= x->shape[rd[i]];
  if (nred == 0 && (op == RN_RED_MAX || op == RN_RED_MIN))
    return rn_err("%s: reduction over an empty dim", op == RN_RED_MAX ? "max" : "min");
  const char *xp = rn_ptr(x);
  char *yp = rn_ptr(y);
  size_t es = rn_dtype_size(x->dtype);
  rn_dtype dt = x->dtype;
  /* innermost reduced dim first in the loop order for locality */
#pragma omp parallel for if (nout * nred > 32768)
  for (int64_t o = 0; o < nout; o++) {
    int64_t base = 0, rem = o;
    for (int i = nk - 1; i >= 0; i--) {
      int d = kd[i];
      base += (rem % x->shape[d]) * x->stride[d];
      rem /= x->shape[d];
    }
    double acc = op == RN_RED_MAX ? -INFINITY : op == RN_RED_MIN ? INFINITY : 0.0;
    bool nan = false;
    int64_t idx[RN_MAXDIM] = {0}, off = base;
    int64_t inner_n = nr ? x->shape[rd[nr - 1]] : 1, inner_s = nr ? x->stride[rd[nr - 1]] : 0;
    for (int64_t done = 0; done < nred; done += inner_n) {
      if (dt == RN_F32) {
        const float *p = (const float *)xp + off;
        for (int64_t i = 0; i < inner_n; i++) {
          double v = p[i * inner_s];
          if (op <= RN_RED_MEAN) acc += v;
          else if (v != v) nan = true;
          else if (op == RN_RED_MAX ? v > acc : v < acc) acc = v;
        }
      } else {
        for (int64_t i = 0; i < inner_n; i++) {
          double v = dt == RN_F64 ? ((const double *)xp)[off + i * inner_s]
                                  : rn_load(xp + (size_t)(off + i * inner_s) * es, dt);
          if (op <= RN_RED_MEAN) acc += v;
          else if (v != v) nan = true;
          else if (op == RN_RED_MAX ? v > acc : v < acc) acc = v;
        }
      }
      /* advance the outer reduced dims (odometer) */
      for (int i = nr - 2; i >= 0; i--) {
        int d = rd[i];
        off += x->stride[d];
        if (++idx[i] < x->shape[d]) break;
        off -= x->stride[d] * x->shape[d];
        idx[i] = 0;
      }
    }
    if (op == RN_RED_MEAN) acc = nred ? acc / (double)nred : NAN;
    if (nan) acc = NAN;
    rn_store(yp + (size_t)o * rn_dtype_size(y->dtype), y->dtype, acc);
  }
  return 0;
}

/* idx: x's shape with size 1 at dim, int64, contiguous. First max wins;
 * NaN counts as the largest value, as in PyTorch. */
int rn_cpu_argmax(rn_tensor *idx, const rn_tensor *x, int dim) {
  int64_t nout = rn_numel(idx), n = x->shape[dim];
  if (n == 0) return rn_err("argmax: dim %d is empty", dim + 1);
  const char *xp = rn_ptr(x);
  size_t es = rn_dtype_size(x->dtype);
  int64_t *out = (int64_t *)rn_ptr(idx);
  for (int64_t o = 0; o < nout; o++) {
    int64_t base = 0, rem = o;
    for (int d = x->ndim - 1; d >= 0; d--) {
      if (d == dim) continue;
      base += (rem % x->shape[d]) * x->stride[d];
      rem /= x->shape[d];
    }
    int64_t best = 0;
    double bv = rn_load(xp + (size_t)base * es, x->dtype);
    for (int64_t i = 1; i < n && bv == bv; i++) {
      double v = rn_load(xp + (size_t)(base + i * x->stride[dim]) * es, x->dtype);
      if (v > bv || v != v) { bv = v; best = i; }
    }
    out[o] = best;
  }
  return 0;
}
