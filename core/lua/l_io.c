/* l_io.c - the file-format functions of rn.core: read_idx, read_cifar10,
 * save_checkpoint / load_checkpoint, save_safetensors / load_safetensors,
 * io_limit, path_kind.
 * Lua arguments are all checked before any C call; what C returns is held in
 * a userdata with __gc (allocated before the call) until it is pushed, so an
 * error at any point leaks nothing. */
#include <string.h>
#include <sys/stat.h>

#include "../io/io.h"
#include "rnl.h"

#define HOLD_MT "rn.io.hold"

/* Results of a C reader held until pushed: up to two tensors and a set. */
typedef struct {
  rn_tensor *t[2];
  rn_tset set;
} hold;

static int hold_gc(lua_State *L) {
  hold *h = luaL_checkudata(L, 1, HOLD_MT);
  rn_release(h->t[0]);
  rn_release(h->t[1]);
  h->t[0] = h->t[1] = NULL;
  rn_tset_free(&h->set);
  return 0;
}

static hold *new_hold(lua_State *L) {
  hold *h = lua_newuserdatauv(L, sizeof *h, 0);
  memset(h, 0, sizeof *h);
  luaL_setmetatable(L, HOLD_MT);
  return h;
}

static const char *check_path(lua_State *L, int idx, const char *op) {
  size_t n;
  if (lua_type(L, idx) != LUA_TSTRING)
    rnl_errorf(L, "%s: path must be a string, got %s", op, luaL_typename(L, idx));
  const char *p = lua_tolstring(L, idx, &n);
  if (n == 0 || strlen(p) != n) rnl_errorf(L, "%s: path is empty or holds a NUL byte", op);
  return p;
}

/* rn.read_idx(path [, {classes=10}]) -> uint8 tensor */
static const char *const idx_opts[] = {"classes", NULL};
static int l_read_idx(lua_State *L) {
  const char *path = check_path(L, 1, "read_idx");
  rnl_opts_check(L, 2, "read_idx", idx_opts);
  lua_Integer classes = rnl_opt_integer(L, 2, "classes", 0, "read_idx");
  if (classes < 0 || classes > 256)
    rnl_errorf(L, "read_idx: classes %lld outside 1..256", (long long)classes);
  rnl_push(L, rn_read_idx(path, classes));
  return 1;
}

/* rn.read_cifar10(path [, {split="train"|"test"}]) -> images, labels */
static const char *const cifar_opts[] = {"split", NULL};
static int l_read_cifar10(lua_State *L) {
  const char *path = check_path(L, 1, "read_cifar10");
  rnl_opts_check(L, 2, "read_cifar10", cifar_opts);
  const char *split = rnl_opt_string(L, 2, "split", "train", "read_cifar10");
  bool train = strcmp(split, "train") == 0;
  if (!train && strcmp(split, "test") != 0)
    rnl_errorf(L, "read_cifar10: split '%s' unknown (valid: train, test)", split);
  hold *h = new_hold(L);
  if (rn_read_cifar10(path, train, &h->t[0], &h->t[1]) < 0) return rnl_error(L);
  for (int i = 0; i < 2; i++) {
    rn_tensor *t = h->t[i];
    h->t[i] = NULL; /* rnl_push owns it now, even if boxing fails */
    rnl_push(L, t);
  }
  return 2;
}

/* Collects {name = tensor} at idx into arrays held by a new userdata (pushed). */
static int collect(lua_State *L, int idx, const char *op, const char ***names, rn_tensor ***ts) {
  if (!lua_istable(L, idx))
    rnl_errorf(L, "%s: tensors must be a table {name = tensor}, got %s", op, luaL_typename(L, idx));
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      rnl_errorf(L, "%s: tensor table keys must be strings, got a %s key", op,
                 luaL_typename(L, -2));
    size_t len;
    const char *k = lua_tolstring(L, -2, &len);
    if (strlen(k) != len) rnl_errorf(L, "%s: tensor name holds a NUL byte", op);
    rn_tensor **box = luaL_testudata(L, -1, RNL_TENSOR);
    if (!box || !*box)
      rnl_errorf(L, "%s: value of '%s' must be a tensor, got %s", op, k,
                 box ? "a closed tensor" : luaL_typename(L, -1));
    lua_pop(L, 1);
    if (n == 1000000) rnl_errorf(L, "%s: too many tensors", op);
    n++;
  }
  void **arr = lua_newuserdatauv(L, sizeof(void *) * 2 * (size_t)(n ? n : 1), 0);
  *names = (const char **)arr;
  *ts = (rn_tensor **)(arr + n);
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    (*names)[i] = lua_tostring(L, -2); /* anchored by the table */
    (*ts)[i] = *(rn_tensor **)lua_touserdata(L, -1);
    i++;
    lua_pop(L, 1);
  }
  return n;
}

/* rn.save_checkpoint(path, {name = tensor}, meta_string [, {level = 1}]) */
static const char *const ckpt_opts[] = {"level", NULL};
static int l_save_checkpoint(lua_State *L) {
  const char *path = check_path(L, 1, "save_checkpoint");
  size_t meta_len = 0;
  const char *meta = "";
  if (!lua_isnoneornil(L, 3)) {
    if (lua_type(L, 3) != LUA_TSTRING)
      rnl_errorf(L, "save_checkpoint: metadata must be a string, got %s", luaL_typename(L, 3));
    meta = lua_tolstring(L, 3, &meta_len);
  }
  rnl_opts_check(L, 4, "save_checkpoint", ckpt_opts);
  lua_Integer level = rnl_opt_integer(L, 4, "level", 1, "save_checkpoint");
  if (level < 0 || level > 9) rnl_errorf(L, "save_checkpoint: level %lld outside 0..9", (long long)level);
  const char **names;
  rn_tensor **ts;
  int n = collect(L, 2, "save_checkpoint", &names, &ts);
  if (rn_ckpt_save(path, n, names, ts, meta, meta_len, (int)level) < 0) return rnl_error(L);
  return 0;
}

