/* augment.c - the pipeline's randomness and per-sample work: splitmix64 keys
 * of (seed, domain, epoch, index), the epoch shuffle, each sample's draws
 * (crop offset, flip, cutout centre), the transform of one image
 * (H,W,C) uint8 -> (OH,OW,C) float32, and the validation split.
 * Pure functions of their arguments: safe to call from any thread. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

uint64_t rn_data_mix64(uint64_t z) { return rn_data_mix64_i(z); }

uint64_t rn_data_key(uint64_t seed, uint64_t domain, int64_t epoch, int64_t index) {
  return rn_data_key_i(seed, domain, epoch, index);
}

uint64_t rn_data_draw(uint64_t key, uint64_t j) { return rn_data_draw_i(key, j); }

uint64_t rn_data_below(uint64_t r, uint64_t n) { return rn_data_below_i(r, n); }

void rn_data_shuffle(int64_t *a, int64_t n, uint64_t key) {
  for (int64_t i = n - 1; i >= 1; i--) {
    int64_t j = (int64_t)rn_data_below(rn_data_draw(key, (uint64_t)(n - 1 - i)), (uint64_t)i + 1);
    int64_t t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

void rn_data_sample_params(uint64_t seed, int64_t epoch, int64_t index, int pad, bool flip,
                           int out_h, int out_w, rn_sample_params *p) {
  rn_data_sample_params_i(seed, epoch, index, pad, flip, out_h, out_w, p);
}

void rn_data_lut(int c, const double *mean, const double *std, float *lut) {
  for (int k = 0; k < c; k++) {
    double mu = mean ? mean[k] : 0.0, sd = std ? std[k] : 1.0;
    for (int v = 0; v < 256; v++) lut[k * 256 + v] = (float)(((double)v / 255.0 - mu) / sd);
  }
}

void rn_data_epoch_order(const int64_t *index, int64_t m, bool shuffle, uint64_t seed,
                         int64_t epoch, int64_t *order) {
  memcpy(order, index, sizeof(int64_t) * (size_t)m);
  if (shuffle) rn_data_shuffle(order, m, rn_data_key(seed, RN_DATA_DOMAIN_SHUFFLE, epoch, 0));
}

void rn_data_transform(const rn_data_geom *g, const uint8_t *img, const float *lut,
                       const rn_sample_params *p, float *out, int *colmap) {
  const int C = g->c, OW = g->ow, OH = g->oh;
  const int pad = p ? g->pad : 0;
  const int dy = p ? p->dy : 0, dx = p ? p->dx : 0;
  const bool flip = p && p->flip, reflect = g->pad_mode == RN_PAD_REFLECT;
  for (int x = 0; x < OW; x++) /* crop, then mirror the crop */
    colmap[x] = rn_data_col_i(x, OW, dx, pad, flip, g->ox, g->w, reflect);
  const size_t row_out = (size_t)OW * (size_t)C;
  for (int y = 0; y < OH; y++) {
    int sy = rn_data_row_i(y, OH, dy, pad, g->oy, g->h, reflect);
    float *o = out + (size_t)y * row_out;
    if (sy < 0) {
      for (int x = 0; x < OW; x++)
        for (int c = 0; c < C; c++) o[(size_t)x * C + c] = lut[c * 256];
      continue;
    }
    const uint8_t *row = img + (size_t)sy * (size_t)g->w * (size_t)C;
    if (C == 3) {
      const float *l0 = lut, *l1 = lut + 256, *l2 = lut + 512;
      for (int x = 0; x < OW; x++, o += 3) {
        int sx = colmap[x];
        if (sx < 0) { o[0] = l0[0]; o[1] = l1[0]; o[2] = l2[0]; continue; }
        const uint8_t *s = row + (size_t)sx * 3;
        o[0] = l0[s[0]]; o[1] = l1[s[1]]; o[2] = l2[s[2]];
      }
    } else if (C == 1) {
      for (int x = 0; x < OW; x++) {
        int sx = colmap[x];
        o[x] = lut[sx < 0 ? 0 : row[sx]];
      }
    } else {
      for (int x = 0; x < OW; x++) {
        int sx = colmap[x];
        for (int c = 0; c < C; c++)
          o[(size_t)x * C + c] = lut[c * 256 + (sx < 0 ? 0 : row[(size_t)sx * C + c])];
      }
    }
  }
  if (p && g->cutout > 0) {
    /* the square [c - s/2, c - s/2 + s) in output pixels, clipped; zero in
     * normalized space (i.e. the dataset mean) */
    int y0 = p->cy - g->cutout / 2, x0 = p->cx - g->cutout / 2;
    int y1 = y0 + g->cutout, x1 = x0 + g->cutout;
    if (y0 < 0) y0 = 0;
    if (x0 < 0) x0 = 0;
    if (y1 > OH) y1 = OH;
    if (x1 > OW) x1 = OW;
    for (int y = y0; y < y1; y++)
      if (x1 > x0)
        memset(out + (size_t)y * row_out + (size_t)x0 * C, 0,
               sizeof(float) * (size_t)(x1 - x0) * (size_t)C);
  }
}

int rn_data_split(int64_t n, double frac, uint64_t seed, rn_tensor **train, rn_tensor **val) {
  *train = *val = NULL;
  if (n < 0 || n > INT32_MAX)
    return rn_err("data_split: n %lld outside 0..%d", (long long)n, INT32_MAX);
  if (!(frac >= 0 && frac <= 1))
    return rn_err("data_split: fraction %g outside 0..1", frac);
  int64_t nval = (int64_t)floor((double)n * frac + 0.5);
  if (nval > n) nval = n;
  int64_t *perm = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
  unsigned char *is_val = calloc((size_t)(n ? n : 1), 1);
  if (!perm || !is_val) {
    free(perm);
    free(is_val);
    return rn_err("data_split: out of memory for %lld indices", (long long)n);
  }
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  rn_data_shuffle(perm, n, rn_data_key(seed, RN_DATA_DOMAIN_SPLIT, 0, 0));
  for (int64_t i = 0; i < nval; i++) is_val[perm[i]] = 1;
  free(perm);
  int64_t nt = n - nval;
  *train = rn_empty(1, &nt, RN_I64, RN_CPU);
  *val = *train ? rn_empty(1, &nval, RN_I64, RN_CPU) : NULL;
  if (!*val) {
    rn_release(*train);
    *train = NULL;
    free(is_val);
    return -1;
  }
  int64_t *tp = (int64_t *)rn_ptr(*train), *vp = (int64_t *)rn_ptr(*val);
  for (int64_t i = 0; i < n; i++) {
    if (is_val[i]) *vp++ = i;
    else *tp++ = i;
  }
  free(is_val);
  return 0;
}
