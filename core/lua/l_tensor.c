/* l_tensor.c - the tensor userdata: metatable (__gc, __close, __index fields
 * and methods, __newindex, __len, arithmetic), creation functions (tensor,
 * zeros, ones, full, empty, rand, randn, arange), views and conversions,
 * autograd entry points, and the rn.core module's small global settings. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../cpu/cpu.h"
#include "../capture.h"
#include "rnl.h"

int rnl_tostring(lua_State *L); /* l_print.c */

/* ---- lifetime ------------------------------------------------------------ */

static int t_gc(lua_State *L) {
  rn_tensor **box = luaL_checkudata(L, 1, RNL_TENSOR);
  rn_release(*box);
  *box = NULL;
  return 0;
}

/* ---- creation ------------------------------------------------------------ */

static const char *const create_opts[] = {"dtype", "device", "requires_grad", NULL};

typedef struct { rn_dtype dtype; rn_devtype dev; bool requires_grad; } create_opts_t;

static create_opts_t get_create_opts(lua_State *L, int idx, const char *op) {
  rnl_opts_check(L, idx, op, create_opts);
  create_opts_t o;
  o.dtype = rnl_dtype(L, rnl_opt_string(L, idx, "dtype", "float32", op), op);
  o.dev = rnl_device(L, rnl_opt_string(L, idx, "device", "cpu", op), op);
  o.requires_grad = rnl_opt_bool(L, idx, "requires_grad", 0, op);
  if (o.requires_grad && !rn_dtype_is_float(o.dtype))
    rnl_errorf(L, "%s: requires_grad needs a float dtype, got %s", op, rn_dtype_name(o.dtype));
  return o;
}

/* Pushes t (made on the CPU, or already on o->dev) moved to o->dev, with
 * requires_grad set. */
static int finish_create(lua_State *L, rn_tensor *t, const create_opts_t *o) {
  if (t && rn_device(t) != o->dev) {
    rn_tensor *m = rn_to_device(t, o->dev);
    rn_release(t);
    t = m;
  }
  if (t) t->requires_grad = o->requires_grad;
  rnl_push(L, t);
  return 1;
}

/* shape args then an optional options table: f(2,3,{...}) or f({2,3},{...}) */
static int shape_and_opts(lua_State *L, int64_t *shape, int *opts_idx, const char *op) {
  int nd = rnl_shape(L, 1, shape, op);
  int oi = lua_istable(L, 1) ? 2 : nd + 1;
  if (!lua_istable(L, 1) && nd == 0 && !lua_isnoneornil(L, 1) && !lua_istable(L, 1))
    rnl_errorf(L, "%s: shape must be a table or integers, got %s", op, luaL_typename(L, 1));
  *opts_idx = oi;
  return nd;
}

static int l_fill_create(lua_State *L, const char *op, double v, bool has_v) {
  int64_t shape[RN_MAXDIM];
  int oi, nd = shape_and_opts(L, shape, &oi, op);
  if (has_v) { v = luaL_checknumber(L, oi); oi++; }
  create_opts_t o = get_create_opts(L, oi, op);
  return finish_create(L, rn_full(nd, shape, v, o.dtype, o.dev), &o); /* filled where it lives */
}
static int l_zeros(lua_State *L) { return l_fill_create(L, "zeros", 0, false); }
static int l_ones(lua_State *L) { return l_fill_create(L, "ones", 1, false); }
static int l_empty(lua_State *L) { return l_fill_create(L, "empty", 0, false); }
/* full(shape, value, opts) */
static int l_full(lua_State *L) {
  int64_t shape[RN_MAXDIM];
  if (!lua_istable(L, 1)) rnl_errorf(L, "full: shape must be a table, got %s", luaL_typename(L, 1));
  int nd = rnl_shape(L, 1, shape, "full");
  double v = luaL_checknumber(L, 2);
  create_opts_t o = get_create_opts(L, 3, "full");
  return finish_create(L, rn_full(nd, shape, v, o.dtype, o.dev), &o);
}

static const char *const rand_opts[] = {"dtype", "device", "requires_grad", "low", "high",
                                        "mean", "std", NULL};
static int l_random(lua_State *L, bool normal) {
  const char *op = normal ? "randn" : "rand";
  int64_t shape[RN_MAXDIM];
  int oi, nd = shape_and_opts(L, shape, &oi, op);
  rnl_opts_check(L, oi, op, rand_opts);
  double a = rnl_opt_number(L, oi, normal ? "mean" : "low", 0, op);
  double b = rnl_opt_number(L, oi, normal ? "std" : "high", 1, op);
  create_opts_t o;
  o.dtype = rnl_dtype(L, rnl_opt_string(L, oi, "dtype", "float32", op), op);
  o.dev = rnl_device(L, rnl_opt_string(L, oi, "device", "cpu", op), op);
  o.requires_grad = rnl_opt_bool(L, oi, "requires_grad", 0, op);
  return finish_create(L, normal ? rn_randn(nd, shape, o.dtype, a, b)
                                 : rn_rand(nd, shape, o.dtype, a, b), &o);
}
static int l_rand(lua_State *L) { return l_random(L, false); }
static int l_randn(lua_State *L) { return l_random(L, true); }

