/* l_util.c - binding helpers (see rnl.h): the tensor box, argument checks,
 * 1-based dims, shapes, options tables, and registration of op tables. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rnl.h"

rn_tensor *rnl_test(lua_State *L, int idx) {
  rn_tensor **box = luaL_testudata(L, idx, RNL_TENSOR);
  return box ? *box : NULL;
}

rn_tensor *rnl_check(lua_State *L, int idx, const char *op) {
  rn_tensor **box = luaL_testudata(L, idx, RNL_TENSOR);
  if (!box)
    rnl_errorf(L, "%s: argument %d must be a tensor, got %s", op, idx, luaL_typename(L, idx));
  if (!*box) rnl_errorf(L, "%s: argument %d is a closed tensor", op, idx);
  return *box;
}

rn_tensor *rnl_opt(lua_State *L, int idx, const char *op) {
  return lua_isnoneornil(L, idx) ? NULL : rnl_check(L, idx, op);
}

int rnl_errorf(lua_State *L, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return luaL_error(L, "%s", buf);
}

int rnl_error(lua_State *L) { return luaL_error(L, "%s", rn_errmsg()); }

/* Bytes of new tensor storage since Lua's GC last ran a full cycle: tensors
 * live in C memory the collector cannot see, so we tell it. */
static size_t unseen_bytes = 0;
#define GC_EVERY ((size_t)256 << 20)

/* Makes an empty box; run in a protected call so that a memory error while
 * boxing cannot lose the tensor reference rnl_push was handed. */
static int new_box(lua_State *L) {
  rn_tensor **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL; /* owned only once the metatable is set */
  luaL_setmetatable(L, RNL_TENSOR);
  return 1;
}

void rnl_push(lua_State *L, rn_tensor *t) {
  if (!t) rnl_error(L);
  lua_pushcfunction(L, new_box); /* a light C function: no allocation */
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    rn_release(t);
    lua_error(L);
  }
  rn_tensor **box = lua_touserdata(L, -1);
  *box = t;
  if (rn_anomaly_enabled()) rnl_anomaly_check(L, t); /* may raise; t is boxed */
  if (t->st->refcount == 1) {
    unseen_bytes += t->st->nbytes;
    if (unseen_bytes > GC_EVERY) {
      unseen_bytes = 0;
      lua_gc(L, LUA_GCCOLLECT);
    }
  }
}

int rnl_dim(lua_State *L, lua_Integer d, int ndim, const char *op) {
  if (d >= 1 && d <= ndim) return (int)d - 1;
  if (d < 0 && d >= -ndim) return (int)(ndim + d);
  if (ndim == 0) return rnl_errorf(L, "%s: dim %lld given for a 0-d tensor", op, (long long)d);
  return rnl_errorf(L, "%s: dim %lld out of range 1..%d (or -%d..-1)", op, d, ndim, ndim);
}

static int64_t check_size(lua_State *L, int idx, const char *op, int i) {
  int ok;
  lua_Integer v = lua_tointegerx(L, idx, &ok);
  if (!ok) rnl_errorf(L, "%s: size %d must be an integer, got %s", op, i, luaL_typename(L, idx));
  if (v < 0) rnl_errorf(L, "%s: size %d is %lld; sizes are >= 0", op, i, v);
  return (int64_t)v;
}

int rnl_shape(lua_State *L, int idx, int64_t *shape, const char *op) {
  int n = 0;
  if (lua_istable(L, idx)) {
    lua_Integer len = luaL_len(L, idx);
    if (len > RN_MAXDIM) rnl_errorf(L, "%s: %lld dims; tensors have 0..%d dims", op, len, RN_MAXDIM);
    for (int i = 1; i <= len; i++) {
      lua_geti(L, idx, i);
      shape[n++] = check_size(L, -1, op, i);
      lua_pop(L, 1);
    }
    return n;
  }
  int top = lua_gettop(L);
  for (int i = idx; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
    if (n == RN_MAXDIM) rnl_errorf(L, "%s: more than %d dims", op, RN_MAXDIM);
    shape[n] = check_size(L, i, op, n + 1);
    n++;
  }
  return n;
}

void rnl_opts_check(lua_State *L, int idx, const char *op, const char *const *allowed) {
  if (idx == 0 || lua_isnoneornil(L, idx)) return;
  if (!lua_istable(L, idx))
    rnl_errorf(L, "%s: options must be a table, got %s", op, luaL_typename(L, idx));
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    bool ok = false;
    for (int i = 0; k && allowed[i]; i++)
      if (strcmp(k, allowed[i]) == 0) ok = true;
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; allowed[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, allowed[i]);
      }
      luaL_pushresult(&b);
      rnl_errorf(L, "%s: unknown option '%s' (valid: %s)", op,
                 k ? k : luaL_typename(L, -2), lua_tostring(L, -1));
    }
  }
}

static int get_opt(lua_State *L, int idx, const char *key) {
  if (idx == 0 || lua_isnoneornil(L, idx)) return 0;
  lua_getfield(L, idx, key);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return 0; }
  return 1;
}

lua_Number rnl_opt_number(lua_State *L, int idx, const char *key, lua_Number def, const char *op) {
  if (!get_opt(L, idx, key)) return def;
  if (!lua_isnumber(L, -1))
    rnl_errorf(L, "%s: option '%s' must be a number, got %s", op, key, luaL_typename(L, -1));
  lua_Number v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

lua_Integer rnl_opt_integer(lua_State *L, int idx, const char *key, lua_Integer def, const char *op) {
  if (!get_opt(L, idx, key)) return def;
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok) rnl_errorf(L, "%s: option '%s' must be an integer, got %s", op, key, luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

int rnl_opt_bool(lua_State *L, int idx, const char *key, int def, const char *op) {
  if (!get_opt(L, idx, key)) return def;
  if (!lua_isboolean(L, -1))
    rnl_errorf(L, "%s: option '%s' must be a boolean, got %s", op, key, luaL_typename(L, -1));
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

const char *rnl_opt_string(lua_State *L, int idx, const char *key, const char *def, const char *op) {
  if (!get_opt(L, idx, key)) return def;
  if (lua_type(L, -1) != LUA_TSTRING)
    rnl_errorf(L, "%s: option '%s' must be a string, got %s", op, key, luaL_typename(L, -1));
  const char *v = lua_tostring(L, -1); /* the options table keeps it alive */
  lua_pop(L, 1);
  return v;
}

rn_dtype rnl_dtype(lua_State *L, const char *name, const char *op) {
  rn_dtype dt;
  if (rn_dtype_from_name(name, &dt) < 0)
    rnl_errorf(L, "%s: unknown dtype '%s' (valid: float32, float64, uint8, int32, int64, "
               "bfloat16, float16)", op, name);
  return dt;
}

rn_devtype rnl_device(lua_State *L, const char *name, const char *op) {
  if (strcmp(name, "cpu") == 0) return RN_CPU;
  if (strcmp(name, "cuda") == 0 || strcmp(name, "gpu") == 0 || strcmp(name, "cuda:0") == 0)
    return RN_CUDA;
  return (rn_devtype)rnl_errorf(L, "%s: unknown device '%s' (valid: cpu, cuda)", op, name);
}

void rnl_register(lua_State *L, int rn_idx, int methods_idx, const luaL_Reg *funcs,
                  int as_methods) {
  for (; funcs->name; funcs++) {
    lua_pushcfunction(L, funcs->func);
    if (as_methods) {
      lua_pushvalue(L, -1);
      lua_setfield(L, methods_idx, funcs->name);
    }
    lua_setfield(L, rn_idx, funcs->name);
  }
}
