/* loss.c (ops) - softmax and log_softmax over any dim, and the fused softmax
 * cross-entropy loss with label smoothing and mean/sum/none reductions:
 * checks, dispatch to the backend, and the backward rules.
 *
 * softmax over dim d of x (...): d is moved last (recorded permute +
 * contiguous), the kernel runs on the (R,C) view, and the result is permuted
 * back, so only the last-dim form has its own backward.
 * cross_entropy: logits (N,C) float, labels (N) uint8/int32/int64 in 0..C-1;
 * the forward also computes dlogits (N,C) = d loss[n] / d logits, which the
 * backward scales by the incoming gradient.
 */
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../backend.h"
#include "../mutant.h"

/* ---- softmax ------------------------------------------------------------- */

static int softmax_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  bool log = n->ctx != NULL;
  rn_tensor *y = n->saved[0];
  const rn_backend *be = rn_backend_of(y);
  if (!RN_HAS(be, softmax_backward)) return -1;
  rn_tensor *gc = rn_contiguous(g);
  rn_tensor *gx = gc ? rn_empty_like(y) : NULL;
  rn_tensor *g2 = gx ? rn_view2d(gc) : NULL, *y2 = g2 ? rn_view2d(y) : NULL;
  rn_tensor *gx2 = y2 ? rn_view2d(gx) : NULL;
  int rc = gx2 ? be->softmax_backward(gx2, g2, y2, log) : -1;
  rn_release(gc); rn_release(g2); rn_release(y2); rn_release(gx2);
  if (rc < 0) { rn_release(gx); return -1; }
  gin[0] = gx;
  return 0;
}

/* softmax over the last dim of contiguous x */
static rn_tensor *softmax_last(rn_tensor *x, bool log) {
  const char *name = log ? "log_softmax" : "softmax";
  const rn_backend *be = rn_backend_of(x);
  if (!RN_HAS(be, softmax)) return NULL;
  rn_tensor *y = rn_empty(x->ndim, x->shape, x->dtype, rn_device(x));
  rn_tensor *x2 = y ? rn_view2d(x) : NULL, *y2 = x2 ? rn_view2d(y) : NULL;
  int rc = y2 ? be->softmax(y2, x2, log) : -1;
  rn_release(x2);
  rn_release(y2);
  if (rc == 0 && rn_needs_grad(1, &x)) {
    rn_node *n = rn_node_new(name, softmax_bw, 1, &x);
    if (!n || rn_node_save(n, y) < 0) {
      rn_node_release(n);
      rc = -1;
    } else {
      n->ctx = log ? (void *)1 : NULL; /* no ctx_free: a flag, not memory */
      rn_node_attach(n, y);
    }
  }
  if (rc < 0) { rn_release(y); return NULL; }
  return y;
}

static rn_tensor *softmax_any(rn_tensor *x, int dim, bool log) {
  const char *name = log ? "log_softmax" : "softmax";
  if (x->ndim == 0) {
    rn_err("%s: x is 0-d; it needs at least 1 dim", name);
    return NULL;
  }
  int d = rn_norm_dim(dim, x->ndim, name);
  if (d < 0) return NULL;
  if (!rn_dtype_is_float(x->dtype)) {
    rn_err("%s: dtype %s is not a float type (use :float())", name, rn_dtype_name(x->dtype));
    return NULL;
  }
  int last = x->ndim - 1;
  if (d == last) {
    rn_tensor *xc = rn_contiguous(x);
    rn_tensor *y = xc ? softmax_last(xc, log) : NULL;
    rn_release(xc);
    return y;
  }
  /* move d last: perm swaps d and the last dim (its own inverse) */
  int perm[RN_MAXDIM];
  for (int i = 0; i < x->ndim; i++) perm[i] = i;
  perm[d] = last;
  perm[last] = d;
  rn_tensor *p = rn_permute(x, perm);
  rn_tensor *pc = p ? rn_contiguous(p) : NULL;
  rn_tensor *ys = pc ? softmax_last(pc, log) : NULL;
  rn_tensor *y = ys ? rn_permute(ys, perm) : NULL;
  rn_release(p);
  rn_release(pc);
  rn_release(ys);
  return y;
}

rn_tensor *rn_softmax(rn_tensor *x, int dim) { return softmax_any(x, dim, false); }
rn_tensor *rn_log_softmax(rn_tensor *x, int dim) { return softmax_any(x, dim, true); }

/* ---- cross entropy ------------------------------------------------------- */

