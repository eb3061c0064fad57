/* dist.c - rn.distributed's collectives over MPI with rnlua's own timeout
 * (see dist.h). Every collective is a nonblocking MPI call polled with
 * MPI_Test until done or until the timeout, because a blocking MPI call
 * waits forever for a peer that took another code path (measured:
 * doc/distributed.md). CUDA tensors go over NCCL with the nccl backend
 * (core/cuda/nccl.c), else through a host copy.
 * A process started without a launcher is a world of one (backend "self",
 * or "nccl" when asked): MPI is not initialized at all and the collectives
 * are the identity, so a single process needs no orted (RN_DIST_SOLO=0
 * forces the MPI singleton).
 * Compiled in every build; without RN_WITH_MPI (mk/mpi.mk) init fails.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"

#ifdef RN_WITH_MPI
#include <mpi.h>
#endif

void rn_cpu_set_threads(int n); /* core/cpu/backend.c */

static struct {
  bool init, broken, nccl;
  bool solo; /* a world of one process started without a launcher: no MPI at all */
  int rank, world, local_rank, local_size;
  double timeout;
  int64_t step;
  double comm_s;
  char backend[8];
} D = { .timeout = 600, .world = 1, .local_size = 1 };

bool rn_dist_compiled(void) {
#ifdef RN_WITH_MPI
  return getenv("RN_DIST_TEST_NOMPI") == NULL; /* test hook: act as a build without MPI */
#else
  return false;
#endif
}

int rn_dist_launcher_size(const char **var) {
  static const char *const names[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS", NULL };
  for (int i = 0; names[i]; i++) {
    const char *v = getenv(names[i]);
    if (v && atoi(v) > 0) { if (var) *var = names[i]; return atoi(v); }
  }
  const char *v = getenv("SLURM_NTASKS"); /* srun sets SLURM_PROCID; a batch script alone does not */
  if (v && getenv("SLURM_PROCID") && atoi(v) > 0) { if (var) *var = "SLURM_NTASKS"; return atoi(v); }
  if (getenv("PMIX_RANK")) { if (var) *var = "PMIX_RANK"; return 2; } /* size unknown: > 1 */
  if (var) *var = NULL;
  return 1;
}

bool rn_dist_initialized(void) { return D.init; }
int rn_dist_rank(void) { return D.rank; }
int rn_dist_world(void) { return D.world; }
int rn_dist_local_rank(void) { return D.local_rank; }
int rn_dist_local_size(void) { return D.local_size; }
const char *rn_dist_backend(void) { return D.init ? D.backend : NULL; }
double rn_dist_timeout(void) { return D.timeout; }
void rn_dist_set_timeout(double s) { if (s > 0) D.timeout = s; }
void rn_dist_set_step(int64_t step) { D.step = step; }
int64_t rn_dist_step(void) { return D.step; }
double rn_dist_comm_seconds(void) { return D.comm_s; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int need_init(const char *what) {
  if (!D.init)
    return rn_err("%s: rn.distributed is not initialized (call rn.distributed.init{} first)", what);
  if (D.broken)
    return rn_err("%s: rank %d: an earlier collective failed or timed out; the job cannot go on", what,
                  D.rank);
  return 0;
}

/* Threads per rank: the cores this process may use, shared by the ranks on
 * this machine, unless OMP_NUM_THREADS says otherwise. */
static void size_threads(void) {
  if (getenv("OMP_NUM_THREADS")) return;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  cpu_set_t set;
  int mine = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
  int n = (int)(online / (D.local_size > 0 ? D.local_size : 1));
  if (mine < n) n = mine;
  rn_cpu_set_threads(n < 1 ? 1 : n);
}

#ifdef RN_WITH_MPI
int rn_nccl_init(int rank, int world, int local_rank, void *id, int (*bcast)(void *id, int n));
void rn_nccl_finalize(bool abort);

static MPI_Comm comm = MPI_COMM_NULL;

static int mpi_fail(int rc, const char *what) {
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  s[0] = 0;
  MPI_Error_string(rc, s, &n);
  D.broken = true;
  return rn_err("%s: rank %d: MPI error: %s", what, D.rank, s);
}

/* Polls a request until done or the timeout. */
static int wait_req(MPI_Request *req, const char *what) {
  double t0 = now_s();
  int done = 0;
  for (long spin = 0;; spin++) {
    int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what);
    if (done) break;
    double t = now_s() - t0;
    if (t > D.timeout) {
      D.broken = true;
      return rn_err("rank %d: %s at step %lld waited %.0f s; a peer died or took another code path "
                    "(the collective timeout: rn.distributed.init{timeout = s})",
                    D.rank, what, (long long)D.step, D.timeout);
    }
    if (spin > 200) { /* give the core to the peer on an oversubscribed machine */
      struct timespec ts = { 0, t < 0.01 ? 20000 : 200000 };
      nanosleep(&ts, NULL);
    }
  }
  D.comm_s += now_s() - t0;
  return 0;
}

#ifdef RN_WITH_CUDA
static int bcast_id(void *id, int n) {
  if (D.solo) return 0; /* rank 0 is the only rank: it made the id */
  MPI_Request r;
  int rc = MPI_Ibcast(id, n, MPI_BYTE, 0, comm, &r);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "nccl init: broadcast of the unique id");
  return wait_req(&r, "nccl init: broadcast of the unique id");
}
#endif

