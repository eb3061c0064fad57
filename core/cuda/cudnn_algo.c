/* cudnn_algo.c (cuda) - a convolution as cuDNN sees it: the geometry
 * (shapes, pads, the cache key), its legacy descriptors, and the algorithm
 * chosen once per shape (heuristics, or $RN_CUDNN_FIND=1 measurements) and
 * cached with its layout, math and workspace. The rules (determinism,
 * overrides, TF32, bf16 math, NCHW fallback) are in cudnn.c's header.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudnn_int.h"

/* ---- geometry ------------------------------------------------------------ */




static bool fits(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* From x's shape xs (N,H,W,C), w (KH,KW,C/G,O), y's shape ys (N,OH,OW,O). */
int rn_dnn_geom_init(cgeom *g, const int64_t *xs, const rn_tensor *w, const int64_t *ys,
                      const rn_conv_params *p, const char *op) {
  if (w->dtype != RN_F32 && w->dtype != RN_F64 && w->dtype != RN_BF16)
    return rn_err("%s: dtype %s is not supported on cuda (float32, float64, bfloat16)", op,
                  rn_dtype_name(w->dtype));
  if (w->ndim != 4) return rn_err("%s: weight must be 4-d (KH,KW,Cin,Cout)", op);
  g->N = xs[0]; g->H = xs[1]; g->W = xs[2]; g->C = xs[3];
  g->KH = w->shape[0]; g->KW = w->shape[1]; g->O = w->shape[3];
  g->OH = ys[1]; g->OW = ys[2];
  int64_t G = p->groups > 1 ? p->groups : 1;
  g->CW = g->C / G;
  int pt = p->pad_top, pb = p->pad_bottom, pl = p->pad_left, pr = p->pad_right;
  g->pt = pt; g->pb = pb; g->pl = pl; g->pr = pr;
  g->es = rn_dtype_size(w->dtype);
  if (p->stride_h < 1 || p->stride_w < 1 || p->dil_h < 1 || p->dil_w < 1)
    return rn_err("%s: stride (%d,%d) and dilation (%d,%d) must be >= 1", op, p->stride_h,
                  p->stride_w, p->dil_h, p->dil_w);
  if (pt < 0 || pb < 0 || pl < 0 || pr < 0)
    return rn_err("%s: padding (top %d, bottom %d, left %d, right %d) must be >= 0", op, pt, pb,
                  pl, pr);
  int64_t eh = g->H + pt + pb - (int64_t)p->dil_h * (g->KH - 1) - 1;
  int64_t ew = g->W + pl + pr - (int64_t)p->dil_w * (g->KW - 1) - 1;
  int64_t oh = eh < 0 ? 0 : eh / p->stride_h + 1, ow = ew < 0 ? 0 : ew / p->stride_w + 1;
  if (w->shape[2] * G != g->C || g->O % G || ys[0] != g->N || ys[3] != g->O || oh != g->OH ||
      ow != g->OW)
    return rn_err("%s: shapes do not agree: input (%lld,%lld,%lld,%lld), weight "
                  "(%lld,%lld,%lld,%lld), output (%lld,%lld,%lld,%lld), expected output "
                  "(%lld,%lld,%lld,%lld), groups %lld", op, (long long)xs[0], (long long)xs[1],
                  (long long)xs[2], (long long)xs[3], (long long)w->shape[0],
                  (long long)w->shape[1], (long long)w->shape[2], (long long)w->shape[3],
                  (long long)ys[0], (long long)ys[1], (long long)ys[2], (long long)ys[3],
                  (long long)g->N, (long long)oh, (long long)ow, (long long)g->O, (long long)G);
  g->asym = pt != pb || pl != pr;
  g->nchw = w->dtype == RN_F64;
  g->native = w->dtype == RN_BF16;
  g->bf16 = g->native;
  int64_t hp = g->asym ? g->H + pt + pb : g->H, wp = g->asym ? g->W + pl + pr : g->W;
  int64_t big = g->N * hp * wp * g->C, ybig = g->N * g->OH * g->OW * g->O;
  if (!fits(big) || !fits(ybig) || !fits(g->KH * g->KW * g->CW * g->O) || !fits(hp) ||
      !fits(wp))
    return rn_err("%s: tensors of more than %d elements are not supported by the cuDNN path "
                  "(input %lld, output %lld elements)", op, INT_MAX, (long long)big,
                  (long long)ybig);
  g->empty = g->N == 0 || g->C == 0 || g->O == 0 || g->OH == 0 || g->OW == 0;
  conv_key *k = &g->key;
  memset(k, 0, sizeof *k);
  k->dt = (int)w->dtype;
  k->n = (int)g->N; k->c = (int)g->C; k->h = (int)hp; k->w = (int)wp;
  k->k = (int)g->O; k->r = (int)g->KH; k->s = (int)g->KW;
  k->groups = (int)G;
  k->ph = g->asym ? 0 : pt;
  k->pw = g->asym ? 0 : pl;
  k->sh = p->stride_h; k->sw = p->stride_w; k->dh = p->dil_h; k->dw = p->dil_w;
  return 0;
}

/* ---- descriptors --------------------------------------------------------- */


/* Destroys every descriptor made. check: 0, or -1 + rn_err for a failure
 * (the others are destroyed all the same); !check (on an error path, whose
 * first error must stand): statuses ignored, returns 0. */
int rn_dnn_descs_free(descs *d, bool check) {
  if (d->cached) { /* the cache's: destroyed when its entry is dropped */
    memset(d, 0, sizeof *d);
    return 0;
  }
  cudnnStatus_t st[4] = {CUDNN_STATUS_SUCCESS, CUDNN_STATUS_SUCCESS, CUDNN_STATUS_SUCCESS,
                         CUDNN_STATUS_SUCCESS};
  if (d->x) st[0] = rn_dnn.cudnnDestroyTensorDescriptor(d->x);
  if (d->y) st[1] = rn_dnn.cudnnDestroyTensorDescriptor(d->y);
  if (d->w) st[2] = rn_dnn.cudnnDestroyFilterDescriptor(d->w);
  if (d->conv) st[3] = rn_dnn.cudnnDestroyConvolutionDescriptor(d->conv);
  memset(d, 0, sizeof *d);
  static const char *const what[4] = {"cudnnDestroyTensorDescriptor(x)",
                                       "cudnnDestroyTensorDescriptor(y)",
                                       "cudnnDestroyFilterDescriptor(w)",
                                       "cudnnDestroyConvolutionDescriptor(conv)"};
  for (int i = 0; check && i < 4; i++)
    if (rn_dnn_check(st[i], what[i], __FILE__, __LINE__) < 0) return -1;
  return 0;
}


/* the math type asked of cuDNN: tensor cores for bfloat16 math; plain FMA
 * for float32 (no TF32) unless allowed; the default for float64 */
static cudnnMathType_t wanted_math(const cgeom *g) {
  if (g->bf16) return CUDNN_TENSOR_OP_MATH;
  return g->key.dt == RN_F32 && !rn_dnn_tf32_allowed() ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
}

/* x, y, w descriptors in g's data type (bfloat16 in bf16 math), the
 * convolution's compute type float32 in bf16 math (cuDNN's PSEUDO_BFLOAT16_CONFIG:
 * bf16 operands, float accumulation), else the data type */
int rn_dnn_descs_make(descs *d, const cgeom *g) {
  const conv_key *k = &g->key;
  cudnnDataType_t dt = g->bf16 ? CUDNN_DATA_BFLOAT16
                       : k->dt == RN_F32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
  cudnnDataType_t ct = g->bf16 ? CUDNN_DATA_FLOAT : dt;
  cudnnTensorFormat_t f = g->nchw ? CUDNN_TENSOR_NCHW : CUDNN_TENSOR_NHWC;
  memset(d, 0, sizeof *d);
  if (DNNF(cudnnCreateTensorDescriptor, &d->x) < 0 ||
      DNNF(cudnnCreateTensorDescriptor, &d->y) < 0 ||
      DNNF(cudnnCreateFilterDescriptor, &d->w) < 0 ||
      DNNF(cudnnCreateConvolutionDescriptor, &d->conv) < 0 ||
      /* x (N,C,H,W) in NHWC (NCHW) memory order; y likewise; filter KRSC (KCRS) */
      DNNF(cudnnSetTensor4dDescriptor, d->x, f, dt, k->n, k->c, k->h, k->w) < 0 ||
      DNNF(cudnnSetTensor4dDescriptor, d->y, f, dt, k->n, k->k, (int)g->OH, (int)g->OW) < 0 ||
      DNNF(cudnnSetFilter4dDescriptor, d->w, dt, f, k->k, k->c / k->groups, k->r, k->s) < 0 ||
      DNNF(cudnnSetConvolution2dDescriptor, d->conv, k->ph, k->pw, k->sh, k->sw, k->dh, k->dw,
           CUDNN_CROSS_CORRELATION, ct) < 0 ||
      (k->groups > 1 && DNNF(cudnnSetConvolutionGroupCount, d->conv, k->groups) < 0) ||
      DNNF(cudnnSetConvolutionMathType, d->conv, wanted_math(g)) < 0) {
    rn_dnn_descs_free(d, false); /* the first error is the one reported */
    return -1;
  }
  return 0;
}

/* ---- algorithm cache ----------------------------------------------------- */

#define CACHE_N 256
#define MAX_ALGOS 16

typedef struct {
  conv_key key;
  int used;
  int algo;
  bool nchw;  /* the layout the algorithm was chosen for */
  bool bf16;  /* bfloat16 math (false: float32 fallback or policy) */
  cudnnMathType_t math;
  size_t ws;
  descs d;    /* the descriptors, made once (d.conv NULL: not kept) */
} algo_entry;

static algo_entry cache[CACHE_N];
static int cache_next;

/* $RN_CUDNN_DESC_CACHE=0: descriptors made and destroyed per call (the path
 * before issue 19, kept for comparison on a GPU) */
static bool desc_cache_on(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("RN_CUDNN_DESC_CACHE");
    v = !(e && strcmp(e, "0") == 0);
  }
  return v == 1;
}

