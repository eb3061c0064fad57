/* l_data.c - the Lua face of the data pipeline (core/data/): rn.data_loader
 * (a rn.DataLoader userdata with :epoch, :num_batches, :size, :batch_size,
 * :sample_shape, :close), rn.data_split, and the test hook
 * rn._data_sample_params that exposes one sample's random draws.
 *
 * Lifetimes: the loader box owns the C loader (threads included) and frees it
 * on :close(), __close or __gc. loader:epoch(e) returns an iterator, nil, nil
 * and an epoch token (rn.DataEpoch) that the generic for holds as its
 * to-be-closed value: leaving the loop early (break, error, return) abandons
 * the epoch at once; a token dropped without a for loop does so when
 * collected. The token keeps its loader alive through its user value. */
#include <limits.h>
#include <string.h>

#include "../data/data.h"
#include "rnl.h"

#define LOADER_MT "rn.DataLoader"
#define EPOCH_MT "rn.DataEpoch"
#define HOLD_MT "rn.DataHold"
#define OP "data_loader"

typedef struct { rn_loader *l; } loader_box;
typedef struct { uint64_t ticket; int64_t next; } epoch_box; /* next: 1-based batch number */
typedef struct { rn_tensor *a, *b; } hold_box; /* owns tensors until they are pushed */

/* ---- helpers -------------------------------------------------------------- */

static rn_loader *check_loader(lua_State *L, int idx) {
  loader_box *box = luaL_checkudata(L, idx, LOADER_MT);
  if (!box->l) rnl_errorf(L, OP ": the loader is closed");
  return box->l;
}

static int hold_gc(lua_State *L) {
  hold_box *h = luaL_checkudata(L, 1, HOLD_MT);
  rn_release(h->a);
  rn_release(h->b);
  h->a = h->b = NULL;
  return 0;
}

static hold_box *new_hold(lua_State *L) {
  hold_box *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->a = h->b = NULL;
  luaL_setmetatable(L, HOLD_MT);
  return h;
}

/* Pushes h->a then h->b (the hold at hidx is removed); leak-free if a push raises. */
static void push_held_pair(lua_State *L, int hidx, hold_box *h) {
  rn_tensor *a = h->a, *b = h->b;
  h->a = NULL; /* rnl_push owns a now, even if boxing fails */
  rnl_push(L, a);
  h->b = NULL;
  rnl_push(L, b); /* if a's push raised, b is still held: release it there */
  lua_remove(L, hidx);
}

/* An integer option that must fit an int (range checks are the core's). */
static int opt_int(lua_State *L, int idx, const char *key, int def, const char *op) {
  lua_Integer v = rnl_opt_integer(L, idx, key, def, op);
  if (v < INT_MIN || v > INT_MAX) rnl_errorf(L, "%s: %s %lld is out of range", op, key, (long long)v);
  return (int)v;
}

/* opts[key] as a list of numbers copied into a scratch userdata left on the
 * stack; NULL when absent. */
static double *opt_numbers(lua_State *L, int idx, const char *key, int *n, const char *op) {
  *n = 0;
  if (lua_isnoneornil(L, idx)) return NULL;
  lua_getfield(L, idx, key);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return NULL; }
  if (!lua_istable(L, -1))
    rnl_errorf(L, "%s: option '%s' must be a table of numbers (one per channel), got %s", op, key,
               luaL_typename(L, -1));
  lua_Integer len = luaL_len(L, -1);
  if (len < 1 || len > 1024) rnl_errorf(L, "%s: option '%s' has %lld values; 1..1024 expected", op, key, (long long)len);
  double *v = lua_newuserdatauv(L, sizeof(double) * (size_t)len, 0);
  for (lua_Integer i = 1; i <= len; i++) {
    lua_geti(L, -2, i);
    if (!lua_isnumber(L, -1))
      rnl_errorf(L, "%s: %s[%lld] must be a number, got %s", op, key, (long long)i, luaL_typename(L, -1));
    v[i - 1] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  lua_remove(L, -2); /* the table; the scratch stays */
  *n = (int)len;
  return v;
}

