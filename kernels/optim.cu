/* optim.cu - the multi-tensor optimizer step in one launch: every tensor of
 * a parameter group is cut into chunks of RNK_MT_CHUNK elements, one block
 * per chunk; a block finds its tensor by binary search in the table of
 * first blocks (device memory, written by core/cuda/optim.c) and runs
 * core/optim_math.h's element update, the same source as the CPU twin
 * (core/ops/optim.c). float32 and float64. */
#include "common.cuh"

#define RNK_MT_THREADS 256

template <typename T> struct mt;
template <> struct mt<float> {
  typedef rn_mt_coef_f coef;
  static __device__ coef make(const rn_mt_hp *h, const rn_mt_seg *s) { return rn_mt_coef_make_f(h, s); }
  static __device__ void elem(const rn_mt_hp *h, const coef *c, const rn_mt_seg &s, int64_t i) {
    rn_mt_elem_f(h, c, (float *)s.p, (const float *)s.g, (float *)s.s1, (float *)s.s2,
                 (float *)s.s3, i);
  }
};
template <> struct mt<double> {
  typedef rn_mt_coef_d coef;
  static __device__ coef make(const rn_mt_hp *h, const rn_mt_seg *s) { return rn_mt_coef_make_d(h, s); }
  static __device__ void elem(const rn_mt_hp *h, const coef *c, const rn_mt_seg &s, int64_t i) {
    rn_mt_elem_d(h, c, (double *)s.p, (const double *)s.g, (double *)s.s1, (double *)s.s2,
                 (double *)s.s3, i);
  }
};

/* blk0[j]: the first block of segment j (blk0[nseg]: the total) */
template <typename T>
__global__ void mt_kernel(rn_mt_hp hp, const rn_mt_seg *segs, const int64_t *blk0, int nseg) {
  int64_t b = blockIdx.x;
  int lo = 0, hi = nseg - 1;
  while (lo < hi) { /* the last segment whose first block is <= b (skips empty ones) */
    int mid = (lo + hi + 1) / 2;
    if (blk0[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  const rn_mt_seg s = segs[lo];
  int64_t start = (b - blk0[lo]) * RNK_MT_CHUNK, end = start + RNK_MT_CHUNK;
  if (end > s.n) end = s.n;
  const typename mt<T>::coef c = mt<T>::make(&hp, &s);
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) mt<T>::elem(&hp, &c, s, i);
}

extern "C" cudaError_t rnk_optim_multi_step(int dt, const rn_mt_hp *hp, const rn_mt_seg *segs,
                                            const int64_t *blk0, int nseg, int64_t nblocks,
                                            cudaStream_t s) {
  if (nseg <= 0 || nblocks <= 0) return cudaSuccess;
  if (nblocks > 0x7fffffff) return cudaErrorInvalidValue;
  if (dt == RNK_F32)
    mt_kernel<float><<<(unsigned)nblocks, RNK_MT_THREADS, 0, s>>>(*hp, segs, blk0, nseg);
  else if (dt == RNK_F64)
    mt_kernel<double><<<(unsigned)nblocks, RNK_MT_THREADS, 0, s>>>(*hp, segs, blk0, nseg);
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}
