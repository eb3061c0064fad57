/* norm_group.c (ops) - layer normalization and group normalization, one
 * kernel pair for both: x viewed as (N, S, G, Cg), statistics per (n, g)
 * over its S*Cg values, gamma and beta per channel c = g*Cg + j.
 *
 *   layer_norm(x, k): the last k dims normalised: N = the other dims, S = 1,
 *     G = 1, Cg = their product; gamma, beta: the last k dims' shape.
 *   group_norm(x, G): x (N, ..., C) channels last: S = the middle dims, C
 *     split into G groups of Cg = C/G; gamma, beta: (C).
 * Mean and 1/sqrt(var + eps) (biased variance) are kept in float64, (N*G),
 * for the backward. gamma and beta are optional (NULL: 1 and 0), x's dtype,
 * or float32 for a bfloat16/float16 x (then their gradients are float32). */
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../backend.h"

typedef struct {
  int64_t N, S, G, Cg;
  int pnd; /* gamma's and beta's shape */
  int64_t pshape[RN_MAXDIM];
} gn_ctx;

/* saved: x (contiguous), mean, rstd, gamma (or absent) */
static int gnorm_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  const gn_ctx *c = n->ctx;
  rn_tensor *x = n->saved[0], *mean = n->saved[1], *rstd = n->saved[2];
  rn_tensor *gamma = n->nsaved > 3 ? n->saved[3] : NULL;
  const rn_backend *be = rn_backend_of(x);
  if (!RN_HAS(be, gnorm_bwd)) return -1;
  rn_tensor *gc = rn_contiguous(g);
  rn_tensor *gx = gc && n->needs[0] ? rn_empty_like(x) : NULL;
  rn_tensor *gg = NULL, *gb = NULL;
  int rc = gc && (gx || !n->needs[0]) ? 0 : -1;
  rn_devtype dev = rn_device(x);
  if (rc == 0 && n->needs[1] && !(gg = rn_empty(c->pnd, c->pshape, n->in_shape[1].dtype, dev)))
    rc = -1;
  if (rc == 0 && n->needs[2] && !(gb = rn_empty(c->pnd, c->pshape, n->in_shape[2].dtype, dev)))
    rc = -1;
  if (rc == 0) rc = be->gnorm_bwd(gx, gg, gb, gc, x, gamma, mean, rstd, c->N, c->S, c->G, c->Cg);
  rn_release(gc);
  if (rc < 0) { rn_release(gx); rn_release(gg); rn_release(gb); return -1; }
  gin[0] = gx;
  gin[1] = gg;
  gin[2] = gb;
  return 0;
}

static int check_param(const char *op, const char *what, rn_tensor *p, const rn_tensor *x,
                       int nd, const int64_t *shape) {
  if (!p) return 0;
  char b1[128], b2[128];
  if (p->ndim != nd || (nd > 0 && memcmp(p->shape, shape, (size_t)nd * sizeof *shape) != 0))
    return rn_err("%s: %s has shape %s, expected %s", op, what, rn_shape_str(p, b1, sizeof b1),
                  rn_dims_str(nd, shape, b2, sizeof b2));
  bool half = x->dtype == RN_BF16 || x->dtype == RN_F16;
  if (p->dtype != x->dtype && !(half && p->dtype == RN_F32))
    return rn_err("%s: %s is %s but x is %s (valid: %s%s)", op, what, rn_dtype_name(p->dtype),
                  rn_dtype_name(x->dtype), rn_dtype_name(x->dtype), half ? " or float32" : "");
  return 0;
}

