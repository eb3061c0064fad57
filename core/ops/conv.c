/* conv.c (ops) - front end of 2-D convolution: TF "same" padding, input
 * checks with messages naming shapes and valid ranges, output shape, dispatch
 * to the backend's conv2d_fwd, and the autograd record whose backward calls
 * conv2d_bwd_data / conv2d_bwd_filter for the inputs that need a gradient.
 * rn_conv2d_fused: the same convolution for inference, with the residual add
 * and/or a ReLU as its epilogue (the model graph's inference fusions).
 * rn_conv2d_transpose: the transposed convolution, on the same three slots
 * (its forward is conv2d_bwd_data, its input gradient conv2d_fwd, its
 * weight gradient conv2d_bwd_filter with the roles of x and gy swapped).
 *   x: (N,H,W,Cin), w: (KH,KW,Cin/G,Cout), b: (Cout) or NULL -> y: (N,OH,OW,Cout)
 *   with G = groups (Cin and Cout divisible by G; depthwise: G = Cin)
 *   OH = floor((H + pad_top + pad_bottom - dil_h*(KH-1) - 1) / stride_h) + 1 */
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../backend.h"
#include "../mutant.h"

/* TensorFlow "same": out = ceil(in/stride); the total padding needed for
 * that, max((out-1)*stride + (k-1)*dil + 1 - in, 0), is split with the odd
 * cell at the bottom/right (3x3 stride 2 on 32: out 16, total 1 -> 0 top,
 * 1 bottom). */
void rn_same_padding(int64_t in, int k, int stride, int dil, int *lo, int *hi) {
  if (stride < 1) stride = 1;
  if (dil < 1) dil = 1;
  int64_t out = (in + stride - 1) / stride;
  int64_t total = (out - 1) * stride + (int64_t)(k - 1) * dil + 1 - in;
  if (total < 0) total = 0;
  *lo = (int)(total / 2);
  *hi = (int)(total - total / 2);
  if (RN_MUTANT("same_pad_side")) { int t = *lo; *lo = *hi; *hi = t; }
}

/* Backward context: the resolved params (same -> explicit pads). */
static int conv2d_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  const rn_conv_params *p = n->ctx;
  rn_tensor *x = n->saved[0], *w = n->saved[1];
  const rn_backend *be = rn_backend_of(x);
  rn_tensor *gy = rn_contiguous(g);
  if (!gy) return -1;
  int rc = 0;
  if (n->needs[0]) {
    rn_tensor *gx = RN_HAS(be, conv2d_bwd_data) ? rn_empty_like(x) : NULL;
    if (!gx || be->conv2d_bwd_data(gx, gy, w, p) < 0) { rn_release(gx); rc = -1; }
    else gin[0] = gx;
  }
  if (rc == 0 && !n->needs[1] && n->needs[2]) { /* bias only: gb = sum of gy over N,OH,OW */
    int dims[3] = {0, 1, 2};
    if (!(gin[2] = rn_reduce(RN_RED_SUM, gy, 3, dims, false))) rc = -1;
  } else if (rc == 0 && n->needs[1]) {
    rn_tensor *gw = NULL, *gb = NULL;
    if (!RN_HAS(be, conv2d_bwd_filter)) rc = -1;
    if (rc == 0 && !(gw = rn_empty_like(w))) rc = -1;
    if (rc == 0 && n->needs[2] && !(gb = rn_empty(1, &w->shape[3], w->dtype, rn_device(w))))
      rc = -1;
    if (rc == 0 && be->conv2d_bwd_filter(gw, gb, gy, x, p) < 0) rc = -1;
    if (rc == 0 && n->needs[1]) gin[1] = gw;
    else rn_release(gw);
    if (rc == 0) gin[2] = gb;
    else rn_release(gb);
  }
  rn_release(gy);
  return rc;
}

