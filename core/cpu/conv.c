/* conv.c (cpu) - 2-D convolution kernels, NHWC activations and HWIO weights:
 *   x: (N,H,W,Cin), w: (KH,KW,Cin/G,Cout), b: (Cout) or NULL, y: (N,OH,OW,Cout)
 * (G channel groups; oneDNN runs them natively; on the im2col path each
 * group is an ungrouped convolution of contiguous copies of its slices)
 * with stride, dilation and asymmetric explicit padding (rn_conv_params; its
 * params arrive with `same` already resolved to explicit pads).
 *
 * Order: rnlua's own Winograd (wino.c: 3x3 stride-1 float32, where it
 * applies and is chosen), then oneDNN (conv_dnnl.c), then the im2col
 * kernels of this file. bfloat16 tensors: oneDNN's bf16 kernels where the
 * capped ISA has them, else the converting path (bf16.c: float32 twins
 * through this same order, rounded back); float16 always converts.
 *
 * Method: im2col + BLAS GEMM (float32 via cblas_sgemm, float64 via
 * cblas_dgemm). In NHWC each output pixel's receptive field is KH*KW runs of
 * Cin contiguous values, so the column matrix
 *   col: (rows = N*OH*OW, K = KH*KW*Cin), row r = (n,oh,ow), col k = (kh,kw,ci)
 * is built with memcpy, and w read as a (K, Cout) row-major matrix needs no
 * reordering:
 *   forward          y(rows,Cout) = col @ w (+ bias)
 *   backward data    gcol(rows,K) = gy @ w^T, then col2im adds gcol into gx
 *   backward filter  gw(K,Cout)   = sum over chunks col^T @ gy; gb = sum of gy rows
 * A 1x1 convolution with stride 1 and no padding uses x itself as col.
 *
 * Parallelism: the output lines (n,oh) are cut into chunks whose column
 * buffer fits in the L2 cache (CHUNK_BYTES); OpenMP threads take whole
 * chunks, each building its columns and calling a single-threaded GEMM on
 * them (OpenBLAS is set to one thread for the duration), so the columns are
 * consumed while still in cache and no two thread pools compete. The total
 * buffer is threads * CHUNK_BYTES (far below 32 MiB).
 *
 * Determinism: the chunk size depends only on the shapes, never on the thread
 * count. Forward and backward-data rows are each computed by one GEMM call;
 * col2im runs the even chunks, then the odd ones (chunks are at least a kernel
 * high, so chunks of one phase never touch the same gx rows); the filter
 * gradient sums a fixed number of chunk groups in a fixed order. Results are
 * bitwise the same for any thread count. */
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "conv_dnnl.h"
#include "wino.h"

#ifndef CHUNK_BYTES
#define CHUNK_BYTES ((size_t)512 << 10) /* column buffer per chunk (per thread) */
#endif
#define PAR_MIN 16384                   /* elements below which loops stay serial */
#define GB_BLOCKS 64                    /* fixed row blocks of the bias gradient */
#define GW_GROUPS 16                    /* fixed chunk groups of the filter gradient */
#define GW_PART_MAX ((size_t)64 << 20)  /* bytes of filter-gradient partials at most */

typedef struct {
  int64_t N, H, W, C;   /* input  (N,H,W,C) */
  int64_t KH, KW, O;    /* weight (KH,KW,C,O) */
  int64_t OH, OW;       /* output (N,OH,OW,O) */
  int64_t sh, sw, dh, dw, pt, pl;
  int64_t K;            /* KH*KW*C: columns of col */
  size_t es;            /* element size */
  bool f32;
  bool direct;          /* 1x1, stride 1, no padding: col == x */
} geom;

static int check_dtype(rn_dtype dt, const char *op) {
  if (dt == RN_F32 || dt == RN_F64 || dt == RN_BF16 || dt == RN_F16) return 0;
  return rn_err("%s: dtype %s is not supported on the cpu (float32, float64, bfloat16, float16)", op,
                rn_dtype_name(dt));
}

