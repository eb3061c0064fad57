/* l_nn.c - Lua entry points of the neural-network ops:
 *   rn.batch_norm(x, gamma, beta, running_mean, running_var,
 *                 {training=true, momentum=0.99, eps=1e-3, unbiased=false})
 *   rn.softmax(x, dim=-1), rn.log_softmax(x, dim=-1)
 *   rn.cross_entropy(logits, labels, {label_smoothing=0, reduction="mean"})
 *   rn.matmul(a, b), rn.linear(x, w, b)
 *   rn.dropout(x, p=0.5, {training=true})
 *   rn.layer_norm(x, gamma, beta, {eps=1e-5, dims=k}),
 *   rn.group_norm(x, groups, gamma, beta, {eps=1e-5}), rn.embedding(indices, weight)
 *   rn.scaled_dot_product_attention(q, k, v, {mask=, causal=, scale=, dropout=0})
 *   rn.pad(x, {{before, after}, ...}, {mode=, value=}), rn.resize(x, {OH, OW},
 *   {method=}), rn.upsample(x, factor | {fh, fw}, {method=})
 * (also tensor methods: x:softmax(), a:matmul(b), ...), and
 *   rn.concat({t1, t2, ...}, dim=1)      (a function only)
 * Dims are 1-based, negatives count from the end. Every Lua argument is
 * checked before the core runs (see rnl.h). */
#include <string.h>

#include "rnl.h"

/* ---- batch norm ---------------------------------------------------------- */

static const char *const bn_opts[] = {"training", "momentum", "eps", "relu", "unbiased", NULL};

static int l_batch_norm(lua_State *L) {
  const char *op = "batch_norm";
  rn_tensor *x = rnl_check(L, 1, op);
  rn_tensor *gamma = rnl_opt(L, 2, op), *beta = rnl_opt(L, 3, op);
  rn_tensor *rm = rnl_opt(L, 4, op), *rv = rnl_opt(L, 5, op);
  rnl_opts_check(L, 6, op, bn_opts);
  bool training = rnl_opt_bool(L, 6, "training", 1, op);
  double momentum = rnl_opt_number(L, 6, "momentum", 0.99, op);
  double eps = rnl_opt_number(L, 6, "eps", 1e-3, op);
  bool relu = rnl_opt_bool(L, 6, "relu", 0, op);
  bool unbiased = rnl_opt_bool(L, 6, "unbiased", 0, op);
  rnl_push(L, (relu ? rn_batch_norm_relu : rn_batch_norm)(x, gamma, beta, rm, rv, training,
                                                          momentum, unbiased, eps));
  return 1;
}

/* ---- layer and group norm ------------------------------------------------ */

static const char *const ln_opts[] = {"eps", "dims", NULL};

/* rn.layer_norm(x, gamma, beta, {eps=1e-5, dims=gamma's ndim or 1}) */
static int l_layer_norm(lua_State *L) {
  const char *op = "layer_norm";
  rn_tensor *x = rnl_check(L, 1, op);
  rn_tensor *gamma = rnl_opt(L, 2, op), *beta = rnl_opt(L, 3, op);
  rnl_opts_check(L, 4, op, ln_opts);
  double eps = rnl_opt_number(L, 4, "eps", 1e-5, op);
  int dflt = gamma ? gamma->ndim : beta ? beta->ndim : 1;
  lua_Integer k = rnl_opt_integer(L, 4, "dims", dflt, op);
  if (k < 1 || k > x->ndim)
    rnl_errorf(L, "%s: dims = %lld, valid: 1..%d (the trailing dims of x to normalise)", op,
               (long long)k, x->ndim);
  rnl_push(L, rn_layer_norm(x, (int)k, gamma, beta, eps));
  return 1;
}

static const char *const gn_opts[] = {"eps", NULL};

/* rn.group_norm(x, groups, gamma, beta, {eps=1e-5}) */
static int l_group_norm(lua_State *L) {
  const char *op = "group_norm";
  rn_tensor *x = rnl_check(L, 1, op);
  lua_Integer g = luaL_checkinteger(L, 2);
  rn_tensor *gamma = rnl_opt(L, 3, op), *beta = rnl_opt(L, 4, op);
  rnl_opts_check(L, 5, op, gn_opts);
  double eps = rnl_opt_number(L, 5, "eps", 1e-5, op);
  if (g < 1 || g > 1 << 30) rnl_errorf(L, "%s: groups = %lld, must be >= 1", op, (long long)g);
  rnl_push(L, rn_group_norm(x, (int)g, gamma, beta, eps));
  return 1;
}

