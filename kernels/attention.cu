/* attention.cu - fused scaled dot-product attention (core/ops/attention.c):
 * one warp per query row walks the keys with an online softmax (running max
 * and sum), each lane holding D/32 and Dv/32 of the row's values, so no
 * Tq x Tk matrix is ever stored. The backward recomputes the probabilities
 * from the saved log-sum-exp: one warp per query row for dq (and D_i =
 * dO_i . O_i), one warp per key row for dk and dv (no atomics:
 * deterministic). Head dims up to kMaxD; float32 and float64, dot products
 * and sums in double. */
#include <math.h>

#include "common.cuh"

using namespace rnk;

namespace {

constexpr int kMaxD = 256;         /* D and Dv, at most */
constexpr int kPer = kMaxD / 32;   /* values per lane */
constexpr int kWarps = 4;          /* warps (rows) per block */

struct Geo {
  int64_t B, Tq, Tk, D, Dv, msb, msq, msk;
  double scale;
  int causal;
  const uint8_t *mask;
};

__device__ __forceinline__ bool attends(const Geo &g, int64_t b, int64_t i, int64_t j) {
  if (g.causal && j > i) return false;
  return !g.mask || g.mask[b * g.msb + i * g.msq + j * g.msk] != 0;
}

/* dot of two rows of n values, across the warp (every lane gets it) */
template <typename T>
__device__ __forceinline__ double wdot(const T *a, const T *b, int64_t n, int lane) {
  double s = 0;
  for (int64_t d = lane; d < n; d += 32) s += (double)a[d] * (double)b[d];
  return warp_sum(s);
}

template <typename T>
__global__ void sdpa_fwd_kernel(T *o, double *lse, const T *q, const T *k, const T *v, Geo g) {
  int lane = threadIdx.x & 31;
  int64_t r = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (r >= g.B * g.Tq) return;
  int64_t b = r / g.Tq, i = r % g.Tq;
  double acc[kPer];
#pragma unroll
  for (int t = 0; t < kPer; t++) acc[t] = 0;
  double mx = -INFINITY, l = 0;
  const T *qr = q + r * g.D;
  for (int64_t j = 0; j < g.Tk; j++) {
    if (!attends(g, b, i, j)) continue;
    const T *kr = k + (b * g.Tk + j) * g.D, *vr = v + (b * g.Tk + j) * g.Dv;
    double s = g.scale * wdot(qr, kr, g.D, lane);
    if (s > mx) {
      double c = exp(mx - s);
      l *= c;
#pragma unroll
      for (int t = 0; t < kPer; t++) acc[t] *= c;
      mx = s;
    }
    double e = exp(s - mx);
    l += e;
#pragma unroll
    for (int t = 0; t < kPer; t++) {
      int64_t d = lane + 32 * t;
      if (d < g.Dv) acc[t] += e * (double)vr[d];
    }
  }
#pragma unroll
  for (int t = 0; t < kPer; t++) {
    int64_t d = lane + 32 * t;
    if (d < g.Dv) o[r * g.Dv + d] = (T)(l > 0 ? acc[t] / l : 0.0);
  }
  if (lane == 0) lse[r] = l > 0 ? mx + log(l) : -INFINITY;
}

/* pass 1: D_i and dq_i */
template <typename T>
__global__ void sdpa_bwd_q_kernel(T *gq, double *Di, const T *go, const T *q, const T *k,
                                  const T *v, const T *o, const double *lse, Geo g) {
  int lane = threadIdx.x & 31;
  int64_t r = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (r >= g.B * g.Tq) return;
  int64_t b = r / g.Tq, i = r % g.Tq;
  double di = wdot(go + r * g.Dv, o + r * g.Dv, g.Dv, lane);
  if (lane == 0) Di[r] = di;
  double acc[kPer];
#pragma unroll
  for (int t = 0; t < kPer; t++) acc[t] = 0;
  if (lse[r] > -INFINITY)
    for (int64_t j = 0; j < g.Tk; j++) {
      if (!attends(g, b, i, j)) continue;
      int64_t kr = b * g.Tk + j;
      double P = exp(g.scale * wdot(q + r * g.D, k + kr * g.D, g.D, lane) - lse[r]);
      double dS = P * (wdot(go + r * g.Dv, v + kr * g.Dv, g.Dv, lane) - di);
#pragma unroll
      for (int t = 0; t < kPer; t++) {
        int64_t d = lane + 32 * t;
        if (d < g.D) acc[t] += dS * (double)k[kr * g.D + d];
      }
    }
#pragma unroll
  for (int t = 0; t < kPer; t++) {
    int64_t d = lane + 32 * t;
    if (d < g.D) gq[r * g.D + d] = (T)(g.scale * acc[t]);
  }
}

/* pass 2: dk_j and dv_j */
template <typename T>
__global__ void sdpa_bwd_kv_kernel(T *gk, T *gv, const double *Di, const T *go, const T *q,
                                   const T *k, const T *v, const double *lse, Geo g) {
  int lane = threadIdx.x & 31;
  int64_t kr = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (kr >= g.B * g.Tk) return;
  int64_t b = kr / g.Tk, j = kr % g.Tk;
  double ak[kPer], av[kPer];
#pragma unroll
  for (int t = 0; t < kPer; t++) ak[t] = av[t] = 0;
  for (int64_t i = g.causal ? j : 0; i < g.Tq; i++) {
    int64_t r = b * g.Tq + i;
    if (!(lse[r] > -INFINITY) || !attends(g, b, i, j)) continue;
    double P = exp(g.scale * wdot(q + r * g.D, k + kr * g.D, g.D, lane) - lse[r]);
    double dS = P * (wdot(go + r * g.Dv, v + kr * g.Dv, g.Dv, lane) - Di[r]);
#pragma unroll
    for (int t = 0; t < kPer; t++) {
      int64_t d = lane + 32 * t;
      if (d < g.D) ak[t] += dS * (double)q[r * g.D + d];
      if (d < g.Dv) av[t] += P * (double)go[r * g.Dv + d];
    }
  }
#pragma unroll
  for (int t = 0; t < kPer; t++) {
    int64_t d = lane + 32 * t;
    if (d < g.D) gk[kr * g.D + d] = (T)(g.scale * ak[t]);
    if (d < g.Dv) gv[kr * g.Dv + d] = (T)av[t];
  }
}

unsigned rows_blocks(int64_t rows) { return (unsigned)((rows + kWarps - 1) / kWarps); }

} // namespace

