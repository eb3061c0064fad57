/* cudnn.c (cuda) - the conv2d_fwd, conv2d_bwd_data and conv2d_bwd_filter
 * slots through cuDNN, which is opened at run time (rn_dlib_open:
 * libcudnn.so.9 and its split libraries, also from PyTorch's site-packages)
 * and called through dlsym'ed pointers; cudnn.h is included for its types.
 * Every cuDNN call of rnlua lives in core/cuda/cudnn*.c: loading and
 * symbols in cudnn_lib.c, geometry, descriptors and the per-shape algorithm
 * cache in cudnn_algo.c, the three directions here (cudnn_int.h between
 * them). The legacy convolution API used here is deprecated in cuDNN 9, and
 * the move to the graph API must stay local to these files.
 *
 * Layout (float32): x (N,H,W,Cin), y (N,OH,OW,Cout) are cuDNN NHWC tensors
 * as they are. The HWIO weight w (KH,KW,Cin,Cout) is, read as a matrix,
 * (K,Cout) with K = KH*KW*Cin; cuDNN's NHWC filter layout is KRSC
 * (Cout,KH,KW,Cin), i.e. (Cout,K): w is transposed with kernels/nn.cu into
 * a copy kept per weight version (issue 19, filter_for_cudnn: once per
 * optimizer step, not per call), and the filter gradient transposed back.
 * Layout (float64): cuDNN's NHWC kernels are float/half only (PyTorch too
 * runs float64 convolutions in NCHW), so x, y, gy go through NCHW
 * temporaries and w through KCRS (Cout,Cin,KH,KW), permuted by kernels/nn.cu.
 * A float32 shape for which the heuristics offer no usable NHWC algorithm
 * takes the same NCHW route (decided once per shape, cached).
 *
 * bfloat16 (issue #18): under the mixed_bfloat16 policy the layers pass
 * bf16 activations on the GPU as on the CPU (lua/rn/layers/base.lua), so
 * the convolutions get bf16 tensors, which cuDNN reads and writes as they
 * are (g->native: no conversion kernels; core/cuda/bf16.c routes them here,
 * $RN_CUDA_BF16_NATIVE=0 converts around float32 kernels instead); batch
 * norm and pooling between them read and write bf16 too (nn.c). With
 * $RN_CUDA_BF16_ACT=0 the tensors stay float32 and the policy is bf16 math
 * inside the convolution, as follows.
 *
 * bfloat16 math (rn_math_precision() == RN_BF16, "mixed_bfloat16"): float32
 * convolutions compute in bf16 with float32 accumulation, and every tensor
 * the caller sees stays float32, as on the CPU (core/cpu/conv_dnnl.c). The
 * float32 operands cuDNN reads (x, or its padded / NCHW temporary; the KRSC
 * filter; gy) are converted (round to nearest even, kernels/elementwise.cu)
 * into bf16 temporaries from the caching allocator, so out of memory is an
 * rn_err; cuDNN runs with CUDNN_DATA_BFLOAT16 x/w/y descriptors, a
 * CUDNN_DATA_FLOAT compute type (PSEUDO_BFLOAT16_CONFIG; the legacy API lists
 * no configuration with bf16 inputs and a float output) and
 * CUDNN_TENSOR_OP_MATH (tensor cores allowed), writes a bf16
 * temporary, and that is widened into the float32 output (y, gx, gw, or the
 * layout temporary the float32 path writes). So the outputs carry bf16
 * rounding (relative 2^-9), as with PyTorch's autocast. The bias add and the
 * bias gradient stay float32 (in double). A shape for which cuDNN has no
 * usable bf16 algorithm in NHWC nor NCHW (e.g. a GPU before sm_80) runs in
 * float32 math instead (decided once per shape, cached). float64 ignores the
 * policy. (Both paths passed parity on an H200, 2026-12-04. On bf16
 * tensors the bias add and the bias gradient read and write bf16, summing
 * in float per thread and double across threads.)
 *
 * Padding: cuDNN's legacy descriptor pads symmetrically. Symmetric pads go
 * to cuDNN; asymmetric ones (TF "same" with an odd total, resolved by the
 * front end) are applied by padding x into a temporary (N,H+pt+pb,W+pl+pr,
 * Cin) that cuDNN convolves without padding; the data gradient of that
 * temporary is cropped back into gx.
 *
 * Issue 19: with $RN_CUDNN_GRAPH=1 each of the three calls first tries the
 * graph (backend) API's cached execution plan (cudnn_graph.c); a shape it
 * has no plan for, and float64, take the legacy call below.
 *
 * Algorithms: cudnnGetConvolution*Algorithm_v7 heuristics (or, with
 * $RN_CUDNN_FIND=1, cudnnFindConvolution*Algorithm measurements, falling back
 * to the heuristics), once per shape, kept in a small table keyed by kind,
 * dtype, shapes, params, deterministic mode, the kind's override
 * (core/determinism.h) and the math policy; the first usable answer wins
 * (status success, workspace within $RN_CUDNN_WS_MB, default 1024 MiB, and,
 * in float32 math, no TF32 tensor-op math unless $RN_CUDA_TF32=1, so
 * results match the CPU to 1e-3:
 * CUDNN_FMA_MATH, and NVIDIA_TF32_OVERRIDE=0 set (if unset) before cuDNN
 * loads). The x, y, filter and convolution descriptors are made with the
 * choice and kept in the same table entry (destroyed when it is dropped), so
 * the steady state creates none per call ($RN_CUDNN_DESC_CACHE=0: made and
 * destroyed per call, as before). Workspaces and temporaries come from
 * rn_cuda_alloc and go back to it in stream order.
 *
 * Deterministic mode (rn_is_deterministic()): only answers that cuDNN reports
 * CUDNN_DETERMINISTIC and that are not documented non-deterministic
 * (backward data ALGO_0, backward filter ALGO_0 and ALGO_3) are usable; when
 * none is, the fixed deterministic algorithm of the kind (forward
 * IMPLICIT_GEMM, backward data ALGO_1, backward filter ALGO_1) is tried
 * before giving up. An override (rn.cuda.set_conv_algo) makes its algorithm
 * the only candidate: an error names it when cuDNN does not support it for
 * the shape (in NHWC nor NCHW), or reports it non-deterministic while the
 * mode is on.
 *
 * Bias: y += b (kernels/nn.cu); gb = column sums of gy (N*OH*OW, Cout) in
 * double. float32 and float64. Errors: rn_err("cudnn: <call> failed:
 * <cudnnGetErrorString> (file:line)"); nothing leaks on an error path.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudnn_int.h"

/* core/determinism.c names the algorithms without cudnn.h: same order */
_Static_assert(CUDNN_CONVOLUTION_FWD_ALGO_COUNT == 8 && CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT == 6 &&
                   CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT == 7 &&
                   CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED == 7 &&
                   CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 == 0 &&
                   CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED == 5 &&
                   CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 == 0 &&
                   CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3 == 3 &&
                   CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING == 6,
               "cuDNN's algorithm enums differ from core/determinism.c's name tables");
