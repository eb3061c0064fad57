/* embed.c - librnlua.so's public API (include/rnlua.h): a Lua state with rn
 * loaded, running scripts with tracebacks, and tensors over the program's
 * memory both ways without copies. Compiled only into librnlua.so (mk/lib.mk),
 * never into the rnlua program or the rn.core module. */
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "../../include/rnlua.h"
#include "../lua/rnl.h"

_Static_assert((int)RNLUA_FLOAT32 == (int)RN_F32 && (int)RNLUA_FLOAT64 == (int)RN_F64 &&
               (int)RNLUA_UINT8 == (int)RN_U8 && (int)RNLUA_INT32 == (int)RN_I32 &&
               (int)RNLUA_INT64 == (int)RN_I64 && (int)RNLUA_BFLOAT16 == (int)RN_BF16 &&
               (int)RNLUA_FLOAT16 == (int)RN_F16 && RN_NDTYPES == 7,
               "rnlua_dtype follows rn_dtype");
_Static_assert(RNLUA_MAXDIM == RN_MAXDIM, "RNLUA_MAXDIM is RN_MAXDIM");

#define DIR_MAX (PATH_MAX + 64)

static int has_init(const char *dir) {
  char p[DIR_MAX + 32];
  snprintf(p, sizeof p, "%s/rn/init.lua", dir);
  return access(p, R_OK) == 0;
}

/* The folder holding rn/init.lua, found from this library's own path:
 * <libdir>/../share/rnlua/lua (installed), then <libdir>/../lua (build-pic/
 * in a checkout). Empty when neither holds it. */
static void find_lua_dir(char *out, size_t n) {
  Dl_info info;
  char lib[PATH_MAX], cand[DIR_MAX];
  out[0] = '\0';
  if (n < PATH_MAX) return; /* realpath writes up to PATH_MAX bytes */
  if (!dladdr((void *)find_lua_dir, &info) || !info.dli_fname || !realpath(info.dli_fname, lib))
    return;
  char *slash = strrchr(lib, '/');
  if (slash) *slash = '\0';
  const char *rel[] = {"../share/rnlua/lua", "../lua"};
  for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
    snprintf(cand, sizeof cand, "%s/%s", lib, rel[i]);
    if (has_init(cand) && realpath(cand, out)) return;
  }
  out[0] = '\0';
}

static int open_protected(lua_State *L) {
  const char *dir = lua_tostring(L, 1);
  lua_getglobal(L, "package");
  if (!lua_istable(L, -1)) return luaL_error(L, "rnlua_openlibs: open Lua's package library first (luaL_openlibs)");
  if (dir && dir[0]) {
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, luaL_optstring(L, -1, ""));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
  }
  lua_getfield(L, -1, "preload");
  if (!lua_istable(L, -1)) return luaL_error(L, "rnlua_openlibs: package.preload is not a table");
  lua_pushcfunction(L, luaopen_rn_core);
  lua_setfield(L, -2, "rn.core");
  return 0;
}

int rnlua_openlibs(lua_State *L, const char *lua_dir) {
  char dir[DIR_MAX];
  if (!lua_dir) lua_dir = getenv("RNLUA_LUA_DIR");
  if (!lua_dir || !lua_dir[0]) {
    find_lua_dir(dir, sizeof dir);
    if (!dir[0]) {
      lua_pushstring(L, "rnlua_openlibs: rn's Lua files (rn/init.lua) were not found beside "
                        "librnlua.so (../share/rnlua/lua or ../lua); pass lua_dir or set RNLUA_LUA_DIR");
      return LUA_ERRRUN;
    }
    lua_dir = dir;
  } else if (!has_init(lua_dir)) {
    lua_pushfstring(L, "rnlua_openlibs: %s/rn/init.lua not found", lua_dir);
    return LUA_ERRRUN;
  }
  lua_pushcfunction(L, open_protected);
  lua_pushstring(L, lua_dir);
  return lua_pcall(L, 1, 0, 0);
}