int rn_dist_init(const char *backend, double timeout_s) {
  if (backend && strcmp(backend, "mpi") && strcmp(backend, "nccl"))
    return rn_err("distributed.init: backend \"%s\" is not one of \"mpi\", \"nccl\" (or nil: auto)", backend);
  if (timeout_s > 0) D.timeout = timeout_s;
  if (D.init) {
    if (backend && strcmp(backend, D.backend))
      return rn_err("distributed.init: already initialized with backend \"%s\"", D.backend);
    return 0;
  }
  if (!rn_dist_compiled())
    return rn_err("distributed.init: this rnlua was built without MPI (install libopenmpi-dev, "
                  "then make; NOMPI=1 skips it)");
  /* No launcher (mpirun/srun) in the environment: a world of one process,
   * without MPI_Init (an Open MPI singleton needs orted on the PATH and
   * aborts the process when it is missing). RN_DIST_SOLO=0 forces MPI. */
  const char *sv = getenv("RN_DIST_SOLO");
  int flag = 0;
  MPI_Initialized(&flag);
  D.solo = !flag && rn_dist_launcher_size(NULL) == 1 && !(sv && strcmp(sv, "0") == 0);
  if (D.solo) {
    D.rank = D.local_rank = 0;
    D.world = D.local_size = 1;
  } else {
    if (!flag) {
      int provided;
      if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return rn_err("distributed.init: MPI_Init_thread failed");
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &D.rank);
    MPI_Comm_size(comm, &D.world);
    MPI_Comm local;
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, D.rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &D.local_rank);
    MPI_Comm_size(local, &D.local_size);
    MPI_Comm_free(&local);
  }
  D.init = true;
  D.broken = false;
  snprintf(D.backend, sizeof D.backend, D.solo ? "self" : "mpi");
  size_threads();
  bool want_nccl = backend && strcmp(backend, "nccl") == 0;
#ifdef RN_WITH_CUDA
  if (want_nccl || !backend) {
    /* every rank must agree on the backend: nccl only if it starts on all */
    char id[128];
    int ok = rn_nccl_init(D.rank, D.world, D.local_rank, id, bcast_id) == 0;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", ok ? "" : rn_errmsg());
    int all = ok;
    if (!D.solo && MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) all = 0;
    if (all) { D.nccl = true; snprintf(D.backend, sizeof D.backend, "nccl"); }
    else {
      if (ok) rn_nccl_finalize(false);
      if (want_nccl) {
        D.init = false;
        return rn_err("distributed.init: backend \"nccl\" failed on %s: %s", ok ? "another rank" : "this rank",
                      ok ? "see its message" : msg);
      }
      rn_clear_error();
    }
  }
#else
  if (want_nccl) {
    D.init = false;
    return rn_err("distributed.init: backend \"nccl\" needs a CUDA build of rnlua (this one has no CUDA)");
  }
#endif
  return 0;
}

static MPI_Datatype mpi_type(rn_dtype dt) {
  switch (dt) {
  case RN_F32: return MPI_FLOAT;
  case RN_F64: return MPI_DOUBLE;
  case RN_I32: return MPI_INT32_T;
  case RN_I64: return MPI_INT64_T;
  case RN_U8: return MPI_UINT8_T;
  default: return MPI_DATATYPE_NULL;
  }
}

/* All-gathers an int64 header (kind, dtype, ndim, shape..., extra) and
 * compares it with rank 0's: every rank sees the same result. */