_Static_assert((int)RN_CONV_FWD == 0 && (int)RN_CONV_BWD_DATA == 1 && (int)RN_CONV_BWD_FILTER == 2,
               "rn_conv_kind must match K_FWD, K_BWD_DATA, K_BWD_FILTER");

/* ---- bfloat16 math --------------------------------------------------------- */

/* The geometry of n dense elements in two operands (rnk_copy's fast path;
 * 32-bit indexing under the bound rn_cuda_geom uses). */
static rnk_geom flat(int64_t n) {
  rnk_geom gm;
  memset(&gm, 0, sizeof gm);
  gm.ndim = 1;
  gm.contig = 1;
  gm.idx32 = n < ((int64_t)1 << 30);
  gm.n = n;
  gm.shape[0] = n;
  gm.stride[0][0] = gm.stride[1][0] = 1;
  return gm;
}

/* In bf16 math (g->bf16): *p, n float32 elements on the device, becomes a
 * bfloat16 copy (n, from the caching allocator: out of memory is rn_err)
 * that the caller owns (*owned = true); the float32 buffer is freed when it
 * was owned (stream order: the conversion has read it). Otherwise nothing
 * changes. 0, or -1 + rn_err with *p and *owned as they were. */
static int math_input(const cgeom *g, const void **p, bool *owned, int64_t n) {
  if (!g->bf16 || g->native) return 0;
  void *h = rn_cuda_alloc((size_t)(n > 0 ? n : 1) * 2);
  if (!h) return -1;
  if (n > 0 && CU(rnk_copy(flat(n), h, RNK_BF16, *p, RNK_F32, rn_cuda_stream())) < 0) {
    rn_cuda_free(h);
    return -1;
  }
  if (*owned) rn_cuda_free((void *)*p);
  *p = h;
  *owned = true;
  return 0;
}

