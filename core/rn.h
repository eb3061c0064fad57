/* rn.h - the public C API of the rnlua core: dtypes, devices, tensors
 * (refcounted storage + strided view), error status, and every op.
 *
 * Conventions
 * - Functions that create a tensor return a new reference (refcount 1 owned by
 *   the caller) or NULL with an error message set (rn_errmsg()).
 * - Functions returning int return 0 on success and -1 on error.
 * - Tensor arguments are borrowed. Dims in this C API are 0-based; the Lua
 *   binding maps Lua's 1-based dims (and negative dims) onto them.
 * - Images are NHWC: x: (N,H,W,C). Conv weights are HWIO: w: (KH,KW,Cin,Cout),
 *   dense kernels are (in,out), as in Keras.
 * - Nothing here exits or aborts on bad input.
 */
#ifndef RN_H
#define RN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "oplist.h"

#define RN_VERSION "0.1.0"
#define RN_MAXDIM 8

typedef enum {
  RN_F32 = 0, RN_F64, RN_U8, RN_I32, RN_I64, RN_BF16, RN_F16, RN_NDTYPES
} rn_dtype;

typedef enum { RN_CPU = 0, RN_CUDA = 1, RN_NDEVTYPES } rn_devtype;

typedef struct rn_storage {
  int refcount;
  rn_devtype device;
  size_t nbytes;
  void *data;
  /* bumped by every in-place change of the data (rn_bump_version); the
   * autograd tape checks it against the value recorded when it saved a
   * tensor viewing this storage */
  uint64_t version;
  /* unique over the process (never reused): with version, a key for
   * derived copies such as the CUDA KRSC filter cache (issue 19) */
  uint64_t uid;
  /* external memory (rn_from_external): not the backend's; release(ctx),
   * if set, is called instead of the backend's free when the last view goes */
  bool external;
  void (*release)(void *ctx);
  void *release_ctx;
} rn_storage;

struct rn_node;

typedef struct rn_tensor {
  int refcount;
  rn_storage *st;
  int ndim;
  int64_t shape[RN_MAXDIM];
  int64_t stride[RN_MAXDIM]; /* in elements */
  int64_t offset;            /* in elements */
  rn_dtype dtype;
  bool requires_grad;
  struct rn_tensor *grad;    /* accumulated gradient (leaves), or NULL */
  struct rn_node *grad_fn;   /* node that produced this tensor, or NULL */
} rn_tensor;

/* ---- errors (error.c) ---------------------------------------------------- */
int rn_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *rn_errmsg(void);
void rn_clear_error(void);
/* Formats a shape as "(2,3,4)" into buf; returns buf. */
char *rn_shape_str(const rn_tensor *t, char *buf, size_t n);
char *rn_dims_str(int ndim, const int64_t *shape, char *buf, size_t n);

/* ---- dtypes (dtype.c) ---------------------------------------------------- */
size_t rn_dtype_size(rn_dtype dt);
const char *rn_dtype_name(rn_dtype dt);
int rn_dtype_from_name(const char *name, rn_dtype *out); /* -1 if unknown */
bool rn_dtype_is_float(rn_dtype dt);
const char *rn_device_name(rn_devtype d);
double rn_load(const void *p, rn_dtype dt);        /* one element as double */
void rn_store(void *p, rn_dtype dt, double v);     /* one element from double */
uint16_t rn_f32_to_bf16(float f);
float rn_bf16_to_f32(uint16_t h);
uint16_t rn_f32_to_f16(float f);
float rn_f16_to_f32(uint16_t h);

/* ---- tensors (tensor.c) -------------------------------------------------- */
#define RN_MAX_NUMEL ((int64_t)1 << 40) /* elements; far beyond any memory */
rn_tensor *rn_empty(int ndim, const int64_t *shape, rn_dtype dt, rn_devtype dev);
rn_tensor *rn_zeros(int ndim, const int64_t *shape, rn_dtype dt, rn_devtype dev);
rn_tensor *rn_full(int ndim, const int64_t *shape, double v, rn_dtype dt, rn_devtype dev);
rn_tensor *rn_empty_like(const rn_tensor *t);
rn_tensor *rn_zeros_like(const rn_tensor *t);
rn_tensor *rn_scalar(double v, rn_dtype dt, rn_devtype dev); /* 0-dim */
rn_tensor *rn_arange(double start, double stop, double step, rn_dtype dt);
rn_tensor *rn_from_buffer(int ndim, const int64_t *shape, rn_dtype dt, const void *src);
/* A contiguous CPU tensor over the caller's memory, no copy (the embedding
 * API, include/rnlua.h): data must be aligned to the dtype's size and hold
 * numel elements; release(ctx), if not NULL, runs when the last view is gone. */
