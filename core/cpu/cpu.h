/* cpu.h - CPU kernels, one group per file in core/cpu/, collected into the
 * rn_cpu_backend table (core/cpu/backend.c). Signatures are the slots of
 * rn_backend (core/backend.h). */
#ifndef RN_CPU_H
#define RN_CPU_H

#include "../backend.h"

/* Strided iteration helper: coalesces dims of up to 3 operands that share a
 * shape (y, a, b; stride 0 marks broadcast). After rn_iter_init, visit
 * it.outer rows; each row has it.inner elements with strides it.istride[k];
 * rn_iter_row(&it, r, off) gives each operand's element offset of row r. */
typedef struct {
  int nops, ndim;
  int64_t shape[RN_MAXDIM];
  int64_t stride[3][RN_MAXDIM];
  int64_t inner, outer;
  int64_t istride[3];
} rn_iter;
void rn_iter_init(rn_iter *it, int nops, const rn_tensor *const *ts);
void rn_iter_row(const rn_iter *it, int64_t row, int64_t *off);

/* bfloat16 <-> float32 in registers (round to nearest even, NaN kept
 * quiet: rn_f32_to_bf16's rule), for the kernels' bf16 loops */
static inline float rn_bf16f(uint16_t h) {
  union { uint32_t u; float f; } v = {(uint32_t)h << 16};
  return v.f;
}
static inline uint16_t rn_f2bf16(float f) {
  union { float f; uint32_t u; } v = {f};
  uint32_t u = v.u;
  return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u
                                                     : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
#define RN_BF16_CHUNK 256 /* elements a bf16 loop widens at a time */

/* alloc.c: aligned blocks with a cache of freed large blocks */
typedef struct {
  size_t allocated, reserved, peak, cached, limit; /* bytes */
  size_t hits, misses;                             /* cacheable allocations */
} rn_cpu_mem_stats;
void *rn_cpu_alloc(size_t nbytes);
void rn_cpu_free(void *p);
void rn_cpu_empty_cache(void);
void rn_cpu_memory_stats(rn_cpu_mem_stats *out);
int rn_cpu_memcpy(void *dst, const void *src, size_t n);
int rn_cpu_copy(rn_tensor *dst, const rn_tensor *src);
int rn_cpu_fill(rn_tensor *t, double v);
/* unary.c */
int rn_cpu_unary(rn_unop op, const double *p, rn_tensor *y, const rn_tensor *x);
int rn_cpu_unary_backward(rn_unop op, const double *p, rn_tensor *gx, const rn_tensor *gy,
                          const rn_tensor *x, const rn_tensor *y);
int rn_cpu_binary(rn_binop op, rn_tensor *y, const rn_tensor *a, const rn_tensor *b);
int rn_cpu_axpy(rn_tensor *y, double alpha, const rn_tensor *x);
int rn_cpu_reduce(rn_redop op, rn_tensor *y, const rn_tensor *x);
int rn_cpu_argmax(rn_tensor *idx, const rn_tensor *x, int dim);
int rn_cpu_softmax(rn_tensor *y, const rn_tensor *x, bool log);
int rn_cpu_softmax_backward(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *y, bool log);
int rn_cpu_cross_entropy(rn_tensor *loss, rn_tensor *dlogits, const rn_tensor *logits,
                         const rn_tensor *labels, double smoothing);
int rn_cpu_gemm(rn_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                int64_t ldc);
int rn_cpu_conv2d_fwd_fused(rn_tensor *y, const rn_tensor *x, const rn_tensor *w,
                            const rn_tensor *b, const rn_conv_params *p, int post);
int rn_cpu_conv2d_fwd(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                      const rn_conv_params *p);
int rn_cpu_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                           const rn_conv_params *p);
int rn_cpu_conv2d_bwd_filter(rn_tensor *gw, rn_tensor *gb, const rn_tensor *gy,
                             const rn_tensor *x, const rn_conv_params *p);
int rn_cpu_pool2d_fwd(bool max, rn_tensor *y, const rn_tensor *x, const rn_pool_params *p);
int rn_cpu_pool2d_bwd(bool max, rn_tensor *gx, const rn_tensor *gy, const rn_tensor *x,
                      const rn_tensor *y, const rn_pool_params *p);
/* pad.c: pad and resize, one dim at a time */
int rn_cpu_line_fwd(rn_tensor *y, const rn_tensor *x, const rn_line_params *p);
int rn_cpu_line_bwd(rn_tensor *gx, const rn_tensor *gy, const rn_line_params *p);
/* attention.c */
int rn_cpu_sdpa_fwd(rn_tensor *o, rn_tensor *lse, const rn_tensor *q, const rn_tensor *k,
                 const rn_tensor *v, const rn_sdpa_params *p);
int rn_cpu_sdpa_bwd(rn_tensor *gq, rn_tensor *gk, rn_tensor *gv, const rn_tensor *go,
                 const rn_tensor *q, const rn_tensor *k, const rn_tensor *v, const rn_tensor *o,
                 const rn_tensor *lse, const rn_sdpa_params *p);
/* embedding.c / norm_group.c */
int rn_cpu_embedding_fwd(rn_tensor *y, const rn_tensor *idx, const rn_tensor *w);
int rn_cpu_embedding_bwd(rn_tensor *gw, const rn_tensor *gy, const rn_tensor *idx);
/* norm_group.c: layer and group norm */
int rn_cpu_gnorm_fwd(rn_tensor *y, rn_tensor *mean, rn_tensor *rstd, const rn_tensor *x,
                  const rn_tensor *gamma, const rn_tensor *beta, int64_t N, int64_t S, int64_t G,
                  int64_t Cg, double eps);
