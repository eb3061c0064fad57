/* pad.c (ops) - rn_pad (constant, reflect, replicate on any dims) and
 * rn_resize (NHWC nearest and bilinear up/down-sampling). Both are
 * separable: the front end applies a one-dim "line" op per dim, x viewed as
 * (outer, L, inner) with L the dim's size, each one an autograd node, so the
 * kernels stay one-dimensional (slots line_fwd / line_bwd).
 *
 * pad, dim of size L, before b and after a (>= 0): output index o reads
 *   constant:  x[o-b] inside, else the value
 *   replicate: x[clamp(o-b, 0, L-1)]                  (L >= 1)
 *   reflect:   x[i] with i = o-b mirrored at 0 and L-1 without repeating the
 *              edge (numpy "reflect", PyTorch): b, a <= L-1
 * resize, L -> Lout, s = L/Lout:
 *   nearest:   x[min(floor(o*s), L-1)] (PyTorch "nearest", Keras
 *              UpSampling2D for integer factors)
 *   bilinear:  half-pixel centres (align_corners=false, tf.image.resize):
 *              c = max((o+0.5)*s - 0.5, 0), taps floor(c) and the next
 *              (clamped) with weights 1-f and f. */
#include <stdlib.h>

#include "../autograd.h"
#include "../backend.h"

_Static_assert((int)RN_PADDING_CONSTANT == (int)RN_LINE_CONSTANT &&
                   (int)RN_PADDING_REFLECT == (int)RN_LINE_REFLECT &&
                   (int)RN_PADDING_REPLICATE == (int)RN_LINE_REPLICATE,
               "rn_padding_mode values are the line kinds");

static const char *const kind_names[] = {"pad", "pad", "pad", "resize", "resize"};

typedef struct {
  rn_line_params p;
  int dim;
} line_ctx;

static int line_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  const line_ctx *c = n->ctx;
  const rn_inshape *s = &n->in_shape[0];
  const rn_backend *be = rn_backend_get(rn_device(g));
  if (!be || !RN_HAS(be, line_bwd)) return -1;
  rn_tensor *gc = rn_contiguous(g);
  rn_tensor *gx = gc ? rn_zeros(s->ndim, s->shape, g->dtype, rn_device(g)) : NULL;
  if (!gx || be->line_bwd(gx, gc, &c->p) < 0) {
    rn_release(gc);
    rn_release(gx);
    return -1;
  }
  rn_release(gc);
  gin[0] = gx;
  return 0;
}

/* y = the line op along dim of x (Lout: the output size of that dim) */
static rn_tensor *line_op(rn_tensor *x, int dim, rn_line_params p) {
  const char *op = kind_names[p.kind];
  const rn_backend *be = rn_backend_of(x);
  if (!RN_HAS(be, line_fwd)) return NULL;
  p.outer = 1;
  p.inner = 1;
  for (int i = 0; i < x->ndim; i++) {
    if (i < dim) p.outer *= x->shape[i];
    else if (i > dim) p.inner *= x->shape[i];
  }
  p.L = x->shape[dim];
  int64_t sh[RN_MAXDIM];
  for (int i = 0; i < x->ndim; i++) sh[i] = x->shape[i];
  sh[dim] = p.Lout;
  bool gm = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *xc = rn_contiguous(x);
  rn_set_grad_enabled(gm);
  rn_tensor *y = xc ? rn_empty(x->ndim, sh, x->dtype, rn_device(x)) : NULL;
  int rc = y ? be->line_fwd(y, xc, &p) : -1;
  rn_release(xc);
  if (rc == 0 && rn_needs_grad(1, &x) && rn_dtype_is_float(x->dtype)) {
    line_ctx *c = malloc(sizeof *c);
    rn_node *n = c ? rn_node_new(op, line_bw, 1, &x) : NULL;
    if (!n) {
      if (!c) rn_err("%s: out of memory", op);
      free(c);
      rc = -1;
    } else {
      c->p = p;
      c->dim = dim;
      n->ctx = c;
      n->ctx_free = free;
      rn_node_attach(n, y);
    }
  }
  if (rc < 0) { rn_release(y); return NULL; }
  return y;
}

rn_tensor *rn_pad(rn_tensor *x, const int64_t (*pads)[2], rn_padding_mode mode, double value) {
  char b1[128];
  if ((unsigned)mode > RN_PADDING_REPLICATE) { rn_err("pad: unknown mode %d", (int)mode); return NULL; }
  for (int d = 0; d < x->ndim; d++) {
    int64_t b = pads[d][0], a = pads[d][1], L = x->shape[d];
    if (b < 0 || a < 0) {
      rn_err("pad: dim %d: pads (%lld, %lld) must be >= 0", d + 1, (long long)b, (long long)a);
      return NULL;
    }
    if (mode == RN_PADDING_REFLECT && (b > L - 1 || a > L - 1) && (b || a)) {
      rn_err("pad: reflect pads (%lld, %lld) of dim %d of %s must be < its size %lld", (long long)b,
             (long long)a, d + 1, rn_shape_str(x, b1, sizeof b1), (long long)L);
      return NULL;
    }
    if (mode == RN_PADDING_REPLICATE && L == 0 && (b || a)) {
      rn_err("pad: replicate needs a non-empty dim %d of %s", d + 1, rn_shape_str(x, b1, sizeof b1));
      return NULL;
    }
    if (L + b + a > RN_MAX_NUMEL) { rn_err("pad: dim %d would be too large", d + 1); return NULL; }
  }
  rn_tensor *y = x;
  rn_retain(y);
  for (int d = x->ndim - 1; d >= 0; d--) {
    if (!pads[d][0] && !pads[d][1]) continue;
    rn_line_params p = {0};
    p.kind = (int)mode;
    p.before = pads[d][0];
    p.after = pads[d][1];
    p.Lout = x->shape[d] + p.before + p.after;
    p.value = value;
    rn_tensor *t = line_op(y, d, p);
    rn_release(y);
    if (!t) return NULL;
    y = t;
  }
  return y;
}

rn_tensor *rn_resize(rn_tensor *x, int64_t oh, int64_t ow, bool bilinear) {
  char b1[128];
  if (x->ndim != 4) {
    rn_err("resize: x must be (N,H,W,C), got %s", rn_shape_str(x, b1, sizeof b1));
    return NULL;
  }
  if (oh < 1 || ow < 1 || oh > (1 << 24) || ow > (1 << 24)) {
    rn_err("resize: output size (%lld, %lld) must be 1..%d", (long long)oh, (long long)ow, 1 << 24);
    return NULL;
  }
  if (x->shape[1] == 0 || x->shape[2] == 0) {
    rn_err("resize: x %s has an empty H or W", rn_shape_str(x, b1, sizeof b1));
    return NULL;
  }
  if (!rn_dtype_is_float(x->dtype) && bilinear) {
    rn_err("resize: bilinear needs a float x, got %s", rn_dtype_name(x->dtype));
    return NULL;
  }
  rn_line_params p = {0};
  p.kind = bilinear ? RN_LINE_BILINEAR : RN_LINE_NEAREST;
  p.Lout = oh;
  rn_tensor *h = oh == x->shape[1] ? (rn_retain(x), x) : line_op(x, 1, p);
  if (!h) return NULL;
  p.Lout = ow;
  rn_tensor *y = ow == x->shape[2] ? (rn_retain(h), h) : line_op(h, 2, p);
  rn_release(h);
  return y;
}