/* Where cuDNN writes an n-element output whose float32 home is dst: dst
 * itself, or in bf16 math a bfloat16 temporary (*tmp16, freed by the
 * caller; NULL + rn_err when it cannot be had). */
static void *math_output(const cgeom *g, void *dst, void **tmp16, int64_t n) {
  *tmp16 = NULL;
  if (!g->bf16 || g->native) return dst;
  return *tmp16 = rn_cuda_alloc((size_t)(n > 0 ? n : 1) * 2);
}

/* dst (n float32) = the bfloat16 tmp16 widened; nothing without tmp16 */
static int math_result(void *dst, const void *tmp16, int64_t n) {
  if (!tmp16 || n == 0) return 0;
  return CU(rnk_copy(flat(n), dst, RNK_F32, tmp16, RNK_BF16, rn_cuda_stream()));
}

/* ---- shared steps -------------------------------------------------------- */

/* A device temporary of n elements of g's dtype (NULL + rn_err). */
static void *tmp(const cgeom *g, int64_t n) {
  return rn_cuda_alloc((size_t)(n > 0 ? n : 1) * g->es);
}

static rnk_perm4 perm(int64_t s0, int64_t s1, int64_t s2, int64_t s3, int64_t i0, int64_t i1,
                      int64_t i2, int64_t i3) {
  rnk_perm4 p = {{s0, s1, s2, s3}, {i0, i1, i2, i3}};
  return p;
}

/* Issue 19: the filter cuDNN reads, kept per weight version (core/dcache.h)
 * so that the forward and the backward-data call of a step transpose the
 * weight once, and inference never again. $RN_CUDNN_FILTER_CACHE=0: off
 * (a copy per call, as before). Bypassed inside a CUDA graph capture (the
 * graph must transpose at every replay), and cleared at every replay
 * (core/cuda/graph.c), whose weight updates bump no version. */
static void free_filter(void *p) { rn_cuda_free(p); }
static rn_dcache fcache = {.free_copy = free_filter};

static bool fcache_on(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("RN_CUDNN_FILTER_CACHE");
    on = !(e && strcmp(e, "0") == 0);
  }
  return on && !rn_cuda_capturing();
}

void rn_dnn_filter_cache_clear(void) { rn_dcache_clear(&fcache); }

/* w (KH,KW,C/G,O) HWIO -> wk: (O,K) KRSC, or (O,C/G,KH,KW) KCRS when g->nchw;
 * in bf16 math a bfloat16 copy of that. *own: the caller frees it (else it
 * is the cache's). */
static void *filter_for_cudnn(const cgeom *g, const rn_tensor *w, bool *own) {
  int64_t K = g->KH * g->KW * g->CW;
  uint64_t variant = (((uint64_t)K * 1000003u + (uint64_t)g->O) << 6) | ((uint64_t)g->bf16 << 5) |
                     ((uint64_t)g->nchw << 4) | (uint64_t)g->key.dt;
  *own = true;
  bool cache = fcache_on();
  if (cache) {
    void *c = rn_dcache_get(&fcache, w, variant);
    if (c) {
      *own = false;
      return c;
    }
  }
  void *wk = tmp(g, K * g->O);
  if (!wk) return NULL;
  cudaStream_t s = rn_cuda_stream();
  int rc = g->nchw ? CU(rnk_permute4(g->key.dt, wk, rn_ptr(w),
                                     perm(g->O, g->CW, g->KH, g->KW, 1, g->O,
                                          g->KW * g->CW * g->O, g->CW * g->O), s))
                   : CU(rnk_transpose2d(g->key.dt, wk, rn_ptr(w), K, g->O, s));
  const void *p = wk;
  bool owned = true;
  if (rc < 0 || math_input(g, &p, &owned, K * g->O) < 0) {
    rn_cuda_free(wk);
    return NULL;
  }
  if (cache) {
    rn_dcache_put(&fcache, w, variant, (void *)p);
    *own = false;
  }
  return (void *)p;
}

