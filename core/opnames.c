/* opnames.c - the names and parameter facts of the elementwise ops, made
 * from the lists in oplist.h. Below both the op front ends (core/ops/) and
 * the backends (core/cpu/, core/cuda/), which all name ops in errors. */
#include "rn.h"

#define UNAME(E, n, np, a, b, i) #n,
#define UNP(E, n, np, a, b, i) np,
#define UA(E, n, np, a, b, i) a,
#define UB(E, n, np, a, b, i) b,
#define UINT(E, n, np, a, b, i) i,
#define BNAME(E, n) #n,

static const char *const unames[RN_NUNARY] = {RN_UNARY_OPS(UNAME)};
static const int unp[RN_NUNARY] = {RN_UNARY_OPS(UNP)};
static const double ua[RN_NUNARY] = {RN_UNARY_OPS(UA)}, ub[RN_NUNARY] = {RN_UNARY_OPS(UB)};
static const bool uint_ok[RN_NUNARY] = {RN_UNARY_OPS(UINT)};
static const char *const bnames[RN_NBINARY] = {RN_BINARY_OPS(BNAME)};

const char *rn_unop_name(rn_unop op) {
  return (unsigned)op < RN_NUNARY ? unames[op] : "unknown unary op";
}

const char *rn_binop_name(rn_binop op) {
  return (unsigned)op < RN_NBINARY ? bnames[op] : "unknown binary op";
}

int rn_unop_nparams(rn_unop op, double dflt[RN_UNARY_NP]) {
  if ((unsigned)op >= RN_NUNARY) return 0;
  if (dflt) {
    dflt[0] = ua[op];
    dflt[1] = ub[op];
  }
  return unp[op];
}

bool rn_unop_int_ok(rn_unop op) { return (unsigned)op < RN_NUNARY && uint_ok[op]; }
