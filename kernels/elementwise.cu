/* elementwise.cu - CUDA kernels for copy/cast, fill, unary (+ backward),
 * binary, axpy over strided operands (stride 0 = broadcast), and the
 * beta-scaling used by gemm when K == 0.
 *
 * One grid-stride kernel template (ew_kernel) walks the n elements of an
 * rnk_geom; a small functor per op turns each element's operand offsets into
 * the work. Dense operands (g.contig) skip the index arithmetic; otherwise
 * the offsets come from div/mod over up to 8 dims, in 32-bit math when
 * everything fits (g.idx32). Semantics follow core/cpu/elementwise.c: float32
 * math in float, float64 in double, other dtypes through double with
 * saturating / round-to-nearest-even stores; integer division truncates and
 * gives 0 for a zero divisor.
 */
#include <math.h>

#include "common.cuh"
#include "unary_math.cuh"

using namespace rnk;

namespace {

/* ---- the walker ---------------------------------------------------------- */

template <int K, typename I, typename F>
__global__ void ew_kernel(const rnk_geom g, const F f) {
  const I n = (I)g.n;
  const I step = (I)gridDim.x * (I)blockDim.x;
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < n; i += step) {
    I off[K];
    if (g.contig) {
#pragma unroll
      for (int k = 0; k < K; k++) off[k] = i;
    } else {
      geom_offsets<K, I>(g, i, off);
    }
    f(off);
  }
}

template <int K, typename F>
cudaError_t launch(const rnk_geom &g, const F &f, cudaStream_t s) {
  if (g.n <= 0) return cudaSuccess;
  unsigned b = blocks_for(g.n, kThreads);
  if (g.idx32) ew_kernel<K, int32_t, F><<<b, kThreads, 0, s>>>(g, f);
  else ew_kernel<K, int64_t, F><<<b, kThreads, 0, s>>>(g, f);
  return cudaGetLastError();
}

/* ---- copy and fill ------------------------------------------------------- */

/* same dtype: move the bits */
template <typename U> struct CopyRaw {
  U *y;
  const U *x;
  template <typename I> __device__ void operator()(const I (&o)[2]) const { y[o[0]] = x[o[1]]; }
};

template <typename TY, typename TX> struct CopyCast {
  TY *y;
  const TX *x;
  template <typename I> __device__ void operator()(const I (&o)[2]) const {
    y[o[0]] = (TY)x[o[1]];
  }
};

/* float32 <-> bfloat16 without the double round trip (the same bits as
 * CopyAny: round to nearest even, NaN kept quiet); cuDNN's bf16 math
 * (core/cuda/cudnn.c) converts whole buffers with these */
struct CopyF32ToBF16 {
  uint16_t *y;
  const float *x;
  template <typename I> __device__ void operator()(const I (&o)[2]) const {
    y[o[0]] = f32_to_bf16(x[o[1]]);
  }
};

struct CopyBF16ToF32 {
  float *y;
  const uint16_t *x;
  template <typename I> __device__ void operator()(const I (&o)[2]) const {
    y[o[0]] = bf16_to_f32(x[o[1]]);
  }
};

/* any pair of dtypes through double (as rn_load / rn_store) */
struct CopyAny {
  void *y;
  const void *x;
  int ydt, xdt;
  template <typename I> __device__ void operator()(const I (&o)[2]) const {
    store_any(y, ydt, (int64_t)o[0], load_any(x, xdt, (int64_t)o[1]));
  }
};

template <typename U> struct FillRaw {
  U *y;
  U v;
  template <typename I> __device__ void operator()(const I (&o)[1]) const { y[o[0]] = v; }
};

size_t dtype_size(int dt) {
  switch (dt) {
  case RNK_F32: case RNK_I32: return 4;
  case RNK_F64: case RNK_I64: return 8;
  case RNK_U8: return 1;
  case RNK_BF16: case RNK_F16: return 2;
  default: return 0;
  }
}

/* ---- unary --------------------------------------------------------------- */

/* float and double compute in their own type; the rest through double */
/* (formulas: unary_math.cuh) */
template <typename T> struct Unary {
  T *y;
  const T *x;
  int op;
  double a, b;
  template <typename I> __device__ void operator()(const I (&o)[2]) const {
    y[o[0]] = from_d<T>(un<double>(op, to_d(x[o[1]]), a, b));
  }
};
template <> struct Unary<float> {
  float *y;
  const float *x;
  int op;
  double a, b;
  template <typename I> __device__ void operator()(const I (&o)[2]) const {
    y[o[0]] = un<float>(op, x[o[1]], (float)a, (float)b);
  }
};
template <> struct Unary<double> {
  double *y;
  const double *x;
  int op;
  double a, b;
  template <typename I> __device__ void operator()(const I (&o)[2]) const {
    y[o[0]] = un<double>(op, x[o[1]], a, b);
  }
};