static size_t ws_limit(void) {
  static size_t v = 0;
  if (!v) {
    const char *e = getenv("RN_CUDNN_WS_MB");
    long mb = e && *e ? strtol(e, NULL, 10) : 1024;
    if (mb <= 0) mb = 1024;
    v = (size_t)mb << 20;
  }
  return v;
}

/* A heuristic answer rnlua may use. strict: no tensor-op math for float32
 * math (f32: float32 operands, not bf16 math; the second pass, taken when no
 * answer passes the first, drops that; NVIDIA_TF32_OVERRIDE=0, set before
 * cuDNN loads, still keeps TF32 off). bfloat16 math takes any math type. */
static bool usable(cudnnStatus_t st, size_t mem, cudnnMathType_t math, bool f32, bool strict) {
  if (st != CUDNN_STATUS_SUCCESS || mem > ws_limit()) return false;
  if (strict && f32 && !rn_dnn_tf32_allowed() && math != CUDNN_DEFAULT_MATH && math != CUDNN_FMA_MATH)
    return false;
  return true;
}

static bool find_mode(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("RN_CUDNN_FIND");
    v = e && *e && strcmp(e, "0") != 0;
  }
  return v == 1;
}

/* May answer i (algorithm algo, cuDNN's determinism flag) be taken for key
 * k? With an override only that algorithm; in deterministic mode only
 * deterministic ones (by cuDNN's report and by the documented list). An
 * override that cuDNN reports non-deterministic in deterministic mode is
 * noted in *nondet_forced (the caller's error names it). */
