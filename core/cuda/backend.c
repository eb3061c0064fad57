/* backend.c (cuda) - the CUDA backend table, its host<->device copies, and
 * rn_cuda_backend(), which core/backend.c calls for RN_CUDA: the table once
 * a device is found, else NULL with the reason (device.c).
 *
 * Every slot is filled: conv2d_* through cuDNN (cudnn.c), pool2d_* and bn_*
 * with kernels/nn.cu (nn.c); of the optional slots, optim_multi_step
 * and l2_penalty_multi (optim.c, kernels/optim.cu), bn_relu_* (nn.c). */
#include <stdlib.h>
#include <string.h>

#include "../capture.h"
#include "cuda.h"

/* kernels/kernels.h repeats the core's enum values as plain ints */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(RNK_F32, RN_F32) && SAME(RNK_F64, RN_F64) && SAME(RNK_U8, RN_U8) &&
                   SAME(RNK_I32, RN_I32) && SAME(RNK_I64, RN_I64) && SAME(RNK_BF16, RN_BF16) &&
                   SAME(RNK_F16, RN_F16) && SAME(RNK_NDTYPES, RN_NDTYPES),
               "kernels.h dtype codes differ from rn_dtype");
_Static_assert(SAME(RNK_NEG, RN_OP_NEG) && SAME(RNK_EXP, RN_OP_EXP) && SAME(RNK_LOG, RN_OP_LOG) &&
                   SAME(RNK_SQRT, RN_OP_SQRT) && SAME(RNK_RELU, RN_OP_RELU) &&
                   SAME(RNK_ABS, RN_OP_ABS) && SAME(RNK_TANH, RN_OP_TANH) &&
                   SAME(RNK_SIGMOID, RN_OP_SIGMOID) && SAME(RN_NUNARY, RNK_SIGMOID + 1),
               "kernels.h unary op codes differ from rn_unop");
_Static_assert(SAME(RNK_ADD, RN_OP_ADD) && SAME(RNK_SUB, RN_OP_SUB) && SAME(RNK_MUL, RN_OP_MUL) &&
                   SAME(RNK_DIV, RN_OP_DIV) && SAME(RNK_POW, RN_OP_POW) &&
                   SAME(RNK_MAXIMUM, RN_OP_MAXIMUM) && SAME(RNK_MINIMUM, RN_OP_MINIMUM) &&
                   SAME(RNK_EQ, RN_OP_EQ) && SAME(RNK_NE, RN_OP_NE) && SAME(RNK_LT, RN_OP_LT) &&
                   SAME(RNK_LE, RN_OP_LE) && SAME(RNK_GT, RN_OP_GT) && SAME(RNK_GE, RN_OP_GE) &&
                   SAME(RN_NBINARY, RNK_GE + 1),
               "kernels.h binary op codes differ from rn_binop");
_Static_assert(SAME(RNK_SUM, RN_RED_SUM) && SAME(RNK_MEAN, RN_RED_MEAN) &&
                   SAME(RNK_MAX, RN_RED_MAX) && SAME(RNK_MIN, RN_RED_MIN),
               "kernels.h reduction codes differ from rn_redop");
_Static_assert(SAME(RNK_MAXDIM, RN_MAXDIM), "RNK_MAXDIM differs from RN_MAXDIM");

/* Synchronous copies: enqueued on the stream (after every kernel that
 * writes the source) and waited for, so the host buffer is usable on return. */
int rn_cuda_to_host(void *dst, const void *src, size_t n) {
  if (rn_capture_forbid("a device-to-host copy") < 0) return -1; /* issue 19 */
  if (n == 0) return 0;
  cudaStream_t s = rn_cuda_stream();
  if (CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s)) < 0) return -1;
  return CU(cudaStreamSynchronize(s));
}

int rn_cuda_from_host(void *dst, const void *src, size_t n) {
  if (rn_capture_forbid("a host-to-device copy") < 0) return -1; /* issue 19 */
  if (n == 0) return 0;
  cudaStream_t s = rn_cuda_stream();
  if (CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s)) < 0) return -1;
  return CU(cudaStreamSynchronize(s));
}

static const rn_backend cuda_backend = {
  .name = "cuda",
  .dev = RN_CUDA,
  .alloc = rn_cuda_alloc,
  .free = rn_cuda_free,
  .to_host = rn_cuda_to_host,
  .from_host = rn_cuda_from_host,
  .copy = rn_cuda_copy,
  .fill = rn_cuda_fill,
  .unary = rn_cuda_unary,
  .unary_backward = rn_cuda_unary_backward,
  .binary = rn_cuda_binary,
  .axpy = rn_cuda_axpy,
  .reduce = rn_cuda_reduce,
  .argmax = rn_cuda_argmax,
  .softmax = rn_cuda_softmax,
  .softmax_backward = rn_cuda_softmax_backward,
  .cross_entropy = rn_cuda_cross_entropy,
  .gemm = rn_cuda_gemm,
  .conv2d_fwd = rn_cuda_conv2d_fwd,
  .conv2d_bwd_data = rn_cuda_conv2d_bwd_data,
  .conv2d_bwd_filter = rn_cuda_conv2d_bwd_filter,
  .pool2d_fwd = rn_cuda_pool2d_fwd,
  .pool2d_bwd = rn_cuda_pool2d_bwd,
  .bn_fwd_train = rn_cuda_bn_fwd_train,
  .bn_fwd_infer = rn_cuda_bn_fwd_infer,
  .bn_bwd = rn_cuda_bn_bwd,
  .optim_multi_step = rn_cuda_optim_multi_step,
  .l2_penalty_multi = rn_cuda_l2_penalty_multi,
  .bn_relu_fwd_train = rn_cuda_bn_relu_fwd_train,
  .bn_relu_fwd_infer = rn_cuda_bn_relu_fwd_infer,
  .bn_relu_bwd = rn_cuda_bn_relu_bwd,
};

/* issue 19: $RN_CUDA_BN_RELU=0 gives the table without the fused BN+ReLU
 * slots (batch norm, then relu: the path before) */
static rn_backend cuda_backend_unfused;

const rn_backend *rn_cuda_backend(void) {
  if (rn_cuda_init() < 0) return NULL;
  const char *e = getenv("RN_CUDA_BN_RELU");
  if (e && strcmp(e, "0") == 0) {
    if (!cuda_backend_unfused.name) {
      cuda_backend_unfused = cuda_backend;
      cuda_backend_unfused.bn_relu_fwd_train = NULL;
      cuda_backend_unfused.bn_relu_fwd_infer = NULL;
      cuda_backend_unfused.bn_relu_bwd = NULL;
    }
    return &cuda_backend_unfused;
  }
  return &cuda_backend;
}
