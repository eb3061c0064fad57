/* nn.cu - CUDA kernels for pooling, batch normalization and the layout
 * helpers of the cuDNN convolution (core/cuda/cudnn.c), channels-last.
 *
 * Pooling, NHWC: x (N,H,W,C) -> y (N,OH,OW,C), one thread per output (fwd)
 * or per input cell (bwd, a gather over the windows that hold the cell, so
 * no atomics and a fixed order). Semantics and summation order are those of
 * core/cpu/pool.c: padded cells never win a max and NaN propagates; an
 * average divides by the real cells, or by kh*kw with count_include_pad; max
 * backward routes gy to the first cell of the window (in (kh,kw) order) that
 * equals y (a NaN max to the first NaN); the gathers add the windows in
 * (oh,ow) order, as the CPU's scatter does.
 *
 * Batch norm over (R,C) contiguous rows: the per-channel sums are taken
 * over fixed blocks of rnk_bn_rows(R, C) rows (a thread block per row block,
 * a few rows per thread summed in registers, then folded in double in
 * shared memory: bn_partials_kernel), then the blocks are folded by
 * one warp per channel (lanes over blocks, then a shuffle sum). The order
 * is fixed, so the result is deterministic; it differs from the CPU's
 * double fold by the float rounding of each thread's few terms. The elementwise passes run in the data's type with
 * float coefficients, as the CPU does.
 *
 * Layout helpers: zero padding / cropping of NHWC images, a tiled 2-D
 * transpose (HWIO (K,Cout) <-> cuDNN's KRSC (Cout,K)), a 4-d permute (the
 * NCHW/KCRS copies of the float64 convolutions) and a bias add.
 * float32 and float64 everywhere (dt = RNK_F32 / RNK_F64); issue #18: the
 * pooling kernels and the x-side batch-norm kernels (the partial sums, the
 * shift, the affine pass) also take bfloat16 data (dt = RNK_BF16): read as
 * float, the math in float (pooling, the affine pass: the CPU's float path)
 * or double (the sums), each output rounded to bf16 once. The per-channel
 * kernels (statistics, coefficients) run on the parameters' dtype, float32
 * for a bf16 x (the mixed_bfloat16 policy).
 */
#include <math.h>

#include "common.cuh"

using namespace rnk;

namespace {

/* Element access of the kernels that take bf16 data: Acc<S>::T is the math
 * type of storage type S (float for bf16, else S itself); get widens an
 * element exactly, put rounds a result once (to nearest even for bf16). */
template <typename S> struct Acc {
  typedef S T;
  static __device__ __forceinline__ T get(S v) { return v; }
  static __device__ __forceinline__ S put(T v) { return v; }
};
template <> struct Acc<bf16> {
  typedef float T;
  static __device__ __forceinline__ float get(bf16 v) { return bf16_to_f32(v.b); }
  static __device__ __forceinline__ bf16 put(float v) {
    bf16 r;
    r.b = f32_to_bf16(v);
    return r;
  }
};

/* ---- pooling ------------------------------------------------------------- */

/* real cells of the window of output (oh,ow): [ih0,ih1) x [iw0,iw1) */
__device__ __forceinline__ void pool_window(const rnk_pool_geom &g, int64_t oh, int64_t ow,
                                            int64_t *ih0, int64_t *ih1, int64_t *iw0,
                                            int64_t *iw1) {
  int64_t h0 = oh * g.sh - g.pt, w0 = ow * g.sw - g.pl;
  *ih0 = h0 < 0 ? 0 : h0;
  *ih1 = h0 + g.kh < g.H ? h0 + g.kh : g.H;
  *iw0 = w0 < 0 ? 0 : w0;
  *iw1 = w0 + g.kw < g.W ? w0 + g.kw : g.W;
}

/* y (N,OH,OW,C): one thread per element; S the storage type, T the math */
template <typename S>
__global__ void pool_fwd_kernel(rnk_pool_geom g, int max, S *y, const S *x) {
  typedef typename Acc<S>::T T;
  const int64_t n_out = g.N * g.OH * g.OW * g.C;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_out; i += step) {
    int64_t c = i % g.C, r = i / g.C;
    int64_t ow = r % g.OW;
    r /= g.OW;
    int64_t oh = r % g.OH, n = r / g.OH;
    int64_t ih0, ih1, iw0, iw1;
    pool_window(g, oh, ow, &ih0, &ih1, &iw0, &iw1);
    int64_t cnt = (ih1 > ih0 && iw1 > iw0) ? (ih1 - ih0) * (iw1 - iw0) : 0;
    if (cnt == 0) {
      y[i] = Acc<S>::put((T)0);
      continue;
    }
    const S *xn = x + n * g.H * g.W * g.C + c;
    if (max) {
      T m = Acc<S>::get(xn[(ih0 * g.W + iw0) * g.C]);
      for (int64_t ih = ih0; ih < ih1; ih++)
        for (int64_t iw = iw0; iw < iw1; iw++) {
          T v = Acc<S>::get(xn[(ih * g.W + iw) * g.C]);
          m = (v > m || v != v) ? v : m;
        }
      y[i] = Acc<S>::put(m);
    } else {
      T s = 0;
      for (int64_t ih = ih0; ih < ih1; ih++)
        for (int64_t iw = iw0; iw < iw1; iw++) s += Acc<S>::get(xn[(ih * g.W + iw) * g.C]);
      T inv = (T)1 / (T)(g.cip ? (int64_t)g.kh * g.kw : cnt);
      y[i] = Acc<S>::put(s * inv);
    }
  }
}

