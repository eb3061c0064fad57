/* kernels.h - the extern "C" launchers of the CUDA kernels in kernels/ (*.cu),
 * called by the C host side (core/cuda/). Plain C: compiled by gcc (C11)
 * and by nvcc (C++17).
 *
 * Conventions
 * - Every launcher enqueues its kernels on the given stream and returns
 *   cudaGetLastError() (cudaSuccess, or why the launch failed); it never
 *   synchronizes. Empty work (0 elements) launches nothing.
 * - Pointers are device pointers to the first element of each operand (the
 *   tensor's offset already applied); strides are in elements.
 * - dtype, op and reduction codes are the values of rn_dtype, rn_unop,
 *   rn_binop and rn_redop (core/rn.h); core/cuda/backend.c checks that the
 *   two lists agree at compile time.
 * - Math is done as on the CPU (core/cpu/): float32 in float with sums in
 *   double, float64 in double, the integer and 16-bit float types through
 *   double with the CPU's saturating / round-to-nearest-even stores.
 */
#ifndef RN_KERNELS_H
#define RN_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "../core/optim_math.h"
#include "../core/oplist.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { RNK_F32 = 0, RNK_F64, RNK_U8, RNK_I32, RNK_I64, RNK_BF16, RNK_F16, RNK_NDTYPES };
/* the op codes, from the one list (core/oplist.h): RNK_NEG, RNK_ADD, ... */
#define RNK_UNOP_ENUM(E, n, np, a, b, i) RNK_##E,
#define RNK_BINOP_ENUM(E, n) RNK_##E,
enum { RN_UNARY_OPS(RNK_UNOP_ENUM) RNK_NUNARY };
enum { RN_BINARY_OPS(RNK_BINOP_ENUM) RNK_NBINARY };
enum { RNK_SUM = 0, RNK_MEAN, RNK_MAX, RNK_MIN };

#define RNK_MAXDIM 8 /* = RN_MAXDIM */
#define RNK_MAXOPS 4 /* operands of one elementwise kernel */

/* The shared geometry of up to 4 same-shape operands (passed by value).
 * Element i (row-major over shape, 0 <= i < n) of operand k is at
 * sum_d coord_d(i) * stride[k][d]; stride 0 marks a broadcast dim. */
typedef struct {
  int ndim;    /* 1..RNK_MAXDIM (size-1 dims dropped, dense dims merged) */
  int contig;  /* 1: ndim == 1 and every stride is 1, so offset == i */
  int idx32;   /* 1: n and every offset fit 32-bit index math */
  int pad_;
  int64_t n;   /* elements */
  int64_t shape[RNK_MAXDIM];
  int64_t stride[RNK_MAXOPS][RNK_MAXDIM];
} rnk_geom;

/* ---- elementwise.cu ------------------------------------------------------ */
/* y = x converted to y's dtype (operands 0: y, 1: x); any dtypes. */
cudaError_t rnk_copy(rnk_geom g, void *y, int ydt, const void *x, int xdt, cudaStream_t s);
/* y[...] = the esize-byte pattern in the low bytes of bits (operand 0: y). */
cudaError_t rnk_fill(rnk_geom g, void *y, int esize, uint64_t bits, cudaStream_t s);
/* y = op(x; a, b), one dtype (operands 0: y, 1: x). */
cudaError_t rnk_unary(rnk_geom g, int op, double a, double b, int dt, void *y, const void *x,
                      cudaStream_t s);
/* gx = gy * op'(x) given y = op(x); float32/float64 (operands gx, gy, x, y). */
cudaError_t rnk_unary_backward(rnk_geom g, int op, double a, double b, int dt, void *gx,
                               const void *gy, const void *x, const void *y, cudaStream_t s);
/* y = a op b, one dtype (operands 0: y, 1: a, 2: b). */
cudaError_t rnk_binary(rnk_geom g, int op, int dt, void *y, const void *a, const void *b,
                       cudaStream_t s);