/* arange(stop) | arange(start, stop[, step]) [, opts]: [start, stop) */
static int l_arange(lua_State *L) {
  int n = 0;
  double v[3];
  while (n < 3 && lua_type(L, n + 1) == LUA_TNUMBER) { v[n] = lua_tonumber(L, n + 1); n++; }
  if (n == 0) rnl_errorf(L, "arange: expected arange(stop) or arange(start, stop[, step])");
  double start = n >= 2 ? v[0] : 0, stop = n >= 2 ? v[1] : v[0], step = n == 3 ? v[2] : 1;
  create_opts_t o = get_create_opts(L, n + 1, "arange");
  return finish_create(L, rn_arange(start, stop, step, o.dtype), &o);
}

/* rn.tensor(nested table | number, opts) */
static int nested_shape(lua_State *L, int idx, int d, int64_t *shape, int *nd) {
  if (!lua_istable(L, idx)) return 0;
  if (d >= RN_MAXDIM) rnl_errorf(L, "tensor: nesting deeper than %d", RN_MAXDIM);
  lua_Integer n = luaL_len(L, idx);
  shape[d] = n;
  if (d + 1 > *nd) *nd = d + 1;
  if (n > 0) {
    lua_geti(L, idx, 1);
    nested_shape(L, lua_gettop(L), d + 1, shape, nd);
    lua_pop(L, 1);
  }
  return 0;
}

static void nested_fill(lua_State *L, int idx, int d, int nd, const int64_t *shape, rn_tensor *t,
                        int64_t *pos, const char *path) {
  size_t es = rn_dtype_size(t->dtype);
  if (d == nd) {
    int isnum;
    lua_Number v = lua_tonumberx(L, idx, &isnum);
    if (!isnum) {
      if (lua_isboolean(L, idx)) v = lua_toboolean(L, idx);
      else rnl_errorf(L, "tensor: element %s is a %s, expected a number", path, luaL_typename(L, idx));
    }
    rn_store(rn_ptr(t) + (size_t)(*pos)++ * es, t->dtype, v);
    return;
  }
  if (!lua_istable(L, idx))
    rnl_errorf(L, "tensor: element %s is a %s but a table of %lld was expected (ragged nesting)",
               path, luaL_typename(L, idx), (long long)shape[d]);
  if (luaL_len(L, idx) != shape[d])
    rnl_errorf(L, "tensor: element %s has %lld entries but %lld were expected (ragged nesting)",
               path, luaL_len(L, idx), (long long)shape[d]);
  char sub[256];
  for (int64_t i = 1; i <= shape[d]; i++) {
    snprintf(sub, sizeof sub, "%s[%lld]", path, (long long)i);
    lua_geti(L, idx, i);
    nested_fill(L, lua_gettop(L), d + 1, nd, shape, t, pos, sub);
    lua_pop(L, 1);
  }
}

/* Checks that every table at depth d has shape[d] entries, before anything
 * is allocated: the shape comes from the first entry of each level, so a
 * small ragged table must not make us allocate for a huge one. */
static void nested_check(lua_State *L, int idx, int d, int nd, const int64_t *shape) {
  if (d == nd) return;
  if (!lua_istable(L, idx))
    rnl_errorf(L, "tensor: a %s where a table of %lld was expected (ragged nesting)",
               luaL_typename(L, idx), (long long)shape[d]);
  if (luaL_len(L, idx) != shape[d])
    rnl_errorf(L, "tensor: a table of %lld entries where %lld were expected at depth %d "
               "(ragged nesting)", (long long)luaL_len(L, idx), (long long)shape[d], d + 1);
  if (d + 1 == nd) return;
  luaL_checkstack(L, 2, "tensor");
  for (int64_t i = 1; i <= shape[d]; i++) {
    lua_geti(L, idx, i);
    nested_check(L, lua_gettop(L), d + 1, nd, shape);
    lua_pop(L, 1);
  }
}

