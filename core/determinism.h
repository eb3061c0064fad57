/* determinism.h - deterministic mode and the convolution algorithm overrides
 * (core/determinism.c).
 *
 * Deterministic mode (rn_set_deterministic, declared in rn.h) asks every
 * backend for bitwise-reproducible results: the same inputs on the same
 * device and build give the same bits, run after run. The CPU kernels always
 * are (fixed loop orders, static OpenMP schedules); the CUDA kernels of
 * kernels/ (*.cu) too (no floating-point atomics, fixed-order reductions whose
 * grids depend on the shapes only); what the mode changes is cuDNN's
 * algorithm choice (core/cuda/cudnn.c), which then takes deterministic
 * algorithms only.
 *
 * The overrides force one cuDNN algorithm per convolution kind, by the name
 * of its cuDNN enum suffix ("IMPLICIT_GEMM", "ALGO_1", "WINOGRAD_NONFUSED");
 * "auto" (-1) lets the heuristics choose. Names and the determinism facts are
 * kept here, without cudnn.h, so that they are checked on any host (the enum
 * values are checked against cudnn.h in cudnn.c). Plain globals: set and
 * read from the Lua thread only.
 */
#ifndef RN_DETERMINISM_H
#define RN_DETERMINISM_H

#include <stdbool.h>

#include "rn.h"

typedef enum { RN_CONV_FWD = 0, RN_CONV_BWD_DATA, RN_CONV_BWD_FILTER, RN_CONV_NKINDS } rn_conv_kind;

/* "fwd", "bwd_data", "bwd_filter" (the option names of rn.cuda.set_conv_algo) */
const char *rn_conv_kind_name(rn_conv_kind k);
/* The number of algorithms of kind k (cuDNN's *_ALGO_COUNT) and the name of
 * one (the enum suffix), or NULL outside 0..count-1. */
int rn_conv_algo_count(rn_conv_kind k);
const char *rn_conv_algo_name(rn_conv_kind k, int algo);
/* False for the algorithms cuDNN documents as non-deterministic: backward
 * data ALGO_0, backward filter ALGO_0 and ALGO_3. */
bool rn_conv_algo_deterministic(rn_conv_kind k, int algo);
/* The algorithm forced for kind k, or -1 (auto). */
int rn_conv_algo_forced(rn_conv_kind k);
/* Sets the overrides; names[k] NULL leaves kind k as it is, "auto" clears
 * it. All names are checked before any is set: an unknown name (the error
 * lists the valid ones) or, in deterministic mode, a non-deterministic
 * algorithm (the error names the deterministic alternatives) is -1 + rn_err
 * and changes nothing. */
int rn_set_conv_algos(const char *const names[RN_CONV_NKINDS]);

#endif
