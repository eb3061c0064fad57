/* geom.c (cuda) - the strided geometry handed to the elementwise kernels
 * (rnk_geom, kernels/kernels.h): the same dim coalescing as the CPU's
 * rn_iter (core/cpu/elementwise.c), for up to 4 operands, plus the flags
 * that pick the kernels' fast paths. */
#include <string.h>

#include "cuda.h"

void rn_cuda_geom(rnk_geom *g, int nops, const rn_tensor *const *ts) {
  const rn_tensor *t0 = ts[0];
  memset(g, 0, sizeof *g);
  int nd = 0;
  /* drop size-1 dims; merge dim d into the previous kept one when every
   * operand steps over both as one dim (stride[prev] == stride[d]*shape[d]) */
  for (int d = 0; d < t0->ndim; d++) {
    if (t0->shape[d] == 1) continue;
    if (nd > 0) {
      bool merge = true;
      for (int k = 0; k < nops; k++)
        if (g->stride[k][nd - 1] != ts[k]->stride[d] * t0->shape[d]) merge = false;
      if (merge) {
        g->shape[nd - 1] *= t0->shape[d];
        for (int k = 0; k < nops; k++) g->stride[k][nd - 1] = ts[k]->stride[d];
        continue;
      }
    }
    g->shape[nd] = t0->shape[d];
    for (int k = 0; k < nops; k++) g->stride[k][nd] = ts[k]->stride[d];
    nd++;
  }
  g->n = rn_numel(t0);
  if (nd == 0) { /* one element (or none) */
    g->shape[0] = g->n ? 1 : 0;
    nd = 1;
  }
  g->ndim = nd;
  g->contig = nd == 1;
  for (int k = 0; k < nops; k++)
    if (g->stride[k][0] != 1 && g->n > 1) g->contig = 0;
  /* 32-bit index math when the element count (plus a grid's stride, which
   * the kernels add before the bound check) and every offset stay < 2^31 */
  g->idx32 = g->n < ((int64_t)1 << 30);
  for (int k = 0; k < nops && g->idx32; k++) {
    int64_t maxoff = 0;
    for (int d = 0; d < nd; d++) maxoff += (g->shape[d] ? g->shape[d] - 1 : 0) * g->stride[k][d];
    if (maxoff >= ((int64_t)1 << 31) - 1) g->idx32 = 0;
  }
}
