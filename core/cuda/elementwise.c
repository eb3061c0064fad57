/* elementwise.c (cuda) - the copy, fill, unary, unary_backward, binary and
 * axpy slots: check dtypes, build the strided geometry (geom.c) and launch
 * the kernels of kernels/elementwise.cu on the one stream. Same semantics as
 * core/cpu/elementwise.c: any strides (stride 0 = broadcast); copy, fill,
 * unary, binary and axpy take every dtype, unary_backward float32/float64. */
#include <string.h>

#include "cuda.h"

int rn_cuda_copy(rn_tensor *dst, const rn_tensor *src) {
  const rn_tensor *ts[2] = {dst, src};
  rnk_geom g;
  rn_cuda_geom(&g, 2, ts);
  if (g.n == 0) return 0;
  char *yp = rn_ptr(dst);
  const char *xp = rn_ptr(src);
  size_t es = rn_dtype_size(dst->dtype), nb = (size_t)g.n * es;
  /* one dense same-dtype block that does not overlap itself: a plain copy */
  if (dst->dtype == src->dtype && g.contig && (yp + nb <= xp || xp + nb <= yp))
    return CU(cudaMemcpyAsync(yp, xp, nb, cudaMemcpyDeviceToDevice, rn_cuda_stream()));
  return CU(rnk_copy(g, yp, (int)dst->dtype, xp, (int)src->dtype, rn_cuda_stream()));
}

int rn_cuda_fill(rn_tensor *t, double v) {
  const rn_tensor *ts[1] = {t};
  rnk_geom g;
  rn_cuda_geom(&g, 1, ts);
  if (g.n == 0) return 0;
  /* the element's bytes as rn_store makes them, widened to 64 bits */
  unsigned char one[8] = {0};
  rn_store(one, t->dtype, v);
  uint64_t bits;
  memcpy(&bits, one, sizeof bits);
  return CU(rnk_fill(g, rn_ptr(t), (int)rn_dtype_size(t->dtype), bits, rn_cuda_stream()));
}

static const double no_params[RN_UNARY_NP];

int rn_cuda_unary(rn_unop op, const double *p, rn_tensor *y, const rn_tensor *x) {
  if (!p) p = no_params;
  if (y->dtype != x->dtype)
    return rn_err("%s: output dtype %s differs from the input's %s", rn_unop_name(op),
                  rn_dtype_name(y->dtype), rn_dtype_name(x->dtype));
  const rn_tensor *ts[2] = {y, x};
  rnk_geom g;
  rn_cuda_geom(&g, 2, ts);
  if (g.n == 0) return 0;
  return CU(rnk_unary(g, (int)op, p[0], p[1], (int)x->dtype, rn_ptr(y), rn_ptr(x),
                      rn_cuda_stream()));
}

int rn_cuda_unary_backward(rn_unop op, const double *p, rn_tensor *gx, const rn_tensor *gy,
                           const rn_tensor *x, const rn_tensor *y) {
  if (!p) p = no_params;
  if (x->dtype != RN_F32 && x->dtype != RN_F64)
    return rn_err("%s backward: dtype %s is not a float type", rn_unop_name(op),
                  rn_dtype_name(x->dtype));
  if (gx->dtype != x->dtype || gy->dtype != x->dtype || y->dtype != x->dtype)
    return rn_err("%s backward: dtypes differ (gradient %s, input %s)", rn_unop_name(op),
                  rn_dtype_name(gy->dtype), rn_dtype_name(x->dtype));
  const rn_tensor *ts[4] = {gx, gy, x, y};
  rnk_geom g;
  rn_cuda_geom(&g, 4, ts);
  if (g.n == 0) return 0;
  return CU(rnk_unary_backward(g, (int)op, p[0], p[1], (int)x->dtype, rn_ptr(gx), rn_ptr(gy),
                               rn_ptr(x), rn_ptr(y), rn_cuda_stream()));
}

int rn_cuda_binary(rn_binop op, rn_tensor *y, const rn_tensor *a, const rn_tensor *b) {
  if (a->dtype != b->dtype || y->dtype != a->dtype)
    return rn_err("%s: dtypes differ (%s, %s -> %s)", rn_binop_name(op), rn_dtype_name(a->dtype),
                  rn_dtype_name(b->dtype), rn_dtype_name(y->dtype));
  const rn_tensor *ts[3] = {y, a, b};
  rnk_geom g;
  rn_cuda_geom(&g, 3, ts);
  if (g.n == 0) return 0;
  return CU(rnk_binary(g, (int)op, (int)a->dtype, rn_ptr(y), rn_ptr(a), rn_ptr(b),
                       rn_cuda_stream()));
}

int rn_cuda_axpy(rn_tensor *y, double alpha, const rn_tensor *x) {
  const rn_tensor *ts[2] = {y, x};
  rnk_geom g;
  rn_cuda_geom(&g, 2, ts);
  if (g.n == 0) return 0;
  return CU(rnk_axpy(g, rn_ptr(y), (int)y->dtype, alpha, rn_ptr(x), (int)x->dtype,
                     rn_cuda_stream()));
}