/* Pushes the set's tensors as a table {name = tensor}. */
static void push_set(lua_State *L, hold *h) {
  lua_createtable(L, 0, h->set.n);
  for (int i = 0; i < h->set.n; i++) {
    rn_tensor *t = h->set.ts[i];
    h->set.ts[i] = NULL; /* rnl_push owns it now, even if boxing fails */
    rnl_push(L, t);
    lua_setfield(L, -2, h->set.names[i]);
  }
}

/* rn.load_checkpoint(path) -> {name = tensor}, meta_string */
static int l_load_checkpoint(lua_State *L) {
  const char *path = check_path(L, 1, "load_checkpoint");
  hold *h = new_hold(L);
  if (rn_ckpt_load(path, &h->set) < 0) return rnl_error(L);
  push_set(L, h);
  lua_pushlstring(L, h->set.meta, h->set.meta_len);
  return 2;
}

/* rn.save_safetensors(path, {name = tensor} [, {key = string}]) */
static int l_save_safetensors(lua_State *L) {
  const char *path = check_path(L, 1, "save_safetensors");
  if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
    rnl_errorf(L, "save_safetensors: metadata must be a table {key = string}, got %s",
               luaL_typename(L, 3));
  const char **names;
  rn_tensor **ts;
  int n = collect(L, 2, "save_safetensors", &names, &ts);
  /* metadata: strings kept (numbers and booleans converted) in an anchored table */
  int nm = 0;
  lua_newtable(L);
  int conv = lua_gettop(L);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        rnl_errorf(L, "save_safetensors: metadata keys must be strings, got a %s key",
                   luaL_typename(L, -2));
      int t = lua_type(L, -1);
      if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
        rnl_errorf(L, "save_safetensors: metadata '%s' must be a string, number or boolean, got %s",
                   lua_tostring(L, -2), luaL_typename(L, -1));
      size_t kl, vl;
      const char *k = lua_tolstring(L, -2, &kl);
      lua_pushvalue(L, -2);
      luaL_tolstring(L, -2, &vl);
      if (strlen(k) != kl || strlen(lua_tostring(L, -1)) != vl)
        rnl_errorf(L, "save_safetensors: metadata '%s' holds a NUL byte", k);
      lua_settable(L, conv);
      lua_pop(L, 1);
      nm++;
    }
  }
  const char **mk = lua_newuserdatauv(L, sizeof(char *) * 2 * (size_t)(nm ? nm : 1), 0);
  const char **mv = mk + nm;
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, conv)) {
    mk[i] = lua_tostring(L, -2);
    mv[i] = lua_tostring(L, -1);
    i++;
    lua_pop(L, 1);
  }
  if (rn_st_save(path, n, names, ts, nm, mk, mv) < 0) return rnl_error(L);
  return 0;
}

/* rn.load_safetensors(path) -> {name = tensor}, {key = string} */
static int l_load_safetensors(lua_State *L) {
  const char *path = check_path(L, 1, "load_safetensors");
  hold *h = new_hold(L);
  if (rn_st_load(path, &h->set) < 0) return rnl_error(L);
  push_set(L, h);
  lua_createtable(L, 0, h->set.nmeta);
  for (int i = 0; i < h->set.nmeta; i++) {
    lua_pushstring(L, h->set.mvals[i]);
    lua_setfield(L, -2, h->set.mkeys[i]);
  }
  return 2;
}

/* rn.io_limit([bytes]) -> the limit before the call: the most bytes one
 * tensor read from a file may claim (readers refuse headers above it). */
static int l_io_limit(lua_State *L) {
  lua_Integer old = (lua_Integer)rn_io_limit();
  if (!lua_isnoneornil(L, 1)) {
    if (!lua_isinteger(L, 1))
      rnl_errorf(L, "io_limit: bytes must be an integer, got %s", luaL_typename(L, 1));
    lua_Integer b = lua_tointeger(L, 1);
    if (b < 1) rnl_errorf(L, "io_limit: bytes %lld must be >= 1", (long long)b);
    rn_io_set_limit((uint64_t)b);
  }
  lua_pushinteger(L, old);
  return 1;
}

/* rn.path_kind(path) -> "file" | "folder" | "other" | nil (no such path):
 * a stat, so it never blocks, whatever the path is. */
static int l_path_kind(lua_State *L) {
  const char *p = check_path(L, 1, "path_kind");
  struct stat st;
  if (stat(p, &st) < 0) { lua_pushnil(L); return 1; }
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "folder" : "other");
  return 1;
}

static const luaL_Reg io_funcs[] = {
    {"io_limit", l_io_limit},
    {"path_kind", l_path_kind},
    {"read_idx", l_read_idx},
    {"read_cifar10", l_read_cifar10},
    {"save_checkpoint", l_save_checkpoint},
    {"load_checkpoint", l_load_checkpoint},
    {"save_safetensors", l_save_safetensors},
    {"load_safetensors", l_load_safetensors},
    {NULL, NULL},
};

void rnl_open_io(lua_State *L, int rn_idx, int methods_idx) {
  if (luaL_newmetatable(L, HOLD_MT)) {
    lua_pushcfunction(L, hold_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  rnl_register(L, rn_idx, methods_idx, io_funcs, 0);
}
