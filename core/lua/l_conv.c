/* l_conv.c - Lua entry points of convolution and pooling (NHWC):
 *   rn.conv2d(x, w, b_or_nil, {stride=, padding=, dilation=, groups=})   (also x:conv2d(...))
 *     groups: channel groups G (w: (KH,KW,Cin/G,Cout); depthwise: G = Cin)
 *     stride, dilation: n or {sh,sw}; padding: "same" (TF) | "valid" | n |
 *     {ph,pw} | {top,bottom,left,right}. The options table may take b's place.
 *   rn.conv2d_transpose(x, w, b_or_nil, {stride=, padding=, dilation=, output_padding=})
 *     w: (KH,KW,Cout,Cin), as Keras's Conv2DTranspose kernel
 *   rn.max_pool2d(x, k_or_{kh,kw}, {stride=, padding=})  stride defaults to k
 *   rn.avg_pool2d(x, k_or_{kh,kw}, {stride=, padding=, count_include_pad=false})
 *   rn.global_avg_pool2d(x)  (N,H,W,C) -> (N,C)
 *   rn._conv2d_ref(x, w, b_or_nil, opts)  naive reference forward, for tests
 *   rn.core._conv2d_fused(x, w, b_or_nil, opts, relu, acc_or_nil)
 *     inference only: relu?(conv + acc), written into acc when given (the
 *     model graph's inference fusions, lua/rn/model.lua) */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "../cpu/conv_ref.h"
#include "rnl.h"

/* The integer at stack index idx, within int range; `what` names it. */
static int to_int(lua_State *L, int idx, const char *op, const char *what) {
  int ok = lua_type(L, idx) == LUA_TNUMBER;
  lua_Integer v = ok ? lua_tointegerx(L, idx, &ok) : 0;
  if (!ok) luaL_error(L, "%s: %s must be an integer, got %s", op, what, luaL_typename(L, idx));
  if (v < INT_MIN / 2 || v > INT_MAX / 2)
    luaL_error(L, "%s: %s %I is out of range", op, what, v);
  return (int)v;
}

/* Fills out[0..n-1] from the list at stack index idx, which must hold exactly
 * one of the lengths n1 or n2; returns the length found. */
static int int_list(lua_State *L, int idx, int n1, int n2, int *out, const char *op,
                    const char *what) {
  lua_Integer len = luaL_len(L, idx);
  if (len != n1 && len != n2) {
    if (n1 == n2)
      luaL_error(L, "%s: %s must be an integer or a list of %d integers, got a list of %I", op,
                 what, n1, len);
    luaL_error(L, "%s: %s must be an integer or a list of %d or %d integers, got a list of %I",
               op, what, n1, n2, len);
  }
  for (int i = 1; i <= len; i++) {
    lua_geti(L, idx, i);
    out[i - 1] = to_int(L, -1, op, what);
    lua_pop(L, 1);
  }
  return (int)len;
}

/* Value at idx: n or {a,b} -> out[0], out[1]. */
static void pair_at(lua_State *L, int idx, int *out, const char *op, const char *what) {
  if (lua_istable(L, idx)) int_list(L, idx, 2, 2, out, op, what);
  else out[0] = out[1] = to_int(L, idx, op, what);
}

/* Option key of the table at opts: n or {a,b}; def when absent. */
static void opt_pair(lua_State *L, int opts, const char *key, int def, int *out, const char *op) {
  out[0] = out[1] = def;
  if (opts == 0 || lua_isnoneornil(L, opts)) return;
  lua_getfield(L, opts, key);
  if (!lua_isnil(L, -1)) {
    char what[64];
    snprintf(what, sizeof what, "option '%s'", key);
    pair_at(L, lua_gettop(L), out, op, what);
  }
  lua_pop(L, 1);
}

/* padding option: "same" | "valid" | n | {ph,pw} | {top,bottom,left,right}.
 * Sets *same or pads[4] = top, bottom, left, right. */
static void opt_padding(lua_State *L, int opts, int *same, int *pads, const char *op) {
  *same = 0;
  pads[0] = pads[1] = pads[2] = pads[3] = 0;
  if (opts == 0 || lua_isnoneornil(L, opts)) return;
  lua_getfield(L, opts, "padding");
  int top = lua_gettop(L);
  if (lua_type(L, top) == LUA_TSTRING) {
    const char *s = lua_tostring(L, top);
    if (strcmp(s, "same") == 0) *same = 1;
    else if (strcmp(s, "valid") != 0)
      luaL_error(L, "%s: padding '%s' is not valid (use \"same\", \"valid\", an integer, "
                 "{ph,pw} or {top,bottom,left,right})", op, s);
  } else if (lua_istable(L, top)) {
    int v[4];
    if (int_list(L, top, 2, 4, v, op, "option 'padding'") == 2) {
      pads[0] = pads[1] = v[0];
      pads[2] = pads[3] = v[1];
    } else {
      memcpy(pads, v, sizeof v);
    }
  } else if (!lua_isnil(L, top)) {
    if (lua_type(L, top) != LUA_TNUMBER)
      luaL_error(L, "%s: option 'padding' must be \"same\", \"valid\", an integer or a table, "
                 "got %s", op, luaL_typename(L, top));
    pads[0] = pads[1] = pads[2] = pads[3] = to_int(L, top, op, "option 'padding'");
  }
  lua_pop(L, 1);
}

