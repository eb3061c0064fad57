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
/* both enums come from core/oplist.h; this checks the two expansions agree */
#define UCHK(E, n, np, a, b, i) SAME(RNK_##E, RN_OP_##E) &&
#define BCHK(E, n) SAME(RNK_##E, RN_OP_##E) &&
_Static_assert(RN_UNARY_OPS(UCHK) SAME(RNK_NUNARY, RN_NUNARY),
               "kernels.h unary op codes differ from rn_unop");
_Static_assert(RN_BINARY_OPS(BCHK) SAME(RNK_NBINARY, RN_NBINARY),
               "kernels.h binary op codes differ from rn_binop");
_Static_assert(SAME(RN_LINE_CONSTANT, 0) && SAME(RN_LINE_REFLECT, 1) && SAME(RN_LINE_REPLICATE, 2) &&
                   SAME(RN_LINE_NEAREST, 3) && SAME(RN_LINE_BILINEAR, 4) &&
                   SAME(RN_PADDING_CONSTANT, RN_LINE_CONSTANT) && SAME(RN_PADDING_REFLECT, RN_LINE_REFLECT) &&
                   SAME(RN_PADDING_REPLICATE, RN_LINE_REPLICATE),
               "kernels/pad.cu line kinds differ from core/backend.h");
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
  .gemm_batched = rn_cuda_gemm_batched,
  .conv2d_fwd = rn_cuda_conv2d_fwd,
  .conv2d_bwd_data = rn_cuda_conv2d_bwd_data,
  .conv2d_bwd_filter = rn_cuda_conv2d_bwd_filter,
  .pool2d_fwd = rn_cuda_pool2d_fwd,
  .pool2d_bwd = rn_cuda_pool2d_bwd,
  .bn_fwd_train = rn_cuda_bn_fwd_train,
  .bn_fwd_infer = rn_cuda_bn_fwd_infer,
  .bn_bwd = rn_cuda_bn_bwd,
  .optim_multi_step = rn_cuda_optim_multi_step,
  .gnorm_fwd = rn_cuda_gnorm_fwd,
  .gnorm_bwd = rn_cuda_gnorm_bwd,
  .embedding_fwd = rn_cuda_embedding_fwd,
  .embedding_bwd = rn_cuda_embedding_bwd,
  .sdpa_fwd = rn_cuda_sdpa_fwd,
  .sdpa_bwd = rn_cuda_sdpa_bwd,
  .line_fwd = rn_cuda_line_fwd,
  .line_bwd = rn_cuda_line_bwd,
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
  /* issue #18: the table with the bf16 converting wrappers (bf16.c) in the
   * slots whose kernels take float32/float64 only; issue 19:
   * $RN_CUDA_BN_RELU=0 also drops the fused BN+ReLU slots (batch norm, then
   * relu: the path before) */
  static rn_backend with_bf16;
  static bool made;
  if (!made) {
    with_bf16 = cuda_backend;
    rn_cuda_bf16_table(&with_bf16);
    made = true;
  }
  const char *e = getenv("RN_CUDA_BN_RELU");
  if (e && strcmp(e, "0") == 0) {
    if (!cuda_backend_unfused.name) {
      cuda_backend_unfused = with_bf16;
      cuda_backend_unfused.bn_relu_fwd_train = NULL;
      cuda_backend_unfused.bn_relu_fwd_infer = NULL;
      cuda_backend_unfused.bn_relu_bwd = NULL;
    }
    return &cuda_backend_unfused;
  }
  return &with_bf16;
}