/* rn.embedding(indices, weight): indices int32/int64 counted from 0, as
 * class labels (argmax, cross_entropy) */
static int l_embedding(lua_State *L) {
  rn_tensor *idx = rnl_check(L, 1, "embedding"), *w = rnl_check(L, 2, "embedding");
  rnl_push(L, rn_embedding(idx, w));
  return 1;
}

/* rn.scaled_dot_product_attention(q, k, v, {mask=, causal=false, scale=1/sqrt(D), dropout=0}) */
static const char *const sdpa_opts[] = {"mask", "causal", "scale", "dropout", NULL};

static int l_sdpa(lua_State *L) {
  const char *op = "scaled_dot_product_attention";
  rn_tensor *q = rnl_check(L, 1, op), *k = rnl_check(L, 2, op), *v = rnl_check(L, 3, op);
  rnl_opts_check(L, 4, op, sdpa_opts);
  rn_tensor *mask = NULL;
  if (lua_istable(L, 4)) {
    lua_getfield(L, 4, "mask");
    if (!lua_isnil(L, -1)) {
      mask = rnl_test(L, -1);
      if (!mask) rnl_errorf(L, "%s: mask must be a tensor, got %s", op, luaL_typename(L, -1));
    }
    lua_pop(L, 1); /* the options table keeps the mask alive */
  }
  bool causal = rnl_opt_bool(L, 4, "causal", 0, op);
  double scale = rnl_opt_number(L, 4, "scale", 0, op);
  double drop = rnl_opt_number(L, 4, "dropout", 0, op);
  if (lua_istable(L, 4)) {
    lua_getfield(L, 4, "scale");
    bool given = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (given && !(scale > 0)) rnl_errorf(L, "%s: scale must be > 0, got %g", op, scale);
  }
  if (drop != 0)
    rnl_errorf(L, "%s: dropout = %g is not supported by the fused kernel (only 0); apply "
               "rn.dropout to the inputs or the output instead", op, drop);
  rnl_push(L, rn_scaled_dot_product_attention(q, k, v, mask, causal, scale));
  return 1;
}

/* ---- pad and resize ------------------------------------------------------ */

static const char *const pad_opts[] = {"mode", "value", NULL};