/* ---- conv2d -------------------------------------------------------------- */

static const char *const conv_opts[] = {"stride", "padding", "dilation", "groups", NULL};
static const char *const convt_opts[] = {"stride", "padding", "dilation", "output_padding", NULL};

/* Parses (x, w, b_or_nil_or_opts, opts) for op, whose options are valid;
 * returns the opts index. */
static int conv_args_v(lua_State *L, const char *op, rn_tensor **x, rn_tensor **w,
                       rn_tensor **b, rn_conv_params *p, const char *const *valid) {
  *x = rnl_check(L, 1, op);
  *w = rnl_check(L, 2, op);
  int opts = 4;
  *b = NULL;
  if (lua_istable(L, 3) && !rnl_test(L, 3)) { /* conv2d(x, w, opts) */
    if (!lua_isnoneornil(L, 4))
      luaL_error(L, "%s: argument 3 is an options table, so argument 4 must be absent", op);
    opts = 3;
  } else {
    *b = rnl_opt(L, 3, op);
  }
  rnl_opts_check(L, opts, op, valid);
  int s[2], d[2], pads[4], same;
  opt_pair(L, opts, "stride", 1, s, op);
  opt_pair(L, opts, "dilation", 1, d, op);
  opt_padding(L, opts, &same, pads, op);
  memset(p, 0, sizeof *p);
  p->stride_h = s[0]; p->stride_w = s[1];
  p->dil_h = d[0]; p->dil_w = d[1];
  p->pad_top = pads[0]; p->pad_bottom = pads[1]; p->pad_left = pads[2]; p->pad_right = pads[3];
  p->same = same;
  p->groups = 1;
  if (lua_istable(L, opts)) {
    lua_getfield(L, opts, "groups");
    if (!lua_isnil(L, -1)) {
      p->groups = to_int(L, lua_gettop(L), op, "option 'groups'");
      if (p->groups < 1) luaL_error(L, "%s: option 'groups' must be >= 1, got %d", op, p->groups);
    }
    lua_pop(L, 1);
  }
  return opts;
}

static int conv_args(lua_State *L, const char *op, rn_tensor **x, rn_tensor **w, rn_tensor **b,
                     rn_conv_params *p) {
  return conv_args_v(L, op, x, w, b, p, conv_opts);
}

/* rn.conv2d_transpose(x, w, b_or_nil, {stride=, padding=, dilation=,
 * output_padding=}): w (KH,KW,Cout,Cin); output_padding n or {h,w}, absent:
 * Keras's rule (rn_conv2d_transpose) */
static int l_conv2d_transpose(lua_State *L) {
  const char *op = "conv2d_transpose";
  rn_tensor *x, *w, *b;
  rn_conv_params p;
  int opts = conv_args_v(L, op, &x, &w, &b, &p, convt_opts);
  int op2[2] = {-1, -1};
  if (lua_istable(L, opts)) {
    lua_getfield(L, opts, "output_padding");
    bool given = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (given) {
      opt_pair(L, opts, "output_padding", 0, op2, op);
      if (op2[0] < 0 || op2[1] < 0)
        luaL_error(L, "%s: option 'output_padding' must be >= 0, got (%d,%d)", op, op2[0], op2[1]);
    }
  }
  rnl_push(L, rn_conv2d_transpose(x, w, b, &p, op2));
  return 1;
}

static int l_conv2d(lua_State *L) {
  rn_tensor *x, *w, *b;
  rn_conv_params p;
  conv_args(L, "conv2d", &x, &w, &b, &p);
  rnl_push(L, rn_conv2d(x, w, b, &p));
  return 1;
}

static int l_conv2d_fused(lua_State *L) {
  rn_tensor *x, *w, *b;
  rn_conv_params p;
  if (!lua_istable(L, 4)) luaL_error(L, "conv2d_fused: argument 4 must be the options table");
  conv_args(L, "conv2d_fused", &x, &w, &b, &p);
  luaL_checktype(L, 5, LUA_TBOOLEAN);
  rn_tensor *acc = rnl_opt(L, 6, "conv2d_fused");
  rnl_push(L, rn_conv2d_fused(x, w, b, &p, lua_toboolean(L, 5), acc));
  return 1;
}

