/* augment.c (cuda) - the device-resident data loader: a CPU loader
 * (core/data/, made with no workers, never started) checks the options and
 * resolves what is served (sample ids, geometry, normalization table); its
 * images (N,H,W,C) uint8, labels (N) int64 and table (C,256) float32 are
 * uploaded once; per epoch the order of the sample ids (M) int64 is made on
 * the host by rn_data_epoch_order, the CPU loader's own function, and
 * uploaded; per batch kernels/augment.cu gathers and transforms the B
 * samples into new cuda tensors x (B,OH,OW,C) float32, y (B) int64.
 *
 * Device memory: N*H*W*C bytes + 8*N + 8*M + 1 KiB*C, from the caching
 * allocator (as tensors, so rn_release frees it). The order upload is
 * stream-ordered after the kernels that read the previous epoch's order. */
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

struct rn_cuda_dloader {
  rn_loader *spec;       /* the CPU loader that defines the batches */
  rn_loader_view v;
  rn_tensor *img;        /* (N,H,W,C) uint8 cuda */
  rn_tensor *labels;     /* (N) int64 cuda */
  rn_tensor *lut;        /* (C,256) float32 cuda */
  rn_tensor *order;      /* (M) int64 cuda, of order_epoch */
  int64_t *order_host;   /* (M) */
  int64_t order_epoch;   /* -1: none yet */
};

void rn_cuda_dloader_free(rn_cuda_dloader *d) {
  if (!d) return;
  rn_release(d->img);
  rn_release(d->labels);
  rn_release(d->lut);
  rn_release(d->order);
  free(d->order_host);
  rn_loader_free(d->spec);
  free(d);
}

const rn_loader *rn_cuda_dloader_spec(const rn_cuda_dloader *d) { return d->spec; }

/* a new cuda tensor (ndim, shape) of dt holding the host bytes src */
static rn_tensor *upload(int ndim, const int64_t *shape, rn_dtype dt, const void *src) {
  rn_tensor *t = rn_empty(ndim, shape, dt, RN_CUDA);
  if (!t) return NULL;
  if (rn_cuda_from_host(rn_ptr(t), src, (size_t)rn_numel(t) * rn_dtype_size(dt)) < 0) {
    rn_release(t);
    return NULL;
  }
  return t;
}

rn_cuda_dloader *rn_cuda_dloader_new(rn_tensor *images, rn_tensor *labels,
                                     const rn_loader_opts *o) {
  if (rn_cuda_init() < 0) return NULL;
  rn_loader_opts so = *o;
  so.workers = 0; /* never started: only its checks and resolved plan are used */
  so.prefetch = 1;
  rn_cuda_dloader *d = calloc(1, sizeof *d);
  if (!d) {
    rn_err("data_loader (cuda): out of memory");
    return NULL;
  }
  d->order_epoch = -1;
  if (!(d->spec = rn_loader_new(images, labels, &so))) {
    free(d);
    return NULL;
  }
  rn_loader_view_of(d->spec, &d->v);
  const rn_loader_view *v = &d->v;
  const rn_data_geom *g = &v->geom;
  int64_t ishape[4] = {v->n, g->h, g->w, g->c}, lshape[2] = {g->c, 256};
  d->order_host = malloc(sizeof(int64_t) * (size_t)v->m);
  if (!d->order_host) {
    rn_err("data_loader (cuda): out of memory for %lld sample ids", (long long)v->m);
    rn_cuda_dloader_free(d);
    return NULL;
  }
  if (!(d->img = upload(4, ishape, RN_U8, rn_ptr(v->images))) ||
      !(d->labels = upload(1, &v->n, RN_I64, v->labels)) ||
      !(d->lut = upload(2, lshape, RN_F32, v->lut)) ||
      !(d->order = rn_empty(1, &v->m, RN_I64, RN_CUDA))) {
    rn_cuda_dloader_free(d);
    return NULL;
  }
  return d;
}

int rn_cuda_dloader_batch(rn_cuda_dloader *d, int64_t epoch, int64_t b, rn_tensor **x,
                          rn_tensor **y) {
  *x = *y = NULL;
  const rn_loader_view *v = &d->v;
  const rn_data_geom *g = &v->geom;
  if (epoch < 0)
    return rn_err("data_loader (cuda): epoch %lld is negative; epochs are numbered from 0 or 1",
                  (long long)epoch);
  if (b < 0 || b >= v->nbatches)
    return rn_err("data_loader (cuda): batch %lld outside 1..%lld", (long long)b + 1,
                  (long long)v->nbatches);
  if (epoch != d->order_epoch) {
    rn_data_epoch_order(v->index, v->m, v->shuffle, v->seed, epoch, d->order_host);
    d->order_epoch = -1; /* until the upload succeeded */
    if (rn_cuda_from_host(rn_ptr(d->order), d->order_host, sizeof(int64_t) * (size_t)v->m) < 0)
      return -1;
    d->order_epoch = epoch;
  }
  int64_t start = b * v->b, cnt = v->m - start < v->b ? v->m - start : v->b, lo;
  rn_data_shard(cnt, v->shard_rank, v->shard_world, &lo, &cnt); /* this rank's part (data.h) */
  start += lo;
  int64_t xs[4] = {cnt, g->oh, g->ow, g->c};
  rn_tensor *xt = rn_empty(4, xs, RN_F32, RN_CUDA);
  rn_tensor *yt = xt ? rn_empty(1, &cnt, RN_I64, RN_CUDA) : NULL;
  if (!yt) {
    rn_release(xt);
    return -1;
  }
  rnk_aug_geom k = {.h = g->h, .w = g->w, .c = g->c, .oh = g->oh, .ow = g->ow, .oy = g->oy,
                    .ox = g->ox, .pad = g->pad, .reflect = g->pad_mode == RN_PAD_REFLECT,
                    .flip = v->flip, .cutout = g->cutout, .augment = v->augment,
                    .seed = v->seed, .epoch = epoch};
  if (CU(rnk_augment_batch(k, (const uint8_t *)rn_ptr(d->img), (const int64_t *)rn_ptr(d->labels),
                           (const int64_t *)rn_ptr(d->order), start, cnt,
                           (const float *)rn_ptr(d->lut), (float *)rn_ptr(xt),
                           (int64_t *)rn_ptr(yt), rn_cuda_stream())) < 0) {
    rn_release(xt);
    rn_release(yt);
    return -1;
  }
  *x = xt;
  *y = yt;
  return 0;
}
