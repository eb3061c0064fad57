/* l_profile.c - the binding of the reverse-pass profiler (core/autograd.c),
 * used by model:profile (lua/rn/profile.lua):
 *   rn.core._profile_begin()          starts profiling (error if already on)
 *   rn.core._profile_set_scope(id)    id (integer 0..RN_PROFILE_MAXSCOPE, 0 = none)
 *                                     goes into every autograd node made from
 *                                     now on; returns the previous id
 *   rn.core._profile_end()            stops; returns {[scope id] = seconds} of
 *                                     the backward time of the nodes of each
 *                                     scope (scopes without time are absent)
 * Forward times are taken in Lua around each layer call; they do not use the
 * scope.
 * Issue 19, with RN_WITH_CUDA (GPU time from CUDA events, core/cuda/evprof.c):
 *   rn.core._profile_gpu_begin(), _profile_gpu_mark(scope) (from here on the
 *   stream's time goes to scope), _profile_gpu_end() -> {[scope] = seconds},
 *   span seconds; backward nodes are marked scope + _profile_gpu_bwd. */
#include "rnl.h"
#ifdef RN_WITH_CUDA
#include "../cuda/cuda.h"
#endif

#define RN_PROFILE_MAXSCOPE 1000000

static int l_profile_begin(lua_State *L) {
  if (rn_profile_begin() < 0) return rnl_error(L);
  return 0;
}

static int l_profile_set_scope(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  if (id < 0 || id > RN_PROFILE_MAXSCOPE)
    return rnl_errorf(L, "_profile_set_scope: scope id %lld outside 0..%d", (long long)id,
                      RN_PROFILE_MAXSCOPE);
  lua_pushinteger(L, rn_profile_scope);
  rn_profile_scope = (int)id;
  return 1;
}

static int l_profile_end(lua_State *L) {
  rn_profile_end();
  int n;
  const double *t = rn_profile_times(&n);
  lua_createtable(L, 0, 16);
  for (int i = 0; i < n; i++) {
    if (t[i] <= 0) continue;
    lua_pushnumber(L, t[i]);
    lua_rawseti(L, -2, i);
  }
  rn_profile_clear();
  return 1;
}

#ifdef RN_WITH_CUDA
static int l_gpu_begin(lua_State *L) {
  if (rn_cuda_evprof_begin() < 0) return rnl_error(L);
  return 0;
}

static int l_gpu_mark(lua_State *L) {
  lua_Integer s = luaL_checkinteger(L, 1);
  if (s < 0 || s > RN_PROFILE_MAXSCOPE)
    return rnl_errorf(L, "_profile_gpu_mark: scope %lld outside 0..%d", (long long)s,
                      RN_PROFILE_MAXSCOPE);
  if (rn_cuda_evprof_mark((int)s) < 0) return rnl_error(L);
  return 0;
}

static void add_time(void *ctx, int scope, double sec) {
  lua_State *L = ctx; /* the result table is on top */
  lua_rawgeti(L, -1, scope);
  double prev = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
  lua_pop(L, 1);
  lua_pushnumber(L, prev + sec);
  lua_rawseti(L, -2, scope);
}

static int l_gpu_end(lua_State *L) {
  lua_createtable(L, 0, 64);
  double span = 0;
  if (rn_cuda_evprof_end(add_time, L, &span) < 0) return rnl_error(L);
  lua_pushnumber(L, span);
  return 2;
}
#endif

static const luaL_Reg profile_funcs[] = {
#ifdef RN_WITH_CUDA
    {"_profile_gpu_begin", l_gpu_begin},
    {"_profile_gpu_mark", l_gpu_mark},
    {"_profile_gpu_end", l_gpu_end},
#endif
    {"_profile_begin", l_profile_begin},
    {"_profile_set_scope", l_profile_set_scope},
    {"_profile_end", l_profile_end},
    {NULL, NULL},
};

void rnl_open_profile(lua_State *L, int rn_idx, int methods_idx) {
  rn_idx = lua_absindex(L, rn_idx);
  rnl_register(L, rn_idx, methods_idx, profile_funcs, 0);
  lua_pushinteger(L, RN_EVPROF_BWD);
  lua_setfield(L, rn_idx, "_profile_gpu_bwd");
}
