/* elementwise.c (ops) - front ends of the unary and binary elementwise ops:
 * dtype and broadcast checks, output allocation, dispatch to the backend,
 * and the backward rules (next to each op). Also sum_to, axpy_ and scale_. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../backend.h"
#include "../mutant.h"

/* ---- unary --------------------------------------------------------------- */

typedef struct {
  rn_unop op;
  double p[RN_UNARY_NP];
} unary_ctx;

static int unary_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  const unary_ctx *c = n->ctx;
  rn_tensor *x = n->saved[0], *y = n->saved[1];
  if (c->op == RN_OP_NEG) {
    gin[0] = rn_unary(RN_OP_NEG, g);
    return gin[0] ? 0 : -1;
  }
  rn_tensor *gc = rn_contiguous(g);
  rn_tensor *gx = gc ? rn_empty_like(x) : NULL;
  if (!gx || rn_backend_of(x)->unary_backward(c->op, c->p, gx, gc, x, y) < 0) {
    rn_release(gc);
    rn_release(gx);
    return -1;
  }
  rn_release(gc);
  gin[0] = gx;
  return 0;
}

rn_tensor *rn_unary(rn_unop op, rn_tensor *x) {
  double p[RN_UNARY_NP];
  rn_unop_nparams(op, p);
  return rn_unary_p(op, x, p);
}

rn_tensor *rn_unary_p(rn_unop op, rn_tensor *x, const double p[RN_UNARY_NP]) {
  const char *name = rn_unop_name(op);
  if ((unsigned)op >= RN_NUNARY) { rn_err("unary: unknown op code %d", (int)op); return NULL; }
  const rn_backend *be = rn_backend_of(x);
  if (!rn_dtype_is_float(x->dtype) && !rn_unop_int_ok(op)) {
    rn_err("%s: dtype %s is not a float type (use :float())", name, rn_dtype_name(x->dtype));
    return NULL;
  }
  int np = rn_unop_nparams(op, NULL);
  for (int i = 0; i < np; i++) {
    if (p[i] == RN_REQUIRED) { rn_err("%s: parameter %d is required", name, i + 1); return NULL; }
    if (isnan(p[i]) || (isinf(p[i]) && op != RN_OP_CLIP)) { /* clip: inf = an open side */
      rn_err("%s: parameter %d must be finite, got %g", name, i + 1, p[i]);
      return NULL;
    }
  }
  if (op == RN_OP_CLIP && p[0] > p[1]) {
    rn_err("clip: lo (%g) must not exceed hi (%g)", p[0], p[1]);
    return NULL;
  }
  if (!RN_HAS(be, unary)) return NULL;
  rn_tensor *y = rn_empty(x->ndim, x->shape, x->dtype, rn_device(x));
  if (!y) return NULL;
  if (be->unary(op, p, y, x) < 0) { rn_release(y); return NULL; }
  if (!rn_needs_grad(1, &x) || !rn_dtype_is_float(x->dtype)) return y;
  rn_tensor *xc = rn_contiguous(x);
  unary_ctx *c = xc ? malloc(sizeof *c) : NULL;
  rn_node *n = c ? rn_node_new(name, unary_bw, 1, &x) : NULL;
  if (!n || rn_node_save(n, xc) < 0 || rn_node_save(n, y) < 0) {
    if (xc && !c) rn_err("%s: out of memory", name);
    free(c); /* not yet the node's */
    rn_release(xc);
    rn_node_release(n);
    rn_release(y);
    return NULL;
  }
  rn_release(xc);
  c->op = op;
  for (int i = 0; i < RN_UNARY_NP; i++) c->p[i] = i < np ? p[i] : 0;
  n->ctx = c;
  n->ctx_free = free;
  rn_node_attach(n, y);
  return y;
}

/* ---- broadcasting -------------------------------------------------------- */

int rn_broadcast_shape(const rn_tensor *a, const rn_tensor *b, int *ndim, int64_t *shape,
                       const char *op) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < nd; i++) {
    int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
    int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      char b1[128], b2[128];
      return rn_err("%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)", op,
                    rn_shape_str(a, b1, sizeof b1), rn_shape_str(b, b2, sizeof b2), i + 1,
                    (long long)sa, (long long)sb);
    }
    shape[i] = sa == 1 ? sb : sa;
  }
  *ndim = nd;
  return 0;
}