/* Reference forward (tests): same arguments; output shape from the params. */
static int l_conv2d_ref(lua_State *L) {
  const char *op = "conv2d_ref";
  rn_tensor *x, *w, *b;
  rn_conv_params p;
  conv_args(L, op, &x, &w, &b, &p);
  if (x->ndim != 4 || w->ndim != 4 || x->shape[3] != w->shape[2] * p.groups ||
      w->shape[3] % p.groups)
    luaL_error(L, "%s: needs x (N,H,W,Cin) and w (KH,KW,Cin/groups,Cout) with matching Cin", op);
  if (p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1)
    luaL_error(L, "%s: stride and dilation must be >= 1", op);
  if (p.same) {
    rn_same_padding(x->shape[1], (int)w->shape[0], p.stride_h, p.dil_h, &p.pad_top, &p.pad_bottom);
    rn_same_padding(x->shape[2], (int)w->shape[1], p.stride_w, p.dil_w, &p.pad_left, &p.pad_right);
    p.same = 0;
  }
  int64_t eh = x->shape[1] + p.pad_top + p.pad_bottom - (int64_t)p.dil_h * (w->shape[0] - 1) - 1;
  int64_t ew = x->shape[2] + p.pad_left + p.pad_right - (int64_t)p.dil_w * (w->shape[1] - 1) - 1;
  if (eh < 0 || ew < 0) luaL_error(L, "%s: the output would be empty", op);
  int64_t ys[4] = {x->shape[0], eh / p.stride_h + 1, ew / p.stride_w + 1, w->shape[3]};
  rn_tensor *y = rn_empty(4, ys, x->dtype, RN_CPU);
  if (y && rn_cpu_conv2d_ref(y, x, w, b, &p) < 0) {
    rn_release(y);
    y = NULL;
  }
  rnl_push(L, y);
  return 1;
}

/* ---- pooling ------------------------------------------------------------- */

static const char *const maxpool_opts[] = {"stride", "padding", NULL};
static const char *const avgpool_opts[] = {"stride", "padding", "count_include_pad", NULL};

static int pool(lua_State *L, bool max) {
  const char *op = max ? "max_pool2d" : "avg_pool2d";
  rn_tensor *x = rnl_check(L, 1, op);
  if (lua_isnoneornil(L, 2))
    luaL_error(L, "%s: argument 2 (kernel size) must be an integer or {kh,kw}", op);
  int k[2], s[2], pads[4], same;
  pair_at(L, 2, k, op, "kernel size");
  rnl_opts_check(L, 3, op, max ? maxpool_opts : avgpool_opts);
  s[0] = k[0];
  s[1] = k[1];
  if (!lua_isnoneornil(L, 3)) { /* stride defaults to the kernel size */
    lua_getfield(L, 3, "stride");
    bool given = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (given) opt_pair(L, 3, "stride", 1, s, op);
  }
  opt_padding(L, 3, &same, pads, op);
  rn_pool_params p;
  memset(&p, 0, sizeof p);
  p.kh = k[0]; p.kw = k[1];
  p.stride_h = s[0]; p.stride_w = s[1];
  p.pad_top = pads[0]; p.pad_bottom = pads[1]; p.pad_left = pads[2]; p.pad_right = pads[3];
  p.same = same;
  p.count_include_pad = !max && rnl_opt_bool(L, 3, "count_include_pad", 0, op);
  rnl_push(L, max ? rn_max_pool2d(x, &p) : rn_avg_pool2d(x, &p));
  return 1;
}
static int l_max_pool2d(lua_State *L) { return pool(L, true); }
static int l_avg_pool2d(lua_State *L) { return pool(L, false); }

static int l_global_avg_pool2d(lua_State *L) {
  rnl_push(L, rn_global_avg_pool2d(rnl_check(L, 1, "global_avg_pool2d")));
  return 1;
}

static const luaL_Reg funcs[] = {
  {"conv2d", l_conv2d}, {"conv2d_transpose", l_conv2d_transpose}, {"max_pool2d", l_max_pool2d}, {"avg_pool2d", l_avg_pool2d},
  {"global_avg_pool2d", l_global_avg_pool2d}, {NULL, NULL}};
static const luaL_Reg test_funcs[] = {
  {"_conv2d_ref", l_conv2d_ref}, {"_conv2d_fused", l_conv2d_fused}, {NULL, NULL}};

void rnl_open_conv(lua_State *L, int rn_idx, int methods_idx) {
  rnl_register(L, rn_idx, methods_idx, funcs, 1);
  rnl_register(L, rn_idx, methods_idx, test_funcs, 0);
}
