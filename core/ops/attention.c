/* attention.c (ops) - rn_scaled_dot_product_attention: shape rules, the
 * mask's broadcast geometry, dispatch to the fused sdpa slots, and the
 * backward (the kernels recompute the probabilities from the saved
 * log-sum-exp: nothing of size Tq x Tk is kept).
 *
 *   q (...,Tq,D), k (...,Tk,D), v (...,Tk,Dv) -> o (...,Tq,Dv); the leading
 *   dims (flattened to B) must be equal. mask: any dtype, nonzero = attend,
 *   broadcastable to (...,Tq,Tk); it is cast to uint8 and read through
 *   strides (0 on broadcast dims), copied only when its leading dims do not
 *   merge into one stride. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../backend.h"

typedef struct {
  rn_sdpa_params p;
  int has_mask;
} sdpa_ctx;

/* saved: q, k, v, o, lse (contiguous), then the uint8 mask view if any */
static int sdpa_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  sdpa_ctx *c = n->ctx;
  rn_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *o = n->saved[3];
  rn_tensor *lse = n->saved[4];
  rn_sdpa_params p = c->p;
  p.mask = c->has_mask ? n->saved[5] : NULL;
  const rn_backend *be = rn_backend_of(q);
  if (!RN_HAS(be, sdpa_bwd)) return -1;
  rn_tensor *gc = rn_contiguous(g);
  rn_tensor *gq = gc ? rn_empty_like(q) : NULL, *gk = gq ? rn_empty_like(k) : NULL;
  rn_tensor *gv = gk ? rn_empty_like(v) : NULL;
  int rc = gv ? be->sdpa_bwd(gq, gk, gv, gc, q, k, v, o, lse, &p) : -1;
  rn_release(gc);
  if (rc < 0) { rn_release(gq); rn_release(gk); rn_release(gv); return -1; }
  gin[0] = gq;
  gin[1] = gk;
  gin[2] = gv;
  return 0;
}

/* The uint8 mask viewed over (lead..., Tq, Tk); fills the strides. NULL +
 * rn_err when it does not broadcast. */
static rn_tensor *mask_view(rn_tensor *mask, const rn_tensor *q, int64_t Tk, rn_sdpa_params *p) {
  const char *op = "scaled_dot_product_attention";
  int nd = q->ndim;
  int64_t sh[RN_MAXDIM];
  memcpy(sh, q->shape, (size_t)(nd - 1) * sizeof *sh);
  sh[nd - 1] = Tk;
  char b1[128], b2[128];
  if (mask->ndim > nd) {
    rn_err("%s: mask %s has more dims than the scores %s", op, rn_shape_str(mask, b1, sizeof b1),
           rn_dims_str(nd, sh, b2, sizeof b2));
    return NULL;
  }
  for (int i = 0; i < mask->ndim; i++) {
    int64_t m = mask->shape[i], s = sh[nd - mask->ndim + i];
    if (m != 1 && m != s) {
      rn_err("%s: mask %s does not broadcast to the scores (...,Tq,Tk) = %s", op,
             rn_shape_str(mask, b1, sizeof b1), rn_dims_str(nd, sh, b2, sizeof b2));
      return NULL;
    }
  }
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *u = mask->dtype == RN_U8 ? (rn_retain(mask), mask) : NULL;
  if (!u) { /* nonzero -> 1 */
    rn_tensor *nz = rn_binary_scalar(RN_OP_NE, mask, 0, false);
    u = nz ? rn_cast(nz, RN_U8) : NULL;
    rn_release(nz);
  }
  rn_tensor *e = u ? rn_expand(u, nd, sh) : NULL;
  rn_release(u);
  /* the leading dims must merge into one stride */
  bool merged = true;
  int64_t inner = -1, expect = 0;
  for (int d = nd - 3; e && d >= 0; d--) {
    if (e->shape[d] == 1) continue;
    if (inner < 0) inner = e->stride[d];
    else if (e->stride[d] != expect) merged = false;
    expect = e->stride[d] * e->shape[d];
  }
  if (e && !merged) {
    rn_tensor *c = rn_clone(e);
    rn_release(e);
    e = c;
    inner = e ? e->stride[nd - 3 >= 0 ? nd - 3 : 0] : 0;
  }
  rn_set_grad_enabled(g);
  if (!e) return NULL;
  p->msb = inner < 0 || nd < 3 ? 0 : inner;
  p->msq = e->stride[nd - 2];
  p->msk = e->stride[nd - 1];
  return e;
}

