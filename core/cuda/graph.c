/* graph.c (cuda) - whole-step CUDA graphs (issue 19): capture the work a
 * training step enqueues on the one stream, instantiate it once, replay it
 * per batch. lua/rn/graph.lua drives it (warm-up, capture, replay, fallback
 * to eager); this file only wraps the runtime.
 *
 *   begin: a graph pool in the caching allocator (alloc.c: every allocation
 *          of the capture comes from it and stays reserved while the graph
 *          lives), cudaStreamBeginCapture (thread-local mode; relaxed with
 *          $RN_CUDA_GRAPH_MODE=relaxed), and the capture guard
 *          (core/capture.h) that turns host reads into clear errors.
 *   end:   cudaStreamEndCapture + cudaGraphInstantiateWithFlags; on any
 *          failure the capture is discarded and the pool released.
 *   abort: ends and discards a capture after an error in the step.
 *   launch / destroy: cudaGraphLaunch on the stream; destroy frees the
 *          executable and the graph and returns the pool's blocks.
 * Verified on an H200 (2026-12-04: test_graph.lua's replays against eager,
 * and the +graph benchmarks in doc/perf.md).
 */
#include <stdlib.h>
#include <string.h>

#include "../capture.h"
#include "cuda.h"

struct rn_cuda_graph {
  cudaGraph_t g;
  cudaGraphExec_t exec;
  unsigned pool;
};

static unsigned next_pool = 1;
static unsigned capturing_pool;

int rn_cuda_capturing(void) { return capturing_pool != 0; }

int rn_cuda_graph_begin(void) {
  if (rn_cuda_init() < 0) return -1;
  if (capturing_pool) return rn_err("cuda graph: a capture is already in progress");
  unsigned id = next_pool++;
  if (!next_pool) next_pool = 1;
  if (rn_cuda_pool_begin(id) < 0) return -1;
  const char *m = getenv("RN_CUDA_GRAPH_MODE");
  enum cudaStreamCaptureMode mode = m && strcmp(m, "relaxed") == 0 ? cudaStreamCaptureModeRelaxed
                                                              : cudaStreamCaptureModeThreadLocal;
  if (CU(cudaStreamBeginCapture(rn_cuda_stream(), mode)) < 0) {
    rn_cuda_pool_end();
    rn_cuda_pool_release(id);
    return -1;
  }
  capturing_pool = id;
  rn_capture_set("cuda");
  return 0;
}

/* ends the capture: the graph, or NULL (discarded) */
static cudaGraph_t end_capture(int *rc) {
  cudaGraph_t g = NULL;
  rn_capture_set(NULL);
  rn_cuda_pool_end();
  *rc = CU(cudaStreamEndCapture(rn_cuda_stream(), &g));
  return g;
}

void rn_cuda_graph_abort(void) {
  if (!capturing_pool) return;
  unsigned id = capturing_pool;
  int rc;
  cudaGraph_t g = end_capture(&rc);
  if (g) (void)cudaGraphDestroy(g);
  (void)cudaGetLastError();
  capturing_pool = 0;
  rn_cuda_pool_release(id);
}

rn_cuda_graph *rn_cuda_graph_end(void) {
  if (!capturing_pool) {
    rn_err("cuda graph: no capture in progress");
    return NULL;
  }
  unsigned id = capturing_pool;
  int rc;
  cudaGraph_t g = end_capture(&rc);
  capturing_pool = 0;
  rn_cuda_graph *r = NULL;
  if (rc == 0 && g) {
    r = calloc(1, sizeof *r);
    if (!r) rn_err("cuda graph: out of host memory");
    else if (CU(cudaGraphInstantiateWithFlags(&r->exec, g, 0)) < 0) {
      free(r);
      r = NULL;
    }
  } else if (rc == 0) {
    rn_err("cuda graph: the capture produced no graph");
  }
  if (!r) {
    if (g) (void)cudaGraphDestroy(g);
    rn_cuda_pool_release(id);
    return NULL;
  }
  r->g = g;
  r->pool = id;
  return r;
}

int rn_cuda_graph_launch(rn_cuda_graph *g) {
  if (!g) return rn_err("cuda graph: destroyed");
  if (capturing_pool) return rn_err("cuda graph: cannot replay a graph inside a capture");
  rn_dnn_filter_cache_clear(); /* the replay changes weights behind their versions */
  return CU(cudaGraphLaunch(g->exec, rn_cuda_stream()));
}

void rn_cuda_graph_destroy(rn_cuda_graph *g) {
  if (!g) return;
  /* the replays must be done before the pool's blocks are reused */
  (void)cudaStreamSynchronize(rn_cuda_stream());
  (void)cudaGraphExecDestroy(g->exec);
  (void)cudaGraphDestroy(g->g);
  (void)cudaGetLastError();
  rn_cuda_pool_release(g->pool);
  free(g);
}
