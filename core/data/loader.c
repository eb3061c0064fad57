/* loader.c - the batch loader: one shared uint8 image tensor (N,H,W,C), its
 * labels as int64 (N), an index list (M) of the samples it serves; per epoch
 * an order (the list shuffled on (seed, epoch)), batches of B made by K worker
 * pthreads into a ring of P slots ahead of the consumer.
 *
 * Ring protocol (all fields below `mu` are guarded by it):
 *   slot s holds batch `batch` (= s mod P) in one of the states
 *     NEED_ALLOC - the consumer must allocate its tensors (only it allocates)
 *     EMPTY      - tensors ready; the next worker whose claim counter equals
 *                  `batch` takes it (claims go in batch order)
 *     FILLING    - a worker writes it with `mu` released (it alone touches
 *                  the tensors' bytes; busy counts such workers)
 *     READY / ERROR - done; the consumer takes it, then the slot moves on to
 *                  batch + P (NEED_ALLOC) or DONE past the last batch.
 *   Abandoning an epoch bumps `gen` (workers poll `cancel_gen` per sample and
 *   stop early), waits until busy == 0, then releases every slot's tensors.
 *   So the epoch's order array is only rewritten while no worker reads it,
 *   and every hand-off of bytes goes through `mu`.
 * The sample a worker writes depends only on (seed, epoch, sample id) and
 * the data: batches are bit-identical for any K and P. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

#define OP "data_loader"
#define MAX_WORKERS 64
#define MAX_PREFETCH 64
#define MAX_SIDE 32768
#define MAX_CHANNELS 1024

typedef enum { SLOT_NEED_ALLOC, SLOT_EMPTY, SLOT_FILLING, SLOT_READY, SLOT_ERROR, SLOT_DONE } slot_state;

typedef struct {
  int64_t batch;
  slot_state state;
  rn_tensor *x; /* (b,OH,OW,C) float32 */
  rn_tensor *y; /* (b) int64 */
  char err[256];
} slot_t;

typedef struct {
  rn_loader *l;
  int id;
} worker_arg;

struct rn_loader {
  /* ---- fixed at creation ---- */
  rn_tensor *images;     /* (N,H,W,C) uint8, contiguous; retained */
  const uint8_t *img;
  int64_t n;             /* N */
  int64_t *labels;       /* (N) */
  int64_t *index;        /* (M) sample ids served */
  int64_t m, b, nbatches;
  rn_data_geom geom;
  float *lut;            /* (C,256) */
  bool shuffle, augment, flip;
  uint64_t seed;
  int workers, prefetch;
  int shard_rank, shard_world; /* rn_loader_set_shard */
  int64_t fail_batch;
  int *colmaps;          /* (workers+1, OW) scratch, one row per thread */
  int64_t *order;        /* (M) the epoch's sample ids; written only while no worker is busy */

  /* ---- shared, guarded by mu ---- */
  pthread_mutex_t mu;
  pthread_cond_t work_cv; /* workers: a slot may be claimable, or stop */
  pthread_cond_t done_cv; /* consumer: a slot finished, or busy dropped */
  int64_t epoch;
  uint64_t gen;          /* ticket of the current epoch */
  atomic_uint_least64_t cancel_gen; /* = gen; workers poll it without mu */
  bool active;
  int64_t next_claim, next_take;
  int busy;
  bool stop;
  slot_t *slots;         /* (P) */
  pthread_t *threads;    /* (workers) */
  worker_arg *wargs;
  int nthreads;          /* started */
  bool sync_ok;          /* mutex/conds initialized */
};

void rn_loader_opts_default(rn_loader_opts *o) {
  memset(o, 0, sizeof *o);
  o->batch_size = 32;
  o->batch_size_is_default = true;
  o->shuffle = true;
  o->pad_crop = 4;
  o->pad_mode = RN_PAD_ZEROS;
  o->flip = true;
  o->workers = 2;
  o->prefetch = 3;
  o->augment = true;
  o->fail_batch = -1;
}

int64_t rn_loader_size(const rn_loader *l) { return l->m; }
int64_t rn_loader_num_batches(const rn_loader *l) { return l->nbatches; }
int64_t rn_loader_batch_size(const rn_loader *l) { return l->b; }
int rn_loader_workers(const rn_loader *l) { return l->workers; }
void rn_loader_sample_shape(const rn_loader *l, int64_t shape[3]) {
  shape[0] = l->geom.oh;
  shape[1] = l->geom.ow;
  shape[2] = l->geom.c;
}

