/* l_cuda.c - Lua entry points of the CUDA backend (built with -DRN_WITH_CUDA):
 * rn.core.cuda_memory_stats(), cuda_empty_cache(), cuda_device_name(),
 * cuda_synchronize(), cuda_data_loader() (the device-resident data loader,
 * core/cuda/augment.c: a rn.CudaDataLoader userdata); the allocator's
 * out-of-memory hook, which runs a full garbage collection so that tensors
 * only Lua still holds give their device blocks back before the allocator's
 * last retry; and, compiled in every build (rnl_open_determinism),
 * rn.core.set_deterministic(on) -> previous, is_deterministic(),
 * cuda_set_conv_algo{fwd=, bwd_data=, bwd_filter=} and cuda_conv_algo()
 * (core/determinism.h), whose checks need no GPU.
 *
 * The hook runs inside an allocation made by a C function called from Lua.
 * Collecting there cannot free the tensors that function works on: its
 * arguments are on the Lua stack, and the tensors it made itself are C
 * references, invisible to the collector. The collection runs on the main
 * thread of the state that opened rn.core (lua_gc only uses the thread for
 * running finalizers); a sentinel's __gc unhooks it when that state closes.
 *
 * The Makefile compiles every core/lua/ file; without RN_WITH_CUDA only the
 * determinism part is compiled (l_init.c does not call rnl_open_cuda then,
 * and core/lua/l_init.c calls rnl_open_determinism in every build). */
#include <limits.h>
#include <string.h>

#include "../determinism.h"
#include "rnl.h"

/* ---- deterministic mode and the conv algorithm overrides (every build) ---- */


/* rn.core.set_deterministic(on) -> the previous mode */
static int l_set_deterministic(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  bool prev = rn_is_deterministic();
  if (rn_set_deterministic(lua_toboolean(L, 1)) < 0) return rnl_error(L);
  lua_pushboolean(L, prev);
  return 1;
}

static int l_is_deterministic(lua_State *L) {
  lua_pushboolean(L, rn_is_deterministic());
  return 1;
}

static const char *const conv_algo_opts[] = {"fwd", "bwd_data", "bwd_filter", NULL};

/* rn.core.cuda_set_conv_algo{fwd = NAME, bwd_data = NAME, bwd_filter = NAME}:
 * NAME a cuDNN enum suffix or "auto"; absent keys are left as they are. */
static int l_set_conv_algo(lua_State *L) {
  const char *op = "rn.cuda.set_conv_algo";
  luaL_checktype(L, 1, LUA_TTABLE);
  rnl_opts_check(L, 1, op, conv_algo_opts);
  const char *names[RN_CONV_NKINDS];
  for (int k = 0; k < RN_CONV_NKINDS; k++)
    names[k] = rnl_opt_string(L, 1, conv_algo_opts[k], NULL, op); /* kept alive by the table */
  if (rn_set_conv_algos(names) < 0) return rnl_error(L);
  return 0;
}

/* rn.core.cuda_conv_algo() -> {fwd = NAME, bwd_data = NAME, bwd_filter = NAME} */
static int l_conv_algo(lua_State *L) {
  lua_createtable(L, 0, RN_CONV_NKINDS);
  for (int k = 0; k < RN_CONV_NKINDS; k++) {
    int a = rn_conv_algo_forced((rn_conv_kind)k);
    lua_pushstring(L, a < 0 ? "auto" : rn_conv_algo_name((rn_conv_kind)k, a));
    lua_setfield(L, -2, conv_algo_opts[k]);
  }
  return 1;
}

void rnl_open_determinism(lua_State *L, int rn_idx) {
  static const luaL_Reg funcs[] = {
    {"set_deterministic", l_set_deterministic}, {"is_deterministic", l_is_deterministic},
    {"cuda_set_conv_algo", l_set_conv_algo},    {"cuda_conv_algo", l_conv_algo},
    {NULL, NULL}};
  rn_idx = lua_absindex(L, rn_idx);
  for (const luaL_Reg *f = funcs; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, rn_idx, f->name);
  }
}