/* The output rows/cols whose windows hold input row ih: [lo, hi] clipped. */
__device__ __forceinline__ void windows_of(int64_t i, int64_t pad, int64_t k, int64_t s,
                                           int64_t nout, int64_t *lo, int64_t *hi) {
  /* o*s - pad <= i < o*s - pad + k  <=>  (i + pad - k + 1)/s <= o <= (i + pad)/s */
  int64_t a = i + pad - k + 1;
  int64_t l = a <= 0 ? 0 : (a + s - 1) / s;
  int64_t h = (i + pad) / s; /* i + pad >= 0 */
  *lo = l;
  *hi = h < nout - 1 ? h : nout - 1;
}

/* gx (N,H,W,C): one thread per element, gathering the windows that hold it */
template <typename S>
__global__ void pool_bwd_kernel(rnk_pool_geom g, int max, S *gx, const S *gy, const S *x,
                                const S *y) {
  typedef typename Acc<S>::T T;
  const int64_t n_in = g.N * g.H * g.W * g.C;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_in; i += step) {
    int64_t c = i % g.C, r = i / g.C;
    int64_t iw = r % g.W;
    r /= g.W;
    int64_t ih = r % g.H, n = r / g.H;
    int64_t oh0, oh1, ow0, ow1;
    windows_of(ih, g.pt, g.kh, g.sh, g.OH, &oh0, &oh1);
    windows_of(iw, g.pl, g.kw, g.sw, g.OW, &ow0, &ow1);
    const int64_t cell = ih * g.W + iw;
    const S *xn = max ? x + n * g.H * g.W * g.C + c : NULL;
    T acc = 0;
    for (int64_t oh = oh0; oh <= oh1; oh++)
      for (int64_t ow = ow0; ow <= ow1; ow++) {
        int64_t o = ((n * g.OH + oh) * g.OW + ow) * g.C + c;
        int64_t ih0, ih1, iw0, iw1;
        pool_window(g, oh, ow, &ih0, &ih1, &iw0, &iw1);
        int64_t cnt = (ih1 > ih0 && iw1 > iw0) ? (ih1 - ih0) * (iw1 - iw0) : 0;
        if (cnt == 0) continue;
        if (max) {
          /* does the window's first match (in (kh,kw) order) sit at this cell? */
          T yv = Acc<S>::get(y[o]);
          bool ynan = yv != yv;
          int64_t first = -1;
          for (int64_t h = ih0; h < ih1 && first < 0; h++)
            for (int64_t w = iw0; w < iw1; w++) {
              T v = Acc<S>::get(xn[(h * g.W + w) * g.C]);
              if (v == yv || (v != v && ynan)) {
                first = h * g.W + w;
                break;
              }
            }
          if (first == cell) acc += Acc<S>::get(gy[o]);
        } else {
          T inv = (T)1 / (T)(g.cip ? (int64_t)g.kh * g.kw : cnt);
          acc += Acc<S>::get(gy[o]) * inv;
        }
      }
    gx[i] = Acc<S>::put(acc);
  }
}