static bool allowed(const conv_key *k, int algo, cudnnDeterminism_t d, bool *nondet_forced) {
  if (k->forced >= 0 && algo != k->forced) return false;
  if (!k->det) return true;
  bool ok = d == CUDNN_DETERMINISTIC && rn_conv_algo_deterministic((rn_conv_kind)k->kind, algo);
  if (!ok && k->forced >= 0) *nondet_forced = true;
  return ok;
}

/* The first usable answer (fastest first for Find, best first for the
 * heuristics) of perf[0..got) that the mode and override allow: into pick
 * and math; strict pass first. */
#define PICK(perf)                                                                     \
  for (int pass = 0; pass < 2 && pick < 0; pass++)                                     \
    for (int i = 0; i < got && pick < 0; i++)                                          \
      if (usable((perf)[i].status, (perf)[i].memory, (perf)[i].mathType, f32,          \
                 pass == 0) &&                                                         \
          allowed(k, (int)(perf)[i].algo, (perf)[i].determinism, &nondet_forced)) {     \
        pick = (int)(perf)[i].algo;                                                    \
        math = (perf)[i].mathType;                                                     \
      }

/* Whether cuDNN runs algorithm algo of g's kind with descriptors d (math
 * type set on d->conv) within the workspace limit: 1 yes, 0 no (not
 * supported here: rn_err is left as it was), -1 on another cuDNN error. */