rn_tensor *rn_from_external(int ndim, const int64_t *shape, rn_dtype dt, void *data,
                            void (*release)(void *ctx), void *ctx);
void rn_retain(rn_tensor *t);
void rn_release(rn_tensor *t); /* NULL is fine */
int64_t rn_numel(const rn_tensor *t);
bool rn_is_contiguous(const rn_tensor *t);
rn_devtype rn_device(const rn_tensor *t);
static inline char *rn_ptr(const rn_tensor *t) {
  return (char *)t->st->data + (size_t)t->offset * rn_dtype_size(t->dtype);
}
int rn_check_shape(int ndim, const int64_t *shape, const char *op);
bool rn_same_shape(const rn_tensor *a, const rn_tensor *b);
int rn_norm_dim(int dim, int ndim, const char *op); /* -1 if out of range */

/* Views. They share storage; with grad mode on they record autograd nodes. */
rn_tensor *rn_reshape(rn_tensor *t, int ndim, const int64_t *shape); /* one -1 allowed */
rn_tensor *rn_permute(rn_tensor *t, const int *perm);
rn_tensor *rn_transpose(rn_tensor *t, int d0, int d1);
rn_tensor *rn_narrow(rn_tensor *t, int dim, int64_t start, int64_t len);
rn_tensor *rn_select(rn_tensor *t, int dim, int64_t index); /* drops dim */
rn_tensor *rn_expand(rn_tensor *t, int ndim, const int64_t *shape);
rn_tensor *rn_contiguous(rn_tensor *t);  /* t itself (retained) if already */
rn_tensor *rn_clone(rn_tensor *t);       /* always a fresh contiguous copy */
rn_tensor *rn_detach(rn_tensor *t);      /* shares storage, no grad history */
rn_tensor *rn_cast(rn_tensor *t, rn_dtype dt);
/* a and b share storage but are different views (in-place ops copy b first) */
bool rn_partial_alias(const rn_tensor *a, const rn_tensor *b);
rn_tensor *rn_to_device(rn_tensor *t, rn_devtype dev);

/* In place (no autograd; refused on a leaf that requires grad while grad mode
 * is on, as in-place changes would corrupt the tape). */
int rn_copy_(rn_tensor *dst, const rn_tensor *src); /* broadcast src, any dtypes */
int rn_fill_(rn_tensor *t, double v);
/* 0, or -1 + rn_err when an in-place change of t would make a gradient
 * wrong (a leaf requiring grad; a recorded result, unless the change keeps
 * its derivative: keeps_derivative, as adding a constant does) */
int rn_check_inplace(const rn_tensor *t, const char *op);
int rn_check_inplace_ex(const rn_tensor *t, const char *op, bool keeps_derivative);
/* Every function that writes into an existing tensor's memory calls this, so
 * that a backward reading a saved alias of it refuses stale values. */
static inline void rn_bump_version(rn_tensor *t) { t->st->version++; }

/* ---- deterministic mode (determinism.c) ---------------------------------- */
/* On: every backend gives bitwise-reproducible results (the CPU always does;
 * on CUDA, cuDNN takes deterministic algorithms only). Turning it on while a
 * convolution algorithm override (determinism.h) names a non-deterministic
 * algorithm is -1 + rn_err, and the mode stays off. */
int rn_set_deterministic(bool on);
bool rn_is_deterministic(void);

/* ---- random numbers (random.c) ------------------------------------------- */
void rn_manual_seed(uint64_t seed);
uint64_t rn_random_u64(void);
double rn_random_uniform(void);   /* [0,1) */
double rn_random_normal(void);
void rn_random_get_state(uint64_t st[4]);
void rn_random_set_state(const uint64_t st[4]);
rn_tensor *rn_rand(int ndim, const int64_t *shape, rn_dtype dt, double lo, double hi);
rn_tensor *rn_randn(int ndim, const int64_t *shape, rn_dtype dt, double mean, double std);

