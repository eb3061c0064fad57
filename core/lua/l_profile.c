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
 * scope. */
#include "rnl.h"

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

static const luaL_Reg profile_funcs[] = {
    {"_profile_begin", l_profile_begin},
    {"_profile_set_scope", l_profile_set_scope},
    {"_profile_end", l_profile_end},
    {NULL, NULL},
};

void rnl_open_profile(lua_State *L, int rn_idx, int methods_idx) {
  rnl_register(L, rn_idx, methods_idx, profile_funcs, 0);
}