/* gw (KH,KW,C/G,O) HWIO from gwk: (O,K) KRSC, or (O,C/G,KH,KW) KCRS when g->nchw */
static int filter_back(const cgeom *g, rn_tensor *gw, const void *gwk) {
  int64_t K = g->KH * g->KW * g->CW;
  cudaStream_t s = rn_cuda_stream();
  if (!g->nchw) return CU(rnk_transpose2d(g->key.dt, rn_ptr(gw), gwk, g->O, K, s));
  return CU(rnk_permute4(g->key.dt, rn_ptr(gw), gwk,
                         perm(g->KH, g->KW, g->CW, g->O, g->KW, 1, g->KH * g->KW,
                              g->CW * g->KH * g->KW), s));
}

/* an NCHW temporary (n,c,h,w) of the NHWC src (n,h,w,c) */
static void *to_nchw(const cgeom *g, const void *src, int64_t n, int64_t h, int64_t w, int64_t c) {
  void *t = tmp(g, n * c * h * w);
  if (!t) return NULL;
  if (CU(rnk_permute4(g->key.dt, t, src, perm(n, c, h, w, h * w * c, 1, w * c, c),
                      rn_cuda_stream())) < 0) {
    rn_cuda_free(t);
    return NULL;
  }
  return t;
}

/* dst (n,h,w,c) NHWC = src (n,c,h,w) NCHW */
static int from_nchw(const cgeom *g, void *dst, const void *src, int64_t n, int64_t h, int64_t w,
                     int64_t c) {
  return CU(rnk_permute4(g->key.dt, dst, src, perm(n, h, w, c, c * h * w, w, 1, h * w),
                         rn_cuda_stream()));
}

/* In bf16 math: r (n float32 elements, owned by the caller when *owned)
 * replaced by its bfloat16 copy, else r. NULL + rn_err (r freed, *owned
 * false) when the copy cannot be made. */
static const void *math_or_free(const cgeom *g, const void *r, bool *owned, int64_t n) {
  if (math_input(g, &r, owned, n) == 0) return r;
  if (*owned) rn_cuda_free((void *)r);
  *owned = false;
  return NULL;
}

/* x as cuDNN takes it: x itself, or x zero-padded into a temporary when
 * the pads are asymmetric, then (float64) an NCHW copy, then (bf16 math) a
 * bfloat16 copy; *owned says whether the caller frees it */
static const void *input_of(const cgeom *g, const rn_tensor *x, bool *owned) {
  const conv_key *k = &g->key;
  int64_t n = (int64_t)k->n * k->h * k->w * k->c;
  *owned = false;
  void *xp = NULL;
  if (g->asym) {
    if (!(xp = tmp(g, n))) return NULL;
    if (CU(rnk_pad_nhwc(k->dt, xp, rn_ptr(x), g->N, g->H, g->W, g->C, g->pt, g->pb, g->pl,
                        g->pr, rn_cuda_stream())) < 0) {
      rn_cuda_free(xp);
      return NULL;
    }
  }
  if (!g->nchw) {
    *owned = xp != NULL;
    return math_or_free(g, xp ? xp : rn_ptr(x), owned, n);
  }
  void *xn = to_nchw(g, xp ? xp : rn_ptr(x), k->n, k->h, k->w, k->c);
  rn_cuda_free(xp); /* stream-ordered: the permute above has read it */
  if (!xn) return NULL;
  *owned = true;
  return math_or_free(g, xn, owned, n);
}

/* gy (N,OH,OW,O) as cuDNN takes it: gy itself, or (NCHW layout) an NCHW
 * copy, then (bf16 math) a bfloat16 copy; *owned as for input_of */
static const void *grad_of(const cgeom *g, const rn_tensor *gy, bool *owned) {
  int64_t n = g->N * g->OH * g->OW * g->O;
  *owned = false;
  if (!g->nchw) return math_or_free(g, rn_ptr(gy), owned, n);
  void *t = to_nchw(g, rn_ptr(gy), g->N, g->OH, g->OW, g->O);
  if (!t) return NULL;
  *owned = true;
  return math_or_free(g, t, owned, n);
}

/* alpha = 1, beta = 0 as the data type wants them (double for float64) */
typedef struct {
  float f1, f0;
  double d1, d0;
} scal;
static const scal SCAL = {1.0f, 0.0f, 1.0, 0.0};
static const void *one_of(int dt) { return dt != RN_F64 ? (const void *)&SCAL.f1 : &SCAL.d1; }
static const void *zero_of(int dt) { return dt != RN_F64 ? (const void *)&SCAL.f0 : &SCAL.d0; }

