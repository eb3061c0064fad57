/* l_cuda.c - Lua entry points of the CUDA backend (built with -DRN_WITH_CUDA):
 * rn.core.cuda_memory_stats(), cuda_empty_cache(), cuda_device_name(),
 * cuda_synchronize(); and the allocator's out-of-memory hook, which runs a
 * full garbage collection so that tensors only Lua still holds give their
 * device blocks back before the allocator's last retry.
 *
 * The hook runs inside an allocation made by a C function called from Lua.
 * Collecting there cannot free the tensors that function works on: its
 * arguments are on the Lua stack, and the tensors it made itself are C
 * references, invisible to the collector. The collection runs on the main
 * thread of the state that opened rn.core (lua_gc only uses the thread for
 * running finalizers); a sentinel's __gc unhooks it when that state closes.
 *
 * The Makefile compiles every core/lua/ file; without RN_WITH_CUDA this one is
 * empty (l_init.c does not call rnl_open_cuda then). */
#ifdef RN_WITH_CUDA

#include <string.h>

#include "../cuda/cuda.h"
#include "rnl.h"

static lua_State *gc_state; /* main thread of the state that set the hook */

static int oom_collect(void) {
  if (!gc_state) return 0;
  lua_gc(gc_state, LUA_GCCOLLECT);
  return 1;
}

static int sentinel_gc(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *mt = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (gc_state == mt) {
    gc_state = NULL;
    rn_cuda_oom_hook = NULL;
  }
  return 0;
}

#define SET_INT(name, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, name))

/* rn.core.cuda_memory_stats() -> table of the allocator's counters (bytes
 * and counts); device_free and device_total when a device is in use. */
static int l_memory_stats(lua_State *L) {
  rn_cuda_mem_stats s;
  rn_cuda_memory_stats(&s);
  lua_createtable(L, 0, 16);
  SET_INT("allocated", s.allocated);
  SET_INT("reserved", s.reserved);
  SET_INT("peak_allocated", s.peak_allocated);
  SET_INT("peak_reserved", s.peak_reserved);
  SET_INT("cached_blocks", s.cached_blocks);
  SET_INT("num_allocs", s.num_allocs);
  SET_INT("num_frees", s.num_frees);
  SET_INT("cache_hits", s.cache_hits);
  SET_INT("cuda_mallocs", s.cuda_mallocs);
  SET_INT("cuda_frees", s.cuda_frees);
  SET_INT("oom_retries", s.oom_retries);
  SET_INT("ooms", s.ooms);
  if (rn_cuda_ready()) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
      SET_INT("device_free", fr);
      SET_INT("device_total", tot);
    } else {
      (void)cudaGetLastError();
    }
  }
  return 1;
}

/* rn.core.cuda_empty_cache(): gives every cached block back to the driver. */
static int l_empty_cache(lua_State *L) {
  if (rn_cuda_empty_cache() < 0) return rnl_error(L);
  return 0;
}

/* rn.core.cuda_device_name() -> "NVIDIA H100 80GB HBM3"; raises without a device. */
static int l_device_name(lua_State *L) {
  if (rn_cuda_init() < 0) return rnl_error(L);
  lua_pushstring(L, rn_cuda_device_name());
  return 1;
}

/* rn.core.cuda_synchronize(): waits for all queued device work; raises the
 * first asynchronous kernel error, if any. */
static int l_synchronize(lua_State *L) {
  if (rn_cuda_synchronize() < 0) return rnl_error(L);
  return 0;
}

void rnl_open_cuda(lua_State *L, int rn_idx) {
  static const luaL_Reg funcs[] = {
    {"cuda_memory_stats", l_memory_stats}, {"cuda_empty_cache", l_empty_cache},
    {"cuda_device_name", l_device_name},   {"cuda_synchronize", l_synchronize},
    {NULL, NULL}};
  rn_idx = lua_absindex(L, rn_idx);
  for (const luaL_Reg *f = funcs; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, rn_idx, f->name);
  }
  /* the hook, unset again by a sentinel collected when this state closes
   * (made once per state: replacing it would unhook a live state) */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  gc_state = lua_tothread(L, -1);
  lua_pop(L, 1);
  rn_cuda_oom_hook = oom_collect;
  if (lua_getfield(L, LUA_REGISTRYINDEX, "rn.cuda.oom_sentinel") == LUA_TNIL) {
    lua_newuserdatauv(L, 1, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, sentinel_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "rn.cuda.oom_sentinel");
  }
  lua_pop(L, 1);
}

#else
typedef int rnl_cuda_not_built; /* ISO C wants a declaration in every file */
#endif