/* y += alpha * x, any dtypes (operands 0: y, 1: x). */
cudaError_t rnk_axpy(rnk_geom g, void *y, int ydt, double alpha, const void *x, int xdt,
                     cudaStream_t s);
/* c: (M,N) row-major with row stride ldc, float32/float64: c = beta*c, or 0
 * when beta == 0 (the K == 0 case of gemm). */
cudaError_t rnk_scale2d(void *c, int dt, int64_t M, int64_t N, int64_t ldc, double beta,
                        cudaStream_t s);

/* ---- norm_group.cu ------------------------------------------------------- */
/* Layer/group norm over x (N,S,G,Cg) contiguous, statistics per (n,g);
 * gamma, beta: G*Cg values or NULL; mean, rstd: (N*G) doubles. float32/64. */
cudaError_t rnk_gnorm_fwd(int dt, void *y, double *mean, double *rstd, const void *x,
                          const void *gamma, const void *beta, int64_t N, int64_t S, int64_t G,
                          int64_t Cg, double eps, cudaStream_t s);
/* gx, ggamma, gbeta: NULL when not wanted. part: scratch of
 * 2 * G*Cg * rnk_bn_nblk(N*S, G*Cg) doubles when ggamma or gbeta is wanted. */
cudaError_t rnk_gnorm_bwd(int dt, void *gx, void *ggamma, void *gbeta, const void *gy,
                          const void *x, const void *gamma, const double *mean, const double *rstd,
                          int64_t N, int64_t S, int64_t G, int64_t Cg, double *part, cudaStream_t s);

/* ---- pad.cu -------------------------------------------------------------- */
/* A line op along one dim (core/backend.h rn_line_params): kind 0 constant,
 * 1 reflect, 2 replicate, 3 nearest, 4 bilinear; x (outer,L,inner) -> y
 * (outer,Lout,inner) contiguous. */
typedef struct {
  int kind;
  int64_t outer, L, inner, Lout, before, after;
} rnk_line;
/* pads and nearest: any dtype of esize bytes (value_bits: the constant);
 * bilinear: float32/float64. */
cudaError_t rnk_line_fwd(int dt, int esize, void *y, const void *x, rnk_line p,
                         uint64_t value_bits, cudaStream_t s);
/* gx (zeroed) += the gradient, float32/float64, deterministically. */
cudaError_t rnk_line_bwd(int dt, void *gx, const void *gy, rnk_line p, cudaStream_t s);

/* ---- attention.cu -------------------------------------------------------- */
/* Fused attention (core/backend.h rn_sdpa_params): q (B,Tq,D), k (B,Tk,D),
 * v (B,Tk,Dv) contiguous, D and Dv <= 256; mask uint8 or NULL with strides
 * msb, msq, msk; lse (B*Tq) doubles. */
typedef struct {
  int64_t B, Tq, Tk, D, Dv, msb, msq, msk;
  double scale;
  int causal;
  const uint8_t *mask;
} rnk_sdpa_geom;
cudaError_t rnk_sdpa_fwd(int dt, rnk_sdpa_geom g, void *o, double *lse, const void *q,
                         const void *k, const void *v, cudaStream_t s);
/* Di: scratch of B*Tq doubles. */
cudaError_t rnk_sdpa_bwd(int dt, rnk_sdpa_geom g, void *gq, void *gk, void *gv, double *Di,
                         const void *go, const void *q, const void *k, const void *v,
                         const void *o, const double *lse, cudaStream_t s);

/* ---- embedding.cu -------------------------------------------------------- */
/* y (n,D) = rows idx (n, int32/int64 code idt) of w (V,D); float32/64. */
cudaError_t rnk_embedding_fwd(int dt, void *y, const void *idx, int idt, const void *w, int64_t n,
                              int64_t D, cudaStream_t s);
/* gw (V,D) += scatter of gy (n,D) by idx, in index order (deterministic). */
cudaError_t rnk_embedding_bwd(int dt, void *gw, const void *gy, const void *idx, int idt,
                              int64_t n, int64_t D, cudaStream_t s);

