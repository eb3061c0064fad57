/* norm_group.cu - layer and group normalization (core/ops/norm_group.c):
 * x viewed as (N,S,G,Cg), one block per (n,g) group for the statistics and
 * the input gradient (block sums in double, two passes: the mean, then the
 * centred variance), and ggamma and gbeta as column sums over the N*S rows
 * in two deterministic passes (row-block partials, then a fold per channel;
 * the scratch `part` comes from the caller: rnk_gnorm_part_doubles).
 * float32 and float64. */
#include <math.h>

#include "common.cuh"

using namespace rnk;

namespace {

constexpr int kNT = 256;

/* sum over the block; every thread gets it (sh: 32 doubles) */
__device__ double block_sum(double v, double *sh) {
  v = warp_sum(v);
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  double t = 0;
  for (int i = 0; i < (int)(blockDim.x >> 5); i++) t += sh[i];
  return t;
}

template <typename T>
__global__ void gnorm_fwd_kernel(T *y, double *mean, double *rstd, const T *x, const T *gamma,
                                 const T *beta, int64_t S, int64_t G, int64_t Cg, double eps) {
  __shared__ double sh[32];
  int64_t ng = blockIdx.x, n = ng / G, g = ng % G, C = G * Cg, M = S * Cg;
  const int64_t base = n * S * C + g * Cg;
  double s = 0;
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) s += (double)x[base + (k / Cg) * C + k % Cg];
  double mu = M ? block_sum(s, sh) / (double)M : 0;
  double v = 0;
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) {
    double d = (double)x[base + (k / Cg) * C + k % Cg] - mu;
    v += d * d;
  }
  double r = 1 / sqrt((M ? block_sum(v, sh) / (double)M : 0) + eps);
  if (threadIdx.x == 0) {
    mean[ng] = mu;
    rstd[ng] = r;
  }
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) {
    int64_t j = k % Cg, i = base + (k / Cg) * C + j, c = g * Cg + j;
    double o = ((double)x[i] - mu) * r;
    if (gamma) o *= (double)gamma[c];
    if (beta) o += (double)beta[c];
    y[i] = (T)o;
  }
}

template <typename T>
__global__ void gnorm_bwd_data_kernel(T *gx, const T *gy, const T *x, const T *gamma,
                                      const double *mean, const double *rstd, int64_t S,
                                      int64_t G, int64_t Cg) {
  __shared__ double sh[32];
  int64_t ng = blockIdx.x, n = ng / G, g = ng % G, C = G * Cg, M = S * Cg;
  const int64_t base = n * S * C + g * Cg;
  double mu = mean[ng], r = rstd[ng], sd = 0, sdx = 0;
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) {
    int64_t j = k % Cg, i = base + (k / Cg) * C + j;
    double d = (double)gy[i] * (gamma ? (double)gamma[g * Cg + j] : 1.0);
    sd += d;
    sdx += d * ((double)x[i] - mu) * r;
  }
  sd = M ? block_sum(sd, sh) / (double)M : 0;
  sdx = M ? block_sum(sdx, sh) / (double)M : 0;
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) {
    int64_t j = k % Cg, i = base + (k / Cg) * C + j;
    double d = (double)gy[i] * (gamma ? (double)gamma[g * Cg + j] : 1.0);
    gx[i] = (T)(r * (d - sd - ((double)x[i] - mu) * r * sdx));
  }
}

/* ggamma / gbeta in two passes (deterministic, no atomics): partial sums over
 * row blocks of rnk_bn_rows(R, C) rows (R = N*S), tiled as batch norm's
 * (kernels/nn.cu bn_partials_kernel: a thread block per row block and chunk
 * of up to 256 channels, coalesced reads, a shared-memory fold in a fixed
 * order): part[(b*2)*C + c] = sum gy * xhat, part[(b*2+1)*C + c] = sum gy;
 * then one block per channel folds the row blocks. */