/* ---- math precision and CPU features (precision.c) ----------------------- */
typedef struct {
  bool fma, avx, avx2, avx512f, avx512bw, avx512vl, avx512_vnni, avx512_bf16;
  bool amx_tile, amx_bf16, amx_int8;
} rn_cpu_features;
/* What the code may use: the CPU's features (CPUID) limited by the ISA cap
 * that oneDNN honours (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA, e.g. AVX2), so
 * a capped run takes the code paths of a CPU that has only that ISA. */
const rn_cpu_features *rn_cpu_features_get(void);
/* The CPU's own features, before the cap. */
const rn_cpu_features *rn_cpu_features_hw(void);
/* oneDNN's effective ISA ("avx2", "avx512_core_bf16", ...: the most its JIT
 * kernels use here, after the cap), the cap as set in the environment (NULL
 * when none), and the CPU's brand string. */
const char *rn_cpu_isa_name(void);
const char *rn_cpu_isa_cap(void);
const char *rn_cpu_model(void);
bool rn_cpu_has_bf16(void);
/* RN_F32 (default) or RN_BF16: the math of convolutions (tensors stay
 * float32). cpu_needed: refuse bfloat16 when this CPU has no bf16 kernels. */
rn_dtype rn_math_precision(void);
int rn_set_math_precision(rn_dtype dt, bool cpu_needed);

/* ---- elementwise ops (ops/elementwise.c) --------------------------------- */
/* The ops, their names and parameters are listed once, in oplist.h. */
#define RN_UNOP_ENUM(E, n, np, a, b, i) RN_OP_##E,
#define RN_BINOP_ENUM(E, n) RN_OP_##E,
typedef enum { RN_UNARY_OPS(RN_UNOP_ENUM) RN_NUNARY } rn_unop;
typedef enum { RN_BINARY_OPS(RN_BINOP_ENUM) RN_NBINARY } rn_binop;
#define RN_UNARY_NP 2 /* parameters of a unary op (oplist.h), at most */
const char *rn_unop_name(rn_unop op);
const char *rn_binop_name(rn_binop op);
/* The parameters op takes (0..RN_UNARY_NP) and their defaults (RN_REQUIRED:
 * none); whether it is defined on the integer dtypes. */
int rn_unop_nparams(rn_unop op, double dflt[RN_UNARY_NP]);
bool rn_unop_int_ok(rn_unop op);
rn_tensor *rn_unary(rn_unop op, rn_tensor *x); /* the defaults: NP == 0 or all defaulted */
/* y = op(x; p[0], p[1]): leaky_relu's slope, elu's alpha, clip's lo and hi.
 * Errors: a non-finite parameter, clip with lo > hi. */
rn_tensor *rn_unary_p(rn_unop op, rn_tensor *x, const double p[RN_UNARY_NP]);
rn_tensor *rn_binary(rn_binop op, rn_tensor *a, rn_tensor *b); /* broadcasting */
rn_tensor *rn_binary_scalar(rn_binop op, rn_tensor *a, double s, bool scalar_first);
int rn_broadcast_shape(const rn_tensor *a, const rn_tensor *b, int *ndim,
                       int64_t *shape, const char *op);
/* g summed over broadcast dims down to (ndim, shape); new ref. */
rn_tensor *rn_sum_to(rn_tensor *g, int ndim, const int64_t *shape);
/* y = x * scale + shift for float tensors (no autograd): used by optimizers. */
int rn_axpy_(rn_tensor *y, double alpha, const rn_tensor *x); /* y += alpha*x */
int rn_scale_(rn_tensor *y, double s);

/* ---- reductions (ops/reduce.c) ------------------------------------------- */
typedef enum { RN_RED_SUM, RN_RED_MEAN, RN_RED_MAX, RN_RED_MIN } rn_redop;
/* dims: 0-based, ndims==0 means all dims. */
rn_tensor *rn_reduce(rn_redop op, rn_tensor *x, int ndims, const int *dims, bool keepdim);
rn_tensor *rn_argmax(rn_tensor *x, int dim, bool keepdim); /* int64 */