void rn_loader_view_of(const rn_loader *l, rn_loader_view *v) {
  *v = (rn_loader_view){.geom = l->geom, .images = l->images, .labels = l->labels,
                        .index = l->index, .lut = l->lut, .n = l->n, .m = l->m, .b = l->b,
                        .nbatches = l->nbatches, .shuffle = l->shuffle, .augment = l->augment,
                        .flip = l->flip, .seed = l->seed, .shard_rank = l->shard_rank,
                        .shard_world = l->shard_world};
}

/* this rank's part of batch b: first position in order, count */
static void batch_range(const rn_loader *l, int64_t b, int64_t *start, int64_t *cnt) {
  int64_t all = l->m - b * l->b, lo;
  if (all > l->b) all = l->b;
  rn_data_shard(all, l->shard_rank, l->shard_world, &lo, cnt);
  *start = b * l->b + lo;
}

/* ---- creation ------------------------------------------------------------ */

static int check_images(const rn_tensor *im) {
  char buf[128];
  if (im->dtype != RN_U8 || im->ndim != 4)
    return rn_err(OP ": images must be uint8 (N,H,W,C), got %s %s", rn_dtype_name(im->dtype),
                  rn_shape_str(im, buf, sizeof buf));
  if (rn_device(im) != RN_CPU)
    return rn_err(OP ": images must be on the cpu, got %s", rn_device_name(rn_device(im)));
  if (im->shape[0] < 1 || im->shape[0] > INT32_MAX)
    return rn_err(OP ": images hold %lld samples; N must be in 1..%d", (long long)im->shape[0],
                  INT32_MAX);
  if (im->shape[1] < 1 || im->shape[1] > MAX_SIDE || im->shape[2] < 1 || im->shape[2] > MAX_SIDE)
    return rn_err(OP ": images are %lldx%lld; H and W must be in 1..%d", (long long)im->shape[1],
                  (long long)im->shape[2], MAX_SIDE);
  if (im->shape[3] < 1 || im->shape[3] > MAX_CHANNELS)
    return rn_err(OP ": images have C = %lld channels, outside 1..%d", (long long)im->shape[3],
                  MAX_CHANNELS);
  return 0;
}

/* Reads element i of a 1-d integer tensor (uint8/int32/int64, any stride). */
static int64_t int_at(const rn_tensor *t, int64_t i) {
  const char *p = rn_ptr(t) + (size_t)(i * t->stride[0]) * rn_dtype_size(t->dtype);
  switch (t->dtype) {
  case RN_U8: return *(const uint8_t *)p;
  case RN_I32: return *(const int32_t *)p;
  default: return *(const int64_t *)p;
  }
}

static bool is_int_dtype(rn_dtype d) { return d == RN_U8 || d == RN_I32 || d == RN_I64; }

static int check_int_vector(const rn_tensor *t, const char *what, const char *len_name) {
  char buf[128];
  if (!is_int_dtype(t->dtype) || t->ndim != 1)
    return rn_err(OP ": %s must be uint8, int32 or int64 (%s), got %s %s", what, len_name,
                  rn_dtype_name(t->dtype), rn_shape_str(t, buf, sizeof buf));
  if (rn_device(t) != RN_CPU)
    return rn_err(OP ": %s must be on the cpu, got %s", what, rn_device_name(rn_device(t)));
  return 0;
}

