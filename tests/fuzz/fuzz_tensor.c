/* fuzz_tensor.c - libFuzzer target for the Lua-facing tensor-from-table
 * constructor rn.tensor(nested table, opts), driven through a small embedded
 * Lua state (luaL_newstate + luaopen_rn_core; one state per input).
 *
 * Input bytes: byte 0 picks the dtype (low 3 bits) and requires_grad (bit 3)
 * and whether the tensor is then printed (bit 4). The rest is a little
 * program building the value passed to rn.tensor, one op per byte (b % 8):
 *   0 open a table   1 close it   2 small integer (next byte, signed)
 *   3 double (next 8 bytes: NaN, inf, denormals...)   4 boolean
 *   5 string         6 a hole (nil at the next index)   7 integer extremes
 * Tables are nested at most 12 deep; whatever is open at the end is closed. */
#include <lauxlib.h>
#include <lua.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lua/rnl.h"

static const char *const dtypes[8] = {"float32", "float64", "uint8", "int32",
                                      "int64", "bfloat16", "float16", "float32"};

typedef struct { const uint8_t *p; size_t n; } rd;

static int next(rd *r) {
  if (!r->n) return -1;
  r->n--;
  return *r->p++;
}

/* Pushes one value; tables recurse. */
static void build(lua_State *L, rd *r, int depth) {
  int b = next(r);
  if (b < 0) { lua_pushinteger(L, 0); return; }
  switch (b % 8) {
  case 0: {
    if (depth >= 12) { lua_pushinteger(L, 1); return; }
    lua_newtable(L);
    lua_Integer i = 1;
    while (r->n && r->p[0] % 8 != 1) {
      if (r->p[0] % 8 == 6) { next(r); i++; continue; } /* hole */
      build(L, r, depth + 1);
      lua_rawseti(L, -2, i++);
      if (i > 100000) break;
    }
    next(r); /* the close */
    return;
  }
  case 1: lua_newtable(L); return; /* stray close: an empty table */
  case 2: { int v = next(r); lua_pushinteger(L, (int8_t)(v < 0 ? 0 : v)); return; }
  case 3: {
    uint8_t buf[8] = {0};
    for (int i = 0; i < 8; i++) { int v = next(r); buf[i] = v < 0 ? 0 : (uint8_t)v; }
    double d;
    memcpy(&d, buf, sizeof d);
    lua_pushnumber(L, d);
    return;
  }
  case 4: lua_pushboolean(L, b & 8); return;
  case 5: lua_pushstring(L, (b & 8) ? "1.5" : "x"); return;
  case 6: lua_pushnil(L); return;
  default: lua_pushinteger(L, (b & 8) ? LUA_MAXINTEGER : LUA_MININTEGER); return;
  }
}

/* Known finding (see doc/reliability.md): rn.tensor sizes the tensor from
 * the first entry at each nesting level and allocates before the fill finds
 * ragged rows, so a small table such as {{1,2,...,2000}, {}} with deep first
 * rows asks for gigabytes. Until l_tensor.c validates the nesting before it
 * allocates, inputs whose first-entry shape implies more than FIRST_CAP
 * elements are not passed on (FUZZ_TENSOR_ALL=1 in the environment passes
 * them, to reproduce). */
#define FIRST_CAP ((int64_t)1 << 22)
static int64_t first_shape_numel(lua_State *L) {
  int64_t numel = 1;
  int pushed = 0;
  while (lua_type(L, -1) == LUA_TTABLE && pushed < 16) {
    int64_t n = (int64_t)lua_rawlen(L, -1);
    if (n == 0) break;
    numel = numel > FIRST_CAP ? numel : numel * n;
    lua_rawgeti(L, -1, 1);
    pushed++;
  }
  lua_pop(L, pushed);
  return numel;
}

static int run(lua_State *L) {
  rd *r = lua_touserdata(L, 1);
  int flags = next(r);
  luaL_requiref(L, "rn.core", luaopen_rn_core, 0);
  lua_getfield(L, -1, "tensor");
  build(L, r, 0);
  if (first_shape_numel(L) > FIRST_CAP && !getenv("FUZZ_TENSOR_ALL")) return 0;
  lua_createtable(L, 0, 2);
  lua_pushstring(L, dtypes[flags & 7]);
  lua_setfield(L, -2, "dtype");
  lua_pushboolean(L, flags & 8);
  lua_setfield(L, -2, "requires_grad");
  lua_call(L, 2, 1);
  if (flags & 16) {
    luaL_tolstring(L, -1, NULL);
    lua_pop(L, 1);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  lua_State *L = luaL_newstate();
  if (!L) return 0;
  rd r = {data, size};
  lua_pushcfunction(L, run);
  lua_pushlightuserdata(L, &r);
  lua_pcall(L, 1, 0, 0); /* errors are expected; crashes and leaks are not */
  lua_close(L);
  return 0;
}
