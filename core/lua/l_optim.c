/* l_optim.c - rn.optim_multi_step(opts, items): the multi-tensor optimizer
 * step (core/ops/optim.c) for lua/rn/optim.lua.
 *
 *   opts:  {kind = "sgd"|"adam", rule = "pytorch"|"keras", lr =,
 *           weight_decay = 0, momentum = 0, dampening = 0, nesterov = false,
 *           beta1 = 0.9, beta2 = 0.999, eps = 1e-8, amsgrad = false,
 *           decoupled = false (AdamW under the pytorch rule),
 *           scalars = nil | a float64 tensor {lr, step} on the parameters'
 *           device, read in place of lr and the items' steps (issue 19)}
 *   items: a list of {p =, g =, s1 =, s2 =, s3 =, step = 0, first = false,
 *           l2 = 0} (see core/optim.h)
 *
 * rn.l2_penalty_multi(tensors, factors): sum_i factors[i] * sum(tensors[i]^2)
 * as a new 0-d tensor (no autograd), one pass (core/ops/optim.c).
 */
#include <stdlib.h>
#include <string.h>

#include "../optim.h"
#include "rnl.h"

static const char *const OPTS[] = {"kind", "rule", "lr", "weight_decay", "momentum", "dampening",
                                   "nesterov", "beta1", "beta2", "eps", "amsgrad", "decoupled",
                                   "scalars", NULL};
static const char *const ITEM[] = {"p", "g", "s1", "s2", "s3", "step", "first", "l2", NULL};

static rn_tensor *item_tensor(lua_State *L, int idx, const char *key, int i, bool need) {
  lua_getfield(L, idx, key);
  rn_tensor *t = rnl_test(L, -1);
  if (!t && (need || !lua_isnil(L, -1)))
    rnl_errorf(L, "optim_multi_step: item %d's %s must be a tensor, got %s", i, key,
               luaL_typename(L, -1));
  lua_pop(L, 1);
  return t; /* the item table keeps it alive */
}

static int l_optim_multi_step(lua_State *L) {
  const char *op = "optim_multi_step";
  rnl_opts_check(L, 1, op, OPTS);
  luaL_checktype(L, 2, LUA_TTABLE);
  rn_mt_hp hp;
  const char *kind = rnl_opt_string(L, 1, "kind", "sgd", op);
  const char *rule = rnl_opt_string(L, 1, "rule", "pytorch", op);
  if (strcmp(kind, "sgd") == 0) hp.kind = RN_MT_SGD;
  else if (strcmp(kind, "adam") == 0) hp.kind = RN_MT_ADAM;
  else return rnl_errorf(L, "%s: kind must be \"sgd\" or \"adam\", got \"%s\"", op, kind);
  if (strcmp(rule, "pytorch") == 0) hp.rule = RN_MT_PYTORCH;
  else if (strcmp(rule, "keras") == 0) hp.rule = RN_MT_KERAS;
  else return rnl_errorf(L, "%s: rule must be \"pytorch\" or \"keras\", got \"%s\"", op, rule);
  hp.lr = rnl_opt_number(L, 1, "lr", 0.01, op);
  hp.weight_decay = rnl_opt_number(L, 1, "weight_decay", 0, op);
  hp.momentum = rnl_opt_number(L, 1, "momentum", 0, op);
  hp.dampening = rnl_opt_number(L, 1, "dampening", 0, op);
  hp.nesterov = rnl_opt_bool(L, 1, "nesterov", 0, op);
  hp.beta1 = rnl_opt_number(L, 1, "beta1", 0.9, op);
  hp.beta2 = rnl_opt_number(L, 1, "beta2", 0.999, op);
  hp.eps = rnl_opt_number(L, 1, "eps", 1e-8, op);
  hp.amsgrad = rnl_opt_bool(L, 1, "amsgrad", 0, op);
  hp.decoupled = rnl_opt_bool(L, 1, "decoupled", 0, op);
  hp.scal = NULL;
  lua_getfield(L, 1, "scalars");
  const rn_tensor *scalars = rnl_test(L, -1); /* opts keeps it alive */
  if (!scalars && !lua_isnil(L, -1))
    return rnl_errorf(L, "%s: scalars must be a tensor, got %s", op, luaL_typename(L, -1));
  lua_pop(L, 1);
  lua_Integer n = luaL_len(L, 2);
  if (n > 1000000) return rnl_errorf(L, "%s: %lld items (at most 1000000)", op, (long long)n);
  /* parse everything first (may raise), then allocate, call, free */
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, 2, i) != LUA_TTABLE)
      return rnl_errorf(L, "%s: item %lld must be a table {p =, g =, ...}", op, (long long)i);
    int t = lua_gettop(L);
    rnl_opts_check(L, t, op, ITEM);
    item_tensor(L, t, "p", (int)i, true);
    item_tensor(L, t, "g", (int)i, true);
    item_tensor(L, t, "s1", (int)i, false);
    item_tensor(L, t, "s2", (int)i, false);
    item_tensor(L, t, "s3", (int)i, false);
    rnl_opt_integer(L, t, "step", 0, op);
    rnl_opt_bool(L, t, "first", 0, op);
    rnl_opt_number(L, t, "l2", 0, op);
    lua_pop(L, 1);
  }
  rn_mt_item *items = calloc(n > 0 ? (size_t)n : 1, sizeof *items);
  if (!items) return rnl_errorf(L, "%s: out of memory", op);
  for (lua_Integer i = 1; i <= n; i++) { /* nothing raises in here: checked above */
    lua_geti(L, 2, i);
    int t = lua_gettop(L);
    rn_mt_item *it = &items[i - 1];
    it->p = item_tensor(L, t, "p", (int)i, true);
    it->g = item_tensor(L, t, "g", (int)i, true);
    it->s1 = item_tensor(L, t, "s1", (int)i, false);
    it->s2 = item_tensor(L, t, "s2", (int)i, false);
    it->s3 = item_tensor(L, t, "s3", (int)i, false);
    it->step = rnl_opt_integer(L, t, "step", 0, op);
    it->first = rnl_opt_bool(L, t, "first", 0, op);
    it->l2 = rnl_opt_number(L, t, "l2", 0, op);
    lua_pop(L, 1);
  }
  int rc = rn_optim_multi_step(&hp, scalars, items, (int)n);
  free(items);
  if (rc < 0) return rnl_error(L);
  return 0;
}

