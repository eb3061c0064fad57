/* pool.c (cpu) - 2-D max and average pooling kernels, NHWC:
 *   x: (N,H,W,C) -> y: (N,OH,OW,C), window kh x kw, stride, asymmetric
 * padding (rn_pool_params, `same` already resolved by the front end).
 * Padded cells never win a max; an average divides by the number of real
 * cells in the window, or by kh*kw with count_include_pad. A window with no
 * real cell (impossible when pads < kernel, which the front end checks)
 * gives 0.
 * Backward: max routes each gy to the first position of its window (in
 * (kh,kw) order) where x equals y; avg spreads gy evenly over the cells it
 * was divided by. Forward runs in parallel over output lines (n,oh); backward
 * over images n (each thread owns whole images of gx), so results are
 * deterministic. float32 and float64. */
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "../mutant.h"

#define PAR_MIN 16384

typedef struct {
  int64_t N, H, W, C, OH, OW, kh, kw, sh, sw, pt, pl;
  bool cip;
} pgeom;

static int pgeom_init(pgeom *g, const rn_tensor *x, const rn_tensor *y, const rn_pool_params *p,
                      const char *op) {
  if (x->dtype != RN_F32 && x->dtype != RN_F64)
    return rn_err("%s: dtype %s is not supported on the cpu (float32, float64)", op,
                  rn_dtype_name(x->dtype));
  g->N = x->shape[0]; g->H = x->shape[1]; g->W = x->shape[2]; g->C = x->shape[3];
  g->OH = y->shape[1]; g->OW = y->shape[2];
  g->kh = p->kh; g->kw = p->kw; g->sh = p->stride_h; g->sw = p->stride_w;
  int pt = p->pad_top, pb = p->pad_bottom, pl = p->pad_left, pr = p->pad_right;
  g->pt = pt; g->pl = pl;
  g->cip = p->count_include_pad;
  if (g->H * g->W > INT32_MAX) /* max backward indexes cells with int32 */
    return rn_err("%s: image %lldx%lld has more than 2^31 pixels", op, (long long)g->H,
                  (long long)g->W);
  if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1)
    return rn_err("%s: kernel (%lld,%lld) and stride (%lld,%lld) must be >= 1", op,
                  (long long)g->kh, (long long)g->kw, (long long)g->sh, (long long)g->sw);
  int64_t eh = g->H + pt + pb - g->kh, ew = g->W + pl + pr - g->kw;
  int64_t oh = eh < 0 ? 0 : eh / g->sh + 1, ow = ew < 0 ? 0 : ew / g->sw + 1;
  if (y->shape[0] != g->N || y->shape[3] != g->C || oh != g->OH || ow != g->OW) {
    char b1[128], b2[128];
    return rn_err("%s: output %s does not match input %s (expected (%lld,%lld,%lld,%lld))", op,
                  rn_shape_str(y, b1, sizeof b1), rn_shape_str(x, b2, sizeof b2),
                  (long long)g->N, (long long)oh, (long long)ow, (long long)g->C);
  }
  return 0;
}

/* The real cells of the window of output (oh,ow): rows ih0..ih1-1, cols
 * iw0..iw1-1 (clipped to the input). */
static inline void window(const pgeom *g, int64_t oh, int64_t ow, int64_t *ih0, int64_t *ih1,
                          int64_t *iw0, int64_t *iw1) {
  int64_t h0 = oh * g->sh - g->pt, w0 = ow * g->sw - g->pl;
  *ih0 = h0 < 0 ? 0 : h0;
  int64_t kh = g->kh > 1 && RN_MUTANT("pool_window") ? g->kh - 1 : g->kh;
  *ih1 = h0 + kh < g->H ? h0 + kh : g->H;
  *iw0 = w0 < 0 ? 0 : w0;
  *iw1 = w0 + g->kw < g->W ? w0 + g->kw : g->W;
}