/* ---- softmax and losses (ops/loss.c) ------------------------------------- */
rn_tensor *rn_softmax(rn_tensor *x, int dim);
rn_tensor *rn_log_softmax(rn_tensor *x, int dim);
typedef enum { RN_REDUCE_MEAN, RN_REDUCE_SUM, RN_REDUCE_NONE } rn_reduction;
/* logits: (N,C) float; labels: (N) integer in 0..C-1. */
rn_tensor *rn_cross_entropy(rn_tensor *logits, rn_tensor *labels, double smoothing,
                            rn_reduction red);

/* ---- dense (ops/matmul.c) ------------------------------------------------ */
/* a: (...,M,K), b: (...,K,N) -> (...,M,N): any leading (batch) dims,
 * broadcast against each other; a 1-D a is a row, a 1-D b a column (their
 * dim dropped from the result). */
rn_tensor *rn_matmul(rn_tensor *a, rn_tensor *b);
/* x: (N,in), w: (in,out), b: (out) or NULL -> (N,out) */
rn_tensor *rn_linear(rn_tensor *x, rn_tensor *w, rn_tensor *b);

/* ---- convolution and pooling (ops/conv.c, ops/pool.c) -------------------- */
typedef struct {
  int stride_h, stride_w;
  int dil_h, dil_w;
  int pad_top, pad_bottom, pad_left, pad_right;
  int same;   /* 1: TF "same" padding computed from input size (overrides pads) */
  int groups; /* channel groups G (0 or 1: none): Cin and Cout split into G
               * slices, slice g of the output sees only slice g of the input;
               * w: (KH,KW,Cin/G,Cout); depthwise is G = Cin */
} rn_conv_params;
/* TensorFlow "same": out = ceil(in/stride), extra padding at bottom/right. */
void rn_same_padding(int64_t in, int k, int stride, int dil, int *lo, int *hi);
/* x: (N,H,W,Cin), w: (KH,KW,Cin,Cout), b: (Cout) or NULL -> (N,OH,OW,Cout) */
rn_tensor *rn_conv2d(rn_tensor *x, rn_tensor *w, rn_tensor *b, const rn_conv_params *p);
/* The transposed convolution (the gradient of conv2d with respect to its
 * input; Keras's Conv2DTranspose): x: (N,H,W,Cin), w: (KH,KW,Cout,Cin),
 * b: (Cout) or NULL -> y: (N,OH,OW,Cout). p's pads and "same" are those of
 * the convolution that maps y back to x's size; out_pad (>= 0, < stride or
 * dilation) adds rows/columns at the bottom/right:
 *   same:     OH = H*stride_h (with an out_pad: pads of dilated KH // 2 each side,
 *             then as explicit, Keras's rule)
 *   explicit: OH = (H-1)*stride_h + dil_h*(KH-1) + 1 - pad_top - pad_bottom + out_pad_h
 *   (valid is explicit with zero pads, plus max(stride - dilated KH, 0)
 *   extra rows when out_pad is negative: Keras's rule, asked with -1) */
rn_tensor *rn_conv2d_transpose(rn_tensor *x, rn_tensor *w, rn_tensor *b, const rn_conv_params *p,
                               const int out_pad[2]);
/* Inference only (no autograd), for the model graph's fusions: y = conv(x,
 * w, b), plus acc when acc is given, then max(y, 0) when relu. acc: (N,OH,
 * OW,Cout), contiguous, x's dtype and device, or NULL; when given, the
 * result is written into acc's memory and acc itself is returned (a new
 * reference). An error when gradients are on and an input requires one. */
rn_tensor *rn_conv2d_fused(rn_tensor *x, rn_tensor *w, rn_tensor *b, const rn_conv_params *p,
                           bool relu, rn_tensor *acc);
typedef struct {
  int kh, kw, stride_h, stride_w;
  int pad_top, pad_bottom, pad_left, pad_right;
  int same;
  bool count_include_pad; /* avg pool only */
} rn_pool_params;
rn_tensor *rn_max_pool2d(rn_tensor *x, const rn_pool_params *p); /* x: (N,H,W,C) */
rn_tensor *rn_avg_pool2d(rn_tensor *x, const rn_pool_params *p);
rn_tensor *rn_global_avg_pool2d(rn_tensor *x); /* (N,H,W,C) -> (N,C) */

