/* shape.c (ops) - concat along a dim and dropout.
 *
 * concat: ts[i] all of one dtype, device and rank, equal sizes except on dim;
 *   the output is filled by copying each input into its narrow view; the
 *   backward hands each input its narrow slice of the gradient.
 * dropout: y = x * mask with mask = (u >= p) / (1-p), u uniform [0,1) from
 *   the core generator (rn.manual_seed repeats it), drawn on the cpu in x's
 *   dtype and moved to x's device; composed from rn_binary, so autograd
 *   follows. p == 0 or training == false returns x itself. p must be in
 *   [0, 1): p == 1 (drop everything) is an error, as in Keras/TensorFlow.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../backend.h"

/* ---- concat -------------------------------------------------------------- */

typedef struct { int dim; int n; int64_t len[]; } cat_ctx;

static int concat_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  cat_ctx *c = n->ctx;
  int64_t off = 0;
  for (int i = 0; i < c->n; i++) {
    if (n->needs[i]) {
      rn_tensor *v = rn_narrow(g, c->dim, off, c->len[i]);
      gin[i] = v ? rn_contiguous(v) : NULL;
      rn_release(v);
      if (!gin[i]) return -1;
    }
    off += c->len[i];
  }
  return 0;
}

rn_tensor *rn_concat(int n, rn_tensor *const *ts, int dim) {
  const char *name = "concat";
  char b1[128], b2[128];
  if (n < 1 || !ts) {
    rn_err("%s: no tensors to concatenate", name);
    return NULL;
  }
  for (int i = 0; i < n; i++)
    if (!ts[i]) { rn_err("%s: tensor %d is missing", name, i + 1); return NULL; }
  const rn_tensor *t0 = ts[0];
  if (t0->ndim == 0) {
    rn_err("%s: tensor 1 is 0-d; concat needs at least 1 dim", name);
    return NULL;
  }
  int d = rn_norm_dim(dim, t0->ndim, name);
  if (d < 0) return NULL;
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    const rn_tensor *t = ts[i];
    if (t->dtype != t0->dtype) {
      rn_err("%s: tensor %d has dtype %s but tensor 1 has %s", name, i + 1,
             rn_dtype_name(t->dtype), rn_dtype_name(t0->dtype));
      return NULL;
    }
    if (rn_device(t) != rn_device(t0)) {
      rn_err("%s: tensor %d is on %s but tensor 1 is on %s; move it with :to()", name, i + 1,
             rn_device_name(rn_device(t)), rn_device_name(rn_device(t0)));
      return NULL;
    }
    bool ok = t->ndim == t0->ndim;
    for (int k = 0; ok && k < t->ndim; k++)
      if (k != d && t->shape[k] != t0->shape[k]) ok = false;
    if (!ok) {
      rn_err("%s: tensor %d has shape %s and tensor 1 has %s; they must match except on dim %d",
             name, i + 1, rn_shape_str(t, b1, sizeof b1), rn_shape_str(t0, b2, sizeof b2), d + 1);
      return NULL;
    }
    total += t->shape[d];
  }
  int64_t sh[RN_MAXDIM];
  memcpy(sh, t0->shape, sizeof(int64_t) * (size_t)t0->ndim);
  sh[d] = total;
  rn_tensor *y = rn_empty(t0->ndim, sh, t0->dtype, rn_device(t0));
  if (!y) return NULL;
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  int rc = 0;
  int64_t off = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    rn_tensor *v = rn_narrow(y, d, off, ts[i]->shape[d]);
    rc = v ? rn_copy_(v, ts[i]) : -1;
    rn_release(v);
    off += ts[i]->shape[d];
  }
  rn_set_grad_enabled(g);
  if (rc == 0 && rn_needs_grad(n, ts) && rn_dtype_is_float(t0->dtype)) {
    rn_node *nd = rn_node_new(name, concat_bw, n, ts);
    cat_ctx *c = nd ? malloc(sizeof *c + sizeof(int64_t) * (size_t)n) : NULL;
    if (!c) {
      if (nd) rn_err("%s: out of memory recording the autograd node", name);
      rn_node_release(nd);
      rc = -1;
    } else {
      c->dim = d;
      c->n = n;
      for (int i = 0; i < n; i++) c->len[i] = ts[i]->shape[d];
      nd->ctx = c;
      nd->ctx_free = free;
      rn_node_attach(nd, y);
    }
  }
  if (rc < 0) { rn_release(y); return NULL; }
  return y;
}

/* ---- dropout ------------------------------------------------------------- */

rn_tensor *rn_dropout(rn_tensor *x, double p, bool training) {
  const char *name = "dropout";
  if (!(p >= 0 && p < 1)) {
    rn_err("%s: p = %g outside [0, 1) (p is the fraction of values dropped)", name, p);
    return NULL;
  }
  if (!rn_dtype_is_float(x->dtype)) {
    rn_err("%s: dtype %s is not a float type (use :float())", name, rn_dtype_name(x->dtype));
    return NULL;
  }
  if (!training || p == 0) {
    rn_retain(x);
    return x;
  }
  /* mask on the cpu in x's dtype: scale where kept, 0 where dropped */
  rn_tensor *m = rn_empty(x->ndim, x->shape, x->dtype, RN_CPU);
  if (!m) return NULL;
  int64_t n = rn_numel(m);
  double scale = 1.0 / (1.0 - p);
  char *mp = rn_ptr(m);
  if (x->dtype == RN_F32) {
    float *f = (float *)mp, fs = (float)scale;
    for (int64_t i = 0; i < n; i++) f[i] = rn_random_uniform() >= p ? fs : 0.0f;
  } else {
    size_t es = rn_dtype_size(x->dtype);
    for (int64_t i = 0; i < n; i++)
      rn_store(mp + (size_t)i * es, x->dtype, rn_random_uniform() >= p ? scale : 0.0);
  }
  if (rn_device(x) != RN_CPU) {
    rn_tensor *md = rn_to_device(m, rn_device(x));
    rn_release(m);
    if (!md) return NULL;
    m = md;
  }
  rn_tensor *y = rn_binary(RN_OP_MUL, x, m);
  rn_release(m);
  return y;
}