rn_tensor *rn_sum_to(rn_tensor *g, int ndim, const int64_t *shape) {
  int dims[RN_MAXDIM], nd = 0, lead = g->ndim - ndim;
  if (lead < 0) { rn_err("sum_to: target has more dims than the gradient"); return NULL; }
  for (int i = 0; i < g->ndim; i++)
    if (i < lead || (shape[i - lead] == 1 && g->shape[i] != 1)) dims[nd++] = i;
  rn_tensor *s;
  if (nd) {
    s = rn_reduce(RN_MUTANT("broadcast_grad") ? RN_RED_MEAN : RN_RED_SUM, g, nd, dims, true);
  } else {
    s = g;
    rn_retain(s);
  }
  if (!s) return NULL;
  rn_tensor *r = rn_reshape(s, ndim, shape);
  rn_release(s);
  return r;
}

/* ---- binary -------------------------------------------------------------- */

static rn_tensor *mulg(rn_tensor *a, rn_tensor *b) { return rn_binary(RN_OP_MUL, a, b); }

static int binary_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  rn_binop op = (rn_binop)(intptr_t)n->ctx;
  rn_tensor *a = n->saved[0], *b = n->saved[1];
  switch (op) {
  case RN_OP_ADD:
    if (n->needs[0]) { rn_retain(g); gin[0] = g; }
    if (n->needs[1]) { rn_retain(g); gin[1] = g; }
    return 0;
  case RN_OP_SUB:
    if (n->needs[0]) { rn_retain(g); gin[0] = g; }
    if (n->needs[1] && !(gin[1] = rn_unary(RN_OP_NEG, g))) return -1;
    return 0;
  case RN_OP_MUL:
    if (n->needs[0] && !(gin[0] = mulg(g, b))) return -1;
    if (n->needs[1] && !(gin[1] = mulg(g, a))) return -1;
    return 0;
  case RN_OP_DIV: {
    if (n->needs[0] && !(gin[0] = rn_binary(RN_OP_DIV, g, b))) return -1;
    if (n->needs[1]) { /* -g * a / b^2 */
      rn_tensor *q = rn_binary(RN_OP_DIV, a, b), *t = q ? rn_binary(RN_OP_DIV, q, b) : NULL,
                *u = t ? mulg(g, t) : NULL;
      rn_release(q); rn_release(t);
      if (!u || !(gin[1] = rn_unary(RN_OP_NEG, u))) { rn_release(u); return -1; }
      rn_release(u);
    }
    return 0;
  }
  case RN_OP_POW: {
    rn_tensor *y = n->saved[2];
    if (n->needs[0]) { /* g * b * a^(b-1) = g * b * y / a, computed without 0/0 */
      rn_tensor *bm1 = rn_binary_scalar(RN_OP_SUB, b, 1, false);
      rn_tensor *p = bm1 ? rn_binary(RN_OP_POW, a, bm1) : NULL;
      rn_tensor *t = p ? mulg(p, b) : NULL;
      rn_release(bm1); rn_release(p);
      if (!t || !(gin[0] = mulg(g, t))) { rn_release(t); return -1; }
      rn_release(t);
    }
    if (n->needs[1]) { /* g * y * log(a) */
      rn_tensor *l = rn_unary(RN_OP_LOG, a), *t = l ? mulg(y, l) : NULL;
      rn_release(l);
      if (!t || !(gin[1] = mulg(g, t))) { rn_release(t); return -1; }
      rn_release(t);
    }
    return 0;
  }
  case RN_OP_MAXIMUM: case RN_OP_MINIMUM: { /* the gradient goes to the chosen input */
    rn_tensor *m = rn_binary(op == RN_OP_MAXIMUM ? RN_OP_GE : RN_OP_LE, a, b);
    if (!m) return -1;
    rn_tensor *inv = rn_binary_scalar(RN_OP_SUB, m, 1, true);
    int rc = 0;
    if (!inv) rc = -1;
    if (rc == 0 && n->needs[0] && !(gin[0] = mulg(g, m))) rc = -1;
    if (rc == 0 && n->needs[1] && !(gin[1] = mulg(g, inv))) rc = -1;
    rn_release(m); rn_release(inv);
    return rc;
  }
  default:
    return rn_err("%s is not differentiable", rn_binop_name(op));
  }
}