static int l_tensor(lua_State *L) {
  create_opts_t o = get_create_opts(L, 2, "tensor");
  if (lua_type(L, 1) == LUA_TNUMBER)
    return finish_create(L, rn_scalar(lua_tonumber(L, 1), o.dtype, RN_CPU), &o);
  if (rnl_test(L, 1)) { /* copy of a tensor, converted */
    rn_tensor *c = rn_clone(rnl_test(L, 1));
    rn_tensor *d = c ? rn_cast(c, o.dtype) : NULL;
    rn_release(c);
    if (d && d->grad_fn) { rn_tensor *e = rn_detach(d); rn_release(d); d = e; }
    return finish_create(L, d, &o);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  int64_t shape[RN_MAXDIM] = {0};
  int nd = 0;
  nested_shape(L, 1, 0, shape, &nd);
  if (rn_check_shape(nd, shape, "tensor") < 0) return rnl_error(L);
  nested_check(L, 1, 0, nd, shape);
  /* box first, fill after: an error in an element then frees it via __gc */
  rnl_push(L, rn_empty(nd, shape, o.dtype, RN_CPU));
  rn_tensor *t = rnl_test(L, -1);
  int64_t pos = 0;
  nested_fill(L, 1, 0, nd, shape, t, &pos, "t");
  if (o.dev != RN_CPU) {
    rnl_push(L, rn_to_device(t, o.dev));
    t = rnl_test(L, -1);
  }
  t->requires_grad = o.requires_grad;
  return 1;
}

/* ---- queries ------------------------------------------------------------- */

static int m_size(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "size");
  if (!lua_isnoneornil(L, 2)) {
    int d = rnl_dim(L, luaL_checkinteger(L, 2), t->ndim, "size");
    lua_pushinteger(L, t->shape[d]);
    return 1;
  }
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int m_stride(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "stride");
  if (!lua_isnoneornil(L, 2)) {
    lua_pushinteger(L, t->stride[rnl_dim(L, luaL_checkinteger(L, 2), t->ndim, "stride")]);
    return 1;
  }
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->stride[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int m_dim(lua_State *L) { lua_pushinteger(L, rnl_check(L, 1, "dim")->ndim); return 1; }
static int m_numel(lua_State *L) { lua_pushinteger(L, rn_numel(rnl_check(L, 1, "numel"))); return 1; }
static int m_is_contiguous(lua_State *L) {
  lua_pushboolean(L, rn_is_contiguous(rnl_check(L, 1, "is_contiguous")));
  return 1;
}

static void push_number(lua_State *L, const rn_tensor *t, const char *p) {
  double v = rn_load(p, t->dtype);
  if (rn_dtype_is_float(t->dtype)) lua_pushnumber(L, v);
  else if (t->dtype == RN_I64) lua_pushinteger(L, *(const int64_t *)p);
  else lua_pushinteger(L, (lua_Integer)v);
}

/* The CPU copy used to read values: pushed boxed so it is freed on error. */
static rn_tensor *on_cpu(lua_State *L, rn_tensor *t) {
  if (rn_device(t) == RN_CPU) { lua_pushnil(L); return t; }
  rnl_push(L, rn_to_device(t, RN_CPU));
  return rnl_test(L, -1);
}

static int m_item(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "item");
  if (rn_capture_forbid(":item()") < 0) return rnl_error(L); /* issue 19 */
  if (rn_numel(t) != 1) {
    char b[128];
    return rnl_errorf(L, "item: tensor %s has %lld elements; item needs exactly 1",
                      rn_shape_str(t, b, sizeof b), (long long)rn_numel(t));
  }
  rn_tensor *c = on_cpu(L, t);
  push_number(L, c, rn_ptr(c));
  return 1;
}

static void totable_rec(lua_State *L, const rn_tensor *t, int d, int64_t off) {
  if (d == t->ndim) {
    push_number(L, t, rn_ptr(t) + (size_t)off * rn_dtype_size(t->dtype));
    return;
  }
  lua_createtable(L, (int)t->shape[d], 0);
  for (int64_t i = 0; i < t->shape[d]; i++) {
    totable_rec(L, t, d + 1, off + i * t->stride[d]);
    lua_rawseti(L, -2, i + 1);
  }
}

static int m_totable(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "totable");
  if (rn_capture_forbid(":totable()") < 0) return rnl_error(L); /* issue 19 */
  luaL_checkstack(L, t->ndim + 4, "totable");
  rn_tensor *c = on_cpu(L, t);
  totable_rec(L, c, 0, 0);
  return 1;
}

/* ---- views and conversions ----------------------------------------------- */

