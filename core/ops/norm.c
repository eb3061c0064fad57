/* norm.c (ops) - batch normalization front end: checks, dispatch to the
 * backend's bn slots, the in-place running-statistics update, and the
 * backward rules of the training and inference forms.
 *
 * x: (...,C) channels last, viewed as (R,C) with R the product of the other
 * dims; gamma, beta, running_mean, running_var: (C) or NULL, x's dtype and
 * device, or float32 for a bfloat16/float16 x (the mixed_bfloat16 policy:
 * statistics and parameters stay float32; the saved batch statistics and
 * the parameters' gradients are float32 then too). Running statistics are
 * buffers: they never get a gradient.
 *
 * rn_batch_norm_relu is relu(batch_norm(x)) in one kernel where the backend
 * has the fused slots (one node "batch_norm_relu", which also saves y for
 * the ReLU's mask), else the two ops in sequence.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../backend.h"
#include "../mutant.h"

typedef struct { bool training, relu; double eps; } bn_ctx;

/* Contiguous (C) copy of an optional parameter (NULL stays NULL). */
static int param_contig(rn_tensor *t, rn_tensor **out) {
  *out = NULL;
  if (!t) return 0;
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  *out = rn_contiguous(t);
  rn_set_grad_enabled(g);
  return *out ? 0 : -1;
}

/* ---- backward ------------------------------------------------------------ */

/* saved: x (contiguous, x's shape), gamma or NULL placeholder, save_mean,
 * save_invstd (training) / running_mean, running_var (inference); with the
 * ReLU fused: y, then beta or a NULL placeholder. The parameters and running
 * statistics are copies made at the forward, so the backward (and the
 * fused ReLU's mask) use the forward's values even if those change in place
 * before it. */
static int bn_train_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  rn_tensor *x = n->saved[0], *gamma = n->saved[1]; /* NULL without gamma */
  rn_tensor *mean = n->saved[2], *invstd = n->saved[3];
  const rn_backend *be = rn_backend_of(x);
  bool relu = ((bn_ctx *)n->ctx)->relu;
  if (relu ? !RN_HAS(be, bn_relu_bwd) : !RN_HAS(be, bn_bwd)) return -1;
  int64_t C = x->shape[x->ndim - 1];
  rn_tensor *gc = rn_contiguous(g);
  rn_tensor *g2 = gc ? rn_view2d(gc) : NULL, *x2 = g2 ? rn_view2d(x) : NULL;
  rn_tensor *gx = x2 ? rn_empty_like(x) : NULL, *gx2 = gx ? rn_view2d(gx) : NULL;
  rn_tensor *gg = NULL, *gb = NULL;
  int rc = gx2 ? 0 : -1;
  rn_dtype pd = n->in_shape[1].dtype, bd = n->in_shape[2].dtype; /* the parameters' */
  if (rc == 0 && n->needs[1] && !(gg = rn_empty(1, &C, pd, rn_device(x)))) rc = -1;
  if (rc == 0 && n->needs[2] && !(gb = rn_empty(1, &C, bd, rn_device(x)))) rc = -1;
  rn_tensor *y2 = NULL;
  if (rc == 0 && relu && !(y2 = rn_view2d(n->saved[4]))) rc = -1;
  if (rc == 0)
    rc = relu ? be->bn_relu_bwd(gx2, gg, gb, g2, x2, y2, gamma, n->saved[5], mean, invstd)
              : be->bn_bwd(gx2, gg, gb, g2, x2, gamma, mean, invstd);
  rn_release(gc); rn_release(g2); rn_release(x2); rn_release(gx2); rn_release(y2);
  if (rc < 0) { rn_release(gx); rn_release(gg); rn_release(gb); return -1; }
  if (n->needs[0]) gin[0] = gx; else rn_release(gx);
  gin[1] = gg;
  gin[2] = gb;
  return 0;
}

/* y = (x - rm) * k + beta with k = gamma / sqrt(rv + eps):
 *   gx = gy * k, ggamma = sum gy * (x - rm) / sqrt(rv + eps), gbeta = sum gy */
static int bn_infer_bw_math(rn_node *n, bn_ctx *c, rn_tensor *g, rn_tensor *x,
                            rn_tensor *gamma, rn_tensor *rm, rn_tensor *rv, rn_tensor **gin);