static int check_contig(const rn_tensor *const *ts, int n, const char *op) {
  for (int i = 0; i < n; i++)
    if (ts[i] && !rn_is_contiguous(ts[i]))
      return rn_err("%s: the cuda kernel needs contiguous tensors", op);
  return 0;
}

static int check_dtypes(const rn_tensor *const *ts, int n, rn_dtype dt, const char *op) {
  for (int i = 0; i < n; i++)
    if (ts[i] && ts[i]->dtype != dt)
      return rn_err("%s: dtypes differ (%s and %s)", op, rn_dtype_name(ts[i]->dtype),
                    rn_dtype_name(dt));
  return 0;
}

/* ---- the slots ----------------------------------------------------------- */

int rn_cuda_conv2d_fwd(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                       const rn_conv_params *p) {
  const char *op = "conv2d";
  const rn_tensor *ts[4] = {y, x, w, b};
  cgeom g;
  if (x->ndim != 4 || y->ndim != 4) return rn_err("%s: input and output must be 4-d", op);
  if (rn_dnn_geom_init(&g, x->shape, w, y->shape, p, op) < 0 || check_contig(ts, 4, op) < 0 ||
      check_dtypes(ts, 4, w->dtype, op) < 0)
    return -1;
  if (b && rn_numel(b) != g.O) return rn_err("%s: bias must have %lld elements", op,
                                             (long long)g.O);
  cudaStream_t s = rn_cuda_stream();
  int64_t rows = g.N * g.OH * g.OW;
  if (rn_numel(y) == 0) return 0;
  if (g.empty) { /* Cin == 0: y = bias or 0 */
    if (CU(cudaMemsetAsync(rn_ptr(y), 0, (size_t)rn_numel(y) * g.es, s)) < 0) return -1;
    return b ? CU(rnk_bias_add(g.key.dt, rn_ptr(y), rn_ptr(b), rows, g.O, s)) : 0;
  }
  if (rn_dnn_init() < 0) return -1;
  g.key.kind = K_FWD;
  descs d;
  int algo = 0;
  size_t wsz = 0;
  if (rn_dnn_plan(&g, &d, &algo, &wsz) < 0) return -1;
  bool owned = false;
  void *wk = NULL, *ws = NULL;
  const void *xin = NULL;
  void *yn = NULL;  /* NCHW layout: the NCHW output */
  void *y16 = NULL; /* bf16 math: cuDNN's bfloat16 output */
  void *yc = NULL;  /* what cuDNN writes: y, yn or y16 */
  int rc = 0;
  bool wown = false;
  if (rc == 0 && !(wk = filter_for_cudnn(&g, w, &wown))) rc = -1;
  if (rc == 0 && !(xin = input_of(&g, x, &owned))) rc = -1;
  if (rc == 0 && g.nchw && !(yn = tmp(&g, rn_numel(y)))) rc = -1;
  if (rc == 0 && !(yc = math_output(&g, yn ? yn : rn_ptr(y), &y16, rn_numel(y)))) rc = -1;
  if (rc == 0 && wsz && !(ws = rn_cuda_alloc(wsz))) rc = -1;
  bool gused = false; /* issue 19: the graph API's cached plan ($RN_CUDNN_GRAPH=1) */
  if (rc == 0) rc = rn_dnn_graph_conv(&g, K_FWD, xin, wk, yc, &gused);
  if (rc == 0 && !gused) /* alpha, beta: float for float32 and bfloat16 data, double for float64 */
    rc = DNNF(cudnnConvolutionForward, rn_dnn.h, one_of(g.key.dt), d.x, xin, d.w, wk, d.conv,
              (cudnnConvolutionFwdAlgo_t)algo, ws, wsz, zero_of(g.key.dt), d.y, yc);
  if (rc == 0) rc = math_result(yn ? yn : rn_ptr(y), y16, rn_numel(y));
  if (rc == 0 && yn) rc = from_nchw(&g, rn_ptr(y), yn, g.N, g.OH, g.OW, g.O);
  /* the bias stays float32: y (rows,O) += b */
  if (rc == 0 && b) rc = CU(rnk_bias_add(g.key.dt, rn_ptr(y), rn_ptr(b), rows, g.O, s));
  rn_cuda_free(ws);
  rn_cuda_free(y16);
  rn_cuda_free(yn);
  if (owned) rn_cuda_free((void *)xin);
  if (wown) rn_cuda_free(wk);
  if (rn_dnn_descs_free(&d, rc == 0) < 0) rc = -1; /* checked only when nothing failed before */
  return rc;
}

