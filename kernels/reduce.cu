/* reduce.cu - CUDA kernels for sum/mean/max/min over any set of dims of a
 * strided tensor (accumulated in double, as core/cpu/reduce.c) and argmax
 * along one dim.
 *
 * Two shapes of work:
 * - few elements per output (or many outputs of modest size): one thread per
 *   output element loops over its reduced elements; neighbouring threads
 *   read neighbouring kept elements, which is coalesced when the kept dims
 *   are the dense ones (e.g. the bias gradient: sum over N,H,W of NHWC);
 * - many elements per output: one block per output element, threads stride
 *   over the reduced elements (coalesced when the innermost reduced dim is
 *   dense), then a warp-shuffle + shared-memory tree. The order of the sums
 *   is fixed by the block size, so results are deterministic.
 * NaN: max/min return NaN if any element is NaN (tracked apart from the
 * comparison); mean over no elements is NaN, sum over none is 0.
 */
#include <math.h>

#include "common.cuh"

using namespace rnk;

namespace {

/* x and y offsets of output element o (row-major over the kept dims) */
__device__ __forceinline__ void kept_offsets(const rnk_red_geom &g, int64_t o, int64_t *xo,
                                             int64_t *yo) {
  int64_t xb = 0, yb = 0;
  for (int d = g.nk - 1; d >= 0; d--) {
    int64_t c = d ? o % g.kshape[d] : o;
    o = d ? o / g.kshape[d] : 0;
    xb += c * g.kxstride[d];
    yb += c * g.kystride[d];
  }
  *xo = xb;
  *yo = yb;
}

/* x offset of reduced element j (row-major over the reduced dims) */
__device__ __forceinline__ int64_t red_offset(const rnk_red_geom &g, int64_t j) {
  int64_t off = 0;
  for (int d = g.nr - 1; d >= 0; d--) {
    int64_t c = d ? j % g.rshape[d] : j;
    j = d ? j / g.rshape[d] : 0;
    off += c * g.rstride[d];
  }
  return off;
}

__device__ __forceinline__ double red_init(int op) {
  return op == RNK_MAX ? -INFINITY : op == RNK_MIN ? INFINITY : 0.0;
}

/* acc combined with v (v is not NaN for max/min: NaN is tracked apart) */
__device__ __forceinline__ double red_step(int op, double acc, double v) {
  if (op == RNK_SUM || op == RNK_MEAN) return acc + v;
  if (op == RNK_MAX) return v > acc ? v : acc;
  return v < acc ? v : acc;
}

__device__ __forceinline__ double red_final(int op, double acc, bool nan, int64_t nred) {
  if (op == RNK_MEAN) acc = nred ? acc / (double)nred : NAN;
  if (nan) acc = NAN;
  return acc;
}

template <typename T>
__global__ void reduce_thread(const rnk_red_geom g, int op, const T *x, void *y, int ydt) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < g.nout; o += step) {
    int64_t xb, yb;
    kept_offsets(g, o, &xb, &yb);
    double acc = red_init(op);
    bool nan = false;
    for (int64_t j = 0; j < g.nred; j++) {
      double v = to_d(x[xb + red_offset(g, j)]);
      if (op >= RNK_MAX && v != v) nan = true;
      else acc = red_step(op, acc, v);
    }
    store_any(y, ydt, yb, red_final(op, acc, nan, g.nred));
  }
}

template <typename T>
__global__ void reduce_block(const rnk_red_geom g, int op, const T *x, void *y, int ydt) {
  __shared__ double s_acc[32];
  __shared__ int s_nan[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  for (int64_t o = blockIdx.x; o < g.nout; o += gridDim.x) {
    int64_t xb, yb;
    kept_offsets(g, o, &xb, &yb);
    double acc = red_init(op);
    int nan = 0;
    for (int64_t j = threadIdx.x; j < g.nred; j += blockDim.x) {
      double v = to_d(x[xb + red_offset(g, j)]);
      if (op >= RNK_MAX && v != v) nan = 1;
      else acc = red_step(op, acc, v);
    }
#pragma unroll
    for (int k = 16; k > 0; k >>= 1) acc = red_step(op, acc, __shfl_xor_sync(0xffffffffu, acc, k));
    nan = __any_sync(0xffffffffu, nan);
    if (lane == 0) {
      s_acc[warp] = acc;
      s_nan[warp] = nan;
    }
    __syncthreads();
    if (warp == 0) {
      acc = lane < nwarps ? s_acc[lane] : red_init(op);
      nan = lane < nwarps ? s_nan[lane] : 0;
#pragma unroll
      for (int k = 16; k > 0; k >>= 1)
        acc = red_step(op, acc, __shfl_xor_sync(0xffffffffu, acc, k));
      nan = __any_sync(0xffffffffu, nan);
      if (lane == 0) store_any(y, ydt, yb, red_final(op, acc, nan != 0, g.nred));
    }
    __syncthreads(); /* s_acc is reused by the next output */
  }
}

template <typename T>
__global__ void argmax_kernel(const rnk_red_geom g, const T *x, int64_t *idx) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x, n = g.rshape[0], s = g.rstride[0];
  for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < g.nout; o += step) {
    int64_t xb, yb;
    kept_offsets(g, o, &xb, &yb);
    int64_t best = 0;
    double bv = to_d(x[xb]);
    for (int64_t i = 1; i < n && bv == bv; i++) {
      double v = to_d(x[xb + i * s]);
      if (v > bv || v != v) {
        bv = v;
        best = i;
      }
    }
    idx[yb] = best;
  }
}

template <typename T>
cudaError_t reduce_launch(const rnk_red_geom &g, int op, const T *x, void *y, int ydt,
                          cudaStream_t s) {
  /* thread per output when each output is small, or when there are enough
   * outputs to fill the GPU and each is of modest size */
  if (g.nred < 64 || (g.nout >= 16384 && g.nred <= 4096)) {
    reduce_thread<T><<<blocks_for(g.nout, kThreads), kThreads, 0, s>>>(g, op, x, y, ydt);
  } else {
    int threads = g.nred >= 1024 ? 256 : 64;
    unsigned b = g.nout > (int64_t)kMaxBlocks * 4 ? kMaxBlocks * 4 : (unsigned)g.nout;
    reduce_block<T><<<b, threads, 0, s>>>(g, op, x, y, ydt);
  }
  return cudaGetLastError();
}

} // namespace


extern "C" cudaError_t rnk_reduce(rnk_red_geom g, int op, const void *x, int xdt, void *y,
                                  int ydt, cudaStream_t s) {
  if (g.nout <= 0) return cudaSuccess;
  if (op < RNK_SUM || op > RNK_MIN || ydt < 0 || ydt >= RNK_NDTYPES) return cudaErrorInvalidValue;
  RNK_DISPATCH(xdt, T, return reduce_launch<T>(g, op, (const T *)x, y, ydt, s));
}

extern "C" cudaError_t rnk_argmax(rnk_red_geom g, const void *x, int xdt, int64_t *idx,
                                  cudaStream_t s) {
  if (g.nout <= 0) return cudaSuccess;
  if (g.nr != 1 || g.rshape[0] <= 0) return cudaErrorInvalidValue;
  unsigned b = blocks_for(g.nout, kThreads);
  RNK_DISPATCH(xdt, T,
                 argmax_kernel<T><<<b, kThreads, 0, s>>>(g, (const T *)x, idx);
                 return cudaGetLastError());
}