/* ---- batch norm ---------------------------------------------------------- */

template <typename T> __device__ __forceinline__ double ld(const T *p, int64_t i) {
  return p ? (double)p[i] : 0.0;
}

/* part[(b*2 + k)*C + c], b < nblk = rnk_bn_nblk(R, C): over the rows of
 * block b (rows = rnk_bn_rows(R, C) of them), k = 0: sum (x - shift),
 * k = 1: sum (x - shift)^2; with gy: k = 0: sum gy, k = 1: sum gy*(x - shift);
 * shift NULL: 0; mask (the fused ReLU's y): gy counts where mask > 0.
 * One thread block of kPartThreads per (row block b, chunk of CB = min(C,
 * kPartThreads) channels): thread t takes channel c0 + t % CB and rows
 * r0 + t / CB, r0 + t / CB + G, ... (G = kPartThreads / CB), so that a warp
 * reads consecutive channels of a row (coalesced); each thread sums its few
 * values in registers (float, double for float64 data), then the G threads
 * of a channel are folded in shared memory in double, in a fixed order. */
constexpr int kPartThreads = 256;
template <typename S>
__global__ void __launch_bounds__(kPartThreads)
bn_partials_kernel(const S *x, const S *gy, const double *shift, int64_t R, int64_t C,
                   int64_t rows, double *part, const S *mask) {
  typedef typename Acc<S>::T T;
  __shared__ double sm[2][kPartThreads];
  const int CB = C < kPartThreads ? (int)C : kPartThreads, G = kPartThreads / CB;
  const int t = threadIdx.x, cl = t % CB, g = t / CB;
  const int64_t b = blockIdx.x, c = (int64_t)blockIdx.y * CB + cl;
  const int64_t r0 = b * rows, r1 = r0 + rows < R ? r0 + rows : R;
  T s1 = 0, s2 = 0;
  if (g < G && c < C) {
    const T sh = shift ? (T)shift[c] : (T)0;
    if (gy) {
      for (int64_t r = r0 + g; r < r1; r += G) {
        const int64_t i = r * C + c;
        T v = mask && !(Acc<S>::get(mask[i]) > (T)0) ? (T)0 : Acc<S>::get(gy[i]); /* dReLU */
        s1 += v;
        s2 += v * (Acc<S>::get(x[i]) - sh);
      }
    } else {
      for (int64_t r = r0 + g; r < r1; r += G) {
        T d = Acc<S>::get(x[r * C + c]) - sh;
        s1 += d;
        s2 += d * d;
      }
    }
  }
  sm[0][t] = (double)s1;
  sm[1][t] = (double)s2;
  __syncthreads();
  if (t < CB && c < C) {
    double a = 0, q = 0;
    for (int k = 0; k < G; k++) {
      a += sm[0][k * CB + t];
      q += sm[1][k * CB + t];
    }
    part[(b * 2) * C + c] = a;
    part[(b * 2 + 1) * C + c] = q;
  }
}

/* dst[i] = (double)src[i], i < n */
template <typename S> __global__ void to_double_kernel(double *dst, const S *src, int64_t n) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
    dst[i] = (double)Acc<S>::get(src[i]);
}

/* The per-channel kernels below run one block of kFold threads per channel:
 * c = the block's index, lane = the thread's index (the results are kept
 * by lane 0). */