template <typename T> struct UnaryBackward {
  T *gx;
  const T *gy, *x, *y;
  int op;
  T a, b;
  template <typename I> __device__ void operator()(const I (&o)[4]) const {
    gx[o[0]] = dun<T>(op, gy[o[1]], x[o[2]], y[o[3]], a, b);
  }
};

/* ---- binary -------------------------------------------------------------- */

__device__ __forceinline__ double bin(int op, double a, double b) {
  switch (op) {
  case RNK_ADD: return a + b;
  case RNK_SUB: return a - b;
  case RNK_MUL: return a * b;
  case RNK_DIV: return a / b;
  case RNK_POW: return pow(a, b);
  case RNK_MAXIMUM: return a >= b ? a : b;
  case RNK_MINIMUM: return a <= b ? a : b;
  case RNK_EQ: return a == b;
  case RNK_NE: return a != b;
  case RNK_LT: return a < b;
  case RNK_LE: return a <= b;
  case RNK_GT: return a > b;
  case RNK_GE: return a >= b;
  default: return 0;
  }
}

__device__ __forceinline__ float bin(int op, float a, float b) {
  switch (op) {
  case RNK_ADD: return a + b;
  case RNK_SUB: return a - b;
  case RNK_MUL: return a * b;
  case RNK_DIV: return a / b;
  case RNK_POW: return powf(a, b);
  default: return (float)bin(op, (double)a, (double)b);
  }
}

template <typename T> struct Binary {
  T *y;
  const T *a, *b;
  int op;
  bool integer;
  template <typename I> __device__ void operator()(const I (&o)[3]) const {
    double av = to_d(a[o[1]]), bv = to_d(b[o[2]]);
    double v = bin(op, av, bv);
    if (integer && op == RNK_DIV) v = bv == 0 ? 0 : trunc(v);
    y[o[0]] = from_d<T>(v);
  }
};
template <> struct Binary<float> {
  float *y;
  const float *a, *b;
  int op;
  bool integer;
  template <typename I> __device__ void operator()(const I (&o)[3]) const {
    y[o[0]] = bin(op, a[o[1]], b[o[2]]);
  }
};
template <> struct Binary<double> {
  double *y;
  const double *a, *b;
  int op;
  bool integer;
  template <typename I> __device__ void operator()(const I (&o)[3]) const {
    y[o[0]] = bin(op, a[o[1]], b[o[2]]);
  }
};

/* ---- axpy ---------------------------------------------------------------- */

template <typename T> struct Axpy {
  T *y;
  const T *x;
  T alpha;
  template <typename I> __device__ void operator()(const I (&o)[2]) const {
    y[o[0]] += alpha * x[o[1]];
  }
};

struct AxpyAny {
  void *y;
  const void *x;
  double alpha;
  int ydt, xdt;
  template <typename I> __device__ void operator()(const I (&o)[2]) const {
    int64_t iy = (int64_t)o[0];
    store_any(y, ydt, iy, load_any(y, ydt, iy) + alpha * load_any(x, xdt, (int64_t)o[1]));
  }
};

/* ---- gemm with K == 0 ---------------------------------------------------- */

template <typename T>
__global__ void scale2d_kernel(T *c, int64_t M, int64_t N, int64_t ldc, T beta) {
  const int64_t n = M * N, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    T *p = c + (i / N) * ldc + i % N;
    *p = beta == 0 ? (T)0 : beta * *p;
  }
}


} // namespace

/* ---- launchers ----------------------------------------------------------- */

