/* common.cuh - device helpers shared by kernels/ (*.cu): the 16-bit float
 * types and every dtype's load/store as double (the same conversions as
 * core/dtype.c), strided offsets from an rnk_geom, grid sizing, and warp
 * reductions. CUDA C++ only; the host side sees kernels.h alone. */
#ifndef RN_KERNELS_COMMON_CUH
#define RN_KERNELS_COMMON_CUH

#include <stdint.h>

#include <cuda_runtime.h>

#include "kernels.h"

namespace rnk {

/* 16-bit floats as raw bits, converted exactly as core/dtype.c does. */
struct bf16 { uint16_t b; };
struct f16 { uint16_t b; };

__device__ __forceinline__ float bf16_to_f32(uint16_t h) {
  return __uint_as_float((uint32_t)h << 16);
}

__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

__device__ __forceinline__ uint16_t f32_to_f16(float f) {
  uint32_t u = __float_as_uint(f);
  uint32_t sign = (u >> 16) & 0x8000u, mant = u & 0x7fffffu;
  int32_t exp = (int32_t)((u >> 23) & 0xff);
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0)); /* inf/nan */
  exp = exp - 127 + 15;
  if (exp >= 0x1f) return (uint16_t)(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return (uint16_t)sign;
    mant |= 0x800000u;
    uint32_t shift = (uint32_t)(14 - exp);
    uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = sign | ((uint32_t)exp << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++;
  return (uint16_t)half;
}

__device__ __forceinline__ float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  if (exp == 0) {
    float f = ldexpf((float)mant, -24);
    return sign ? -f : f;
  }
  uint32_t u = exp == 0x1f ? (sign | 0x7f800000u | (mant << 13))
                           : (sign | ((exp - 15 + 127) << 23) | (mant << 13));
  return __uint_as_float(u);
}

/* Saturating integer stores (NaN stores 0), as rn_store. */
__device__ __forceinline__ double clampd(double v, double lo, double hi) {
  if (v != v) return 0;
  return v < lo ? lo : v > hi ? hi : v;
}

/* to_d(v): an element as double; from_d<T>(v): a double as an element. */
__device__ __forceinline__ double to_d(float v) { return v; }
__device__ __forceinline__ double to_d(double v) { return v; }
__device__ __forceinline__ double to_d(uint8_t v) { return v; }
__device__ __forceinline__ double to_d(int32_t v) { return v; }
__device__ __forceinline__ double to_d(int64_t v) { return (double)v; }
__device__ __forceinline__ double to_d(bf16 v) { return bf16_to_f32(v.b); }
__device__ __forceinline__ double to_d(f16 v) { return f16_to_f32(v.b); }

template <typename T> __device__ __forceinline__ T from_d(double v);
template <> __device__ __forceinline__ float from_d<float>(double v) { return (float)v; }
template <> __device__ __forceinline__ double from_d<double>(double v) { return v; }
template <> __device__ __forceinline__ uint8_t from_d<uint8_t>(double v) {
  return (uint8_t)clampd(v, 0, 255);
}
template <> __device__ __forceinline__ int32_t from_d<int32_t>(double v) {
  return (int32_t)clampd(v, -2147483648.0, 2147483647.0);
}
template <> __device__ __forceinline__ int64_t from_d<int64_t>(double v) {
  return (int64_t)clampd(v, -9223372036854775808.0, 9223372036854774784.0);
}
template <> __device__ __forceinline__ bf16 from_d<bf16>(double v) {
  bf16 r;
  r.b = f32_to_bf16((float)v);
  return r;
}
template <> __device__ __forceinline__ f16 from_d<f16>(double v) {
  f16 r;
  r.b = f32_to_f16((float)v);
  return r;
}

/* Element i of p (dtype dt, run-time) as double, and a store into it. */
__device__ __forceinline__ double load_any(const void *p, int dt, int64_t i) {
  switch (dt) {
  case RNK_F32: return to_d(((const float *)p)[i]);
  case RNK_F64: return ((const double *)p)[i];
  case RNK_U8: return to_d(((const uint8_t *)p)[i]);
  case RNK_I32: return to_d(((const int32_t *)p)[i]);
  case RNK_I64: return to_d(((const int64_t *)p)[i]);
  case RNK_BF16: return to_d(((const bf16 *)p)[i]);
  case RNK_F16: return to_d(((const f16 *)p)[i]);
  default: return 0;
  }
}

__device__ __forceinline__ void store_any(void *p, int dt, int64_t i, double v) {
  switch (dt) {
  case RNK_F32: ((float *)p)[i] = from_d<float>(v); break;
  case RNK_F64: ((double *)p)[i] = v; break;
  case RNK_U8: ((uint8_t *)p)[i] = from_d<uint8_t>(v); break;
  case RNK_I32: ((int32_t *)p)[i] = from_d<int32_t>(v); break;
  case RNK_I64: ((int64_t *)p)[i] = from_d<int64_t>(v); break;
  case RNK_BF16: ((bf16 *)p)[i] = from_d<bf16>(v); break;
  case RNK_F16: ((f16 *)p)[i] = from_d<f16>(v); break;
  default: break;
  }
}

/* Offsets of element i in each of the first K operands of g. */
template <int K, typename I>
__device__ __forceinline__ void geom_offsets(const rnk_geom &g, I i, I (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; k++) off[k] = 0;
  for (int d = g.ndim - 1; d >= 0; d--) {
    I s = (I)g.shape[d];
    I c = d ? i % s : i;
    i = d ? i / s : 0;
#pragma unroll
    for (int k = 0; k < K; k++) off[k] += c * (I)g.stride[k][d];
  }
}

constexpr int kThreads = 256;     /* threads per block of the grid-stride kernels */
constexpr unsigned kMaxBlocks = 8192;

/* Blocks for n work items at `per_block` items a block, at least 1. */
static inline unsigned blocks_for(int64_t n, int64_t per_block) {
  int64_t b = (n + per_block - 1) / per_block;
  return b < 1 ? 1u : b > (int64_t)kMaxBlocks ? kMaxBlocks : (unsigned)b;
}

/* Warp reductions over all 32 lanes (every lane gets the result). */
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* max ignoring NaN, as the CPU's `m = x > m ? x : m` scan */
template <typename T> __device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

} // namespace rnk

/* Runs the statements (which must return) with T bound to the element type
 * of dtype code dt. */
#define RNK_DISPATCH(dt, T, ...)                            \
  switch (dt) {                                             \
  case RNK_F32: { typedef float T; __VA_ARGS__; }           \
  case RNK_F64: { typedef double T; __VA_ARGS__; }          \
  case RNK_U8: { typedef uint8_t T; __VA_ARGS__; }          \
  case RNK_I32: { typedef int32_t T; __VA_ARGS__; }         \
  case RNK_I64: { typedef int64_t T; __VA_ARGS__; }         \
  case RNK_BF16: { typedef rnk::bf16 T; __VA_ARGS__; }      \
  case RNK_F16: { typedef rnk::f16 T; __VA_ARGS__; }        \
  default: return cudaErrorInvalidValue;                    \
  }

#endif