/* opts[key] = {H, W}; returns 1 and fills h, w, or 0 when absent. */
static int opt_size2(lua_State *L, int idx, const char *key, int *h, int *w, const char *op) {
  if (lua_isnoneornil(L, idx)) return 0;
  lua_getfield(L, idx, key);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return 0; }
  if (!lua_istable(L, -1) || luaL_len(L, -1) != 2)
    rnl_errorf(L, "%s: option '%s' must be a table {H, W}, got %s", op, key, luaL_typename(L, -1));
  int v[2];
  for (int i = 0; i < 2; i++) {
    lua_geti(L, -1, i + 1);
    int ok;
    lua_Integer x = lua_tointegerx(L, -1, &ok);
    if (!ok) rnl_errorf(L, "%s: %s[%d] must be an integer, got %s", op, key, i + 1, luaL_typename(L, -1));
    if (x < 1 || x > 32768) rnl_errorf(L, "%s: %s[%d] = %lld outside 1..32768", op, key, i + 1, (long long)x);
    v[i] = (int)x;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  *h = v[0];
  *w = v[1];
  return 1;
}

/* Fills o from the options table at idx (rn.data_loader's options, also
 * read by the CUDA loader in core/lua/l_cuda.c); op names the caller in
 * errors. The mean/std lists are copied into scratch userdata left on the
 * stack (they must stay there while o is used). */