int rn_cpu_gnorm_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                  const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *mean,
                  const rn_tensor *rstd, int64_t N, int64_t S, int64_t G, int64_t Cg);
int rn_cpu_bn_fwd_train(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                        const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                        rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                        bool unbiased, double eps);
int rn_cpu_bn_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                        const rn_tensor *beta, const rn_tensor *running_mean,
                        const rn_tensor *running_var, double eps);
int rn_cpu_bn_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                  const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *save_mean,
                  const rn_tensor *save_invstd);

int rn_cpu_bn_relu_fwd_train(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                             const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                             rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                             bool unbiased, double eps);
int rn_cpu_bn_relu_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                             const rn_tensor *beta, const rn_tensor *running_mean,
                             const rn_tensor *running_var, double eps);
int rn_cpu_bn_relu_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                       const rn_tensor *x, const rn_tensor *y, const rn_tensor *gamma,
                       const rn_tensor *beta, const rn_tensor *save_mean,
                       const rn_tensor *save_invstd);

/* bf16.c: the converting path of 16-bit tensors (float32 twins, float32
 * kernel, rounded back); same signatures as the rn_cpu_ kernels they wrap
 * (conv2d_fwd takes the fused form's post, 0 for none) */
bool rn_cpu_is_half(const rn_tensor *t);
int rn_bf16_unary_backward(rn_unop op, const double *p, rn_tensor *gx, const rn_tensor *gy,
                           const rn_tensor *x, const rn_tensor *y);
int rn_bf16_softmax(rn_tensor *y, const rn_tensor *x, bool log);
int rn_bf16_softmax_backward(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *y, bool log);
int rn_bf16_cross_entropy(rn_tensor *loss, rn_tensor *dlogits, const rn_tensor *logits,
                          const rn_tensor *labels, double smoothing);
int rn_bf16_gemm(rn_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                 const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                 int64_t ldc);
int rn_bf16_conv2d_fwd(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                       const rn_conv_params *p, int post);
int rn_bf16_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                            const rn_conv_params *p);
int rn_bf16_conv2d_bwd_filter(rn_tensor *gw, rn_tensor *gb, const rn_tensor *gy,
                              const rn_tensor *x, const rn_conv_params *p);
int rn_bf16_pool2d_fwd(bool max, rn_tensor *y, const rn_tensor *x, const rn_pool_params *p);
int rn_bf16_pool2d_bwd(bool max, rn_tensor *gx, const rn_tensor *gy, const rn_tensor *x,
                       const rn_tensor *y, const rn_pool_params *p);
int rn_bf16_bn_fwd_train(rn_tensor *y, rn_tensor *sm, rn_tensor *si, const rn_tensor *x,
                         const rn_tensor *gamma, const rn_tensor *beta, rn_tensor *rm,
                         rn_tensor *rv, double momentum, bool unbiased, double eps);
int rn_bf16_bn_relu_fwd_train(rn_tensor *y, rn_tensor *sm, rn_tensor *si, const rn_tensor *x,
                              const rn_tensor *gamma, const rn_tensor *beta, rn_tensor *rm,
                              rn_tensor *rv, double momentum, bool unbiased, double eps);
int rn_bf16_bn_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                         const rn_tensor *beta, const rn_tensor *rm, const rn_tensor *rv,
                         double eps);
int rn_bf16_bn_relu_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                              const rn_tensor *beta, const rn_tensor *rm, const rn_tensor *rv,
                              double eps);
int rn_bf16_bn_bwd(rn_tensor *gx, rn_tensor *gg, rn_tensor *gb, const rn_tensor *gy,
                   const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *sm,
                   const rn_tensor *si);
int rn_bf16_bn_relu_bwd(rn_tensor *gx, rn_tensor *gg, rn_tensor *gb, const rn_tensor *gy,
                        const rn_tensor *x, const rn_tensor *y, const rn_tensor *gamma,
                        const rn_tensor *beta, const rn_tensor *sm, const rn_tensor *si);
int rn_bf16_gnorm_fwd(rn_tensor *y, rn_tensor *mean, rn_tensor *rstd, const rn_tensor *x,
                      const rn_tensor *gamma, const rn_tensor *beta, int64_t N, int64_t S,
                      int64_t G, int64_t Cg, double eps);
int rn_bf16_gnorm_bwd(rn_tensor *gx, rn_tensor *gg, rn_tensor *gb, const rn_tensor *gy,
                      const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *mean,
                      const rn_tensor *rstd, int64_t N, int64_t S, int64_t G, int64_t Cg);
int rn_bf16_embedding_bwd(rn_tensor *gw, const rn_tensor *gy, const rn_tensor *idx);
int rn_bf16_sdpa_fwd(rn_tensor *o, rn_tensor *lse, const rn_tensor *q, const rn_tensor *k,
                     const rn_tensor *v, const rn_sdpa_params *p);
int rn_bf16_sdpa_bwd(rn_tensor *gq, rn_tensor *gk, rn_tensor *gv, const rn_tensor *go,
                     const rn_tensor *q, const rn_tensor *k, const rn_tensor *v,
                     const rn_tensor *o, const rn_tensor *lse, const rn_sdpa_params *p);
int rn_bf16_line_fwd(rn_tensor *y, const rn_tensor *x, const rn_line_params *p);
int rn_bf16_line_bwd(rn_tensor *gx, const rn_tensor *gy, const rn_line_params *p);

/* Sets the thread count of the CPU kernels and of BLAS. */
void rn_cpu_set_threads(int n);
int rn_cpu_get_threads(void);

#endif