static int check_opts(const rn_loader_opts *o, int64_t m, int C, int oh, int ow) {
  if (o->batch_size < 1 || o->batch_size > m)
    return rn_err(OP ": batch_size %lld outside 1..%lld", (long long)o->batch_size, (long long)m);
  if (o->mean && o->nmean != C)
    return rn_err(OP ": mean has %d values; it needs one per channel (C = %d)", o->nmean, C);
  if (o->std && o->nstd != C)
    return rn_err(OP ": std has %d values; it needs one per channel (C = %d)", o->nstd, C);
  for (int c = 0; c < C; c++) {
    if (o->mean && !isfinite(o->mean[c]))
      return rn_err(OP ": mean[%d] = %g is not a finite number", c + 1, o->mean[c]);
    if (o->std && !(isfinite(o->std[c]) && o->std[c] > 0))
      return rn_err(OP ": std[%d] = %g must be a finite number > 0", c + 1, o->std[c]);
  }
  int lo = oh < ow ? oh : ow, hi = oh > ow ? oh : ow;
  if (o->augment && (o->pad_crop < 0 || o->pad_crop > lo - 1))
    return rn_err(OP ": pad_crop %d outside 0..%d (it must be below the output size %dx%d)",
                  o->pad_crop, lo - 1, oh, ow);
  if (o->pad_mode != RN_PAD_ZEROS && o->pad_mode != RN_PAD_REFLECT)
    return rn_err(OP ": pad_mode %d unknown (valid: zeros, reflect)", (int)o->pad_mode);
  if (o->augment && (o->cutout < 0 || o->cutout > hi))
    return rn_err(OP ": cutout %d outside 0..%d (the output size is %dx%d)", o->cutout, hi, oh, ow);
  if (o->workers < 0 || o->workers > MAX_WORKERS)
    return rn_err(OP ": workers %d outside 0..%d", o->workers, MAX_WORKERS);
  if (o->prefetch < 1 || o->prefetch > MAX_PREFETCH)
    return rn_err(OP ": prefetch %d outside 1..%d", o->prefetch, MAX_PREFETCH);
  return 0;
}

static void loader_free_memory(rn_loader *l) {
  if (l->slots)
    for (int i = 0; i < l->prefetch; i++) {
      rn_release(l->slots[i].x);
      rn_release(l->slots[i].y);
    }
  free(l->slots);
  free(l->threads);
  free(l->wargs);
  free(l->colmaps);
  free(l->order);
  free(l->lut);
  free(l->index);
  free(l->labels);
  rn_release(l->images);
  if (l->sync_ok) {
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->done_cv);
  }
  free(l);
}

rn_loader *rn_loader_new(rn_tensor *images, rn_tensor *labels, const rn_loader_opts *o) {
  char buf[128];
  if (check_images(images) < 0 || check_int_vector(labels, "labels", "N") < 0) return NULL;
  int64_t n = images->shape[0];
  int H = (int)images->shape[1], W = (int)images->shape[2], C = (int)images->shape[3];
  if (labels->shape[0] != n) {
    rn_err(OP ": labels length %lld must equal N = %lld (images %s)", (long long)labels->shape[0],
           (long long)n, rn_shape_str(images, buf, sizeof buf));
    return NULL;
  }
  int64_t m = n;
  if (o->indices) {
    if (check_int_vector(o->indices, "indices", "M") < 0) return NULL;
    m = o->indices->shape[0];
    if (m < 1) {
      rn_err(OP ": indices is empty; a loader needs at least one sample");
      return NULL;
    }
  }
  int oh = o->out_h ? o->out_h : H, ow = o->out_w ? o->out_w : W;
  if (oh < 1 || oh > MAX_SIDE || ow < 1 || ow > MAX_SIDE) {
    rn_err(OP ": out_size {%d,%d} outside 1..%d", oh, ow, MAX_SIDE);
    return NULL;
  }
  rn_loader_opts chk = *o;
  if (chk.batch_size_is_default && chk.batch_size > m) chk.batch_size = m;
  o = &chk;
  if (check_opts(o, m, C, oh, ow) < 0) return NULL;

  rn_loader *l = calloc(1, sizeof *l);
  if (!l) { rn_err(OP ": out of memory"); return NULL; }
  l->n = n;
  l->m = m;
  l->b = o->batch_size;
  l->nbatches = o->drop_last ? m / l->b : (m + l->b - 1) / l->b;
  l->geom = (rn_data_geom){.h = H, .w = W, .c = C, .oh = oh, .ow = ow, .oy = (oh - H) / 2,
                           .ox = (ow - W) / 2, .pad = o->augment ? o->pad_crop : 0,
                           .pad_mode = o->pad_mode, .flip = o->augment && o->flip,
                           .cutout = o->augment ? o->cutout : 0};
  l->shuffle = o->shuffle;
  l->augment = o->augment;
  l->flip = o->flip;
  l->seed = o->seed;
  l->workers = o->workers;
  l->prefetch = o->prefetch;
  l->fail_batch = o->fail_batch;
  l->shard_rank = 0;
  l->shard_world = 1;

  l->labels = malloc(sizeof(int64_t) * (size_t)n);
  l->index = malloc(sizeof(int64_t) * (size_t)m);
  l->order = malloc(sizeof(int64_t) * (size_t)m);
  l->lut = malloc(sizeof(float) * 256 * (size_t)C);
  l->colmaps = malloc(sizeof(int) * (size_t)ow * (size_t)(o->workers + 1));
  l->slots = calloc((size_t)o->prefetch, sizeof *l->slots);
  l->threads = calloc((size_t)(o->workers ? o->workers : 1), sizeof *l->threads);
  l->wargs = calloc((size_t)(o->workers ? o->workers : 1), sizeof *l->wargs);
  if (!l->labels || !l->index || !l->order || !l->lut || !l->colmaps || !l->slots || !l->threads ||
      !l->wargs) {
    loader_free_memory(l);
    rn_err(OP ": out of memory for %lld samples", (long long)n);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++) {
    l->labels[i] = int_at(labels, i);
    if (l->labels[i] < 0) {
      loader_free_memory(l);
      rn_err(OP ": labels[%lld] = %lld is negative; class labels are 0-based ids",
             (long long)i + 1, (long long)int_at(labels, i));
      return NULL;
    }
  }
  for (int64_t i = 0; i < m; i++) {
    int64_t v = o->indices ? int_at(o->indices, i) : i;
    if (v < 0 || v >= n) {
      loader_free_memory(l);
      rn_err(OP ": indices[%lld] = %lld outside 0..%lld (0-based sample ids)", (long long)i + 1,
             (long long)v, (long long)n - 1);
      return NULL;
    }
    l->index[i] = v;
  }
  rn_data_lut(C, o->mean, o->std, l->lut);
  for (int i = 0; i < o->prefetch; i++) l->slots[i].state = SLOT_DONE;

  l->images = rn_contiguous(images); /* images itself (retained) when contiguous */
  if (!l->images) { loader_free_memory(l); return NULL; }
  l->img = (const uint8_t *)rn_ptr(l->images);

  if (pthread_mutex_init(&l->mu, NULL) != 0) {
    loader_free_memory(l);
    rn_err(OP ": could not create a mutex");
    return NULL;
  }
  if (pthread_cond_init(&l->work_cv, NULL) != 0) {
    pthread_mutex_destroy(&l->mu);
    loader_free_memory(l);
    rn_err(OP ": could not create a condition variable");
    return NULL;
  }
  if (pthread_cond_init(&l->done_cv, NULL) != 0) {
    pthread_cond_destroy(&l->work_cv);
    pthread_mutex_destroy(&l->mu);
    loader_free_memory(l);
    rn_err(OP ": could not create a condition variable");
    return NULL;
  }
  l->sync_ok = true;
  atomic_init(&l->cancel_gen, 0);
  return l;
}

