/* alloc_pool.c - issue 19: the caching allocator's graph pools
 * (core/cuda/alloc.c) against a fake CUDA runtime, so they are tested
 * without a GPU (tests/test_alloc_pool.lua compiles and runs this):
 * a capture's allocations come from its pool (new blocks or the pool's own
 * free blocks, never the global lists), its frees stay in the pool and are
 * not reused outside it, a cache flush leaves the pool's blocks alone, an
 * out-of-memory inside a capture fails at once (no flush, no collection
 * hook), cudaMalloc inside a capture runs under the relaxed capture mode,
 * and releasing the pool gives its blocks back to the global lists.
 * Prints "ok <checks>" or the failed checks; exit status 1 on a failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

/* ---- the fake runtime ------------------------------------------------------ */

static int mallocs, frees, syncs, fail_next_malloc, hook_calls;
static enum cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
static int malloc_mode_relaxed; /* the mode seen by the last cudaMalloc */

cudaError_t cudaMalloc(void **p, size_t n) {
  malloc_mode_relaxed = mode == cudaStreamCaptureModeRelaxed;
  if (fail_next_malloc) {
    fail_next_malloc--;
    return cudaErrorMemoryAllocation;
  }
  *p = malloc(n);
  mallocs++;
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) {
  free(p);
  frees++;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
  *f = 0;
  *t = 1;
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  (void)s;
  syncs++;
  return cudaSuccess;
}
cudaError_t cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode *m) {
  enum cudaStreamCaptureMode old = mode;
  mode = *m;
  *m = old;
  return cudaSuccess;
}
int rn_cuda_init(void) { return 0; }
bool rn_cuda_ready(void) { return true; }
cudaStream_t rn_cuda_stream(void) { return NULL; }
int rn_cuda_check(cudaError_t e, const char *call, const char *file, int line) {
  if (e == cudaSuccess) return 0;
  return rn_err("fake cuda: %s failed (%s:%d)", call, file, line);
}
static int hook(void) {
  hook_calls++;
  return 0;
}

/* ---- checks ----------------------------------------------------------------- */

static int checks, failed;
#define CHECK(c)                                                     \
  do {                                                               \
    checks++;                                                        \
    if (!(c)) {                                                      \
      failed++;                                                      \
      printf("FAILED line %d: %s\n", __LINE__, #c);                  \
    }                                                                \
  } while (0)

int main(void) {
  rn_cuda_oom_hook = hook;
  /* a global block, freed: cached globally */
  void *g1 = rn_cuda_alloc(1000);
  CHECK(g1 && mallocs == 1);
  rn_cuda_free(g1);

  /* capture: a same-size request does not take the global block */
  CHECK(rn_cuda_pool_begin(7) == 0);
  CHECK(rn_cuda_pool_current() == 7);
  CHECK(rn_cuda_pool_begin(8) < 0); /* one open pool at a time */
  void *p1 = rn_cuda_alloc(1000);
  CHECK(p1 && p1 != g1 && mallocs == 2);
  CHECK(malloc_mode_relaxed); /* cudaMalloc ran under the relaxed mode */
  CHECK(mode == cudaStreamCaptureModeGlobal); /* and the mode was restored */
  rn_cuda_free(p1);
  void *p2 = rn_cuda_alloc(900); /* same rounded size: the pool's own block */
  CHECK(p2 == p1 && mallocs == 2);
  rn_cuda_free(p2);
  /* out of memory inside the capture: fails at once, no flush, no hook */
  int s0 = syncs, f0 = frees;
  fail_next_malloc = 1;
  CHECK(rn_cuda_alloc(5000) == NULL);
  CHECK(syncs == s0 && frees == f0 && hook_calls == 0);
  CHECK(strstr(rn_errmsg(), "out of memory") != NULL);
  rn_cuda_pool_end();
  CHECK(rn_cuda_pool_current() == 0);

  /* after the capture: the global block is reused, not the pool's */
  void *e1 = rn_cuda_alloc(1000);
  CHECK(e1 == g1);
  void *e2 = rn_cuda_alloc(1000);
  CHECK(e2 != p1 && mallocs == 3);
  rn_cuda_free(e1);
  rn_cuda_free(e2);
  /* a flush frees the global blocks and keeps the pool's */
  f0 = frees;
  CHECK(rn_cuda_empty_cache() == 0);
  CHECK(frees == f0 + 2);
  rn_cuda_mem_stats st;
  rn_cuda_memory_stats(&st);
  CHECK(st.cached_blocks == 1); /* p1, the pool's */
  /* release: the pool's block is global again and serves the next request */
  rn_cuda_pool_release(7);
  void *r1 = rn_cuda_alloc(1000);
  CHECK(r1 == p1);
  /* a pool block still live at release goes global when freed */
  CHECK(rn_cuda_pool_begin(9) == 0);
  void *q = rn_cuda_alloc(3000);
  rn_cuda_pool_end();
  rn_cuda_pool_release(9);
  rn_cuda_free(q);
  void *q2 = rn_cuda_alloc(3000);
  CHECK(q2 == q);
  rn_cuda_free(q2);
  rn_cuda_free(r1);
  f0 = frees;
  CHECK(rn_cuda_empty_cache() == 0);
  CHECK(frees == f0 + 2);
  /* outside a capture an out-of-memory flushes and calls the hook, as before */
  fail_next_malloc = 1;
  void *o = rn_cuda_alloc(100);
  CHECK(o != NULL && hook_calls == 1);
  rn_cuda_free(o);
  rn_cuda_empty_cache();
  if (failed) return 1;
  printf("ok %d checks\n", checks);
  return 0;
}