int rn_cuda_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                            const rn_conv_params *p) {
  const char *op = "conv2d backward data";
  const rn_tensor *ts[3] = {gx, gy, w};
  cgeom g;
  if (gx->ndim != 4 || gy->ndim != 4) return rn_err("%s: gradients must be 4-d", op);
  if (rn_dnn_geom_init(&g, gx->shape, w, gy->shape, p, op) < 0 || check_contig(ts, 3, op) < 0 ||
      check_dtypes(ts, 3, w->dtype, op) < 0)
    return -1;
  cudaStream_t s = rn_cuda_stream();
  if (rn_numel(gx) == 0) return 0;
  if (g.empty) return CU(cudaMemsetAsync(rn_ptr(gx), 0, (size_t)rn_numel(gx) * g.es, s));
  if (rn_dnn_init() < 0) return -1;
  g.key.kind = K_BWD_DATA;
  descs d;
  int algo = 0;
  size_t wsz = 0;
  if (rn_dnn_plan(&g, &d, &algo, &wsz) < 0) return -1;
  const conv_key *k = &g.key;
  int64_t nxp = (int64_t)k->n * k->h * k->w * k->c; /* cuDNN's dx: padded when asymmetric */
  void *wk = NULL, *ws = NULL, *gxp = NULL, *gxn = NULL;
  void *gx16 = NULL, *dc = NULL; /* bf16 math: cuDNN's bfloat16 dx; what cuDNN writes */
  const void *gyin = NULL;       /* gy as cuDNN reads it (NCHW and/or bf16 copy) */
  bool gyown = false;
  int rc = 0;
  bool wown = false;
  if (rc == 0 && !(wk = filter_for_cudnn(&g, w, &wown))) rc = -1;
  if (rc == 0 && g.asym && !(gxp = tmp(&g, nxp))) rc = -1;
  if (rc == 0 && !(gyin = grad_of(&g, gy, &gyown))) rc = -1;
  if (rc == 0 && g.nchw && !(gxn = tmp(&g, nxp))) rc = -1;
  /* NHWC dx (padded or not), and its float32/64 home cuDNN's answer goes to
   * (NCHW in the NCHW layout) */
  void *dx = gxp ? gxp : rn_ptr(gx);
  void *dhome = gxn ? gxn : dx;
  if (rc == 0 && !(dc = math_output(&g, dhome, &gx16, nxp))) rc = -1;
  if (rc == 0 && wsz && !(ws = rn_cuda_alloc(wsz))) rc = -1;
  bool gused = false;
  if (rc == 0) rc = rn_dnn_graph_conv(&g, K_BWD_DATA, dc, wk, (void *)gyin, &gused);
  if (rc == 0 && !gused)
    rc = DNNF(cudnnConvolutionBackwardData, rn_dnn.h, one_of(k->dt), d.w, wk, d.y, gyin, d.conv,
              (cudnnConvolutionBwdDataAlgo_t)algo, ws, wsz, zero_of(k->dt), d.x, dc);
  if (rc == 0) rc = math_result(dhome, gx16, nxp);
  if (rc == 0 && gxn) rc = from_nchw(&g, dx, gxn, k->n, k->h, k->w, k->c);
  if (rc == 0 && gxp)
    rc = CU(rnk_crop_nhwc(k->dt, rn_ptr(gx), gxp, g.N, g.H, g.W, g.C, g.pt, g.pb, g.pl, g.pr, s));
  rn_cuda_free(ws);
  rn_cuda_free(gx16);
  rn_cuda_free(gxn);
  if (gyown) rn_cuda_free((void *)gyin);
  rn_cuda_free(gxp);
  if (wown) rn_cuda_free(wk);
  if (rn_dnn_descs_free(&d, rc == 0) < 0) rc = -1; /* checked only when nothing failed before */
  return rc;
}

