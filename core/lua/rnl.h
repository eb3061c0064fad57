/* rnl.h - helpers shared by the Lua binding files (core/lua/l_*.c): the tensor
 * userdata box, argument and option parsing, and raising core errors.
 *
 * Leak-free error pattern: check every Lua argument first (these may raise),
 * then call the core (which never raises), then rnl_push() the result, which
 * raises the core's message when the result is NULL. A tensor the binding
 * creates is boxed in a userdata before anything else can raise. */
#ifndef RNL_H
#define RNL_H

#include <lauxlib.h>
#include <lua.h>

#include "../autograd.h"
#include "../backend.h"

#define RNL_TENSOR "rn.Tensor"

int luaopen_rn_core(lua_State *L);

/* The tensor at idx, or a Lua error naming op and the argument. */
rn_tensor *rnl_check(lua_State *L, int idx, const char *op);
rn_tensor *rnl_opt(lua_State *L, int idx, const char *op); /* nil -> NULL */
rn_tensor *rnl_test(lua_State *L, int idx);                /* NULL if not a tensor */
/* Pushes t (takes the reference). t == NULL raises the core's error. */
void rnl_push(lua_State *L, rn_tensor *t);
/* luaL_error with printf formats (%lld, %zu, %g...): luaL_error knows only a
 * few. Prefixes the Lua caller's position like luaL_error. */
int rnl_errorf(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Raises the core's error (after rn_* returned -1/NULL). */
int rnl_error(lua_State *L);

/* Lua dims are 1-based with negatives from the end; returns 0-based, or
 * raises "op: dim 5 out of range 1..4 (or -4..-1)". */
int rnl_dim(lua_State *L, lua_Integer d, int ndim, const char *op);
/* Shape from a table {2,3} or from integers at idx..top. */
int rnl_shape(lua_State *L, int idx, int64_t *shape, const char *op);

/* Options tables: rnl_opts_check raises on a key not in allowed (NULL-ended)
 * or on a non-table. The getters return the default when absent and raise on
 * a wrong type. idx may be 0 or a nil slot: no options. */
void rnl_opts_check(lua_State *L, int idx, const char *op, const char *const *allowed);
lua_Number rnl_opt_number(lua_State *L, int idx, const char *key, lua_Number def, const char *op);
lua_Integer rnl_opt_integer(lua_State *L, int idx, const char *key, lua_Integer def, const char *op);
int rnl_opt_bool(lua_State *L, int idx, const char *key, int def, const char *op);
const char *rnl_opt_string(lua_State *L, int idx, const char *key, const char *def, const char *op);
/* dtype/device names -> enums, raising with the valid names. */
rn_dtype rnl_dtype(lua_State *L, const char *name, const char *op);
rn_devtype rnl_device(lua_State *L, const char *name, const char *op);

/* Registration of op families: functions go into rn.<name>; those in
 * `methods` also become tensor methods (x:name(...)). */
void rnl_register(lua_State *L, int rn_idx, int methods_idx, const luaL_Reg *funcs, int as_methods);

/* Each family file exports its tables. */
void rnl_open_tensor(lua_State *L, int rn_idx, int methods_idx);
void rnl_open_ops(lua_State *L, int rn_idx, int methods_idx);
void rnl_open_conv(lua_State *L, int rn_idx, int methods_idx); /* conv, pooling */
void rnl_open_nn(lua_State *L, int rn_idx, int methods_idx);   /* bn, losses, dense, ... */
void rnl_open_io(lua_State *L, int rn_idx, int methods_idx);   /* files: datasets, checkpoints */
void rnl_open_data(lua_State *L, int rn_idx, int methods_idx); /* batches, augmentation */
void rnl_open_plot(lua_State *L, int rn_idx, int methods_idx); /* PNG canvas */
void rnl_open_anomaly(lua_State *L, int rn_idx, int methods_idx); /* l_anomaly.c */
void rnl_open_profile(lua_State *L, int rn_idx, int methods_idx); /* l_profile.c: _profile_* */
void rnl_open_optim(lua_State *L, int rn_idx, int methods_idx); /* l_optim.c: optim_multi_step */
void rnl_open_cpu(lua_State *L, int rn_idx, int methods_idx); /* l_cpu.c: rn.cpu, precision */
void rnl_open_determinism(lua_State *L, int rn_idx); /* l_cuda.c: rn.set_deterministic, ... */
void rnl_open_dist(lua_State *L, int rn_idx); /* l_dist.c: dist_* (lua/rn/distributed.lua) */
void rnl_open_graph(lua_State *L, int rn_idx); /* l_graph.c: capture guard, CUDA graphs */
/* l_data.c: rn.data_loader's options table at idx into *o (core/data/data.h);
 * leaves the mean/std scratch userdata on the stack */
struct rn_loader_opts;
void rnl_loader_opts(lua_State *L, int idx, const char *op, struct rn_loader_opts *o);
/* Anomaly mode's check of an op result just pushed (l_anomaly.c): raises when
 * it holds a non-finite kind none of the op's tensor arguments held. */
void rnl_anomaly_check(lua_State *L, rn_tensor *t);
/* Test builds (-DRN_ALLOC_FAIL): RN_FAIL_LUA_ALLOC_AT=n fails the n-th Lua
 * allocation (l_allocfail.c); otherwise does nothing. */
void rnl_allocfail_install(lua_State *L);
#ifdef RN_WITH_CUDA
void rnl_open_cuda(lua_State *L, int rn_idx); /* rn.core.cuda_* (core/lua/l_cuda.c) */
#endif

#endif