static int fixed_algo_fits(const cgeom *g, descs *d, int algo, cudnnMathType_t math) {
  const conv_key *k = &g->key;
  if (DNNF(cudnnSetConvolutionMathType, d->conv, math) < 0) return -1;
  size_t need = 0;
  cudnnStatus_t st;
  if (k->kind == K_FWD)
    st = rn_dnn.cudnnGetConvolutionForwardWorkspaceSize(rn_dnn.h, d->x, d->w, d->conv, d->y,
                                                     (cudnnConvolutionFwdAlgo_t)algo, &need);
  else if (k->kind == K_BWD_DATA)
    st = rn_dnn.cudnnGetConvolutionBackwardDataWorkspaceSize(
        rn_dnn.h, d->w, d->y, d->conv, d->x, (cudnnConvolutionBwdDataAlgo_t)algo, &need);
  else
    st = rn_dnn.cudnnGetConvolutionBackwardFilterWorkspaceSize(
        rn_dnn.h, d->x, d->y, d->conv, d->w, (cudnnConvolutionBwdFilterAlgo_t)algo, &need);
  /* cuDNN 9 reports sub-codes (CUDNN_STATUS_NOT_SUPPORTED_SHAPE = 3002,
   * CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER = 2003, ...): compare categories */
  if (CUDNN_STATUS_CATEGORY(st) == CUDNN_STATUS_NOT_SUPPORTED ||
      CUDNN_STATUS_CATEGORY(st) == CUDNN_STATUS_BAD_PARAM)
    return 0;
  if (rn_dnn_check(st, "cudnnGetConvolution*WorkspaceSize(fixed deterministic algorithm)", __FILE__,
                __LINE__) < 0)
    return -1;
  return need <= ws_limit() ? 1 : 0;
}

/* The first usable algorithm for g (kind set) with descriptors d: with
 * $RN_CUDNN_FIND=1 measured by cudnnFind*Algorithm (which allocates its own
 * scratch; a failed or empty Find falls back), else from the
 * cudnnGet*Algorithm_v7 heuristics. 0 (d->conv's math type set to the
 * algorithm's, *ws its workspace), 1 when none is usable (rn_err says so),
 * -1 on a cuDNN error. */