static int reshape_or_view(lua_State *L, const char *op) {
  rn_tensor *t = rnl_check(L, 1, op);
  int64_t shape[RN_MAXDIM];
  int nd = 0;
  if (lua_istable(L, 2)) {
    lua_Integer len = luaL_len(L, 2);
    if (len > RN_MAXDIM) rnl_errorf(L, "%s: %lld dims; tensors have 0..%d dims", op, len, RN_MAXDIM);
    for (int i = 1; i <= len; i++) { lua_geti(L, 2, i); shape[nd++] = luaL_checkinteger(L, -1); lua_pop(L, 1); }
  } else {
    for (int i = 2; i <= lua_gettop(L); i++) {
      if (nd == RN_MAXDIM) rnl_errorf(L, "%s: more than %d dims", op, RN_MAXDIM);
      shape[nd++] = luaL_checkinteger(L, i);
    }
  }
  if (op[0] == 'v' && !rn_is_contiguous(t)) { /* a view shares storage: no silent copy */
    char b1[128];
    rnl_errorf(L, "view: the tensor %s is not contiguous, so no view of it has that shape; "
               "use reshape (which copies when it must) or contiguous():view(...)",
               rn_shape_str(t, b1, sizeof b1));
  }
  rnl_push(L, rn_reshape(t, nd, shape));
  return 1;
}

static int m_reshape(lua_State *L) { return reshape_or_view(L, "reshape"); }
/* view: as reshape, but refused when it could not share the storage */
static int m_view(lua_State *L) { return reshape_or_view(L, "view"); }

static int m_permute(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "permute");
  int perm[RN_MAXDIM], n = 0;
  bool tab = lua_istable(L, 2);
  int cnt = tab ? (int)luaL_len(L, 2) : lua_gettop(L) - 1;
  if (cnt != t->ndim)
    rnl_errorf(L, "permute: %d dims given for a %d-d tensor; give a permutation of 1..%d", cnt,
               t->ndim, t->ndim);
  for (int i = 0; i < cnt; i++) {
    if (tab) lua_geti(L, 2, i + 1); else lua_pushvalue(L, i + 2);
    perm[n++] = rnl_dim(L, luaL_checkinteger(L, -1), t->ndim, "permute");
    lua_pop(L, 1);
  }
  rnl_push(L, rn_permute(t, perm));
  return 1;
}

static int m_transpose(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "transpose");
  int a = rnl_dim(L, luaL_optinteger(L, 2, 1), t->ndim, "transpose");
  int b = rnl_dim(L, luaL_optinteger(L, 3, 2), t->ndim, "transpose");
  rnl_push(L, rn_transpose(t, a, b));
  return 1;
}

static int m_t(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "t");
  if (t->ndim != 2) rnl_errorf(L, "t: needs a 2-d tensor, got %d-d; use transpose(d1, d2)", t->ndim);
  rnl_push(L, rn_transpose(t, 0, 1));
  return 1;
}

static int m_narrow(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "narrow");
  int d = rnl_dim(L, luaL_checkinteger(L, 2), t->ndim, "narrow");
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  if (start < 1 || len < 0 || start - 1 > t->shape[d] || len > t->shape[d] - (start - 1))
    rnl_errorf(L, "narrow: start %lld length %lld outside dim %d of size %lld (start in 1..%lld, "
               "start+length-1 <= %lld)", start, len, d + 1, (long long)t->shape[d],
               (long long)t->shape[d], (long long)t->shape[d]);
  rnl_push(L, rn_narrow(t, d, start - 1, len));
  return 1;
}

static int m_select(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "select");
  int d = rnl_dim(L, luaL_checkinteger(L, 2), t->ndim, "select");
  lua_Integer i = luaL_checkinteger(L, 3);
  if (i < 0) i += t->shape[d] + 1;
  if (i < 1 || i > t->shape[d])
    rnl_errorf(L, "select: index %lld outside 1..%lld of dim %d", luaL_checkinteger(L, 3),
               (long long)t->shape[d], d + 1);
  rnl_push(L, rn_select(t, d, i - 1));
  return 1;
}

static int m_expand(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "expand");
  int64_t shape[RN_MAXDIM];
  int nd = rnl_shape(L, 2, shape, "expand");
  rnl_push(L, rn_expand(t, nd, shape));
  return 1;
}

static int m_squeeze(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "squeeze");
  int64_t shape[RN_MAXDIM];
  int nd = 0, only = lua_isnoneornil(L, 2) ? -1 : rnl_dim(L, luaL_checkinteger(L, 2), t->ndim, "squeeze");
  for (int i = 0; i < t->ndim; i++)
    if (!(t->shape[i] == 1 && (only < 0 || only == i))) shape[nd++] = t->shape[i];
  rnl_push(L, rn_reshape(t, nd, shape));
  return 1;
}

