/* dist_ad.c - the differentiable collective of synchronized batch norm:
 * y = allreduce_sum(x) across ranks, out of place; its backward is the
 * allreduce sum of the output gradient (each rank's loss depends on every
 * rank's x through the sum). Every rank must run the same forward and
 * backward graph, so that these collectives meet in the same order.
 * x: any shape, float32/float64, on any device. */
#include "../autograd.h"
#include "dist.h"

static int ar_backward(rn_node *n, rn_tensor *gout, rn_tensor **gin) {
  (void)n;
  rn_tensor *g = rn_clone(gout);
  if (!g) return -1;
  if (rn_dist_allreduce(g, RN_DIST_SUM, "sync batch norm: allreduce of the gradient", false) < 0) {
    rn_release(g);
    return -1;
  }
  gin[0] = g;
  return 0;
}

rn_tensor *rn_dist_allreduce_sum_ad(rn_tensor *x) {
  if (!rn_dtype_is_float(x->dtype)) {
    rn_err("allreduce (differentiable): dtype %s, expected a float dtype", rn_dtype_name(x->dtype));
    return NULL;
  }
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *y = rn_clone(x);
  rn_set_grad_enabled(g);
  if (!y) return NULL;
  if (rn_dist_allreduce(y, RN_DIST_SUM, "sync batch norm: allreduce of the statistics", false) < 0) {
    rn_release(y);
    return NULL;
  }
  if (rn_needs_grad(1, &x)) {
    rn_node *n = rn_node_new("allreduce", ar_backward, 1, &x);
    if (!n) { rn_release(y); return NULL; }
    rn_node_attach(n, y);
  }
  return y;
}