#define HDR (4 + RN_MAXDIM)
static int check_across(const rn_tensor *t, int64_t extra, const char *what) {
  if (D.solo) return 0;
  int64_t h[HDR] = { 0 };
  h[0] = t->dtype;
  h[1] = t->ndim;
  h[2] = extra;
  for (int i = 0; i < t->ndim; i++) h[3 + i] = t->shape[i];
  int64_t *all = malloc(sizeof(int64_t) * HDR * (size_t)D.world);
  if (!all) return rn_err("%s: out of memory", what);
  MPI_Request r;
  int rc = MPI_Iallgather(h, HDR, MPI_INT64_T, all, HDR, MPI_INT64_T, comm, &r);
  if (rc != MPI_SUCCESS) { free(all); return mpi_fail(rc, what); }
  if (wait_req(&r, what) < 0) { free(all); return -1; }
  for (int q = 1; q < D.world; q++) {
    int64_t *a = all, *b = all + (size_t)q * HDR;
    if (memcmp(a, b, sizeof(int64_t) * HDR) == 0) continue;
    char sa[128], sb[128];
    rn_dims_str((int)a[1], a + 3, sa, sizeof sa);
    rn_dims_str((int)b[1], b + 3, sb, sizeof sb);
    rc = a[2] != b[2] ? rn_err("%s: rank %d passes %lld, rank 0 passes %lld (every rank must pass the same)",
                               what, q, (long long)b[2], (long long)a[2])
                      : rn_err("%s: rank %d has a %s tensor %s, rank 0 a %s tensor %s (every rank must pass the "
                               "same dtype and shape)", what, q, rn_dtype_name((rn_dtype)b[0]), sb,
                               rn_dtype_name((rn_dtype)a[0]), sa);
    free(all);
    return rc;
  }
  free(all);
  return 0;
}

int rn_dist_check_same(int64_t count, uint64_t hash, const char *what, const char *unit) {
  if (need_init(what) < 0) return -1;
  if (D.solo) return 0;
  int64_t h[2] = { count, (int64_t)hash }, *all = malloc(sizeof(int64_t) * 2 * (size_t)D.world);
  if (!all) return rn_err("%s: out of memory", what);
  MPI_Request r;
  int rc = MPI_Iallgather(h, 2, MPI_INT64_T, all, 2, MPI_INT64_T, comm, &r);
  if (rc != MPI_SUCCESS) { free(all); return mpi_fail(rc, what); }
  if (wait_req(&r, what) < 0) { free(all); return -1; }
  rc = 0;
  for (int q = 1; q < D.world && rc == 0; q++) {
    if (all[2 * q] != all[0])
      rc = rn_err("%s: rank %d has %lld %s, while rank 0 has %lld", what, q, (long long)all[2 * q], unit,
                  (long long)all[0]);
    else if (all[2 * q + 1] != all[1])
      rc = rn_err("%s: rank %d has the same number of %s as rank 0 (%lld) but different names or shapes",
                  what, q, unit, (long long)all[0]);
  }
  free(all);
  return rc;
}

int rn_dist_barrier(void) {
  if (need_init("barrier") < 0) return -1;
  if (D.solo) return 0;
  MPI_Request r;
  int rc = MPI_Ibarrier(comm, &r);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "barrier");
  return wait_req(&r, "barrier");
}

#ifdef RN_WITH_CUDA
int rn_nccl_allreduce(rn_tensor *t, rn_dist_op op, double timeout, const char *what);
int rn_nccl_broadcast(rn_tensor *t, int root, double timeout, const char *what);
int rn_nccl_all_gather(rn_tensor *src, rn_tensor *dst, double timeout, const char *what);

/* NCCL takes dense buffers: an in-place collective on a strided CUDA view
 * runs on a contiguous copy that is copied back (op: 0 allreduce, 1 broadcast) */
static int nccl_inplace(rn_tensor *t, int kind, int arg, const char *what) {
  rn_tensor *c = rn_contiguous(t);
  if (!c) return -1;
  int rc = kind == 0 ? rn_nccl_allreduce(c, (rn_dist_op)arg, D.timeout, what)
                     : rn_nccl_broadcast(c, arg, D.timeout, what);
  if (rc == 0 && c != t) rc = rn_copy_(t, c);
  rn_release(c);
  return rc;
}
#endif

/* Runs f on a host copy of a CUDA tensor (or on t itself), copying back when write. */
typedef int (*host_fn)(rn_tensor *h, const void *arg, const char *what);
static int on_host(rn_tensor *t, host_fn f, const void *arg, bool write, const char *what) {
  if (rn_device(t) == RN_CPU && rn_is_contiguous(t)) return f(t, arg, what);
  rn_tensor *h = rn_device(t) == RN_CPU ? rn_clone(t) : rn_to_device(t, RN_CPU);
  if (!h) return -1;
  rn_tensor *c = rn_contiguous(h);
  rn_release(h);
  if (!c) return -1;
  int rc = f(c, arg, what);
  if (rc == 0 && write) rc = rn_copy_(t, c);
  rn_release(c);
  return rc;
}

