/* pool.c (ops) - front ends of 2-D pooling, NHWC: max_pool2d and avg_pool2d
 * (checks, TF "same" padding, output shape, dispatch to pool2d_fwd, autograd
 * through pool2d_bwd) and global_avg_pool2d (a mean over H and W).
 *   x: (N,H,W,C) -> y: (N,OH,OW,C), OH = floor((H + pad_top + pad_bottom - kh) / stride_h) + 1
 *   global: (N,H,W,C) -> (N,C) */
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../backend.h"

typedef struct {
  rn_pool_params p; /* resolved: same -> explicit pads */
  bool max;
} pool_ctx;

static int pool_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  pool_ctx *c = n->ctx;
  rn_inshape *s = &n->in_shape[0];
  rn_tensor *x = c->max ? n->saved[0] : NULL, *y = c->max ? n->saved[1] : NULL;
  const rn_backend *be = rn_backend_get(rn_device(g));
  if (!be || !RN_HAS(be, pool2d_bwd)) return -1;
  rn_tensor *gy = rn_contiguous(g);
  rn_tensor *gx = gy ? rn_empty(s->ndim, s->shape, s->dtype, rn_device(g)) : NULL;
  if (!gx || be->pool2d_bwd(c->max, gx, gy, x, y, &c->p) < 0) {
    rn_release(gy);
    rn_release(gx);
    return -1;
  }
  rn_release(gy);
  gin[0] = gx;
  return 0;
}

static rn_tensor *pool2d(bool max, rn_tensor *x, const rn_pool_params *p) {
  const char *op = max ? "max_pool2d" : "avg_pool2d";
  char bx[128];
  rn_shape_str(x, bx, sizeof bx);
  if (x->ndim != 4) {
    rn_err("%s: input %s must be 4-d (N,H,W,C), it has %d dims", op, bx, x->ndim);
    return NULL;
  }
  if (!rn_dtype_is_float(x->dtype)) {
    rn_err("%s: dtype %s is not a float type (use :float())", op, rn_dtype_name(x->dtype));
    return NULL;
  }
  if (p->kh < 1 || p->kw < 1) {
    rn_err("%s: kernel size (%d,%d) must be >= 1", op, p->kh, p->kw);
    return NULL;
  }
  if (p->stride_h < 1 || p->stride_w < 1) {
    rn_err("%s: stride (%d,%d) must be >= 1", op, p->stride_h, p->stride_w);
    return NULL;
  }
  rn_pool_params q = *p;
  if (p->same) {
    rn_same_padding(x->shape[1], p->kh, p->stride_h, 1, &q.pad_top, &q.pad_bottom);
    rn_same_padding(x->shape[2], p->kw, p->stride_w, 1, &q.pad_left, &q.pad_right);
    q.same = 0;
  } else if (p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0 ||
             p->pad_top >= p->kh || p->pad_bottom >= p->kh || p->pad_left >= p->kw ||
             p->pad_right >= p->kw) {
    rn_err("%s: padding (top %d, bottom %d, left %d, right %d) must be in 0..%d (rows) and "
           "0..%d (cols), below the kernel size (%d,%d)", op, p->pad_top, p->pad_bottom,
           p->pad_left, p->pad_right, p->kh - 1, p->kw - 1, p->kh, p->kw);
    return NULL;
  }
  int64_t ph = x->shape[1] + q.pad_top + q.pad_bottom, pw = x->shape[2] + q.pad_left + q.pad_right;
  if (ph < p->kh || pw < p->kw) {
    rn_err("%s: input %s padded to %lldx%lld is smaller than the %dx%d kernel; the output "
           "would be empty (needs padded size >= kernel)", op, bx, (long long)ph, (long long)pw,
           p->kh, p->kw);
    return NULL;
  }
  int64_t ys[4] = {x->shape[0], (ph - p->kh) / p->stride_h + 1, (pw - p->kw) / p->stride_w + 1,
                   x->shape[3]};
  const rn_backend *be = rn_backend_of(x);
  if (!RN_HAS(be, pool2d_fwd)) return NULL;
  bool gm = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *xc = rn_contiguous(x);
  rn_set_grad_enabled(gm);
  rn_tensor *y = xc ? rn_empty(4, ys, x->dtype, rn_device(x)) : NULL;
  if (!y || be->pool2d_fwd(max, y, xc, &q) < 0) goto fail;
  if (rn_needs_grad(1, &x)) {
    rn_node *n = rn_node_new(op, pool_bw, 1, &x);
    pool_ctx *c = n ? malloc(sizeof *c) : NULL;
    if (n && !c) rn_err("%s: out of memory recording the autograd node", op);
    if (!c || (max && (rn_node_save(n, xc) < 0 || rn_node_save(n, y) < 0))) {
      free(c);
      rn_node_release(n);
      goto fail;
    }
    c->p = q;
    c->max = max;
    n->ctx = c;
    n->ctx_free = free;
    rn_node_attach(n, y);
  }
  rn_release(xc);
  return y;
fail:
  rn_release(xc);
  rn_release(y);
  return NULL;
}

rn_tensor *rn_max_pool2d(rn_tensor *x, const rn_pool_params *p) { return pool2d(true, x, p); }
rn_tensor *rn_avg_pool2d(rn_tensor *x, const rn_pool_params *p) { return pool2d(false, x, p); }

rn_tensor *rn_global_avg_pool2d(rn_tensor *x) {
  if (x->ndim != 4) {
    char bx[128];
    rn_err("global_avg_pool2d: input %s must be 4-d (N,H,W,C), it has %d dims",
           rn_shape_str(x, bx, sizeof bx), x->ndim);
    return NULL;
  }
  if (!rn_dtype_is_float(x->dtype)) {
    rn_err("global_avg_pool2d: dtype %s is not a float type (use :float())",
           rn_dtype_name(x->dtype));
    return NULL;
  }
  if (x->shape[1] == 0 || x->shape[2] == 0) {
    char bx[128];
    rn_err("global_avg_pool2d: input %s has an empty image (H and W must be >= 1)",
           rn_shape_str(x, bx, sizeof bx));
    return NULL;
  }
  int dims[2] = {1, 2};
  return rn_reduce(RN_RED_MEAN, x, 2, dims, false);
}