/* ---- making one batch (any thread; mu not held) --------------------------- */

enum { FILL_OK = 0, FILL_ERROR = -1, FILL_CANCELLED = 1 };

static int fill_batch(rn_loader *l, int64_t b, rn_tensor *x, rn_tensor *y, uint64_t gen,
                      int64_t epoch, int *colmap, char *err, size_t errn) {
  const rn_data_geom *g = &l->geom;
  int64_t start, cnt;
  batch_range(l, b, &start, &cnt);
  size_t in_sz = (size_t)g->h * (size_t)g->w * (size_t)g->c;
  size_t out_sz = (size_t)g->oh * (size_t)g->ow * (size_t)g->c;
  float *xo = (float *)rn_ptr(x);
  int64_t *yo = (int64_t *)rn_ptr(y);
  if (b == l->fail_batch) {
    snprintf(err, errn, OP ": batch %lld of epoch %lld failed in a worker (the fail_batch test hook)",
             (long long)b + 1, (long long)epoch);
    return FILL_ERROR;
  }
  for (int64_t i = 0; i < cnt; i++) {
    if (atomic_load_explicit(&l->cancel_gen, memory_order_relaxed) != gen) return FILL_CANCELLED;
    int64_t id = l->order[start + i];
    yo[i] = l->labels[id];
    rn_sample_params p;
    if (l->augment)
      rn_data_sample_params(l->seed, epoch, id, g->pad, l->flip, g->oh, g->ow, &p);
    rn_data_transform(g, l->img + (size_t)id * in_sz, l->lut, l->augment ? &p : NULL,
                      xo + (size_t)i * out_sz, colmap);
  }
  return FILL_OK;
}

