/* unary_math.h - the CPU's formulas of the unary ops (oplist.h) and of their
 * derivatives, written once for float and double: core/cpu/unary.c includes
 * this file once per type with T (the type) and UN, DUN, SIG (the names of
 * the functions made) defined. The math functions are C11's type-generic
 * ones (<tgmath.h>: exp on a float is expf), and every constant is cast to
 * T, so float math stays in float as before.
 *
 *   UN(op, x, a, b)        = op(x; a, b)
 *   DUN(op, g, x, y, a, b) = g * d op(x)/dx, with y = op(x) */

static inline T SIG(T x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

static inline T UN(rn_unop op, T x, T a, T b) {
  switch (op) {
  case RN_OP_NEG: return -x;
  case RN_OP_EXP: return exp(x);
  case RN_OP_LOG: return log(x);
  case RN_OP_SQRT: return sqrt(x);
  case RN_OP_RELU: return x > 0 ? x : 0;
  case RN_OP_ABS: return fabs(x);
  case RN_OP_TANH: return tanh(x);
  case RN_OP_SIGMOID: return SIG(x);
  case RN_OP_ERF: return erf(x);
  case RN_OP_GELU: return (T)0.5 * x * (1 + erf(x * (T)M_SQRT1_2));
  case RN_OP_GELU_TANH:
    return (T)0.5 * x * (1 + tanh((T)RN_GELU_K * (x + (T)0.044715 * x * x * x)));
  case RN_OP_SILU: return x * SIG(x);
  case RN_OP_HARD_SIGMOID: return x <= -3 ? 0 : x >= 3 ? 1 : x / 6 + (T)0.5;
  case RN_OP_HARD_SWISH: return x <= -3 ? 0 : x >= 3 ? x : x * (x + 3) / 6;
  case RN_OP_RELU6: return x <= 0 ? 0 : x >= 6 ? 6 : x;
  case RN_OP_SOFTPLUS: return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
  case RN_OP_LEAKY_RELU: return x > 0 ? x : a * x;
  case RN_OP_ELU: return x > 0 ? x : a * expm1(x);
  case RN_OP_CLIP: return x < a ? a : x > b ? b : x;
  default: return 0;
  }
}

static inline T DUN(rn_unop op, T g, T x, T y, T a, T b) {
  switch (op) {
  case RN_OP_NEG: return -g;
  case RN_OP_EXP: return g * y;
  case RN_OP_LOG: return g / x;
  case RN_OP_SQRT: return g * (T)0.5 / y;
  case RN_OP_RELU: return x > 0 ? g : 0;
  case RN_OP_ABS: return x > 0 ? g : x < 0 ? -g : 0;
  case RN_OP_TANH: return g * (1 - y * y);
  case RN_OP_SIGMOID: return g * y * (1 - y);
  case RN_OP_ERF: return g * (T)M_2_SQRTPI * exp(-x * x);
  case RN_OP_GELU: /* Phi(x) + x phi(x) */
    return g * ((T)0.5 * (1 + erf(x * (T)M_SQRT1_2)) +
                x * (T)(0.5 * M_2_SQRTPI * M_SQRT1_2) * exp((T)-0.5 * x * x));
  case RN_OP_GELU_TANH: {
    T t = tanh((T)RN_GELU_K * (x + (T)0.044715 * x * x * x));
    return g * ((T)0.5 * (1 + t) +
                (T)0.5 * x * (1 - t * t) * (T)RN_GELU_K * (1 + (T)(3 * 0.044715) * x * x));
  }
  case RN_OP_SILU: {
    T s = SIG(x);
    return g * s * (1 + x * (1 - s));
  }
  case RN_OP_HARD_SIGMOID: return x > -3 && x < 3 ? g / 6 : 0;
  case RN_OP_HARD_SWISH: return x < -3 ? 0 : x > 3 ? g : g * (2 * x + 3) / 6;
  case RN_OP_RELU6: return x > 0 && x < 6 ? g : 0;
  case RN_OP_SOFTPLUS: return g * SIG(x);
  case RN_OP_LEAKY_RELU: return x > 0 ? g : a * g;
  case RN_OP_ELU: return x > 0 ? g : g * a * exp(x);
  case RN_OP_CLIP: return x >= a && x <= b ? g : 0;
  default: return 0;
  }
}