/* Geometry from the input shape xs (N,H,W,C), the weight w and the output
 * shape ys (N,OH,OW,O); checks that the three agree with the params. */
static int geom_init(geom *g, const int64_t *xs, const rn_tensor *w, const int64_t *ys,
                     const rn_conv_params *p, const char *op) {
  int64_t G = p->groups > 1 ? p->groups : 1;
  g->N = xs[0]; g->H = xs[1]; g->W = xs[2]; g->C = xs[3] / G;
  g->KH = w->shape[0]; g->KW = w->shape[1]; g->O = w->shape[3];
  g->OH = ys[1]; g->OW = ys[2];
  g->sh = p->stride_h; g->sw = p->stride_w; g->dh = p->dil_h; g->dw = p->dil_w;
  int pt = p->pad_top, pb = p->pad_bottom, pl = p->pad_left, pr = p->pad_right;
  g->pt = pt; g->pl = pl;
  g->K = g->KH * g->KW * g->C;
  g->es = rn_dtype_size(w->dtype);
  g->f32 = w->dtype == RN_F32;
  if (g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1)
    return rn_err("%s: stride (%lld,%lld) and dilation (%lld,%lld) must be >= 1", op,
                  (long long)g->sh, (long long)g->sw, (long long)g->dh, (long long)g->dw);
  if (pt < 0 || pb < 0 || pl < 0 || pr < 0)
    return rn_err("%s: padding (top %d, bottom %d, left %d, right %d) must be >= 0", op, pt, pb,
                  pl, pr);
  int64_t eh = g->H + pt + pb - g->dh * (g->KH - 1) - 1;
  int64_t ew = g->W + pl + pr - g->dw * (g->KW - 1) - 1;
  int64_t oh = eh < 0 ? 0 : eh / g->sh + 1, ow = ew < 0 ? 0 : ew / g->sw + 1;
  if (w->shape[2] * G != xs[3] || g->O % G || ys[0] != g->N || ys[3] != g->O || oh != g->OH ||
      ow != g->OW)
    return rn_err("%s: shapes do not agree: input (%lld,%lld,%lld,%lld), weight "
                  "(%lld,%lld,%lld,%lld), output (%lld,%lld,%lld,%lld), expected output "
                  "(%lld,%lld,%lld,%lld), groups %lld", op, (long long)xs[0], (long long)xs[1],
                  (long long)xs[2], (long long)xs[3], (long long)w->shape[0],
                  (long long)w->shape[1], (long long)w->shape[2], (long long)w->shape[3],
                  (long long)ys[0], (long long)ys[1], (long long)ys[2], (long long)ys[3],
                  (long long)g->N, (long long)oh, (long long)ow, (long long)g->O, (long long)G);
  /* GEMM sizes are ints: K, Cout and a chunk's rows (>= one kernel height of lines) */
  if (g->K > INT_MAX / 64 || g->O > INT_MAX / 64 || g->OW > INT_MAX / 64 ||
      (g->dh * (g->KH - 1) + 1) * g->OW > INT_MAX / 64)
    return rn_err("%s: weight (%lld,%lld,%lld,%lld) or output width %lld too large for BLAS "
                  "(K = KH*KW*Cin, Cout and OW*dilated kernel height must be < %d)", op,
                  (long long)g->KH, (long long)g->KW, (long long)g->C, (long long)g->O,
                  (long long)g->OW, INT_MAX / 64);
  g->direct = g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && pt == 0 && pb == 0 &&
              pl == 0 && pr == 0;
  return 0;
}

/* Output lines (n,oh) per chunk: the chunk's column rows (lines*OW, K) take
 * at most CHUNK_BYTES (at least one line, and at least `min` lines). */
static int64_t chunk_lines(const geom *g, int64_t min) {
  int64_t L = g->N * g->OH;
  size_t line = (size_t)g->OW * (size_t)(g->K > g->O ? g->K : g->O) * g->es;
  int64_t n = line ? (int64_t)(CHUNK_BYTES / line) : L;
  if (n < min) n = min;
  if (n < 1) n = 1;
  if (n > L) n = L;
  return n;
}

