/* l_dist.c - rn.core's distributed functions (core/dist/dist.h), wrapped
 * by lua/rn/distributed.lua: init and the rank queries, the collectives on
 * tensors (in place), the differentiable allreduce of synchronized batch
 * norm, and the gradient reducer as a userdata box (freed by __gc). */
#include <string.h>

#include "../dist/dist.h"
#include "rnl.h"

#define REDUCER_MT "rn.DistReducer"

typedef struct { rn_reducer *r; } reducer_box;

static int l_compiled(lua_State *L) { lua_pushboolean(L, rn_dist_compiled()); return 1; }

static int l_launcher_size(lua_State *L) {
  const char *var = NULL;
  lua_pushinteger(L, rn_dist_launcher_size(&var));
  if (var) lua_pushstring(L, var); else lua_pushnil(L);
  return 2;
}

static int l_init(lua_State *L) {
  const char *backend = luaL_optstring(L, 1, NULL);
  lua_Number timeout = luaL_optnumber(L, 2, 0);
  if (timeout < 0 || timeout != timeout)
    return rnl_errorf(L, "distributed.init: timeout must be a number of seconds > 0, got %g", (double)timeout);
  if (rn_dist_init(backend, timeout) < 0) return rnl_error(L);
  return 0;
}

static int l_initialized(lua_State *L) { lua_pushboolean(L, rn_dist_initialized()); return 1; }
static int l_info(lua_State *L) {
  lua_pushinteger(L, rn_dist_rank());
  lua_pushinteger(L, rn_dist_world());
  lua_pushinteger(L, rn_dist_local_rank());
  lua_pushinteger(L, rn_dist_local_size());
  const char *b = rn_dist_backend();
  if (b) lua_pushstring(L, b); else lua_pushnil(L);
  lua_pushnumber(L, rn_dist_timeout());
  return 6;
}

static int l_set_timeout(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  if (!(s > 0)) return rnl_errorf(L, "distributed.set_timeout: %g is not a number of seconds > 0", (double)s);
  rn_dist_set_timeout(s);
  return 0;
}

static int l_set_step(lua_State *L) { rn_dist_set_step(luaL_checkinteger(L, 1)); return 0; }
static int l_comm_seconds(lua_State *L) { lua_pushnumber(L, rn_dist_comm_seconds()); return 1; }

static int l_barrier(lua_State *L) {
  if (rn_dist_barrier() < 0) return rnl_error(L);
  return 0;
}

/* dist_allreduce(t, "sum"|"max"|"min" [, what]) -> t */
static int l_allreduce(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "allreduce");
  static const char *const ops[] = { "sum", "max", "min", NULL };
  int op = luaL_checkoption(L, 2, "sum", ops);
  const char *what = luaL_optstring(L, 3, "allreduce");
  if (t->requires_grad && rn_grad_enabled())
    return rnl_errorf(L, "%s: the tensor requires grad (run it under rn.no_grad, or on a detached copy)", what);
  if (rn_dist_allreduce(t, (rn_dist_op)op, what, true) < 0) return rnl_error(L);
  lua_settop(L, 1);
  return 1;
}

static int l_broadcast(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "broadcast");
  lua_Integer root = luaL_optinteger(L, 2, 0);
  const char *what = luaL_optstring(L, 3, "broadcast");
  if (t->requires_grad && rn_grad_enabled())
    return rnl_errorf(L, "%s: the tensor requires grad (run it under rn.no_grad)", what);
  if (root < 0 || root >= rn_dist_world())
    return rnl_errorf(L, "%s: root %lld outside 0..%d", what, (long long)root, rn_dist_world() - 1);
  if (rn_dist_broadcast(t, (int)root, what, true) < 0) return rnl_error(L);
  lua_settop(L, 1);
  return 1;
}

static int l_all_gather(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "all_gather");
  rnl_push(L, rn_dist_all_gather(t, "all_gather"));
  return 1;
}

static int l_allreduce_ad(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "allreduce");
  rnl_push(L, rn_dist_allreduce_sum_ad(t));
  return 1;
}

/* dist_check_same(count, text, what, unit): FNV-1a of text compared across ranks */
static int l_check_same(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  const char *what = luaL_checkstring(L, 3), *unit = luaL_checkstring(L, 4);
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < len; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ULL; }
  if (rn_dist_check_same(n, h, what, unit) < 0) return rnl_error(L);
  return 0;
}