static int bn_infer_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  bn_ctx *c = n->ctx;
  rn_tensor *x = n->saved[0], *gamma = n->saved[1], *rm = n->saved[2], *rv = n->saved[3];
  /* a 16-bit x with float32 statistics: the rule runs in float32 (the tape
   * rounds each gradient to its input's dtype) */
  rn_tensor *cv[3] = {NULL, NULL, NULL};
  if (x->dtype != rv->dtype || g->dtype != rv->dtype || (gamma && gamma->dtype != rv->dtype)) {
    if (!(x = cv[0] = rn_cast(x, rv->dtype)) || !(g = cv[1] = rn_cast(g, rv->dtype)) ||
        (gamma && !(gamma = cv[2] = rn_cast(gamma, rv->dtype)))) {
      for (int i = 0; i < 3; i++) rn_release(cv[i]);
      return -1;
    }
  }
  int rc = bn_infer_bw_math(n, c, g, x, gamma, rm, rv, gin);
  for (int i = 0; i < 3; i++) rn_release(cv[i]);
  return rc;
}

static int bn_infer_bw_math(rn_node *n, bn_ctx *c, rn_tensor *g, rn_tensor *x,
                            rn_tensor *gamma, rn_tensor *rm, rn_tensor *rv, rn_tensor **gin) {
  int nd = x->ndim, dims[RN_MAXDIM];
  for (int i = 0; i < nd - 1; i++) dims[i] = i;
  /* invstd (C) */
  rn_tensor *ve = rn_binary_scalar(RN_OP_ADD, rv, c->eps, false);
  rn_tensor *sd = ve ? rn_unary(RN_OP_SQRT, ve) : NULL;
  rn_tensor *invstd = sd ? rn_binary_scalar(RN_OP_DIV, sd, 1.0, true) : NULL;
  rn_release(ve);
  rn_release(sd);
  if (!invstd) return -1;
  int rc = 0;
  if (n->needs[0]) {
    rn_tensor *k = gamma ? rn_binary(RN_OP_MUL, gamma, invstd) : (rn_retain(invstd), invstd);
    if (!k || !(gin[0] = rn_binary(RN_OP_MUL, g, k))) rc = -1;
    rn_release(k);
  }
  if (rc == 0 && n->needs[1]) {
    rn_tensor *xc = rn_binary(RN_OP_SUB, x, rm);
    rn_tensor *xh = xc ? rn_binary(RN_OP_MUL, xc, invstd) : NULL;
    rn_tensor *p = xh ? rn_binary(RN_OP_MUL, g, xh) : NULL;
    if (!p || !(gin[1] = nd > 1 ? rn_reduce(RN_RED_SUM, p, nd - 1, dims, false)
                                : (rn_retain(p), p)))
      rc = -1;
    rn_release(xc); rn_release(xh); rn_release(p);
  }
  if (rc == 0 && n->needs[2]) {
    if (!(gin[2] = nd > 1 ? rn_reduce(RN_RED_SUM, g, nd - 1, dims, false) : (rn_retain(g), g)))
      rc = -1;
  }
  rn_release(invstd);
  return rc;
}

/* ---- forward ------------------------------------------------------------- */

/* The dtype of the statistics for x: float32 for 16-bit x, else x's. */
static rn_dtype stat_dtype(const rn_tensor *x) {
  return x->dtype == RN_BF16 || x->dtype == RN_F16 ? RN_F32 : x->dtype;
}

static int check_param(rn_tensor *p, const char *what, const rn_tensor *x, int64_t C) {
  if (!p) return 0;
  char b1[128], b2[128];
  if (p->ndim != 1 || p->shape[0] != C)
    return rn_err("batch_norm: %s has shape %s; it must be (%lld), the last dim of x %s", what,
                  rn_shape_str(p, b1, sizeof b1), (long long)C, rn_shape_str(x, b2, sizeof b2));
  if (p->dtype != x->dtype && p->dtype != stat_dtype(x))
    return rn_err("batch_norm: %s has dtype %s but x has %s (valid: %s%s%s)", what,
                  rn_dtype_name(p->dtype), rn_dtype_name(x->dtype), rn_dtype_name(x->dtype),
                  stat_dtype(x) != x->dtype ? " or " : "",
                  stat_dtype(x) != x->dtype ? rn_dtype_name(stat_dtype(x)) : "");
  if (rn_device(p) != rn_device(x))
    return rn_err("batch_norm: %s is on %s but x is on %s; move it with :to()", what,
                  rn_device_name(rn_device(p)), rn_device_name(rn_device(x)));
  return 0;
}

