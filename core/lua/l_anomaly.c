/* l_anomaly.c - anomaly mode for the binding: rn.set_anomaly(on) and
 * rn.is_anomaly_enabled(). While on:
 *  - every autograd node records the Lua line of its forward call (through
 *    rn_where_hook; the "file:line" strings are interned here and freed when
 *    the Lua state closes);
 *  - rnl_push() calls rnl_anomaly_check() on each op result: a result holding
 *    a kind of non-finite value (nan, or inf) that none of the op's tensor
 *    arguments held raises "anomaly: log produced nan at train.lua:12" (the
 *    arguments: the tensors on the C function's stack, and those in a table
 *    given as argument 1);
 *    results of ops without tensor arguments (rn.tensor, rn.full, loaders)
 *    are not checked, so non-finite values can be made on purpose;
 *  - the reverse pass checks each node's input gradients (core/autograd.c).
 * The line is the first frame outside the rn Lua library (lua/rn/), with the
 * library frame that made the call added: "train.lua:30 (in rn/layers.lua:88)".
 * Lines are looked up on the Lua state that turned anomaly mode on (ops run
 * in a coroutine report the line that resumed it). */
#include <stdlib.h>
#include <string.h>

#include "rnl.h"

/* ---- interned "file:line" strings ---------------------------------------- */
static char **pool;
static size_t pool_cap, pool_n; /* open addressing; cap a power of two */
static lua_State *where_L;

static size_t hash(const char *s) {
  size_t h = 1469598103934665603u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
  return h;
}

/* The pooled copy of s, or NULL when out of memory. */
static const char *intern(const char *s) {
  if (pool_n * 2 >= pool_cap) {
    size_t cap = pool_cap ? pool_cap * 2 : 256;
    char **np = calloc(cap, sizeof *np);
    if (!np) return NULL;
    for (size_t i = 0; i < pool_cap; i++)
      if (pool[i]) {
        size_t j = hash(pool[i]) & (cap - 1);
        while (np[j]) j = (j + 1) & (cap - 1);
        np[j] = pool[i];
      }
    free(pool);
    pool = np;
    pool_cap = cap;
  }
  size_t j = hash(s) & (pool_cap - 1);
  for (; pool[j]; j = (j + 1) & (pool_cap - 1))
    if (strcmp(pool[j], s) == 0) return pool[j];
  pool[j] = strdup(s);
  if (pool[j]) pool_n++;
  return pool[j];
}

static void pool_free(void) {
  for (size_t i = 0; i < pool_cap; i++) free(pool[i]);
  free(pool);
  pool = NULL;
  pool_cap = pool_n = 0;
}

/* ---- where: the Lua line of the call ------------------------------------- */
static bool in_library(const lua_Debug *ar) {
  const char *p = strstr(ar->source, "lua/rn/");
  /* lua/rn/x.lua, or one level down: lua/rn/layers/x.lua */
  const char *q = p ? strchr(p + 7, '/') : NULL;
  return ar->source[0] == '@' && p && (!q || !strchr(q + 1, '/'));
}

/* Writes "file:line" (or "file:line (in rn/x.lua:n)") of the first Lua frame
 * above level 0 into buf; "" when there is none. */
static void where_of(lua_State *L, char *buf, size_t n) {
  lua_Debug ar;
  char lib[200] = "";
  buf[0] = 0;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline < 0) continue; /* C frames */
    if (in_library(&ar)) {
      if (!lib[0]) snprintf(lib, sizeof lib, "%s:%d", strstr(ar.source, "lua/rn/") + 4, ar.currentline);
      continue;
    }
    if (lib[0]) snprintf(buf, n, "%s:%d (in %s)", ar.short_src, ar.currentline, lib);
    else snprintf(buf, n, "%s:%d", ar.short_src, ar.currentline);
    return;
  }
  if (lib[0]) snprintf(buf, n, "%s", lib);
}

static const char *where_hook(void) {
  if (!where_L) return NULL;
  char buf[512];
  where_of(where_L, buf, sizeof buf);
  return buf[0] ? intern(buf) : NULL;
}

/* ---- forward check (called by rnl_push while anomaly mode is on) ---------- */
static int flags_of(lua_State *L, int idx, int *any) {
  rn_tensor *t = rnl_test(L, idx);
  if (!t) return 0;
  *any = 1;
  int f = rn_nonfinite(t);
  return f < 0 ? 0 : f;
}

void rnl_anomaly_check(lua_State *L, rn_tensor *t) {
  int out = rn_nonfinite(t);
  if (out <= 0) { if (out < 0) rn_clear_error(); return; }
  int in = 0, any = 0, top = lua_gettop(L) - 1; /* the result is on top */
  for (int i = 1; i <= top; i++) {
    if (i == 1 && lua_type(L, i) == LUA_TTABLE) { /* rn.concat({a, b}) */
      for (int k = 1; k <= 64 && lua_rawgeti(L, i, k) != LUA_TNIL; k++) {
        in |= flags_of(L, -1, &any);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    } else {
      in |= flags_of(L, i, &any);
    }
  }
  int fresh = out & ~in;
  if (!any || !fresh) return;
  lua_Debug ar;
  const char *op = NULL;
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar)) op = ar.name;
  char where[512];
  where_of(L, where, sizeof where);
  lua_pushfstring(L, "anomaly: %s produced %s at %s", op ? op : "an op",
                  fresh & RN_NONFINITE_NAN ? "nan" : "inf", where[0] ? where : "?");
  lua_error(L);
}

/* ---- Lua functions ------------------------------------------------------- */
#define CLOSER "rn.anomaly.closer"

static int closer_gc(lua_State *L) {
  (void)L;
  rn_set_anomaly(false);
  rn_where_hook = NULL;
  where_L = NULL;
  pool_free();
  return 0;
}

/* rn.set_anomaly(on) -> previous setting */
static int l_set_anomaly(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  bool on = lua_toboolean(L, 1);
  lua_pushboolean(L, rn_anomaly_enabled());
  if (on) {
    /* one closer per state: frees the pool at lua_close */
    if (lua_getfield(L, LUA_REGISTRYINDEX, CLOSER) == LUA_TNIL) {
      lua_newuserdatauv(L, 1, 0);
      luaL_newmetatable(L, CLOSER);
      lua_pushcfunction(L, closer_gc);
      lua_setfield(L, -2, "__gc");
      lua_setmetatable(L, -2);
      lua_setfield(L, LUA_REGISTRYINDEX, CLOSER);
    }
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    where_L = lua_tothread(L, -1);
    lua_pop(L, 1);
    rn_where_hook = where_hook;
  } else {
    rn_where_hook = NULL; /* nodes keep their pooled strings */
  }
  rn_set_anomaly(on);
  return 1;
}

static int l_is_anomaly_enabled(lua_State *L) {
  lua_pushboolean(L, rn_anomaly_enabled());
  return 1;
}

static const luaL_Reg anomaly_funcs[] = {
    {"set_anomaly", l_set_anomaly},
    {"is_anomaly_enabled", l_is_anomaly_enabled},
    {NULL, NULL},
};

/* Registers the functions; also installs the test builds' Lua allocator
 * failure injection (l_allocfail.c; nothing in normal builds). */
void rnl_open_anomaly(lua_State *L, int rn_idx, int methods_idx) {
  rnl_register(L, rn_idx, methods_idx, anomaly_funcs, 0);
  rnl_allocfail_install(L);
}