static Geo geo(const rnk_sdpa_geom &s) {
  Geo g = {s.B, s.Tq, s.Tk, s.D, s.Dv, s.msb, s.msq, s.msk, s.scale, s.causal, s.mask};
  return g;
}

extern "C" cudaError_t rnk_sdpa_fwd(int dt, rnk_sdpa_geom s, void *o, double *lse, const void *q,
                                    const void *k, const void *v, cudaStream_t st) {
  if (s.D > kMaxD || s.Dv > kMaxD) return cudaErrorInvalidValue;
  if (s.B * s.Tq <= 0) return cudaSuccess;
  Geo g = geo(s);
  unsigned nb = rows_blocks(s.B * s.Tq);
  if (dt == RNK_F32)
    sdpa_fwd_kernel<float><<<nb, 32 * kWarps, 0, st>>>((float *)o, lse, (const float *)q,
                                                       (const float *)k, (const float *)v, g);
  else if (dt == RNK_F64)
    sdpa_fwd_kernel<double><<<nb, 32 * kWarps, 0, st>>>((double *)o, lse, (const double *)q,
                                                        (const double *)k, (const double *)v, g);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_sdpa_bwd(int dt, rnk_sdpa_geom s, void *gq, void *gk, void *gv,
                                    double *Di, const void *go, const void *q, const void *k,
                                    const void *v, const void *o, const double *lse,
                                    cudaStream_t st) {
  if (s.D > kMaxD || s.Dv > kMaxD) return cudaErrorInvalidValue;
  if (s.B * (s.Tq + s.Tk) <= 0) return cudaSuccess;
  Geo g = geo(s);
  unsigned nq = rows_blocks(s.B * s.Tq), nk = rows_blocks(s.B * s.Tk);
  if (dt == RNK_F32) {
    if (s.Tq > 0)
      sdpa_bwd_q_kernel<float><<<nq, 32 * kWarps, 0, st>>>(
          (float *)gq, Di, (const float *)go, (const float *)q, (const float *)k,
          (const float *)v, (const float *)o, lse, g);
    if (s.Tk > 0)
      sdpa_bwd_kv_kernel<float><<<nk, 32 * kWarps, 0, st>>>(
          (float *)gk, (float *)gv, Di, (const float *)go, (const float *)q, (const float *)k,
          (const float *)v, lse, g);
  } else if (dt == RNK_F64) {
    if (s.Tq > 0)
      sdpa_bwd_q_kernel<double><<<nq, 32 * kWarps, 0, st>>>(
          (double *)gq, Di, (const double *)go, (const double *)q, (const double *)k,
          (const double *)v, (const double *)o, lse, g);
    if (s.Tk > 0)
      sdpa_bwd_kv_kernel<double><<<nk, 32 * kWarps, 0, st>>>(
          (double *)gk, (double *)gv, Di, (const double *)go, (const double *)q,
          (const double *)k, (const double *)v, lse, g);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}
