/* reduce.c (ops) - sum, mean, max, min over dims (with keepdim) and argmax:
 * checks, output shapes, dispatch and the backward rules. */
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../backend.h"

static const char *rnames[] = {"sum", "mean", "max", "min"};

typedef struct { rn_redop op; int64_t count; } red_ctx;

static int reduce_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  red_ctx *c = n->ctx;
  rn_inshape *s = &n->in_shape[0];
  rn_tensor *gk = rn_reshape(g, n->saved[0]->ndim, n->saved[0]->shape); /* keepdim shape */
  if (!gk) return -1;
  rn_tensor *r = NULL;
  if (c->op == RN_RED_SUM) {
    r = rn_expand(gk, s->ndim, s->shape);
  } else if (c->op == RN_RED_MEAN) {
    rn_tensor *e = rn_expand(gk, s->ndim, s->shape);
    r = e ? rn_binary_scalar(RN_OP_DIV, e, (double)c->count, false) : NULL;
    rn_release(e);
  } else { /* max/min: split g among the positions equal to the result */
    rn_tensor *x = n->saved[1], *y = n->saved[0];
    rn_tensor *m = rn_binary(RN_OP_EQ, x, y);
    int dims[RN_MAXDIM], nd = 0;
    for (int i = 0; i < x->ndim; i++) if (y->shape[i] != x->shape[i]) dims[nd++] = i;
    rn_tensor *cnt = m ? rn_reduce(RN_RED_SUM, m, nd, dims, true) : NULL;
    rn_tensor *q = cnt ? rn_binary(RN_OP_DIV, gk, cnt) : NULL;
    r = q ? rn_binary(RN_OP_MUL, m, q) : NULL;
    rn_release(m); rn_release(cnt); rn_release(q);
  }
  rn_release(gk);
  gin[0] = r;
  return r ? 0 : -1;
}

rn_tensor *rn_reduce(rn_redop op, rn_tensor *x, int ndims, const int *dims, bool keepdim) {
  const char *name = rnames[op];
  bool red[RN_MAXDIM] = {0};
  if (ndims == 0) for (int i = 0; i < x->ndim; i++) red[i] = true;
  for (int i = 0; i < ndims; i++) {
    int d = rn_norm_dim(dims[i], x->ndim, name);
    if (d < 0) return NULL;
    if (red[d]) { rn_err("%s: dim %d given twice", name, d + 1); return NULL; }
    red[d] = true;
  }
  if (op == RN_RED_MEAN && !rn_dtype_is_float(x->dtype)) {
    rn_err("mean: dtype %s is not a float type (use :float())", rn_dtype_name(x->dtype));
    return NULL;
  }
  const rn_backend *be = rn_backend_of(x);
  if (!RN_HAS(be, reduce)) return NULL;
  int64_t ks[RN_MAXDIM], os[RN_MAXDIM], count = 1;
  int on = 0;
  for (int i = 0; i < x->ndim; i++) {
    ks[i] = red[i] ? 1 : x->shape[i];
    if (red[i]) count *= x->shape[i];
    else os[on++] = x->shape[i];
  }
  rn_dtype odt = (op == RN_RED_SUM && !rn_dtype_is_float(x->dtype)) ? RN_I64 : x->dtype;
  rn_tensor *yk = rn_empty(x->ndim, ks, odt, rn_device(x));
  if (!yk || be->reduce(op, yk, x) < 0) { rn_release(yk); return NULL; }
  rn_tensor *y = yk;
  if (!keepdim) {
    bool g = rn_grad_enabled();
    rn_set_grad_enabled(false);
    y = rn_reshape(yk, on, os);
    rn_set_grad_enabled(g);
    if (!y) { rn_release(yk); return NULL; }
  }
  if (!rn_dtype_is_float(x->dtype) || !rn_needs_grad(1, &x)) { if (y != yk) rn_release(yk); return y; }
  rn_node *n = rn_node_new(name, reduce_bw, 1, &x);
  red_ctx *c = n ? malloc(sizeof *c) : NULL;
  int rc = c ? rn_node_save(n, yk) : -1;
  if (rc == 0 && op >= RN_RED_MAX) rc = rn_node_save(n, x);
  if (y != yk) rn_release(yk);
  if (rc < 0) {
    free(c);
    rn_node_release(n);
    rn_release(y);
    if (!c) rn_err("%s: out of memory", name);
    return NULL;
  }
  c->op = op;
  c->count = count;
  n->ctx = c;
  n->ctx_free = free;
  rn_node_attach(n, y);
  return y;
}

rn_tensor *rn_argmax(rn_tensor *x, int dim, bool keepdim) {
  int d = rn_norm_dim(dim, x->ndim, "argmax");
  if (d < 0) return NULL;
  const rn_backend *be = rn_backend_of(x);
  if (!RN_HAS(be, argmax)) return NULL;
  int64_t ks[RN_MAXDIM], os[RN_MAXDIM];
  int on = 0;
  for (int i = 0; i < x->ndim; i++) {
    ks[i] = i == d ? 1 : x->shape[i];
    if (i != d) os[on++] = x->shape[i];
  }
  rn_tensor *yk = rn_empty(x->ndim, ks, RN_I64, rn_device(x));
  if (!yk || be->argmax(yk, x, d) < 0) { rn_release(yk); return NULL; }
  if (keepdim) return yk;
  rn_tensor *y = rn_reshape(yk, on, os);
  rn_release(yk);
  return y;
}