/* Checks x, w, b and p; fills q (resolved pads) and the output shape ys. */
static int conv2d_check(const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                        const rn_conv_params *p, rn_conv_params *q, int64_t *ys) {
  char bx[128], bw[128], bb[128];
  rn_shape_str(x, bx, sizeof bx);
  rn_shape_str(w, bw, sizeof bw);
  if (x->ndim != 4)
    return rn_err("conv2d: input %s must be 4-d (N,H,W,C), it has %d dims", bx, x->ndim);
  if (w->ndim != 4)
    return rn_err("conv2d: weight %s must be 4-d (KH,KW,Cin,Cout), it has %d dims", bw, w->ndim);
  int64_t G = p->groups == 0 ? 1 : p->groups;
  if (G < 1 || G > x->shape[3] || x->shape[3] % G || w->shape[3] % G)
    return rn_err("conv2d: groups %lld must divide the input's %lld channels and the weight's "
                  "%lld output channels (valid: 1..%lld, a divisor of both)", (long long)G,
                  (long long)x->shape[3], (long long)w->shape[3], (long long)x->shape[3]);
  if (x->shape[3] != w->shape[2] * G)
    return rn_err("conv2d: input %s has %lld channels but weight %s expects %lld%s", bx,
                  (long long)x->shape[3], bw, (long long)(w->shape[2] * G),
                  G > 1 ? " (Cin/groups in its dim 3, times the groups)" : "");
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[3]))
    return rn_err("conv2d: bias %s must have shape (%lld) (Cout of weight %s)",
                  rn_shape_str(b, bb, sizeof bb), (long long)w->shape[3], bw);
  if (!rn_dtype_is_float(x->dtype))
    return rn_err("conv2d: dtype %s is not a float type (use :float())", rn_dtype_name(x->dtype));
  if (w->dtype != x->dtype || (b && b->dtype != x->dtype))
    return rn_err("conv2d: dtypes differ (input %s, weight %s%s%s); convert with :to(dtype)",
                  rn_dtype_name(x->dtype), rn_dtype_name(w->dtype), b ? ", bias " : "",
                  b ? rn_dtype_name(b->dtype) : "");
  if (p->stride_h < 1 || p->stride_w < 1)
    return rn_err("conv2d: stride (%d,%d) must be >= 1", p->stride_h, p->stride_w);
  if (p->dil_h < 1 || p->dil_w < 1)
    return rn_err("conv2d: dilation (%d,%d) must be >= 1", p->dil_h, p->dil_w);
  if (w->shape[0] < 1 || w->shape[1] < 1 || w->shape[0] > (1 << 20) || w->shape[1] > (1 << 20))
    return rn_err("conv2d: kernel size (%lld,%lld) of weight %s must be in 1..%d",
                  (long long)w->shape[0], (long long)w->shape[1], bw, 1 << 20);
  *q = *p;
  q->groups = (int)G;
  if (RN_MUTANT("conv_stride_order")) { q->stride_h = p->stride_w; q->stride_w = p->stride_h; }
  if (p->same) {
    rn_same_padding(x->shape[1], (int)w->shape[0], q->stride_h, p->dil_h, &q->pad_top,
                    &q->pad_bottom);
    rn_same_padding(x->shape[2], (int)w->shape[1], q->stride_w, p->dil_w, &q->pad_left,
                    &q->pad_right);
    q->same = 0;
  } else if (p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 || p->pad_right < 0) {
    return rn_err("conv2d: padding (top %d, bottom %d, left %d, right %d) must be >= 0",
                  p->pad_top, p->pad_bottom, p->pad_left, p->pad_right);
  }
  /* dilated kernel extent and padded input size */
  int64_t eh = (int64_t)p->dil_h * (w->shape[0] - 1) + 1;
  int64_t ew = (int64_t)p->dil_w * (w->shape[1] - 1) + 1;
  int64_t ph = x->shape[1] + q->pad_top + q->pad_bottom;
  int64_t pw = x->shape[2] + q->pad_left + q->pad_right;
  if (ph < eh || pw < ew)
    return rn_err("conv2d: input %s padded to %lldx%lld is smaller than the %lldx%lld (dilated) "
                  "kernel of weight %s; the output would be empty (needs padded size >= kernel)",
                  bx, (long long)ph, (long long)pw, (long long)eh, (long long)ew, bw);
  ys[0] = x->shape[0];
  ys[1] = (ph - eh) / q->stride_h + 1;
  ys[2] = (pw - ew) / q->stride_w + 1;
  ys[3] = w->shape[3];
  return 0;
}

