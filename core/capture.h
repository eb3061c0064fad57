/* capture.h - the step-capture guard (issue 19, whole-step CUDA graphs):
 * while a training step is being captured (the CUDA graph capture of
 * core/cuda/graph.c, or the CPU mock of lua/rn/graph.lua), host reads and
 * synchronizing calls are refused with a clear error, so that the capture
 * falls back to eager instead of failing inside the driver or baking a
 * stale value into the graph. */
#ifndef RN_CAPTURE_H
#define RN_CAPTURE_H

/* kind: "cuda", "mock", or NULL (no capture). */
void rn_capture_set(const char *kind);
const char *rn_capture_kind(void);
/* 0 outside a capture; inside one, -1 after rn_err("<what> inside a
 * captured step ..."). */
int rn_capture_forbid(const char *what);

#endif