constexpr int kFold = 128;
#define CHANNEL_WARP(C)                                                             \
  const int64_t c = blockIdx.x;                                                     \
  const int lane = threadIdx.x;                                                     \
  if (c >= (C)) return

/* block sums of channel c folded by the block (lane 0 gets the result):
 * s1 = sum_b part[b][0][c], s2 = sum_b part[b][1][c], in a fixed order */
__device__ __forceinline__ void fold(const double *part, int64_t nblk, int64_t C, int64_t c,
                                     int lane, double *s1, double *s2) {
  __shared__ double sh[2][kFold / 32];
  double a = 0, b = 0;
  for (int64_t k = lane; k < nblk; k += kFold) {
    a += part[(k * 2) * C + c];
    b += part[(k * 2 + 1) * C + c];
  }
  a = warp_sum(a);
  b = warp_sum(b);
  if ((lane & 31) == 0) {
    sh[0][lane >> 5] = a;
    sh[1][lane >> 5] = b;
  }
  __syncthreads();
  a = b = 0;
  for (int w = 0; w < kFold / 32; w++) {
    a += sh[0][w];
    b += sh[1][w];
  }
  *s1 = a;
  *s2 = b;
}

/* Training statistics per channel; coef: 4 arrays of C doubles (a, b, m, d)
 * for out = a*in + b*(x - m) + d. */
template <typename T>
__global__ void bn_train_stats_kernel(const double *part, int64_t nblk, int64_t R, int64_t C,
                                      const double *shift, const T *gamma, const T *beta,
                                      T *save_mean, T *save_invstd, T *rmean, T *rvar,
                                      double momentum, bool unbiased, double eps,
                                      double *coef) {
  CHANNEL_WARP(C);
  double s1, s2;
  fold(part, nblk, C, c, lane, &s1, &s2);
  if (lane) return;
  double dm = s1 / (double)R;
  double mean = shift[c] + dm;
  double var = s2 / (double)R - dm * dm;
  if (var < 0) var = 0;
  double invstd = 1.0 / sqrt(var + eps);
  double g = gamma ? (double)gamma[c] : 1.0, be = beta ? (double)beta[c] : 0.0;
  save_mean[c] = (T)mean;
  save_invstd[c] = (T)invstd;
  coef[c] = 0;
  coef[C + c] = g * invstd;
  coef[2 * C + c] = mean;
  coef[3 * C + c] = be;
  /* running variance: biased (Keras), or var*R/(R-1) when unbiased (PyTorch) */
  double v = unbiased && R > 1 ? var * (double)R / (double)(R - 1) : var;
  if (rmean) rmean[c] = (T)(momentum * (double)rmean[c] + (1 - momentum) * mean);
  if (rvar) rvar[c] = (T)(momentum * (double)rvar[c] + (1 - momentum) * v);
}

template <typename T>
__global__ void bn_infer_coef_kernel(int64_t C, const T *gamma, const T *beta, const T *rm,
                                     const T *rv, double eps, double *coef) {
  int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double g = gamma ? (double)gamma[c] : 1.0;
  coef[c] = 0;
  coef[C + c] = g / sqrt((double)rv[c] + eps);
  coef[2 * C + c] = (double)rm[c];
  coef[3 * C + c] = beta ? (double)beta[c] : 0.0;
}

/* Backward per channel from part (sum gy, sum gy*(x - mean)); coef[2C..3C)
 * already holds mean (double). */
template <typename T>
__global__ void bn_bwd_coef_kernel(const double *part, int64_t nblk, int64_t R, int64_t C,
                                   const T *gamma, const T *save_invstd, T *ggamma, T *gbeta,
                                   double *coef) {
  CHANNEL_WARP(C);
  double sg, sgx;
  fold(part, nblk, C, c, lane, &sg, &sgx);
  if (lane) return;
  double is = (double)save_invstd[c], g = gamma ? (double)gamma[c] : 1.0;
  double gg = sgx * is;
  if (ggamma) ggamma[c] = (T)gg;
  if (gbeta) gbeta[c] = (T)sg;
  double k = g * is;
  coef[c] = k;
  coef[C + c] = R ? -k * is * gg / (double)R : 0;
  coef[3 * C + c] = R ? -k * sg / (double)R : 0;
}

