/* l_ops.c - Lua entry points of the elementwise and reduction ops:
 * rn.add(a, b) / a:add(b) with tensors or numbers, unary math, comparisons,
 * sum/mean/max/min over dims, argmax. */
#include <math.h>
#include <string.h>

#include "rnl.h"

/* ---- binary ops: tensor or number on either side ------------------------- */

static int binary(lua_State *L, rn_binop op) {
  const char *name = rn_binop_name(op);
  rn_tensor *a = rnl_test(L, 1), *b = rnl_test(L, 2);
  if (a && b) rnl_push(L, rn_binary(op, a, b));
  else if (a && lua_type(L, 2) == LUA_TNUMBER) rnl_push(L, rn_binary_scalar(op, a, lua_tonumber(L, 2), false));
  else if (b && lua_type(L, 1) == LUA_TNUMBER) rnl_push(L, rn_binary_scalar(op, b, lua_tonumber(L, 1), true));
  else rnl_errorf(L, "%s: expected tensors or numbers, got %s and %s", name, luaL_typename(L, 1),
                  luaL_typename(L, 2));
  return 1;
}

#define BIN(fn, OP) static int fn(lua_State *L) { return binary(L, OP); }
BIN(l_add, RN_OP_ADD) BIN(l_sub, RN_OP_SUB) BIN(l_mul, RN_OP_MUL) BIN(l_div, RN_OP_DIV)
BIN(l_pow, RN_OP_POW) BIN(l_maximum, RN_OP_MAXIMUM) BIN(l_minimum, RN_OP_MINIMUM)
BIN(l_eq, RN_OP_EQ) BIN(l_ne, RN_OP_NE) BIN(l_lt, RN_OP_LT) BIN(l_le, RN_OP_LE)
BIN(l_gt, RN_OP_GT) BIN(l_ge, RN_OP_GE)

/* ---- unary ops ----------------------------------------------------------- */

/* rn.NAME(x [, p1 [, p2]]) for every op of core/oplist.h: the op's
 * parameters in order, a missing one taking its default. Special forms:
 * gelu(x, approximate) (true or "tanh": gelu_tanh), clip(x, lo, hi) with
 * nil for an open side. */
static int unary(lua_State *L, rn_unop op) {
  const char *name = rn_unop_name(op);
  rn_tensor *x = rnl_check(L, 1, name);
  double p[RN_UNARY_NP];
  int np = rn_unop_nparams(op, p);
  if (op == RN_OP_GELU && !lua_isnoneornil(L, 2)) {
    if (lua_isboolean(L, 2)) op = lua_toboolean(L, 2) ? RN_OP_GELU_TANH : RN_OP_GELU;
    else if (lua_type(L, 2) == LUA_TSTRING && !strcmp(lua_tostring(L, 2), "tanh")) op = RN_OP_GELU_TANH;
    else if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "none"))
      rnl_errorf(L, "gelu: approximate must be a boolean, \"tanh\" or \"none\", got %s",
                 luaL_typename(L, 2));
    lua_settop(L, 1);
  }
  if (op == RN_OP_CLIP) {
    if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3))
      rnl_errorf(L, "clip: give lo, hi or both (clip(x, lo, hi); nil for an open side)");
    p[0] = -HUGE_VAL;
    p[1] = HUGE_VAL;
  }
  int top = lua_gettop(L);
  for (int i = top; i > 1 + np; i--)
    if (!lua_isnil(L, i))
      rnl_errorf(L, "%s: takes %d parameter%s after the tensor, got a %s as argument %d", name, np,
                 np == 1 ? "" : "s", luaL_typename(L, i), i);
  for (int i = 0; i < np; i++) {
    if (lua_isnoneornil(L, 2 + i)) {
      if (p[i] == RN_REQUIRED) rnl_errorf(L, "%s: parameter %d is required", name, i + 1);
      continue;
    }
    if (!lua_isnumber(L, 2 + i))
      rnl_errorf(L, "%s: parameter %d must be a number, got %s", name, i + 1, luaL_typename(L, 2 + i));
    p[i] = lua_tonumber(L, 2 + i);
  }
  rnl_push(L, rn_unary_p(op, x, p));
  return 1;
}
#define UNFN(E, n, np, a, b, i) static int l_##n(lua_State *L) { return unary(L, RN_OP_##E); }
RN_UNARY_OPS(UNFN)