extern "C" cudaError_t rnk_copy(rnk_geom g, void *y, int ydt, const void *x, int xdt,
                                cudaStream_t s) {
  if (ydt == xdt) {
    switch (dtype_size(ydt)) {
    case 1: return launch<2>(g, CopyRaw<uint8_t>{(uint8_t *)y, (const uint8_t *)x}, s);
    case 2: return launch<2>(g, CopyRaw<uint16_t>{(uint16_t *)y, (const uint16_t *)x}, s);
    case 4: return launch<2>(g, CopyRaw<uint32_t>{(uint32_t *)y, (const uint32_t *)x}, s);
    case 8: return launch<2>(g, CopyRaw<uint64_t>{(uint64_t *)y, (const uint64_t *)x}, s);
    default: return cudaErrorInvalidValue;
    }
  }
  if (ydt == RNK_F32 && xdt == RNK_F64)
    return launch<2>(g, CopyCast<float, double>{(float *)y, (const double *)x}, s);
  if (ydt == RNK_F64 && xdt == RNK_F32)
    return launch<2>(g, CopyCast<double, float>{(double *)y, (const float *)x}, s);
  if (ydt == RNK_BF16 && xdt == RNK_F32)
    return launch<2>(g, CopyF32ToBF16{(uint16_t *)y, (const float *)x}, s);
  if (ydt == RNK_F32 && xdt == RNK_BF16)
    return launch<2>(g, CopyBF16ToF32{(float *)y, (const uint16_t *)x}, s);
  if (dtype_size(ydt) == 0 || dtype_size(xdt) == 0) return cudaErrorInvalidValue;
  return launch<2>(g, CopyAny{y, x, ydt, xdt}, s);
}

extern "C" cudaError_t rnk_fill(rnk_geom g, void *y, int esize, uint64_t bits, cudaStream_t s) {
  switch (esize) {
  case 1: return launch<1>(g, FillRaw<uint8_t>{(uint8_t *)y, (uint8_t)bits}, s);
  case 2: return launch<1>(g, FillRaw<uint16_t>{(uint16_t *)y, (uint16_t)bits}, s);
  case 4: return launch<1>(g, FillRaw<uint32_t>{(uint32_t *)y, (uint32_t)bits}, s);
  case 8: return launch<1>(g, FillRaw<uint64_t>{(uint64_t *)y, bits}, s);
  default: return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t rnk_unary(rnk_geom g, int op, double a, double b, int dt, void *y,
                                 const void *x, cudaStream_t s) {
  RNK_DISPATCH(dt, T, return launch<2>(g, Unary<T>{(T *)y, (const T *)x, op, a, b}, s));
}

extern "C" cudaError_t rnk_unary_backward(rnk_geom g, int op, double a, double b, int dt,
                                          void *gx, const void *gy, const void *x, const void *y,
                                          cudaStream_t s) {
  if (dt == RNK_F32)
    return launch<4>(g, UnaryBackward<float>{(float *)gx, (const float *)gy, (const float *)x,
                                             (const float *)y, op, (float)a, (float)b}, s);
  if (dt == RNK_F64)
    return launch<4>(g, UnaryBackward<double>{(double *)gx, (const double *)gy,
                                              (const double *)x, (const double *)y, op, a, b}, s);
  return cudaErrorInvalidValue;
}

extern "C" cudaError_t rnk_binary(rnk_geom g, int op, int dt, void *y, const void *a,
                                  const void *b, cudaStream_t s) {
  bool integer = dt == RNK_U8 || dt == RNK_I32 || dt == RNK_I64;
  RNK_DISPATCH(dt, T,
               return launch<3>(g, Binary<T>{(T *)y, (const T *)a, (const T *)b, op, integer}, s));
}

extern "C" cudaError_t rnk_axpy(rnk_geom g, void *y, int ydt, double alpha, const void *x,
                                int xdt, cudaStream_t s) {
  if (ydt == RNK_F32 && xdt == RNK_F32)
    return launch<2>(g, Axpy<float>{(float *)y, (const float *)x, (float)alpha}, s);
  if (ydt == RNK_F64 && xdt == RNK_F64)
    return launch<2>(g, Axpy<double>{(double *)y, (const double *)x, alpha}, s);
  if (dtype_size(ydt) == 0 || dtype_size(xdt) == 0) return cudaErrorInvalidValue;
  return launch<2>(g, AxpyAny{y, x, alpha, ydt, xdt}, s);
}

extern "C" cudaError_t rnk_scale2d(void *c, int dt, int64_t M, int64_t N, int64_t ldc,
                                   double beta, cudaStream_t s) {
  if (M <= 0 || N <= 0) return cudaSuccess;
  unsigned b = blocks_for(M * N, kThreads);
  if (dt == RNK_F32)
    scale2d_kernel<float><<<b, kThreads, 0, s>>>((float *)c, M, N, ldc, (float)beta);
  else if (dt == RNK_F64)
    scale2d_kernel<double><<<b, kThreads, 0, s>>>((double *)c, M, N, ldc, beta);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}
