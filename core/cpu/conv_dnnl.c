/* conv_dnnl.c (cpu) - float32 convolutions through oneDNN (Debian's libdnnl,
 * the CPU twin of cuDNN), with the same layouts as core/cpu/conv.c:
 *   x: (N,H,W,Cin) NHWC, w: (KH,KW,Cin/G,Cout) HWIO, b: (Cout), y: (N,OH,OW,Cout)
 * with G channel groups (1: none; depthwise: G = Cin; oneDNN's grouped
 * weights (G,O/G,I/G,KH,KW) in hwigo order are that same memory)
 * oneDNN describes tensors in logical (N,C,H,W) / (O,I,KH,KW) order with a
 * physical tag: activations are passed as `nhwc` (no reorder: oneDNN's direct
 * JIT kernels read NHWC directly), weights as `hwio` and reordered into the
 * blocked layout the chosen kernel prefers (Cout*Cin*KH*KW values: tiny next
 * to the activations, and the weights change every step anyway).
 *
 * Winograd (wino_ok: 3x3 stride-1 convolutions with 32+ channels, forward
 * and backward-data, float32) needs nChw16c activations: those calls copy
 * their input into that layout and their output back, which costs far less
 * than Winograd saves there (doc/perf.md); set_conv_impl("direct") (mode
 * RN_DNNL_DIRECT) keeps the direct kernels everywhere.
 *
 * One primitive per (direction, shapes, params, math) is created on first use
 * and kept in a small cache (most recently used first, at most CACHE_MAX); a
 * training step of the seed ResNet uses ~15 distinct shapes. Scratchpads and
 * reordered weights are allocated per call through rn_cpu_alloc, so memory
 * failures surface as errors (and the allocation-failure sweep reaches them).
 *
 * bfloat16 tensors (x, w, b, y all bf16; their gradients too) run oneDNN's
 * bf16 kernels directly (float32 accumulation, no conversion pass: the
 * weight gradient is reordered from the kernel's float32 into bf16 with the
 * weights' layout) where the capped ISA has AVX512-BF16 or AMX; elsewhere
 * such calls fall back and conv.c takes the converting path (bf16.c).
 *
 * Math: float32, or bfloat16 with float32 accumulation and float32 tensors
 * in and out when the mixed-precision policy asks for it (oneDNN's fpmath
 * mode: the library converts inputs on the fly; kernels exist where the CPU
 * has AVX512-BF16 or AMX). Where oneDNN offers no kernel for a case (float64,
 * or a create failure) the caller falls back to the im2col kernels: every
 * entry point returns RN_DNNL_FALLBACK then, with no error set.
 *
 * Determinism: oneDNN kernels give the same bits run to run for one thread
 * count; the filter gradient may differ between thread counts. Deterministic
 * mode uses the im2col kernels (thread-count independent); see conv.c.
 *
 * Forward epilogues (rn_dnnl_conv2d_fwd_post, for inference): oneDNN post-ops
 * add the convolution into the output's values (the residual add) and/or
 * apply a ReLU in the same pass; part of the primitive's key.
 *
 * What ran: every call notes the kernel that did the work, by direction: the
 * oneDNN implementation name (`brg_conv_fwd:avx2`, `jit_wino_4x3:avx512_core`:
 * the primitive descriptor's impl_info_str, algorithm and ISA), or
 * `im2col+openblas (why)` where the call falls back. rn_dnnl_last_kernel
 * gives the last call's, rn_dnnl_kernel_stat the calls per kernel since the
 * last reset (rn.cpu.conv_kernels(), rn.cpu.conv_kernel_stats(): the tests
 * assert against what ran, not against what was hoped for, since which
 * kernels exist depends on the CPU and the ISA cap).
 *
 * Not thread-safe: called from the Lua thread only (the data loader threads
 * never run ops). */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_dnnl.h"

#define CACHE_MAX 64

typedef enum { DIR_FWD = RN_CONV_FWD, DIR_BWD_DATA = RN_CONV_BWD_DATA, DIR_BWD_W = RN_CONV_BWD_FILTER } dir_t;

