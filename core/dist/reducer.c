/* reducer.c - the data-parallel gradient reducer (dist.h): gradients summed
 * across ranks in fixed-order buckets, fired from the autograd engine's
 * grad-ready hooks (autograd.h), as PyTorch DDP's Reducer does.
 *
 * Layout (fixed at creation, identical on every rank: the caller verified
 * the parameter names and shapes across ranks first):
 *   params p[0..n) in the order their gradients become ready (reverse of
 *   model:parameters()); bucket k holds a contiguous run of them, at most
 *   first_bytes for bucket 0 and cap_bytes after (a larger parameter gets a
 *   bucket of its own); buf_k: float32 (numel_k) on the params' device.
 * One step: begin arms the hooks; the reverse pass's begin hook marks the
 * parameters it cannot reach as ready at once (no gradient here); ready(p)
 * copies p.grad (or zeros) into its slice; when bucket k and every bucket
 * before it are complete it is launched (MPI_Iallreduce; bucket order, never
 * ready order, so that every rank issues the same collectives in the same
 * order), and MPI_Test on the launched ones lets MPI progress them while the
 * reverse pass goes on. finish launches what is left, waits for each bucket
 * in order (with the collective timeout naming bucket and step), and writes
 * the sums back to p.grad. A parameter that no rank used (a flag per
 * parameter, MAX-reduced) keeps grad nil, as in one process.
 * CUDA parameters: each bucket is reduced at finish (NCCL on the compute
 * stream, or through the host over MPI): no overlap yet.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../autograd.h"
#include "dist.h"

typedef struct {
  int first, count;   /* params [first, first+count) */
  int64_t numel;
  rn_tensor *buf;     /* (numel) float32 on the params' device */
  int pending;        /* params not yet ready this step */
  rn_dist_req *req;   /* in flight, or NULL */
  bool launched, done;
} bucket;