static int m_unsqueeze(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "unsqueeze");
  if (t->ndim >= RN_MAXDIM) rnl_errorf(L, "unsqueeze: tensor already has %d dims", RN_MAXDIM);
  int d = rnl_dim(L, luaL_checkinteger(L, 2), t->ndim + 1, "unsqueeze");
  int64_t shape[RN_MAXDIM];
  for (int i = 0, k = 0; i <= t->ndim; i++) shape[i] = i == d ? 1 : t->shape[k++];
  rnl_push(L, rn_reshape(t, t->ndim + 1, shape));
  return 1;
}

/* flatten(start=1, end=-1) */
static int m_flatten(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "flatten");
  if (t->ndim == 0) { int64_t one = 1; rnl_push(L, rn_reshape(t, 1, &one)); return 1; }
  int a = rnl_dim(L, luaL_optinteger(L, 2, 1), t->ndim, "flatten");
  int b = rnl_dim(L, luaL_optinteger(L, 3, -1), t->ndim, "flatten");
  if (b < a) rnl_errorf(L, "flatten: end dim %d before start dim %d", b + 1, a + 1);
  int64_t shape[RN_MAXDIM];
  int nd = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (i <= a || i > b) shape[nd++] = t->shape[i];
    else shape[nd - 1] *= t->shape[i];
  }
  rnl_push(L, rn_reshape(t, nd, shape));
  return 1;
}

static int m_contiguous(lua_State *L) { rnl_push(L, rn_contiguous(rnl_check(L, 1, "contiguous"))); return 1; }
static int m_clone(lua_State *L) { rnl_push(L, rn_clone(rnl_check(L, 1, "clone"))); return 1; }
static int m_detach(lua_State *L) { rnl_push(L, rn_detach(rnl_check(L, 1, "detach"))); return 1; }

/* to(dtype | device | tensor) */
static int m_to(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "to");
  rn_tensor *other = rnl_test(L, 2);
  if (other) {
    rn_tensor *a = rn_cast(t, other->dtype);
    rn_tensor *b = a ? rn_to_device(a, rn_device(other)) : NULL;
    rn_release(a);
    rnl_push(L, b);
    return 1;
  }
  const char *s = luaL_checkstring(L, 2);
  rn_dtype dt;
  if (rn_dtype_from_name(s, &dt) == 0) rnl_push(L, rn_cast(t, dt));
  else rnl_push(L, rn_to_device(t, rnl_device(L, s, "to")));
  return 1;
}

#define CAST_METHOD(fname, DT) \
  static int fname(lua_State *L) { rnl_push(L, rn_cast(rnl_check(L, 1, #fname + 2), DT)); return 1; }
CAST_METHOD(m_float, RN_F32)
CAST_METHOD(m_double, RN_F64)
CAST_METHOD(m_long, RN_I64)
CAST_METHOD(m_int, RN_I32)
CAST_METHOD(m_byte, RN_U8)
CAST_METHOD(m_bfloat16, RN_BF16)
CAST_METHOD(m_half, RN_F16)
static int m_cuda(lua_State *L) { rnl_push(L, rn_to_device(rnl_check(L, 1, "cuda"), RN_CUDA)); return 1; }
static int m_cpu(lua_State *L) { rnl_push(L, rn_to_device(rnl_check(L, 1, "cpu"), RN_CPU)); return 1; }

/* ---- in place ------------------------------------------------------------ */

static int m_fill_(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "fill_");
  if (rn_fill_(t, luaL_checknumber(L, 2)) < 0) return rnl_error(L);
  lua_settop(L, 1);
  return 1;
}
static int m_zero_(lua_State *L) {
  if (rn_fill_(rnl_check(L, 1, "zero_"), 0) < 0) return rnl_error(L);
  lua_settop(L, 1);
  return 1;
}
static int m_copy_(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "copy_");
  if (rn_copy_(t, rnl_check(L, 2, "copy_")) < 0) return rnl_error(L);
  lua_settop(L, 1);
  return 1;
}
/* add_(x [, alpha]) or add_(number) */
static int m_add_(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "add_");
  int rc;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    rn_tensor *s = rn_scalar(lua_tonumber(L, 2), t->dtype, rn_device(t));
    rc = s ? rn_axpy_(t, 1.0, s) : -1;
    rn_release(s);
  } else {
    rc = rn_axpy_(t, luaL_optnumber(L, 3, 1.0), rnl_check(L, 2, "add_"));
  }
  if (rc < 0) return rnl_error(L);
  lua_settop(L, 1);
  return 1;
}
static int m_mul_(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "mul_");
  if (rn_scale_(t, luaL_checknumber(L, 2)) < 0) return rnl_error(L);
  lua_settop(L, 1);
  return 1;
}

/* ---- autograd ------------------------------------------------------------ */