/* Runs the chunk loops with OpenBLAS on one thread (restored after). */
static int blas_single_begin(void) {
  int n = openblas_get_num_threads();
  if (n != 1) openblas_set_num_threads(1);
  return n;
}
static void blas_single_end(int n) {
  if (n != 1) openblas_set_num_threads(n);
}

/* Single-threaded row-major C = op(A) op(B) + beta*C; sizes checked above. */
static void gemm(const geom *g, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                 const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                 int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (beta == 0)
      for (int64_t i = 0; i < M; i++)
        memset((char *)C + (size_t)(i * ldc) * g->es, 0, (size_t)N * g->es);
    return;
  }
  enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
  if (g->f32)
    cblas_sgemm(CblasRowMajor, opa, opb, (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb,
                (float)beta, C, (int)ldc);
  else
    cblas_dgemm(CblasRowMajor, opa, opb, (int)M, (int)N, (int)K, 1.0, A, (int)lda, B, (int)ldb,
                beta, C, (int)ldc);
}

/* Copies n elements; short runs inline, as a memcpy call costs more than it
 * moves (the attribute keeps GCC from turning the loop back into memcpy). */
#define DEF_COPY(NAME, T)                                                                  \
  __attribute__((optimize("no-tree-loop-distribute-patterns")))                            \
  static inline void NAME(T *restrict d, const T *restrict s, int64_t n) {                 \
    if (n > 256) { memcpy(d, s, sizeof(T) * (size_t)n); return; }                          \
    _Pragma("omp simd")                                                                    \
    for (int64_t i = 0; i < n; i++) d[i] = s[i];                                           \
  }                                                                                        \
  static inline void NAME##_zero(T *restrict d, int64_t n) {                               \
    _Pragma("omp simd")                                                                    \
    for (int64_t i = 0; i < n; i++) d[i] = 0;                                              \
  }
DEF_COPY(copy_f32, float)
DEF_COPY(copy_f64, double)

/* col rows of output lines l0..l0+nl-1 (line l = n*OH + oh):
 * col: (nl*OW, K), x: (N,H,W,C). Padding cells are zeros. */