rn_tensor *rn_binary(rn_binop op, rn_tensor *a, rn_tensor *b) {
  const char *name = rn_binop_name(op);
  rn_tensor *ins[2] = {a, b};
  if (rn_same_device(name, 2, ins) < 0) return NULL;
  if (a->dtype != b->dtype) {
    rn_err("%s: dtypes differ (%s and %s); convert one with :to(dtype)", name,
           rn_dtype_name(a->dtype), rn_dtype_name(b->dtype));
    return NULL;
  }
  int nd;
  int64_t shape[RN_MAXDIM];
  if (rn_broadcast_shape(a, b, &nd, shape, name) < 0) return NULL;
  const rn_backend *be = rn_backend_of(a);
  if (!RN_HAS(be, binary)) return NULL;
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *ea = rn_expand(a, nd, shape), *eb = ea ? rn_expand(b, nd, shape) : NULL;
  rn_set_grad_enabled(g);
  rn_tensor *y = eb ? rn_empty(nd, shape, a->dtype, rn_device(a)) : NULL;
  if (!y || be->binary(op, y, ea, eb) < 0) {
    rn_release(ea); rn_release(eb); rn_release(y);
    return NULL;
  }
  rn_release(ea);
  rn_release(eb);
  bool differentiable = op <= RN_OP_MINIMUM && rn_dtype_is_float(a->dtype);
  if (!differentiable || !rn_needs_grad(2, ins)) return y;
  rn_node *n = rn_node_new(name, binary_bw, 2, ins);
  int rc = n ? 0 : -1;
  if (rc == 0 && op != RN_OP_ADD && op != RN_OP_SUB)
    rc = (rn_node_save(n, a) < 0 || rn_node_save(n, b) < 0) ? -1 : 0;
  if (rc == 0 && op == RN_OP_POW) rc = rn_node_save(n, y);
  if (rc < 0) { rn_node_release(n); rn_release(y); return NULL; }
  n->ctx = (void *)(intptr_t)op;
  rn_node_attach(n, y);
  return y;
}

rn_tensor *rn_binary_scalar(rn_binop op, rn_tensor *a, double s, bool scalar_first) {
  rn_tensor *t = rn_scalar(s, a->dtype, rn_device(a));
  if (!t) return NULL;
  rn_tensor *y = scalar_first ? rn_binary(op, t, a) : rn_binary(op, a, t);
  rn_release(t);
  return y;
}

/* ---- in place helpers (no autograd) -------------------------------------- */

int rn_axpy_(rn_tensor *y, double alpha, const rn_tensor *x) {
  /* y += alpha*x keeps y's derivative unless x itself requires grad */
  if (rn_check_inplace_ex(y, "axpy_", !(x->requires_grad && alpha != 0)) < 0) return -1;
  rn_tensor *ins[2] = {y, (rn_tensor *)x};
  if (rn_same_device("axpy_", 2, ins) < 0) return -1;
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *e = rn_expand((rn_tensor *)x, y->ndim, y->shape);
  if (e && rn_partial_alias(y, e)) { /* overlapping views: read from a copy */
    rn_tensor *c = rn_clone(e);
    rn_release(e);
    e = c;
  }
  rn_set_grad_enabled(g);
  if (!e) return -1;
  rn_bump_version(y);
  int rc = rn_backend_of(y)->axpy(y, alpha, e);
  rn_release(e);
  return rc;
}

int rn_scale_(rn_tensor *y, double s) {
  if (rn_check_inplace_ex(y, "scale_", s == 1) < 0) return -1;
  rn_tensor *t = rn_scalar(s, y->dtype, rn_device(y));
  if (!t) return -1;
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *e = rn_expand(t, y->ndim, y->shape);
  rn_set_grad_enabled(g);
  rn_bump_version(y);
  int rc = e ? rn_backend_of(y)->binary(RN_OP_MUL, y, y, e) : -1;
  rn_release(e);
  rn_release(t);
  return rc;
}
