/* data.h - the data pipeline of the core: a batch loader over one shared
 * uint8 image tensor (N,H,W,C) and its labels (N), with per-channel
 * normalization, augmentation (pad-and-random-crop, horizontal flip, cutout),
 * padding to an output size, shuffling, batching and background prefetch in
 * pthreads; plus the counter-based randomness all of this is keyed on.
 *
 * Determinism contract: batch b of epoch e is a function of (seed, e, the
 * data, the options) only; never of the number of worker threads, their
 * timing, or the global RNG (core/random.c is not used here). Every random
 * draw is a splitmix64 hash of (seed, domain, epoch, index, draw number),
 * spelled out in doc/data.md so that another device can reproduce it.
 *
 * Threads: only the caller's thread (the Lua thread) calls these functions
 * and allocates or releases tensors; workers write raw floats and int64s into
 * tensors the caller allocated, under the loader's mutex hand-off.
 * Errors: -1 / NULL after rn_err(), as everywhere in the core.
 */
#ifndef RN_DATA_H
#define RN_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "../rn.h"
#include "rng.h" /* the draws and the pixel mapping, shared with kernels/augment.cu */

/* ---- counter-based randomness (augment.c, over rng.h) -------------------- */

uint64_t rn_data_mix64(uint64_t z); /* the splitmix64 finalizer */
/* key = mix(mix(mix(seed ^ domain) + epoch*G) + index*G) */
uint64_t rn_data_key(uint64_t seed, uint64_t domain, int64_t epoch, int64_t index);
/* draw j of a key: mix(key + (j+1)*G) */
uint64_t rn_data_draw(uint64_t key, uint64_t j);
/* an integer in 0..n-1 from a draw: ((r >> 32) * n) >> 32, for 1 <= n < 2^32 */
uint64_t rn_data_below(uint64_t r, uint64_t n);
/* Fisher-Yates in place over a (n) with the draws of key: for i = n-1..1,
 * j = below(draw(key, n-1-i), i+1), swap a[i], a[j]. */
void rn_data_shuffle(int64_t *a, int64_t n, uint64_t key);

/* The draws of one sample (rn_sample_params: rng.h). */
void rn_data_sample_params(uint64_t seed, int64_t epoch, int64_t index, int pad, bool flip,
                           int out_h, int out_w, rn_sample_params *p);

/* ---- one sample's transform (augment.c) ---------------------------------- */
typedef enum { RN_PAD_ZEROS = 0, RN_PAD_REFLECT = 1 } rn_pad_mode;

typedef struct {
  int h, w, c;          /* source image (H,W,C) */
  int oh, ow;           /* output (OH,OW,C) */
  int oy, ox;           /* image's top-left on the (OH,OW) canvas: (OH-H)/2, (OW-W)/2 (toward 0) */
  int pad;              /* pad-crop padding; 0 = no crop */
  rn_pad_mode pad_mode; /* outside the canvas: zero pixels, or canvas reflected */
  bool flip;
  int cutout;           /* square side; 0 = none */
} rn_data_geom;

/* out (OH,OW,C) float32 <- img (H,W,C) uint8 through lut (C,256), where
 * lut[c*256+v] = (v/255 - mean[c]) / std[c]. p == NULL: no augmentation
 * (padding to the output size and normalization only). colmap: scratch (OW). */
void rn_data_transform(const rn_data_geom *g, const uint8_t *img, const float *lut,
                       const rn_sample_params *p, float *out, int *colmap);

/* lut (C,256) for normalization: lut[c*256+v] = (float)((v/255 - mean[c]) /
 * std[c]) computed in double; mean, std NULL: 0 and 1. */
void rn_data_lut(int c, const double *mean, const double *std, float *lut);

/* The sample ids of an epoch: order (M) = index (M), shuffled by
 * rn_data_shuffle on key (seed, "shuf", epoch, 0) when shuffle is set. Batch
 * b of the epoch serves order[b*B .. b*B+B). */
void rn_data_epoch_order(const int64_t *index, int64_t m, bool shuffle, uint64_t seed,
                         int64_t epoch, int64_t *order);

/* Validation split of 0..n-1 keyed on seed: nval = floor(n*frac + 0.5) ids
 * chosen by a shuffle, both lists returned sorted ascending, as int64
 * tensors train (n-nval) and val (nval). frac in 0..1. */
int rn_data_split(int64_t n, double frac, uint64_t seed, rn_tensor **train, rn_tensor **val);

/* ---- the loader (loader.c) ----------------------------------------------- */
typedef struct rn_loader rn_loader;