#define DEF_POOL_FWD(NAME, T)                                                              \
  static void NAME(bool max, const pgeom *g, T *y, const T *x) {                          \
    const int64_t C = g->C, lines = g->N * g->OH;                                          \
    _Pragma("omp parallel for schedule(static) if (lines * g->OW * C > PAR_MIN)")          \
    for (int64_t l = 0; l < lines; l++) {                                                  \
      int64_t n = l / g->OH, oh = l % g->OH;                                               \
      const T *xn = x + n * g->H * g->W * C;                                               \
      for (int64_t ow = 0; ow < g->OW; ow++) {                                             \
        T *yr = y + (l * g->OW + ow) * C;                                                  \
        int64_t ih0, ih1, iw0, iw1;                                                        \
        window(g, oh, ow, &ih0, &ih1, &iw0, &iw1);                                         \
        int64_t cnt = (ih1 > ih0 && iw1 > iw0) ? (ih1 - ih0) * (iw1 - iw0) : 0;            \
        if (cnt == 0) { for (int64_t c = 0; c < C; c++) yr[c] = 0; continue; }             \
        if (max) { /* once yr[c] is NaN nothing replaces it: NaN propagates */            \
          memcpy(yr, xn + (ih0 * g->W + iw0) * C, sizeof(T) * (size_t)C);                  \
          for (int64_t ih = ih0; ih < ih1; ih++)                                           \
            for (int64_t iw = iw0; iw < iw1; iw++) {                                       \
              const T *restrict xr = xn + (ih * g->W + iw) * C;                            \
              _Pragma("omp simd")                                                          \
              for (int64_t c = 0; c < C; c++)                                              \
                yr[c] = (xr[c] > yr[c] || xr[c] != xr[c]) ? xr[c] : yr[c];                 \
            }                                                                              \
        } else {                                                                           \
          for (int64_t c = 0; c < C; c++) yr[c] = 0;                                       \
          for (int64_t ih = ih0; ih < ih1; ih++)                                           \
            for (int64_t iw = iw0; iw < iw1; iw++) {                                       \
              const T *xr = xn + (ih * g->W + iw) * C;                                     \
              _Pragma("omp simd")                                                          \
              for (int64_t c = 0; c < C; c++) yr[c] += xr[c];                              \
            }                                                                              \
          T inv = (T)1 / (T)(g->cip ? g->kh * g->kw : cnt);                                \
          for (int64_t c = 0; c < C; c++) yr[c] *= inv;                                    \
        }                                                                                  \
      }                                                                                    \
    }                                                                                      \
  }
DEF_POOL_FWD(pool_fwd_f32, float)
DEF_POOL_FWD(pool_fwd_f64, double)