static int allreduce_host(rn_tensor *h, const void *arg, const char *what) {
  static const MPI_Op ops[] = { [RN_DIST_SUM] = MPI_SUM, [RN_DIST_MAX] = MPI_MAX, [RN_DIST_MIN] = MPI_MIN };
  MPI_Request r;
  int rc = MPI_Iallreduce(MPI_IN_PLACE, rn_ptr(h), (int)rn_numel(h), mpi_type(h->dtype),
                          ops[*(const rn_dist_op *)arg], comm, &r);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, what);
  return wait_req(&r, what);
}

int rn_dist_allreduce(rn_tensor *t, rn_dist_op op, const char *what, bool check) {
  if (need_init(what) < 0) return -1;
  if (mpi_type(t->dtype) == MPI_DATATYPE_NULL)
    return rn_err("%s: dtype %s is not supported (float32, float64, int32, int64, uint8)", what,
                  rn_dtype_name(t->dtype));
  if (rn_numel(t) > INT32_MAX) return rn_err("%s: %lld elements: more than 2^31-1", what, (long long)rn_numel(t));
  if (check && check_across(t, (int64_t)op, what) < 0) return -1;
#ifdef RN_WITH_CUDA
  if (D.nccl && rn_device(t) == RN_CUDA) {
    int rc = nccl_inplace(t, 0, (int)op, what);
    if (rc < 0) D.broken = true;
    return rc;
  }
#endif
  if (D.solo) return 0; /* the sum, max or min over one rank */
  return on_host(t, allreduce_host, &op, true, what);
}

static int broadcast_host(rn_tensor *h, const void *arg, const char *what) {
  MPI_Request r;
  size_t nb = (size_t)rn_numel(h) * rn_dtype_size(h->dtype);
  if (nb > INT32_MAX) return rn_err("%s: %zu bytes: more than 2^31-1", what, nb);
  int rc = MPI_Ibcast(rn_ptr(h), (int)nb, MPI_BYTE, *(const int *)arg, comm, &r);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, what);
  return wait_req(&r, what);
}

int rn_dist_broadcast(rn_tensor *t, int root, const char *what, bool check) {
  if (need_init(what) < 0) return -1;
  if (root < 0 || root >= D.world) return rn_err("%s: root %d outside 0..%d", what, root, D.world - 1);
  if (check && check_across(t, root, what) < 0) return -1;
#ifdef RN_WITH_CUDA
  if (D.nccl && rn_device(t) == RN_CUDA) {
    int rc = nccl_inplace(t, 1, root, what);
    if (rc < 0) D.broken = true;
    return rc;
  }
#endif
  if (D.solo) return 0;
  return on_host(t, broadcast_host, &root, true, what);
}

rn_tensor *rn_dist_all_gather(rn_tensor *t, const char *what) {
  if (need_init(what) < 0 || check_across(t, 0, what) < 0) return NULL;
  int64_t shape[RN_MAXDIM + 1];
  if (t->ndim + 1 > RN_MAXDIM) { rn_err("%s: %d dims: at most %d", what, t->ndim, RN_MAXDIM - 1); return NULL; }
  shape[0] = D.world;
  memcpy(shape + 1, t->shape, sizeof(int64_t) * (size_t)t->ndim);
#ifdef RN_WITH_CUDA
  if (D.nccl && rn_device(t) == RN_CUDA) {
    rn_tensor *out = rn_empty(t->ndim + 1, shape, t->dtype, RN_CUDA), *c = out ? rn_contiguous(t) : NULL;
    if (!c) { rn_release(out); return NULL; }
    int rc = rn_nccl_all_gather(c, out, D.timeout, what);
    rn_release(c);
    if (rc < 0) { D.broken = true; rn_release(out); return NULL; }
    return out;
  }
#endif
  rn_tensor *src = rn_device(t) == RN_CPU ? rn_contiguous(t) : rn_to_device(t, RN_CPU);
  if (!src) return NULL;
  rn_tensor *c = rn_contiguous(src);
  rn_release(src);
  if (!c) return NULL;
  rn_tensor *out = rn_empty(t->ndim + 1, shape, t->dtype, RN_CPU);
  size_t nb = (size_t)rn_numel(c) * rn_dtype_size(c->dtype);
  MPI_Request r;
  int rc = -1;
  if (out && D.solo) {
    memcpy(rn_ptr(out), rn_ptr(c), nb);
    rc = 0;
  } else if (out && nb <= INT32_MAX) {
    rc = MPI_Iallgather(rn_ptr(c), (int)nb, MPI_BYTE, rn_ptr(out), (int)nb, MPI_BYTE, comm, &r);
    rc = rc != MPI_SUCCESS ? mpi_fail(rc, what) : wait_req(&r, what);
  } else if (out) {
    rn_err("%s: %zu bytes per rank: more than 2^31-1", what, nb);
  }
  rn_release(c);
  if (rc < 0) { rn_release(out); return NULL; }
  if (rn_device(t) != RN_CPU) {
    rn_tensor *d = rn_to_device(out, rn_device(t));
    rn_release(out);
    return d;
  }
  return out;
}

