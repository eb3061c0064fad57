/* loss.cu - CUDA kernels for softmax / log_softmax over the last dim with
 * their backward, and the fused softmax cross-entropy (label smoothing,
 * d loss / d logits, labels checked on the device).
 *
 * Layout: x, y, gx, gy, logits, dlogits: (R,C) contiguous float32/float64;
 * labels: (N) uint8/int32/int64 with a stride; loss: (N) contiguous.
 * One warp per row (8 rows per 256-thread block, grid-stride over rows):
 * lanes stride over the C columns, then shuffle reductions. The arithmetic
 * is that of core/cpu/loss.c: rows max-shifted, sums in double, float32
 * results computed in float from the double sums.
 */
#include <math.h>

#include "common.cuh"

using namespace rnk;

namespace {

constexpr int kRowsPerBlock = kThreads / 32;

__device__ __forceinline__ float ex(float v) { return expf(v); }
__device__ __forceinline__ double ex(double v) { return exp(v); }

/* row max and sum(exp(x - max)) of one row, in every lane */
template <typename T>
__device__ __forceinline__ void row_lse(const T *xr, int64_t C, int lane, T *mx, double *se) {
  T m = -INFINITY;
  for (int64_t c = lane; c < C; c += 32) m = xr[c] > m ? xr[c] : m;
  m = warp_max(m);
  double s = 0;
  for (int64_t c = lane; c < C; c += 32) s += (double)ex(xr[c] - m);
  *mx = m;
  *se = warp_sum(s);
}

#define ROW_LOOP(R)                                                                   \
  const int lane = threadIdx.x & 31;                                                  \
  const int64_t w0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;           \
  const int64_t nw = ((int64_t)gridDim.x * blockDim.x) >> 5;                          \
  for (int64_t r = w0; r < (R); r += nw)

template <typename T>
__global__ void softmax_kernel(T *y, const T *x, int64_t R, int64_t C, int log_) {
  ROW_LOOP(R) {
    const T *xr = x + r * C;
    T *yr = y + r * C;
    T m;
    double se;
    row_lse(xr, C, lane, &m, &se);
    if (log_) {
      T k = (T)((double)m + log(se));
      for (int64_t c = lane; c < C; c += 32) yr[c] = xr[c] - k;
    } else {
      T inv = (T)(1.0 / se);
      for (int64_t c = lane; c < C; c += 32) yr[c] = ex(xr[c] - m) * inv;
    }
  }
}

template <typename T>
__global__ void softmax_backward_kernel(T *gx, const T *gy, const T *y, int64_t R, int64_t C,
                                        int log_) {
  ROW_LOOP(R) {
    const T *g = gy + r * C, *yr = y + r * C;
    T *o = gx + r * C;
    double s = 0;
    if (log_) {
      for (int64_t c = lane; c < C; c += 32) s += (double)g[c];
      T sf = (T)warp_sum(s);
      for (int64_t c = lane; c < C; c += 32) o[c] = g[c] - ex(yr[c]) * sf;
    } else {
      for (int64_t c = lane; c < C; c += 32) s += (double)g[c] * (double)yr[c];
      T sf = (T)warp_sum(s);
      for (int64_t c = lane; c < C; c += 32) o[c] = yr[c] * (g[c] - sf);
    }
  }
}

template <typename L>
__device__ __forceinline__ int64_t label_at(const L *labels, int64_t stride, int64_t n) {
  return (int64_t)labels[n * stride];
}

/* loss[n] = lse(x[n]) - (1-s) x[n,l] - s/C sum_c x[n,c]
 * dlogits[n,c] = softmax(x[n])[c] - (1-s)[c == l] - s/C */
template <typename T, typename L>
__global__ void cross_entropy_kernel(T *loss, T *dl, const T *x, int64_t N, int64_t C,
                                     const L *labels, int64_t lstride, double smoothing,
                                     unsigned long long *bad) {
  const double on = 1.0 - smoothing, off = C ? smoothing / (double)C : 0;
  ROW_LOOP(N) {
    int64_t l = label_at(labels, lstride, r); /* the same in every lane */
    if (l < 0 || l >= C) {
      if (lane == 0) atomicMin(bad, (unsigned long long)r);
      continue;
    }
    const T *xr = x + r * C;
    T m;
    double se, sx = 0;
    row_lse(xr, C, lane, &m, &se);
    for (int64_t c = lane; c < C; c += 32) sx += (double)xr[c];
    sx = warp_sum(sx);
    double lse = (double)m + log(se);
    if (lane == 0) loss[r] = (T)(lse - on * (double)xr[l] - off * sx);
    if (dl) {
      T *dr = dl + r * C;
      T inv = (T)(1.0 / se), offt = (T)off;
      for (int64_t c = lane; c < C; c += 32) {
        if (c == l) dr[c] = (T)((double)ex(xr[c] - m) / se - on - off);
        else dr[c] = ex(xr[c] - m) * inv - offt;
      }
    }
  }
}

unsigned row_blocks(int64_t R) { return blocks_for(R, kRowsPerBlock); }

} // namespace

