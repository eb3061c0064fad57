/* nccl.c (cuda) - rn.distributed's collectives on CUDA tensors over NCCL,
 * which is found and dlopen'ed at run time (libnccl.so.2: the CUDA
 * toolkit's lib dir or NVIDIA's nvidia-nccl wheels, see dlib.c), so rnlua
 * neither links it nor needs nccl.h: the few declarations below are NCCL's
 * stable C ABI (nccl.h of NCCL 2.x).
 *
 * Bootstrap (core/dist/dist.c): each rank picks GPU local_rank (unless
 * RN_CUDA_DEVICE is set or CUDA already started), rank 0 makes the unique id,
 * MPI broadcasts it, every rank calls ncclCommInitRank. Collectives run on
 * rnlua's one compute stream, so they are ordered with the kernels around
 * them; completion is polled (cudaEventQuery + ncclCommGetAsyncError) so
 * that rnlua's collective timeout applies: past it the communicator is
 * aborted (ncclCommAbort) and the call fails naming the collective.
 * Status: ran at world size 1 on an H200 (2026-12-04, tests/dist/nccl_check.lua);
 * not yet on a machine with two GPUs (see doc/distributed.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../dist/dist.h"
#include "cuda.h"

typedef struct { char internal[128]; } nccl_id;
typedef void *nccl_comm;
enum { NCCL_OK = 0, NCCL_IN_PROGRESS = 7 };
enum { NCCL_U8 = 1, NCCL_I32 = 2, NCCL_I64 = 4, NCCL_F16 = 6, NCCL_F32 = 7, NCCL_F64 = 8, NCCL_BF16 = 9 };
enum { NCCL_SUM = 0, NCCL_MAX = 2, NCCL_MIN = 3 };

static struct {
  void *lib;
  char path[512];
  int (*get_unique_id)(nccl_id *);
  int (*comm_init_rank)(nccl_comm *, int, nccl_id, int);
  int (*all_reduce)(const void *, void *, size_t, int, int, nccl_comm, cudaStream_t);
  int (*broadcast)(const void *, void *, size_t, int, int, nccl_comm, cudaStream_t);
  int (*all_gather)(const void *, void *, size_t, int, nccl_comm, cudaStream_t);
  int (*async_error)(nccl_comm, int *);
  int (*comm_abort)(nccl_comm);
  int (*comm_destroy)(nccl_comm);
  const char *(*error_string)(int);
  nccl_comm comm;
  cudaEvent_t ev;
} N;

static int load(void) {
  if (N.lib) return 0;
  static const char *const names[] = { "libnccl.so.2", "libnccl.so", NULL };
  static const char *const deps[] = { NULL };
  void *lib = rn_dlib_open("NCCL", names, deps, N.path, sizeof N.path);
  if (!lib) return -1;
#define SYM(f, s) if (!(*(void **)&N.f = rn_dlib_sym(lib, "NCCL", s))) return -1
  SYM(get_unique_id, "ncclGetUniqueId");
  SYM(comm_init_rank, "ncclCommInitRank");
  SYM(all_reduce, "ncclAllReduce");
  SYM(broadcast, "ncclBroadcast");
  SYM(all_gather, "ncclAllGather");
  SYM(async_error, "ncclCommGetAsyncError");
  SYM(comm_abort, "ncclCommAbort");
  SYM(comm_destroy, "ncclCommDestroy");
  SYM(error_string, "ncclGetErrorString");
#undef SYM
  N.lib = lib;
  return 0;
}

static int nccl_fail(int rc, const char *what) {
  return rn_err("%s: NCCL error %d: %s", what, rc, N.error_string ? N.error_string(rc) : "?");
}

int rn_nccl_init(int rank, int world, int local_rank, void *id, int (*bcast)(void *id, int n)) {
  if (!rn_cuda_ready() && !getenv("RN_CUDA_DEVICE")) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1)
      return rn_err("nccl: no CUDA device available");
    char d[16];
    snprintf(d, sizeof d, "%d", local_rank % count);
    setenv("RN_CUDA_DEVICE", d, 1);
  }
  if (rn_cuda_init() < 0 || load() < 0) return -1;
  /* rank 0 makes the id; a failure there still joins the broadcast */
  memset(id, 0, sizeof(nccl_id));
  int rc = rank == 0 ? N.get_unique_id((nccl_id *)id) : NCCL_OK;
  if (bcast(id, (int)sizeof(nccl_id)) < 0) return -1;
  if (rc != NCCL_OK) return nccl_fail(rc, "nccl: ncclGetUniqueId");
  nccl_id uid;
  memcpy(&uid, id, sizeof uid);
  rc = N.comm_init_rank(&N.comm, world, uid, rank);
  if (rc != NCCL_OK) { N.comm = NULL; return nccl_fail(rc, "nccl: ncclCommInitRank"); }
  if (CU(cudaEventCreateWithFlags(&N.ev, cudaEventDisableTiming)) < 0) return -1;
  return 0;
}