template <typename T>
__global__ void __launch_bounds__(kNT)
gnorm_param_part_kernel(const T *gy, const T *x, const double *mean, const double *rstd, int64_t R,
                        int64_t S, int64_t G, int64_t Cg, int64_t rows, double *part) {
  __shared__ double sm[2][kNT];
  const int64_t C = G * Cg;
  const int CB = C < kNT ? (int)C : kNT, GR = kNT / CB;
  const int t = threadIdx.x, cl = t % CB, g = t / CB;
  const int64_t b = blockIdx.x, c = (int64_t)blockIdx.y * CB + cl;
  const int64_t r0 = b * rows, r1 = r0 + rows < R ? r0 + rows : R;
  double sg = 0, sb = 0;
  if (g < GR && c < C) {
    for (int64_t r = r0 + g; r < r1; r += GR) {
      const int64_t i = r * C + c, ng = (r / S) * G + c / Cg;
      const double d = (double)gy[i];
      sg += d * ((double)x[i] - mean[ng]) * rstd[ng];
      sb += d;
    }
  }
  sm[0][t] = sg;
  sm[1][t] = sb;
  __syncthreads();
  if (t < CB && c < C) {
    double a = 0, q = 0;
    for (int k = 0; k < GR; k++) {
      a += sm[0][k * CB + t];
      q += sm[1][k * CB + t];
    }
    part[(b * 2) * C + c] = a;
    part[(b * 2 + 1) * C + c] = q;
  }
}

template <typename T>
__global__ void gnorm_param_fold_kernel(T *ggamma, T *gbeta, const double *part, int64_t nblk,
                                        int64_t C) {
  __shared__ double sh[32];
  const int64_t c = blockIdx.x;
  double a = 0, q = 0;
  for (int64_t k = threadIdx.x; k < nblk; k += blockDim.x) {
    a += part[(k * 2) * C + c];
    q += part[(k * 2 + 1) * C + c];
  }
  a = block_sum(a, sh);
  q = block_sum(q, sh);
  if (threadIdx.x == 0) {
    if (ggamma) ggamma[c] = (T)a;
    if (gbeta) gbeta[c] = (T)q;
  }
}

template <typename T>
void gnorm_param(T *ggamma, T *gbeta, const T *gy, const T *x, const double *mean, const double *rstd,
                 int64_t N, int64_t S, int64_t G, int64_t Cg, double *part, cudaStream_t s) {
  const int64_t R = N * S, C = G * Cg, nblk = rnk_bn_nblk(R, C), cb = C < kNT ? C : kNT;
  dim3 pg((unsigned)nblk, (unsigned)((C + cb - 1) / cb));
  gnorm_param_part_kernel<T><<<pg, kNT, 0, s>>>(gy, x, mean, rstd, R, S, G, Cg, rnk_bn_rows(R, C), part);
  gnorm_param_fold_kernel<T><<<(unsigned)C, 128, 0, s>>>(ggamma, gbeta, part, nblk, C);
}

} // namespace

extern "C" cudaError_t rnk_gnorm_fwd(int dt, void *y, double *mean, double *rstd, const void *x,
                                     const void *gamma, const void *beta, int64_t N, int64_t S,
                                     int64_t G, int64_t Cg, double eps, cudaStream_t s) {
  if (N * G <= 0) return cudaSuccess;
  if (dt == RNK_F32)
    gnorm_fwd_kernel<float><<<(unsigned)(N * G), kNT, 0, s>>>(
        (float *)y, mean, rstd, (const float *)x, (const float *)gamma, (const float *)beta, S, G,
        Cg, eps);
  else if (dt == RNK_F64)
    gnorm_fwd_kernel<double><<<(unsigned)(N * G), kNT, 0, s>>>(
        (double *)y, mean, rstd, (const double *)x, (const double *)gamma, (const double *)beta,
        S, G, Cg, eps);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}

extern "C" cudaError_t rnk_gnorm_bwd(int dt, void *gx, void *ggamma, void *gbeta, const void *gy,
                                     const void *x, const void *gamma, const double *mean,
                                     const double *rstd, int64_t N, int64_t S, int64_t G,
                                     int64_t Cg, double *part, cudaStream_t s) {
  if (N * G <= 0) return cudaSuccess;
  if (dt == RNK_F32) {
    if (gx)
      gnorm_bwd_data_kernel<float><<<(unsigned)(N * G), kNT, 0, s>>>(
          (float *)gx, (const float *)gy, (const float *)x, (const float *)gamma, mean, rstd, S,
          G, Cg);
    if (ggamma || gbeta)
      gnorm_param<float>((float *)ggamma, (float *)gbeta, (const float *)gy, (const float *)x, mean, rstd,
                         N, S, G, Cg, part, s);
  } else if (dt == RNK_F64) {
    if (gx)
      gnorm_bwd_data_kernel<double><<<(unsigned)(N * G), kNT, 0, s>>>(
          (double *)gx, (const double *)gy, (const double *)x, (const double *)gamma, mean, rstd,
          S, G, Cg);
    if (ggamma || gbeta)
      gnorm_param<double>((double *)ggamma, (double *)gbeta, (const double *)gy, (const double *)x, mean,
                          rstd, N, S, G, Cg, part, s);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}