static int m_requires_grad_(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "requires_grad_");
  bool on = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
  if (on && !rn_dtype_is_float(t->dtype))
    rnl_errorf(L, "requires_grad_: only float tensors can require grad, got %s", rn_dtype_name(t->dtype));
  if (!on && t->grad_fn)
    rnl_errorf(L, "requires_grad_: cannot turn off grad of a non-leaf tensor; use detach()");
  t->requires_grad = on;
  lua_settop(L, 1);
  return 1;
}

static const char *const backward_opts[] = {"retain_graph", NULL};
/* backward([grad] [, {retain_graph=}]) */
static int m_backward(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "backward");
  rn_tensor *g = rnl_test(L, 2);
  int oi = g ? 3 : (lua_istable(L, 2) ? 2 : 3);
  if (!g && !lua_isnoneornil(L, 2) && !lua_istable(L, 2))
    rnl_errorf(L, "backward: argument 2 must be a gradient tensor or an options table");
  rnl_opts_check(L, oi, "backward", backward_opts);
  bool retain = rnl_opt_bool(L, oi, "retain_graph", 0, "backward");
  if (rn_backward(t, g, retain) < 0) return rnl_error(L);
  return 0;
}

static int m_zero_grad(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "zero_grad");
  rn_release(t->grad);
  t->grad = NULL;
  return 0;
}

/* ---- metamethods --------------------------------------------------------- */

static int t_index(lua_State *L) {
  rn_tensor **box = luaL_checkudata(L, 1, RNL_TENSOR);
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *k = lua_tostring(L, 2);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1; /* a method */
    lua_pop(L, 1);
    rn_tensor *t = *box;
    if (!t) return rnl_errorf(L, "tensor: field '%s' of a closed tensor", k);
    if (strcmp(k, "grad") == 0) {
      if (!t->grad) { lua_pushnil(L); return 1; }
      rn_retain(t->grad);
      rnl_push(L, t->grad);
      return 1;
    }
    if (strcmp(k, "requires_grad") == 0) { lua_pushboolean(L, t->requires_grad); return 1; }
    if (strcmp(k, "dtype") == 0) { lua_pushstring(L, rn_dtype_name(t->dtype)); return 1; }
    if (strcmp(k, "device") == 0) { lua_pushstring(L, rn_device_name(rn_device(t))); return 1; }
    if (strcmp(k, "ndim") == 0) { lua_pushinteger(L, t->ndim); return 1; }
    if (strcmp(k, "shape") == 0) { lua_settop(L, 1); return m_size(L); }
    if (strcmp(k, "is_leaf") == 0) { lua_pushboolean(L, t->grad_fn == NULL); return 1; }
    if (strcmp(k, "grad_fn") == 0) {
      if (t->grad_fn) lua_pushstring(L, t->grad_fn->name); else lua_pushnil(L);
      return 1;
    }
    lua_pushnil(L);
    return 1;
  }
  int isint = 0;
  lua_Integer i = lua_type(L, 2) == LUA_TNUMBER ? lua_tointegerx(L, 2, &isint) : 0;
  if (isint) { /* x[i] (i an integer, or a float of integral value): select along dim 1 */
    rn_tensor *t = rnl_check(L, 1, "index");
    if (t->ndim == 0) return rnl_errorf(L, "index: a 0-d tensor cannot be indexed; use item()");
    if (i < 0) i += t->shape[0] + 1;
    if (i < 1 || i > t->shape[0])
      return rnl_errorf(L, "index: %s outside 1..%lld", lua_tostring(L, 2), (long long)t->shape[0]);
    if (t->ndim == 1) {
      rn_tensor *c = on_cpu(L, t);
      push_number(L, c, rn_ptr(c) + (size_t)((i - 1) * c->stride[0]) * rn_dtype_size(c->dtype));
      return 1;
    }
    rnl_push(L, rn_select(t, 0, i - 1));
    return 1;
  }
  if (lua_type(L, 2) == LUA_TNUMBER) /* a fraction (or a float out of integer range) */
    return rnl_errorf(L, "index: %s is not an integer; tensors are indexed by integers 1..n "
                      "(or -n..-1)", lua_tostring(L, 2));
  if (!lua_isnil(L, 2))
    return rnl_errorf(L, "tensor: cannot index with a %s", luaL_typename(L, 2));
  lua_pushnil(L);
  return 1;
}