rn_tensor *rn_conv2d(rn_tensor *x, rn_tensor *w, rn_tensor *b, const rn_conv_params *p) {
  rn_tensor *ins[3] = {x, w, b};
  if (!x || !w) { rn_err("conv2d: input and weight are required"); return NULL; }
  if (rn_same_device("conv2d", b ? 3 : 2, ins) < 0) return NULL;
  rn_conv_params q;
  int64_t ys[4];
  if (conv2d_check(x, w, b, p, &q, ys) < 0) return NULL;
  const rn_backend *be = rn_backend_of(x);
  if (!RN_HAS(be, conv2d_fwd)) return NULL;
  /* the contiguous copies are kernel inputs and saved tensors, not graph ops */
  bool gm = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *xc = rn_contiguous(x), *wc = xc ? rn_contiguous(w) : NULL;
  rn_tensor *bc = (wc && b) ? rn_contiguous(b) : NULL;
  rn_set_grad_enabled(gm);
  rn_tensor *y = (wc && (bc || !b)) ? rn_empty(4, ys, x->dtype, rn_device(x)) : NULL;
  if (!y || be->conv2d_fwd(y, xc, wc, bc, &q) < 0) goto fail;
  rn_release(bc);
  bc = NULL;
  if (rn_needs_grad(3, ins)) {
    rn_node *n = rn_node_new("conv2d", conv2d_bw, 3, ins);
    rn_conv_params *c = n ? malloc(sizeof *c) : NULL;
    if (n && !c) rn_err("conv2d: out of memory recording the autograd node");
    if (!c || rn_node_save(n, xc) < 0 || rn_node_save(n, wc) < 0) {
      free(c);
      rn_node_release(n);
      goto fail;
    }
    *c = q;
    n->ctx = c;
    n->ctx_free = free;
    rn_node_attach(n, y);
  }
  rn_release(xc);
  rn_release(wc);
  return y;
fail:
  rn_release(xc);
  rn_release(wc);
  rn_release(bc);
  rn_release(y);
  return NULL;
}

/* y = [relu](conv(x, w, b) [+ acc]), no autograd: the backend's fused kernel
 * where it has one for the case, else conv2d_fwd into a temporary, then the
 * add into acc and the relu in place. */