typedef struct {
  int dir, bf16, bias;
  int tbf16; /* the tensors themselves are bf16 (x/gx, w/gw, b/gb, y/gy) */
  int groups; /* >= 1; weights (G, O/G, C/G, KH, KW) in hwigo order, i.e. HWIO of (KH,KW,C/G,O) */
  int post; /* forward epilogue: RN_POST_SUM | RN_POST_RELU (backend.h), or 0 */
  int wino; /* Winograd wanted (wino_ok) */
  int threads; /* oneDNN sizes a primitive's work split and scratchpad for the
                * thread count at creation: a new count needs a new primitive */
  int64_t N, H, W, C, KH, KW, O, OH, OW;
  int sh, sw, dh, dw, pt, pb, pl, pr;
} key_t_;

typedef struct entry {
  key_t_ k;
  dnnl_primitive_t prim;
  dnnl_primitive_t wreorder;  /* hwio -> prim's weights (fwd, bwd data), prim's -> hwio (bwd w) */
  dnnl_memory_desc_t user_w;  /* (O,I,KH,KW) hwio, float32 */
  dnnl_memory_desc_t prim_w;  /* the layout the kernel uses */
  dnnl_memory_desc_t xmd, ymd, bmd, scratch; /* float32 user tensors */
  dnnl_memory_desc_t kxmd, kymd;              /* what the kernel reads (bf16 math: bf16) */
  dnnl_primitive_t xcvt, ycvt;                /* float32 -> bf16 of an input, or NULL */
  size_t wbytes, sbytes, xcbytes, ycbytes;
  /* Winograd (nChw16c activations; fwd and bwd-data): the kernel reads and
   * writes blocked copies of the act (x / gx) and out (y / gy) tensors;
   * *_in copy NHWC -> blocked before the kernel (x in fwd; gy in bwd-data,
   * and y in a fwd with the sum and relu post-ops), *_out blocked -> NHWC
   * after it (y in fwd, adding into y for the sum alone; gx in bwd-data);
   * NULL where not needed */
  int wino;
  dnnl_memory_desc_t wx_md, wy_md;
  dnnl_primitive_t wx_in, wy_in, wx_out, wy_out;
  size_t wxbytes, wybytes;
  char impl[RN_KERNEL_NAME_MAX]; /* oneDNN's implementation name; for a cached failure, why */
  struct entry *next;
} entry;

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static int engine_state; /* 0 untried, 1 ready, -1 unavailable */
static entry *cache;
static int cache_n;
static rn_dnnl_mode mode = RN_DNNL_AUTO;
static int verbose = -1;

/* ---- what ran ----------------------------------------------------------- */

#define STATS_MAX 64
static char last[3][RN_KERNEL_NAME_MAX];
static struct {
  char name[RN_KERNEL_NAME_MAX];
  int dir;
  long long calls;
} stats[STATS_MAX];
static int nstats;

static int muted; /* rn_dnnl_mute: calls made to measure are not noted */

static void note(int dir, const char *name) {
  if (muted) return;
  snprintf(last[dir], sizeof last[dir], "%s", name);
  for (int i = 0; i < nstats; i++)
    if (stats[i].dir == dir && !strcmp(stats[i].name, last[dir])) {
      stats[i].calls++;
      return;
    }
  if (nstats == STATS_MAX) return; /* a full table keeps its first kernels */
  snprintf(stats[nstats].name, sizeof stats[nstats].name, "%s", last[dir]);
  stats[nstats].dir = dir;
  stats[nstats++].calls = 1;
}

static void note_im2col(int dir, const char *why) {
  char b[RN_KERNEL_NAME_MAX];
  snprintf(b, sizeof b, "im2col+openblas (%.72s)", why);
  note(dir, b);
}

void rn_dnnl_note(int dir, const char *name) { note(dir, name); }
void rn_dnnl_mute(bool on) { muted = on; }

const char *rn_dnnl_last_kernel(int dir) {
  return dir >= 0 && dir < 3 && last[dir][0] ? last[dir] : NULL;
}

bool rn_dnnl_kernel_stat(int i, int *dir, const char **name, long long *calls) {
  if (i < 0 || i >= nstats) return false;
  *dir = stats[i].dir;
  *name = stats[i].name;
  *calls = stats[i].calls;
  return true;
}

void rn_dnnl_reset_kernel_stats(void) {
  nstats = 0;
  memset(last, 0, sizeof last);
}