/* ---- reduce.cu ----------------------------------------------------------- */
/* A reduction's geometry: the kept dims (output element o = row-major index
 * over kshape; its x offset uses kxstride, its y offset kystride) and the
 * reduced dims (row-major over rshape with x strides rstride). */
typedef struct {
  int nk, nr;
  int64_t nout, nred; /* prod(kshape), prod(rshape) */
  int64_t kshape[RNK_MAXDIM], kxstride[RNK_MAXDIM], kystride[RNK_MAXDIM];
  int64_t rshape[RNK_MAXDIM], rstride[RNK_MAXDIM];
} rnk_red_geom;

/* y[o] = op over the reduced elements of x, accumulated in double; max/min
 * give NaN if any element is NaN; mean of nothing is NaN. x: any dtype; y:
 * any dtype (the store converts). max/min need nred > 0 (checked by the
 * caller). */
cudaError_t rnk_reduce(rnk_red_geom g, int op, const void *x, int xdt, void *y, int ydt,
                       cudaStream_t s);
/* idx[o] = position of the first maximum along the single reduced dim
 * (g.nr == 1, g.rshape[0] > 0), NaN counting as the largest value; idx is
 * int64, its offsets from kystride. */
cudaError_t rnk_argmax(rnk_red_geom g, const void *x, int xdt, int64_t *idx, cudaStream_t s);

/* ---- loss.cu ------------------------------------------------------------- */
/* Row-wise over contiguous (R,C) float32/float64, one warp per row. */
cudaError_t rnk_softmax(int dt, void *y, const void *x, int64_t R, int64_t C, int log,
                        cudaStream_t s);
/* softmax: gx = y * (gy - sum(gy*y)); log_softmax: gx = gy - exp(y) * sum(gy) */
cudaError_t rnk_softmax_backward(int dt, void *gx, const void *gy, const void *y, int64_t R,
                                 int64_t C, int log, cudaStream_t s);
/* logits, dlogits: (N,C) contiguous; loss: (N) contiguous; labels: (N) with
 * stride lstride, dtype ldt in uint8/int32/int64. dlogits may be NULL.
 * A row whose label is outside 0..C-1 is skipped and its index n is
 * atomicMin'ed into *bad (which the caller sets to all ones first). */
cudaError_t rnk_cross_entropy(int dt, void *loss, void *dlogits, const void *logits, int64_t N,
                              int64_t C, const void *labels, int ldt, int64_t lstride,
                              double smoothing, unsigned long long *bad, cudaStream_t s);

/* ---- nn.cu --------------------------------------------------------------- */
/* float32/float64 (dt), contiguous operands; issue #18: pooling and the
 * batch-norm kernels over data (rnk_to_double, rnk_bn_partials(_masked),
 * rnk_bn_affine(_relu)) also take bfloat16 (RNK_BF16; float math, rounded
 * once); the per-channel ones (train_stats, infer_coef, bwd_coef,
 * colsum_finish) run on the parameters' dtype, float32/float64 only. */

/* Pooling geometry, NHWC: x (N,H,W,C) -> y (N,OH,OW,C); pads resolved. */
typedef struct {
  int64_t N, H, W, C, OH, OW;
  int64_t kh, kw, sh, sw, pt, pl; /* kernel, stride, top/left pad */
  int64_t cip;                    /* avg: count_include_pad */
} rnk_pool_geom;
/* y = max or average over each window (core/cpu/pool.c semantics). */
cudaError_t rnk_pool2d_fwd(int dt, int max, rnk_pool_geom g, void *y, const void *x,
                           cudaStream_t s);
/* gx (N,H,W,C) overwritten from gy (N,OH,OW,C); max needs x and y. */
cudaError_t rnk_pool2d_bwd(int dt, int max, rnk_pool_geom g, void *gx, const void *gy,
                           const void *x, const void *y, cudaStream_t s);

/* Batch norm and column sums over (R,C) contiguous rows, in blocks of
 * rnk_bn_rows(R, C) rows (RNK_BN_BLK, or fewer, down to 16, for a small
 * tensor, so that the partial sums run on about 1024 thread blocks): part
 * holds 2*C doubles per block, nblk = rnk_bn_nblk(R, C). Callers size the
 * scratch with rnk_bn_nblk. */
