/* cudnn_int.h (cuda) - what the three cuDNN files share: the entry points
 * dlsym'ed from libcudnn (cudnn_lib.c), the convolution's geometry, its
 * descriptors and the per-shape algorithm choice (cudnn_algo.c), used by the
 * three directions (cudnn.c). Internal to core/cuda/cudnn*.c.
 */
#ifndef RN_CUDNN_INT_H
#define RN_CUDNN_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <cudnn.h>

#include "../determinism.h"
#include "../dcache.h"
#include "cuda.h"

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

typedef struct {
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
} rn_dnn_lib;

extern rn_dnn_lib rn_dnn; /* cudnn_lib.c */

/* 0 for success, else -1 with rn_err("cudnn: <call> failed: <status> (file:line)") */
int rn_dnn_check(cudnnStatus_t st, const char *call, const char *file, int line);
/* DNNF(fn, args...): calls rn_dnn.fn(args...) (fn: a cuDNN entry point's name)
 * and checks its status, naming fn and this file:line */
#define DNNF(fn, ...) rn_dnn_check(rn_dnn.fn(__VA_ARGS__), #fn, __FILE__, __LINE__)

/* Opens cuDNN and creates the handle (rn_dnn.h) on the first convolution. */
int rn_dnn_init(void);
/* $RN_CUDA_TF32=1: float32 may use TF32 tensor-op math */
bool rn_dnn_tf32_allowed(void);

/* ---- geometry (cudnn_algo.c) ---------------------------------------------- */

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
  bool native;          /* bfloat16 tensors: cuDNN reads and writes them as they
                         * are, no conversion (bf16 is then set too) */
  bool empty;           /* a zero-sized dim: no cuDNN call */
  conv_key key;
  size_t es;
} cgeom;

/* From x's shape xs (N,H,W,C), w (KH,KW,C/G,O), y's shape ys (N,OH,OW,O). */
int rn_dnn_geom_init(cgeom *g, const int64_t *xs, const rn_tensor *w, const int64_t *ys,
                     const rn_conv_params *p, const char *op);

typedef struct {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  bool cached; /* owned by the algorithm cache (rn_dnn_descs_free only forgets them) */
} descs;

int rn_dnn_descs_free(descs *d, bool check);
int rn_dnn_descs_make(descs *d, const cgeom *g);
/* Descriptors d and the algorithm for g (kind set), cached per shape; the
 * descriptors too (made once per shape, never per call) unless
 * $RN_CUDNN_DESC_CACHE=0, which restores per-call descriptors. */
int rn_dnn_plan(cgeom *g, descs *d, int *algo, size_t *ws);

/* cudnn_graph.c (issue 19, $RN_CUDNN_GRAPH=1): the convolution of kind on
 * g through the graph API's cached plan, pointers as cuDNN sees them (x:
 * the input or dx, w: the filter or dw, y: the output or dy). *used false:
 * not taken (off, float64, no plan for the key); the caller runs the
 * legacy call. 0, or -1 after rn_err. */
int rn_dnn_graph_conv(const cgeom *g, int kind, const void *x, const void *w, void *y, bool *used);

#endif