void rn_dnnl_set_mode(rn_dnnl_mode m) { mode = m; }
rn_dnnl_mode rn_dnnl_get_mode(void) { return mode; }

static int ready(void) {
  if (engine_state) return engine_state > 0;
  engine_state = -1;
  if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) return 0;
  if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
    dnnl_engine_destroy(engine);
    return 0;
  }
  engine_state = 1;
  return 1;
}

bool rn_dnnl_available(void) { return ready(); }

static void entry_free(entry *e) {
  if (e->prim) dnnl_primitive_destroy(e->prim);
  if (e->wreorder) dnnl_primitive_destroy(e->wreorder);
  if (e->xcvt) dnnl_primitive_destroy(e->xcvt);
  if (e->ycvt) dnnl_primitive_destroy(e->ycvt);
  dnnl_primitive_t wp[4] = {e->wx_in, e->wy_in, e->wx_out, e->wy_out};
  for (int i = 0; i < 4; i++)
    if (wp[i]) dnnl_primitive_destroy(wp[i]);
  free(e);
}

void rn_dnnl_clear_cache(void) {
  while (cache) {
    entry *n = cache->next;
    entry_free(cache);
    cache = n;
  }
  cache_n = 0;
}

static const char *status_str(dnnl_status_t s) {
  switch (s) {
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented";
    case dnnl_runtime_error: return "runtime error";
    default: return "error";
  }
}

/* A reorder (layout and/or type conversion) primitive, or NULL; with sum,
 * one that adds into the destination's values (a sum post-op). */
static dnnl_primitive_t reorder_ex(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                   bool sum) {
  dnnl_primitive_desc_t rpd;
  dnnl_primitive_t r = NULL;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  if (sum && (dnnl_primitive_attr_create(&attr) || dnnl_post_ops_create(&po) ||
              dnnl_post_ops_append_sum(po, 1.0f) || dnnl_primitive_attr_set_post_ops(attr, po))) {
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return NULL;
  }
  if (po) dnnl_post_ops_destroy(po);
  if (!dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, attr)) {
    if (dnnl_primitive_create(&r, rpd)) r = NULL;
    dnnl_primitive_desc_destroy(rpd);
  }
  if (attr) dnnl_primitive_attr_destroy(attr);
  return r;
}

static dnnl_primitive_t reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to) {
  return reorder_ex(from, to, false);
}

/* Creates the primitive for k (with Winograd when wino); returns NULL (no
 * error set) when oneDNN has no kernel for it, with the reason in rejected
 * (RN_KERNEL_NAME_MAX bytes). */
