/* l_cpu.c - Lua entry points for the CPU backend's settings and the math
 * precision policy (wrapped as rn.cpu.* and rn.mixed_precision.* by
 * lua/rn/init.lua):
 *   rn.core._cpu_features()          -> {avx2=true, avx512f=..., avx512_bf16=..., amx_bf16=...,
 *                                        isa=, isa_cap=, model=, blas_core=, hw={...}}
 *   rn.core._conv_kernels()          -> {forward=, backward_data=, backward_filter=}
 *   rn.core._conv_kernel_stats([reset]) -> {{direction=, kernel=, calls=}, ...}
 *   rn.core._cpu_memory_stats()      -> {allocated=, reserved=, peak=, cached=, limit=, hits=, misses=}
 *   rn.core._cpu_empty_cache()      (cached blocks and oneDNN primitives)
 *   rn.core._set_conv_impl("auto"|"onednn"|"winograd"|"direct"|"im2col"), rn.core._conv_impl()
 *   rn.core._conv_choices()          -> {{direction=, shape=, ours_ms=, onednn_ms=, chosen=}, ...}
 *   rn.core._set_math_precision("float32"|"bfloat16", cpu_needed), _math_precision() */
#include <cblas.h>
#include <string.h>

#include "../cpu/conv_dnnl.h"
#include "../cpu/wino.h"
#include "rnl.h"

