/* backend.h - one table of kernel slots per device (CPU, CUDA).
 *
 * Op front ends (core/ops/) check inputs, infer shapes, allocate outputs and
 * call a slot of the backend that owns the inputs. A backend leaves a slot
 * NULL when it has no kernel for it; rn_kernel() then reports
 * "conv2d_bwd_filter is not implemented on cuda" instead of falling back.
 * rn_backend_supports() answers the same question without an error.
 *
 * Kernel contract: outputs are preallocated by the front end with the right
 * shape/dtype on the same device; inputs are contiguous unless the slot says
 * "strided"; convolution and pooling params arrive with explicit pads
 * (`same` already resolved by core/ops/conv.c and pool.c, never seen by a
 * kernel); a kernel returns 0, or -1 after rn_err().
 */
#ifndef RN_BACKEND_H
#define RN_BACKEND_H

#include "optim_math.h"
#include "rn.h"

#define RN_POST_SUM 1  /* conv2d_fwd_fused: add the conv into y's values */
#define RN_POST_RELU 2 /* conv2d_fwd_fused: then max(y, 0) */
#define RN_NOT_FUSED 1 /* conv2d_fwd_fused: no fused kernel here, y untouched */

/* scaled_dot_product_attention (core/ops/attention.c): q (B,Tq,D), k
 * (B,Tk,D), v (B,Tk,Dv), o (B,Tq,Dv) contiguous; mask: uint8 (1 = attend)
 * read at mask + b*msb + i*msq + j*msk (strides 0 broadcast), or NULL;
 * causal: key j > query i is masked (top-left aligned, as PyTorch). A query
 * with every key masked gets o = 0 and no gradient. */
typedef struct {
  int64_t B, Tq, Tk, D, Dv;
  double scale;
  bool causal;
  const rn_tensor *mask;
  int64_t msb, msq, msk;
} rn_sdpa_params;

/* One-dimensional "line" ops (core/ops/pad.c): x (outer, L, inner) ->
 * y (outer, Lout, inner), contiguous. kind: RN_LINE_* (the pad kinds are
 * the rn_pad_mode values). */
enum { RN_LINE_CONSTANT = 0, RN_LINE_REFLECT, RN_LINE_REPLICATE, RN_LINE_NEAREST,
       RN_LINE_BILINEAR };
typedef struct {
  int kind;
  int64_t outer, L, inner, Lout;
  int64_t before, after; /* pads */
  double value;          /* constant pad */
} rn_line_params;