static entry *create(const key_t_ *k, int wino, char *rejected) {
  entry *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->k = *k;
  e->wino = wino;
  dnnl_dims_t xd = {k->N, k->C, k->H, k->W}, yd = {k->N, k->O, k->OH, k->OW};
  /* weights: (O,I,KH,KW) hwio; grouped: (G,O/G,I/G,KH,KW) hwigo, the same
   * memory as our (KH,KW,Cin/G,Cout) */
  int G = k->groups, wnd = G > 1 ? 5 : 4;
  dnnl_dims_t wd = {k->O, k->C, k->KH, k->KW}, bd = {k->O};
  if (G > 1) {
    dnnl_dims_t wg = {G, k->O / G, k->C / G, k->KH, k->KW};
    memcpy(wd, wg, sizeof wg);
  }
  dnnl_format_tag_t wtag = G > 1 ? dnnl_hwigo : dnnl_hwio;
  dnnl_dims_t st = {k->sh, k->sw}, dil = {k->dh - 1, k->dw - 1};
  dnnl_dims_t pl = {k->pt, k->pl}, pr = {k->pb, k->pr};
  dnnl_memory_desc_t wany;
  dnnl_data_type_t kt = k->bf16 ? dnnl_bf16 : dnnl_f32; /* kernel input type */
  dnnl_data_type_t ut = k->tbf16 ? dnnl_bf16 : dnnl_f32; /* the tensors' type */
  dnnl_primitive_attr_t attr = NULL;
  dnnl_primitive_desc_t fwd_hint = NULL, pd = NULL;
  int ok = 0;
  if (dnnl_memory_desc_init_by_tag(&e->xmd, 4, xd, ut, dnnl_nhwc) ||
      dnnl_memory_desc_init_by_tag(&e->ymd, 4, yd, ut, dnnl_nhwc) ||
      dnnl_memory_desc_init_by_tag(&e->user_w, wnd, wd, ut, wtag) ||
      dnnl_memory_desc_init_by_tag(&wany, wnd, wd, kt, dnnl_format_tag_any) ||
      dnnl_memory_desc_init_by_tag(&e->bmd, 1, bd, ut, dnnl_x))
    goto done;
  /* bf16 math: the inputs the kernel reads are bf16 copies (x in fwd and
   * bwd-weights, gy in bwd-data and bwd-weights); outputs stay float32 */
  e->kxmd = e->xmd;
  e->kymd = e->ymd;
  if (k->bf16 && k->dir != DIR_BWD_DATA &&
      dnnl_memory_desc_init_by_tag(&e->kxmd, 4, xd, dnnl_bf16, dnnl_nhwc))
    goto done;
  if (k->bf16 && k->dir != DIR_FWD &&
      dnnl_memory_desc_init_by_tag(&e->kymd, 4, yd, dnnl_bf16, dnnl_nhwc))
    goto done;
  /* Winograd reads and writes nChw16c: the kernel's x and y descs are the
   * blocked ones; the copies are made in run() (float32 math only) */
  dnnl_memory_desc_t bx = e->xmd, by = e->ymd;
  if (wino && (dnnl_memory_desc_init_by_tag(&bx, 4, xd, dnnl_f32, dnnl_nChw16c) ||
               dnnl_memory_desc_init_by_tag(&by, 4, yd, dnnl_f32, dnnl_nChw16c)))
    goto done;
  if (dnnl_primitive_attr_create(&attr) ||
      dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))
    goto done;
  /* Winograd with the sum alone: the copy back to NHWC adds into y instead
   * (no copy of y into the blocked layout first) */
  bool sum_in_copy = wino && k->dir == DIR_FWD && k->post == RN_POST_SUM;
  if (k->post && !sum_in_copy) { /* y = relu?(conv + b (+ y)): oneDNN post-ops, in that order */
    dnnl_post_ops_t po;
    if (dnnl_post_ops_create(&po)) goto done;
    int bad = ((k->post & RN_POST_SUM) && dnnl_post_ops_append_sum(po, 1.0f)) ||
              ((k->post & RN_POST_RELU) &&
               dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f)) ||
              dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
    if (bad) goto done;
  }
  dnnl_alg_kind_t alg = wino ? dnnl_convolution_winograd : dnnl_convolution_direct;
  dnnl_convolution_desc_t fd;
  /* the forward desc (also the hint of the backward ones) with the kernel's input types */
  dnnl_memory_desc_t fx = wino ? bx : e->kxmd, fy = wino ? by : e->ymd;
  if (k->bf16) {
    if (dnnl_memory_desc_init_by_tag(&fx, 4, xd, dnnl_bf16, dnnl_nhwc)) goto done;
    if (k->dir != DIR_FWD && dnnl_memory_desc_init_by_tag(&fy, 4, yd, dnnl_bf16, dnnl_nhwc))
      goto done;
  }
  if (dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &fx, &wany,
                                                 k->bias ? &e->bmd : NULL, &fy, st, dil, pl,
                                                 pr))
    goto done;
  if (k->dir == DIR_FWD) {
    if (dnnl_primitive_desc_create(&pd, &fd, attr, engine, NULL)) goto done;
  } else {
    if (dnnl_primitive_desc_create(&fwd_hint, &fd, attr, engine, NULL)) goto done;
    dnnl_convolution_desc_t bd_;
    dnnl_memory_desc_t wf32;
    if (dnnl_memory_desc_init_by_tag(&wf32, wnd, wd, dnnl_f32, dnnl_format_tag_any)) goto done;
    if (k->dir == DIR_BWD_DATA) {
      if (dnnl_dilated_convolution_backward_data_desc_init(&bd_, alg, wino ? &bx : &e->kxmd,
                                                           &wany, wino ? &by : &e->kymd, st,
                                                           dil, pl, pr))
        goto done;
    } else if (dnnl_dilated_convolution_backward_weights_desc_init(
                   &bd_, alg, &e->kxmd, &wf32, k->bias ? &e->bmd : NULL, &e->kymd, st, dil,
                   pl, pr)) {
      goto done;
    }
    if (dnnl_primitive_desc_create(&pd, &bd_, attr, engine, fwd_hint)) goto done;
  }
  const char *impl = NULL;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  snprintf(e->impl, sizeof e->impl, "%s", impl ? impl : "?");
  /* the reference kernels are far slower than im2col: leave those cases to it */
  if (strstr(e->impl, "ref")) goto done;
  const dnnl_memory_desc_t *pw = dnnl_primitive_desc_query_md(
      pd, k->dir == DIR_BWD_W ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  if (!pw) goto done;
  e->prim_w = *pw;
  if (sp) e->scratch = *sp;
  e->sbytes = sp ? dnnl_memory_desc_get_size(sp) : 0;
  e->wbytes = dnnl_memory_desc_get_size(pw);
  if (dnnl_primitive_create(&e->prim, pd)) goto done;
  if (!dnnl_memory_desc_equal(&e->kxmd, &e->xmd) &&
      (e->xcbytes = dnnl_memory_desc_get_size(&e->kxmd),
       !(e->xcvt = reorder(&e->xmd, &e->kxmd))))
    goto done;
  if (!dnnl_memory_desc_equal(&e->kymd, &e->ymd) &&
      (e->ycbytes = dnnl_memory_desc_get_size(&e->kymd),
       !(e->ycvt = reorder(&e->ymd, &e->kymd))))
    goto done;
  if (!dnnl_memory_desc_equal(&e->prim_w, &e->user_w) &&
      !(e->wreorder = k->dir == DIR_BWD_W ? reorder(&e->prim_w, &e->user_w)
                                          : reorder(&e->user_w, &e->prim_w)))
    goto done;
  if (wino) { /* fwd: x in, y out; bwd data: gy in, gx out */
    bool fwd = k->dir == DIR_FWD, bwd_d = k->dir == DIR_BWD_DATA;
    e->wx_md = bx;
    e->wy_md = by;
    e->wxbytes = dnnl_memory_desc_get_size(&bx);
    e->wybytes = dnnl_memory_desc_get_size(&by);
    if ((!bwd_d && !(e->wx_in = reorder(&e->xmd, &bx))) ||
        ((!fwd || ((k->post & RN_POST_SUM) && !sum_in_copy)) &&
         !(e->wy_in = reorder(&e->ymd, &by))) ||
        (bwd_d && !(e->wx_out = reorder(&bx, &e->xmd))) ||
        (fwd && !(e->wy_out = reorder_ex(&by, &e->ymd, sum_in_copy))))
      goto done;
  }
  ok = 1;
done:
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (fwd_hint) dnnl_primitive_desc_destroy(fwd_hint);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!ok) {
    snprintf(rejected, RN_KERNEL_NAME_MAX, "oneDNN has only %.48s here",
             e->impl[0] ? e->impl : "no kernel");
    entry_free(e);
    return NULL;
  }
  if (verbose < 0) verbose = getenv("RN_DNNL_VERBOSE") != NULL;
  if (verbose)
    fprintf(stderr, "rn dnnl: %s (%lld,%lld,%lld,%lld) k%lldx%lld s%d g%d -> %lld %s%s%s%s\n",
            k->dir == DIR_FWD ? "fwd" : k->dir == DIR_BWD_DATA ? "bwd_data" : "bwd_w",
            (long long)k->N, (long long)k->H, (long long)k->W, (long long)k->C,
            (long long)k->KH, (long long)k->KW, k->sh, k->groups, (long long)k->O, e->impl,
            k->bf16 ? " (bf16 math)" : "", wino ? " (nChw16c copies)" : "",
            !k->post                   ? ""
            : k->post == RN_POST_SUM  ? " +sum"
            : k->post == RN_POST_RELU ? " +relu"
                                      : " +sum+relu");
  return e;
}

