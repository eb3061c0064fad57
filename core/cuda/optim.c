/* optim.c (cuda) - the multi-tensor slots, one launch each:
 * optim_multi_step (kernels/optim.cu runs core/optim_math.h per element for
 * a whole parameter group) and l2_penalty_multi (Keras' L2 penalties of many
 * tensors summed in one pass). Switched off (the per-tensor ops instead) by
 * RN_FUSED_OPTIM=0 / RN_FUSED_L2=0 in lua/rn/optim.lua and lua/rn/model.lua.
 *
 * The segment table (rn_mt_seg[n], then each segment's first block in chunks
 * of RNK_MT_CHUNK elements, int64[n+1]) is built here and kept on the device
 * in a small cache keyed by its bytes: a training loop passes the same
 * table every step (same tensors, same flags), so the steady state uploads
 * nothing. The cache keeps its own host copy, so the upload's source stays
 * valid. Verified on an H200 (2026-12-04: test_optim_fused.lua; doc/perf.md).
 */
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

#define NTAB 16

typedef struct {
  char *host; /* the table's bytes (the key) */
  char *dev;  /* its device copy */
  size_t bytes;
  unsigned long long used; /* last use, for eviction */
} tab_entry;

static tab_entry tabs[NTAB];
static unsigned long long tab_clock;

/* The table's device copy: a cached one, or a new upload into the least
 * recently used entry. Inside a CUDA graph capture (issue 19) a fresh block
 * of the graph's pool written by kernels whose arguments carry the bytes
 * (rnk_poke: a captured host copy would read freed host memory at replay);
 * *own = 1 then: the caller frees it after its kernel. NULL after rn_err. */
static const char *dev_table(const char *host, size_t bytes, int *own) {
  *own = 0;
  if (rn_cuda_capturing()) {
    char *dev = rn_cuda_alloc(bytes);
    if (!dev) return NULL;
    if (CU(rnk_poke(dev, host, bytes, rn_cuda_stream())) < 0) {
      rn_cuda_free(dev);
      return NULL;
    }
    *own = 1;
    return dev;
  }
  int victim = -1;
  for (int i = 0; i < NTAB; i++) {
    tab_entry *e = &tabs[i];
    if (e->host && e->bytes == bytes && memcmp(e->host, host, bytes) == 0) {
      e->used = ++tab_clock;
      return e->dev;
    }
    if (victim < 0 || !e->host || (tabs[victim].host && e->used < tabs[victim].used)) victim = i;
  }
  char *copy = malloc(bytes);
  char *dev = rn_cuda_alloc(bytes);
  if (!copy || !dev) {
    free(copy);
    if (dev) rn_cuda_free(dev);
    else return NULL; /* rn_err set by the allocator */
    rn_err("optim: out of host memory (a %zu-byte segment table)", bytes);
    return NULL;
  }
  memcpy(copy, host, bytes);
  /* the source (the cache's own copy) outlives the upload */
  if (CU(cudaMemcpyAsync(dev, copy, bytes, cudaMemcpyHostToDevice, rn_cuda_stream())) < 0) {
    free(copy);
    rn_cuda_free(dev);
    return NULL;
  }
  tab_entry *e = &tabs[victim];
  if (e->host) {
    free(e->host);
    rn_cuda_free(e->dev); /* stream order: later work only */
  }
  e->host = copy;
  e->dev = dev;
  e->bytes = bytes;
  e->used = ++tab_clock;
  return dev;
}

/* The host table for segs: rn_mt_seg[n] then blk0[n+1]; *nb: the blocks. */
static char *host_table(const rn_mt_seg *segs, int n, size_t *bytes, int64_t *nb) {
  size_t tbytes = (size_t)n * sizeof(rn_mt_seg);
  *bytes = tbytes + (size_t)(n + 1) * sizeof(int64_t);
  char *host = malloc(*bytes);
  if (!host) {
    rn_err("optim: out of host memory (%d segments)", n);
    return NULL;
  }
  memcpy(host, segs, tbytes);
  int64_t *blk0 = (int64_t *)(host + tbytes), b = 0;
  for (int j = 0; j < n; j++) {
    blk0[j] = b;
    b += (segs[j].n + RNK_MT_CHUNK - 1) / RNK_MT_CHUNK;
  }
  blk0[n] = b;
  *nb = b;
  return host;
}

int rn_cuda_optim_multi_step(const rn_mt_hp *hp, rn_dtype dt, const rn_mt_seg *segs, int n) {
  if (n <= 0) return 0;
  size_t bytes;
  int64_t nb;
  char *host = host_table(segs, n, &bytes, &nb);
  if (!host) return -1;
  if (nb == 0) {
    free(host);
    return 0;
  }
  int own;
  const char *dev = dev_table(host, bytes, &own);
  free(host);
  if (!dev) return -1;
  size_t tbytes = (size_t)n * sizeof(rn_mt_seg);
  int rc = CU(rnk_optim_multi_step((int)dt, hp, (const rn_mt_seg *)dev,
                                   (const int64_t *)(dev + tbytes), n, nb, rn_cuda_stream()));
  if (own) rn_cuda_free((void *)dev);
  return rc;
}

int rn_cuda_l2_penalty_multi(void *out, rn_dtype dt, const rn_mt_seg *segs, int n) {
  cudaStream_t s = rn_cuda_stream();
  size_t es = dt == RN_F32 ? sizeof(float) : sizeof(double);
  size_t bytes;
  int64_t nb = 0;
  char *host = n > 0 ? host_table(segs, n, &bytes, &nb) : NULL;
  if (n > 0 && !host) return -1;
  if (nb == 0) {
    free(host);
    return CU(cudaMemsetAsync(out, 0, es, s)); /* +0.0 in both dtypes */
  }
  int own;
  const char *dev = dev_table(host, bytes, &own);
  free(host);
  if (!dev) return -1;
  /* scratch: the partials, then the counter */
  char *scr = rn_cuda_alloc((size_t)nb * sizeof(double) + sizeof(unsigned));
  if (!scr) {
    if (own) rn_cuda_free((void *)dev);
    return -1;
  }
  unsigned *count = (unsigned *)(scr + (size_t)nb * sizeof(double));
  size_t tbytes = (size_t)n * sizeof(rn_mt_seg);
  int rc = CU(cudaMemsetAsync(count, 0, sizeof *count, s));
  if (rc == 0)
    rc = CU(rnk_l2_penalty_multi((int)dt, out, (const rn_mt_seg *)dev,
                                 (const int64_t *)(dev + tbytes), n, nb, (double *)scr, count, s));
  rn_cuda_free(scr);
  if (own) rn_cuda_free((void *)dev);
  return rc;
}