struct rn_reducer {
  int n, nb;
  rn_tensor **p;      /* [n] retained */
  int *bk;            /* [n] bucket of p[i] */
  int64_t *off;       /* [n] offset in its bucket */
  rn_tensor **view;   /* [n] p[i]-shaped view of its slice */
  bool *ready;        /* [n] this step */
  int32_t *used;      /* [n] had a gradient on this rank */
  bucket *b;
  int next_launch;
  bool armed, overlap, cuda;
  int64_t step;
  double t_begin;
  rn_reducer_stats st;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void rn_reducer_free(rn_reducer *r) {
  if (!r) return;
  if (r->armed) rn_set_grad_hooks(NULL);
  for (int i = 0; i < r->n; i++) { rn_release(r->p ? r->p[i] : NULL); rn_release(r->view ? r->view[i] : NULL); }
  for (int k = 0; r->b && k < r->nb; k++) {
    if (r->b[k].req) rn_dist_wait(r->b[k].req, "allreduce"); /* not left dangling */
    rn_release(r->b[k].buf);
  }
  free(r->p); free(r->bk); free(r->off); free(r->view); free(r->ready); free(r->used); free(r->b);
  free(r);
}

rn_reducer *rn_reducer_new(int n, rn_tensor *const *params, int64_t first_bytes, int64_t cap_bytes,
                           bool overlap) {
  if (n < 1) { rn_err("DataParallel: no parameters to reduce"); return NULL; }
  for (int i = 0; i < n; i++) {
    if (params[i]->dtype != RN_F32 || !params[i]->requires_grad) {
      rn_err("DataParallel: parameter %d is %s%s; the reducer takes float32 parameters that require grad",
             i + 1, rn_dtype_name(params[i]->dtype), params[i]->requires_grad ? "" : " without requires_grad");
      return NULL;
    }
    if (rn_device(params[i]) != rn_device(params[0])) {
      rn_err("DataParallel: parameter %d is on %s, parameter 1 on %s (one device per rank)", i + 1,
             rn_device_name(rn_device(params[i])), rn_device_name(rn_device(params[0])));
      return NULL;
    }
  }
  rn_reducer *r = calloc(1, sizeof *r);
  if (!r) { rn_err("DataParallel: out of memory"); return NULL; }
  r->n = n;
  r->overlap = overlap;
  r->cuda = rn_device(params[0]) != RN_CPU;
  r->p = calloc((size_t)n, sizeof *r->p);
  r->bk = calloc((size_t)n, sizeof *r->bk);
  r->off = calloc((size_t)n, sizeof *r->off);
  r->view = calloc((size_t)n, sizeof *r->view);
  r->ready = calloc((size_t)n, sizeof *r->ready);
  r->used = calloc((size_t)n, sizeof *r->used);
  r->b = calloc((size_t)n, sizeof *r->b);
  if (!r->p || !r->bk || !r->off || !r->view || !r->ready || !r->used || !r->b) {
    rn_reducer_free(r);
    rn_err("DataParallel: out of memory");
    return NULL;
  }
  /* buckets in the given order */
  int64_t cap = first_bytes;
  for (int i = 0; i < n; i++) {
    rn_retain(params[i]);
    r->p[i] = params[i];
    int64_t bytes = rn_numel(params[i]) * 4;
    bucket *cur = r->nb ? &r->b[r->nb - 1] : NULL;
    if (!cur || (cur->numel > 0 && cur->numel * 4 + bytes > cap)) {
      if (cur) cap = cap_bytes;
      cur = &r->b[r->nb++];
      cur->first = i;
    }
    r->bk[i] = r->nb - 1;
    r->off[i] = cur->numel;
    cur->numel += rn_numel(params[i]);
    cur->count++;
  }
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  for (int k = 0; k < r->nb; k++) {
    r->b[k].buf = rn_zeros(1, &r->b[k].numel, RN_F32, rn_device(params[0]));
    if (!r->b[k].buf) { rn_set_grad_enabled(g); rn_reducer_free(r); return NULL; }
  }
  for (int i = 0; i < n; i++) {
    rn_tensor *s = rn_narrow(r->b[r->bk[i]].buf, 0, r->off[i], rn_numel(params[i]));
    r->view[i] = s ? rn_reshape(s, params[i]->ndim, params[i]->shape) : NULL;
    rn_release(s);
    if (!r->view[i]) { rn_set_grad_enabled(g); rn_reducer_free(r); return NULL; }
  }
  rn_set_grad_enabled(g);
  r->st.nbuckets = r->nb;
  return r;
}

int rn_reducer_nbuckets(const rn_reducer *r) { return r->nb; }
void rn_reducer_stats_get(const rn_reducer *r, rn_reducer_stats *s) { *s = r->st; }

static int find(rn_reducer *r, rn_tensor *t) {
  for (int i = 0; i < r->n; i++)
    if (r->p[i] == t) return i;
  return -1;
}

static void what_of(const rn_reducer *r, int k, char *buf, size_t n) {
  snprintf(buf, n, "allreduce of gradient bucket %d of %d", k + 1, r->nb);
}

static int launch(rn_reducer *r, int k) {
  bucket *b = &r->b[k];
  b->launched = true;
  if (r->cuda) return 0; /* reduced at finish */
  double t0 = now_s();
  int rc = rn_dist_iallreduce_f32((float *)rn_ptr(b->buf), b->numel, &b->req);
  r->st.comm_s += now_s() - t0;
  return rc;
}

/* launches every complete bucket whose predecessors are launched; polls the rest */
static int progress(rn_reducer *r) {
  while (r->overlap && r->next_launch < r->nb && r->b[r->next_launch].pending == 0)
    if (launch(r, r->next_launch++) < 0) return -1;
  double t0 = now_s();
  for (int k = 0; k < r->next_launch; k++) {
    bucket *b = &r->b[k];
    if (!b->req) continue;
    bool done = false;
    if (rn_dist_test(b->req, &done) < 0) return -1;
    if (done) { b->req = NULL; b->done = true; }
  }
  r->st.comm_s += now_s() - t0;
  return 0;
}

static int mark_ready(rn_reducer *r, int i) {
  if (r->ready[i]) return 0;
  r->ready[i] = true;
  rn_tensor *g = r->p[i]->grad;
  int rc;
  if (g) {
    r->used[i] = 1;
    rc = rn_copy_(r->view[i], g);
  } else {
    rc = rn_fill_(r->view[i], 0.0);
  }
  if (rc < 0) return -1;
  r->b[r->bk[i]].pending--;
  return progress(r);
}

static int hook_begin(void *ud, rn_tensor *const *leaves, int n) {
  rn_reducer *r = ud;
  /* parameters this pass cannot reach get no gradient: ready now */
  bool *reach = calloc((size_t)r->n, sizeof *reach);
  if (!reach) return rn_err("DataParallel: out of memory");
  for (int j = 0; j < n; j++) {
    int i = find(r, leaves[j]);
    if (i >= 0) reach[i] = true;
  }
  int rc = 0;
  for (int i = 0; i < r->n && rc == 0; i++)
    if (!reach[i]) rc = mark_ready(r, i);
  free(reach);
  return rc;
}

static int hook_ready(void *ud, rn_tensor *leaf) {
  rn_reducer *r = ud;
  int i = find(r, leaf);
  return i < 0 ? 0 : mark_ready(r, i); /* leaves outside the model: not ours */
}

int rn_reducer_begin(rn_reducer *r, int64_t step) {
  if (!rn_dist_initialized())
    return rn_err("DataParallel: rn.distributed is not initialized (call rn.distributed.init{} first)");
  if (r->armed) return rn_err("DataParallel: begin called twice without finish");
  for (int i = 0; i < r->n; i++) { r->ready[i] = false; r->used[i] = 0; }
  for (int k = 0; k < r->nb; k++) {
    r->b[k].pending = r->b[k].count;
    r->b[k].launched = r->b[k].done = false;
  }
  r->next_launch = 0;
  r->step = step;
  rn_dist_set_step(step);
  rn_grad_hooks h = { .begin = hook_begin, .ready = hook_ready, .ud = r };
  rn_set_grad_hooks(&h);
  r->armed = true;
  r->t_begin = now_s();
  return 0;
}

int rn_reducer_finish(rn_reducer *r) {
  if (!r->armed) return rn_err("DataParallel: finish without begin");
  rn_set_grad_hooks(NULL);
  r->armed = false;
  double t0 = now_s();
  r->st.backward_s += t0 - r->t_begin;
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  int rc = 0;
  /* parameters never reported (no reverse pass ran on this rank) */
  bool ov = r->overlap;
  r->overlap = false; /* launch below, in order */
  for (int i = 0; i < r->n && rc == 0; i++) rc = mark_ready(r, i);
  r->overlap = ov;
  char what[96];
  for (int k = 0; k < r->nb && rc == 0; k++) {
    bucket *b = &r->b[k];
    if (!b->launched) {
      if (k != r->next_launch) { rc = rn_err("DataParallel: bucket %d launched out of order", k + 1); break; }
      rc = launch(r, k);
      r->next_launch++;
      if (rc < 0) break;
    }
    what_of(r, k, what, sizeof what);
    if (r->cuda) rc = rn_dist_allreduce_device_f32(b->buf, what);
    else if (b->req) { rc = rn_dist_wait(b->req, what); b->req = NULL; }
    b->done = rc == 0;
  }
  /* which parameters some rank used */
  if (rc == 0) {
    int64_t n = r->n;
    rn_tensor *u = rn_from_buffer(1, &n, RN_I32, r->used);
    if (!u) rc = -1;
    else rc = rn_dist_allreduce(u, RN_DIST_MAX, "allreduce of the used-parameter flags", false);
    if (rc == 0) memcpy(r->used, rn_ptr(u), sizeof(int32_t) * (size_t)r->n);
    rn_release(u);
  }
  for (int i = 0; i < r->n && rc == 0; i++) {
    rn_tensor *p = r->p[i];
    if (!r->used[i]) { rn_release(p->grad); p->grad = NULL; continue; }
    if (!p->grad) {
      p->grad = rn_empty_like(p);
      if (!p->grad) { rc = -1; break; }
    }
    rc = rn_copy_(p->grad, r->view[i]);
  }
  rn_set_grad_enabled(g);
  double t1 = now_s();
  r->st.wait_s += t1 - t0;
  r->st.comm_s += t1 - t0;
  r->st.steps++;
  if (rc == 0) for (int k = 0; k < r->nb; k++) r->st.bytes += r->b[k].numel * 4;
  return rc;
}