static int t_newindex(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "newindex");
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *k = lua_tostring(L, 2);
    if (strcmp(k, "requires_grad") == 0) {
      lua_settop(L, 3);
      lua_remove(L, 2);
      return m_requires_grad_(L);
    }
    if (strcmp(k, "grad") == 0) {
      rn_tensor *g = rnl_opt(L, 3, "grad");
      if (g && (!rn_same_shape(g, t) || g->dtype != t->dtype || rn_device(g) != rn_device(t)))
        return rnl_errorf(L, "grad: must match the tensor's shape, dtype and device");
      if (g) rn_retain(g);
      rn_release(t->grad);
      t->grad = g;
      return 0;
    }
    return rnl_errorf(L, "tensor: cannot set field '%s' (settable: requires_grad, grad)", k);
  }
  if (lua_isinteger(L, 2)) { /* x[i] = number | tensor */
    lua_Integer i = lua_tointeger(L, 2);
    if (t->ndim == 0) return rnl_errorf(L, "index: a 0-d tensor cannot be indexed; use fill_()");
    if (i < 0) i += t->shape[0] + 1;
    if (i < 1 || i > t->shape[0])
      return rnl_errorf(L, "index: %lld outside 1..%lld", lua_tointeger(L, 2), (long long)t->shape[0]);
    bool g = rn_grad_enabled();
    rn_set_grad_enabled(false);
    rn_tensor *v = rn_select(t, 0, i - 1);
    rn_set_grad_enabled(g);
    rnl_push(L, v);
    int rc = lua_type(L, 3) == LUA_TNUMBER ? rn_fill_(v, lua_tonumber(L, 3))
                                           : rn_copy_(v, rnl_check(L, 3, "newindex"));
    if (rc < 0) return rnl_error(L);
    return 0;
  }
  return rnl_errorf(L, "tensor: cannot index with a %s", luaL_typename(L, 2));
}

static int t_len(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "len");
  if (t->ndim == 0) return rnl_errorf(L, "len: a 0-d tensor has no length; use numel()");
  lua_pushinteger(L, t->shape[0]);
  return 1;
}

/* a op b where either side may be a number */
static int arith(lua_State *L, rn_binop op, const char *name) {
  rn_tensor *a = rnl_test(L, 1), *b = rnl_test(L, 2);
  if (a && b) rnl_push(L, rn_binary(op, a, b));
  else if (a && lua_type(L, 2) == LUA_TNUMBER) rnl_push(L, rn_binary_scalar(op, a, lua_tonumber(L, 2), false));
  else if (b && lua_type(L, 1) == LUA_TNUMBER) rnl_push(L, rn_binary_scalar(op, b, lua_tonumber(L, 1), true));
  else rnl_errorf(L, "%s: cannot combine %s and %s", name, luaL_typename(L, 1), luaL_typename(L, 2));
  return 1;
}
static int t_add(lua_State *L) { return arith(L, RN_OP_ADD, "add"); }
static int t_sub(lua_State *L) { return arith(L, RN_OP_SUB, "sub"); }
static int t_mul(lua_State *L) { return arith(L, RN_OP_MUL, "mul"); }
static int t_div(lua_State *L) { return arith(L, RN_OP_DIV, "div"); }
static int t_pow(lua_State *L) { return arith(L, RN_OP_POW, "pow"); }
static int t_unm(lua_State *L) { rnl_push(L, rn_unary(RN_OP_NEG, rnl_check(L, 1, "neg"))); return 1; }

/* ---- module-level settings ----------------------------------------------- */

static int l_manual_seed(lua_State *L) {
  lua_Integer s = luaL_checkinteger(L, 1);
  rn_manual_seed((uint64_t)s);
  return 0;
}

static int l_get_rng_state(lua_State *L) {
  uint64_t st[4];
  rn_random_get_state(st);
  lua_createtable(L, 4, 0);
  for (int i = 0; i < 4; i++) { lua_pushinteger(L, (lua_Integer)st[i]); lua_rawseti(L, -2, i + 1); }
  return 1;
}

static int l_set_rng_state(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  uint64_t st[4];
  for (int i = 0; i < 4; i++) {
    lua_geti(L, 1, i + 1);
    int ok;
    st[i] = (uint64_t)lua_tointegerx(L, -1, &ok);
    if (!ok) return rnl_errorf(L, "set_rng_state: expected a table of 4 integers");
    lua_pop(L, 1);
  }
  if (!(st[0] | st[1] | st[2] | st[3])) return rnl_errorf(L, "set_rng_state: an all-zero state is invalid");
  rn_random_set_state(st);
  return 0;
}

static int l_set_grad_enabled(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  lua_pushboolean(L, rn_grad_enabled());
  rn_set_grad_enabled(lua_toboolean(L, 1));
  return 1; /* the previous mode */
}
static int l_is_grad_enabled(lua_State *L) { lua_pushboolean(L, rn_grad_enabled()); return 1; }