static rn_tensor *gnorm(const char *op, rn_tensor *x, rn_tensor *gamma, rn_tensor *beta,
                        int pnd, const int64_t *pshape, gn_ctx c, double eps) {
  c.pnd = pnd;
  memcpy(c.pshape, pshape, (size_t)pnd * sizeof *pshape);
  rn_tensor *ins[3] = {x, gamma, beta};
  rn_tensor *list[3] = {x, NULL, NULL};
  int nin = 1;
  if (gamma) list[nin++] = gamma;
  if (beta) list[nin++] = beta;
  if (rn_same_device(op, nin, list) < 0) return NULL;
  if (!rn_dtype_is_float(x->dtype)) {
    rn_err("%s: x is %s; a float type is needed (float32, float64, bfloat16, float16)", op,
           rn_dtype_name(x->dtype));
    return NULL;
  }
  if (check_param(op, "gamma", gamma, x, pnd, pshape) < 0 ||
      check_param(op, "beta", beta, x, pnd, pshape) < 0)
    return NULL;
  if (!(eps >= 0) || eps != eps) { rn_err("%s: eps must be >= 0, got %g", op, eps); return NULL; }
  const rn_backend *be = rn_backend_of(x);
  if (!RN_HAS(be, gnorm_fwd)) return NULL;
  bool gm = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *xc = rn_contiguous(x);
  rn_tensor *gc = gamma ? rn_contiguous(gamma) : NULL, *bc = beta ? rn_contiguous(beta) : NULL;
  rn_set_grad_enabled(gm);
  int64_t ng = c.N * c.G;
  rn_tensor *y = xc ? rn_empty(x->ndim, x->shape, x->dtype, rn_device(x)) : NULL;
  rn_tensor *mean = y ? rn_empty(1, &ng, RN_F64, rn_device(x)) : NULL;
  rn_tensor *rstd = mean ? rn_empty(1, &ng, RN_F64, rn_device(x)) : NULL;
  int rc = rstd && (!gamma || gc) && (!beta || bc) ? 0 : -1;
  if (rc == 0) rc = be->gnorm_fwd(y, mean, rstd, xc, gc, bc, c.N, c.S, c.G, c.Cg, eps);
  rn_node *n = NULL;
  gn_ctx *ctx = NULL;
  if (rc == 0 && rn_needs_grad(3, ins)) {
    ctx = malloc(sizeof *ctx);
    n = ctx ? rn_node_new(op, gnorm_bw, 3, ins) : NULL;
    rc = n ? 0 : -1;
    if (!ctx) rn_err("%s: out of memory", op);
    if (rc == 0 && (rn_node_save(n, xc) < 0 || rn_node_save(n, mean) < 0 ||
                    rn_node_save(n, rstd) < 0 || (gc && rn_node_save(n, gc) < 0)))
      rc = -1;
  }
  rn_release(xc); rn_release(gc); rn_release(bc); rn_release(mean); rn_release(rstd);
  if (rc < 0) { rn_node_release(n); free(ctx); rn_release(y); return NULL; }
  if (n) {
    *ctx = c;
    n->ctx = ctx;
    n->ctx_free = free;
    rn_node_attach(n, y);
  }
  return y;
}

rn_tensor *rn_layer_norm(rn_tensor *x, int k, rn_tensor *gamma, rn_tensor *beta, double eps) {
  if (k < 1 || k > x->ndim) {
    rn_err("layer_norm: normalises the last %d dims of a %d-d x; valid: 1..%d", k, x->ndim,
           x->ndim);
    return NULL;
  }
  gn_ctx c = {1, 1, 1, 1, 0, {0}};
  for (int i = 0; i < x->ndim; i++) {
    if (i < x->ndim - k) c.N *= x->shape[i];
    else c.Cg *= x->shape[i];
  }
  return gnorm("layer_norm", x, gamma, beta, k, x->shape + x->ndim - k, c, eps);
}

rn_tensor *rn_group_norm(rn_tensor *x, int groups, rn_tensor *gamma, rn_tensor *beta,
                         double eps) {
  if (x->ndim < 2) {
    rn_err("group_norm: x must be (N, ..., C) with at least 2 dims, got %d", x->ndim);
    return NULL;
  }
  int64_t C = x->shape[x->ndim - 1];
  if (groups < 1 || C % groups != 0) {
    rn_err("group_norm: %d groups do not divide %lld channels (groups must divide C)", groups,
           (long long)C);
    return NULL;
  }
  gn_ctx c = {x->shape[0], 1, groups, C / groups, 0, {0}};
  for (int i = 1; i < x->ndim - 1; i++) c.S *= x->shape[i];
  return gnorm("group_norm", x, gamma, beta, 1, &C, c, eps);
}
