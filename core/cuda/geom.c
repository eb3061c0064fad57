/* geom.c (cuda) - the strided geometry handed to the elementwise kernels
 * (rnk_geom, kernels/kernels.h): the dim coalescing shared with the CPU
 * iterator (rn_coalesce, core/tensor.c), for up to 4 operands, plus the flags
 * that pick the kernels' fast paths. */
#include <string.h>

#include "cuda.h"

void rn_cuda_geom(rnk_geom *g, int nops, const rn_tensor *const *ts) {
  const rn_tensor *t0 = ts[0];
  memset(g, 0, sizeof *g);
  int nd = rn_coalesce(nops, ts, g->shape, g->stride);
  g->n = rn_numel(t0);
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