/* out = a*in + b*(x - m) + d per channel, in T with T coefficients (the
 * CPU's float path; T = float for bf16 data S, out rounded once); in may be
 * NULL (no a term). (R,C) contiguous. */
template <typename S>
__global__ void bn_affine_kernel(S *out, const S *in, const S *x, const double *coef, int64_t R,
                                 int64_t C, const S *mask, bool relu) {
  typedef typename Acc<S>::T T;
  const int64_t n = R * C, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t c = i % C;
    T a = (T)coef[c], b = (T)coef[C + c], m = (T)coef[2 * C + c], d = (T)coef[3 * C + c];
    T v = b * (Acc<S>::get(x[i]) - m) + d;
    /* issue 19: dReLU folded */
    T g = in ? (mask && !(Acc<S>::get(mask[i]) > (T)0) ? (T)0 : Acc<S>::get(in[i])) : (T)0;
    v = in ? a * g + v : v;
    out[i] = Acc<S>::put(relu && !(v > (T)0) ? (T)0 : v); /* issue 19: ReLU folded */
  }
}

/* out[c] = sum over blocks of part[b][0][c] (the bias gradient), rounded
 * once to out's type (bfloat16 too) */
template <typename S>
__global__ void colsum_finish_kernel(const double *part, int64_t nblk, int64_t C, S *out) {
  CHANNEL_WARP(C);
  double s1, s2;
  fold(part, nblk, C, c, lane, &s1, &s2);
  if (lane == 0) out[c] = Acc<S>::put((typename Acc<S>::T)s1);
}

/* ---- layout helpers ------------------------------------------------------ */

/* xp (N,H+pt+pb,W+pl+pr,C) = x (N,H,W,C) with zero borders */
template <typename T>
__global__ void pad_kernel(T *xp, const T *x, int64_t N, int64_t H, int64_t W, int64_t C,
                           int64_t pt, int64_t pl, int64_t Hp, int64_t Wp) {
  const int64_t n_out = N * Hp * Wp * C, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_out; i += step) {
    int64_t c = i % C, r = i / C;
    int64_t w = r % Wp - pl;
    r /= Wp;
    int64_t h = r % Hp - pt, n = r / Hp;
    xp[i] = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * H + h) * W + w) * C + c] : (T)0;
  }
}

/* gx (N,H,W,C) = the interior of gxp (N,Hp,Wp,C) at offset (pt,pl) */
template <typename T>
__global__ void crop_kernel(T *gx, const T *gxp, int64_t N, int64_t H, int64_t W, int64_t C,
                            int64_t pt, int64_t pl, int64_t Hp, int64_t Wp) {
  const int64_t n_out = N * H * W * C, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_out; i += step) {
    int64_t c = i % C, r = i / C;
    int64_t w = r % W;
    r /= W;
    int64_t h = r % H, n = r / H;
    gx[i] = gxp[((n * Hp + h + pt) * Wp + w + pl) * C + c];
  }
}

constexpr int kTile = 32;

/* out (cols,rows) = in (rows,cols)^T; 32x32 tiles through shared memory,
 * blocks of 32x8 threads; grid-stride over the tiles */
