/* bf16.c (cuda) - bfloat16 (and float16) tensors on the CUDA slots whose
 * kernels take float32/float64 only: core/bf16_twin.h's converting path
 * (float32 twins on the device through the converting copy kernel, the
 * float32 kernel, outputs rounded back once), made for CUDA. The
 * elementwise, reduction and copy slots take every dtype themselves; the
 * convolutions convert around cuDNN's float32 kernels (with bf16 math under
 * the mixed_bfloat16 policy: core/precision.c). gemm is not wrapped: cuBLAS
 * refuses bf16 here until blas.c gets its bf16 path.
 *
 * Compiled, never run on a GPU while it was written (issue #18: no GPU on
 * the machine); the same text runs on the CPU (core/cpu/bf16.c, tested by
 * tests/test_bf16.lua). rn_cuda_bf16_table fills the slots of a table. */
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

#define BW_DEV RN_CUDA
#define BW_COPY rn_cuda_copy
#define BW(slot) bw_##slot
#define BW_K(slot) rn_cuda_##slot
#define BW_NATIVE(x) ((void)(x), false)
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
  SLOT(gnorm_fwd); SLOT(gnorm_bwd); SLOT(embedding_bwd); SLOT(sdpa_fwd); SLOT(sdpa_bwd);
  SLOT(line_fwd); SLOT(line_bwd);
#undef SLOT
}
