/* backend.c (cpu) - the CPU backend table and its thread setting. */
#include <omp.h>

#include "cpu.h"

/* OpenBLAS's thread setter (declared in its cblas.h; kept local to avoid
 * pulling the whole header in here). */
void openblas_set_num_threads(int n);

static int nthreads = 0;

void rn_cpu_set_threads(int n) {
  if (n < 1) n = 1;
  nthreads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int rn_cpu_get_threads(void) { return nthreads ? nthreads : omp_get_max_threads(); }

/* Slots whose kernels have no 16-bit loop point at their bf16.c wrapper,
 * which widens bf16/fp16 operands to float32 around the rn_cpu_ kernel (and
 * passes other dtypes straight through). */
const rn_backend rn_cpu_backend = {
  .name = "cpu",
  .dev = RN_CPU,
  .alloc = rn_cpu_alloc,
  .free = rn_cpu_free,
  .to_host = rn_cpu_memcpy,
  .from_host = rn_cpu_memcpy,
  .copy = rn_cpu_copy,
  .fill = rn_cpu_fill,
  .unary = rn_cpu_unary,
  .unary_backward = rn_bf16_unary_backward,
  .binary = rn_cpu_binary,
  .axpy = rn_cpu_axpy,
  .reduce = rn_cpu_reduce,
  .argmax = rn_cpu_argmax,
  .softmax = rn_bf16_softmax,
  .softmax_backward = rn_bf16_softmax_backward,
  .cross_entropy = rn_bf16_cross_entropy,
  .gemm = rn_bf16_gemm,
  .conv2d_fwd = rn_cpu_conv2d_fwd,
  .conv2d_fwd_fused = rn_cpu_conv2d_fwd_fused,
  .conv2d_bwd_data = rn_cpu_conv2d_bwd_data,
  .conv2d_bwd_filter = rn_cpu_conv2d_bwd_filter,
  .pool2d_fwd = rn_bf16_pool2d_fwd,
  .pool2d_bwd = rn_bf16_pool2d_bwd,
  .bn_fwd_train = rn_bf16_bn_fwd_train,
  .bn_fwd_infer = rn_bf16_bn_fwd_infer,
  .bn_bwd = rn_bf16_bn_bwd,
  .bn_relu_fwd_train = rn_bf16_bn_relu_fwd_train,
  .bn_relu_fwd_infer = rn_bf16_bn_relu_fwd_infer,
  .bn_relu_bwd = rn_bf16_bn_relu_bwd,
  .gnorm_fwd = rn_bf16_gnorm_fwd,
  .gnorm_bwd = rn_bf16_gnorm_bwd,
  .embedding_fwd = rn_cpu_embedding_fwd,
  .embedding_bwd = rn_bf16_embedding_bwd,
  .sdpa_fwd = rn_bf16_sdpa_fwd,
  .sdpa_bwd = rn_bf16_sdpa_bwd,
  .line_fwd = rn_bf16_line_fwd,
  .line_bwd = rn_bf16_line_bwd,
};