template <typename T>
__global__ void transpose_kernel(T *out, const T *in, int64_t rows, int64_t cols) {
  __shared__ T tile[kTile][kTile + 1];
  const int64_t trows = (rows + kTile - 1) / kTile, tcols = (cols + kTile - 1) / kTile;
  for (int64_t t = blockIdx.x; t < trows * tcols; t += gridDim.x) {
    int64_t r0 = (t / tcols) * kTile, c0 = (t % tcols) * kTile;
    for (int k = threadIdx.y; k < kTile; k += blockDim.y) {
      int64_t r = r0 + k, c = c0 + threadIdx.x;
      if (r < rows && c < cols) tile[k][threadIdx.x] = in[r * cols + c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < kTile; k += blockDim.y) {
      int64_t c = c0 + k, r = r0 + threadIdx.x; /* out row c, col r */
      if (r < rows && c < cols) out[c * rows + r] = tile[threadIdx.x][k];
    }
    __syncthreads();
  }
}

/* out (contiguous, shape p.shape) [i0,i1,i2,i3] = in[sum_k i_k * p.istride[k]] */
template <typename T> __global__ void permute4_kernel(T *out, const T *in, rnk_perm4 p) {
  const int64_t n = p.shape[0] * p.shape[1] * p.shape[2] * p.shape[3];
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t r = i, off = 0;
    for (int d = 3; d >= 0; d--) {
      off += (r % p.shape[d]) * p.istride[d];
      r /= p.shape[d];
    }
    out[i] = in[off];
  }
}

/* y (rows,C) += b (C) */
template <typename T> __global__ void bias_add_kernel(T *y, const T *b, int64_t rows, int64_t C) {
  const int64_t n = rows * C, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
    y[i] += b[i % C];
}

__global__ void bias_add_bf16_kernel(uint16_t *y, const uint16_t *b, int64_t rows, int64_t C) {
  const int64_t n = rows * C, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
    y[i] = f32_to_bf16(bf16_to_f32(y[i]) + bf16_to_f32(b[i % C]));
}

unsigned grid(int64_t n) { return blocks_for(n, kThreads); }
/* one thread per channel */
unsigned chan_blocks(int64_t C) { return (unsigned)((C + kThreads - 1) / kThreads); }

} // namespace

/* dispatch on dt, float types only (RNK_DISPATCH in common.cuh takes all):
 * CALL with T = float or double; anything else is an invalid value */
#define RNK_FLOAT_DISPATCH(dt, CALL)                                                     \
  do {                                                                             \
    if ((dt) == RNK_F32) {                                                         \
      typedef float T;                                                             \
      CALL;                                                                        \
    } else if ((dt) == RNK_F64) {                                                  \
      typedef double T;                                                            \
      CALL;                                                                        \
    } else {                                                                       \
      return cudaErrorInvalidValue;                                                \
    }                                                                              \
  } while (0)

/* The kernels over data (pooling, the x side of batch norm): float types
 * and bfloat16 (T = the storage type rnk::bf16, math in float: Acc) */
#define RNK_DATA_DISPATCH(dt, CALL)                                                      \
  do {                                                                             \
    if ((dt) == RNK_BF16) {                                                        \
      typedef bf16 T;                                                              \
      CALL;                                                                        \
    } else {                                                                       \
      RNK_FLOAT_DISPATCH(dt, CALL);                                                \
    }                                                                              \
  } while (0)

/* The data-movement kernels (transpose, permute, pad, crop) move 2-byte
 * elements of bfloat16 and float16 as uint16_t, bit for bit (a zero pad is
 * +0 in both). */
#define RNK_MOVE_DISPATCH(dt, CALL)                                                      \
  do {                                                                             \
    if ((dt) == RNK_BF16 || (dt) == RNK_F16) {                                     \
      typedef uint16_t T;                                                          \
      CALL;                                                                        \
    } else {                                                                       \
      RNK_FLOAT_DISPATCH(dt, CALL);                                                \
    }                                                                              \
  } while (0)