/* gb (O) = column sums of gy (rows, O), in double; bfloat16 gy and gb are
 * read and written as they are (kernels/nn.cu: float sums per thread, then
 * double, rounded once into gb) */
static int bias_grad(const cgeom *g, rn_tensor *gb, const rn_tensor *gy) {
  int64_t rows = g->N * g->OH * g->OW;
  int64_t nblk = rnk_bn_nblk(rows, g->O);
  double *part = rn_cuda_alloc((size_t)(nblk > 0 ? nblk : 1) * 2 * (size_t)g->O * sizeof(double));
  if (!part) return -1;
  cudaStream_t s = rn_cuda_stream();
  int rc = CU(rnk_bn_partials(g->key.dt, rn_ptr(gy), NULL, NULL, rows, g->O, part, s));
  if (rc == 0) rc = CU(rnk_colsum_finish(g->key.dt, part, rows, g->O, rn_ptr(gb), s));
  rn_cuda_free(part);
  return rc;
}

int rn_cuda_conv2d_bwd_filter(rn_tensor *gw, rn_tensor *gb, const rn_tensor *gy,
                              const rn_tensor *x, const rn_conv_params *p) {
  const char *op = "conv2d backward filter";
  const rn_tensor *ts[4] = {gw, gb, gy, x};
  cgeom g;
  if (x->ndim != 4 || gy->ndim != 4) return rn_err("%s: input and gradient must be 4-d", op);
  if (rn_dnn_geom_init(&g, x->shape, gw, gy->shape, p, op) < 0 || check_contig(ts, 4, op) < 0 ||
      check_dtypes(ts, 4, gw->dtype, op) < 0)
    return -1;
  if (gb && rn_numel(gb) != g.O) return rn_err("%s: bias gradient must have %lld elements", op,
                                               (long long)g.O);
  cudaStream_t s = rn_cuda_stream();
  if (gb && g.O > 0 && bias_grad(&g, gb, gy) < 0) return -1;
  if (rn_numel(gw) == 0) return 0;
  if (g.empty) return CU(cudaMemsetAsync(rn_ptr(gw), 0, (size_t)rn_numel(gw) * g.es, s));
  if (rn_dnn_init() < 0) return -1;
  g.key.kind = K_BWD_FILTER;
  descs d;
  int algo = 0;
  size_t wsz = 0;
  if (rn_dnn_plan(&g, &d, &algo, &wsz) < 0) return -1;
  bool owned = false, gyown = false;
  int64_t K = g.KH * g.KW * g.CW;
  void *gwk = NULL, *ws = NULL;
  void *gw16 = NULL, *wc = NULL; /* bf16 math: cuDNN's bfloat16 dw; what cuDNN writes */
  const void *xin = NULL, *gyin = NULL;
  int rc = 0;
  if (rc == 0 && !(gwk = tmp(&g, K * g.O))) rc = -1;
  if (rc == 0 && !(xin = input_of(&g, x, &owned))) rc = -1;
  if (rc == 0 && !(gyin = grad_of(&g, gy, &gyown))) rc = -1;
  if (rc == 0 && !(wc = math_output(&g, gwk, &gw16, K * g.O))) rc = -1;
  if (rc == 0 && wsz && !(ws = rn_cuda_alloc(wsz))) rc = -1;
  bool gused = false;
  if (rc == 0) rc = rn_dnn_graph_conv(&g, K_BWD_FILTER, xin, wc, (void *)gyin, &gused);
  if (rc == 0 && !gused)
    rc = DNNF(cudnnConvolutionBackwardFilter, rn_dnn.h, one_of(g.key.dt), d.x, xin, d.y, gyin,
              d.conv, (cudnnConvolutionBwdFilterAlgo_t)algo, ws, wsz, zero_of(g.key.dt), d.w,
              wc);
  if (rc == 0) rc = math_result(gwk, gw16, K * g.O);
  /* gwk (O,K) KRSC or (O,C,KH,KW) KCRS -> gw (K,O) HWIO */
  if (rc == 0) rc = filter_back(&g, gw, gwk);
  rn_cuda_free(ws);
  rn_cuda_free(gw16);
  if (gyown) rn_cuda_free((void *)gyin);
  if (owned) rn_cuda_free((void *)xin);
  rn_cuda_free(gwk);
  if (rn_dnn_descs_free(&d, rc == 0) < 0) rc = -1; /* checked only when nothing failed before */
  return rc;
}
