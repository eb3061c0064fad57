/* unary_math.cuh - the CUDA formulas of the unary ops (core/oplist.h) and
 * of their derivatives, one template for float and double (the same math as
 * core/cpu/unary_math.h; float stays in float through the overloads below).
 *
 *   un<T>(op, x, a, b)        = op(x; a, b)
 *   dun<T>(op, g, x, y, a, b) = g * d op(x)/dx, with y = op(x) */
#ifndef RNK_UNARY_MATH_CUH
#define RNK_UNARY_MATH_CUH

#include <math.h>

#include "kernels.h"

namespace rnk {

/* float and double versions under one name each */
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double m_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __forceinline__ double m_erf(double x) { return erf(x); }
__device__ __forceinline__ float m_fabs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_fabs(double x) { return fabs(x); }

constexpr double kSqrt1_2 = 0.70710678118654752440;  /* 1/sqrt(2) */
constexpr double k2SqrtPi = 1.12837916709551257390;  /* 2/sqrt(pi) */
constexpr double kGeluK = 0.79788456080286535588;    /* sqrt(2/pi) */

template <typename T> __device__ __forceinline__ T sig(T x) {
  return x >= 0 ? 1 / (1 + m_exp(-x)) : m_exp(x) / (1 + m_exp(x));
}

template <typename T> __device__ __forceinline__ T un(int op, T x, T a, T b) {
  switch (op) {
  case RNK_NEG: return -x;
  case RNK_EXP: return m_exp(x);
  case RNK_LOG: return m_log(x);
  case RNK_SQRT: return m_sqrt(x);
  case RNK_RELU: return x > 0 ? x : (T)0;
  case RNK_ABS: return m_fabs(x);
  case RNK_TANH: return m_tanh(x);
  case RNK_SIGMOID: return sig(x);
  case RNK_ERF: return m_erf(x);
  case RNK_GELU: return (T)0.5 * x * (1 + m_erf(x * (T)kSqrt1_2));
  case RNK_GELU_TANH: return (T)0.5 * x * (1 + m_tanh((T)kGeluK * (x + (T)0.044715 * x * x * x)));
  case RNK_SILU: return x * sig(x);
  case RNK_HARD_SIGMOID: return x <= -3 ? (T)0 : x >= 3 ? (T)1 : x / 6 + (T)0.5;
  case RNK_HARD_SWISH: return x <= -3 ? (T)0 : x >= 3 ? x : x * (x + 3) / 6;
  case RNK_RELU6: return x <= 0 ? (T)0 : x >= 6 ? (T)6 : x;
  case RNK_SOFTPLUS: return x > 0 ? x + m_log1p(m_exp(-x)) : m_log1p(m_exp(x));
  case RNK_LEAKY_RELU: return x > 0 ? x : a * x;
  case RNK_ELU: return x > 0 ? x : a * m_expm1(x);
  case RNK_CLIP: return x < a ? a : x > b ? b : x;
  default: return 0;
  }
}

template <typename T> __device__ __forceinline__ T dun(int op, T g, T x, T y, T a, T b) {
  switch (op) {
  case RNK_NEG: return -g;
  case RNK_EXP: return g * y;
  case RNK_LOG: return g / x;
  case RNK_SQRT: return g * (T)0.5 / y;
  case RNK_RELU: return x > 0 ? g : (T)0;
  case RNK_ABS: return x > 0 ? g : x < 0 ? -g : (T)0;
  case RNK_TANH: return g * (1 - y * y);
  case RNK_SIGMOID: return g * y * (1 - y);
  case RNK_ERF: return g * (T)k2SqrtPi * m_exp(-x * x);
  case RNK_GELU:
    return g * ((T)0.5 * (1 + m_erf(x * (T)kSqrt1_2)) +
                x * (T)(0.5 * k2SqrtPi * kSqrt1_2) * m_exp((T)-0.5 * x * x));
  case RNK_GELU_TANH: {
    T t = m_tanh((T)kGeluK * (x + (T)0.044715 * x * x * x));
    return g * ((T)0.5 * (1 + t) +
                (T)0.5 * x * (1 - t * t) * (T)kGeluK * (1 + (T)(3 * 0.044715) * x * x));
  }
  case RNK_SILU: {
    T s = sig(x);
    return g * s * (1 + x * (1 - s));
  }
  case RNK_HARD_SIGMOID: return x > -3 && x < 3 ? g / 6 : (T)0;
  case RNK_HARD_SWISH: return x < -3 ? (T)0 : x > 3 ? g : g * (2 * x + 3) / 6;
  case RNK_RELU6: return x > 0 && x < 6 ? g : (T)0;
  case RNK_SOFTPLUS: return g * sig(x);
  case RNK_LEAKY_RELU: return x > 0 ? g : a * g;
  case RNK_ELU: return x > 0 ? g : g * a * m_exp(x);
  case RNK_CLIP: return x >= a && x <= b ? g : (T)0;
  default: return 0;
  }
}

} // namespace rnk

#endif