typedef struct { rn_reduction red; int64_t n; } ce_ctx;

/* saved: dlogits (N,C). g: () for mean/sum, (N) for none. */
static int ce_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  ce_ctx *c = n->ctx;
  rn_tensor *dl = n->saved[0];
  rn_tensor *k = NULL;
  if (c->red == RN_REDUCE_MEAN) {
    k = rn_binary_scalar(RN_OP_DIV, g, c->n && !RN_MUTANT("loss_mean") ? (double)c->n : 1.0,
                         false);
  } else if (c->red == RN_REDUCE_SUM) {
    k = g;
    rn_retain(k);
  } else {
    int64_t sh[2] = {c->n, 1};
    k = rn_reshape(g, 2, sh);
  }
  if (!k) return -1;
  gin[0] = rn_binary(RN_OP_MUL, dl, k);
  rn_release(k);
  return gin[0] ? 0 : -1;
}

rn_tensor *rn_cross_entropy(rn_tensor *logits, rn_tensor *labels, double smoothing,
                            rn_reduction red) {
  const char *name = "cross_entropy";
  char b1[128], b2[128];
  if (logits->ndim != 2) {
    rn_err("%s: logits have shape %s; they must be 2-D (N,C)", name,
           rn_shape_str(logits, b1, sizeof b1));
    return NULL;
  }
  if (!rn_dtype_is_float(logits->dtype)) {
    rn_err("%s: logits dtype %s is not a float type (use :float())", name,
           rn_dtype_name(logits->dtype));
    return NULL;
  }
  if (labels->ndim != 1 || labels->shape[0] != logits->shape[0]) {
    rn_err("%s: labels have shape %s; they must be (%lld), one per row of logits %s", name,
           rn_shape_str(labels, b1, sizeof b1), (long long)logits->shape[0],
           rn_shape_str(logits, b2, sizeof b2));
    return NULL;
  }
  if (labels->dtype != RN_U8 && labels->dtype != RN_I32 && labels->dtype != RN_I64) {
    rn_err("%s: labels dtype %s is not an integer type (uint8, int32, int64; use :long())",
           name, rn_dtype_name(labels->dtype));
    return NULL;
  }
  if (!(smoothing >= 0 && smoothing <= 1)) {
    rn_err("%s: label_smoothing %g outside [0, 1]", name, smoothing);
    return NULL;
  }
  if (red != RN_REDUCE_MEAN && red != RN_REDUCE_SUM && red != RN_REDUCE_NONE) {
    rn_err("%s: unknown reduction %d", name, (int)red);
    return NULL;
  }
  rn_tensor *ins[2] = {logits, labels};
  if (rn_same_device(name, 2, ins) < 0) return NULL;
  const rn_backend *be = rn_backend_of(logits);
  if (!RN_HAS(be, cross_entropy)) return NULL;
  int64_t N = logits->shape[0];
  bool need = rn_needs_grad(1, &logits);
  bool gm = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *xc = rn_contiguous(logits), *lc = xc ? rn_contiguous(labels) : NULL;
  rn_tensor *loss = lc ? rn_empty(1, &N, logits->dtype, rn_device(logits)) : NULL;
  rn_tensor *dl = NULL, *y = NULL;
  int rc = loss ? 0 : -1;
  if (rc == 0 && need && !(dl = rn_empty_like(logits))) rc = -1;
  if (rc == 0) rc = be->cross_entropy(loss, dl, xc, lc, smoothing);
  if (rc == 0) {
    if (red == RN_REDUCE_NONE) {
      y = loss;
      rn_retain(y);
    } else {
      y = rn_reduce(red == RN_REDUCE_MEAN ? RN_RED_MEAN : RN_RED_SUM, loss, 0, NULL, false);
      if (!y) rc = -1;
    }
  }
  rn_set_grad_enabled(gm);
  if (rc == 0 && need) {
    rn_node *n = rn_node_new(name, ce_bw, 1, &logits);
    ce_ctx *c = n ? malloc(sizeof *c) : NULL;
    if (n && !c) rn_err("%s: out of memory recording the autograd node", name);
    if (!c || rn_node_save(n, dl) < 0) {
      free(c);
      rn_node_release(n);
      rc = -1;
    } else {
      c->red = red;
      c->n = N;
      n->ctx = c;
      n->ctx_free = free;
      rn_node_attach(n, y);
    }
  }
  rn_release(xc); rn_release(lc); rn_release(loss); rn_release(dl);
  if (rc < 0) { rn_release(y); return NULL; }
  return y;
}