rn_tensor *rn_conv2d_fused(rn_tensor *x, rn_tensor *w, rn_tensor *b, const rn_conv_params *p,
                           bool relu, rn_tensor *acc) {
  rn_tensor *ins[4] = {x, w, b ? b : acc, b ? acc : NULL};
  int nin = 2 + (b != NULL) + (acc != NULL);
  if (!x || !w) { rn_err("conv2d_fused: input and weight are required"); return NULL; }
  if (rn_same_device("conv2d_fused", nin, ins) < 0) return NULL;
  if (rn_needs_grad(nin, ins)) {
    rn_err("conv2d_fused: inference only, but an input requires a gradient; "
           "call it under rn.no_grad");
    return NULL;
  }
  rn_conv_params q;
  int64_t ys[4];
  if (conv2d_check(x, w, b, p, &q, ys) < 0) return NULL;
  if (acc) {
    char b1[128], b2[128];
    bool same = acc->ndim == 4;
    for (int i = 0; same && i < 4; i++) same = acc->shape[i] == ys[i];
    if (!same) {
      rn_err("conv2d_fused: the accumulator has shape %s; it must be the output's "
             "(%lld,%lld,%lld,%lld) for x %s", rn_shape_str(acc, b1, sizeof b1),
             (long long)ys[0], (long long)ys[1], (long long)ys[2], (long long)ys[3],
             rn_shape_str(x, b2, sizeof b2));
      return NULL;
    }
    if (acc->dtype != x->dtype) {
      rn_err("conv2d_fused: the accumulator has dtype %s but x has %s",
             rn_dtype_name(acc->dtype), rn_dtype_name(x->dtype));
      return NULL;
    }
    if (!rn_is_contiguous(acc)) {
      rn_err("conv2d_fused: the accumulator must be contiguous");
      return NULL;
    }
    if (acc->st == x->st || acc->st == w->st || (b && acc->st == b->st)) {
      rn_err("conv2d_fused: the accumulator shares memory with an input; it is written "
             "while the inputs are read");
      return NULL;
    }
  }
  const rn_backend *be = rn_backend_of(x);
  if (!RN_HAS(be, conv2d_fwd)) return NULL;
  bool gm = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *xc = rn_contiguous(x), *wc = xc ? rn_contiguous(w) : NULL;
  rn_tensor *bc = (wc && b) ? rn_contiguous(b) : NULL, *y = NULL, *t = NULL;
  rn_set_grad_enabled(gm);
  if (!wc || (b && !bc)) goto fail;
  if (acc) {
    rn_retain(acc);
    rn_bump_version(acc); /* written in place */
    y = acc;
  } else if (!(y = rn_empty(4, ys, x->dtype, rn_device(x)))) {
    goto fail;
  }
  int post = (acc ? RN_POST_SUM : 0) | (relu ? RN_POST_RELU : 0);
  int rc = be->conv2d_fwd_fused ? be->conv2d_fwd_fused(y, xc, wc, bc, &q, post) : RN_NOT_FUSED;
  if (rc == RN_NOT_FUSED) {
    if (acc) {
      if (!RN_HAS(be, binary) || !(t = rn_empty(4, ys, x->dtype, rn_device(x)))) goto fail;
      rc = be->conv2d_fwd(t, xc, wc, bc, &q);
      if (rc == 0) rc = be->binary(RN_OP_ADD, y, y, t);
    } else {
      rc = be->conv2d_fwd(y, xc, wc, bc, &q);
    }
    if (rc == 0 && relu) rc = RN_HAS(be, unary) ? be->unary(RN_OP_RELU, NULL, y, y) : -1;
  }
  if (rc < 0) goto fail;
  rn_release(t);
  rn_release(xc);
  rn_release(wc);
  rn_release(bc);
  return y;
fail:
  rn_release(t);
  rn_release(xc);
  rn_release(wc);
  rn_release(bc);
  rn_release(y);
  return NULL;
}

/* ---- transposed convolution ----------------------------------------------- */

/* x: (N,H,W,Cin) [the conv's gy], w: (KH,KW,Cout,Cin) [the conv's weight],
 * y: (N,OH,OW,Cout) [the conv's x]; q: the conv's resolved params. */
static int conv2d_t_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  const rn_conv_params *q = n->ctx;
  rn_tensor *x = n->saved[0], *w = n->saved[1];
  const rn_backend *be = rn_backend_of(x);
  rn_tensor *gy = rn_contiguous(g);
  if (!gy) return -1;
  int rc = 0;
  if (n->needs[0]) { /* gx = conv(gy, w) */
    rn_tensor *gx = RN_HAS(be, conv2d_fwd) ? rn_empty_like(x) : NULL;
    if (!gx || be->conv2d_fwd(gx, gy, w, NULL, q) < 0) { rn_release(gx); rc = -1; }
    else gin[0] = gx;
  }
  if (rc == 0 && n->needs[1]) { /* gw: the conv's filter gradient with input gy, output grad x */
    rn_tensor *gw = RN_HAS(be, conv2d_bwd_filter) ? rn_empty_like(w) : NULL;
    if (!gw || be->conv2d_bwd_filter(gw, NULL, x, gy, q) < 0) { rn_release(gw); rc = -1; }
    else gin[1] = gw;
  }
  rn_release(gy);
  return rc;
}

