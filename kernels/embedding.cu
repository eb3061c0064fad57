/* embedding.cu - gather rows of an embedding table (one thread per output
 * element) and the deterministic scatter-add of the backward: one thread per
 * table column walks every index in order and adds into its column, so
 * duplicate indices accumulate in a fixed order (no atomics). Indices are
 * range-checked by the front end (core/ops/embedding.c). */
#include "common.cuh"

using namespace rnk;

namespace {

template <typename T, typename I>
__global__ void emb_fwd(T *y, const I *idx, const T *w, int64_t n, int64_t D) {
  const int64_t total = n * D, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += step)
    y[k] = w[(int64_t)idx[k / D] * D + k % D];
}

template <typename T, typename I>
__global__ void emb_bwd(T *gw, const T *gy, const I *idx, int64_t n, int64_t D) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t d = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; d < D; d += step)
    for (int64_t i = 0; i < n; i++) gw[(int64_t)idx[i] * D + d] += gy[i * D + d];
}

template <typename T>
cudaError_t fwd(T *y, const void *idx, int idt, const T *w, int64_t n, int64_t D, cudaStream_t s) {
  unsigned b = blocks_for(n * D, kThreads);
  if (idt == RNK_I32) emb_fwd<T, int32_t><<<b, kThreads, 0, s>>>(y, (const int32_t *)idx, w, n, D);
  else emb_fwd<T, int64_t><<<b, kThreads, 0, s>>>(y, (const int64_t *)idx, w, n, D);
  return cudaGetLastError();
}

template <typename T>
cudaError_t bwd(T *gw, const T *gy, const void *idx, int idt, int64_t n, int64_t D, cudaStream_t s) {
  unsigned b = blocks_for(D, 128);
  if (idt == RNK_I32) emb_bwd<T, int32_t><<<b, 128, 0, s>>>(gw, gy, (const int32_t *)idx, n, D);
  else emb_bwd<T, int64_t><<<b, 128, 0, s>>>(gw, gy, (const int64_t *)idx, n, D);
  return cudaGetLastError();
}

} // namespace

extern "C" cudaError_t rnk_embedding_fwd(int dt, void *y, const void *idx, int idt, const void *w,
                                         int64_t n, int64_t D, cudaStream_t s) {
  if (n * D <= 0) return cudaSuccess;
  if (dt == RNK_F32) return fwd((float *)y, idx, idt, (const float *)w, n, D, s);
  if (dt == RNK_F64) return fwd((double *)y, idx, idt, (const double *)w, n, D, s);
  /* a gather moves bits: bfloat16 and float16 rows as uint16_t */
  if (dt == RNK_BF16 || dt == RNK_F16) return fwd((uint16_t *)y, idx, idt, (const uint16_t *)w, n, D, s);
  return cudaErrorInvalidValue;
}

extern "C" cudaError_t rnk_embedding_bwd(int dt, void *gw, const void *gy, const void *idx, int idt,
                                         int64_t n, int64_t D, cudaStream_t s) {
  if (n * D <= 0) return cudaSuccess;
  if (dt == RNK_F32) return bwd((float *)gw, (const float *)gy, idx, idt, n, D, s);
  if (dt == RNK_F64) return bwd((double *)gw, (const double *)gy, idx, idt, n, D, s);
  return cudaErrorInvalidValue;
}
