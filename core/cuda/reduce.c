/* reduce.c (cuda) - the reduce and argmax slots: split x's dims into kept
 * and reduced ones (merging neighbours that are dense in both x and y),
 * then launch kernels/reduce.cu. Semantics of core/cpu/reduce.c: y has x's
 * rank with size 1 on the reduced dims, sums in double, NaN propagates
 * through max/min, argmax takes the first maximum with NaN as the largest. */
#include <string.h>

#include "cuda.h"

/* Appends dim (size n, x stride xs, y stride ys) to a list of dims, merging
 * it into the last one when both tensors step over the two as one. */
static void push_dim(int *nd, int64_t *shape, int64_t *xst, int64_t *yst, int64_t n, int64_t xs,
                     int64_t ys) {
  int k = *nd;
  if (k > 0 && xst[k - 1] == xs * n && (!yst || yst[k - 1] == ys * n)) {
    shape[k - 1] *= n;
    xst[k - 1] = xs;
    if (yst) yst[k - 1] = ys;
    return;
  }
  shape[k] = n;
  xst[k] = xs;
  if (yst) yst[k] = ys;
  *nd = k + 1;
}

/* x: any strides; y: x's rank with size 1 on the reduced dims. */
int rn_cuda_reduce(rn_redop op, rn_tensor *y, const rn_tensor *x) {
  static const char *names[] = {"sum", "mean", "max", "min"};
  if (y->ndim != x->ndim) return rn_err("%s: output rank differs from the input's", names[op]);
  rnk_red_geom g;
  memset(&g, 0, sizeof g);
  g.nout = 1;
  g.nred = 1;
  for (int d = 0; d < x->ndim; d++) {
    if (x->shape[d] == 1) continue;
    if (y->shape[d] == 1) {
      push_dim(&g.nr, g.rshape, g.rstride, NULL, x->shape[d], x->stride[d], 0);
      g.nred *= x->shape[d];
    } else {
      push_dim(&g.nk, g.kshape, g.kxstride, g.kystride, x->shape[d], x->stride[d], y->stride[d]);
      g.nout *= x->shape[d];
    }
  }
  if (rn_numel(y) == 0) return 0;
  if (g.nred == 0 && (op == RN_RED_MAX || op == RN_RED_MIN))
    return rn_err("%s: reduction over an empty dim", names[op]);
  return CU(rnk_reduce(g, (int)op, rn_ptr(x), (int)x->dtype, rn_ptr(y), (int)y->dtype,
                       rn_cuda_stream()));
}

/* idx: x's shape with size 1 at dim, int64. */
int rn_cuda_argmax(rn_tensor *idx, const rn_tensor *x, int dim) {
  if (idx->dtype != RN_I64) return rn_err("argmax: the index tensor must be int64");
  int64_t n = x->shape[dim];
  if (n == 0) return rn_err("argmax: dim %d is empty", dim + 1);
  rnk_red_geom g;
  memset(&g, 0, sizeof g);
  g.nout = 1;
  for (int d = 0; d < x->ndim; d++) {
    if (d == dim || x->shape[d] == 1) continue;
    push_dim(&g.nk, g.kshape, g.kxstride, g.kystride, x->shape[d], x->stride[d], idx->stride[d]);
    g.nout *= x->shape[d];
  }
  g.nr = 1;
  g.rshape[0] = n;
  g.rstride[0] = x->stride[dim];
  g.nred = n;
  if (g.nout == 0) return 0;
  return CU(rnk_argmax(g, rn_ptr(x), (int)x->dtype, (int64_t *)(void *)rn_ptr(idx),
                       rn_cuda_stream()));
}
