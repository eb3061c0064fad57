/* wino.c (cpu) - rnlua's own Winograd convolution: F(4x4,3x3), float32,
 * NHWC activations and HWIO weights (as conv.c):
 *   forward        y (N,OH,OW,O) = conv(x (N,H,W,C), w (3,3,C,O)) (+ b, + epilogue)
 *   backward data  gx (N,H,W,C) = conv(gy (N,OH,OW,O), w~) with w~ (3,3,O,C)
 *                  the flipped, transposed filter, w~[a][b][o][c] =
 *                  w[2-a][2-b][c][o], and padding 2-pt, 2-pl
 * for 3x3 stride-1 undilated convolutions with groups == 1 (any padding).
 *
 * Why ours: oneDNN ships Winograd kernels for AVX-512 only, and its direct
 * AVX2 kernels are weak at 16-64 channels; F(4x4,3x3) needs 36 multiplies
 * per 4x4 output tile and channel pair against 144 for the direct method
 * (4x fewer), the transforms costing O(C + O) per tile against the GEMM's
 * O(C*O).
 *
 * Accuracy: F(4x4,3x3) with points 0, +-1, +-2, inf: the filter transform
 * is done in double and rounded once; the float32 error of the whole
 * convolution stays below ~1e-5 relative to the output's scale for
 * unit-scale data at up to 256 input channels (tests/test_wino.lua measures
 * it against the float64 reference; F(6x6,3x3) was not taken: its
 * transforms' larger coefficients (up to 5.6 and 1/90 in G) cost about one
 * more decimal digit, as in Lavin & Gray and oneDNN's choice of 4x3).
 *
 * The work (wino.h): the output's 4x4 tiles in blocks of T tiles (T sized so
 * a block's transformed input V and product M stay in the L2 cache:
 * L2_BUDGET), OpenMP threads taking whole blocks, each running the ISA's
 * block kernel (wino_kern.h: input transform fused with the tile loads, 36
 * GEMMs against the transformed filter, output transform fused with the
 * stores). Per-image cost is then the same at any batch size.
 *
 * ISA: the AVX-512 kernel when the capped features (rn_cpu_features_get:
 * ONEDNN_MAX_CPU_ISA honoured) have AVX-512F, else the AVX2 one when they
 * have AVX2 and FMA, else none (oneDNN / im2col run as before).
 *
 * Filter transforms U (36, Cin, Op) are cached per weight tensor and
 * direction, keyed by the weights' storage, offset, shape and version (the
 * counter every in-place change bumps), with a copy of the values as a
 * guard (a storage freed and reused at the same address and version, or a
 * change that bypassed the counter, cannot hit): recomputed only when the
 * weights change, i.e. once per optimizer step. Least recently used entries
 * go past CACHE_MAX.
 *
 * Choice. AUTO (the default) is a fixed rule, so that a script gives the
 * same bits every run: ours wherever it applies with 16+ channels in and out
 * (measured on the project's machine, doc/perf.md: ours was faster than
 * oneDNN's direct AVX2 kernels at 16-64 channels and than its AVX-512
 * Winograd at 32-64; oneDNN wins the 3-channel stem). BENCHMARK: the first
 * call of each (direction, shapes, padding, bias, threads, ISA) runs ours
 * and oneDNN's kernel twice each and keeps the faster (its result is the
 * call's; like cudnn.benchmark; the choice can differ between processes);
 * the choices are listed by rn_wino_choice (rn.cpu.conv_choices()). The
 * kernel that ran is noted like oneDNN's (rn.cpu.conv_kernels(): e.g.
 * "rn_wino_f4x3:avx2"). ALWAYS runs ours wherever it applies; NEVER leaves
 * all to oneDNN / im2col. Deterministic mode runs neither (conv.c's im2col:
 * bitwise the same for any thread count and run to run, which a timed
 * choice is not). Ours alone is deterministic for any thread count.
 *
 * Not thread-safe: called from the Lua thread only. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_dnnl.h"
#include "wino.h"

#define FP(t) ((float *)(void *)rn_ptr(t))

#define CACHE_MAX 48
#define CHOICES_MAX 128
#define L2_BUDGET ((size_t)320 << 10) /* bytes of V + M per block */
#define T_MAX 192                     /* tiles per block at most */

static rn_wino_mode mode = RN_WINO_AUTO;
static int verbose = -1;

