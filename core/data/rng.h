/* rng.h - the data pipeline's per-sample decisions as inline functions that
 * C (core/data/augment.c, the CPU loader) and CUDA (kernels/augment.cu, the
 * device-resident loader) compile from this one text, so that both make the
 * same draws bit for bit: the splitmix64 keys of (seed, domain, epoch,
 * index), the draws of one sample (crop offset, flip, cutout centre) and the
 * canvas-to-source mapping of the pad-crop / flip transform. Integer math
 * only (no floating point), so no compiler can round differently.
 * Included by data.h; plain C11 and CUDA C++. */
#ifndef RN_DATA_RNG_H
#define RN_DATA_RNG_H

#include <stdint.h>
#ifndef __cplusplus
#include <stdbool.h>
#endif

#ifdef __CUDACC__
#define RN_HD __host__ __device__ __forceinline__
#else
#define RN_HD static inline
#endif

#define RN_DATA_GOLDEN 0x9e3779b97f4a7c15ull
/* Domains keep the streams of different uses apart (ASCII tags). */
#define RN_DATA_DOMAIN_AUG 0x61756700ull     /* "aug"  per-sample draws */
#define RN_DATA_DOMAIN_SHUFFLE 0x73687566ull /* "shuf" epoch order */
#define RN_DATA_DOMAIN_SPLIT 0x73706c74ull   /* "splt" validation split */

/* The draws of one sample (all 0-based):
 *   dy, dx: the crop window's top-left in the padded canvas, 0..2*pad
 *           (pad,pad = no shift);  draws 0 and 1
 *   flip:   mirror left-right (only when flipping is on);  top bit of draw 2
 *   cy, cx: cutout centre in the output, 0..out_h-1, 0..out_w-1;  draws 3, 4
 * Each quantity always uses its own draw number, so turning one augmentation
 * on or off never changes the others. */
typedef struct { int dy, dx; bool flip; int cy, cx; } rn_sample_params;

/* the splitmix64 finalizer */
RN_HD uint64_t rn_data_mix64_i(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* key = mix(mix(mix(seed ^ domain) + epoch*G) + index*G) */
RN_HD uint64_t rn_data_key_i(uint64_t seed, uint64_t domain, int64_t epoch, int64_t index) {
  uint64_t k = rn_data_mix64_i(seed ^ domain);
  k = rn_data_mix64_i(k + (uint64_t)epoch * RN_DATA_GOLDEN);
  return rn_data_mix64_i(k + (uint64_t)index * RN_DATA_GOLDEN);
}

/* draw j of a key: mix(key + (j+1)*G) */
RN_HD uint64_t rn_data_draw_i(uint64_t key, uint64_t j) {
  return rn_data_mix64_i(key + (j + 1) * RN_DATA_GOLDEN);
}

/* an integer in 0..n-1 from a draw: ((r >> 32) * n) >> 32, for 1 <= n < 2^32 */
RN_HD uint64_t rn_data_below_i(uint64_t r, uint64_t n) { return ((r >> 32) * n) >> 32; }

RN_HD void rn_data_sample_params_i(uint64_t seed, int64_t epoch, int64_t index, int pad,
                                   bool flip, int out_h, int out_w, rn_sample_params *p) {
  uint64_t k = rn_data_key_i(seed, RN_DATA_DOMAIN_AUG, epoch, index);
  uint64_t span = 2 * (uint64_t)(pad > 0 ? pad : 0) + 1;
  p->dy = (int)rn_data_below_i(rn_data_draw_i(k, 0), span);
  p->dx = (int)rn_data_below_i(rn_data_draw_i(k, 1), span);
  p->flip = flip && (rn_data_draw_i(k, 2) >> 63);
  p->cy = (int)rn_data_below_i(rn_data_draw_i(k, 3), (uint64_t)(out_h > 0 ? out_h : 1));
  p->cx = (int)rn_data_below_i(rn_data_draw_i(k, 4), (uint64_t)(out_w > 0 ? out_w : 1));
}

/* Canvas coordinate v (may lie in the crop padding) -> source row/column, or
 * -1 for a zero pixel. The canvas (n wide) holds the image (len wide) at off;
 * reflect mirrors the canvas about its edges without repeating them. */
RN_HD int rn_data_source_of_i(int v, int n, int off, int len, bool reflect) {
  if (v < 0 || v >= n) {
    if (!reflect) return -1;
    v = v < 0 ? -v : 2 * (n - 1) - v;
  }
  int s = v - off;
  return (s >= 0 && s < len) ? s : -1;
}

/* The source column of output column x (0..ow-1) after the crop at dx and
 * the mirror (crop, then mirror the crop); -1 for a zero pixel. */
RN_HD int rn_data_col_i(int x, int ow, int dx, int pad, bool flip, int ox, int w, bool reflect) {
  int xs = flip ? ow - 1 - x : x;
  return rn_data_source_of_i(xs + dx - pad, ow, ox, w, reflect);
}

/* The source row of output row y (0..oh-1), -1 for a zero pixel. */
RN_HD int rn_data_row_i(int y, int oh, int dy, int pad, int oy, int h, bool reflect) {
  return rn_data_source_of_i(y + dy - pad, oh, oy, h, reflect);
}

/* Whether output pixel (y, x) lies in the cutout square of side s centred
 * at (cy, cx): [c - s/2, c - s/2 + s), clipped. s == 0: never. */
RN_HD bool rn_data_in_cutout_i(int y, int x, int cy, int cx, int s) {
  if (s <= 0) return false;
  int y0 = cy - s / 2, x0 = cx - s / 2;
  return y >= y0 && y < y0 + s && x >= x0 && x < x0 + s;
}

#endif