/* ---- normalization (ops/norm.c) ------------------------------------------ */
/* x: (...,C) channels last; gamma, beta: (C) or NULL; running_*: (C) or NULL.
 * training: batch statistics over all dims but the last, and
 *   running = momentum*running + (1-momentum)*batch (Keras convention; the
 *   running variance takes the biased batch variance, as Keras, or the
 *   unbiased one, var*N/(N-1), as PyTorch, when unbiased).
 * inference: running statistics (both required; an error without them). */
rn_tensor *rn_batch_norm(rn_tensor *x, rn_tensor *gamma, rn_tensor *beta,
                         rn_tensor *running_mean, rn_tensor *running_var,
                         bool training, double momentum, bool unbiased, double eps);
/* relu(rn_batch_norm(...)), fused into the same passes where the backend can */
rn_tensor *rn_batch_norm_relu(rn_tensor *x, rn_tensor *gamma, rn_tensor *beta,
                              rn_tensor *running_mean, rn_tensor *running_var, bool training,
                              double momentum, bool unbiased, double eps);

/* ---- layer and group normalization (ops/norm_group.c) -------------------- */
/* y = (x - mean) / sqrt(var + eps) * gamma + beta, biased variance.
 * layer_norm: statistics over the last k dims (1 <= k <= ndim); gamma,
 *   beta: NULL or the shape of those dims.
 * group_norm: x (N, ..., C) channels last, C split into `groups` groups of
 *   C/groups channels; statistics per sample and group over all the middle
 *   dims and the group's channels; gamma, beta: NULL or (C). */
rn_tensor *rn_layer_norm(rn_tensor *x, int k, rn_tensor *gamma, rn_tensor *beta, double eps);
rn_tensor *rn_group_norm(rn_tensor *x, int groups, rn_tensor *gamma, rn_tensor *beta, double eps);

/* ---- embedding (ops/embedding.c) ----------------------------------------- */
/* indices: any shape, int32/int64 in 0..V-1; weight: (V, D) float ->
 * (indices..., D). The gradient of weight is a deterministic scatter-add
 * (duplicate indices accumulate); indices get none. */
rn_tensor *rn_embedding(rn_tensor *indices, rn_tensor *weight);

/* ---- attention (ops/attention.c) ---------------------------------------- */
/* softmax(q k^T * scale + mask) v, fused (no Tq x Tk matrix is stored):
 * q (...,Tq,D), k (...,Tk,D), v (...,Tk,Dv) with the same leading dims ->
 * (...,Tq,Dv). mask: NULL or a bool-like tensor (any dtype; nonzero =
 * attend) broadcastable to (...,Tq,Tk); causal: key j > query i masked;
 * scale <= 0 means 1/sqrt(D). A query that attends to no key gets 0. */
rn_tensor *rn_scaled_dot_product_attention(rn_tensor *q, rn_tensor *k, rn_tensor *v,
                                           rn_tensor *mask, bool causal, double scale);

/* ---- padding and resizing (ops/pad.c) ----------------------------------- */
typedef enum { RN_PADDING_CONSTANT = 0, RN_PADDING_REFLECT, RN_PADDING_REPLICATE } rn_padding_mode;
/* pads[d] = {before, after} >= 0 for every dim d of x; constant fills with
 * value; reflect mirrors without repeating the edge (pads < the dim's size);
 * replicate repeats the edge. */
rn_tensor *rn_pad(rn_tensor *x, const int64_t (*pads)[2], rn_padding_mode mode, double value);
/* x (N,H,W,C) -> (N,oh,ow,C): nearest (PyTorch's "nearest"; Keras's
 * UpSampling2D for integer factors) or bilinear with half-pixel centres
 * (align_corners=false, as tf.image.resize and PyTorch). */
rn_tensor *rn_resize(rn_tensor *x, int64_t oh, int64_t ow, bool bilinear);

/* ---- shape ops (ops/shape.c) --------------------------------------------- */
rn_tensor *rn_concat(int n, rn_tensor *const *ts, int dim);
rn_tensor *rn_dropout(rn_tensor *x, double p, bool training);

#endif