/* The cached entry for k, creating it; NULL only when out of memory. A
 * failed creation is cached too (prim NULL, impl the reason), so it is
 * tried once. */
static entry *lookup(const key_t_ *k) {
  entry **pp = &cache, *prev_last = NULL;
  for (entry *e = cache; e; pp = &e->next, e = e->next) {
    if (!memcmp(&e->k, k, sizeof *k)) {
      *pp = e->next; /* move to front */
      e->next = cache;
      cache = e;
      return e;
    }
  }
  char rejected[RN_KERNEL_NAME_MAX] = "oneDNN has no kernel here";
  entry *e = k->wino ? create(k, 1, rejected) : NULL;
  if (!e) e = create(k, 0, rejected); /* direct, also where Winograd has no kernel */
  if (!e) {
    e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->k = *k;
    snprintf(e->impl, sizeof e->impl, "%s", rejected);
  }
  e->next = cache;
  cache = e;
  if (++cache_n > CACHE_MAX) { /* drop the least recently used */
    entry *q = cache;
    while (q->next && q->next->next) q = q->next;
    prev_last = q->next;
    q->next = NULL;
    if (prev_last) entry_free(prev_last);
    cache_n--;
  }
  return e;
}

/* Whether Winograd is tried for k: float32 3x3 stride-1 undilated "same"
 * convolutions with 32 or more channels in and out (multiples of 16: its
 * nChw16c layout), forward and backward-data. Measured on the project's
 * AVX-512 machine (make bench-dnnl and the seed's training step, doc/
 * perf.md): faster than the direct kernels there, with the layout copies;
 * slower at 16 channels. The weight gradient stays direct: Winograd's was
 * faster alone at 64 channels but made the training step 3-8% slower. */