static int l_l2_penalty_multi(lua_State *L) {
  const char *op = "l2_penalty_multi";
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  if (n > 1000000) return rnl_errorf(L, "%s: %lld tensors (at most 1000000)", op, (long long)n);
  if (luaL_len(L, 2) != n)
    return rnl_errorf(L, "%s: %lld tensors but %lld factors", op, (long long)n,
                      (long long)luaL_len(L, 2));
  for (lua_Integer i = 1; i <= n; i++) { /* check first (may raise), then allocate */
    lua_geti(L, 1, i);
    if (!rnl_test(L, -1))
      return rnl_errorf(L, "%s: item %lld must be a tensor, got %s", op, (long long)i,
                        luaL_typename(L, -1));
    lua_geti(L, 2, i);
    if (!lua_isnumber(L, -1))
      return rnl_errorf(L, "%s: factor %lld must be a number, got %s", op, (long long)i,
                        luaL_typename(L, -1));
    lua_pop(L, 2);
  }
  size_t sz = n > 0 ? (size_t)n : 1;
  rn_tensor **ws = calloc(sz, sizeof *ws);
  double *c = calloc(sz, sizeof *c);
  if (!ws || !c) {
    free(ws);
    free(c);
    return rnl_errorf(L, "%s: out of memory", op);
  }
  for (lua_Integer i = 1; i <= n; i++) { /* nothing raises here; the table keeps them alive */
    lua_geti(L, 1, i);
    ws[i - 1] = rnl_test(L, -1);
    lua_geti(L, 2, i);
    c[i - 1] = lua_tonumber(L, -1);
    lua_pop(L, 2);
  }
  rn_tensor *out;
  int rc = rn_l2_penalty_multi(ws, c, (int)n, &out);
  free(ws);
  free(c);
  if (rc < 0) return rnl_error(L);
  rnl_push(L, out);
  return 1;
}

static const luaL_Reg optim_funcs[] = {{"optim_multi_step", l_optim_multi_step},
                                       {"l2_penalty_multi", l_l2_penalty_multi},
                                       {NULL, NULL}};

void rnl_open_optim(lua_State *L, int rn_idx, int methods_idx) {
  rnl_register(L, rn_idx, methods_idx, optim_funcs, 0);
}