#define RNK_BN_BLK 256
static inline int64_t rnk_bn_rows(int64_t R, int64_t C) {
  int64_t chunks = (C + 255) / 256, rows = R * chunks / 1024;
  return rows > RNK_BN_BLK ? RNK_BN_BLK : rows < 16 ? 16 : rows;
}
static inline int64_t rnk_bn_nblk(int64_t R, int64_t C) {
  int64_t b = rnk_bn_rows(R, C);
  return (R + b - 1) / b;
}
/* part[b][0][c] = sum (x - shift), part[b][1][c] = sum (x - shift)^2 over
 * block b's rows; with gy: sum gy and sum gy*(x - shift). shift: (C)
 * doubles or NULL (0). */
cudaError_t rnk_bn_partials(int dt, const void *x, const void *gy, const double *shift,
                            int64_t R, int64_t C, double *part, cudaStream_t s);
/* dst[i] = (double)src[i], i < n */
cudaError_t rnk_to_double(int dt, double *dst, const void *src, int64_t n, cudaStream_t s);
/* From the partials of x - shift: save_mean, save_invstd (C) in dt; the
 * running stats (may be NULL) updated as running = momentum*running +
 * (1-momentum)*batch (the biased batch variance, or var*R/(R-1) when
 * unbiased); coef: 4*C doubles (a, b, m, d)
 * for rnk_bn_affine. gamma, beta may be NULL (1, 0). */
cudaError_t rnk_bn_train_stats(int dt, const double *part, int64_t R, int64_t C,
                               const double *shift, const void *gamma, const void *beta,
                               void *save_mean, void *save_invstd, void *rmean, void *rvar,
                               double momentum, bool unbiased, double eps, double *coef,
                               cudaStream_t s);
/* coef for y = (x - rm) * gamma/sqrt(rv + eps) + beta */
cudaError_t rnk_bn_infer_coef(int dt, int64_t C, const void *gamma, const void *beta,
                              const void *rm, const void *rv, double eps, double *coef,
                              cudaStream_t s);
/* From the partials of (gy, gy*(x - mean)): ggamma, gbeta (may be NULL) and
 * coef a, b, d for gx = a*gy + b*(x - m) + d; coef's m (coef + 2C) must
 * already hold the mean. */
cudaError_t rnk_bn_bwd_coef(int dt, const double *part, int64_t R, int64_t C, const void *gamma,
                            const void *save_invstd, void *ggamma, void *gbeta, double *coef,
                            cudaStream_t s);
/* out (R,C) = a*in + b*(x - m) + d per channel (in may be NULL) */
cudaError_t rnk_bn_affine(int dt, void *out, const void *in, const void *x, const double *coef,
                          int64_t R, int64_t C, cudaStream_t s);
/* Issue 19, BN+ReLU fused: the partials with gy taken as 0 where mask (the
 * fused forward's output y) is not > 0 (the ReLU's backward folded in), and
 * the affine pass with that masked gy (mask) and/or max(out, 0) (relu). */
cudaError_t rnk_bn_partials_masked(int dt, const void *x, const void *gy, const void *mask,
                                   const double *shift, int64_t R, int64_t C, double *part,
                                   cudaStream_t s);
cudaError_t rnk_bn_affine_relu(int dt, void *out, const void *in, const void *x,
                               const double *coef, int64_t R, int64_t C, const void *mask,
                               bool relu, cudaStream_t s);
/* out (C) = the folded part[.][0][c] (column sums, e.g. a bias gradient) */
cudaError_t rnk_colsum_finish(int dt, const double *part, int64_t R, int64_t C, void *out,
                              cudaStream_t s);

/* xp (N,H+pt+pb,W+pl+pr,C) = x (N,H,W,C) zero-padded */
cudaError_t rnk_pad_nhwc(int dt, void *xp, const void *x, int64_t N, int64_t H, int64_t W,
                         int64_t C, int pt, int pb, int pl, int pr, cudaStream_t s);