static int wino_ok(const key_t_ *k) {
  if (mode != RN_DNNL_AUTO || k->bf16 || k->dir == DIR_BWD_W || k->groups > 1) return 0;
  if (k->KH != 3 || k->KW != 3 || k->sh != 1 || k->sw != 1 || k->dh != 1 || k->dw != 1) return 0;
  if (k->pt != 1 || k->pb != 1 || k->pl != 1 || k->pr != 1) return 0;
  return k->C >= 32 && k->O >= 32 && k->C % 16 == 0 && k->O % 16 == 0;
}

static int key_init(key_t_ *k, int dir, const int64_t *xs, const rn_tensor *w, const int64_t *ys,
                    bool bias, const rn_conv_params *p) {
  memset(k, 0, sizeof *k); /* padding bytes too: keys are compared with memcmp */
  k->dir = dir;
  k->tbf16 = w->dtype == RN_BF16;
  k->bf16 = k->tbf16 || rn_math_precision() == RN_BF16;
  k->bias = bias;
  k->threads = omp_get_max_threads();
  k->N = xs[0]; k->H = xs[1]; k->W = xs[2]; k->C = xs[3];
  k->KH = w->shape[0]; k->KW = w->shape[1]; k->O = w->shape[3];
  k->groups = p->groups > 1 ? p->groups : 1;
  k->OH = ys[1]; k->OW = ys[2];
  k->sh = p->stride_h; k->sw = p->stride_w; k->dh = p->dil_h; k->dw = p->dil_w;
  k->pt = p->pad_top; k->pb = p->pad_bottom; k->pl = p->pad_left; k->pr = p->pad_right;
  k->wino = wino_ok(k);
  return k->N > 0 && k->OH > 0 && k->OW > 0 && k->O > 0 && k->C > 0;
}

/* Why oneDNN is not tried for this call, or NULL when it is. */
static const char *why_not(const rn_tensor *x) {
  if (mode == RN_DNNL_OFF) return "set_conv_impl im2col";
  if (x->dtype == RN_BF16 && !rn_cpu_has_bf16()) return "bfloat16 without AVX512-BF16/AMX";
  if (x->dtype != RN_F32 && x->dtype != RN_BF16) return rn_dtype_name(x->dtype);
  if (rn_is_deterministic()) return "deterministic mode";
  return ready() ? NULL : "oneDNN unavailable";
}

/* The entry to run for k in direction dir, noting the kernel; NULL (noted
 * as im2col) when the call falls back. */
static entry *pick(int dir, const rn_tensor *x, key_t_ *k, int ok_key) {
  const char *why = why_not(x);
  if (why) {
    note_im2col(dir, why);
    return NULL;
  }
  if (!ok_key) {
    note_im2col(dir, "empty tensor");
    return NULL;
  }
  entry *e = lookup(k);
  if (!e || !e->prim) {
    note_im2col(dir, e ? e->impl : "out of memory for oneDNN's cache");
    return NULL;
  }
  note(dir, e->impl);
  return e;
}