extern "C" cudaError_t rnk_pool2d_fwd(int dt, int max, rnk_pool_geom g, void *y, const void *x,
                                      cudaStream_t s) {
  int64_t n = g.N * g.OH * g.OW * g.C;
  if (n <= 0) return cudaSuccess;
  RNK_DATA_DISPATCH(dt, (pool_fwd_kernel<T><<<grid(n), kThreads, 0, s>>>(g, max, (T *)y,
                                                                    (const T *)x)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_pool2d_bwd(int dt, int max, rnk_pool_geom g, void *gx, const void *gy,
                                      const void *x, const void *y, cudaStream_t s) {
  int64_t n = g.N * g.H * g.W * g.C;
  if (n <= 0) return cudaSuccess;
  RNK_DATA_DISPATCH(dt, (pool_bwd_kernel<T><<<grid(n), kThreads, 0, s>>>(
                       g, max, (T *)gx, (const T *)gy, (const T *)x, (const T *)y)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_bn_partials(int dt, const void *x, const void *gy, const double *shift,
                                       int64_t R, int64_t C, double *part, cudaStream_t s) {
  int64_t nblk = rnk_bn_nblk(R, C), cb = C < kPartThreads ? C : kPartThreads;
  if (nblk * C <= 0) return cudaSuccess;
  dim3 pg((unsigned)nblk, (unsigned)((C + cb - 1) / cb));
  RNK_DATA_DISPATCH(dt, (bn_partials_kernel<T><<<pg, kPartThreads, 0, s>>>(
                       (const T *)x, (const T *)gy, shift, R, C, rnk_bn_rows(R, C), part, (const T *)NULL)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_bn_partials_masked(int dt, const void *x, const void *gy,
                                              const void *mask, const double *shift, int64_t R,
                                              int64_t C, double *part, cudaStream_t s) {
  int64_t nblk = rnk_bn_nblk(R, C), cb = C < kPartThreads ? C : kPartThreads;
  if (nblk * C <= 0) return cudaSuccess;
  dim3 pg((unsigned)nblk, (unsigned)((C + cb - 1) / cb));
  RNK_DATA_DISPATCH(dt, (bn_partials_kernel<T><<<pg, kPartThreads, 0, s>>>(
                       (const T *)x, (const T *)gy, shift, R, C, rnk_bn_rows(R, C), part, (const T *)mask)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_to_double(int dt, double *dst, const void *src, int64_t n,
                                     cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  RNK_DATA_DISPATCH(dt, (to_double_kernel<T><<<grid(n), kThreads, 0, s>>>(dst, (const T *)src, n)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_bn_train_stats(int dt, const double *part, int64_t R, int64_t C,
                                          const double *shift, const void *gamma,
                                          const void *beta, void *save_mean, void *save_invstd,
                                          void *rmean, void *rvar, double momentum,
                                          bool unbiased, double eps, double *coef,
                                          cudaStream_t s) {
  if (C <= 0) return cudaSuccess;
  int64_t nblk = rnk_bn_nblk(R, C);
  RNK_FLOAT_DISPATCH(dt, (bn_train_stats_kernel<T><<<(unsigned)C, kFold, 0, s>>>(
                       part, nblk, R, C, shift, (const T *)gamma, (const T *)beta,
                       (T *)save_mean, (T *)save_invstd, (T *)rmean, (T *)rvar, momentum,
                       unbiased, eps, coef)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_bn_infer_coef(int dt, int64_t C, const void *gamma, const void *beta,
                                         const void *rm, const void *rv, double eps,
                                         double *coef, cudaStream_t s) {
  if (C <= 0) return cudaSuccess;
  RNK_FLOAT_DISPATCH(dt, (bn_infer_coef_kernel<T><<<chan_blocks(C), kThreads, 0, s>>>(
                       C, (const T *)gamma, (const T *)beta, (const T *)rm, (const T *)rv, eps,
                       coef)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_bn_bwd_coef(int dt, const double *part, int64_t R, int64_t C,
                                       const void *gamma, const void *save_invstd, void *ggamma,
                                       void *gbeta, double *coef, cudaStream_t s) {
  if (C <= 0) return cudaSuccess;
  int64_t nblk = rnk_bn_nblk(R, C);
  RNK_FLOAT_DISPATCH(dt, (bn_bwd_coef_kernel<T><<<(unsigned)C, kFold, 0, s>>>(
                       part, nblk, R, C, (const T *)gamma, (const T *)save_invstd, (T *)ggamma,
                       (T *)gbeta, coef)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_bn_affine(int dt, void *out, const void *in, const void *x,
                                     const double *coef, int64_t R, int64_t C, cudaStream_t s) {
  if (R * C <= 0) return cudaSuccess;
  RNK_DATA_DISPATCH(dt, (bn_affine_kernel<T><<<grid(R * C), kThreads, 0, s>>>(
                       (T *)out, (const T *)in, (const T *)x, coef, R, C, (const T *)NULL, false)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_bn_affine_relu(int dt, void *out, const void *in, const void *x,
                                          const double *coef, int64_t R, int64_t C,
                                          const void *mask, bool relu, cudaStream_t s) {
  if (R * C <= 0) return cudaSuccess;
  RNK_DATA_DISPATCH(dt, (bn_affine_kernel<T><<<grid(R * C), kThreads, 0, s>>>(
                       (T *)out, (const T *)in, (const T *)x, coef, R, C, (const T *)mask, relu)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_colsum_finish(int dt, const double *part, int64_t R, int64_t C,
                                         void *out, cudaStream_t s) {
  if (C <= 0) return cudaSuccess;
  int64_t nblk = rnk_bn_nblk(R, C);
  RNK_DATA_DISPATCH(dt, (colsum_finish_kernel<T><<<(unsigned)C, kFold, 0, s>>>(part, nblk, C,
                                                                                (T *)out)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_pad_nhwc(int dt, void *xp, const void *x, int64_t N, int64_t H,
                                    int64_t W, int64_t C, int pt, int pb, int pl, int pr,
                                    cudaStream_t s) {
  int64_t Hp = H + pt + pb, Wp = W + pl + pr, n = N * Hp * Wp * C;
  if (n <= 0) return cudaSuccess;
  RNK_MOVE_DISPATCH(dt, (pad_kernel<T><<<grid(n), kThreads, 0, s>>>((T *)xp, (const T *)x, N, H, W, C,
                                                               pt, pl, Hp, Wp)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_crop_nhwc(int dt, void *gx, const void *gxp, int64_t N, int64_t H,
                                     int64_t W, int64_t C, int pt, int pb, int pl, int pr,
                                     cudaStream_t s) {
  int64_t Hp = H + pt + pb, Wp = W + pl + pr, n = N * H * W * C;
  if (n <= 0) return cudaSuccess;
  RNK_MOVE_DISPATCH(dt, (crop_kernel<T><<<grid(n), kThreads, 0, s>>>((T *)gx, (const T *)gxp, N, H, W,
                                                                C, pt, pl, Hp, Wp)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_transpose2d(int dt, void *out, const void *in, int64_t rows,
                                       int64_t cols, cudaStream_t s) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  int64_t tiles = ((rows + kTile - 1) / kTile) * ((cols + kTile - 1) / kTile);
  unsigned b = tiles > (int64_t)kMaxBlocks ? kMaxBlocks : (unsigned)tiles;
  dim3 block(kTile, 8);
  RNK_MOVE_DISPATCH(dt, (transpose_kernel<T><<<b, block, 0, s>>>((T *)out, (const T *)in, rows,
                                                            cols)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_bias_add(int dt, void *y, const void *b, int64_t rows, int64_t C,
                                    cudaStream_t s) {
  if (rows * C <= 0) return cudaSuccess;
  if (dt == RNK_BF16) { /* y, b bfloat16: the sum in float32, rounded once */
    bias_add_bf16_kernel<<<grid(rows * C), kThreads, 0, s>>>((uint16_t *)y, (const uint16_t *)b, rows, C);
    return cudaGetLastError();
  }
  RNK_FLOAT_DISPATCH(dt, (bias_add_kernel<T><<<grid(rows * C), kThreads, 0, s>>>((T *)y, (const T *)b,
                                                                           rows, C)));
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_permute4(int dt, void *out, const void *in, rnk_perm4 p,
                                    cudaStream_t s) {
  int64_t n = p.shape[0] * p.shape[1] * p.shape[2] * p.shape[3];
  if (n <= 0) return cudaSuccess;
  RNK_MOVE_DISPATCH(dt, (permute4_kernel<T><<<grid(n), kThreads, 0, s>>>((T *)out, (const T *)in, p)));
  return cudaGetLastError();
}