int rn_dist_finalize(void) {
  if (!D.init) return 0;
#ifdef RN_WITH_CUDA
  if (D.nccl) rn_nccl_finalize(false);
#endif
  D.nccl = false;
  D.init = false;
  if (D.solo) { D.solo = false; return 0; }
  MPI_Comm_free(&comm);
  int flag = 0;
  MPI_Finalized(&flag);
  if (!flag) MPI_Finalize();
  return 0;
}

void rn_dist_abort(int code) {
  if (!D.init || D.world < 2) return;
  fflush(stdout);
  fflush(stderr);
#ifdef RN_WITH_CUDA
  if (D.nccl) rn_nccl_finalize(true);
#endif
  MPI_Abort(MPI_COMM_WORLD, code);
}

struct rn_dist_req { MPI_Request r; double t0; bool done; /* solo: nothing to wait for */ };

int rn_dist_iallreduce_f32(float *p, int64_t n, rn_dist_req **req) {
  if (need_init("allreduce") < 0) return -1;
  rn_dist_req *q = malloc(sizeof *q);
  if (!q) return rn_err("allreduce: out of memory");
  q->t0 = now_s();
  q->done = D.solo;
  if (D.solo) { *req = q; return 0; }
  int rc = MPI_Iallreduce(MPI_IN_PLACE, p, (int)n, MPI_FLOAT, MPI_SUM, comm, &q->r);
  if (rc != MPI_SUCCESS) { free(q); return mpi_fail(rc, "allreduce"); }
  *req = q;
  return 0;
}

int rn_dist_test(rn_dist_req *req, bool *done) {
  int d = 0;
  if (req->done) { *done = true; free(req); return 0; }
  int rc = MPI_Test(&req->r, &d, MPI_STATUS_IGNORE);
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "allreduce");
  *done = d != 0;
  if (d) free(req);
  return 0;
}

int rn_dist_wait(rn_dist_req *req, const char *what) {
  int rc = req->done ? 0 : wait_req(&req->r, what);
  free(req);
  return rc;
}

int rn_dist_allreduce_device_f32(rn_tensor *t, const char *what) {
  return rn_dist_allreduce(t, RN_DIST_SUM, what, false);
}

#else /* no MPI: init fails, every collective says "not initialized" */

int rn_dist_init(const char *backend, double timeout_s) {
  (void)backend; (void)timeout_s;
  (void)size_threads;
  return rn_err("distributed.init: this rnlua was built without MPI (install libopenmpi-dev, "
                "then make; NOMPI=1 skips it)");
}
int rn_dist_check_same(int64_t c, uint64_t h, const char *what, const char *u) {
  (void)c; (void)h; (void)u;
  return need_init(what);
}
int rn_dist_barrier(void) { return need_init("barrier"); }
int rn_dist_allreduce(rn_tensor *t, rn_dist_op op, const char *what, bool check) {
  (void)t; (void)op; (void)check;
  return need_init(what);
}
int rn_dist_broadcast(rn_tensor *t, int root, const char *what, bool check) {
  (void)t; (void)root; (void)check;
  return need_init(what);
}
rn_tensor *rn_dist_all_gather(rn_tensor *t, const char *what) {
  (void)t;
  need_init(what);
  return NULL;
}
int rn_dist_finalize(void) { return 0; }
void rn_dist_abort(int code) { (void)code; }
int rn_dist_iallreduce_f32(float *p, int64_t n, rn_dist_req **req) {
  (void)p; (void)n; (void)req;
  return need_init("allreduce");
}
int rn_dist_test(rn_dist_req *req, bool *done) { (void)req; *done = true; return 0; }
int rn_dist_wait(rn_dist_req *req, const char *what) { (void)req; return need_init(what); }
int rn_dist_allreduce_device_f32(rn_tensor *t, const char *what) { (void)t; return need_init(what); }

#endif