static int exec(entry *e, int nargs, dnnl_exec_arg_t *args, const char *op) {
  dnnl_status_t s = dnnl_primitive_execute(e->prim, stream, nargs, args);
  if (s == dnnl_success) s = dnnl_stream_wait(stream);
  if (s != dnnl_success) return rn_err("%s: oneDNN kernel %s failed: %s", op, e->impl, status_str(s));
  return 0;
}

/* Wraps p (NULL allowed for an empty desc) in a dnnl memory; returns 0 or -1. */
static int mem(dnnl_memory_t *m, const dnnl_memory_desc_t *md, const void *p, const char *op) {
  if (dnnl_memory_create(m, md, engine, (void *)p) != dnnl_success) {
    *m = NULL;
    return rn_err("%s: oneDNN memory object: out of memory", op);
  }
  return 0;
}

/* Runs one direction: x/gx (act), weights (w/gw), bias (b/gb, or NULL), y/gy (out). */
static int run(entry *e, const char *op, void *act, void *wt, void *bias, void *out) {
  int rc = -1;
  dnnl_memory_t m[10] = {0};
  void *wbuf = NULL, *sbuf = NULL, *xcb = NULL, *ycb = NULL, *wxb = NULL, *wyb = NULL;
  if ((e->xcvt && !(xcb = rn_cpu_alloc(e->xcbytes))) ||
      (e->ycvt && !(ycb = rn_cpu_alloc(e->ycbytes))) ||
      (e->wino && (!(wxb = rn_cpu_alloc(e->wxbytes)) || !(wyb = rn_cpu_alloc(e->wybytes)))))
    goto done;
  if (e->wreorder) {
    wbuf = rn_cpu_alloc(e->wbytes ? e->wbytes : 1);
    if (!wbuf) goto done;
  }
  if (e->sbytes) {
    sbuf = rn_cpu_alloc(e->sbytes);
    if (!sbuf) goto done;
  }
  /* m: 0 act, 1 user weights, 2 kernel weights, 3 bias, 4 out, 5 scratch */
  if (mem(&m[0], &e->xmd, act, op) || mem(&m[1], &e->user_w, wt, op) ||
      (wbuf && mem(&m[2], &e->prim_w, wbuf, op)) || (bias && mem(&m[3], &e->bmd, bias, op)) ||
      mem(&m[4], &e->ymd, out, op) || (sbuf && mem(&m[5], &e->scratch, sbuf, op)))
    goto done;
  dnnl_memory_t kw = wbuf ? m[2] : m[1], kx = m[0], ky = m[4];
  /* m[6], m[7]: bf16 copies of the act / out inputs */
  if (xcb) {
    if (mem(&m[6], &e->kxmd, xcb, op)) goto done;
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, m[0]}, {DNNL_ARG_TO, m[6]}};
    if (dnnl_primitive_execute(e->xcvt, stream, 2, r)) {
      rc = rn_err("%s: oneDNN bf16 conversion failed", op);
      goto done;
    }
    kx = m[6];
  }
  if (ycb) {
    if (mem(&m[7], &e->kymd, ycb, op)) goto done;
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, m[4]}, {DNNL_ARG_TO, m[7]}};
    if (dnnl_primitive_execute(e->ycvt, stream, 2, r)) {
      rc = rn_err("%s: oneDNN bf16 conversion failed", op);
      goto done;
    }
    ky = m[7];
  }
  /* m[8], m[9]: Winograd's blocked copies of act and out */
  dnnl_memory_t ka = m[0], ko = m[4]; /* what the kernel writes: act (bwd data), out (fwd) */
  if (e->wino) {
    if (mem(&m[8], &e->wx_md, wxb, op) || mem(&m[9], &e->wy_md, wyb, op)) goto done;
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, m[0]}, {DNNL_ARG_TO, m[8]}};
    dnnl_exec_arg_t q[2] = {{DNNL_ARG_FROM, m[4]}, {DNNL_ARG_TO, m[9]}};
    if ((e->wx_in && dnnl_primitive_execute(e->wx_in, stream, 2, r)) ||
        (e->wy_in && dnnl_primitive_execute(e->wy_in, stream, 2, q))) {
      rc = rn_err("%s: oneDNN layout reorder failed", op);
      goto done;
    }
    kx = ka = m[8];
    ky = ko = m[9];
  }
  dnnl_exec_arg_t a[6];
  int n = 0;
  if (e->k.dir != DIR_BWD_W && e->wreorder) {
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, m[1]}, {DNNL_ARG_TO, m[2]}};
    dnnl_status_t s = dnnl_primitive_execute(e->wreorder, stream, 2, r);
    if (s) { rc = rn_err("%s: oneDNN weight reorder failed: %s", op, status_str(s)); goto done; }
  }
  switch (e->k.dir) {
    case DIR_FWD:
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, kx};
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, kw};
      if (bias) a[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, m[3]};
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, ko};
      break;
    case DIR_BWD_DATA:
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, ka};
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, kw};
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, ky};
      break;
    default:
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, kx};
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_WEIGHTS, kw};
      if (bias) a[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, m[3]};
      a[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_DST, ky};
  }
  if (sbuf) a[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m[5]};
  if (exec(e, n, a, op) < 0) goto done;
  if (e->wx_out || e->wy_out) {
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, e->wx_out ? m[8] : m[9]},
                            {DNNL_ARG_TO, e->wx_out ? m[0] : m[4]}};
    dnnl_status_t s = dnnl_primitive_execute(e->wx_out ? e->wx_out : e->wy_out, stream, 2, r);
    if (s == dnnl_success) s = dnnl_stream_wait(stream);
    if (s) { rc = rn_err("%s: oneDNN layout reorder failed: %s", op, status_str(s)); goto done; }
  }
  if (e->k.dir == DIR_BWD_W && e->wreorder) {
    dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, m[2]}, {DNNL_ARG_TO, m[1]}};
    dnnl_status_t s = dnnl_primitive_execute(e->wreorder, stream, 2, r);
    if (s == dnnl_success) s = dnnl_stream_wait(stream);
    if (s) { rc = rn_err("%s: oneDNN weight reorder failed: %s", op, status_str(s)); goto done; }
  }
  rc = 0;