void rn_wino_set_mode(rn_wino_mode m) { mode = m; }
rn_wino_mode rn_wino_get_mode(void) { return mode; }

static const rn_wino_isa *isa_now(void) {
  const rn_cpu_features *f = rn_cpu_features_get();
  if (f->avx512f && f->fma && rn_wino_isa_avx512()) return rn_wino_isa_avx512();
  if (f->avx2 && f->fma && rn_wino_isa_avx2()) return rn_wino_isa_avx2();
  return NULL;
}

/* ---- filter transforms ---------------------------------------------------- */

typedef struct fentry {
  int dir;
  const rn_storage *st;
  uint64_t version;
  int64_t offset, C, O; /* w (3,3,C,O) */
  int vl;
  float *copy;          /* w's values when transformed */
  float *U;             /* (36, Cin, Op) of the direction */
  struct fentry *next;
} fentry;

static fentry *fcache;
static int fcache_n;

static void fentry_free(fentry *e) {
  free(e->copy);
  free(e->U);
  free(e);
}

/* U (36, Ci, Op) = G g G^T for each (input ci, output o) pair, g the 3x3
 * filter taken from w (3,3,C,O): g[a][b] = w[a][b][ci][o] forward, and
 * w[2-a][2-b][o][ci] (Ci = O, output channels C) for the backward data. */
static void filter_transform(float *U, const float *w, int64_t C, int64_t O, int dir,
                             int64_t Op) {
  static const double G[6][3] = {{1. / 4, 0, 0},          {-1. / 6, -1. / 6, -1. / 6},
                                 {-1. / 6, 1. / 6, -1. / 6}, {1. / 24, 1. / 12, 1. / 6},
                                 {1. / 24, -1. / 12, 1. / 6}, {0, 0, 1}};
  int64_t Ci = dir == RN_CONV_FWD ? C : O, Co = dir == RN_CONV_FWD ? O : C;
  memset(U, 0, sizeof(float) * 36 * (size_t)(Ci * Op));
#pragma omp parallel for schedule(static) if (Ci * Co > 4096)
  for (int64_t ci = 0; ci < Ci; ci++)
    for (int64_t co = 0; co < Co; co++) {
      double g[3][3], t[6][3];
      for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
          g[a][b] = dir == RN_CONV_FWD ? w[((a * 3 + b) * C + ci) * O + co]
                                       : w[(((2 - a) * 3 + (2 - b)) * C + co) * O + ci];
      for (int i = 0; i < 6; i++)
        for (int b = 0; b < 3; b++) t[i][b] = G[i][0] * g[0][b] + G[i][1] * g[1][b] + G[i][2] * g[2][b];
      for (int i = 0; i < 6; i++)
        for (int k = 0; k < 6; k++)
          U[((int64_t)(i * 6 + k) * Ci + ci) * Op + co] =
              (float)(t[i][0] * G[k][0] + t[i][1] * G[k][1] + t[i][2] * G[k][2]);
    }
}

/* The cached transform of w for dir (computing it when missing or stale);
 * NULL after rn_err. */
static const float *filter_get(const rn_tensor *w, int dir, int64_t Op, int vl, const char *op) {
  int64_t C = w->shape[2], O = w->shape[3], n = 9 * C * O;
  const float *wp = FP(w);
  fentry **pp = &fcache;
  for (fentry *e = fcache; e; pp = &e->next, e = e->next) {
    if (e->dir == dir && e->st == w->st && e->offset == w->offset && e->C == C && e->O == O &&
        e->vl == vl) {
      *pp = e->next; /* move to front */
      e->next = fcache;
      fcache = e;
      if (e->version != w->st->version || memcmp(e->copy, wp, sizeof(float) * (size_t)n)) {
        memcpy(e->copy, wp, sizeof(float) * (size_t)n);
        e->version = w->st->version;
        filter_transform(e->U, wp, C, O, dir, Op);
      }
      return e->U;
    }
  }
  int64_t Ci = dir == RN_CONV_FWD ? C : O;
  fentry *e = calloc(1, sizeof *e);
  if (e) {
    e->copy = malloc(sizeof(float) * (size_t)n);
    e->U = malloc(sizeof(float) * 36 * (size_t)(Ci * Op));
  }
  if (!e || !e->copy || !e->U) {
    if (e) fentry_free(e);
    rn_err("%s: out of memory for the Winograd filter transform (%lld bytes)", op,
           (long long)(144 * Ci * Op));
    return NULL;
  }
  e->dir = dir;
  e->st = w->st;
  e->version = w->st->version;
  e->offset = w->offset;
  e->C = C;
  e->O = O;
  e->vl = vl;
  memcpy(e->copy, wp, sizeof(float) * (size_t)n);
  filter_transform(e->U, wp, C, O, dir, Op);
  e->next = fcache;
  fcache = e;
  if (++fcache_n > CACHE_MAX) { /* drop the least recently used */
    fentry *q = fcache;
    while (q->next && q->next->next) q = q->next;
    if (q->next) fentry_free(q->next);
    q->next = NULL;
    fcache_n--;
  }
  return e->U;
}