static int l_finalize(lua_State *L) {
  if (rn_dist_finalize() < 0) return rnl_error(L);
  return 0;
}

/* ---- the reducer ----------------------------------------------------------- */

static rn_reducer *check_reducer(lua_State *L) {
  reducer_box *b = luaL_checkudata(L, 1, REDUCER_MT);
  if (!b->r) luaL_error(L, "DataParallel: the reducer is closed");
  return b->r;
}

/* dist_reducer({params...}, first_mb, cap_mb, overlap) */
static int l_reducer(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Number first = luaL_checknumber(L, 2), cap = luaL_checknumber(L, 3);
  int overlap = lua_toboolean(L, 4);
  if (!(first > 0) || !(cap > 0) || cap > 2048)
    return rnl_errorf(L, "DataParallel: bucket sizes must be in (0, 2048] MB, got %g and %g", (double)first,
                      (double)cap);
  lua_Integer n = luaL_len(L, 1);
  if (n < 1 || n > 1 << 20) return rnl_errorf(L, "DataParallel: %lld parameters", (long long)n);
  rn_tensor **ps = lua_newuserdatauv(L, sizeof *ps * (size_t)n, 0); /* scratch, collected */
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    ps[i - 1] = rnl_check(L, -1, "DataParallel");
    lua_pop(L, 1);
  }
  reducer_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->r = NULL;
  luaL_setmetatable(L, REDUCER_MT);
  b->r = rn_reducer_new((int)n, ps, (int64_t)(first * 1048576), (int64_t)(cap * 1048576), overlap);
  if (!b->r) return rnl_error(L);
  return 1;
}

static int reducer_gc(lua_State *L) {
  reducer_box *b = luaL_checkudata(L, 1, REDUCER_MT);
  rn_reducer_free(b->r);
  b->r = NULL;
  return 0;
}

static int reducer_begin(lua_State *L) {
  rn_reducer *r = check_reducer(L);
  if (rn_reducer_begin(r, luaL_checkinteger(L, 2)) < 0) return rnl_error(L);
  return 0;
}

static int reducer_finish(lua_State *L) {
  if (rn_reducer_finish(check_reducer(L)) < 0) return rnl_error(L);
  return 0;
}

static int reducer_stats(lua_State *L) {
  rn_reducer_stats s;
  rn_reducer_stats_get(check_reducer(L), &s);
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, s.comm_s); lua_setfield(L, -2, "comm_s");
  lua_pushnumber(L, s.wait_s); lua_setfield(L, -2, "wait_s");
  lua_pushnumber(L, s.backward_s); lua_setfield(L, -2, "backward_s");
  lua_pushinteger(L, s.steps); lua_setfield(L, -2, "steps");
  lua_pushinteger(L, s.bytes); lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, s.nbuckets); lua_setfield(L, -2, "buckets");
  return 1;
}

static const luaL_Reg funcs[] = {
  {"dist_compiled", l_compiled}, {"dist_launcher_size", l_launcher_size}, {"dist_init", l_init},
  {"dist_initialized", l_initialized}, {"dist_info", l_info}, {"dist_set_timeout", l_set_timeout},
  {"dist_set_step", l_set_step}, {"dist_comm_seconds", l_comm_seconds}, {"dist_barrier", l_barrier},
  {"dist_allreduce", l_allreduce}, {"dist_broadcast", l_broadcast}, {"dist_all_gather", l_all_gather},
  {"dist_allreduce_ad", l_allreduce_ad}, {"dist_check_same", l_check_same}, {"dist_finalize", l_finalize},
  {"dist_reducer", l_reducer}, {NULL, NULL}};

void rnl_open_dist(lua_State *L, int rn_idx) {
  rnl_register(L, rn_idx, 0, funcs, 0);
  luaL_newmetatable(L, REDUCER_MT);
  static const luaL_Reg meta[] = { {"__gc", reducer_gc}, {"__close", reducer_gc}, {NULL, NULL} };
  luaL_setfuncs(L, meta, 0);
  static const luaL_Reg methods[] = {
    {"begin", reducer_begin}, {"finish", reducer_finish}, {"stats", reducer_stats}, {"close", reducer_gc},
    {NULL, NULL}};
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