typedef struct rn_backend {
  const char *name;
  rn_devtype dev;
  /* memory */
  void *(*alloc)(size_t nbytes);              /* NULL + rn_err on failure */
  void (*free)(void *p);
  int (*to_host)(void *dst, const void *src, size_t n);   /* device -> host */
  int (*from_host)(void *dst, const void *src, size_t n); /* host -> device */

  /* elementwise, strided: any strides, stride 0 for broadcast dims */
  int (*copy)(rn_tensor *dst, const rn_tensor *src); /* same shape, converts dtype */
  int (*fill)(rn_tensor *t, double v);
  /* y = op(x; p[0], p[1]) (p: the op's parameters, oplist.h; checked by
   * the front end) */
  int (*unary)(rn_unop op, const double *p, rn_tensor *y, const rn_tensor *x);
  /* gx = gy * d op(x)/dx, given x and y = op(x) (contiguous) */
  int (*unary_backward)(rn_unop op, const double *p, rn_tensor *gx, const rn_tensor *gy,
                        const rn_tensor *x, const rn_tensor *y);
  /* a, b already expanded to y's shape */
  int (*binary)(rn_binop op, rn_tensor *y, const rn_tensor *a, const rn_tensor *b);
  int (*axpy)(rn_tensor *y, double alpha, const rn_tensor *x); /* y += alpha*x */

  /* reductions: y has x's rank with reduced dims of size 1 (strided x) */
  int (*reduce)(rn_redop op, rn_tensor *y, const rn_tensor *x);
  int (*argmax)(rn_tensor *idx, const rn_tensor *x, int dim); /* idx keepdim int64 */

  /* softmax over the last dim; x, y: (R,C) */
  int (*softmax)(rn_tensor *y, const rn_tensor *x, bool log);
  int (*softmax_backward)(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *y, bool log);
  /* logits: (N,C), labels: (N) integer (checked by the kernel: range 0..C-1),
   * loss: (N); dlogits: (N,C) d loss[n] / d logits, or NULL */
  int (*cross_entropy)(rn_tensor *loss, rn_tensor *dlogits, const rn_tensor *logits,
                       const rn_tensor *labels, double smoothing);

  /* C(M,N) = alpha * op(A) op(B) + beta * C, row-major, float dtypes */
  int (*gemm)(rn_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
              double alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
              double beta, void *C, int64_t ldc);

  /* optional: batch gemms, C_i = alpha op(A_i) op(B_i) + beta C_i with A_i
   * = A + i*sa elements (sa = 0: shared), likewise B and C (sc > 0); where
   * absent, matmul loops over gemm */
  int (*gemm_batched)(rn_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                      double alpha, const void *A, int64_t lda, int64_t sa, const void *B,
                      int64_t ldb, int64_t sb, double beta, void *C, int64_t ldc, int64_t sc,
                      int64_t batch);

  /* convolution, NHWC / HWIO */
  int (*conv2d_fwd)(rn_tensor *y, const rn_tensor *x, const rn_tensor *w,
                    const rn_tensor *b, const rn_conv_params *p);
  int (*conv2d_bwd_data)(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                         const rn_conv_params *p);
  /* optional: conv2d_fwd with an epilogue, for inference (rn_conv2d_fused):
   * y = conv(x, w, b) + (post & RN_POST_SUM ? y's values on entry : 0), then
   * max(y, 0) when post & RN_POST_RELU. Returns 0, -1 after rn_err, or
   * RN_NOT_FUSED with y untouched when it has no fused kernel for the case;
   * the front end then runs conv2d_fwd, binary and unary instead. */
  int (*conv2d_fwd_fused)(rn_tensor *y, const rn_tensor *x, const rn_tensor *w,
                          const rn_tensor *b, const rn_conv_params *p, int post);
  /* gw, gb (gb may be NULL) are overwritten */
  int (*conv2d_bwd_filter)(rn_tensor *gw, rn_tensor *gb, const rn_tensor *gy,
                           const rn_tensor *x, const rn_conv_params *p);

  /* pooling, NHWC */
  int (*pool2d_fwd)(bool max, rn_tensor *y, const rn_tensor *x, const rn_pool_params *p);
  int (*pool2d_bwd)(bool max, rn_tensor *gx, const rn_tensor *gy, const rn_tensor *x,
                    const rn_tensor *y, const rn_pool_params *p);

  /* batch norm over all dims but the last; x, y: (R,C); stats: (C) float32/64;
   * running_var takes the biased batch variance (Keras), or var*R/(R-1) when
   * unbiased (PyTorch) */
  int (*bn_fwd_train)(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                      const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                      rn_tensor *running_mean, rn_tensor *running_var,
                      double momentum, bool unbiased, double eps);
  int (*bn_fwd_infer)(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                      const rn_tensor *beta, const rn_tensor *running_mean,
                      const rn_tensor *running_var, double eps);
  /* ggamma, gbeta may be NULL */
  int (*bn_bwd)(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *save_mean,
                const rn_tensor *save_invstd);
  /* layer and group norm (core/ops/norm_group.c): x, y: (N,S,G,Cg)
   * contiguous, statistics per (n,g) over S*Cg values; gamma, beta: G*Cg
   * values (c = g*Cg + j) or NULL; mean, rstd: (N*G) float64, written by the
   * forward (rstd = 1/sqrt(biased var + eps)). Backward: gx, ggamma, gbeta
   * each may be NULL (not wanted); gamma NULL means 1. */
  int (*gnorm_fwd)(rn_tensor *y, rn_tensor *mean, rn_tensor *rstd, const rn_tensor *x,
                   const rn_tensor *gamma, const rn_tensor *beta, int64_t N, int64_t S,
                   int64_t G, int64_t Cg, double eps);
  int (*gnorm_bwd)(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                   const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *mean,
                   const rn_tensor *rstd, int64_t N, int64_t S, int64_t G, int64_t Cg);
  /* embedding (core/ops/embedding.c): idx contiguous int32/int64, every
   * value in 0..V-1 (checked by the front end); w: (V,D) contiguous; y:
   * (numel(idx), D). Backward: gw (V,D), zeroed by the front end, += the
   * rows of gy scattered by idx, deterministically. */
  int (*embedding_fwd)(rn_tensor *y, const rn_tensor *idx, const rn_tensor *w);
  int (*embedding_bwd)(rn_tensor *gw, const rn_tensor *gy, const rn_tensor *idx);
  /* attention: lse (B*Tq) float64, the log-sum-exp of each query's scaled,
   * masked scores (-inf when all are masked), written by the forward and
   * read by the backward, which recomputes the probabilities from it */
  int (*sdpa_fwd)(rn_tensor *o, rn_tensor *lse, const rn_tensor *q, const rn_tensor *k,
                  const rn_tensor *v, const rn_sdpa_params *p);
  int (*sdpa_bwd)(rn_tensor *gq, rn_tensor *gk, rn_tensor *gv, const rn_tensor *go,
                  const rn_tensor *q, const rn_tensor *k, const rn_tensor *v, const rn_tensor *o,
                  const rn_tensor *lse, const rn_sdpa_params *p);
  /* line ops: forward (any dtype for the pads and nearest, float for
   * bilinear) and backward (gx zeroed by the front end, += the gradient,
   * deterministically; float) */
  int (*line_fwd)(rn_tensor *y, const rn_tensor *x, const rn_line_params *p);
  int (*line_bwd)(rn_tensor *gx, const rn_tensor *gy, const rn_line_params *p);
  /* optional: batch norm with a ReLU fused into the same passes (same
   * arguments; y = max(bn(x), 0); the backward takes that y, and beta, for
   * the ReLU's mask: a kernel may read y > 0 or recompute bn(x) > 0 from x,
   * the saved statistics, gamma and beta, which must then give the same
   * bits as its forward). Where absent, core/ops/norm.c runs batch norm,
   * then relu. */
  int (*bn_relu_fwd_train)(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                           const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                           rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                           bool unbiased, double eps);
  int (*bn_relu_fwd_infer)(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                           const rn_tensor *beta, const rn_tensor *running_mean,
                           const rn_tensor *running_var, double eps);
  int (*bn_relu_bwd)(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                     const rn_tensor *x, const rn_tensor *y, const rn_tensor *gamma,
                     const rn_tensor *beta, const rn_tensor *save_mean,
                     const rn_tensor *save_invstd);
  /* optional: the multi-tensor optimizer step (core/optim_math.h) over n
   * segments of dtype dt (float32/float64), checked by core/ops/optim.c, in
   * as few launches as the device allows. Where absent (the CPU), the front
   * end runs the same math as one host loop (the CPU twin). */
  int (*optim_multi_step)(const rn_mt_hp *hp, rn_dtype dt, const rn_mt_seg *segs, int n);
  /* optional (issue 19): out (a 0-d tensor's data, dtype dt) = sum over the
   * n segments of l2 * sum(p^2) (rn_mt_seg's p, n and l2 only), in one pass. */
  int (*l2_penalty_multi)(void *out, rn_dtype dt, const rn_mt_seg *segs, int n);
} rn_backend;