#ifdef RN_WITH_CUDA

#include "../cuda/cuda.h"

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

/* ---- the device-resident data loader ---------------------------------------- */

#define DLOADER_MT "rn.CudaDataLoader"
#define DOP "data_loader (cuda)"

typedef struct { rn_cuda_dloader *d; } dloader_box;

static rn_cuda_dloader *check_dloader(lua_State *L, int idx) {
  dloader_box *box = luaL_checkudata(L, idx, DLOADER_MT);
  if (!box->d) rnl_errorf(L, DOP ": the loader is closed");
  return box->d;
}

/* the options of rn.data_loader (workers and prefetch accepted, unused) */
static const char *const dloader_opts[] = {
  "batch_size", "shuffle", "seed", "drop_last", "mean", "std", "pad_crop", "pad_mode", "flip",
  "cutout", "out_size", "workers", "prefetch", "indices", "augment", NULL};

/* rn.core.cuda_data_loader(images, labels [, opts]) -> rn.CudaDataLoader:
 * the batches of rn.data_loader(images, labels, opts), made on the device. */
static int l_data_loader(lua_State *L) {
  rn_tensor *images = rnl_check(L, 1, DOP);
  rn_tensor *labels = rnl_check(L, 2, DOP);
  rnl_opts_check(L, 3, DOP, dloader_opts);
  rn_loader_opts o;
  rnl_loader_opts(L, 3, DOP, &o); /* the mean/std scratch userdata stays on the stack */
  dloader_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->d = NULL;
  luaL_setmetatable(L, DLOADER_MT);
  box->d = rn_cuda_dloader_new(images, labels, &o);
  if (!box->d) return rnl_error(L);
  return 1;
}

static int dloader_close(lua_State *L) {
  dloader_box *box = luaL_checkudata(L, 1, DLOADER_MT);
  rn_cuda_dloader_free(box->d);
  box->d = NULL;
  return 0;
}

static int dloader_tostring(lua_State *L) {
  dloader_box *box = luaL_checkudata(L, 1, DLOADER_MT);
  if (!box->d) {
    lua_pushstring(L, "rn.CudaDataLoader (closed)");
    return 1;
  }
  const rn_loader *l = rn_cuda_dloader_spec(box->d);
  int64_t s[3];
  rn_loader_sample_shape(l, s);
  lua_pushfstring(L, "rn.CudaDataLoader(%I samples on cuda, batch_size %I, %I batches of (%I,%I,%I))",
                  (lua_Integer)rn_loader_size(l), (lua_Integer)rn_loader_batch_size(l),
                  (lua_Integer)rn_loader_num_batches(l), (lua_Integer)s[0], (lua_Integer)s[1],
                  (lua_Integer)s[2]);
  return 1;
}

static int dloader_size(lua_State *L) {
  lua_pushinteger(L, rn_loader_size(rn_cuda_dloader_spec(check_dloader(L, 1))));
  return 1;
}

static int dloader_num_batches(lua_State *L) {
  lua_pushinteger(L, rn_loader_num_batches(rn_cuda_dloader_spec(check_dloader(L, 1))));
  return 1;
}

static int dloader_batch_size(lua_State *L) {
  lua_pushinteger(L, rn_loader_batch_size(rn_cuda_dloader_spec(check_dloader(L, 1))));
  return 1;
}