/* rn.pad(x, {{before, after}, ...} one pair per dim, {mode="constant", value=0}) */
static int l_pad(lua_State *L) {
  const char *op = "pad";
  rn_tensor *x = rnl_check(L, 1, op);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
  if (n != x->ndim)
    rnl_errorf(L, "%s: %lld pairs of pads for a %d-d x; give one {before, after} per dim", op,
               (long long)n, x->ndim);
  int64_t pads[RN_MAXDIM][2];
  for (int d = 0; d < x->ndim; d++) {
    lua_rawgeti(L, 2, d + 1);
    if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 2)
      rnl_errorf(L, "%s: pads[%d] must be a pair {before, after}", op, d + 1);
    for (int k = 0; k < 2; k++) {
      lua_rawgeti(L, -1, k + 1);
      if (!lua_isinteger(L, -1)) rnl_errorf(L, "%s: pads[%d][%d] must be an integer", op, d + 1, k + 1);
      pads[d][k] = lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  rnl_opts_check(L, 3, op, pad_opts);
  const char *mode = rnl_opt_string(L, 3, "mode", "constant", op);
  double value = rnl_opt_number(L, 3, "value", 0, op);
  rn_padding_mode m = RN_PADDING_CONSTANT;
  if (!strcmp(mode, "constant")) m = RN_PADDING_CONSTANT;
  else if (!strcmp(mode, "reflect")) m = RN_PADDING_REFLECT;
  else if (!strcmp(mode, "replicate")) m = RN_PADDING_REPLICATE;
  else rnl_errorf(L, "%s: mode '%s' (valid: constant, reflect, replicate)", op, mode);
  if (m != RN_PADDING_CONSTANT && value != 0) rnl_errorf(L, "%s: value is for mode 'constant' only", op);
  rnl_push(L, rn_pad(x, (const int64_t(*)[2])pads, m, value));
  return 1;
}

static bool resize_method(lua_State *L, int idx, const char *op) {
  const char *m = rnl_opt_string(L, idx, "method", "nearest", op);
  if (!strcmp(m, "nearest")) return false;
  if (!strcmp(m, "bilinear")) return true;
  rnl_errorf(L, "%s: method '%s' (valid: nearest, bilinear)", op, m);
  return false;
}

static const char *const resize_opts[] = {"method", NULL};

/* rn.resize(x, {OH, OW}, {method="nearest"|"bilinear"}), x (N,H,W,C) */
static int l_resize(lua_State *L) {
  const char *op = "resize";
  rn_tensor *x = rnl_check(L, 1, op);
  if (!lua_istable(L, 2) || lua_rawlen(L, 2) != 2) rnl_errorf(L, "%s: size must be {height, width}", op);
  int64_t sz[2];
  for (int k = 0; k < 2; k++) {
    lua_rawgeti(L, 2, k + 1);
    if (!lua_isinteger(L, -1)) rnl_errorf(L, "%s: size[%d] must be an integer", op, k + 1);
    sz[k] = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  rnl_opts_check(L, 3, op, resize_opts);
  bool bil = resize_method(L, 3, op);
  rnl_push(L, rn_resize(x, sz[0], sz[1], bil));
  return 1;
}

/* rn.upsample(x, size, {method=}): size an integer factor or {fh, fw} (Keras's UpSampling2D) */
static int l_upsample(lua_State *L) {
  const char *op = "upsample";
  rn_tensor *x = rnl_check(L, 1, op);
  lua_Integer f[2] = {1, 1};
  if (lua_isinteger(L, 2)) {
    f[0] = f[1] = lua_tointeger(L, 2);
  } else if (lua_istable(L, 2) && lua_rawlen(L, 2) == 2) {
    for (int k = 0; k < 2; k++) {
      lua_rawgeti(L, 2, k + 1);
      if (!lua_isinteger(L, -1)) rnl_errorf(L, "%s: size[%d] must be an integer", op, k + 1);
      f[k] = lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  } else {
    rnl_errorf(L, "%s: size must be an integer factor or {fh, fw}", op);
  }
  if (f[0] < 1 || f[1] < 1 || f[0] > 4096 || f[1] > 4096)
    rnl_errorf(L, "%s: factors (%lld, %lld) must be 1..4096", op, (long long)f[0], (long long)f[1]);
  if (x->ndim != 4) rnl_errorf(L, "%s: x must be (N,H,W,C), got %d dims", op, x->ndim);
  rnl_opts_check(L, 3, op, resize_opts);
  bool bil = resize_method(L, 3, op);
  rnl_push(L, rn_resize(x, x->shape[1] * f[0], x->shape[2] * f[1], bil));
  return 1;
}

/* ---- softmax ------------------------------------------------------------- */

static int softmax(lua_State *L, bool log) {
  const char *op = log ? "log_softmax" : "softmax";
  rn_tensor *x = rnl_check(L, 1, op);
  if (x->ndim == 0) rnl_errorf(L, "%s: x is 0-d; it needs at least 1 dim", op);
  int d = rnl_dim(L, luaL_optinteger(L, 2, -1), x->ndim, op);
  rnl_push(L, log ? rn_log_softmax(x, d) : rn_softmax(x, d));
  return 1;
}
static int l_softmax(lua_State *L) { return softmax(L, false); }
static int l_log_softmax(lua_State *L) { return softmax(L, true); }

/* ---- cross entropy ------------------------------------------------------- */

static const char *const ce_opts[] = {"label_smoothing", "reduction", NULL};

static int l_cross_entropy(lua_State *L) {
  const char *op = "cross_entropy";
  rn_tensor *logits = rnl_check(L, 1, op), *labels = rnl_check(L, 2, op);
  rnl_opts_check(L, 3, op, ce_opts);
  double s = rnl_opt_number(L, 3, "label_smoothing", 0.0, op);
  const char *r = rnl_opt_string(L, 3, "reduction", "mean", op);
  rn_reduction red;
  if (strcmp(r, "mean") == 0) red = RN_REDUCE_MEAN;
  else if (strcmp(r, "sum") == 0) red = RN_REDUCE_SUM;
  else if (strcmp(r, "none") == 0) red = RN_REDUCE_NONE;
  else return rnl_errorf(L, "%s: reduction '%s' is not one of mean, sum, none", op, r);
  rnl_push(L, rn_cross_entropy(logits, labels, s, red));
  return 1;
}

/* ---- dense --------------------------------------------------------------- */

static int l_matmul(lua_State *L) {
  rn_tensor *a = rnl_check(L, 1, "matmul"), *b = rnl_check(L, 2, "matmul");
  rnl_push(L, rn_matmul(a, b));
  return 1;
}

static int l_linear(lua_State *L) {
  rn_tensor *x = rnl_check(L, 1, "linear"), *w = rnl_check(L, 2, "linear");
  rn_tensor *b = rnl_opt(L, 3, "linear");
  rnl_push(L, rn_linear(x, w, b));
  return 1;
}

/* ---- dropout ------------------------------------------------------------- */

static const char *const dropout_opts[] = {"training", NULL};

static int l_dropout(lua_State *L) {
  const char *op = "dropout";
  rn_tensor *x = rnl_check(L, 1, op);
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TNUMBER)
    rnl_errorf(L, "%s: p must be a number, got %s", op, luaL_typename(L, 2));
  double p = luaL_optnumber(L, 2, 0.5);
  rnl_opts_check(L, 3, op, dropout_opts);
  bool training = rnl_opt_bool(L, 3, "training", 1, op);
  rnl_push(L, rn_dropout(x, p, training));
  return 1;
}

/* ---- concat -------------------------------------------------------------- */

static int l_concat(lua_State *L) {
  const char *op = "concat";
  if (!lua_istable(L, 1))
    rnl_errorf(L, "%s: argument 1 must be a list of tensors, got %s", op, luaL_typename(L, 1));
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if (n < 1) rnl_errorf(L, "%s: the list of tensors is empty", op);
  if (n > 1 << 20) rnl_errorf(L, "%s: %lld tensors; at most %d", op, (long long)n, 1 << 20);
  int ndim = 0;
  for (lua_Integer i = 1; i <= n; i++) { /* every element first: no allocation yet */
    lua_rawgeti(L, 1, i);
    rn_tensor **box = luaL_testudata(L, -1, RNL_TENSOR);
    if (!box)
      rnl_errorf(L, "%s: element %lld of the list is a %s, not a tensor", op, (long long)i,
                 luaL_typename(L, -1));
    if (!*box) rnl_errorf(L, "%s: element %lld of the list is a closed tensor", op, (long long)i);
    if (i == 1) ndim = (*box)->ndim;
    lua_pop(L, 1);
  }
  if (ndim == 0) rnl_errorf(L, "%s: tensor 1 is 0-d; concat needs at least 1 dim", op);
  int d = rnl_dim(L, luaL_optinteger(L, 2, 1), ndim, op);
  /* scratch array owned by Lua: nothing leaks if a later step raises */
  rn_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    ts[i - 1] = *(rn_tensor **)lua_touserdata(L, -1);
    lua_pop(L, 1); /* the list keeps the tensor alive */
  }
  rn_tensor *y = rn_concat((int)n, ts, d);
  rnl_push(L, y);
  return 1;
}

static const luaL_Reg nn_funcs[] = {
  {"batch_norm", l_batch_norm}, {"softmax", l_softmax}, {"log_softmax", l_log_softmax},
  {"cross_entropy", l_cross_entropy}, {"matmul", l_matmul}, {"linear", l_linear},
  {"dropout", l_dropout}, {"layer_norm", l_layer_norm}, {"group_norm", l_group_norm},
  {"embedding", l_embedding}, {"scaled_dot_product_attention", l_sdpa},
  {"pad", l_pad}, {"resize", l_resize}, {"upsample", l_upsample},
  {NULL, NULL}};

static const luaL_Reg nn_only_funcs[] = {{"concat", l_concat}, {NULL, NULL}};

void rnl_open_nn(lua_State *L, int rn_idx, int methods_idx) {
  rnl_register(L, rn_idx, methods_idx, nn_funcs, 1);
  rnl_register(L, rn_idx, methods_idx, nn_only_funcs, 0);
}
