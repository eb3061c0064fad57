/* embedding.c (ops) - rn_embedding: rows of a weight table picked by
 * integer indices, and its backward, a scatter-add into the table's
 * gradient (duplicate indices accumulate; the kernels add in a fixed order,
 * so the result is deterministic).
 *
 *   indices: any shape (...), int32 or int64, each in 0..V-1 (checked here
 *            once for every backend: the error names the bad value)
 *   weight:  (V, D) float -> y: (..., D) */
#include <stdlib.h>

#include "../autograd.h"
#include "../backend.h"

/* saved: indices (contiguous) */
static int embedding_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  rn_tensor *idx = n->saved[0];
  const rn_inshape *ws = &n->in_shape[1];
  const rn_backend *be = rn_backend_of(idx);
  if (!RN_HAS(be, embedding_bwd)) return -1;
  rn_tensor *gc = rn_contiguous(g);
  rn_tensor *gw = gc ? rn_zeros(2, ws->shape, ws->dtype, rn_device(idx)) : NULL;
  if (!gw || be->embedding_bwd(gw, gc, idx) < 0) {
    rn_release(gc);
    rn_release(gw);
    return -1;
  }
  rn_release(gc);
  gin[1] = gw;
  return 0;
}

/* min and max of the indices as doubles (one small device-to-host copy) */
static int index_range(rn_tensor *idx, double *lo, double *hi) {
  rn_tensor *mn = rn_reduce(RN_RED_MIN, idx, 0, NULL, false);
  rn_tensor *mx = mn ? rn_reduce(RN_RED_MAX, idx, 0, NULL, false) : NULL;
  rn_tensor *a = mx ? rn_to_device(mn, RN_CPU) : NULL, *b = a ? rn_to_device(mx, RN_CPU) : NULL;
  int rc = b ? 0 : -1;
  if (rc == 0) {
    *lo = rn_load(rn_ptr(a), a->dtype);
    *hi = rn_load(rn_ptr(b), b->dtype);
  }
  rn_release(mn); rn_release(mx); rn_release(a); rn_release(b);
  return rc;
}

rn_tensor *rn_embedding(rn_tensor *indices, rn_tensor *weight) {
  const char *op = "embedding";
  char b1[128];
  rn_tensor *ins[2] = {indices, weight};
  if (rn_same_device(op, 2, ins) < 0) return NULL;
  if (indices->dtype != RN_I32 && indices->dtype != RN_I64) {
    rn_err("%s: indices are %s; int32 or int64 is needed (use :long())", op,
           rn_dtype_name(indices->dtype));
    return NULL;
  }
  if (weight->ndim != 2 || !rn_dtype_is_float(weight->dtype)) {
    rn_err("%s: weight must be a 2-D (V, D) float table, got %s %s", op,
           rn_shape_str(weight, b1, sizeof b1), rn_dtype_name(weight->dtype));
    return NULL;
  }
  if (indices->ndim + 1 > RN_MAXDIM) {
    rn_err("%s: indices have %d dims; at most %d", op, indices->ndim, RN_MAXDIM - 1);
    return NULL;
  }
  int64_t V = weight->shape[0], D = weight->shape[1];
  if (rn_numel(indices) > 0) {
    double lo, hi;
    if (index_range(indices, &lo, &hi) < 0) return NULL;
    if (lo < 0 || hi >= (double)V) {
      rn_err("%s: index %.0f is out of range for a table of %lld rows (valid: 0..%lld)", op,
             lo < 0 ? lo : hi, (long long)V, (long long)V - 1);
      return NULL;
    }
  }
  const rn_backend *be = rn_backend_of(weight);
  if (!RN_HAS(be, embedding_fwd)) return NULL;
  int64_t sh[RN_MAXDIM];
  for (int i = 0; i < indices->ndim; i++) sh[i] = indices->shape[i];
  sh[indices->ndim] = D;
  bool gm = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *ic = rn_contiguous(indices), *wc = ic ? rn_contiguous(weight) : NULL;
  rn_set_grad_enabled(gm);
  rn_tensor *y = wc ? rn_empty(indices->ndim + 1, sh, weight->dtype, rn_device(weight)) : NULL;
  int rc = y ? be->embedding_fwd(y, ic, wc) : -1;
  if (rc == 0 && rn_needs_grad(2, ins)) {
    rn_node *n = rn_node_new(op, embedding_bw, 2, ins);
    if (!n || rn_node_save(n, ic) < 0) {
      rn_node_release(n);
      rc = -1;
    } else {
      rn_node_attach(n, y);
    }
  }
  rn_release(ic);
  rn_release(wc);
  if (rc < 0) { rn_release(y); return NULL; }
  return y;
}