done:
  for (int i = 0; i < 10; i++)
    if (m[i]) dnnl_memory_destroy(m[i]);
  rn_cpu_free(wbuf);
  rn_cpu_free(sbuf);
  rn_cpu_free(xcb);
  rn_cpu_free(ycb);
  rn_cpu_free(wxb);
  rn_cpu_free(wyb);
  return rc;
}

int rn_dnnl_conv2d_fwd(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                       const rn_conv_params *p) {
  return rn_dnnl_conv2d_fwd_post(y, x, w, b, p, 0);
}

int rn_dnnl_conv2d_fwd_post(rn_tensor *y, const rn_tensor *x, const rn_tensor *w,
                            const rn_tensor *b, const rn_conv_params *p, int post) {
  key_t_ k;
  int ok_key = key_init(&k, DIR_FWD, x->shape, w, y->shape, b != NULL, p);
  k.post = post;
  entry *e = pick(DIR_FWD, x, &k, ok_key);
  if (!e) return RN_DNNL_FALLBACK;
  return run(e, "conv2d", rn_ptr(x), rn_ptr(w), b ? rn_ptr(b) : NULL, rn_ptr(y));
}

int rn_dnnl_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                            const rn_conv_params *p) {
  key_t_ k;
  int ok_key = key_init(&k, DIR_BWD_DATA, gx->shape, w, gy->shape, false, p);
  entry *e = pick(DIR_BWD_DATA, gx, &k, ok_key);
  if (!e) return RN_DNNL_FALLBACK;
  return run(e, "conv2d backward data", rn_ptr(gx), rn_ptr(w), NULL, rn_ptr(gy));
}

int rn_dnnl_conv2d_bwd_filter(rn_tensor *gw, rn_tensor *gb, const rn_tensor *gy,
                              const rn_tensor *x, const rn_conv_params *p) {
  key_t_ k;
  int ok_key = key_init(&k, DIR_BWD_W, x->shape, gw, gy->shape, gb != NULL, p);
  entry *e = pick(DIR_BWD_W, x, &k, ok_key);
  if (!e) return RN_DNNL_FALLBACK;
  return run(e, "conv2d backward filter", rn_ptr(x), rn_ptr(gw), gb ? rn_ptr(gb) : NULL,
             rn_ptr(gy));
}
