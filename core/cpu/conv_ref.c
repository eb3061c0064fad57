/* conv_ref.c - the naive reference 2-D convolution (7 nested loops, double
 * accumulation, strided reads through rn_load): test path only, to check the
 * im2col/GEMM kernels of conv.c. Layouts as in conv.c:
 *   x: (N,H,W,Cin), w: (KH,KW,Cin/G,Cout), b: (Cout) or NULL, y: (N,OH,OW,Cout)
 * with G = p->groups channel groups (0 or 1: none) */
#include "conv_ref.h"

#include "cpu.h"

static double at(const rn_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
  int64_t off = i0 * t->stride[0] + i1 * t->stride[1] + i2 * t->stride[2] + i3 * t->stride[3];
  return rn_load(rn_ptr(t) + (size_t)off * rn_dtype_size(t->dtype), t->dtype);
}

int rn_cpu_conv2d_ref(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                      const rn_conv_params *p) {
  char b1[128], b2[128], b3[128];
  if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4 || (b && b->ndim != 1))
    return rn_err("conv2d_ref: needs x (N,H,W,Cin), w (KH,KW,Cin,Cout), y (N,OH,OW,Cout), "
                  "b (Cout); got x %s, w %s, y %s", rn_shape_str(x, b1, sizeof b1),
                  rn_shape_str(w, b2, sizeof b2), rn_shape_str(y, b3, sizeof b3));
  if (rn_device(x) != RN_CPU || rn_device(w) != RN_CPU || rn_device(y) != RN_CPU ||
      (b && rn_device(b) != RN_CPU))
    return rn_err("conv2d_ref: runs on the cpu only");
  int64_t N = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
  int64_t KH = w->shape[0], KW = w->shape[1], O = w->shape[3];
  int64_t G = p->groups > 1 ? p->groups : 1, cg = C / G, og = O / G;
  int64_t OH = y->shape[1], OW = y->shape[2];
  int pt = p->pad_top, pb = p->pad_bottom, pl = p->pad_left, pr = p->pad_right;
  (void)pb;
  (void)pr;
  if (w->shape[2] * G != C || O % G || y->shape[0] != N || y->shape[3] != O || (b && b->shape[0] != O))
    return rn_err("conv2d_ref: shapes do not agree: x %s, w %s, y %s",
                  rn_shape_str(x, b1, sizeof b1), rn_shape_str(w, b2, sizeof b2),
                  rn_shape_str(y, b3, sizeof b3));
  size_t ye = rn_dtype_size(y->dtype);
  for (int64_t n = 0; n < N; n++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++)
        for (int64_t o = 0; o < O; o++) {
          double s = b ? rn_load(rn_ptr(b) + (size_t)(o * b->stride[0]) * rn_dtype_size(b->dtype),
                                 b->dtype)
                       : 0.0;
          for (int64_t kh = 0; kh < KH; kh++) {
            int64_t ih = oh * p->stride_h - pt + kh * p->dil_h;
            if (ih < 0 || ih >= H) continue;
            for (int64_t kw = 0; kw < KW; kw++) {
              int64_t iw = ow * p->stride_w - pl + kw * p->dil_w;
              if (iw < 0 || iw >= W) continue;
              int64_t c0 = (o / og) * cg; /* the input channels of o's group */
              for (int64_t c = 0; c < cg; c++) s += at(x, n, ih, iw, c0 + c) * at(w, kh, kw, c, o);
            }
          }
          int64_t off = n * y->stride[0] + oh * y->stride[1] + ow * y->stride[2] + o * y->stride[3];
          rn_store(rn_ptr(y) + (size_t)off * ye, y->dtype, s);
        }
  return 0;
}