#define DEF_IM2COL(NAME, T, COPY)                                                          \
  static void NAME(const geom *g, const T *x, T *col, int64_t l0, int64_t nl) {            \
    const int64_t H = g->H, W = g->W, C = g->C, KH = g->KH, KW = g->KW, OH = g->OH,        \
                  OW = g->OW, K = g->K;                                                    \
    for (int64_t li = 0; li < nl; li++) {                                                  \
      int64_t l = l0 + li, n = l / OH, oh = l % OH;                                        \
      const T *xn = x + n * H * W * C;                                                     \
      for (int64_t ow = 0; ow < OW; ow++) {                                                \
        T *cr = col + (li * OW + ow) * K;                                                  \
        int64_t iw0 = ow * g->sw - g->pl;                                                  \
        for (int64_t kh = 0; kh < KH; kh++) {                                              \
          int64_t ih = oh * g->sh - g->pt + kh * g->dh;                                    \
          T *dst = cr + kh * KW * C;                                                       \
          if (ih < 0 || ih >= H) { COPY##_zero(dst, KW * C); continue; }                   \
          const T *xr = xn + ih * W * C;                                                   \
          if (g->dw == 1) { /* the valid kw form one contiguous run of x */                \
            int64_t a = iw0 < 0 ? -iw0 : 0, e = W - iw0 < KW ? W - iw0 : KW;               \
            if (a > KW) a = KW;                                                            \
            if (e < a) e = a;                                                              \
            COPY##_zero(dst, a * C);                                                       \
            COPY(dst + a * C, xr + (iw0 + a) * C, (e - a) * C);                            \
            COPY##_zero(dst + e * C, (KW - e) * C);                                        \
          } else {                                                                         \
            for (int64_t kw = 0; kw < KW; kw++) {                                          \
              int64_t iw = iw0 + kw * g->dw;                                               \
              if (iw < 0 || iw >= W) COPY##_zero(dst + kw * C, C);                         \
              else COPY(dst + kw * C, xr + iw * C, C);                                     \
            }                                                                              \
          }                                                                                \
        }                                                                                  \
      }                                                                                    \
    }                                                                                      \
  }
DEF_IM2COL(im2col_f32, float, copy_f32)
DEF_IM2COL(im2col_f64, double, copy_f64)

static void im2col(const geom *g, const void *x, void *col, int64_t l0, int64_t nl) {
  if (g->f32) im2col_f32(g, x, col, l0, nl);
  else im2col_f64(g, x, col, l0, nl);
}

/* rows of y (m, O) set to the bias b (O) */
static void fill_bias(const geom *g, void *y, const void *b, int64_t m) {
  for (int64_t r = 0; r < m; r++) {
    if (g->f32) copy_f32((float *)y + r * g->O, b, g->O);
    else copy_f64((double *)y + r * g->O, b, g->O);
  }
}

/* gx += col2im(gcol) for output lines l0..l0+nl-1, as a gather over the gx
 * lines (n,ih) that these output lines touch: for kh, ow, kw in that order,
 * the gcol entries that land on each. gcol: (nl*OW, K), gx: (N,H,W,C). */
#define DEF_COL2IM(NAME, T)                                                                \
  static void NAME(const geom *g, const T *gcol, T *gx, int64_t l0, int64_t nl) {          \
    const int64_t H = g->H, W = g->W, C = g->C, KW = g->KW, OH = g->OH, OW = g->OW,        \
                  K = g->K;                                                                \
    const int64_t n0 = l0 / OH, n1 = (l0 + nl - 1) / OH, rows = (n1 - n0 + 1) * H;         \
    for (int64_t r = 0; r < rows; r++) {                                                   \
      int64_t n = n0 + r / H, ih = r % H;                                                  \
      T *gxr = gx + (n * H + ih) * W * C;                                                  \
      for (int64_t kh = 0; kh < g->KH; kh++) {                                             \
        int64_t t = ih + g->pt - kh * g->dh;                                               \
        if (t < 0 || t % g->sh) continue;                                                  \
        int64_t oh = t / g->sh, l = n * OH + oh;                                           \
        if (oh >= OH || l < l0 || l >= l0 + nl) continue;                                  \
        const T *gl = gcol + (l - l0) * OW * K + kh * KW * C;                              \
        for (int64_t ow = 0; ow < OW; ow++) {                                              \
          int64_t iw0 = ow * g->sw - g->pl;                                                \
          if (g->dw == 1) { /* kw = a..e-1 land on one contiguous run of gx */             \
            int64_t a = iw0 < 0 ? -iw0 : 0, e = W - iw0 < KW ? W - iw0 : KW;               \
            const T *restrict s = gl + ow * K + a * C;                                     \
            T *restrict d = gxr + (iw0 + a) * C;                                           \
            _Pragma("omp simd")                                                            \
            for (int64_t c = 0; c < (e - a) * C; c++) d[c] += s[c];                        \
            continue;                                                                      \
          }                                                                                \
          for (int64_t kw = 0; kw < KW; kw++) {                                            \
            int64_t iw = iw0 + kw * g->dw;                                                 \
            if (iw < 0 || iw >= W) continue;                                               \
            const T *restrict s = gl + ow * K + kw * C;                                    \
            T *restrict d = gxr + iw * C;                                                  \
            _Pragma("omp simd")                                                            \
            for (int64_t c = 0; c < C; c++) d[c] += s[c];                                  \
          }                                                                                \
        }                                                                                  \
      }                                                                                    \
    }                                                                                      \
  }
DEF_COL2IM(col2im_f32, float)
DEF_COL2IM(col2im_f64, double)

static void col2im(const geom *g, const void *gcol, void *gx, int64_t l0, int64_t nl) {
  if (g->f32) col2im_f32(g, gcol, gx, l0, nl);
  else col2im_f64(g, gcol, gx, l0, nl);
}

/* gb (O) = sum of the rows of gy (rows, O): fixed blocks summed in double in
 * parallel, then the blocks in order (deterministic for any thread count). */
#define DEF_BIAS_GRAD(NAME, T)                                                             \
  static void NAME(T *gb, const T *gy, int64_t rows, int64_t O, double *part) {            \
    int64_t bs = (rows + GB_BLOCKS - 1) / GB_BLOCKS;                                       \
    _Pragma("omp parallel for schedule(static) if (rows * O > PAR_MIN)")                   \
    for (int64_t blk = 0; blk < GB_BLOCKS; blk++) {                                        \
      double *acc = part + blk * O;                                                        \
      for (int64_t o = 0; o < O; o++) acc[o] = 0;                                          \
      int64_t r1 = (blk + 1) * bs < rows ? (blk + 1) * bs : rows;                          \
      for (int64_t r = blk * bs; r < r1; r++) {                                            \
        const T *row = gy + r * O;                                                         \
        for (int64_t o = 0; o < O; o++) acc[o] += row[o];                                  \
      }                                                                                    \
    }                                                                                      \
    for (int64_t o = 0; o < O; o++) {                                                      \
      double s = 0;                                                                        \
      for (int64_t blk = 0; blk < GB_BLOCKS; blk++) s += part[blk * O + o];                \
      gb[o] = (T)s;                                                                        \
    }                                                                                      \
  }
DEF_BIAS_GRAD(bias_grad_f32, float)
DEF_BIAS_GRAD(bias_grad_f64, double)

/* dst (n elements) = sum of the G partials (each n elements), in order */
#define DEF_SUM_PARTS(NAME, T)                                                             \
  static void NAME(T *dst, const T *parts, int64_t G, int64_t n) {                         \
    _Pragma("omp parallel for schedule(static) if (n * G > PAR_MIN)")                      \
    for (int64_t i = 0; i < n; i++) {                                                      \
      T s = parts[i];                                                                      \
      for (int64_t k = 1; k < G; k++) s += parts[k * n + i];                               \
      dst[i] = s;                                                                          \
    }                                                                                      \
  }
DEF_SUM_PARTS(sum_parts_f32, float)
DEF_SUM_PARTS(sum_parts_f64, double)

/* One column buffer per thread (NULL when the conv is direct). */
static char *col_buffers(const geom *g, int64_t cl, int nt, size_t *each) {
  *each = (size_t)(cl * g->OW) * (size_t)g->K * g->es;
  if (g->direct) return NULL;
  return rn_cpu_alloc(*each * (size_t)nt);
}

/* ---- groups on the im2col path -------------------------------------------- */

/* A view of t narrowed to [start, start+len) along dim: a header on the same
 * storage, read or written by the kernels, never retained or released. */
static rn_tensor slice(const rn_tensor *t, int dim, int64_t start, int64_t len) {
  rn_tensor v = *t;
  v.offset += start * t->stride[dim];
  v.shape[dim] = len;
  v.refcount = 0;
  v.grad = NULL;
  v.grad_fn = NULL;
  return v;
}

/* A contiguous copy of a view (a new tensor), or NULL after rn_err. */
static rn_tensor *dense(const rn_tensor *v) {
  rn_tensor *c = rn_empty(v->ndim, v->shape, v->dtype, RN_CPU);
  if (c && rn_cpu_copy(c, v) < 0) {
    rn_release(c);
    return NULL;
  }
  return c;
}

enum { G_FWD, G_BWD_DATA, G_BWD_FILTER };

/* One direction of a grouped convolution, group by group: act is x (fwd,
 * bwd-filter) or gx (bwd-data), wt is w or gw, bias b or gb (or NULL), out
 * y or gy. The outputs (y; gx; gw, gb) are written through slices. */
static int grouped(int dir, rn_tensor *act, rn_tensor *wt, rn_tensor *bias, rn_tensor *out,
                   const rn_conv_params *p) {
  int64_t G = p->groups, cg = act->shape[3] / G, og = wt->shape[3] / G;
  rn_conv_params q = *p;
  q.groups = 1;
  int rc = 0;
  for (int64_t g = 0; g < G && rc == 0; g++) {
    rn_tensor av = slice(act, 3, g * cg, cg), wv = slice(wt, 3, g * og, og);
    rn_tensor ov = slice(out, 3, g * og, og), bv;
    if (bias) bv = slice(bias, 0, g * og, og);
    /* inputs copied in; outputs computed into scratch, then copied out */
    rn_tensor *a = dense(&av), *w = a ? dense(&wv) : NULL, *o = w ? dense(&ov) : NULL;
    rn_tensor *b = (o && bias) ? dense(&bv) : NULL;
    if (!o || (bias && !b)) rc = -1;
    else if (dir == G_FWD) {
      rc = rn_cpu_conv2d_fwd(o, a, w, b, &q);
      if (rc == 0) rc = rn_cpu_copy(&ov, o);
    } else if (dir == G_BWD_DATA) {
      rc = rn_cpu_conv2d_bwd_data(a, o, w, &q);
      if (rc == 0) rc = rn_cpu_copy(&av, a);
    } else {
      rc = rn_cpu_conv2d_bwd_filter(w, b, o, a, &q);
      if (rc == 0) rc = rn_cpu_copy(&wv, w);
      if (rc == 0 && b) rc = rn_cpu_copy(&bv, b);
    }
    rn_release(a);
    rn_release(w);
    rn_release(o);
    rn_release(b);
  }
  return rc;
}

/* ---- forward ------------------------------------------------------------- */

/* The backend's conv2d_fwd_fused: oneDNN with post-ops, or RN_NOT_FUSED
 * (the front end composes conv, add and relu) where oneDNN does not run. */
int rn_cpu_conv2d_fwd_fused(rn_tensor *y, const rn_tensor *x, const rn_tensor *w,
                            const rn_tensor *b, const rn_conv_params *p, int post) {
  geom g;
  if (check_dtype(x->dtype, "conv2d") < 0 || geom_init(&g, x->shape, w, y->shape, p, "conv2d") < 0)
    return -1;
  int rw = rn_wino_conv2d_fwd(y, x, w, b, p, post);
  if (rw != RN_WINO_SKIP) return rw;
  int rd = rn_dnnl_conv2d_fwd_post(y, x, w, b, p, post);
  if (rd == RN_DNNL_FALLBACK && rn_cpu_is_half(x)) return rn_bf16_conv2d_fwd(y, x, w, b, p, post);
  return rd == RN_DNNL_FALLBACK ? RN_NOT_FUSED : rd;
}

int rn_cpu_conv2d_fwd(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                      const rn_conv_params *p) {
  const char *op = "conv2d";
  geom g;
  if (check_dtype(x->dtype, op) < 0 || geom_init(&g, x->shape, w, y->shape, p, op) < 0)
    return -1;
  int rd = rn_wino_conv2d_fwd(y, x, w, b, p, 0);
  if (rd != RN_WINO_SKIP) return rd;
  rd = rn_dnnl_conv2d_fwd(y, x, w, b, p);
  if (rd != RN_DNNL_FALLBACK) return rd;
  if (rn_cpu_is_half(x)) return rn_bf16_conv2d_fwd(y, x, w, b, p, 0);
  if (p->groups > 1)
    return grouped(G_FWD, (rn_tensor *)x, (rn_tensor *)w, (rn_tensor *)b, y, p);
  int64_t rows = g.N * g.OH * g.OW;
  if (rows == 0 || g.O == 0) return 0;
  char *yp = rn_ptr(y);
  const char *xp = rn_ptr(x), *wp = rn_ptr(w), *bp = b ? rn_ptr(b) : NULL;
  int64_t L = g.N * g.OH, cl = chunk_lines(&g, 1), nch = (L + cl - 1) / cl;
  int nt = omp_get_max_threads();
  if (nt > nch) nt = (int)nch;
  size_t each;
  char *col = col_buffers(&g, cl, nt, &each);
  if (!g.direct && !col) return -1;
  const size_t rb = (size_t)g.O * g.es;
  int bt = blas_single_begin();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
  for (int64_t ch = 0; ch < nch; ch++) {
    int64_t l0 = ch * cl, nl = L - l0 < cl ? L - l0 : cl, m = nl * g.OW, r0 = l0 * g.OW;
    char *yc = yp + (size_t)r0 * rb, *cc = NULL;
    const char *a;
    if (g.direct) {
      a = xp + (size_t)(r0 * g.C) * g.es;
    } else {
      cc = col + each * (size_t)omp_get_thread_num();
      im2col(&g, xp, cc, l0, nl);
      a = cc;
    }
    if (bp) fill_bias(&g, yc, bp, m);
    gemm(&g, false, false, m, g.O, g.K, a, g.K, wp, g.O, bp ? 1.0 : 0.0, yc, g.O);
  }
  blas_single_end(bt);
  rn_cpu_free(col);
  return 0;
}

/* ---- backward data ------------------------------------------------------- */

int rn_cpu_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                           const rn_conv_params *p) {
  const char *op = "conv2d backward data";
  geom g;
  if (check_dtype(gx->dtype, op) < 0 || geom_init(&g, gx->shape, w, gy->shape, p, op) < 0)
    return -1;
  int rd = rn_wino_conv2d_bwd_data(gx, gy, w, p);
  if (rd != RN_WINO_SKIP) return rd;
  rd = rn_dnnl_conv2d_bwd_data(gx, gy, w, p);
  if (rd != RN_DNNL_FALLBACK) return rd;
  if (rn_cpu_is_half(gx)) return rn_bf16_conv2d_bwd_data(gx, gy, w, p);
  if (p->groups > 1) return grouped(G_BWD_DATA, gx, (rn_tensor *)w, NULL, (rn_tensor *)gy, p);
  char *gxp = rn_ptr(gx);
  const char *gyp = rn_ptr(gy), *wp = rn_ptr(w);
  int64_t rows = g.N * g.OH * g.OW;
  if (!g.direct) memset(gxp, 0, (size_t)rn_numel(gx) * g.es);
  if (rows == 0) return 0;
  /* chunks at least a (dilated) kernel high: chunks c and c+2 touch disjoint gx rows */
  int64_t L = g.N * g.OH, cl = chunk_lines(&g, g.dh * (g.KH - 1) + 1), nch = (L + cl - 1) / cl;
  int nt = omp_get_max_threads();
  if (nt > nch) nt = (int)nch;
  size_t each;
  char *gcol = col_buffers(&g, cl, nt, &each);
  if (!g.direct && !gcol) return -1;
  int bt = blas_single_begin();
  for (int phase = 0; phase < 2; phase++) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (int64_t ch = phase; ch < nch; ch += 2) {
      int64_t l0 = ch * cl, nl = L - l0 < cl ? L - l0 : cl, m = nl * g.OW, r0 = l0 * g.OW;
      const char *gyc = gyp + (size_t)(r0 * g.O) * g.es;
      if (g.direct) { /* gx rows (m,C) = gy(m,O) @ w(C,O)^T */
        gemm(&g, false, true, m, g.C, g.O, gyc, g.O, wp, g.O, 0,
             gxp + (size_t)(r0 * g.C) * g.es, g.C);
      } else { /* gcol(m,K) = gy(m,O) @ w(K,O)^T, added into gx */
        char *gc = gcol + each * (size_t)omp_get_thread_num();
        gemm(&g, false, true, m, g.K, g.O, gyc, g.O, wp, g.O, 0, gc, g.K);
        col2im(&g, gc, gxp, l0, nl);
      }
    }
  }
  blas_single_end(bt);
  rn_cpu_free(gcol);
  return 0;
}

