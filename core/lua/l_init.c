/* l_init.c - luaopen_rn_core: builds the rn.core table (functions) and the
 * tensor methods table from each family's registration, and records the
 * build's facts (version, CUDA built in). */
#include "rnl.h"

int luaopen_rn_core(lua_State *L) {
  lua_newtable(L); /* rn.core */
  int rn_idx = lua_gettop(L);
  lua_newtable(L); /* tensor methods */
  int methods_idx = lua_gettop(L);
  rnl_open_tensor(L, rn_idx, methods_idx);
  rnl_open_ops(L, rn_idx, methods_idx);
  rnl_open_conv(L, rn_idx, methods_idx);
  rnl_open_nn(L, rn_idx, methods_idx);
  rnl_open_io(L, rn_idx, methods_idx);
  rnl_open_data(L, rn_idx, methods_idx);
  rnl_open_plot(L, rn_idx, methods_idx);
  rnl_open_anomaly(L, rn_idx, methods_idx);
  rnl_open_profile(L, rn_idx, methods_idx);
  rnl_open_optim(L, rn_idx, methods_idx);
  rnl_open_cpu(L, rn_idx, methods_idx);
  rnl_open_determinism(L, rn_idx); /* in l_cuda.c, compiled in every build */
  rnl_open_dist(L, rn_idx);        /* l_dist.c: rn.distributed's core */
  rnl_open_graph(L, rn_idx);       /* l_graph.c: issue 19's step capture */
#ifdef RN_WITH_CUDA
  rnl_open_cuda(L, rn_idx);
#endif
  lua_pushvalue(L, methods_idx);
  lua_setfield(L, rn_idx, "_methods");
  lua_pushstring(L, RN_VERSION);
  lua_setfield(L, rn_idx, "version");
#ifdef RN_WITH_CUDA
  lua_pushboolean(L, 1);
#else
  lua_pushboolean(L, 0);
#endif
  lua_setfield(L, rn_idx, "built_with_cuda");
  lua_pop(L, 1);
  return 1;
}
