/* optim.c (cuda) - the optim_multi_step slot: one launch of
 * kernels/optim.cu for a whole parameter group. The segment table and each
 * segment's first block (chunks of RNK_MT_CHUNK elements) are built here,
 * copied to one device buffer from the caching allocator (stream order: it
 * goes back after the kernel), and the kernel runs core/optim_math.h per
 * element. Switched off (the per-tensor ops instead) by RN_FUSED_OPTIM=0 in
 * lua/rn/optim.lua. Not run on a GPU yet (compiled and linked only).
 */
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

int rn_cuda_optim_multi_step(const rn_mt_hp *hp, rn_dtype dt, const rn_mt_seg *segs, int n) {
  if (n <= 0) return 0;
  size_t tbytes = (size_t)n * sizeof(rn_mt_seg), bbytes = (size_t)(n + 1) * sizeof(int64_t);
  char *host = malloc(tbytes + bbytes);
  if (!host) return rn_err("optim_multi_step: out of host memory (%d segments)", n);
  memcpy(host, segs, tbytes);
  int64_t *blk0 = (int64_t *)(host + tbytes), nb = 0;
  for (int j = 0; j < n; j++) {
    blk0[j] = nb;
    nb += (segs[j].n + RNK_MT_CHUNK - 1) / RNK_MT_CHUNK;
  }
  blk0[n] = nb;
  if (nb == 0) {
    free(host);
    return 0;
  }
  char *dev = rn_cuda_alloc(tbytes + bbytes);
  if (!dev) {
    free(host);
    return -1;
  }
  cudaStream_t s = rn_cuda_stream();
  /* pageable source: cudaMemcpyAsync returns once it is staged, so host may go */
  int rc = CU(cudaMemcpyAsync(dev, host, tbytes + bbytes, cudaMemcpyHostToDevice, s));
  free(host);
  if (rc == 0)
    rc = CU(rnk_optim_multi_step((int)dt, hp, (const rn_mt_seg *)dev,
                                 (const int64_t *)(dev + tbytes), n, nb, s));
  rn_cuda_free(dev);
  return rc;
}
