/* norm_group.c (cpu) - the gnorm slots: layer and group normalization over
 * x viewed as (N,S,G,Cg) (see core/ops/norm_group.c), float32 and float64,
 * sums in double. Forward: two passes per (n,g) group (mean, then the
 * centred variance), then the affine write. Backward: per group the sums of
 * dxhat and dxhat*xhat, then gx; ggamma and gbeta from per-thread partials
 * summed in a fixed order (the result does not depend on the thread count). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

static inline double ld(const void *p, bool f32, int64_t i) {
  return f32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}
static inline void st(void *p, bool f32, int64_t i, double v) {
  if (f32) ((float *)p)[i] = (float)v;
  else ((double *)p)[i] = v;
}

static int check(const char *op, const rn_tensor *x) {
  if (x->dtype != RN_F32 && x->dtype != RN_F64)
    return rn_err("%s: dtype %s is not float32/float64", op, rn_dtype_name(x->dtype));
  return 0;
}

int rn_cpu_gnorm_fwd(rn_tensor *y, rn_tensor *mean, rn_tensor *rstd, const rn_tensor *x,
                     const rn_tensor *gamma, const rn_tensor *beta, int64_t N, int64_t S,
                     int64_t G, int64_t Cg, double eps) {
  if (check("norm forward", x) < 0) return -1;
  bool f = x->dtype == RN_F32;
  const void *xp = rn_ptr(x), *gp = gamma ? rn_ptr(gamma) : NULL, *bp = beta ? rn_ptr(beta) : NULL;
  void *yp = rn_ptr(y);
  double *mp = (double *)rn_ptr(mean), *rp = (double *)rn_ptr(rstd);
  int64_t C = G * Cg, M = S * Cg;
#pragma omp parallel for schedule(static) if (N * G * M > 32768)
  for (int64_t ng = 0; ng < N * G; ng++) {
    int64_t n = ng / G, g = ng % G, base = n * S * C + g * Cg;
    double sum = 0;
    for (int64_t s = 0; s < S; s++)
      for (int64_t j = 0; j < Cg; j++) sum += ld(xp, f, base + s * C + j);
    double mu = M ? sum / (double)M : 0, var = 0;
    for (int64_t s = 0; s < S; s++)
      for (int64_t j = 0; j < Cg; j++) {
        double d = ld(xp, f, base + s * C + j) - mu;
        var += d * d;
      }
    double r = 1 / sqrt((M ? var / (double)M : 0) + eps);
    mp[ng] = mu;
    rp[ng] = r;
    for (int64_t s = 0; s < S; s++)
      for (int64_t j = 0; j < Cg; j++) {
        int64_t i = base + s * C + j, c = g * Cg + j;
        double v = (ld(xp, f, i) - mu) * r;
        if (gp) v *= ld(gp, f, c);
        if (bp) v += ld(bp, f, c);
        st(yp, f, i, v);
      }
  }
  return 0;
}

int rn_cpu_gnorm_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                     const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *mean,
                     const rn_tensor *rstd, int64_t N, int64_t S, int64_t G, int64_t Cg) {
  if (check("norm backward", x) < 0) return -1;
  bool f = x->dtype == RN_F32;
  const void *xp = rn_ptr(x), *gyp = rn_ptr(gy), *gp = gamma ? rn_ptr(gamma) : NULL;
  const double *mp = (const double *)rn_ptr(mean), *rp = (const double *)rn_ptr(rstd);
  int64_t C = G * Cg, M = S * Cg, rows = N * S;
  if (gx) {
    void *gxp = rn_ptr(gx);
#pragma omp parallel for schedule(static) if (N * G * M > 32768)
    for (int64_t ng = 0; ng < N * G; ng++) {
      int64_t n = ng / G, g = ng % G, base = n * S * C + g * Cg;
      double mu = mp[ng], r = rp[ng], sd = 0, sdx = 0;
      for (int64_t s = 0; s < S; s++)
        for (int64_t j = 0; j < Cg; j++) {
          int64_t i = base + s * C + j;
          double d = ld(gyp, f, i) * (gp ? ld(gp, f, g * Cg + j) : 1);
          sd += d;
          sdx += d * (ld(xp, f, i) - mu) * r;
        }
      sd = M ? sd / (double)M : 0;
      sdx = M ? sdx / (double)M : 0;
      for (int64_t s = 0; s < S; s++)
        for (int64_t j = 0; j < Cg; j++) {
          int64_t i = base + s * C + j;
          double d = ld(gyp, f, i) * (gp ? ld(gp, f, g * Cg + j) : 1);
          double xh = (ld(xp, f, i) - mu) * r;
          st(gxp, f, i, r * (d - sd - xh * sdx));
        }
    }
  }
  if (!ggamma && !gbeta) return 0;
  /* per-chunk partial sums over fixed row chunks, then summed in chunk order */
  int64_t chunk = 64, nch = (rows + chunk - 1) / chunk;
  if (nch < 1) nch = 1;
  double *part = calloc((size_t)(nch * 2 * C), sizeof(double));
  if (!part) return rn_err("norm backward: out of memory (%lld doubles)", (long long)(nch * 2 * C));
#pragma omp parallel for schedule(static) if (rows * C > 32768)
  for (int64_t k = 0; k < nch; k++) {
    double *pg = part + k * 2 * C, *pb = pg + C;
    int64_t r1 = (k + 1) * chunk < rows ? (k + 1) * chunk : rows;
    for (int64_t row = k * chunk; row < r1; row++) {
      int64_t n = row / S;
      for (int64_t c = 0; c < C; c++) {
        int64_t i = row * C + c, ng = n * G + c / Cg;
        double d = ld(gyp, f, i);
        pg[c] += d * (ld(xp, f, i) - mp[ng]) * rp[ng];
        pb[c] += d;
      }
    }
  }
  for (int64_t c = 0; c < C; c++) {
    double sg = 0, sb = 0;
    for (int64_t k = 0; k < nch; k++) {
      sg += part[k * 2 * C + c];
      sb += part[k * 2 * C + C + c];
    }
    if (ggamma) st(rn_ptr(ggamma), f, c, sg);
    if (gbeta) st(rn_ptr(gbeta), f, c, sb);
  }
  free(part);
  return 0;
}
