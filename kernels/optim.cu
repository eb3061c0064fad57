/* optim.cu - the multi-tensor optimizer step in one launch: every tensor of
 * a parameter group is cut into chunks of RNK_MT_CHUNK elements, one block
 * per chunk; a block finds its tensor by binary search in the table of
 * first blocks (device memory, written by core/cuda/optim.c) and runs
 * core/optim_math.h's element update, the same source as the CPU twin
 * (core/ops/optim.c). float32 and float64. Also Keras' L2 penalties of the
 * same tensors in one launch (the last block sums the partials). */
#include <string.h>

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

/* the segment of block b: the last whose first block is <= b */
static __device__ int seg_of(const int64_t *blk0, int nseg, int64_t b) {
  int lo = 0, hi = nseg - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (blk0[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/* block sum of v over RNK_MT_THREADS threads (every thread gets it) */
static __device__ double block_sum(double v, double *sh) {
  v = rnk::warp_sum(v);
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (lane == 0) sh[w] = v;
  __syncthreads();
  double t = 0;
  if (threadIdx.x < 32) {
    t = threadIdx.x < RNK_MT_THREADS / 32 ? sh[threadIdx.x] : 0;
    t = rnk::warp_sum(t);
    if (threadIdx.x == 0) sh[0] = t;
  }
  __syncthreads();
  t = sh[0];
  __syncthreads();
  return t;
}

template <typename T>
__global__ void l2_kernel(T *out, const rn_mt_seg *segs, const int64_t *blk0, int nseg,
                          double *part, unsigned *count) {
  __shared__ double sh[RNK_MT_THREADS / 32];
  __shared__ bool last;
  int64_t b = blockIdx.x;
  const rn_mt_seg s = segs[seg_of(blk0, nseg, b)];
  int64_t start = (b - blk0[seg_of(blk0, nseg, b)]) * RNK_MT_CHUNK, end = start + RNK_MT_CHUNK;
  if (end > s.n) end = s.n;
  const T *p = (const T *)s.p;
  double acc = 0;
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) acc += (double)p[i] * p[i];
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) {
    part[b] = s.l2 * acc;
    __threadfence();
    last = atomicAdd(count, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  double t = 0; /* fixed order: thread k sums blocks k, k+256, ...; then the tree */
  for (int64_t j = threadIdx.x; j < (int64_t)gridDim.x; j += blockDim.x) t += ((volatile double *)part)[j];
  t = block_sum(t, sh);
  if (threadIdx.x == 0) {
    *out = (T)t;
    *count = 0;
  }
}

extern "C" cudaError_t rnk_l2_penalty_multi(int dt, void *out, const rn_mt_seg *segs,
                                            const int64_t *blk0, int nseg, int64_t nblocks,
                                            double *part, unsigned *count, cudaStream_t s) {
  if (nseg <= 0 || nblocks <= 0 || nblocks > 0x7fffffff) return cudaErrorInvalidValue;
  if (dt == RNK_F32)
    l2_kernel<float><<<(unsigned)nblocks, RNK_MT_THREADS, 0, s>>>((float *)out, segs, blk0, nseg,
                                                                   part, count);
  else if (dt == RNK_F64)
    l2_kernel<double><<<(unsigned)nblocks, RNK_MT_THREADS, 0, s>>>((double *)out, segs, blk0,
                                                                    nseg, part, count);
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}

#define RNK_POKE_BYTES 2048
struct poke_buf {
  unsigned char b[RNK_POKE_BYTES];
};

__global__ void poke_kernel(unsigned char *dst, poke_buf src, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src.b[i];
}

extern "C" cudaError_t rnk_poke(void *dst, const void *src, size_t n, cudaStream_t s) {
  for (size_t off = 0; off < n; off += RNK_POKE_BYTES) {
    size_t k = n - off < RNK_POKE_BYTES ? n - off : RNK_POKE_BYTES;
    poke_buf pb;
    memcpy(pb.b, (const unsigned char *)src + off, k);
    poke_kernel<<<1, 256, 0, s>>>((unsigned char *)dst + off, pb, (int)k);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}
