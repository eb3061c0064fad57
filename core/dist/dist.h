/* dist.h - data-parallel training across processes: collectives over MPI
 * (CPU tensors, bootstrap; linked at build time when mpicc is found, see
 * mk/mpi.mk) and NCCL (CUDA tensors; dlopen'ed at run time,
 * core/cuda/nccl.c), each with rnlua's own timeout; and the gradient reducer
 * that averages gradients in fixed-order buckets fired from the autograd
 * engine's grad-ready hooks (reducer.c).
 *
 * Every collective here is checked and bounded:
 * - before rn_dist_init: an error naming the call;
 * - shapes/dtypes differ across ranks: every rank gets the same error naming
 *   both ranks' tensors (a header is all-gathered first), no hang;
 * - a peer that died or took another code path: the wait gives up after the
 *   timeout (rn_dist_init's, default 600 s) with "rank R: WHAT waited N s; a
 *   peer died or took another code path"; the job is then broken (later
 *   collectives fail at once) and rnlua's main() aborts the whole job.
 * Built without MPI (NOMPI=1, or no mpicc), rn_dist_init fails clearly and
 * everything else reports "not initialized".
 * Errors: -1 / NULL after rn_err(), as everywhere in the core.
 */
#ifndef RN_DIST_H
#define RN_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "../rn.h"

typedef enum { RN_DIST_SUM = 0, RN_DIST_MAX, RN_DIST_MIN } rn_dist_op;

bool rn_dist_compiled(void);          /* MPI built in */
/* Launcher's world size from the environment (OMPI_COMM_WORLD_SIZE,
 * PMI_SIZE, SLURM_STEP_NUM_TASKS or SLURM_NTASKS under srun), 1 when none;
 * *var gets the variable's name. */
int rn_dist_launcher_size(const char **var);

/* backend: "mpi", "nccl" (MPI for CPU tensors and bootstrap, NCCL for CUDA
 * tensors) or NULL (auto: nccl when CUDA is usable and libnccl loads, else
 * mpi). timeout_s > 0. Idempotent with the same backend. */
int rn_dist_init(const char *backend, double timeout_s);
bool rn_dist_initialized(void);
int rn_dist_rank(void);
int rn_dist_world(void);
int rn_dist_local_rank(void);
int rn_dist_local_size(void);
const char *rn_dist_backend(void);
double rn_dist_timeout(void);
void rn_dist_set_timeout(double s);
/* The step number put in timeout messages (the reducer and fit set it). */
void rn_dist_set_step(int64_t step);
int64_t rn_dist_step(void);
/* Seconds spent inside collectives since init (all of them). */
double rn_dist_comm_seconds(void);

int rn_dist_barrier(void);
/* In place on t (any device; CPU tensors over MPI, CUDA ones over NCCL with
 * the nccl backend, else staged through the host). what names the call in
 * messages; check: verify dtype/shape across ranks first. */
int rn_dist_allreduce(rn_tensor *t, rn_dist_op op, const char *what, bool check);
int rn_dist_broadcast(rn_tensor *t, int root, const char *what, bool check);
/* (W, ...t's shape): every rank's t, in rank order. */
rn_tensor *rn_dist_all_gather(rn_tensor *t, const char *what);
/* Verifies that every rank passes the same (count, hash) (e.g. of parameter
 * names and shapes): on a mismatch every rank fails with "what: rank R has
 * N ..., rank 0 has M ...". */
int rn_dist_check_same(int64_t count, uint64_t hash, const char *what, const char *unit);
int rn_dist_finalize(void);
/* After a Lua error on one rank: flushes and ends the whole job
 * (MPI_Abort) when initialized with more than one rank; returns otherwise. */
void rn_dist_abort(int code);

/* ---- raw float32 buffers, for the reducer (the caller checked layouts) --- */
typedef struct rn_dist_req rn_dist_req;
/* Starts a SUM allreduce of n floats at p (host memory); *req to wait on. */
int rn_dist_iallreduce_f32(float *p, int64_t n, rn_dist_req **req);
/* Progress: *done set when finished (req freed then). */
int rn_dist_test(rn_dist_req *req, bool *done);
/* Waits with the timeout; frees req either way. what names it in messages. */
int rn_dist_wait(rn_dist_req *req, const char *what);
/* Blocking SUM allreduce of a CUDA float32 buffer (NCCL, or host staging). */
int rn_dist_allreduce_device_f32(rn_tensor *t, const char *what);

/* y = the sum of x over ranks, differentiable (its backward sums the output
 * gradient over ranks): synchronized batch norm's statistics (dist_ad.c). */
rn_tensor *rn_dist_allreduce_sum_ad(rn_tensor *x);

/* ---- the gradient reducer (reducer.c) ------------------------------------ */
typedef struct rn_reducer rn_reducer;
typedef struct {
  double comm_s;      /* seconds in collectives of this reducer (launch + waits) */
  double wait_s;      /* of which waiting in rn_reducer_finish (not overlapped) */
  double backward_s;  /* from begin to finish (the reverse pass inside) */
  int64_t steps, bytes;
  int nbuckets;
} rn_reducer_stats;
/* params: float32 leaves, all on one device, in the order gradients become
 * ready (reverse of model:parameters()); bucket caps in bytes (first bucket
 * first_bytes, then cap_bytes). overlap: launch each bucket from the hooks
 * as soon as it and the buckets before it are ready (else all at finish). */
rn_reducer *rn_reducer_new(int n, rn_tensor *const *params, int64_t first_bytes, int64_t cap_bytes,
                           bool overlap);
void rn_reducer_free(rn_reducer *r);
/* Arms the grad-ready hooks for the next reverse pass (step: for messages). */
int rn_reducer_begin(rn_reducer *r, int64_t step);
/* Waits for every bucket (launching those not yet launched, in bucket
 * order), writes the summed gradients back, leaves .grad nil on parameters
 * no rank used, and disarms the hooks. Call once per begin, on every rank,
 * with or without a reverse pass in between. */
int rn_reducer_finish(rn_reducer *r);
int rn_reducer_nbuckets(const rn_reducer *r);
void rn_reducer_stats_get(const rn_reducer *r, rn_reducer_stats *s);

#endif
