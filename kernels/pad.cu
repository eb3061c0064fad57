/* pad.cu - the line ops of core/ops/pad.c on the GPU: pad (constant,
 * reflect, replicate) and resize (nearest, bilinear with half-pixel
 * centres) along one dim of x (outer, L, inner). Forward: one thread per
 * output element (pads and nearest move the element's bits, any dtype;
 * bilinear float32/float64 in double). Backward: one thread per (outer,
 * inner) column walks the outputs in order and adds into gx (deterministic,
 * no atomics). The index math is core/cpu/pad.c's. */
#include <math.h>

#include "common.cuh"

using namespace rnk;

namespace {

__device__ __forceinline__ int64_t src_index(const rnk_line &p, int64_t o) {
  int64_t L = p.L, i = o - p.before;
  switch (p.kind) {
  case 0: return i >= 0 && i < L ? i : -1;             /* constant */
  case 2: return i < 0 ? 0 : i >= L ? L - 1 : i;       /* replicate */
  case 1:                                              /* reflect */
    if (i < 0) i = -i;
    if (i >= L) i = 2 * (L - 1) - i;
    return i;
  default: {                                           /* nearest */
    int64_t s = (int64_t)floor((double)o * ((double)L / (double)p.Lout));
    return s < L - 1 ? s : L - 1;
  }
  }
}

__device__ __forceinline__ void taps(const rnk_line &p, int64_t o, int64_t &i0, int64_t &i1,
                                     double &f) {
  double c = ((double)o + 0.5) * ((double)p.L / (double)p.Lout) - 0.5;
  if (c < 0) c = 0;
  int64_t a = (int64_t)c;
  if (a > p.L - 1) a = p.L - 1;
  i0 = a;
  i1 = a < p.L - 1 ? a + 1 : a;
  f = c - (double)a;
}

template <typename U>
__global__ void gather_kernel(U *y, const U *x, rnk_line p, U value) {
  const int64_t n = p.outer * p.Lout * p.inner, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
    int64_t k = e % p.inner, r = e / p.inner, o = r % p.Lout, b = r / p.Lout;
    int64_t s = src_index(p, o);
    y[e] = s >= 0 ? x[(b * p.L + s) * p.inner + k] : value;
  }
}

template <typename T>
__global__ void bilinear_kernel(T *y, const T *x, rnk_line p) {
  const int64_t n = p.outer * p.Lout * p.inner, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
    int64_t k = e % p.inner, r = e / p.inner, o = r % p.Lout, b = r / p.Lout, i0, i1;
    double w;
    taps(p, o, i0, i1, w);
    y[e] = (T)((1 - w) * (double)x[(b * p.L + i0) * p.inner + k] +
               w * (double)x[(b * p.L + i1) * p.inner + k]);
  }
}

template <typename T>
__global__ void line_bwd_kernel(T *gx, const T *gy, rnk_line p) {
  const int64_t n = p.outer * p.inner, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += step) {
    int64_t b = t / p.inner, k = t % p.inner;
    for (int64_t o = 0; o < p.Lout; o++) {
      double g = (double)gy[(b * p.Lout + o) * p.inner + k], w = 0;
      int64_t i0, i1;
      if (p.kind == 4) {
        taps(p, o, i0, i1, w);
      } else {
        i0 = i1 = src_index(p, o);
        if (i0 < 0) continue;
      }
      gx[(b * p.L + i0) * p.inner + k] += (T)((1 - w) * g);
      if (w != 0) gx[(b * p.L + i1) * p.inner + k] += (T)(w * g);
    }
  }
}

} // namespace

extern "C" cudaError_t rnk_line_fwd(int dt, int esize, void *y, const void *x, rnk_line p,
                                    uint64_t value_bits, cudaStream_t s) {
  int64_t n = p.outer * p.Lout * p.inner;
  if (n <= 0) return cudaSuccess;
  unsigned b = blocks_for(n, kThreads);
  if (p.kind == 4) {
    if (dt == RNK_F32) bilinear_kernel<float><<<b, kThreads, 0, s>>>((float *)y, (const float *)x, p);
    else if (dt == RNK_F64)
      bilinear_kernel<double><<<b, kThreads, 0, s>>>((double *)y, (const double *)x, p);
    else return cudaErrorInvalidValue;
    return cudaGetLastError();
  }
  switch (esize) {
  case 1: gather_kernel<uint8_t><<<b, kThreads, 0, s>>>((uint8_t *)y, (const uint8_t *)x, p, (uint8_t)value_bits); break;
  case 2: gather_kernel<uint16_t><<<b, kThreads, 0, s>>>((uint16_t *)y, (const uint16_t *)x, p, (uint16_t)value_bits); break;
  case 4: gather_kernel<uint32_t><<<b, kThreads, 0, s>>>((uint32_t *)y, (const uint32_t *)x, p, (uint32_t)value_bits); break;
  case 8: gather_kernel<uint64_t><<<b, kThreads, 0, s>>>((uint64_t *)y, (const uint64_t *)x, p, value_bits); break;
  default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_line_bwd(int dt, void *gx, const void *gy, rnk_line p, cudaStream_t s) {
  int64_t n = p.outer * p.inner;
  if (n <= 0 || p.Lout <= 0) return cudaSuccess;
  unsigned b = blocks_for(n, kThreads);
  if (dt == RNK_F32) line_bwd_kernel<float><<<b, kThreads, 0, s>>>((float *)gx, (const float *)gy, p);
  else if (dt == RNK_F64)
    line_bwd_kernel<double><<<b, kThreads, 0, s>>>((double *)gx, (const double *)gy, p);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}