rn_tensor *rn_scaled_dot_product_attention(rn_tensor *q, rn_tensor *k, rn_tensor *v,
                                           rn_tensor *mask, bool causal, double scale) {
  const char *op = "scaled_dot_product_attention";
  char b1[128], b2[128], b3[128];
  rn_tensor *ins[4] = {q, k, v, mask};
  if (rn_same_device(op, mask ? 4 : 3, ins) < 0) return NULL;
  if (q->dtype != k->dtype || q->dtype != v->dtype || !rn_dtype_is_float(q->dtype)) {
    rn_err("%s: q, k, v are %s, %s, %s; all of one float type is needed", op,
           rn_dtype_name(q->dtype), rn_dtype_name(k->dtype), rn_dtype_name(v->dtype));
    return NULL;
  }
  int nd = q->ndim;
  bool ok = nd >= 2 && k->ndim == nd && v->ndim == nd;
  for (int i = 0; ok && i < nd - 2; i++) ok = q->shape[i] == k->shape[i] && q->shape[i] == v->shape[i];
  if (ok) ok = q->shape[nd - 1] == k->shape[nd - 1] && k->shape[nd - 2] == v->shape[nd - 2];
  if (!ok) {
    rn_err("%s: q %s, k %s, v %s must be (...,Tq,D), (...,Tk,D), (...,Tk,Dv) with the same "
           "leading dims", op, rn_shape_str(q, b1, sizeof b1), rn_shape_str(k, b2, sizeof b2),
           rn_shape_str(v, b3, sizeof b3));
    return NULL;
  }
  rn_sdpa_params p = {0};
  p.Tq = q->shape[nd - 2];
  p.Tk = k->shape[nd - 2];
  p.D = q->shape[nd - 1];
  p.Dv = v->shape[nd - 1];
  p.B = 1;
  for (int i = 0; i < nd - 2; i++) p.B *= q->shape[i];
  p.scale = scale > 0 ? scale : 1.0 / sqrt((double)(p.D > 0 ? p.D : 1));
  p.causal = causal;
  if (!(p.scale < INFINITY)) { rn_err("%s: scale must be finite, got %g", op, scale); return NULL; }
  const rn_backend *be = rn_backend_of(q);
  if (!RN_HAS(be, sdpa_fwd)) return NULL;
  rn_tensor *mv = NULL;
  if (mask && !(mv = mask_view(mask, q, p.Tk, &p))) return NULL;
  p.mask = mv;
  bool gm = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *qc = rn_contiguous(q), *kc = qc ? rn_contiguous(k) : NULL;
  rn_tensor *vc = kc ? rn_contiguous(v) : NULL;
  rn_set_grad_enabled(gm);
  int64_t osh[RN_MAXDIM], nl = p.B * p.Tq;
  memcpy(osh, q->shape, (size_t)nd * sizeof *osh);
  osh[nd - 1] = p.Dv;
  rn_tensor *o = vc ? rn_empty(nd, osh, q->dtype, rn_device(q)) : NULL;
  rn_tensor *lse = o ? rn_empty(1, &nl, RN_F64, rn_device(q)) : NULL;
  int rc = lse ? be->sdpa_fwd(o, lse, qc, kc, vc, &p) : -1;
  rn_node *n = NULL;
  sdpa_ctx *c = NULL;
  if (rc == 0 && rn_needs_grad(3, ins)) {
    c = malloc(sizeof *c);
    n = c ? rn_node_new(op, sdpa_bw, 3, ins) : NULL;
    if (!c) rn_err("%s: out of memory", op);
    rc = n && rn_node_save(n, qc) == 0 && rn_node_save(n, kc) == 0 && rn_node_save(n, vc) == 0 &&
                 rn_node_save(n, o) == 0 && rn_node_save(n, lse) == 0 &&
                 (!mv || rn_node_save(n, mv) == 0)
             ? 0 : -1;
  }
  rn_release(qc); rn_release(kc); rn_release(vc); rn_release(lse); rn_release(mv);
  if (rc < 0) { rn_node_release(n); free(c); rn_release(o); return NULL; }
  if (n) {
    c->p = p;
    c->p.mask = NULL;
    c->has_mask = mv != NULL;
    n->ctx = c;
    n->ctx_free = free;
    rn_node_attach(n, o);
  }
  return o;
}