void rnl_loader_opts(lua_State *L, int idx, const char *op, rn_loader_opts *o) {
  rn_loader_opts_default(o);
  if (!lua_isnoneornil(L, idx)) {
    o->batch_size_is_default = lua_getfield(L, idx, "batch_size") == LUA_TNIL;
    lua_pop(L, 1);
  }
  o->batch_size = rnl_opt_integer(L, idx, "batch_size", o->batch_size, op);
  o->shuffle = rnl_opt_bool(L, idx, "shuffle", o->shuffle, op);
  o->seed = (uint64_t)rnl_opt_integer(L, idx, "seed", 0, op);
  o->drop_last = rnl_opt_bool(L, idx, "drop_last", o->drop_last, op);
  o->pad_crop = opt_int(L, idx, "pad_crop", o->pad_crop, op);
  const char *pm = rnl_opt_string(L, idx, "pad_mode", "zeros", op);
  if (strcmp(pm, "zeros") == 0) o->pad_mode = RN_PAD_ZEROS;
  else if (strcmp(pm, "reflect") == 0) o->pad_mode = RN_PAD_REFLECT;
  else rnl_errorf(L, "%s: pad_mode '%s' unknown (valid: zeros, reflect)", op, pm);
  o->flip = rnl_opt_bool(L, idx, "flip", o->flip, op);
  o->cutout = opt_int(L, idx, "cutout", o->cutout, op);
  opt_size2(L, idx, "out_size", &o->out_h, &o->out_w, op);
  o->workers = opt_int(L, idx, "workers", o->workers, op);
  o->prefetch = opt_int(L, idx, "prefetch", o->prefetch, op);
  o->augment = rnl_opt_bool(L, idx, "augment", o->augment, op);
  lua_Integer fb = rnl_opt_integer(L, idx, "_fail_batch", 0, op);
  o->fail_batch = fb > 0 ? fb - 1 : -1; /* 1-based; 0 = never */
  if (!lua_isnoneornil(L, idx)) {
    lua_getfield(L, idx, "indices");
    if (!lua_isnil(L, -1)) {
      o->indices = rnl_test(L, -1);
      if (!o->indices)
        rnl_errorf(L, "%s: option 'indices' must be an integer tensor of sample ids, got %s", op,
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1); /* the options table keeps the tensor alive */
  }
  o->mean = opt_numbers(L, idx, "mean", &o->nmean, op); /* scratch userdata stays on the stack */
  o->std = opt_numbers(L, idx, "std", &o->nstd, op);
}

/* ---- rn.data_loader ------------------------------------------------------- */

static const char *const loader_opts[] = {
  "batch_size", "shuffle", "seed", "drop_last", "mean", "std", "pad_crop", "pad_mode", "flip",
  "cutout", "out_size", "workers", "prefetch", "indices", "augment", "_fail_batch", NULL};

static int l_data_loader(lua_State *L) {
  rn_tensor *images = rnl_check(L, 1, OP);
  rn_tensor *labels = rnl_check(L, 2, OP);
  rnl_opts_check(L, 3, OP, loader_opts);
  rn_loader_opts o;
  rnl_loader_opts(L, 3, OP, &o); /* the mean/std scratch userdata stays on the stack */

  loader_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->l = NULL;
  luaL_setmetatable(L, LOADER_MT);
  box->l = rn_loader_new(images, labels, &o);
  if (!box->l) rnl_error(L);
  return 1;
}

static int loader_close(lua_State *L) {
  loader_box *box = luaL_checkudata(L, 1, LOADER_MT);
  rn_loader_free(box->l);
  box->l = NULL;
  return 0;
}

static int loader_tostring(lua_State *L) {
  loader_box *box = luaL_checkudata(L, 1, LOADER_MT);
  if (!box->l) {
    lua_pushstring(L, "rn.DataLoader (closed)");
    return 1;
  }
  int64_t s[3];
  rn_loader_sample_shape(box->l, s);
  lua_pushfstring(L, "rn.DataLoader(%I samples, batch_size %I, %I batches of (%I,%I,%I), %d workers)",
                  (lua_Integer)rn_loader_size(box->l), (lua_Integer)rn_loader_batch_size(box->l),
                  (lua_Integer)rn_loader_num_batches(box->l), (lua_Integer)s[0], (lua_Integer)s[1],
                  (lua_Integer)s[2], rn_loader_workers(box->l));
  return 1;
}

/* loader:shard(rank, world): rank 0-based (data.h rn_loader_set_shard) */
static int loader_shard(lua_State *L) {
  rn_loader *l = check_loader(L, 1);
  lua_Integer r = luaL_checkinteger(L, 2), w = luaL_checkinteger(L, 3);
  if (w < 1 || w > 1 << 20 || r < 0 || r >= w)
    return rnl_errorf(L, "shard: rank %lld of world %lld: need 0 <= rank < world", (long long)r, (long long)w);
  if (rn_loader_set_shard(l, (int)r, (int)w) < 0) return rnl_error(L);
  lua_settop(L, 1);
  return 1;
}

static int loader_size(lua_State *L) {
  lua_pushinteger(L, rn_loader_size(check_loader(L, 1)));
  return 1;
}

static int loader_num_batches(lua_State *L) {
  lua_pushinteger(L, rn_loader_num_batches(check_loader(L, 1)));
  return 1;
}

static int loader_batch_size(lua_State *L) {
  lua_pushinteger(L, rn_loader_batch_size(check_loader(L, 1)));
  return 1;
}

static int loader_sample_shape(lua_State *L) {
  int64_t s[3];
  rn_loader_sample_shape(check_loader(L, 1), s);
  lua_createtable(L, 3, 0);
  for (int i = 0; i < 3; i++) {
    lua_pushinteger(L, s[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* ---- epochs --------------------------------------------------------------- */

/* The loader of the token at idx (pushed on the stack), or NULL if closed. */
static rn_loader *token_loader(lua_State *L, int idx) {
  lua_getiuservalue(L, idx, 1);
  loader_box *lb = luaL_testudata(L, -1, LOADER_MT);
  lua_pop(L, 1); /* the token's user value keeps it alive */
  return lb ? lb->l : NULL;
}

static int epoch_close(lua_State *L) {
  epoch_box *e = luaL_checkudata(L, 1, EPOCH_MT);
  rn_loader *l = token_loader(L, 1);
  if (l && e->ticket) rn_loader_abandon(l, e->ticket);
  e->ticket = 0;
  return 0;
}

static int epoch_iter(lua_State *L) {
  epoch_box *e = luaL_checkudata(L, lua_upvalueindex(1), EPOCH_MT);
  rn_loader *l = token_loader(L, lua_upvalueindex(1));
  if (!l) return rnl_errorf(L, OP ": the loader is closed");
  if (!e->ticket) return rnl_errorf(L, OP ": this epoch is over (its loop was left)");
  hold_box *h = new_hold(L);
  int hidx = lua_gettop(L);
  int rc = rn_loader_next(l, e->ticket, &h->a, &h->b);
  if (rc < 0) return rnl_error(L);
  if (rc == 0) {
    lua_pushnil(L);
    return 1;
  }
  push_held_pair(L, hidx, h);
  lua_pushinteger(L, e->next++);
  return 3;
}

/* loader:epoch(e [, skip]) -> iterator, nil, nil, token
 * for x, y, i in loader:epoch(e) do ... end: x (B,OH,OW,C) float32, y (B)
 * int64, i the 1-based batch number. skip: batches to leave out at the start
 * (resuming mid-epoch). */
static int loader_epoch(lua_State *L) {
  rn_loader *l = check_loader(L, 1);
  lua_Integer ep = luaL_checkinteger(L, 2);
  lua_Integer skip = luaL_optinteger(L, 3, 0);
  epoch_box *e = lua_newuserdatauv(L, sizeof *e, 1);
  e->ticket = 0;
  e->next = skip < 0 || skip == LUA_MAXINTEGER ? 0 : skip + 1; /* skip is checked below */
  luaL_setmetatable(L, EPOCH_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  int tok = lua_gettop(L);
  e->ticket = rn_loader_start_epoch(l, (int64_t)ep, (int64_t)skip);
  if (!e->ticket) return rnl_error(L);
  lua_pushvalue(L, tok);
  lua_pushcclosure(L, epoch_iter, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, tok);
  return 4;
}

/* ---- rn.data_split and the test hook --------------------------------------- */

/* rn.data_split(n, fraction [, seed]) -> train_idx, val_idx (int64, sorted) */
static int l_data_split(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_Number frac = luaL_checknumber(L, 2);
  lua_Integer seed = luaL_optinteger(L, 3, 0);
  hold_box *h = new_hold(L);
  int hidx = lua_gettop(L);
  if (rn_data_split((int64_t)n, frac, (uint64_t)seed, &h->a, &h->b) < 0) return rnl_error(L);
  push_held_pair(L, hidx, h);
  return 2;
}

static const char *const params_opts[] = {"pad_crop", "flip", "cutout", "out_size", NULL};

/* rn._data_sample_params(seed, epoch, index, opts) -> {dy=, dx=, flip=, cy=, cx=}
 * (0-based; cy, cx only with opts.out_size). The same draws the loader makes. */
static int l_sample_params(lua_State *L) {
  const char *op = "_data_sample_params";
  lua_Integer seed = luaL_checkinteger(L, 1);
  lua_Integer epoch = luaL_checkinteger(L, 2);
  lua_Integer index = luaL_checkinteger(L, 3);
  rnl_opts_check(L, 4, op, params_opts);
  lua_Integer pad = rnl_opt_integer(L, 4, "pad_crop", 0, op);
  if (pad < 0 || pad > 32767) rnl_errorf(L, "%s: pad_crop %lld outside 0..32767", op, (long long)pad);
  int flip = rnl_opt_bool(L, 4, "flip", 1, op);
  int oh = 1, ow = 1;
  int has_size = opt_size2(L, 4, "out_size", &oh, &ow, op);
  rn_sample_params p;
  rn_data_sample_params((uint64_t)seed, (int64_t)epoch, (int64_t)index, (int)pad, flip, oh, ow, &p);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, p.dy);
  lua_setfield(L, -2, "dy");
  lua_pushinteger(L, p.dx);
  lua_setfield(L, -2, "dx");
  lua_pushboolean(L, p.flip);
  lua_setfield(L, -2, "flip");
  if (has_size) {
    lua_pushinteger(L, p.cy);
    lua_setfield(L, -2, "cy");
    lua_pushinteger(L, p.cx);
    lua_setfield(L, -2, "cx");
  }
  return 1;
}

/* ---- registration ---------------------------------------------------------- */

static const luaL_Reg funcs[] = {
  {"data_loader", l_data_loader}, {"data_split", l_data_split},
  {"_data_sample_params", l_sample_params}, {NULL, NULL}};

void rnl_open_data(lua_State *L, int rn_idx, int methods_idx) {
  rnl_register(L, rn_idx, methods_idx, funcs, 0);

  luaL_newmetatable(L, LOADER_MT);
  static const luaL_Reg loader_meta[] = {
    {"__gc", loader_close}, {"__close", loader_close}, {"__tostring", loader_tostring}, {NULL, NULL}};
  luaL_setfuncs(L, loader_meta, 0);
  static const luaL_Reg loader_methods[] = {
    {"epoch", loader_epoch}, {"num_batches", loader_num_batches}, {"size", loader_size},
    {"batch_size", loader_batch_size}, {"sample_shape", loader_sample_shape},
    {"shard", loader_shard}, {"close", loader_close}, {NULL, NULL}};
  luaL_newlib(L, loader_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newmetatable(L, EPOCH_MT);
  static const luaL_Reg epoch_meta[] = {{"__gc", epoch_close}, {"__close", epoch_close}, {NULL, NULL}};
  luaL_setfuncs(L, epoch_meta, 0);
  lua_pop(L, 1);

  luaL_newmetatable(L, HOLD_MT);
  lua_pushcfunction(L, hold_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}