/* ---- running one convolution ------------------------------------------------ */

/* x (N,H,W,C) -> y (N,OH,OW,O) with the transformed filter U; 0 or -1. */
static int run(const rn_wino_isa *isa, const float *x, float *y, const float *U,
               const float *bias, int64_t N, int64_t H, int64_t W, int64_t C, int64_t O,
               int64_t OH, int64_t OW, int64_t pt, int64_t pl, int post, const char *op) {
  rn_wino_job j = {.N = N, .H = H, .W = W, .C = C, .O = O, .OH = OH, .OW = OW, .pt = pt,
                   .pl = pl, .x = x, .y = y, .U = U, .post = post};
  j.Op = (O + isa->vl - 1) / isa->vl * isa->vl;
  j.th = (OH + 3) / 4;
  j.tw = (OW + 3) / 4;
  int64_t tiles = N * j.th * j.tw;
  if (tiles == 0 || O == 0) return 0;
  /* T: V (36,Tp,C) and M (36,Tp,Op) within L2_BUDGET, a multiple of 6, and
   * at least 4 blocks per thread where the tiles allow */
  int nthr = omp_get_max_threads();
  int64_t T = (int64_t)(L2_BUDGET / (36 * sizeof(float) * (size_t)(C + j.Op))) / 6 * 6;
  if (T > T_MAX) T = T_MAX;
  while (T > 6 && (tiles + T - 1) / T < 4 * nthr) T -= 6;
  if (T < 6) T = 6;
  int64_t nb = (tiles + T - 1) / T;
  if (nthr > nb) nthr = (int)nb;
  size_t vsz = 36 * (size_t)(T * C), msz = 36 * (size_t)(T * j.Op);
  float *buf = rn_cpu_alloc(sizeof(float) * ((vsz + msz) * (size_t)nthr + (size_t)j.Op));
  if (!buf) return rn_err("%s: out of memory for the Winograd buffers", op);
  if (bias) {
    float *bp = buf + (vsz + msz) * (size_t)nthr;
    memset(bp, 0, sizeof(float) * (size_t)j.Op);
    memcpy(bp, bias, sizeof(float) * (size_t)O);
    j.bias = bp;
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (nthr > 1)
  for (int64_t b = 0; b < nb; b++) {
    float *V = buf + (vsz + msz) * (size_t)omp_get_thread_num(), *M = V + vsz;
    int64_t t0 = b * T;
    isa->block(&j, t0, tiles - t0 < T ? tiles - t0 : T, V, M);
  }
  rn_cpu_free(buf);
  return 0;
}

/* ---- per-shape choice ------------------------------------------------------- */

typedef struct {
  int dir, post, bias, threads, vl;
  int64_t N, H, W, C, O, OH, OW;
  int pt, pb, pl, pr;
} ckey;

static struct {
  ckey k;
  double ours_ms, dnnl_ms;
  bool ours;
  char shape[96];
} choices[CHOICES_MAX];
static int nchoices;

void rn_wino_clear_cache(void) {
  while (fcache) {
    fentry *n = fcache->next;
    fentry_free(fcache);
    fcache = n;
  }
  fcache_n = 0;
  nchoices = 0;
}

bool rn_wino_choice(int i, int *dir, const char **shape, double *ours_ms, double *onednn_ms,
                    bool *ours) {
  if (i < 0 || i >= nchoices) return false;
  *dir = choices[i].k.dir;
  *shape = choices[i].shape;
  *ours_ms = choices[i].ours_ms;
  *onednn_ms = choices[i].dnnl_ms;
  *ours = choices[i].ours;
  return true;
}

/* Whether ours applies (float32, 3x3, stride 1, undilated, ungrouped, the
 * float32 math policy, not deterministic mode) and an ISA kernel exists. */
static const rn_wino_isa *applies(const rn_tensor *x, const rn_tensor *w, const rn_conv_params *p) {
  if (mode == RN_WINO_NEVER || rn_dnnl_get_mode() == RN_DNNL_OFF) return NULL;
  if (x->dtype != RN_F32 || w->dtype != RN_F32 || rn_math_precision() != RN_F32) return NULL;
  if (rn_is_deterministic()) return NULL;
  if ((p->groups > 1) || w->shape[0] != 3 || w->shape[1] != 3 || p->stride_h != 1 ||
      p->stride_w != 1 || p->dil_h != 1 || p->dil_w != 1)
    return NULL;
  return isa_now();
}

typedef struct {
  int dir, post;
  rn_tensor *act, *out; /* x, y (fwd); gx, gy (bwd data) */
  const rn_tensor *w, *b;
  const rn_conv_params *p;
  const rn_wino_isa *isa;
  const char *op;
} call;

static int run_ours(const call *c) {
  const rn_tensor *w = c->w;
  int64_t C = w->shape[2], O = w->shape[3], vl = c->isa->vl;
  const rn_tensor *a = c->act, *o = c->out;
  if (c->dir == RN_CONV_FWD) {
    int64_t Op = (O + vl - 1) / vl * vl;
    const float *U = filter_get(w, RN_CONV_FWD, Op, (int)vl, c->op);
    if (!U) return -1;
    return run(c->isa, FP(a), FP(o), U, c->b ? FP(c->b) : NULL, a->shape[0],
               a->shape[1], a->shape[2], C, O, o->shape[1], o->shape[2], c->p->pad_top,
               c->p->pad_left, c->post, c->op);
  }
  int64_t Cp = (C + vl - 1) / vl * vl; /* gx's channels are the GEMM's outputs */
  const float *U = filter_get(w, RN_CONV_BWD_DATA, Cp, (int)vl, c->op);
  if (!U) return -1;
  return run(c->isa, FP(o), FP(a), U, NULL, o->shape[0], o->shape[1], o->shape[2], O, C,
             a->shape[1], a->shape[2], 2 - c->p->pad_top, 2 - c->p->pad_left, 0, c->op);
}

/* oneDNN's kernel for the call: 0, -1, or RN_DNNL_FALLBACK */
static int run_dnnl(const call *c) {
  if (c->dir == RN_CONV_FWD)
    return rn_dnnl_conv2d_fwd_post(c->out, c->act, c->w, c->b, c->p, c->post);
  return rn_dnnl_conv2d_bwd_data(c->act, c->out, c->w, c->p);
}

static void describe(char *s, size_t n, const ckey *k) {
  snprintf(s, n, "%s (%lld,%lld,%lld,%lld)->(%lld,%lld,%lld,%lld) pad %d,%d,%d,%d%s%s",
           k->dir == RN_CONV_FWD ? "fwd" : "bwd_data", (long long)k->N, (long long)k->H,
           (long long)k->W, (long long)k->C, (long long)k->N, (long long)k->OH,
           (long long)k->OW, (long long)k->O, k->pt, k->pb, k->pl, k->pr,
           k->post & RN_POST_SUM ? " +sum" : "", k->post & RN_POST_RELU ? " +relu" : "");
}

/* Times f(c) (ms); restores the destination first when it is also an input
 * (the sum epilogue) from saved. Returns the rc of f. */
static int timed(int (*f)(const call *), const call *c, const float *saved, double *ms) {
  if (saved) memcpy(FP(c->out), saved, sizeof(float) * (size_t)rn_numel(c->out));
  double t0 = omp_get_wtime();
  int rc = f(c);
  *ms = (omp_get_wtime() - t0) * 1e3;
  return rc;
}

/* BENCHMARK: whether ours runs for c, measuring both on the first call of the
 * shape; -1 after rn_err. The measurement leaves c's result in place when
 * the choice is oneDNN's (*done set). */
static int choose(const call *c, bool *done) {
  ckey k;
  memset(&k, 0, sizeof k); /* compared with memcmp */
  const rn_tensor *x = c->act, *y = c->out;
  k.dir = c->dir; k.bias = c->b != NULL; /* the epilogue is not part of the key: a
   * fused forward runs the kernel its plain twin runs (measured by whichever
   * comes first), so both give the same bits */
  k.threads = omp_get_max_threads(); k.vl = c->isa->vl;
  k.N = x->shape[0]; k.H = x->shape[1]; k.W = x->shape[2]; k.C = x->shape[3];
  k.O = y->shape[3]; k.OH = y->shape[1]; k.OW = y->shape[2];
  k.pt = c->p->pad_top; k.pb = c->p->pad_bottom; k.pl = c->p->pad_left; k.pr = c->p->pad_right;
  *done = false;
  for (int i = 0; i < nchoices; i++)
    if (!memcmp(&choices[i].k, &k, sizeof k)) return choices[i].ours;
  /* measure: oneDNN then ours, twice, each timed on its second run */
  float *saved = NULL;
  if (c->post & RN_POST_SUM) {
    saved = rn_cpu_alloc(sizeof(float) * (size_t)rn_numel(y));
    if (!saved) return rn_err("%s: out of memory", c->op);
    memcpy(saved, FP(y), sizeof(float) * (size_t)rn_numel(y));
  }
  double td = -1, to = 0, t;
  rn_dnnl_mute(true);
  int rd = timed(run_dnnl, c, saved, &t);
  if (rd == 0) rd = timed(run_dnnl, c, saved, &td);
  rn_dnnl_mute(false);
  int ro = rd < 0 ? -1 : timed(run_ours, c, saved, &t);
  if (ro == 0) ro = timed(run_ours, c, saved, &to);
  bool ours = rd == RN_DNNL_FALLBACK || to < td;
  /* ours ran last: its result is in place; for oneDNN's the caller runs it
   * again (noted), from the destination's values on entry */
  if (!ours && saved) memcpy(FP(y), saved, sizeof(float) * (size_t)rn_numel(y));
  rn_cpu_free(saved);
  if (rd < 0 || ro < 0) return -1;
  if (nchoices < CHOICES_MAX) {
    choices[nchoices].k = k;
    choices[nchoices].ours_ms = to;
    choices[nchoices].dnnl_ms = rd == RN_DNNL_FALLBACK ? -1 : td;
    choices[nchoices].ours = ours;
    describe(choices[nchoices].shape, sizeof choices[nchoices].shape, &k);
    nchoices++;
  }
  if (verbose < 0) verbose = getenv("RN_WINO_VERBOSE") != NULL;
  if (verbose) {
    char s[96];
    describe(s, sizeof s, &k);
    fprintf(stderr, "rn wino: %s: ours %.3f ms, oneDNN %.3f ms -> %s\n", s, to, td,
            ours ? c->isa->name : "oneDNN");
  }
  *done = ours;
  return ours;
}

static int dispatch(call *c) {
  c->isa = applies(c->act, c->w, c->p);
  if (!c->isa) return RN_WINO_SKIP;
  if (rn_numel(c->act) == 0 || rn_numel(c->out) == 0 || rn_numel(c->w) == 0) return RN_WINO_SKIP;
  if (mode == RN_WINO_AUTO) { /* the fixed rule: 16+ channels on both sides */
    const rn_tensor *w = c->w;
    if (w->shape[2] < 16 || w->shape[3] < 16) return RN_WINO_SKIP;
  }
  if (mode == RN_WINO_BENCHMARK && rn_dnnl_available()) {
    bool done;
    int r = choose(c, &done);
    if (r < 0) return -1;
    if (!r) return RN_WINO_SKIP; /* oneDNN's: the caller runs it */
    if (done) {
      rn_dnnl_note(c->dir, c->isa->name);
      return 0;
    }
  }
  int rc = run_ours(c);
  if (rc == 0) rn_dnnl_note(c->dir, c->isa->name);
  return rc;
}

int rn_wino_conv2d_fwd(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                       const rn_conv_params *p, int post) {
  call c = {.dir = RN_CONV_FWD, .post = post, .act = (rn_tensor *)x, .out = y, .w = w, .b = b,
            .p = p, .op = "conv2d"};
  return dispatch(&c);
}

int rn_wino_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                            const rn_conv_params *p) {
  call c = {.dir = RN_CONV_BWD_DATA, .act = gx, .out = (rn_tensor *)gy, .w = w, .p = p,
            .op = "conv2d backward data"};
  return dispatch(&c);
}