typedef struct rn_loader_opts {
  int64_t batch_size;    /* 1..M (M = samples in the loader) */
  bool batch_size_is_default; /* use min(batch_size, M) instead of checking */
  bool shuffle;
  uint64_t seed;
  bool drop_last;        /* drop a last partial batch */
  const double *mean;    /* (C) or NULL = zeros */
  int nmean;             /* length of mean (must equal C) */
  const double *std;     /* (C) or NULL = ones */
  int nstd;
  int pad_crop;          /* 0..min(OH,OW)-1 (checked only with augment) */
  rn_pad_mode pad_mode;
  bool flip;
  int cutout;            /* 0..max(OH,OW) (checked only with augment) */
  int out_h, out_w;      /* 0 = the image's size */
  int workers;           /* 0..64; 0 = batches made by the caller's thread */
  int prefetch;          /* 1..64 batches prepared ahead (ring size) */
  bool augment;          /* false: pad to size + normalize only (evaluation) */
  const rn_tensor *indices; /* (M) integer sample ids in 0..N-1, or NULL = all */
  int64_t fail_batch;    /* test hook: a worker fails on this batch; -1 = never */
} rn_loader_opts;

/* batch_size 32 (or M when smaller), shuffle, seed 0, pad_crop 4 (zeros), flip, no cutout,
 * 2 workers, prefetch 3, augment; mean 0 and std 1 (x/255 only). */
void rn_loader_opts_default(rn_loader_opts *o);
/* images: (N,H,W,C) uint8 cpu (retained, or copied once if not contiguous);
 * labels: (N) uint8/int32/int64 cpu (copied as int64). */
rn_loader *rn_loader_new(rn_tensor *images, rn_tensor *labels, const rn_loader_opts *o);
/* Abandons any epoch, stops and joins the workers, frees everything. */
void rn_loader_free(rn_loader *l);
int64_t rn_loader_size(const rn_loader *l);        /* M */
int64_t rn_loader_num_batches(const rn_loader *l);
int64_t rn_loader_batch_size(const rn_loader *l);
void rn_loader_sample_shape(const rn_loader *l, int64_t shape[3]); /* OH, OW, C */
int rn_loader_workers(const rn_loader *l);

/* Starts epoch (>= 0) at batch `skip` (0..num_batches), abandoning any epoch
 * in flight; starts the workers on first use. Returns the epoch's ticket
 * (> 0) or 0 on error. */
uint64_t rn_loader_start_epoch(rn_loader *l, int64_t epoch, int64_t skip);
/* The next batch of the epoch with this ticket: 1 and x (B,OH,OW,C) float32,
 * y (B) int64 (new references, B smaller for a kept last batch); 0 at the end;
 * -1 on error (a worker's error, or a ticket whose epoch is over: abandoned,
 * failed, or replaced by a newer one). A worker's error ends the epoch. */
int rn_loader_next(rn_loader *l, uint64_t ticket, rn_tensor **x, rn_tensor **y);
/* What a loader serves, resolved from its options: for a second
 * implementation of the pipeline that must make the same batches (the CUDA
 * device loader, core/cuda/augment.c). The pointers are the loader's, valid
 * until rn_loader_free; nothing here may be written. */
typedef struct {
  rn_data_geom geom;     /* the transform (pad, flip, cutout already 0 without augment) */
  const rn_tensor *images; /* (N,H,W,C) uint8 cpu, contiguous */
  const int64_t *labels; /* (N) */
  const int64_t *index;  /* (M) the sample ids served */
  const float *lut;      /* (C,256) */
  int64_t n, m, b, nbatches;
  bool shuffle, augment, flip;
  uint64_t seed;
  int shard_rank, shard_world; /* rn_loader_set_shard; 0, 1 when none */
} rn_loader_view;
void rn_loader_view_of(const rn_loader *l, rn_loader_view *v);

/* Data-parallel sharding of every batch: global batch b (cnt samples, the
 * slice order[b*B .. b*B+cnt) of the unsharded loader) is split in world
 * contiguous parts, rank r serving order[b*B+lo .. b*B+lo+n) with lo =
 * cnt*r/world, n = cnt*(r+1)/world - lo (n may be 0 in a last batch smaller
 * than world). So the ranks together see exactly the samples, and the
 * augmented pixels (keyed on sample ids), of the one-process batch, and all
 * have the same number of batches. rank 0, world 1: no sharding. Abandons
 * any epoch in flight. */
int rn_loader_set_shard(rn_loader *l, int rank, int world);
static inline void rn_data_shard(int64_t cnt, int rank, int world, int64_t *lo, int64_t *n) {
  *lo = cnt * rank / world;
  *n = cnt * (rank + 1) / world - *lo;
}

/* Stops the epoch with this ticket (no-op if it is no longer current): waits
 * for the batch each worker is on (they stop at the next sample), drops the
 * prepared batches. */
void rn_loader_abandon(rn_loader *l, uint64_t ticket);

#endif
