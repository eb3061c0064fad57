/* evprof.c (cuda) - per-region GPU time with CUDA events, for model:profile
 * on the GPU (issue 19; lua/rn/profile.lua). Between begin and end every
 * mark(scope) records an event on the stream; at end the device is
 * synchronized and the time between consecutive events is added to the
 * scope of the earlier mark. The times are the device's, not the host's:
 * the span from the region's first to its last event on the stream, which
 * includes the device's idle gaps inside the region when the host launches
 * slower than the device runs. The reverse pass marks each autograd node
 * through rn_profile_mark_hook (core/autograd.c), with scope +
 * RN_EVPROF_BWD. Run on an H200 (2026-12-04: test_profile.lua, scripts/profile_arch.lua).
 */
#include <stdlib.h>

#include "../autograd.h"
#include "cuda.h"

typedef struct {
  cudaEvent_t ev;
  int scope;
} mark;

static mark *marks;
static int nmarks, cap, on;
static cudaEvent_t *pool; /* events kept between runs */
static int npool;

static void hook(int scope) { (void)rn_cuda_evprof_mark(scope + RN_EVPROF_BWD); }

int rn_cuda_evprof_begin(void) {
  if (rn_cuda_init() < 0) return -1;
  if (on) return rn_err("profile: GPU event profiling is already on");
  nmarks = 0;
  on = 1;
  rn_profile_mark_hook = hook;
  return 0;
}

int rn_cuda_evprof_mark(int scope) {
  if (!on) return 0;
  if (nmarks == cap) {
    int nc = cap ? cap * 2 : 1024;
    mark *m = realloc(marks, sizeof *m * (size_t)nc);
    cudaEvent_t *p = realloc(pool, sizeof *p * (size_t)nc);
    if (p) pool = p;
    if (!m || !p) {
      if (m) marks = m;
      return rn_err("profile: out of memory for %d events", nc);
    }
    marks = m;
    cap = nc;
  }
  if (nmarks >= npool) {
    if (CU(cudaEventCreate(&pool[npool])) < 0) return -1;
    npool++;
  }
  marks[nmarks].ev = pool[nmarks];
  marks[nmarks].scope = scope;
  if (CU(cudaEventRecord(marks[nmarks].ev, rn_cuda_stream())) < 0) return -1;
  nmarks++;
  return 0;
}

/* Stops; calls add(ctx, scope, seconds) for every interval, and returns the
 * span from the first to the last mark in *span_s. */
int rn_cuda_evprof_end(void (*add)(void *ctx, int scope, double s), void *ctx, double *span_s) {
  *span_s = 0;
  if (!on) return rn_err("profile: GPU event profiling is not on");
  on = 0;
  rn_profile_mark_hook = NULL;
  if (nmarks == 0) return 0;
  if (CU(cudaEventSynchronize(marks[nmarks - 1].ev)) < 0) return -1;
  for (int i = 0; i + 1 < nmarks; i++) {
    float ms = 0;
    if (CU(cudaEventElapsedTime(&ms, marks[i].ev, marks[i + 1].ev)) < 0) return -1;
    add(ctx, marks[i].scope, ms * 1e-3);
    *span_s += ms * 1e-3;
  }
  return 0;
}