extern "C" cudaError_t rnk_softmax(int dt, void *y, const void *x, int64_t R, int64_t C, int log,
                                   cudaStream_t s) {
  if (R <= 0 || C <= 0) return cudaSuccess;
  if (dt == RNK_F32)
    softmax_kernel<float><<<row_blocks(R), kThreads, 0, s>>>((float *)y, (const float *)x, R, C,
                                                             log);
  else if (dt == RNK_F64)
    softmax_kernel<double><<<row_blocks(R), kThreads, 0, s>>>((double *)y, (const double *)x, R, C,
                                                              log);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_softmax_backward(int dt, void *gx, const void *gy, const void *y,
                                            int64_t R, int64_t C, int log, cudaStream_t s) {
  if (R <= 0 || C <= 0) return cudaSuccess;
  if (dt == RNK_F32)
    softmax_backward_kernel<float><<<row_blocks(R), kThreads, 0, s>>>(
        (float *)gx, (const float *)gy, (const float *)y, R, C, log);
  else if (dt == RNK_F64)
    softmax_backward_kernel<double><<<row_blocks(R), kThreads, 0, s>>>(
        (double *)gx, (const double *)gy, (const double *)y, R, C, log);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}

template <typename T>
static cudaError_t ce_launch(T *loss, T *dl, const T *x, int64_t N, int64_t C, const void *labels,
                             int ldt, int64_t lstride, double smoothing, unsigned long long *bad,
                             cudaStream_t s) {
  unsigned b = row_blocks(N);
  switch (ldt) {
  case RNK_U8:
    cross_entropy_kernel<T, uint8_t><<<b, kThreads, 0, s>>>(
        loss, dl, x, N, C, (const uint8_t *)labels, lstride, smoothing, bad);
    break;
  case RNK_I32:
    cross_entropy_kernel<T, int32_t><<<b, kThreads, 0, s>>>(
        loss, dl, x, N, C, (const int32_t *)labels, lstride, smoothing, bad);
    break;
  case RNK_I64:
    cross_entropy_kernel<T, int64_t><<<b, kThreads, 0, s>>>(
        loss, dl, x, N, C, (const int64_t *)labels, lstride, smoothing, bad);
    break;
  default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_cross_entropy(int dt, void *loss, void *dlogits, const void *logits,
                                         int64_t N, int64_t C, const void *labels, int ldt,
                                         int64_t lstride, double smoothing,
                                         unsigned long long *bad, cudaStream_t s) {
  if (N <= 0) return cudaSuccess;
  if (dt == RNK_F32)
    return ce_launch<float>((float *)loss, (float *)dlogits, (const float *)logits, N, C, labels,
                            ldt, lstride, smoothing, bad, s);
  if (dt == RNK_F64)
    return ce_launch<double>((double *)loss, (double *)dlogits, (const double *)logits, N, C,
                             labels, ldt, lstride, smoothing, bad, s);
  return cudaErrorInvalidValue;
}
