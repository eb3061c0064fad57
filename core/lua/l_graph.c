/* l_graph.c - issue 19's step capture for lua/rn/graph.lua:
 *   rn.core.capture_guard(kind | nil) -> previous kind: sets the capture
 *     guard (core/capture.h; "mock" for the CPU mock capture), every build;
 *   rn.core.cuda_graph_begin(), cuda_graph_end() -> rn.CudaGraph,
 *     cuda_graph_abort(), g:launch(), g:destroy() (core/cuda/graph.c; only
 *     with RN_WITH_CUDA). A graph not destroyed is destroyed by __gc. */
#include <stdlib.h>
#include <string.h>

#include "../capture.h"
#include "../dcache.h"
#include "rnl.h"
#ifdef RN_WITH_CUDA
#include "../cuda/cuda.h"
#endif

static int l_capture_guard(lua_State *L) {
  const char *prev = rn_capture_kind();
  const char *k = luaL_optstring(L, 1, NULL);
  if (k && strcmp(k, "mock") != 0 && strcmp(k, "cuda") != 0)
    return rnl_errorf(L, "capture_guard: kind must be \"mock\", \"cuda\" or nil, got \"%s\"", k);
  rn_capture_set(!k ? NULL : strcmp(k, "mock") == 0 ? "mock" : "cuda"); /* static strings */
  if (prev) lua_pushstring(L, prev);
  else lua_pushnil(L);
  return 1;
}

static rn_dcache probe_cache = {.free_copy = free};

static int l_dcache_probe(lua_State *L) {
  rn_tensor *t = rnl_check(L, 1, "_dcache_probe");
  uint64_t variant = (uint64_t)luaL_checkinteger(L, 2);
  if (rn_dcache_get(&probe_cache, t, variant)) {
    lua_pushliteral(L, "hit");
    return 1;
  }
  void *copy = malloc(1);
  if (!copy) return rnl_errorf(L, "_dcache_probe: out of memory");
  rn_dcache_put(&probe_cache, t, variant, copy);
  lua_pushliteral(L, "miss");
  return 1;
}

static int l_dcache_clear(lua_State *L) {
  (void)L;
  rn_dcache_clear(&probe_cache);
  return 0;
}

#ifdef RN_WITH_CUDA
#define GRAPH_MT "rn.CudaGraph"

typedef struct {
  rn_cuda_graph *g;
} graph_box;

static int l_graph_begin(lua_State *L) {
  if (rn_cuda_graph_begin() < 0) return rnl_error(L);
  return 0;
}

static int l_graph_abort(lua_State *L) {
  (void)L;
  rn_cuda_graph_abort();
  return 0;
}

static int l_graph_end(lua_State *L) {
  graph_box *box = lua_newuserdatauv(L, sizeof *box, 0); /* before: no leak if this raises */
  box->g = NULL;
  luaL_setmetatable(L, GRAPH_MT);
  box->g = rn_cuda_graph_end();
  if (!box->g) return rnl_error(L);
  return 1;
}

static int graph_launch(lua_State *L) {
  graph_box *box = luaL_checkudata(L, 1, GRAPH_MT);
  if (rn_cuda_graph_launch(box->g) < 0) return rnl_error(L);
  return 0;
}

static int graph_destroy(lua_State *L) {
  graph_box *box = luaL_checkudata(L, 1, GRAPH_MT);
  rn_cuda_graph_destroy(box->g);
  box->g = NULL;
  return 0;
}
#endif

void rnl_open_graph(lua_State *L, int rn_idx) {
  rn_idx = lua_absindex(L, rn_idx);
  lua_pushcfunction(L, l_capture_guard);
  lua_setfield(L, rn_idx, "capture_guard");
  lua_pushcfunction(L, l_dcache_probe);
  lua_setfield(L, rn_idx, "_dcache_probe");
  lua_pushcfunction(L, l_dcache_clear);
  lua_setfield(L, rn_idx, "_dcache_clear");
#ifdef RN_WITH_CUDA
  static const luaL_Reg funcs[] = {{"cuda_graph_begin", l_graph_begin},
                                   {"cuda_graph_end", l_graph_end},
                                   {"cuda_graph_abort", l_graph_abort},
                                   {NULL, NULL}};
  for (const luaL_Reg *f = funcs; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, rn_idx, f->name);
  }
  if (luaL_newmetatable(L, GRAPH_MT)) {
    static const luaL_Reg meta[] = {{"__gc", graph_destroy}, {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    static const luaL_Reg methods[] = {{"launch", graph_launch}, {"destroy", graph_destroy},
                                       {NULL, NULL}};
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
#endif
}