/* ---- backward filter ----------------------------------------------------- */

int rn_cpu_conv2d_bwd_filter(rn_tensor *gw, rn_tensor *gb, const rn_tensor *gy,
                             const rn_tensor *x, const rn_conv_params *p) {
  const char *op = "conv2d backward filter";
  geom g;
  if (check_dtype(x->dtype, op) < 0 || geom_init(&g, x->shape, gw, gy->shape, p, op) < 0)
    return -1;
  int rd = rn_dnnl_conv2d_bwd_filter(gw, gb, gy, x, p);
  if (rd != RN_DNNL_FALLBACK) return rd;
  if (rn_cpu_is_half(x)) return rn_bf16_conv2d_bwd_filter(gw, gb, gy, x, p);
  if (p->groups > 1) return grouped(G_BWD_FILTER, (rn_tensor *)x, gw, gb, (rn_tensor *)gy, p);
  int64_t rows = g.N * g.OH * g.OW;
  const char *gyp = rn_ptr(gy), *xp = rn_ptr(x);
  char *gwp = rn_ptr(gw);
  if (gb) {
    double *part = malloc(sizeof(double) * GB_BLOCKS * (size_t)(g.O ? g.O : 1));
    if (!part) return rn_err("%s: out of memory for the bias gradient", op);
    if (g.f32) bias_grad_f32((float *)rn_ptr(gb), (const float *)gyp, rows, g.O, part);
    else bias_grad_f64((double *)rn_ptr(gb), (const double *)gyp, rows, g.O, part);
    free(part);
  }
  int64_t KO = g.K * g.O;
  if (rows == 0 || KO == 0) {
    memset(gwp, 0, (size_t)rn_numel(gw) * g.es);
    return 0;
  }
  int64_t L = g.N * g.OH, cl = chunk_lines(&g, 1), nch = (L + cl - 1) / cl;
  /* G groups of consecutive chunks, each summed into its own partial gw */
  int64_t G = nch < GW_GROUPS ? nch : GW_GROUPS;
  while (G > 1 && (size_t)(G * KO) * g.es > GW_PART_MAX) G--;
  int nt = omp_get_max_threads();
  if (nt > G) nt = (int)G;
  size_t each;
  char *col = col_buffers(&g, cl, nt, &each);
  if (!g.direct && !col) return -1;
  char *parts = G > 1 ? rn_cpu_alloc((size_t)(G * KO) * g.es) : gwp;
  if (!parts) {
    rn_cpu_free(col);
    return -1;
  }
  int bt = blas_single_begin();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
  for (int64_t gi = 0; gi < G; gi++) {
    int64_t c0 = gi * nch / G, c1 = (gi + 1) * nch / G;
    char *part = parts + (size_t)(gi * KO) * g.es;
    char *cc = g.direct ? NULL : col + each * (size_t)omp_get_thread_num();
    for (int64_t ch = c0; ch < c1; ch++) {
      int64_t l0 = ch * cl, nl = L - l0 < cl ? L - l0 : cl, m = nl * g.OW, r0 = l0 * g.OW;
      const char *a = xp + (size_t)(r0 * g.C) * g.es;
      if (!g.direct) {
        im2col(&g, xp, cc, l0, nl);
        a = cc;
      }
      /* part(K,O) (+)= col(m,K)^T @ gy(m,O) */
      gemm(&g, true, false, g.K, g.O, m, a, g.K, gyp + (size_t)(r0 * g.O) * g.es, g.O,
           ch == c0 ? 0.0 : 1.0, part, g.O);
    }
  }
  blas_single_end(bt);
  if (G > 1) {
    if (g.f32) sum_parts_f32((float *)gwp, (const float *)parts, G, KO);
    else sum_parts_f64((double *)gwp, (const double *)parts, G, KO);
    rn_cpu_free(parts);
  }
  rn_cpu_free(col);
  return 0;
}