rn_tensor *rn_conv2d_transpose(rn_tensor *x, rn_tensor *w, rn_tensor *b, const rn_conv_params *p,
                               const int out_pad[2]) {
  rn_tensor *ins[3] = {x, w, b};
  if (!x || !w) { rn_err("conv2d_transpose: input and weight are required"); return NULL; }
  if (rn_same_device("conv2d_transpose", b ? 3 : 2, ins) < 0) return NULL;
  char bx[128], bw[128], bb[128];
  rn_shape_str(x, bx, sizeof bx);
  rn_shape_str(w, bw, sizeof bw);
  if (x->ndim != 4) {
    rn_err("conv2d_transpose: input %s must be 4-d (N,H,W,C), it has %d dims", bx, x->ndim);
    return NULL;
  }
  if (w->ndim != 4) {
    rn_err("conv2d_transpose: weight %s must be 4-d (KH,KW,Cout,Cin), it has %d dims", bw, w->ndim);
    return NULL;
  }
  if (x->shape[3] != w->shape[3]) {
    rn_err("conv2d_transpose: input %s has %lld channels but weight %s (KH,KW,Cout,Cin) expects "
           "%lld", bx, (long long)x->shape[3], bw, (long long)w->shape[3]);
    return NULL;
  }
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[2])) {
    rn_err("conv2d_transpose: bias %s must have shape (%lld) (Cout of weight %s)",
           rn_shape_str(b, bb, sizeof bb), (long long)w->shape[2], bw);
    return NULL;
  }
  if (p->groups > 1) {
    rn_err("conv2d_transpose: groups are not supported (got %d; valid: 1)", p->groups);
    return NULL;
  }
  if (p->stride_h < 1 || p->stride_w < 1 || p->dil_h < 1 || p->dil_w < 1 ||
      p->stride_h > (1 << 20) || p->stride_w > (1 << 20) || p->dil_h > (1 << 20) ||
      p->dil_w > (1 << 20)) {
    rn_err("conv2d_transpose: stride (%d,%d) and dilation (%d,%d) must be in 1..%d", p->stride_h,
           p->stride_w, p->dil_h, p->dil_w, 1 << 20);
    return NULL;
  }
  if (w->shape[0] < 1 || w->shape[1] < 1 || w->shape[0] > (1 << 20) || w->shape[1] > (1 << 20)) {
    rn_err("conv2d_transpose: kernel size (%lld,%lld) of weight %s must be in 1..%d",
           (long long)w->shape[0], (long long)w->shape[1], bw, 1 << 20);
    return NULL;
  }
  int64_t k[2] = {w->shape[0], w->shape[1]}, in[2] = {x->shape[1], x->shape[2]};
  int s[2] = {p->stride_h, p->stride_w}, d[2] = {p->dil_h, p->dil_w};
  int pads[4] = {p->pad_top, p->pad_bottom, p->pad_left, p->pad_right};
  rn_conv_params c = *p;
  c.groups = 1;
  /* "same" with an output_padding: Keras pads dilated_kernel // 2 on each side */
  bool same = p->same && out_pad[0] < 0 && out_pad[1] < 0;
  if (p->same && !same) {
    for (int i = 0; i < 2; i++) pads[2 * i] = pads[2 * i + 1] = (int)((d[i] * (k[i] - 1) + 1) / 2);
    c.same = 0;
    c.pad_top = pads[0]; c.pad_bottom = pads[1]; c.pad_left = pads[2]; c.pad_right = pads[3];
  }
  int64_t out[2];
  for (int i = 0; i < 2; i++) {
    int64_t kd = (int64_t)d[i] * (k[i] - 1) + 1;
    int op = out_pad[i];
    if (op < -1 || (op >= 0 && op >= s[i] && op >= d[i])) {
      rn_err("conv2d_transpose: output_padding %d must be >= 0 and smaller than the stride %d "
             "or the dilation %d", op, s[i], d[i]);
      return NULL;
    }
    if (same) {
      out[i] = in[i] * s[i];
    } else {
      if (pads[2 * i] < 0 || pads[2 * i + 1] < 0) {
        rn_err("conv2d_transpose: padding (top %d, bottom %d, left %d, right %d) must be >= 0",
               pads[0], pads[1], pads[2], pads[3]);
        return NULL;
      }
      out[i] = (in[i] - 1) * s[i] + kd - pads[2 * i] - pads[2 * i + 1];
      if (op > 0) out[i] += op;
      else if (op < 0 && s[i] > kd) out[i] += s[i] - kd; /* Keras's "valid" */
    }
    if (out[i] < 1 || out[i] > ((int64_t)1 << 31)) {
      rn_err("conv2d_transpose: input %s with weight %s gives an output size %lld (valid: "
             "1..2^31); reduce the padding", bx, bw, (long long)out[i]);
      return NULL;
    }
  }
  /* the convolution y -> x: its params and the check that it maps back */
  rn_conv_params q;
  int64_t xs_conv[4];
  int64_t ys[4] = {x->shape[0], out[0], out[1], w->shape[2]};
  rn_tensor probe = {0};
  probe.ndim = 4;
  memcpy(probe.shape, ys, sizeof ys);
  probe.dtype = x->dtype;
  if (conv2d_check(&probe, w, NULL, &c, &q, xs_conv) < 0) return NULL;
  if (xs_conv[1] != in[0] || xs_conv[2] != in[1]) {
    rn_err("conv2d_transpose: an output of %lldx%lld would convolve back to %lldx%lld, not the "
           "input's %lldx%lld; check padding and output_padding", (long long)out[0],
           (long long)out[1], (long long)xs_conv[1], (long long)xs_conv[2], (long long)in[0],
           (long long)in[1]);
    return NULL;
  }
  if (w->dtype != x->dtype || (b && b->dtype != x->dtype)) {
    rn_err("conv2d_transpose: dtypes differ (input %s, weight %s); convert with :to(dtype)",
           rn_dtype_name(x->dtype), rn_dtype_name(w->dtype));
    return NULL;
  }
  const rn_backend *be = rn_backend_of(x);
  if (!RN_HAS(be, conv2d_bwd_data)) return NULL;
  bool gm = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *xc = rn_contiguous(x), *wc = xc ? rn_contiguous(w) : NULL;
  rn_set_grad_enabled(gm);
  rn_tensor *y = wc ? rn_empty(4, ys, x->dtype, rn_device(x)) : NULL;
  if (!y || be->conv2d_bwd_data(y, xc, wc, &q) < 0) goto fail;
  rn_tensor *ins2[2] = {x, w};
  if (rn_needs_grad(2, ins2)) {
    rn_node *n = rn_node_new("conv2d_transpose", conv2d_t_bw, 2, ins2);
    rn_conv_params *cp = n ? malloc(sizeof *cp) : NULL;
    if (n && !cp) rn_err("conv2d_transpose: out of memory recording the autograd node");
    if (!cp || rn_node_save(n, xc) < 0 || rn_node_save(n, wc) < 0) {
      free(cp);
      rn_node_release(n);
      goto fail;
    }
    *cp = q;
    n->ctx = cp;
    n->ctx_free = free;
    rn_node_attach(n, y);
  }
  rn_release(xc);
  rn_release(wc);
  if (b) { /* the bias is a broadcast add (its gradient: the sum over N,OH,OW) */
    rn_tensor *yb = rn_binary(RN_OP_ADD, y, b);
    rn_release(y);
    return yb;
  }
  return y;
fail:
  rn_release(xc);
  rn_release(wc);
  rn_release(y);
  return NULL;
}