/* With mu held: the slot the next claim may take, or NULL. */
static slot_t *claimable(rn_loader *l) {
  if (!l->active || l->stop || l->next_claim >= l->nbatches) return NULL;
  slot_t *s = &l->slots[l->next_claim % l->prefetch];
  return (s->batch == l->next_claim && s->state == SLOT_EMPTY) ? s : NULL;
}

/* With mu held and s claimable: fills it with mu released, then marks it. */
static void claim_and_fill(rn_loader *l, slot_t *s, int *colmap) {
  int64_t b = l->next_claim++;
  s->state = SLOT_FILLING;
  l->busy++;
  rn_tensor *x = s->x, *y = s->y;
  uint64_t gen = l->gen;
  int64_t epoch = l->epoch;
  char err[256] = "";
  pthread_mutex_unlock(&l->mu);
  int rc = fill_batch(l, b, x, y, gen, epoch, colmap, err, sizeof err);
  pthread_mutex_lock(&l->mu);
  l->busy--;
  if (rc == FILL_ERROR) {
    memcpy(s->err, err, sizeof s->err);
    s->state = SLOT_ERROR;
  } else {
    s->state = SLOT_READY; /* a cancelled slot is dropped by the abandoner */
  }
  pthread_cond_broadcast(&l->done_cv);
}

