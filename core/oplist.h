/* oplist.h - the lists of elementwise ops, as X-macros: the one place an
 * op's code, name and parameters are written. Plain C with no includes, so
 * that every layer can use it: core/rn.h makes the rn_unop / rn_binop enums
 * from it, core/opnames.c the names, kernels/kernels.h the RNK_ codes of the
 * CUDA kernels, core/lua/l_ops.c the Lua functions (rn.NAME and x:NAME()).
 *
 * Adding a unary op: a line here, its formula and derivative in
 * core/cpu/unary_math.h and in kernels/unary_math.cuh (float and double
 * from one text each), and its tests and doc/tensor.md entry.
 *
 * X(ENUM, name, NP, A, B, INT) for unary ops:
 *   NP    parameters the op takes (0..2), passed to the kernels as a, b
 *   A, B  their defaults; RN_REQUIRED when the caller must give one
 *   INT   1: also defined on the integer dtypes (through double)
 */
#ifndef RN_OPLIST_H
#define RN_OPLIST_H

#define RN_REQUIRED (-1e308) /* a parameter without a default */

#define RN_UNARY_OPS(X)                                        \
  X(NEG, neg, 0, 0, 0, 1)                                      \
  X(EXP, exp, 0, 0, 0, 0)                                      \
  X(LOG, log, 0, 0, 0, 0)                                      \
  X(SQRT, sqrt, 0, 0, 0, 0)                                    \
  X(RELU, relu, 0, 0, 0, 1)                                    \
  X(ABS, abs, 0, 0, 0, 1)                                      \
  X(TANH, tanh, 0, 0, 0, 0)                                    \
  X(SIGMOID, sigmoid, 0, 0, 0, 0)                              \
  X(ERF, erf, 0, 0, 0, 0)                                      \
  X(GELU, gelu, 0, 0, 0, 0)           /* x * Phi(x), exact */  \
  X(GELU_TANH, gelu_tanh, 0, 0, 0, 0) /* tanh approximation */ \
  X(SILU, silu, 0, 0, 0, 0)           /* = swish: x*sigmoid */ \
  X(HARD_SIGMOID, hard_sigmoid, 0, 0, 0, 0) /* relu6(x+3)/6 */ \
  X(HARD_SWISH, hard_swish, 0, 0, 0, 0)     /* x*hard_sigm */  \
  X(RELU6, relu6, 0, 0, 0, 1)                                  \
  X(SOFTPLUS, softplus, 0, 0, 0, 0)                            \
  X(LEAKY_RELU, leaky_relu, 1, 0.2, 0, 0) /* Keras's slope */  \
  X(ELU, elu, 1, 1.0, 0, 0)                                    \
  X(CLIP, clip, 2, RN_REQUIRED, RN_REQUIRED, 1) /* [a, b] */

/* X(ENUM, name) for binary ops; up to MINIMUM they are differentiable */
#define RN_BINARY_OPS(X)                                                          \
  X(ADD, add) X(SUB, sub) X(MUL, mul) X(DIV, div) X(POW, pow) X(MAXIMUM, maximum) \
  X(MINIMUM, minimum) X(EQ, eq) X(NE, ne) X(LT, lt) X(LE, le) X(GT, gt) X(GE, ge)

#endif