static int heuristics(const cgeom *g, descs *d, int *algo, cudnnMathType_t *math_out,
                      size_t *ws) {
  const conv_key *k = &g->key;
  const bool find = find_mode();
  int maxc = 0, got = 0, pick = -1;
  bool nondet_forced = false;
  const bool f32 = k->dt == RN_F32 && !g->bf16; /* float32 math: no tensor ops if avoidable */
  cudnnMathType_t math = wanted_math(g);
  if (k->kind == K_FWD) {
    cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
    if (DNNF(cudnnGetConvolutionForwardAlgorithmMaxCount, rn_dnn.h, &maxc) < 0) return -1;
    if (maxc > MAX_ALGOS) maxc = MAX_ALGOS;
    if (find && rn_dnn.cudnnFindConvolutionForwardAlgorithm(rn_dnn.h, d->x, d->w, d->conv, d->y, maxc,
                                                          &got, perf) == CUDNN_STATUS_SUCCESS)
      PICK(perf);
    if (pick < 0) {
      if (DNNF(cudnnGetConvolutionForwardAlgorithm_v7, rn_dnn.h, d->x, d->w, d->conv, d->y, maxc,
               &got, perf) < 0)
        return -1;
      PICK(perf);
    }
  } else if (k->kind == K_BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
    if (DNNF(cudnnGetConvolutionBackwardDataAlgorithmMaxCount, rn_dnn.h, &maxc) < 0) return -1;
    if (maxc > MAX_ALGOS) maxc = MAX_ALGOS;
    if (find && rn_dnn.cudnnFindConvolutionBackwardDataAlgorithm(rn_dnn.h, d->w, d->y, d->conv, d->x,
                                                               maxc, &got, perf) ==
                    CUDNN_STATUS_SUCCESS)
      PICK(perf);
    if (pick < 0) {
      if (DNNF(cudnnGetConvolutionBackwardDataAlgorithm_v7, rn_dnn.h, d->w, d->y, d->conv, d->x,
               maxc, &got, perf) < 0)
        return -1;
      PICK(perf);
    }
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
    if (DNNF(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount, rn_dnn.h, &maxc) < 0) return -1;
    if (maxc > MAX_ALGOS) maxc = MAX_ALGOS;
    if (find && rn_dnn.cudnnFindConvolutionBackwardFilterAlgorithm(rn_dnn.h, d->x, d->y, d->conv,
                                                                 d->w, maxc, &got, perf) ==
                    CUDNN_STATUS_SUCCESS)
      PICK(perf);
    if (pick < 0) {
      if (DNNF(cudnnGetConvolutionBackwardFilterAlgorithm_v7, rn_dnn.h, d->x, d->y, d->conv, d->w,
               maxc, &got, perf) < 0)
        return -1;
      PICK(perf);
    }
  }
  static const char *const kinds[] = {"forward", "backward data", "backward filter"};
  if (pick < 0 && k->det && k->forced < 0) {
    /* the kind's fixed deterministic algorithm, if cuDNN runs it here */
    int fixed = k->kind == K_FWD ? (int)CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM
                : k->kind == K_BWD_DATA ? (int)CUDNN_CONVOLUTION_BWD_DATA_ALGO_1
                                        : (int)CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
    int rc = fixed_algo_fits(g, d, fixed, math);
    if (rc < 0) return -1;
    if (rc == 1) pick = fixed;
  }
  if (pick < 0) {
    const char *forced = k->forced >= 0 ? rn_conv_algo_name((rn_conv_kind)k->kind, k->forced)
                                        : NULL;
    if (forced && nondet_forced) /* a hard error: no layout changes that */
      return rn_err("cudnn: the %s algorithm %s forced by rn.cuda.set_conv_algo is reported "
                    "non-deterministic by cuDNN for input (N,H,W,C) = (%d,%d,%d,%d), filter "
                    "(%d,%d,%d,%d) (Cout,KH,KW,Cin), and deterministic mode is on; set %s = "
                    "\"auto\" or another algorithm", kinds[k->kind], forced, k->n, k->h, k->w,
                    k->c, k->k, k->r, k->s, k->c, rn_conv_kind_name((rn_conv_kind)k->kind));
    char what[128];
    if (forced)
      snprintf(what, sizeof what, "the %s algorithm %s forced by rn.cuda.set_conv_algo is not "
               "usable (%d answers)", kinds[k->kind], forced, got);
    else
      snprintf(what, sizeof what, "no usable %s%s algorithm among %d",
               k->det ? "deterministic " : "", kinds[k->kind], got);
    rn_err("cudnn: %s for input (N,H,W,C) = (%d,%d,%d,%d) %s, "
           "filter (%d,%d,%d,%d) (Cout,KH,KW,Cin) %s, pad (%d,%d), stride (%d,%d), dilation "
           "(%d,%d), %s%s (workspace limit %zu MiB: $RN_CUDNN_WS_MB)", what, k->n,
           k->h, k->w, k->c, g->nchw ? "NCHW" : "NHWC", k->k, k->r, k->s, k->c,
           g->nchw ? "KCRS" : "KRSC", k->ph, k->pw, k->sh, k->sw, k->dh, k->dw,
           rn_dtype_name((rn_dtype)k->dt), g->bf16 ? " in bfloat16 math" : "",
           ws_limit() >> 20);
    return 1;
  }
  if (DNNF(cudnnSetConvolutionMathType, d->conv, math) < 0) return -1;
  size_t need = 0;
  if (k->kind == K_FWD) {
    if (DNNF(cudnnGetConvolutionForwardWorkspaceSize, rn_dnn.h, d->x, d->w, d->conv, d->y,
             (cudnnConvolutionFwdAlgo_t)pick, &need) < 0)
      return -1;
  } else if (k->kind == K_BWD_DATA) {
    if (DNNF(cudnnGetConvolutionBackwardDataWorkspaceSize, rn_dnn.h, d->w, d->y, d->conv, d->x,
             (cudnnConvolutionBwdDataAlgo_t)pick, &need) < 0)
      return -1;
  } else {
    if (DNNF(cudnnGetConvolutionBackwardFilterWorkspaceSize, rn_dnn.h, d->x, d->y, d->conv, d->w,
             (cudnnConvolutionBwdFilterAlgo_t)pick, &need) < 0)
      return -1;
  }
  *algo = pick;
  *math_out = math;
  *ws = need;
  return 0;
}