static int dloader_sample_shape(lua_State *L) {
  int64_t s[3];
  rn_loader_sample_shape(rn_cuda_dloader_spec(check_dloader(L, 1)), s);
  lua_createtable(L, 3, 0);
  for (int i = 0; i < 3; i++) {
    lua_pushinteger(L, s[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

#define DHOLD_MT "rn.CudaDataHold"
typedef struct { rn_tensor *t; } dhold_box; /* owns y until it is pushed */

static int dhold_gc(lua_State *L) {
  dhold_box *h = luaL_checkudata(L, 1, DHOLD_MT);
  rn_release(h->t);
  h->t = NULL;
  return 0;
}

/* Pushes x, y of batch b (0-based) of epoch; leak-free if a push raises
 * (rnl_push owns what it is given; y waits in a hold until then). */
static void push_batch(lua_State *L, rn_cuda_dloader *d, lua_Integer epoch, lua_Integer b) {
  dhold_box *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->t = NULL;
  luaL_setmetatable(L, DHOLD_MT);
  int hidx = lua_gettop(L);
  rn_tensor *x;
  if (rn_cuda_dloader_batch(d, (int64_t)epoch, (int64_t)b, &x, &h->t) < 0) rnl_error(L);
  rnl_push(L, x);
  rn_tensor *y = h->t;
  h->t = NULL;
  rnl_push(L, y);
  lua_remove(L, hidx);
}

/* loader:batch(epoch, i) -> x, y: batch i (1-based) of the epoch */
static int dloader_batch(lua_State *L) {
  rn_cuda_dloader *d = check_dloader(L, 1);
  lua_Integer ep = luaL_checkinteger(L, 2), i = luaL_checkinteger(L, 3);
  push_batch(L, d, ep, i > 0 ? i - 1 : -1); /* -1: refused there, without i - 1 overflowing */
  return 2;
}

/* upvalues: the loader, the epoch, the next batch (0-based), the number of batches */
static int dloader_iter(lua_State *L) {
  rn_cuda_dloader *d = check_dloader(L, lua_upvalueindex(1));
  lua_Integer ep = lua_tointeger(L, lua_upvalueindex(2));
  lua_Integer b = lua_tointeger(L, lua_upvalueindex(3));
  if (b >= lua_tointeger(L, lua_upvalueindex(4))) {
    lua_pushnil(L);
    return 1;
  }
  push_batch(L, d, ep, b);
  lua_pushinteger(L, b + 1);
  lua_copy(L, -1, lua_upvalueindex(3));
  return 3;
}

/* loader:epoch(e [, skip]) -> iterator: for x, y, i in loader:epoch(e) do ...
 * end, x (B,OH,OW,C) float32 and y (B) int64 on cuda, i the 1-based batch
 * number; skip batches left out at the start (resuming mid-epoch). */
static int dloader_epoch(lua_State *L) {
  rn_cuda_dloader *d = check_dloader(L, 1);
  lua_Integer ep = luaL_checkinteger(L, 2);
  lua_Integer skip = luaL_optinteger(L, 3, 0);
  lua_Integer nb = rn_loader_num_batches(rn_cuda_dloader_spec(d));
  if (ep < 0) rnl_errorf(L, DOP ": epoch %lld is negative; epochs are numbered from 0 or 1", (long long)ep);
  if (skip < 0 || skip > nb)
    rnl_errorf(L, DOP ": skip %lld outside 0..%lld (the number of batches)", (long long)skip,
               (long long)nb);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, ep);
  lua_pushinteger(L, skip);
  lua_pushinteger(L, nb);
  lua_pushcclosure(L, dloader_iter, 4);
  return 1;
}

void rnl_open_cuda(lua_State *L, int rn_idx) {
  static const luaL_Reg funcs[] = {
    {"cuda_memory_stats", l_memory_stats}, {"cuda_empty_cache", l_empty_cache},
    {"cuda_device_name", l_device_name},   {"cuda_synchronize", l_synchronize},
    {"cuda_data_loader", l_data_loader},   {NULL, NULL}};
  rn_idx = lua_absindex(L, rn_idx);
  if (luaL_newmetatable(L, DLOADER_MT)) {
    static const luaL_Reg meta[] = {
      {"__gc", dloader_close}, {"__close", dloader_close}, {"__tostring", dloader_tostring},
      {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    static const luaL_Reg methods[] = {
      {"epoch", dloader_epoch},         {"batch", dloader_batch},
      {"num_batches", dloader_num_batches}, {"size", dloader_size},
      {"batch_size", dloader_batch_size},   {"sample_shape", dloader_sample_shape},
      {"close", dloader_close},         {NULL, NULL}};
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, DHOLD_MT)) {
    lua_pushcfunction(L, dhold_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
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

#endif