/* Runs the kernel that updates running stats in place: through a contiguous
 * temporary, copied back, when a running tensor is a strided view. */
static int run_train(const rn_backend *be, rn_tensor *y2, rn_tensor *sm, rn_tensor *si,
                     rn_tensor *x2, rn_tensor *gc, rn_tensor *bc, rn_tensor *rm,
                     rn_tensor *rv, double momentum, bool unbiased, double eps, bool relu) {
  rn_tensor *rmc = NULL, *rvc = NULL;
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  int rc = 0;
  if (rm && !(rmc = rn_contiguous(rm))) rc = -1;
  if (rc == 0 && rv && !(rvc = rn_contiguous(rv))) rc = -1;
  if (rm) rn_bump_version(rm); /* updated in place below */
  if (rv) rn_bump_version(rv);
  if (rc == 0)
    rc = (relu ? be->bn_relu_fwd_train : be->bn_fwd_train)(y2, sm, si, x2, gc, bc, rmc, rvc,
                                                            momentum, unbiased, eps);
  if (rc == 0 && rmc && rmc != rm) rc = rn_copy_(rm, rmc);
  if (rc == 0 && rvc && rvc != rv) rc = rn_copy_(rv, rvc);
  rn_set_grad_enabled(g);
  rn_release(rmc);
  rn_release(rvc);
  return rc;
}

