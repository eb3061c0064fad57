/* cudnn.c (cuda) - the conv2d_fwd, conv2d_bwd_data and conv2d_bwd_filter
 * slots through cuDNN, which is opened at run time (rn_dlib_open:
 * libcudnn.so.9 and its split libraries, also from PyTorch's site-packages)
 * and called through dlsym'ed pointers; cudnn.h is included for its types.
 * Every cuDNN call of rnlua lives in this file: the legacy convolution API
 * used here is deprecated in cuDNN 9, and the move to the graph API must stay
 * local to it.
 *
 * Layout (float32): x (N,H,W,Cin), y (N,OH,OW,Cout) are cuDNN NHWC tensors
 * as they are. The HWIO weight w (KH,KW,Cin,Cout) is, read as a matrix,
 * (K,Cout) with K = KH*KW*Cin; cuDNN's NHWC filter layout is KRSC
 * (Cout,KH,KW,Cin), i.e. (Cout,K): each call transposes w into a temporary
 * (and the filter gradient back) with kernels/nn.cu.
 * Layout (float64): cuDNN's NHWC kernels are float/half only (PyTorch too
 * runs float64 convolutions in NCHW), so x, y, gy go through NCHW
 * temporaries and w through KCRS (Cout,Cin,KH,KW), permuted by kernels/nn.cu.
 * A float32 shape for which the heuristics offer no usable NHWC algorithm
 * takes the same NCHW route (decided once per shape, cached).
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
 * policy. None of this has run on a GPU yet (compiled and linked only).
 *
 * Padding: cuDNN's legacy descriptor pads symmetrically. Symmetric pads go
 * to cuDNN; asymmetric ones (TF "same" with an odd total, resolved by the
 * front end) are applied by padding x into a temporary (N,H+pt+pb,W+pl+pr,
 * Cin) that cuDNN convolves without padding; the data gradient of that
 * temporary is cropped back into gx.
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
 * loads). Workspaces and temporaries come from rn_cuda_alloc and go back to
 * it in stream order.
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

#include <cudnn.h>

#include "../determinism.h"
#include "cuda.h"

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

typedef cudnnStatus_t (*create_fn)(cudnnHandle_t *);
typedef cudnnStatus_t (*destroy_fn)(cudnnHandle_t);
typedef cudnnStatus_t (*set_stream_fn)(cudnnHandle_t, cudaStream_t);
typedef const char *(*err_str_fn)(cudnnStatus_t);
typedef size_t (*version_fn)(void);
typedef cudnnStatus_t (*create_tensor_fn)(cudnnTensorDescriptor_t *);
typedef cudnnStatus_t (*set_tensor4d_fn)(cudnnTensorDescriptor_t, cudnnTensorFormat_t,
                                         cudnnDataType_t, int, int, int, int);
typedef cudnnStatus_t (*destroy_tensor_fn)(cudnnTensorDescriptor_t);
typedef cudnnStatus_t (*create_filter_fn)(cudnnFilterDescriptor_t *);
typedef cudnnStatus_t (*set_filter4d_fn)(cudnnFilterDescriptor_t, cudnnDataType_t,
                                         cudnnTensorFormat_t, int, int, int, int);
typedef cudnnStatus_t (*destroy_filter_fn)(cudnnFilterDescriptor_t);
typedef cudnnStatus_t (*create_conv_fn)(cudnnConvolutionDescriptor_t *);
typedef cudnnStatus_t (*set_conv2d_fn)(cudnnConvolutionDescriptor_t, int, int, int, int, int, int,
                                       cudnnConvolutionMode_t, cudnnDataType_t);
typedef cudnnStatus_t (*set_math_fn)(cudnnConvolutionDescriptor_t, cudnnMathType_t);
typedef cudnnStatus_t (*set_groups_fn)(cudnnConvolutionDescriptor_t, int);
typedef cudnnStatus_t (*destroy_conv_fn)(cudnnConvolutionDescriptor_t);
typedef cudnnStatus_t (*max_count_fn)(cudnnHandle_t, int *);
typedef cudnnStatus_t (*fwd_algo_fn)(cudnnHandle_t, cudnnTensorDescriptor_t,
                                     cudnnFilterDescriptor_t, cudnnConvolutionDescriptor_t,
                                     cudnnTensorDescriptor_t, int, int *,
                                     cudnnConvolutionFwdAlgoPerf_t *);
typedef cudnnStatus_t (*bwd_data_algo_fn)(cudnnHandle_t, cudnnFilterDescriptor_t,
                                          cudnnTensorDescriptor_t, cudnnConvolutionDescriptor_t,
                                          cudnnTensorDescriptor_t, int, int *,
                                          cudnnConvolutionBwdDataAlgoPerf_t *);
typedef cudnnStatus_t (*bwd_filter_algo_fn)(cudnnHandle_t, cudnnTensorDescriptor_t,
                                            cudnnTensorDescriptor_t,
                                            cudnnConvolutionDescriptor_t,
                                            cudnnFilterDescriptor_t, int, int *,
                                            cudnnConvolutionBwdFilterAlgoPerf_t *);
typedef cudnnStatus_t (*fwd_ws_fn)(cudnnHandle_t, cudnnTensorDescriptor_t,
                                   cudnnFilterDescriptor_t, cudnnConvolutionDescriptor_t,
                                   cudnnTensorDescriptor_t, cudnnConvolutionFwdAlgo_t, size_t *);
typedef cudnnStatus_t (*bwd_data_ws_fn)(cudnnHandle_t, cudnnFilterDescriptor_t,
                                        cudnnTensorDescriptor_t, cudnnConvolutionDescriptor_t,
                                        cudnnTensorDescriptor_t, cudnnConvolutionBwdDataAlgo_t,
                                        size_t *);
typedef cudnnStatus_t (*bwd_filter_ws_fn)(cudnnHandle_t, cudnnTensorDescriptor_t,
                                          cudnnTensorDescriptor_t, cudnnConvolutionDescriptor_t,
                                          cudnnFilterDescriptor_t,
                                          cudnnConvolutionBwdFilterAlgo_t, size_t *);
typedef cudnnStatus_t (*fwd_fn)(cudnnHandle_t, const void *, cudnnTensorDescriptor_t,
                                const void *, cudnnFilterDescriptor_t, const void *,
                                cudnnConvolutionDescriptor_t, cudnnConvolutionFwdAlgo_t, void *,
                                size_t, const void *, cudnnTensorDescriptor_t, void *);
typedef cudnnStatus_t (*bwd_data_fn)(cudnnHandle_t, const void *, cudnnFilterDescriptor_t,
                                     const void *, cudnnTensorDescriptor_t, const void *,
                                     cudnnConvolutionDescriptor_t, cudnnConvolutionBwdDataAlgo_t,
                                     void *, size_t, const void *, cudnnTensorDescriptor_t,
                                     void *);
typedef cudnnStatus_t (*bwd_filter_fn)(cudnnHandle_t, const void *, cudnnTensorDescriptor_t,
                                       const void *, cudnnTensorDescriptor_t, const void *,
                                       cudnnConvolutionDescriptor_t,
                                       cudnnConvolutionBwdFilterAlgo_t, void *, size_t,
                                       const void *, cudnnFilterDescriptor_t, void *);

static struct {
  int state;       /* 0: not loaded, 1: ready, -1: the library is unusable */
  char why[1024];  /* the reason when state == -1 */
  char path[512];  /* the file that was loaded */
  size_t version;
  void *lib;
  cudnnHandle_t h;
  /* the entry points, named as in cudnn.h (so DNNF can name them) */
  create_fn cudnnCreate;
  destroy_fn cudnnDestroy;
  set_stream_fn cudnnSetStream;
  err_str_fn cudnnGetErrorString;
  version_fn cudnnGetVersion;
  create_tensor_fn cudnnCreateTensorDescriptor;
  set_tensor4d_fn cudnnSetTensor4dDescriptor;
  destroy_tensor_fn cudnnDestroyTensorDescriptor;
  create_filter_fn cudnnCreateFilterDescriptor;
  set_filter4d_fn cudnnSetFilter4dDescriptor;
  destroy_filter_fn cudnnDestroyFilterDescriptor;
  create_conv_fn cudnnCreateConvolutionDescriptor;
  set_conv2d_fn cudnnSetConvolution2dDescriptor;
  set_math_fn cudnnSetConvolutionMathType;
  set_groups_fn cudnnSetConvolutionGroupCount;
  destroy_conv_fn cudnnDestroyConvolutionDescriptor;
  max_count_fn cudnnGetConvolutionForwardAlgorithmMaxCount,
      cudnnGetConvolutionBackwardDataAlgorithmMaxCount,
      cudnnGetConvolutionBackwardFilterAlgorithmMaxCount;
  fwd_algo_fn cudnnGetConvolutionForwardAlgorithm_v7, cudnnFindConvolutionForwardAlgorithm;
  bwd_data_algo_fn cudnnGetConvolutionBackwardDataAlgorithm_v7,
      cudnnFindConvolutionBackwardDataAlgorithm;
  bwd_filter_algo_fn cudnnGetConvolutionBackwardFilterAlgorithm_v7,
      cudnnFindConvolutionBackwardFilterAlgorithm;
  fwd_ws_fn cudnnGetConvolutionForwardWorkspaceSize;
  bwd_data_ws_fn cudnnGetConvolutionBackwardDataWorkspaceSize;
  bwd_filter_ws_fn cudnnGetConvolutionBackwardFilterWorkspaceSize;
  fwd_fn cudnnConvolutionForward;
  bwd_data_fn cudnnConvolutionBackwardData;
  bwd_filter_fn cudnnConvolutionBackwardFilter;
} dnn;