static int l_set_num_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1 || n > 1024) return rnl_errorf(L, "set_num_threads: %lld outside 1..1024", n);
  rn_cpu_set_threads((int)n);
  return 0;
}
static int l_get_num_threads(lua_State *L) { lua_pushinteger(L, rn_cpu_get_threads()); return 1; }

static int l_is_tensor(lua_State *L) { lua_pushboolean(L, rnl_test(L, 1) != NULL); return 1; }

/* rn._isatty(fd): whether stdin (0), stdout (1) or stderr (2) is a terminal
 * (the progress bar redraws in place only there). */
static int l_isatty(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  if (fd < 0 || fd > 2) return rnl_errorf(L, "_isatty: fd %lld outside 0..2", (long long)fd);
  lua_pushboolean(L, isatty((int)fd));
  return 1;
}

/* rn._clock(): monotonic wall-clock seconds (os.clock is CPU time). */
static int l_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

static int l_backend_supports(lua_State *L) {
  rn_devtype d = rnl_device(L, luaL_checkstring(L, 1), "backend_supports");
  lua_pushboolean(L, rn_backend_supports(d, luaL_checkstring(L, 2)));
  return 1;
}

static int l_backend_slots(lua_State *L) {
  const char *const *names = rn_backend_slot_names();
  lua_newtable(L);
  for (int i = 0; names[i]; i++) { lua_pushstring(L, names[i]); lua_rawseti(L, -2, i + 1); }
  return 1;
}

static int l_cuda_available(lua_State *L) {
  const rn_backend *be = rn_backend_get(RN_CUDA);
  lua_pushboolean(L, be != NULL);
  if (be) return 1;
  lua_pushstring(L, rn_errmsg());
  return 2; /* false, reason */
}

static const luaL_Reg funcs[] = {
  {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"empty", l_empty},
  {"full", l_full}, {"rand", l_rand}, {"randn", l_randn}, {"arange", l_arange},
  {"manual_seed", l_manual_seed}, {"get_rng_state", l_get_rng_state},
  {"set_rng_state", l_set_rng_state}, {"set_grad_enabled", l_set_grad_enabled},
  {"is_grad_enabled", l_is_grad_enabled}, {"set_num_threads", l_set_num_threads},
  {"get_num_threads", l_get_num_threads}, {"is_tensor", l_is_tensor},
  {"_isatty", l_isatty}, {"_clock", l_clock},
  {"backend_supports", l_backend_supports}, {"backend_slots", l_backend_slots},
  {"cuda_is_available", l_cuda_available}, {NULL, NULL}};

static const luaL_Reg methods[] = {
  {"size", m_size}, {"stride", m_stride}, {"dim", m_dim}, {"numel", m_numel},
  {"is_contiguous", m_is_contiguous}, {"item", m_item}, {"totable", m_totable},
  {"reshape", m_reshape}, {"view", m_view}, {"permute", m_permute},
  {"transpose", m_transpose}, {"t", m_t}, {"narrow", m_narrow}, {"select", m_select},
  {"expand", m_expand}, {"squeeze", m_squeeze}, {"unsqueeze", m_unsqueeze},
  {"flatten", m_flatten}, {"contiguous", m_contiguous}, {"clone", m_clone},
  {"detach", m_detach}, {"to", m_to}, {"float", m_float}, {"double", m_double},
  {"long", m_long}, {"int", m_int}, {"byte", m_byte}, {"bfloat16", m_bfloat16},
  {"half", m_half}, {"cuda", m_cuda}, {"cpu", m_cpu}, {"fill_", m_fill_},
  {"zero_", m_zero_}, {"copy_", m_copy_}, {"add_", m_add_}, {"mul_", m_mul_},
  {"requires_grad_", m_requires_grad_}, {"backward", m_backward},
  {"zero_grad", m_zero_grad}, {"tostring", rnl_tostring}, {NULL, NULL}};

void rnl_open_tensor(lua_State *L, int rn_idx, int methods_idx) {
  rnl_register(L, rn_idx, methods_idx, funcs, 0);
  rnl_register(L, rn_idx, methods_idx, methods, 1);
  /* metatable: __index closes over the methods table */
  luaL_newmetatable(L, RNL_TENSOR);
  lua_pushvalue(L, methods_idx);
  lua_pushcclosure(L, t_index, 1);
  lua_setfield(L, -2, "__index");
  static const luaL_Reg meta[] = {
    {"__gc", t_gc}, {"__close", t_gc}, {"__tostring", rnl_tostring}, {"__len", t_len},
    {"__newindex", t_newindex}, {"__add", t_add}, {"__sub", t_sub}, {"__mul", t_mul},
    {"__div", t_div}, {"__pow", t_pow}, {"__unm", t_unm}, {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
}