/* The backend for a device, or NULL + rn_err (not built, no device). */
const rn_backend *rn_backend_get(rn_devtype dev);
/* Backend of a tensor (never NULL for an existing tensor). */
const rn_backend *rn_backend_of(const rn_tensor *t);
/* True when dev's backend exists and has the named slot ("conv2d_fwd"). */
bool rn_backend_supports(rn_devtype dev, const char *slot);
/* Names of all slots, NULL-terminated (for the support query and tests). */
const char *const *rn_backend_slot_names(void);
/* True when be has the slot; else false + "NAME is not implemented on DEV". */
#define RN_HAS(be, slot) ((be)->slot != NULL || (rn_kernel_missing((be), #slot), false))
void rn_kernel_missing(const rn_backend *be, const char *slot);
/* All inputs on one device, else an error naming the op and the devices. */
int rn_same_device(const char *op, int n, rn_tensor *const *ts);

/* The iteration geometry of up to 4 operands sharing ts[0]'s shape (stride 0
 * marks a broadcast dim): size-1 dims dropped, dims that every operand walks
 * as one merged. Fills shape[0..nd) and stride[k][0..nd) and returns nd >= 1
 * (one dim of size 0 or 1 when there is at most one element). Used by the
 * CPU iterator and the CUDA kernels' geometry alike. */
int rn_coalesce(int nops, const rn_tensor *const *ts, int64_t *shape,
                int64_t (*stride)[RN_MAXDIM]);
/* A 2-D (R,C) alias of contiguous t (C = the last dim), with no autograd
 * record: how row-wise kernels (softmax, batch norm) see any rank. */
rn_tensor *rn_view2d(rn_tensor *t);

extern const rn_backend rn_cpu_backend;
#ifdef RN_WITH_CUDA
const rn_backend *rn_cuda_backend(void); /* NULL + rn_err when no device */
#endif

#endif