void rn_nccl_finalize(bool abort) {
  if (N.comm) {
    if (abort) N.comm_abort(N.comm);
    else N.comm_destroy(N.comm);
  }
  N.comm = NULL;
  if (N.ev) cudaEventDestroy(N.ev);
  N.ev = NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Waits for the collective just queued on the stream, within the timeout. */
static int wait_done(double timeout, const char *what) {
  if (CU(cudaEventRecord(N.ev, rn_cuda_stream())) < 0) return -1;
  double t0 = now_s();
  for (;;) {
    cudaError_t e = cudaEventQuery(N.ev);
    if (e == cudaSuccess) return 0;
    if (e != cudaErrorNotReady) return CU(e);
    int ae = NCCL_OK;
    N.async_error(N.comm, &ae);
    if (ae != NCCL_OK && ae != NCCL_IN_PROGRESS) { N.comm_abort(N.comm); N.comm = NULL; return nccl_fail(ae, what); }
    if (now_s() - t0 > timeout) {
      N.comm_abort(N.comm);
      N.comm = NULL;
      return rn_err("rank %d: %s (nccl) at step %lld waited %.0f s; a peer died or took another code path "
                    "(the collective timeout: rn.distributed.init{timeout = s})",
                    rn_dist_rank(), what, (long long)rn_dist_step(), timeout);
    }
    struct timespec ts = { 0, 50000 };
    nanosleep(&ts, NULL);
  }
}

static int dtype_of(rn_dtype dt) {
  switch (dt) {
  case RN_F32: return NCCL_F32;
  case RN_F64: return NCCL_F64;
  case RN_I32: return NCCL_I32;
  case RN_I64: return NCCL_I64;
  case RN_U8: return NCCL_U8;
  case RN_F16: return NCCL_F16;
  case RN_BF16: return NCCL_BF16;
  default: return -1;
  }
}

static int ready(rn_tensor *t, const char *what) {
  if (!N.comm) return rn_err("%s: the NCCL communicator is gone (an earlier collective failed)", what);
  if (!rn_is_contiguous(t)) return rn_err("%s: the tensor must be contiguous for NCCL", what);
  if (dtype_of(t->dtype) < 0) return rn_err("%s: dtype %s is not supported by NCCL", what, rn_dtype_name(t->dtype));
  return 0;
}

int rn_nccl_allreduce(rn_tensor *t, rn_dist_op op, double timeout, const char *what) {
  if (ready(t, what) < 0) return -1;
  static const int ops[] = { [RN_DIST_SUM] = NCCL_SUM, [RN_DIST_MAX] = NCCL_MAX, [RN_DIST_MIN] = NCCL_MIN };
  int rc = N.all_reduce(rn_ptr(t), rn_ptr(t), (size_t)rn_numel(t), dtype_of(t->dtype), ops[op], N.comm,
                        rn_cuda_stream());
  if (rc != NCCL_OK) return nccl_fail(rc, what);
  return wait_done(timeout, what);
}

int rn_nccl_broadcast(rn_tensor *t, int root, double timeout, const char *what) {
  if (ready(t, what) < 0) return -1;
  int rc = N.broadcast(rn_ptr(t), rn_ptr(t), (size_t)rn_numel(t), dtype_of(t->dtype), root, N.comm,
                       rn_cuda_stream());
  if (rc != NCCL_OK) return nccl_fail(rc, what);
  return wait_done(timeout, what);
}

int rn_nccl_all_gather(rn_tensor *src, rn_tensor *dst, double timeout, const char *what) {
  if (ready(src, what) < 0 || ready(dst, what) < 0) return -1;
  int rc = N.all_gather(rn_ptr(src), rn_ptr(dst), (size_t)rn_numel(src), dtype_of(src->dtype), N.comm,
                        rn_cuda_stream());
  if (rc != NCCL_OK) return nccl_fail(rc, what);
  return wait_done(timeout, what);
}