/* ---- reductions: x:sum() | x:sum(dim) | x:sum({d1,d2}) [, keepdim | {keepdim=}] */

static const char *const red_opts[] = {"keepdim", NULL};

static int reduce(lua_State *L, rn_redop op, const char *name) {
  rn_tensor *x = rnl_check(L, 1, name);
  int dims[RN_MAXDIM], nd = 0;
  if (lua_isinteger(L, 2)) {
    dims[nd++] = rnl_dim(L, lua_tointeger(L, 2), x->ndim, name);
  } else if (lua_istable(L, 2)) {
    lua_Integer n = luaL_len(L, 2);
    if (n > x->ndim) rnl_errorf(L, "%s: %lld dims given for a %d-d tensor", name, n, x->ndim);
    for (int i = 1; i <= n; i++) {
      lua_geti(L, 2, i);
      if (!lua_isinteger(L, -1)) rnl_errorf(L, "%s: dims must be integers", name);
      dims[nd++] = rnl_dim(L, lua_tointeger(L, -1), x->ndim, name);
      lua_pop(L, 1);
    }
    if (n == 0) rnl_errorf(L, "%s: empty list of dims; omit it to reduce over all dims", name);
  } else if (!lua_isnoneornil(L, 2)) {
    rnl_errorf(L, "%s: dims must be an integer or a table of integers, got %s", name,
               luaL_typename(L, 2));
  }
  bool keep = false;
  if (lua_isboolean(L, 3)) keep = lua_toboolean(L, 3);
  else if (!lua_isnoneornil(L, 3)) {
    rnl_opts_check(L, 3, name, red_opts);
    keep = rnl_opt_bool(L, 3, "keepdim", 0, name);
  }
  rnl_push(L, rn_reduce(op, x, nd, dims, keep));
  return 1;
}
static int l_sum(lua_State *L) { return reduce(L, RN_RED_SUM, "sum"); }
static int l_mean(lua_State *L) { return reduce(L, RN_RED_MEAN, "mean"); }
static int l_max(lua_State *L) { return reduce(L, RN_RED_MAX, "max"); }
static int l_min(lua_State *L) { return reduce(L, RN_RED_MIN, "min"); }

/* argmax(x, dim=-1, keepdim=false): int64 positions counted from 0, the
 * convention of class labels (cross_entropy, datasets), not of Lua dims. */
static int l_argmax(lua_State *L) {
  rn_tensor *x = rnl_check(L, 1, "argmax");
  if (x->ndim == 0) rnl_errorf(L, "argmax: needs at least 1 dim");
  int d = rnl_dim(L, luaL_optinteger(L, 2, -1), x->ndim, "argmax");
  bool keep = lua_toboolean(L, 3);
  rn_tensor *i = rn_argmax(x, d, keep);
  rnl_push(L, i);
  return 1;
}

static const luaL_Reg ops[] = {
  {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div}, {"pow", l_pow},
  {"maximum", l_maximum}, {"minimum", l_minimum}, {"eq", l_eq}, {"ne", l_ne}, {"lt", l_lt},
  {"le", l_le}, {"gt", l_gt}, {"ge", l_ge}, {"sum", l_sum}, {"mean", l_mean}, {"max", l_max}, {"min", l_min},
  {"argmax", l_argmax},
#define UNREG(E, n, np, a, b, i) {#n, l_##n},
  RN_UNARY_OPS(UNREG) {"swish", l_silu}, {NULL, NULL}};

void rnl_open_ops(lua_State *L, int rn_idx, int methods_idx) {
  rnl_register(L, rn_idx, methods_idx, ops, 1);
}