static void *worker_main(void *arg) {
  worker_arg *a = arg;
  rn_loader *l = a->l;
  int *colmap = l->colmaps + (size_t)(a->id + 1) * (size_t)l->geom.ow;
  pthread_mutex_lock(&l->mu);
  while (!l->stop) {
    slot_t *s = claimable(l);
    if (s) claim_and_fill(l, s, colmap);
    else pthread_cond_wait(&l->work_cv, &l->mu);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

/* ---- threads -------------------------------------------------------------- */

/* With mu NOT held: stops and joins every started worker. */
static void stop_workers(rn_loader *l) {
  pthread_mutex_lock(&l->mu);
  l->stop = true;
  pthread_cond_broadcast(&l->work_cv);
  pthread_mutex_unlock(&l->mu);
  for (int i = 0; i < l->nthreads; i++) pthread_join(l->threads[i], NULL);
  l->nthreads = 0;
  pthread_mutex_lock(&l->mu);
  l->stop = false;
  pthread_mutex_unlock(&l->mu);
}

static int start_workers(rn_loader *l) {
  if (l->nthreads == l->workers) return 0;
  /* Workers block every signal: SIGINT and friends stay with the Lua thread. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = 0;
  while (l->nthreads < l->workers) {
    worker_arg *a = &l->wargs[l->nthreads];
    a->l = l;
    a->id = l->nthreads;
    rc = pthread_create(&l->threads[l->nthreads], NULL, worker_main, a);
    if (rc != 0) break;
    l->nthreads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    int started = l->nthreads;
    stop_workers(l);
    return rn_err(OP ": could not start worker thread %d of %d: %s", started + 1, l->workers,
                  strerror(rc));
  }
  return 0;
}

/* ---- epochs (the consumer's thread) --------------------------------------- */

/* With mu held: ends the current epoch; returns once no worker is busy. */
static void abandon_locked(rn_loader *l) {
  l->active = false;
  l->gen++;
  atomic_store_explicit(&l->cancel_gen, l->gen, memory_order_relaxed);
  while (l->busy > 0) pthread_cond_wait(&l->done_cv, &l->mu);
  for (int i = 0; i < l->prefetch; i++) {
    slot_t *s = &l->slots[i];
    rn_release(s->x);
    rn_release(s->y);
    s->x = s->y = NULL;
    s->state = SLOT_DONE;
  }
}

/* With mu held: allocates the tensors of every NEED_ALLOC slot. */
static int topup_locked(rn_loader *l) {
  bool any = false;
  for (int i = 0; i < l->prefetch; i++) {
    slot_t *s = &l->slots[i];
    if (s->state != SLOT_NEED_ALLOC) continue;
    int64_t start, cnt;
    batch_range(l, s->batch, &start, &cnt);
    int64_t xs[4] = {cnt, l->geom.oh, l->geom.ow, l->geom.c};
    rn_tensor *x = rn_empty(4, xs, RN_F32, RN_CPU);
    rn_tensor *y = x ? rn_empty(1, &cnt, RN_I64, RN_CPU) : NULL;
    if (!y) {
      rn_release(x);
      return -1;
    }
    s->x = x;
    s->y = y;
    s->state = SLOT_EMPTY;
    any = true;
  }
  if (any) pthread_cond_broadcast(&l->work_cv);
  return 0;
}

uint64_t rn_loader_start_epoch(rn_loader *l, int64_t epoch, int64_t skip) {
  if (epoch < 0) {
    rn_err(OP ": epoch %lld is negative; epochs are numbered from 0 or 1", (long long)epoch);
    return 0;
  }
  if (skip < 0 || skip > l->nbatches) {
    rn_err(OP ": skip %lld outside 0..%lld (the number of batches)", (long long)skip,
           (long long)l->nbatches);
    return 0;
  }
  pthread_mutex_lock(&l->mu);
  if (l->active) abandon_locked(l);
  pthread_mutex_unlock(&l->mu);
  /* no worker is busy and none can claim (inactive): order is ours */
  rn_data_epoch_order(l->index, l->m, l->shuffle, l->seed, epoch, l->order);
  if (start_workers(l) < 0) return 0;
  pthread_mutex_lock(&l->mu);
  l->epoch = epoch;
  l->gen++;
  atomic_store_explicit(&l->cancel_gen, l->gen, memory_order_relaxed);
  l->next_claim = l->next_take = skip;
  for (int i = 0; i < l->prefetch; i++) {
    int64_t b = skip + i;
    slot_t *s = &l->slots[b % l->prefetch];
    s->batch = b;
    s->state = b < l->nbatches ? SLOT_NEED_ALLOC : SLOT_DONE;
  }
  l->active = true;
  if (topup_locked(l) < 0) {
    abandon_locked(l);
    pthread_mutex_unlock(&l->mu);
    return 0;
  }
  uint64_t ticket = l->gen;
  pthread_mutex_unlock(&l->mu);
  return ticket;
}

int rn_loader_next(rn_loader *l, uint64_t ticket, rn_tensor **x, rn_tensor **y) {
  *x = *y = NULL;
  pthread_mutex_lock(&l->mu);
  if (ticket != l->gen || (!l->active && l->next_take < l->nbatches)) {
    pthread_mutex_unlock(&l->mu);
    return rn_err(OP ": this epoch is over (abandoned, failed, or replaced by a newer epoch)");
  }
  if (l->next_take >= l->nbatches) {
    l->active = false;
    pthread_mutex_unlock(&l->mu);
    return 0;
  }
  if (topup_locked(l) < 0) {
    pthread_mutex_unlock(&l->mu);
    return -1;
  }
  slot_t *s = &l->slots[l->next_take % l->prefetch];
  if (l->nthreads == 0) { /* no workers: make it here */
    slot_t *c = claimable(l);
    if (c) claim_and_fill(l, c, l->colmaps);
  }
  while (!(s->batch == l->next_take && (s->state == SLOT_READY || s->state == SLOT_ERROR)))
    pthread_cond_wait(&l->done_cv, &l->mu);
  if (s->state == SLOT_ERROR) {
    char err[sizeof s->err];
    memcpy(err, s->err, sizeof err);
    abandon_locked(l);
    pthread_mutex_unlock(&l->mu);
    return rn_err("%s", err);
  }
  *x = s->x;
  *y = s->y;
  s->x = s->y = NULL;
  s->batch += l->prefetch;
  s->state = s->batch < l->nbatches ? SLOT_NEED_ALLOC : SLOT_DONE;
  l->next_take++;
  if (l->nthreads > 0 && topup_locked(l) < 0) rn_clear_error(); /* retried at the next call */
  pthread_mutex_unlock(&l->mu);
  return 1;
}

void rn_loader_abandon(rn_loader *l, uint64_t ticket) {
  pthread_mutex_lock(&l->mu);
  if (ticket == l->gen && l->active) abandon_locked(l);
  pthread_mutex_unlock(&l->mu);
}

int rn_loader_set_shard(rn_loader *l, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world)
    return rn_err(OP ": shard rank %d of world %d: need 0 <= rank < world", rank, world);
  pthread_mutex_lock(&l->mu);
  if (l->active) abandon_locked(l);
  l->shard_rank = rank;
  l->shard_world = world;
  pthread_mutex_unlock(&l->mu);
  return 0;
}

void rn_loader_free(rn_loader *l) {
  if (!l) return;
  pthread_mutex_lock(&l->mu);
  if (l->active) abandon_locked(l);
  pthread_mutex_unlock(&l->mu);
  stop_workers(l);
  loader_free_memory(l);
}