/* A NaN max is routed to the first NaN of the window. */
#define DEF_POOL_BWD(NAME, T, IT)                                                            \
  static void NAME(bool max, const pgeom *g, T *gx, const T *gy, const T *x, const T *y,   \
                   void *first_all) {                                                      \
    const int64_t C = g->C, img = g->H * g->W * C;                                         \
    _Pragma("omp parallel for schedule(static) if (g->N * img > PAR_MIN)")                 \
    for (int64_t n = 0; n < g->N; n++) {                                                   \
      T *gxn = gx + n * img;                                                               \
      const T *xn = x ? x + n * img : NULL;                                                \
      IT *first = first_all ? (IT *)first_all + (size_t)n * (size_t)C : NULL;              \
      memset(gxn, 0, sizeof(T) * (size_t)img);                                             \
      for (int64_t oh = 0; oh < g->OH; oh++)                                               \
        for (int64_t ow = 0; ow < g->OW; ow++) {                                           \
          int64_t o = ((n * g->OH + oh) * g->OW + ow) * C;                                 \
          const T *gyr = gy + o;                                                           \
          int64_t ih0, ih1, iw0, iw1;                                                      \
          window(g, oh, ow, &ih0, &ih1, &iw0, &iw1);                                       \
          int64_t cnt = (ih1 > ih0 && iw1 > iw0) ? (ih1 - ih0) * (iw1 - iw0) : 0;          \
          if (cnt == 0) continue;                                                          \
          if (max) { /* the first cell (in window order) equal to y takes gy */            \
            const T *yr = y + o;                                                           \
            for (int64_t c = 0; c < C; c++) first[c] = -1;                                 \
            for (int64_t ih = ih1 - 1; ih >= ih0; ih--) /* backwards: first match wins */  \
              for (int64_t iw = iw1 - 1; iw >= iw0; iw--) {                                \
                IT cell = (IT)(ih * g->W + iw);                                            \
                const T *restrict xr = xn + cell * C;                                      \
                _Pragma("omp simd")                                                        \
                for (int64_t c = 0; c < C; c++)                                            \
                  first[c] = (xr[c] == yr[c] || (xr[c] != xr[c] && yr[c] != yr[c]))        \
                                 ? cell : first[c];                                        \
              }                                                                            \
            for (int64_t c = 0; c < C; c++)                                                \
              if (first[c] >= 0) gxn[(int64_t)first[c] * C + c] += gyr[c];                 \
          } else {                                                                         \
            T inv = (T)1 / (T)(g->cip ? g->kh * g->kw : cnt);                              \
            for (int64_t ih = ih0; ih < ih1; ih++)                                         \
              for (int64_t iw = iw0; iw < iw1; iw++) {                                     \
                T *restrict d = gxn + (ih * g->W + iw) * C;                                \
                _Pragma("omp simd")                                                        \
                for (int64_t c = 0; c < C; c++) d[c] += gyr[c] * inv;                      \
              }                                                                            \
          }                                                                                \
        }                                                                                  \
    }                                                                                      \
  }
DEF_POOL_BWD(pool_bwd_f32, float, int32_t)
DEF_POOL_BWD(pool_bwd_f64, double, int64_t)

int rn_cpu_pool2d_fwd(bool max, rn_tensor *y, const rn_tensor *x, const rn_pool_params *p) {
  pgeom g;
  if (pgeom_init(&g, x, y, p, max ? "max_pool2d" : "avg_pool2d") < 0) return -1;
  if (x->dtype == RN_F32) pool_fwd_f32(max, &g, (float *)rn_ptr(y), (const float *)rn_ptr(x));
  else pool_fwd_f64(max, &g, (double *)rn_ptr(y), (const double *)rn_ptr(x));
  return 0;
}

int rn_cpu_pool2d_bwd(bool max, rn_tensor *gx, const rn_tensor *gy, const rn_tensor *x,
                      const rn_tensor *y, const rn_pool_params *p) {
  pgeom g;
  const char *op = max ? "max_pool2d backward" : "avg_pool2d backward";
  if (pgeom_init(&g, gx, gy, p, op) < 0) return -1;
  if (max && (!x || !y)) return rn_err("%s: needs the forward input and output", op);
  /* max: per image, each channel's first max (cell ih*W+iw) in the current window */
  int64_t *first = max ? malloc(sizeof(int64_t) * (size_t)(g.N * g.C + 1)) : NULL;
  if (max && !first) return rn_err("%s: out of memory", op);
  if (gx->dtype == RN_F32)
    pool_bwd_f32(max, &g, (float *)rn_ptr(gx), (const float *)rn_ptr(gy),
                 max ? (const float *)rn_ptr(x) : NULL, max ? (const float *)rn_ptr(y) : NULL,
                 first);
  else
    pool_bwd_f64(max, &g, (double *)rn_ptr(gx), (const double *)rn_ptr(gy),
                 max ? (const double *)rn_ptr(x) : NULL, max ? (const double *)rn_ptr(y) : NULL,
                 first);
  free(first);
  return 0;
}