/* gx (N,H,W,C) = gxp (N,H+pt+pb,W+pl+pr,C) cropped at (pt,pl) */
cudaError_t rnk_crop_nhwc(int dt, void *gx, const void *gxp, int64_t N, int64_t H, int64_t W,
                          int64_t C, int pt, int pb, int pl, int pr, cudaStream_t s);
/* out (cols,rows) = in (rows,cols) transposed */
cudaError_t rnk_transpose2d(int dt, void *out, const void *in, int64_t rows, int64_t cols,
                            cudaStream_t s);
/* out (contiguous, shape[4]) [i0,i1,i2,i3] = in[sum_k i_k * istride[k]]:
 * any 4-d permutation of a contiguous tensor (NHWC <-> NCHW, HWIO <-> KCRS) */
typedef struct {
  int64_t shape[4];
  int64_t istride[4];
} rnk_perm4;
cudaError_t rnk_permute4(int dt, void *out, const void *in, rnk_perm4 p, cudaStream_t s);
/* y (rows,C) += b (C) */
cudaError_t rnk_bias_add(int dt, void *y, const void *b, int64_t rows, int64_t C,
                         cudaStream_t s);

/* ---- augment.cu ---------------------------------------------------------- */
/* One batch of the device-resident data loader (core/cuda/augment.c): the
 * CPU loader's transform (core/data/augment.c) with the same draws
 * (core/data/rng.h). */
typedef struct {
  int h, w, c;      /* source images (N,H,W,C) */
  int oh, ow;       /* output (OH,OW,C) */
  int oy, ox;       /* image's top-left on the canvas */
  int pad;          /* pad-crop padding (0 without augment) */
  int reflect;      /* 1: reflect padding, 0: zeros */
  int flip;         /* flipping on (drawn per sample) */
  int cutout;       /* square side, 0 = none */
  int augment;      /* 0: no draws (padding to size + normalization only) */
  uint64_t seed;
  int64_t epoch;
} rnk_aug_geom;
/* x (B,OH,OW,C) float32 and y (B) int64 from samples ids = order[start ..
 * start+B): x[b] = transform(img[ids[b]]) through lut (C,256), y[b] =
 * labels[ids[b]]. img (N,H,W,C) uint8, labels (N) int64, order (M) int64. */
cudaError_t rnk_augment_batch(rnk_aug_geom g, const uint8_t *img, const int64_t *labels,
                              const int64_t *order, int64_t start, int64_t B, const float *lut,
                              float *x, int64_t *y, cudaStream_t s);

/* ---- optim.cu ---------------------------------------------------------- */

#define RNK_MT_CHUNK 4096 /* elements per block of the multi-tensor step */
/* The multi-tensor optimizer step (core/optim_math.h) over nseg segments in
 * device memory, blk0 (nseg + 1, device) the first block of each (chunks of
 * RNK_MT_CHUNK), nblocks = blk0[nseg]; dt float32 or float64. */
cudaError_t rnk_optim_multi_step(int dt, const rn_mt_hp *hp, const rn_mt_seg *segs,
                                 const int64_t *blk0, int nseg, int64_t nblocks, cudaStream_t s);
/* Writes n bytes of host memory src to dst with kernels whose arguments
 * carry the bytes (2 KiB a launch): captured into a CUDA graph, the bytes
 * live in the graph, not in host memory (issue 19). */
cudaError_t rnk_poke(void *dst, const void *src, size_t n, cudaStream_t s);
/* Keras' L2 penalties in one launch: *out (dt) = sum_j segs[j].l2 *
 * sum(segs[j].p^2) over the same chunk table. part: nblocks doubles of
 * device scratch; count: one unsigned, zero on entry and left zero (the
 * last block to finish sums the partials in block order: deterministic). */
cudaError_t rnk_l2_penalty_multi(int dt, void *out, const rn_mt_seg *segs, const int64_t *blk0,
                                 int nseg, int64_t nblocks, double *part, unsigned *count,
                                 cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