/* Descriptors d and the algorithm for g (kind set): from the cache, else
 * from the heuristics, cached. The float32 NHWC layout falls back to NCHW
 * copies (g->nchw set, as for float64) when cuDNN has no usable NHWC
 * algorithm for the shape. Under the bfloat16 policy (float32 tensors only)
 * bf16 math is tried first, NHWC then NCHW; a shape for which cuDNN has no
 * usable bf16 algorithm in either layout (e.g. a GPU without bf16 kernels)
 * runs in float32 math, NHWC then NCHW (g->bf16 says which; decided once per
 * shape, cached). 0, or -1 + rn_err with d freed. */
int rn_dnn_plan(cgeom *g, descs *d, int *algo, size_t *ws) {
  g->key.det = rn_is_deterministic();
  g->key.forced = rn_conv_algo_forced((rn_conv_kind)g->key.kind);
  g->key.prec = g->native || (g->key.dt == RN_F32 && rn_math_precision() == RN_BF16) ? RN_BF16 : RN_F32;
  const conv_key *k = &g->key;
  for (int i = 0; i < CACHE_N; i++)
    if (cache[i].used && memcmp(&cache[i].key, k, sizeof *k) == 0) {
      g->nchw = cache[i].nchw;
      g->bf16 = cache[i].bf16;
      *algo = cache[i].algo;
      *ws = cache[i].ws;
      if (cache[i].d.conv) {
        *d = cache[i].d;
        d->cached = true;
        return 0;
      }
      if (rn_dnn_descs_make(d, g) < 0) return -1;
      if (DNNF(cudnnSetConvolutionMathType, d->conv, cache[i].math) < 0) {
        rn_dnn_descs_free(d, false);
        return -1;
      }
      return 0;
    }
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  /* the tries in order: {bf16 math, NCHW layout}; float64 is NCHW already */
  const bool nchw0 = g->nchw, bf0 = k->prec == RN_BF16;
  bool tries[4][2];
  int ntries = 0;
  /* bfloat16 tensors have no float32 math to fall back to */
  for (int b = bf0 ? 1 : 0; b >= (g->native ? 1 : 0); b--) {
    tries[ntries][0] = b == 1;
    tries[ntries++][1] = nchw0;
    if (!nchw0) { /* no NHWC algorithm here (or NHWC refused): NCHW copies */
      tries[ntries][0] = b == 1;
      tries[ntries++][1] = true;
    }
  }
  int rc = 1;
  for (int t = 0; t < ntries && rc != 0; t++) {
    g->bf16 = tries[t][0];
    g->nchw = tries[t][1];
    /* a descriptor cuDNN refuses (e.g. bf16 where it has no bf16 support)
     * fails this try only: the next (float32 math) may do */
    if (rn_dnn_descs_make(d, g) < 0) {
      rc = -1;
      continue;
    }
    rc = heuristics(g, d, algo, &math, ws); /* 1: none usable, -1: a cuDNN error */
    if (rc != 0) rn_dnn_descs_free(d, false);      /* either way the next try may do */
  }
  if (rc != 0) return -1; /* rn_err names the last try's shape and layout */
  algo_entry *e = &cache[cache_next];
  cache_next = (cache_next + 1) % CACHE_N; /* a full table forgets its oldest entry */
  if (e->d.conv) { /* not in use: each convolution plans once, then runs */
    e->d.cached = false;
    (void)rn_dnn_descs_free(&e->d, false);
  }
  memset(&e->d, 0, sizeof e->d);
  if (desc_cache_on()) { /* the entry keeps the descriptors; d lends them */
    e->d = *d;
    e->d.cached = false;
    d->cached = true;
  }
  e->key = *k;
  e->used = 1;
  e->algo = *algo;
  e->nchw = g->nchw;
  e->bf16 = g->bf16;
  e->math = math;
  e->ws = *ws;
  return 0;
}
