/* bf16.c (cuda) - bfloat16 (and float16) tensors on the CUDA slots whose
 * kernels take float32/float64 only: core/bf16_twin.h's converting path
 * (float32 twins on the device through the converting copy kernel, the
 * float32 kernel, outputs rounded back once), made for CUDA. The
 * elementwise, reduction and copy slots take every dtype themselves, cuBLAS
 * gemm takes bf16 (blas.c); these pass bf16 straight to their kernels
 * (issue #18, the mixed_bfloat16 policy's bf16 activations on the GPU):
 *   - the convolutions: cuDNN reads and writes bf16 (cudnn.c: g->native),
 *     a shape without a bf16 algorithm converting as before;
 *     $RN_CUDA_BF16_NATIVE=0 converts them all;
 *   - batch norm and the fused BN+ReLU (bn_* and bn_relu_*): a bf16 x/y/gy/
 *     gx with float32 parameters, statistics and parameter gradients (the
 *     mixed case) runs kernels/nn.cu's bf16 kernels (nn.c); a bf16 x with
 *     bf16 parameters converts;
 *   - pooling (max/avg, forward and backward) on bf16 tensors: nn.cu.
 * $RN_CUDA_BF16_ACT=0 sends batch norm and pooling through the converting
 * path again (the behaviour before; lua/rn/layers/base.lua then also keeps
 * float32 activations on the GPU). The rest (unary_backward, softmax,
 * cross_entropy, gnorm, embedding_bwd, sdpa, line) still converts.
 *
 * Written without a GPU (issue #18); the same text runs on the CPU
 * (core/cpu/bf16.c, tested by tests/test_bf16.lua); the device tests are
 * tests/test_cuda_bf16act.lua. rn_cuda_bf16_table fills the slots of a
 * table. */
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

#define BW_DEV RN_CUDA
#define BW_COPY rn_cuda_copy
#define BW(slot) bw_##slot
#define BW_K(slot) rn_cuda_##slot
/* $RN_CUDA_BF16_ACT=0: batch norm and pooling convert as before */
static bool act_native(void) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("RN_CUDA_BF16_ACT");
    on = !(e && strcmp(e, "0") == 0);
  }
  return on;
}
/* nn.c's batch norm: bf16 data with float32 (C) tensors */
#define BW_NATIVE(x) (act_native() && (x)->dtype == RN_BF16)
#define BW_PARAM_OK(p) ((p)->dtype == RN_F32)
#define BW_POOL_NATIVE(t) (act_native() && (t)->dtype == RN_BF16)
#define BW_LINK static
#define BW_CONV
/* bf16 convolutions read and write bf16 in cuDNN (cudnn.c: g->native);
 * $RN_CUDA_BF16_NATIVE=0 converts around float32 kernels as before */
static bool conv_native(const rn_tensor *t) {
  static int on = -1;
  if (on < 0) {
    const char *e = getenv("RN_CUDA_BF16_NATIVE");
    on = !(e && strcmp(e, "0") == 0);
  }
  return on && t->dtype == RN_BF16;
}
#define BW_CONV_NATIVE(t) conv_native(t)
#include "../bf16_twin.h"

void rn_cuda_bf16_table(rn_backend *be) {
#define SLOT(s) be->s = bw_##s
  SLOT(unary_backward); SLOT(softmax); SLOT(softmax_backward); SLOT(cross_entropy);
  SLOT(conv2d_fwd); SLOT(conv2d_bwd_data); SLOT(conv2d_bwd_filter);
  SLOT(pool2d_fwd); SLOT(pool2d_bwd); SLOT(bn_fwd_train); SLOT(bn_fwd_infer); SLOT(bn_bwd);
  SLOT(bn_relu_fwd_train); SLOT(bn_relu_fwd_infer); SLOT(bn_relu_bwd);
  SLOT(gnorm_fwd); SLOT(gnorm_bwd); SLOT(embedding_bwd); SLOT(sdpa_fwd); SLOT(sdpa_bwd);
  SLOT(line_fwd); SLOT(line_bwd);
#undef SLOT
}