static void set_bool(lua_State *L, const char *k, bool v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
  if (!v) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void push_features(lua_State *L, const rn_cpu_features *f) {
  lua_newtable(L);
  set_bool(L, "fma", f->fma);
  set_bool(L, "avx", f->avx);
  set_bool(L, "avx2", f->avx2);
  set_bool(L, "avx512f", f->avx512f);
  set_bool(L, "avx512bw", f->avx512bw);
  set_bool(L, "avx512vl", f->avx512vl);
  set_bool(L, "avx512_vnni", f->avx512_vnni);
  set_bool(L, "avx512_bf16", f->avx512_bf16);
  set_bool(L, "amx_tile", f->amx_tile);
  set_bool(L, "amx_bf16", f->amx_bf16);
  set_bool(L, "amx_int8", f->amx_int8);
}

/* The features the code may use (after the ISA cap), with what ran them:
 * isa (oneDNN's effective ISA), isa_cap (the environment's cap, absent when
 * none), model (the CPU's name), blas_core (OpenBLAS's kernel set), and hw
 * (the CPU's own features, before the cap). */
static int l_cpu_features(lua_State *L) {
  push_features(L, rn_cpu_features_get());
  set_bool(L, "onednn", rn_dnnl_available());
  set_str(L, "isa", rn_cpu_isa_name());
  set_str(L, "isa_cap", rn_cpu_isa_cap());
  set_str(L, "model", rn_cpu_model());
  set_str(L, "blas_core", openblas_get_corename());
  push_features(L, rn_cpu_features_hw());
  lua_setfield(L, -2, "hw");
  return 1;
}

static const char *const dir_names[] = {"forward", "backward_data", "backward_filter"};

static int l_conv_kernels(lua_State *L) {
  lua_newtable(L);
  for (int d = 0; d < 3; d++) set_str(L, dir_names[d], rn_dnnl_last_kernel(d));
  return 1;
}

static int l_conv_kernel_stats(lua_State *L) {
  bool reset = lua_toboolean(L, 1);
  lua_newtable(L);
  int dir;
  const char *name;
  long long calls;
  for (int i = 0; rn_dnnl_kernel_stat(i, &dir, &name, &calls); i++) {
    lua_createtable(L, 0, 3);
    set_str(L, "direction", dir_names[dir]);
    set_str(L, "kernel", name);
    lua_pushinteger(L, (lua_Integer)calls);
    lua_setfield(L, -2, "calls");
    lua_rawseti(L, -2, i + 1);
  }
  if (reset) rn_dnnl_reset_kernel_stats();
  return 1;
}

static void set_int(lua_State *L, const char *k, size_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static int l_cpu_memory_stats(lua_State *L) {
  rn_cpu_mem_stats s;
  rn_cpu_memory_stats(&s);
  lua_newtable(L);
  set_int(L, "allocated", s.allocated);
  set_int(L, "reserved", s.reserved);
  set_int(L, "peak", s.peak);
  set_int(L, "cached", s.cached);
  set_int(L, "limit", s.limit);
  set_int(L, "hits", s.hits);
  set_int(L, "misses", s.misses);
  return 1;
}

static int l_cpu_empty_cache(lua_State *L) {
  (void)L;
  rn_cpu_empty_cache();
  rn_dnnl_clear_cache();
  rn_wino_clear_cache();
  return 0;
}

/* auto: our Winograd by a fixed rule (16+ channels), oneDNN elsewhere
 * (wino.c); benchmark: per shape, ours or oneDNN, measured; onednn: oneDNN
 * wherever it has a kernel; winograd: ours wherever it applies, oneDNN
 * elsewhere; direct: oneDNN's direct kernels; im2col: conv.c's */
static const char *const impls[] = {"auto",     "im2col",    "direct", "onednn",
                                    "winograd", "benchmark", NULL};

static int l_set_conv_impl(lua_State *L) {
  int i = luaL_checkoption(L, 1, NULL, impls);
  rn_dnnl_set_mode(i == 1 ? RN_DNNL_OFF : i == 2 ? RN_DNNL_DIRECT : RN_DNNL_AUTO);
  rn_wino_set_mode(i == 0   ? RN_WINO_AUTO
                   : i == 4 ? RN_WINO_ALWAYS
                   : i == 5 ? RN_WINO_BENCHMARK
                            : RN_WINO_NEVER);
  return 0;
}

static int l_conv_impl(lua_State *L) {
  rn_dnnl_mode m = rn_dnnl_get_mode();
  rn_wino_mode wm = rn_wino_get_mode();
  if (m == RN_DNNL_OFF) lua_pushstring(L, "im2col");
  else if (m == RN_DNNL_DIRECT) lua_pushstring(L, rn_dnnl_available() ? "onednn-direct" : "im2col");
  else if (wm == RN_WINO_AUTO) lua_pushstring(L, "auto");
  else if (wm == RN_WINO_BENCHMARK) lua_pushstring(L, "benchmark");
  else if (wm == RN_WINO_ALWAYS) lua_pushstring(L, "winograd");
  else lua_pushstring(L, rn_dnnl_available() ? "onednn" : "im2col");
  return 1;
}

static int l_conv_choices(lua_State *L) {
  lua_newtable(L);
  int dir;
  const char *shape;
  double ours_ms, dnnl_ms;
  bool ours;
  for (int i = 0; rn_wino_choice(i, &dir, &shape, &ours_ms, &dnnl_ms, &ours); i++) {
    lua_createtable(L, 0, 5);
    set_str(L, "direction", dir_names[dir]);
    set_str(L, "shape", shape);
    lua_pushnumber(L, ours_ms);
    lua_setfield(L, -2, "ours_ms");
    if (dnnl_ms >= 0) {
      lua_pushnumber(L, dnnl_ms);
      lua_setfield(L, -2, "onednn_ms");
    }
    set_str(L, "chosen", ours ? "ours" : "onednn");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_set_math_precision(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  bool cpu_needed = lua_toboolean(L, 2);
  rn_dtype dt;
  if (!strcmp(name, "float32")) dt = RN_F32;
  else if (!strcmp(name, "bfloat16")) dt = RN_BF16;
  else return rnl_errorf(L, "math precision '%s' is not one of float32, bfloat16", name);
  if (rn_set_math_precision(dt, cpu_needed) < 0) return rnl_errorf(L, "%s", rn_errmsg());
  return 0;
}

static int l_math_precision(lua_State *L) {
  lua_pushstring(L, rn_math_precision() == RN_BF16 ? "bfloat16" : "float32");
  return 1;
}

static const luaL_Reg funcs[] = {
  {"_cpu_features", l_cpu_features}, {"_cpu_memory_stats", l_cpu_memory_stats},
  {"_cpu_empty_cache", l_cpu_empty_cache}, {"_set_conv_impl", l_set_conv_impl},
  {"_conv_impl", l_conv_impl}, {"_set_math_precision", l_set_math_precision},
  {"_math_precision", l_math_precision}, {"_conv_kernels", l_conv_kernels},
  {"_conv_kernel_stats", l_conv_kernel_stats}, {"_conv_choices", l_conv_choices}, {NULL, NULL}};

void rnl_open_cpu(lua_State *L, int rn_idx, int methods_idx) {
  rnl_register(L, rn_idx, methods_idx, funcs, 0);
}