static rn_tensor *batch_norm(rn_tensor *x, rn_tensor *gamma, rn_tensor *beta,
                             rn_tensor *running_mean, rn_tensor *running_var, bool training,
                             double momentum, bool unbiased, double eps, bool relu) {
  char b1[128];
  if (x->ndim < 2) {
    rn_err("batch_norm: x has shape %s; it needs at least 2 dims (...,C), channels last",
           rn_shape_str(x, b1, sizeof b1));
    return NULL;
  }
  if (x->dtype != RN_F32 && x->dtype != RN_F64 && x->dtype != RN_F16 && x->dtype != RN_BF16) {
    rn_err("batch_norm: dtype %s is not a float type (use :float())", rn_dtype_name(x->dtype));
    return NULL;
  }
  int64_t C = x->shape[x->ndim - 1], R = C ? rn_numel(x) / C : 0;
  if (check_param(gamma, "gamma", x, C) < 0 || check_param(beta, "beta", x, C) < 0 ||
      check_param(running_mean, "running_mean", x, C) < 0 ||
      check_param(running_var, "running_var", x, C) < 0)
    return NULL;
  if (!(momentum >= 0 && momentum <= 1)) {
    rn_err("batch_norm: momentum %g outside [0, 1]", momentum);
    return NULL;
  }
  if (!(eps > 0) || isinf(eps)) {
    rn_err("batch_norm: eps %g must be > 0", eps);
    return NULL;
  }
  if (training && R == 0 && C > 0) {
    rn_err("batch_norm: training needs at least one value per channel; x %s has none",
           rn_shape_str(x, b1, sizeof b1));
    return NULL;
  }
  /* R == 1 in training: the batch variance is 0 and y = beta; allowed. */
  if (!training && (!running_mean || !running_var)) {
    rn_err("batch_norm: inference (training=false) needs running_mean and running_var");
    return NULL;
  }
  if (training) {
    if (running_mean && rn_check_inplace(running_mean, "batch_norm running_mean") < 0) return NULL;
    if (running_var && rn_check_inplace(running_var, "batch_norm running_var") < 0) return NULL;
  }
  const rn_backend *be = rn_backend_of(x);
  rn_tensor *ins[3] = {x, gamma, beta};
  bool need = rn_needs_grad(3, ins);
  if (relu && !(training ? be->bn_relu_fwd_train && be->bn_relu_bwd
                         : be->bn_relu_fwd_infer && !need)) {
    /* no fused kernel here: batch norm, then relu */
    rn_tensor *t = batch_norm(x, gamma, beta, running_mean, running_var, training, momentum,
                              unbiased, eps, false);
    rn_tensor *r = t ? rn_unary(RN_OP_RELU, t) : NULL;
    rn_release(t);
    return r;
  }
  if (training ? !RN_HAS(be, bn_fwd_train) : !RN_HAS(be, bn_fwd_infer)) return NULL;

  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *xc = rn_contiguous(x);
  rn_set_grad_enabled(g);
  rn_tensor *gc = NULL, *bc = NULL, *sm = NULL, *si = NULL, *y = NULL, *x2 = NULL, *y2 = NULL;
  rn_tensor *rmc = NULL, *rvc = NULL;
  int rc = xc ? 0 : -1;
  if (rc == 0) rc = param_contig(gamma, &gc);
  if (rc == 0) rc = param_contig(beta, &bc);
  if (rc == 0 && !(y = rn_empty(x->ndim, x->shape, x->dtype, rn_device(x)))) rc = -1;
  if (rc == 0 && (!(x2 = rn_view2d(xc)) || !(y2 = rn_view2d(y)))) rc = -1;
  if (rc == 0 && training) {
    sm = rn_empty(1, &C, stat_dtype(x), rn_device(x));
    si = sm ? rn_empty(1, &C, stat_dtype(x), rn_device(x)) : NULL;
    rc = si ? run_train(be, y2, sm, si, x2, gc, bc, running_mean, running_var,
                        RN_MUTANT("bn_momentum") ? 1 - momentum : momentum, unbiased, eps, relu)
            : -1;
  } else if (rc == 0) {
    rc = param_contig(running_mean, &rmc);
    if (rc == 0) rc = param_contig(running_var, &rvc);
    if (rc == 0)
      rc = (relu ? be->bn_relu_fwd_infer : be->bn_fwd_infer)(y2, x2, gc, bc, rmc, rvc,
                                                             RN_MUTANT("bn_eps_infer") ? 1e-5 : eps);
  }
  rn_release(x2);
  rn_release(y2);
  if (rc == 0 && need) {
    rn_node *n = rn_node_new(relu ? "batch_norm_relu" : "batch_norm",
                             training ? bn_train_bw : bn_infer_bw, 3, ins);
    bn_ctx *c = n ? malloc(sizeof *c) : NULL;
    if (n && !c) rn_err("batch_norm: out of memory recording the autograd node");
    rc = c ? 0 : -1;
    if (c) {
      c->training = training;
      c->relu = relu;
      c->eps = eps;
      n->ctx = c;
      n->ctx_free = free;
    }
    /* saved[1] (and saved[5]) must exist even without gamma (beta): a
     * placeholder slot. The (C) parameters are saved as copies: the
     * backward must see the forward's values even if they change in place
     * in between (an optimizer step, a user's copy_ under no_grad). */
    rn_tensor *gk = NULL, *bk = NULL, *mk = NULL, *vk = NULL;
    if (rc == 0) {
      rn_set_grad_enabled(false);
      if ((gc && !(gk = rn_clone(gc))) || (relu && bc && !(bk = rn_clone(bc))) ||
          (!training && (!(mk = rn_clone(rmc)) || !(vk = rn_clone(rvc)))))
        rc = -1;
      rn_set_grad_enabled(g);
    }
    if (rc == 0) rc = rn_node_save(n, xc);
    if (rc == 0) {
      if (gk) rc = rn_node_save(n, gk);
      else n->saved[n->nsaved++] = NULL;
    }
    if (rc == 0) rc = rn_node_save(n, training ? sm : mk);
    if (rc == 0) rc = rn_node_save(n, training ? si : vk);
    if (rc == 0 && relu) rc = rn_node_save(n, y); /* saved[4]: the ReLU's output */
    if (rc == 0 && relu) {                          /* saved[5]: beta */
      if (bk) rc = rn_node_save(n, bk);
      else n->saved[n->nsaved++] = NULL;
    }
    rn_release(gk);
    rn_release(bk);
    rn_release(mk);
    rn_release(vk);
    if (rc == 0) rn_node_attach(n, y);
    else rn_node_release(n);
  }
  rn_release(xc); rn_release(gc); rn_release(bc); rn_release(sm); rn_release(si);
  rn_release(rmc); rn_release(rvc);
  if (rc < 0) { rn_release(y); return NULL; }
  return y;
}

rn_tensor *rn_batch_norm(rn_tensor *x, rn_tensor *gamma, rn_tensor *beta,
                         rn_tensor *running_mean, rn_tensor *running_var, bool training,
                         double momentum, bool unbiased, double eps) {
  return batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, unbiased, eps,
                    false);
}

rn_tensor *rn_batch_norm_relu(rn_tensor *x, rn_tensor *gamma, rn_tensor *beta,
                              rn_tensor *running_mean, rn_tensor *running_var, bool training,
                              double momentum, bool unbiased, double eps) {
  return batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, unbiased, eps,
                    true);
}