/* Each pointer's type is that of the entry point cudnn.h declares (checked
 * at compile time, without referencing the symbol: nothing is linked). */
#define SAME_SIG(fn)                                                                 \
  _Static_assert(__builtin_types_compatible_p(__typeof__(&fn), __typeof__(dnn.fn)), \
                 #fn ": the pointer type differs from cudnn.h")
SAME_SIG(cudnnCreate);
SAME_SIG(cudnnDestroy);
SAME_SIG(cudnnSetStream);
SAME_SIG(cudnnGetErrorString);
SAME_SIG(cudnnGetVersion);
SAME_SIG(cudnnCreateTensorDescriptor);
SAME_SIG(cudnnSetTensor4dDescriptor);
SAME_SIG(cudnnDestroyTensorDescriptor);
SAME_SIG(cudnnCreateFilterDescriptor);
SAME_SIG(cudnnSetFilter4dDescriptor);
SAME_SIG(cudnnDestroyFilterDescriptor);
SAME_SIG(cudnnCreateConvolutionDescriptor);
SAME_SIG(cudnnSetConvolution2dDescriptor);
SAME_SIG(cudnnSetConvolutionMathType);
SAME_SIG(cudnnSetConvolutionGroupCount);
SAME_SIG(cudnnDestroyConvolutionDescriptor);
SAME_SIG(cudnnGetConvolutionForwardAlgorithmMaxCount);
SAME_SIG(cudnnGetConvolutionBackwardDataAlgorithmMaxCount);
SAME_SIG(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount);
SAME_SIG(cudnnGetConvolutionForwardAlgorithm_v7);
SAME_SIG(cudnnGetConvolutionBackwardDataAlgorithm_v7);
SAME_SIG(cudnnGetConvolutionBackwardFilterAlgorithm_v7);
SAME_SIG(cudnnFindConvolutionForwardAlgorithm);
SAME_SIG(cudnnFindConvolutionBackwardDataAlgorithm);
SAME_SIG(cudnnFindConvolutionBackwardFilterAlgorithm);
SAME_SIG(cudnnGetConvolutionForwardWorkspaceSize);
SAME_SIG(cudnnGetConvolutionBackwardDataWorkspaceSize);
SAME_SIG(cudnnGetConvolutionBackwardFilterWorkspaceSize);
SAME_SIG(cudnnConvolutionForward);
SAME_SIG(cudnnConvolutionBackwardData);
SAME_SIG(cudnnConvolutionBackwardFilter);

const char *rn_cuda_cudnn_path(void) { return dnn.path; }
size_t rn_cuda_cudnn_version(void) { return dnn.version; }

/* 0 for success, else -1 with rn_err("cudnn: <call> failed: <status> (file:line)") */
static int dnn_check(cudnnStatus_t st, const char *call, const char *file, int line) {
  if (st == CUDNN_STATUS_SUCCESS) return 0;
  const char *s = dnn.cudnnGetErrorString ? dnn.cudnnGetErrorString(st) : NULL;
  char num[32];
  if (!s) {
    snprintf(num, sizeof num, "status %d", (int)st);
    s = num;
  }
  return rn_err("cudnn: %s failed: %s (%s:%d)", call, s, file, line);
}
/* DNNF(fn, args...): calls dnn.fn(args...) (fn: a cuDNN entry point's name)
 * and checks its status, naming fn and this file:line */
#define DNNF(fn, ...) dnn_check(dnn.fn(__VA_ARGS__), #fn, __FILE__, __LINE__)

/* dlsym into a function pointer (copied bytewise: ISO C has no cast from
 * void * to a function pointer) */
static int sym(void *dst, size_t size, const char *name) {
  void *p = rn_dlib_sym(dnn.lib, "cuDNN", name);
  if (!p) return -1;
  memcpy(dst, &p, size);
  return 0;
}
#define SYM(name) sym(&dnn.name, sizeof dnn.name, #name)

static int load_syms(void) {
  return (SYM(cudnnCreate) < 0 || SYM(cudnnDestroy) < 0 || SYM(cudnnSetStream) < 0 ||
          SYM(cudnnGetErrorString) < 0 || SYM(cudnnGetVersion) < 0 ||
          SYM(cudnnCreateTensorDescriptor) < 0 ||
          SYM(cudnnSetTensor4dDescriptor) < 0 ||
          SYM(cudnnDestroyTensorDescriptor) < 0 ||
          SYM(cudnnCreateFilterDescriptor) < 0 ||
          SYM(cudnnSetFilter4dDescriptor) < 0 ||
          SYM(cudnnDestroyFilterDescriptor) < 0 ||
          SYM(cudnnCreateConvolutionDescriptor) < 0 ||
          SYM(cudnnSetConvolution2dDescriptor) < 0 ||
          SYM(cudnnSetConvolutionMathType) < 0 ||
          SYM(cudnnSetConvolutionGroupCount) < 0 ||
          SYM(cudnnDestroyConvolutionDescriptor) < 0 ||
          SYM(cudnnGetConvolutionForwardAlgorithmMaxCount) < 0 ||
          SYM(cudnnGetConvolutionBackwardDataAlgorithmMaxCount) < 0 ||
          SYM(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount) < 0 ||
          SYM(cudnnGetConvolutionForwardAlgorithm_v7) < 0 ||
          SYM(cudnnGetConvolutionBackwardDataAlgorithm_v7) < 0 ||
          SYM(cudnnGetConvolutionBackwardFilterAlgorithm_v7) < 0 ||
          SYM(cudnnFindConvolutionForwardAlgorithm) < 0 ||
          SYM(cudnnFindConvolutionBackwardDataAlgorithm) < 0 ||
          SYM(cudnnFindConvolutionBackwardFilterAlgorithm) < 0 ||
          SYM(cudnnGetConvolutionForwardWorkspaceSize) < 0 ||
          SYM(cudnnGetConvolutionBackwardDataWorkspaceSize) < 0 ||
          SYM(cudnnGetConvolutionBackwardFilterWorkspaceSize) < 0 ||
          SYM(cudnnConvolutionForward) < 0 ||
          SYM(cudnnConvolutionBackwardData) < 0 ||
          SYM(cudnnConvolutionBackwardFilter) < 0)
             ? -1
             : 0;
}

static bool tf32_allowed(void);

/* Opens cuDNN and creates the handle on the first convolution. A missing
 * library or symbol is remembered; a failed cudnnCreate (e.g. out of
 * memory) is retried by the next call. */
static int dnn_init(void) {
  if (dnn.state == 1) return 0;
  if (dnn.state == -1) return rn_err("%s", dnn.why);
  if (rn_cuda_init() < 0) return -1;
  if (!dnn.lib) {
    /* float32 without TF32 unless asked for: cuDNN reads this when it loads */
    if (!tf32_allowed()) setenv("NVIDIA_TF32_OVERRIDE", "0", 0);
    static const char *const names[] = {"libcudnn.so.9", "libcudnn.so", NULL};
    /* cuDNN 9's libcudnn is a shim that opens these by name: preloaded from
     * the same dir when it is found by path (the order resolves their
     * DT_NEEDED entries among themselves) */
    static const char *const deps[] = {"libcudnn_graph", "libcudnn_engines_runtime_compiled",
                                       "libcudnn_engines_precompiled", "libcudnn_heuristic",
                                       "libcudnn_ops", "libcudnn_cnn", "libcudnn_adv", NULL};
    dnn.lib = rn_dlib_open("cuDNN", names, deps, dnn.path, sizeof dnn.path);
    int rc = dnn.lib ? load_syms() : -1;
    if (rc == 0) {
      dnn.version = dnn.cudnnGetVersion();
      if (dnn.version / 10000 != 9)
        rc = rn_err("cuda: cuDNN %s is version %zu; rnlua needs cuDNN 9 (libcudnn.so.9)",
                    dnn.path, dnn.version);
    }
    if (rc < 0) {
      snprintf(dnn.why, sizeof dnn.why, "%s", rn_errmsg()); /* permanent: remembered */
      dnn.state = -1;
      return -1;
    }
  }
  cudnnHandle_t h = NULL;
  if (DNNF(cudnnCreate, &h) < 0) return -1;
  if (DNNF(cudnnSetStream, h, rn_cuda_stream()) < 0) {
    (void)dnn.cudnnDestroy(h); /* best effort on an error path */
    return -1;
  }
  dnn.h = h;
  dnn.state = 1;
  return 0;
}

/* ---- geometry ------------------------------------------------------------ */

enum { K_FWD = 0, K_BWD_DATA, K_BWD_FILTER };

/* The convolution as cuDNN sees it (the padded x when pads are asymmetric). */
typedef struct {
  int kind, dt;
  int n, c, h, w;       /* input NHWC */
  int k, r, s;          /* Cout, KH, KW */
  int groups;           /* channel groups: the filter is (Cout, Cin/groups, KH, KW) */
  int ph, pw, sh, sw, dh, dw;
  int det;              /* deterministic mode when chosen */
  int forced;           /* the kind's override (rn_conv_algo_forced), -1: auto */
  int prec;             /* the math policy when chosen (rn_math_precision: RN_F32,
                         * RN_BF16); always RN_F32 for float64 */
} conv_key;

typedef struct {
  int64_t N, H, W, C, KH, KW, O, OH, OW;
  int64_t CW;           /* the weight's input channels: C / groups */
  int pt, pb, pl, pr;
  bool asym;            /* x is padded into a temporary */
  bool nchw;            /* float64: cuDNN sees NCHW / KCRS copies */
  bool bf16;            /* bfloat16 math: cuDNN reads and writes bf16 copies of the
                         * float32 operands (set by plan) */
  bool empty;           /* a zero-sized dim: no cuDNN call */
  conv_key key;
  size_t es;
} cgeom;

static bool fits(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* From x's shape xs (N,H,W,C), w (KH,KW,C/G,O), y's shape ys (N,OH,OW,O). */
static int cgeom_init(cgeom *g, const int64_t *xs, const rn_tensor *w, const int64_t *ys,
                      const rn_conv_params *p, const char *op) {
  if (w->dtype != RN_F32 && w->dtype != RN_F64)
    return rn_err("%s: dtype %s is not supported on cuda (float32, float64)", op,
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
  g->bf16 = false;
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

typedef struct {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
} descs;

/* Destroys every descriptor made. check: 0, or -1 + rn_err for a failure
 * (the others are destroyed all the same); !check (on an error path, whose
 * first error must stand): statuses ignored, returns 0. */
static int descs_free(descs *d, bool check) {
  cudnnStatus_t st[4] = {CUDNN_STATUS_SUCCESS, CUDNN_STATUS_SUCCESS, CUDNN_STATUS_SUCCESS,
                         CUDNN_STATUS_SUCCESS};
  if (d->x) st[0] = dnn.cudnnDestroyTensorDescriptor(d->x);
  if (d->y) st[1] = dnn.cudnnDestroyTensorDescriptor(d->y);
  if (d->w) st[2] = dnn.cudnnDestroyFilterDescriptor(d->w);
  if (d->conv) st[3] = dnn.cudnnDestroyConvolutionDescriptor(d->conv);
  memset(d, 0, sizeof *d);
  static const char *const what[4] = {"cudnnDestroyTensorDescriptor(x)",
                                       "cudnnDestroyTensorDescriptor(y)",
                                       "cudnnDestroyFilterDescriptor(w)",
                                       "cudnnDestroyConvolutionDescriptor(conv)"};
  for (int i = 0; check && i < 4; i++)
    if (dnn_check(st[i], what[i], __FILE__, __LINE__) < 0) return -1;
  return 0;
}

static bool tf32_allowed(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("RN_CUDA_TF32");
    v = e && *e && strcmp(e, "0") != 0;
  }
  return v == 1;
}

/* the math type asked of cuDNN: tensor cores for bfloat16 math; plain FMA
 * for float32 (no TF32) unless allowed; the default for float64 */
static cudnnMathType_t wanted_math(const cgeom *g) {
  if (g->bf16) return CUDNN_TENSOR_OP_MATH;
  return g->key.dt == RN_F32 && !tf32_allowed() ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
}

/* x, y, w descriptors in g's data type (bfloat16 in bf16 math), the
 * convolution's compute type float32 in bf16 math (cuDNN's PSEUDO_BFLOAT16_CONFIG:
 * bf16 operands, float accumulation), else the data type */
static int descs_make(descs *d, const cgeom *g) {
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
    descs_free(d, false); /* the first error is the one reported */
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
} algo_entry;

static algo_entry cache[CACHE_N];
static int cache_next;

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
  if (strict && f32 && !tf32_allowed() && math != CUDNN_DEFAULT_MATH && math != CUDNN_FMA_MATH)
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
    st = dnn.cudnnGetConvolutionForwardWorkspaceSize(dnn.h, d->x, d->w, d->conv, d->y,
                                                     (cudnnConvolutionFwdAlgo_t)algo, &need);
  else if (k->kind == K_BWD_DATA)
    st = dnn.cudnnGetConvolutionBackwardDataWorkspaceSize(
        dnn.h, d->w, d->y, d->conv, d->x, (cudnnConvolutionBwdDataAlgo_t)algo, &need);
  else
    st = dnn.cudnnGetConvolutionBackwardFilterWorkspaceSize(
        dnn.h, d->x, d->y, d->conv, d->w, (cudnnConvolutionBwdFilterAlgo_t)algo, &need);
  /* cuDNN 9 reports sub-codes (CUDNN_STATUS_NOT_SUPPORTED_SHAPE = 3002,
   * CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER = 2003, ...): compare categories */
  if (CUDNN_STATUS_CATEGORY(st) == CUDNN_STATUS_NOT_SUPPORTED ||
      CUDNN_STATUS_CATEGORY(st) == CUDNN_STATUS_BAD_PARAM)
    return 0;
  if (dnn_check(st, "cudnnGetConvolution*WorkspaceSize(fixed deterministic algorithm)", __FILE__,
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
    if (DNNF(cudnnGetConvolutionForwardAlgorithmMaxCount, dnn.h, &maxc) < 0) return -1;
    if (maxc > MAX_ALGOS) maxc = MAX_ALGOS;
    if (find && dnn.cudnnFindConvolutionForwardAlgorithm(dnn.h, d->x, d->w, d->conv, d->y, maxc,
                                                          &got, perf) == CUDNN_STATUS_SUCCESS)
      PICK(perf);
    if (pick < 0) {
      if (DNNF(cudnnGetConvolutionForwardAlgorithm_v7, dnn.h, d->x, d->w, d->conv, d->y, maxc,
               &got, perf) < 0)
        return -1;
      PICK(perf);
    }
  } else if (k->kind == K_BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
    if (DNNF(cudnnGetConvolutionBackwardDataAlgorithmMaxCount, dnn.h, &maxc) < 0) return -1;
    if (maxc > MAX_ALGOS) maxc = MAX_ALGOS;
    if (find && dnn.cudnnFindConvolutionBackwardDataAlgorithm(dnn.h, d->w, d->y, d->conv, d->x,
                                                               maxc, &got, perf) ==
                    CUDNN_STATUS_SUCCESS)
      PICK(perf);
    if (pick < 0) {
      if (DNNF(cudnnGetConvolutionBackwardDataAlgorithm_v7, dnn.h, d->w, d->y, d->conv, d->x,
               maxc, &got, perf) < 0)
        return -1;
      PICK(perf);
    }
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
    if (DNNF(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount, dnn.h, &maxc) < 0) return -1;
    if (maxc > MAX_ALGOS) maxc = MAX_ALGOS;
    if (find && dnn.cudnnFindConvolutionBackwardFilterAlgorithm(dnn.h, d->x, d->y, d->conv,
                                                                 d->w, maxc, &got, perf) ==
                    CUDNN_STATUS_SUCCESS)
      PICK(perf);
    if (pick < 0) {
      if (DNNF(cudnnGetConvolutionBackwardFilterAlgorithm_v7, dnn.h, d->x, d->y, d->conv, d->w,
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
    if (DNNF(cudnnGetConvolutionForwardWorkspaceSize, dnn.h, d->x, d->w, d->conv, d->y,
             (cudnnConvolutionFwdAlgo_t)pick, &need) < 0)
      return -1;
  } else if (k->kind == K_BWD_DATA) {
    if (DNNF(cudnnGetConvolutionBackwardDataWorkspaceSize, dnn.h, d->w, d->y, d->conv, d->x,
             (cudnnConvolutionBwdDataAlgo_t)pick, &need) < 0)
      return -1;
  } else {
    if (DNNF(cudnnGetConvolutionBackwardFilterWorkspaceSize, dnn.h, d->x, d->y, d->conv, d->w,
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
static int plan(cgeom *g, descs *d, int *algo, size_t *ws) {
  g->key.det = rn_is_deterministic();
  g->key.forced = rn_conv_algo_forced((rn_conv_kind)g->key.kind);
  g->key.prec = g->key.dt == RN_F32 && rn_math_precision() == RN_BF16 ? RN_BF16 : RN_F32;
  const conv_key *k = &g->key;
  for (int i = 0; i < CACHE_N; i++)
    if (cache[i].used && memcmp(&cache[i].key, k, sizeof *k) == 0) {
      g->nchw = cache[i].nchw;
      g->bf16 = cache[i].bf16;
      *algo = cache[i].algo;
      *ws = cache[i].ws;
      if (descs_make(d, g) < 0) return -1;
      if (DNNF(cudnnSetConvolutionMathType, d->conv, cache[i].math) < 0) {
        descs_free(d, false);
        return -1;
      }
      return 0;
    }
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  /* the tries in order: {bf16 math, NCHW layout}; float64 is NCHW already */
  const bool nchw0 = g->nchw, bf0 = k->prec == RN_BF16;
  bool tries[4][2];
  int ntries = 0;
  for (int b = bf0 ? 1 : 0; b >= 0; b--) {
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
    if (descs_make(d, g) < 0) {
      rc = -1;
      continue;
    }
    rc = heuristics(g, d, algo, &math, ws); /* 1: none usable, -1: a cuDNN error */
    if (rc != 0) descs_free(d, false);      /* either way the next try may do */
  }
  if (rc != 0) return -1; /* rn_err names the last try's shape and layout */
  algo_entry *e = &cache[cache_next];
  cache_next = (cache_next + 1) % CACHE_N; /* a full table forgets its oldest entry */
  e->key = *k;
  e->used = 1;
  e->algo = *algo;
  e->nchw = g->nchw;
  e->bf16 = g->bf16;
  e->math = math;
  e->ws = *ws;
  return 0;
}

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
  if (!g->bf16) return 0;
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
  if (!g->bf16) return dst;
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

/* w (KH,KW,C/G,O) HWIO -> wk: (O,K) KRSC, or (O,C/G,KH,KW) KCRS when g->nchw;
 * in bf16 math a bfloat16 copy of that. The caller frees it. */
static void *filter_for_cudnn(const cgeom *g, const rn_tensor *w) {
  int64_t K = g->KH * g->KW * g->CW;
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
static const void *one_of(int dt) { return dt == RN_F32 ? (const void *)&SCAL.f1 : &SCAL.d1; }
static const void *zero_of(int dt) { return dt == RN_F32 ? (const void *)&SCAL.f0 : &SCAL.d0; }

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
  if (cgeom_init(&g, x->shape, w, y->shape, p, op) < 0 || check_contig(ts, 4, op) < 0 ||
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
  if (dnn_init() < 0) return -1;
  g.key.kind = K_FWD;
  descs d;
  int algo = 0;
  size_t wsz = 0;
  if (plan(&g, &d, &algo, &wsz) < 0) return -1;
  bool owned = false;
  void *wk = NULL, *ws = NULL;
  const void *xin = NULL;
  void *yn = NULL;  /* NCHW layout: the NCHW output */
  void *y16 = NULL; /* bf16 math: cuDNN's bfloat16 output */
  void *yc = NULL;  /* what cuDNN writes: y, yn or y16 */
  int rc = 0;
  if (rc == 0 && !(wk = filter_for_cudnn(&g, w))) rc = -1;
  if (rc == 0 && !(xin = input_of(&g, x, &owned))) rc = -1;
  if (rc == 0 && g.nchw && !(yn = tmp(&g, rn_numel(y)))) rc = -1;
  if (rc == 0 && !(yc = math_output(&g, yn ? yn : rn_ptr(y), &y16, rn_numel(y)))) rc = -1;
  if (rc == 0 && wsz && !(ws = rn_cuda_alloc(wsz))) rc = -1;
  if (rc == 0) /* alpha, beta: float for float32 and bfloat16 data, double for float64 */
    rc = DNNF(cudnnConvolutionForward, dnn.h, one_of(g.key.dt), d.x, xin, d.w, wk, d.conv,
              (cudnnConvolutionFwdAlgo_t)algo, ws, wsz, zero_of(g.key.dt), d.y, yc);
  if (rc == 0) rc = math_result(yn ? yn : rn_ptr(y), y16, rn_numel(y));
  if (rc == 0 && yn) rc = from_nchw(&g, rn_ptr(y), yn, g.N, g.OH, g.OW, g.O);
  /* the bias stays float32: y (rows,O) += b */
  if (rc == 0 && b) rc = CU(rnk_bias_add(g.key.dt, rn_ptr(y), rn_ptr(b), rows, g.O, s));
  rn_cuda_free(ws);
  rn_cuda_free(y16);
  rn_cuda_free(yn);
  if (owned) rn_cuda_free((void *)xin);
  rn_cuda_free(wk);
  if (descs_free(&d, rc == 0) < 0) rc = -1; /* checked only when nothing failed before */
  return rc;
}

int rn_cuda_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                            const rn_conv_params *p) {
  const char *op = "conv2d backward data";
  const rn_tensor *ts[3] = {gx, gy, w};
  cgeom g;
  if (gx->ndim != 4 || gy->ndim != 4) return rn_err("%s: gradients must be 4-d", op);
  if (cgeom_init(&g, gx->shape, w, gy->shape, p, op) < 0 || check_contig(ts, 3, op) < 0 ||
      check_dtypes(ts, 3, w->dtype, op) < 0)
    return -1;
  cudaStream_t s = rn_cuda_stream();
  if (rn_numel(gx) == 0) return 0;
  if (g.empty) return CU(cudaMemsetAsync(rn_ptr(gx), 0, (size_t)rn_numel(gx) * g.es, s));
  if (dnn_init() < 0) return -1;
  g.key.kind = K_BWD_DATA;
  descs d;
  int algo = 0;
  size_t wsz = 0;
  if (plan(&g, &d, &algo, &wsz) < 0) return -1;
  const conv_key *k = &g.key;
  int64_t nxp = (int64_t)k->n * k->h * k->w * k->c; /* cuDNN's dx: padded when asymmetric */
  void *wk = NULL, *ws = NULL, *gxp = NULL, *gxn = NULL;
  void *gx16 = NULL, *dc = NULL; /* bf16 math: cuDNN's bfloat16 dx; what cuDNN writes */
  const void *gyin = NULL;       /* gy as cuDNN reads it (NCHW and/or bf16 copy) */
  bool gyown = false;
  int rc = 0;
  if (rc == 0 && !(wk = filter_for_cudnn(&g, w))) rc = -1;
  if (rc == 0 && g.asym && !(gxp = tmp(&g, nxp))) rc = -1;
  if (rc == 0 && !(gyin = grad_of(&g, gy, &gyown))) rc = -1;
  if (rc == 0 && g.nchw && !(gxn = tmp(&g, nxp))) rc = -1;
  /* NHWC dx (padded or not), and its float32/64 home cuDNN's answer goes to
   * (NCHW in the NCHW layout) */
  void *dx = gxp ? gxp : rn_ptr(gx);
  void *dhome = gxn ? gxn : dx;
  if (rc == 0 && !(dc = math_output(&g, dhome, &gx16, nxp))) rc = -1;
  if (rc == 0 && wsz && !(ws = rn_cuda_alloc(wsz))) rc = -1;
  if (rc == 0)
    rc = DNNF(cudnnConvolutionBackwardData, dnn.h, one_of(k->dt), d.w, wk, d.y, gyin, d.conv,
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
  rn_cuda_free(wk);
  if (descs_free(&d, rc == 0) < 0) rc = -1; /* checked only when nothing failed before */
  return rc;
}

/* gb (O) = column sums of gy (rows, O), in double */
static int bias_grad(const cgeom *g, rn_tensor *gb, const rn_tensor *gy) {
  int64_t rows = g->N * g->OH * g->OW;
  int64_t nblk = (rows + RNK_BN_BLK - 1) / RNK_BN_BLK;
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
  if (cgeom_init(&g, x->shape, gw, gy->shape, p, op) < 0 || check_contig(ts, 4, op) < 0 ||
      check_dtypes(ts, 4, gw->dtype, op) < 0)
    return -1;
  if (gb && rn_numel(gb) != g.O) return rn_err("%s: bias gradient must have %lld elements", op,
                                               (long long)g.O);
  cudaStream_t s = rn_cuda_stream();
  if (gb && g.O > 0 && bias_grad(&g, gb, gy) < 0) return -1;
  if (rn_numel(gw) == 0) return 0;
  if (g.empty) return CU(cudaMemsetAsync(rn_ptr(gw), 0, (size_t)rn_numel(gw) * g.es, s));
  if (dnn_init() < 0) return -1;
  g.key.kind = K_BWD_FILTER;
  descs d;
  int algo = 0;
  size_t wsz = 0;
  if (plan(&g, &d, &algo, &wsz) < 0) return -1;
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
  if (rc == 0)
    rc = DNNF(cudnnConvolutionBackwardFilter, dnn.h, one_of(g.key.dt), d.x, xin, d.y, gyin,
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
  if (descs_free(&d, rc == 0) < 0) rc = -1; /* checked only when nothing failed before */
  return rc;
}