lua_State *rnlua_newstate(void) {
  lua_State *L = luaL_newstate();
  if (!L) return NULL;
  luaL_openlibs(L);
  if (rnlua_openlibs(L, NULL) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}

/* ---- running code ---------------------------------------------------------- */

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the chunk on top (or returns the load error): no results. */
static int run_chunk(lua_State *L, int status) {
  if (status != LUA_OK) return status;
  int base = lua_gettop(L);
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  status = lua_pcall(L, 0, 0, base);
  lua_remove(L, base);
  return status;
}

int rnlua_dofile(lua_State *L, const char *path) {
  return run_chunk(L, luaL_loadfile(L, path));
}

int rnlua_dostring(lua_State *L, const char *code, const char *name) {
  return run_chunk(L, luaL_loadbuffer(L, code, strlen(code), name ? name : "=rnlua"));
}

/* ---- tensors across the boundary ------------------------------------------- */

typedef struct {
  rn_tensor *t;
  int handed; /* rnl_push owns t from here (it releases t if boxing fails) */
} push_ctx;

static int push_protected(lua_State *L) {
  push_ctx *c = lua_touserdata(L, 1);
  /* the tensor metatable exists once rn.core is open */
  if (luaL_getmetatable(L, RNL_TENSOR) == LUA_TNIL) {
    lua_getglobal(L, "require");
    lua_pushstring(L, "rn.core");
    lua_call(L, 1, 0);
  }
  lua_pop(L, 1);
  c->handed = 1;
  rnl_push(L, c->t);
  return 1;
}

int rnlua_push_tensor(lua_State *L, void *data, rnlua_dtype dtype, int ndim,
                      const int64_t *shape, void (*release)(void *ctx), void *ctx) {
  if (ndim < 0 || ndim > RN_MAXDIM || (ndim > 0 && !shape)) {
    lua_pushfstring(L, "rnlua_push_tensor: %d dims; tensors have 0..%d dims (shape not NULL)",
                    ndim, RN_MAXDIM);
    return LUA_ERRRUN;
  }
  rn_clear_error();
  /* release is set only once the tensor is boxed: before that, a failure
   * frees our headers and leaves data to the caller */
  rn_tensor *t = rn_from_external(ndim, shape, (rn_dtype)dtype, data, NULL, NULL);
  if (!t) {
    lua_pushfstring(L, "rnlua_push_tensor: %s", rn_errmsg());
    return LUA_ERRRUN;
  }
  push_ctx c = {t, 0};
  lua_pushcfunction(L, push_protected);
  lua_pushlightuserdata(L, &c);
  int status = lua_pcall(L, 1, 1, 0);
  if (status != LUA_OK) {
    if (!c.handed) rn_release(t);
    return status;
  }
  t->st->release = release;
  t->st->release_ctx = ctx;
  return LUA_OK;
}

int rnlua_tensor_view_get(lua_State *L, int idx, rnlua_tensor_view *out) {
  rn_tensor **box = luaL_testudata(L, idx, RNL_TENSOR);
  if (!box) {
    lua_pushfstring(L, "rnlua_tensor_view_get: stack index %d is a %s, not a tensor", idx,
                    luaL_typename(L, idx));
    return LUA_ERRRUN;
  }
  rn_tensor *t = *box;
  if (!t) {
    lua_pushfstring(L, "rnlua_tensor_view_get: stack index %d is a closed tensor", idx);
    return LUA_ERRRUN;
  }
  if (rn_device(t) != RN_CPU) {
    lua_pushfstring(L, "rnlua_tensor_view_get: the tensor is on %s; move it with x:to(\"cpu\") first",
                    rn_device_name(rn_device(t)));
    return LUA_ERRRUN;
  }
  memset(out, 0, sizeof *out);
  out->data = rn_ptr(t);
  out->dtype = (rnlua_dtype)t->dtype;
  out->ndim = t->ndim;
  for (int i = 0; i < t->ndim; i++) {
    out->shape[i] = t->shape[i];
    out->stride[i] = t->stride[i];
  }
  out->contiguous = rn_is_contiguous(t);
  return LUA_OK;
}
