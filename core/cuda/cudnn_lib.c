/* cudnn_lib.c (cuda) - opening cuDNN at run time (rn_dlib_open:
 * libcudnn.so.9 and its split libraries, also from PyTorch's site-packages),
 * its entry points dlsym'ed into rn_dnn (each checked against cudnn.h's
 * prototype at compile time), the handle on rnlua's stream, and the status
 * check every cuDNN call goes through (DNNF). The convolutions that use it
 * are in cudnn.c (header comment: layouts, precision, algorithms).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudnn_int.h"

rn_dnn_lib rn_dnn;

/* Each pointer's type is that of the entry point cudnn.h declares (checked
 * at compile time, without referencing the symbol: nothing is linked). */
#define SAME_SIG(fn)                                                                 \
  _Static_assert(__builtin_types_compatible_p(__typeof__(&fn), __typeof__(rn_dnn.fn)), \
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

const char *rn_cuda_cudnn_path(void) { return rn_dnn.path; }
size_t rn_cuda_cudnn_version(void) { return rn_dnn.version; }

/* 0 for success, else -1 with rn_err("cudnn: <call> failed: <status> (file:line)") */
int rn_dnn_check(cudnnStatus_t st, const char *call, const char *file, int line) {
  if (st == CUDNN_STATUS_SUCCESS) return 0;
  const char *s = rn_dnn.cudnnGetErrorString ? rn_dnn.cudnnGetErrorString(st) : NULL;
  char num[32];
  if (!s) {
    snprintf(num, sizeof num, "status %d", (int)st);
    s = num;
  }
  return rn_err("cudnn: %s failed: %s (%s:%d)", call, s, file, line);
}

/* dlsym into a function pointer (copied bytewise: ISO C has no cast from
 * void * to a function pointer) */
static int sym(void *dst, size_t size, const char *name) {
  void *p = rn_dlib_sym(rn_dnn.lib, "cuDNN", name);
  if (!p) return -1;
  memcpy(dst, &p, size);
  return 0;
}
#define SYM(name) sym(&rn_dnn.name, sizeof rn_dnn.name, #name)

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

/* Opens cuDNN and creates the handle on the first convolution. A missing
 * library or symbol is remembered; a failed cudnnCreate (e.g. out of
 * memory) is retried by the next call. */
int rn_dnn_init(void) {
  if (rn_dnn.state == 1) return 0;
  if (rn_dnn.state == -1) return rn_err("%s", rn_dnn.why);
  if (rn_cuda_init() < 0) return -1;
  if (!rn_dnn.lib) {
    /* float32 without TF32 unless asked for: cuDNN reads this when it loads */
    if (!rn_dnn_tf32_allowed()) setenv("NVIDIA_TF32_OVERRIDE", "0", 0);
    static const char *const names[] = {"libcudnn.so.9", "libcudnn.so", NULL};
    /* cuDNN 9's libcudnn is a shim that opens these by name: preloaded from
     * the same dir when it is found by path (the order resolves their
     * DT_NEEDED entries among themselves) */
    static const char *const deps[] = {"libcudnn_graph", "libcudnn_engines_runtime_compiled",
                                       "libcudnn_engines_precompiled", "libcudnn_heuristic",
                                       "libcudnn_ops", "libcudnn_cnn", "libcudnn_adv", NULL};
    rn_dnn.lib = rn_dlib_open("cuDNN", names, deps, rn_dnn.path, sizeof rn_dnn.path);
    int rc = rn_dnn.lib ? load_syms() : -1;
    if (rc == 0) {
      rn_dnn.version = rn_dnn.cudnnGetVersion();
      if (rn_dnn.version / 10000 != 9)
        rc = rn_err("cuda: cuDNN %s is version %zu; rnlua needs cuDNN 9 (libcudnn.so.9)",
                    rn_dnn.path, rn_dnn.version);
    }
    if (rc < 0) {
      snprintf(rn_dnn.why, sizeof rn_dnn.why, "%s", rn_errmsg()); /* permanent: remembered */
      rn_dnn.state = -1;
      return -1;
    }
  }
  cudnnHandle_t h = NULL;
  if (DNNF(cudnnCreate, &h) < 0) return -1;
  if (DNNF(cudnnSetStream, h, rn_cuda_stream()) < 0) {
    (void)rn_dnn.cudnnDestroy(h); /* best effort on an error path */
    return -1;
  }
  rn_dnn.h = h;
  rn_dnn.state = 1;
  return 0;
}

/* $RN_CUDA_TF32=1 allows TF32 tensor-op math for float32 */
bool rn_dnn_tf32_allowed(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("RN_CUDA_TF32");
    v = e && *e && strcmp(e, "0") != 0;
  }
  return v == 1;
}
