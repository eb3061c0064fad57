/* augment.cu - the device-resident data loader's batch kernel: gathers the
 * samples of one batch from the uint8 images kept on the device (N,H,W,C),
 * applies the CPU loader's transform (core/data/augment.c: pad to the output
 * size, pad-and-random-crop, horizontal flip, cutout, per-channel
 * normalization through the same float lookup table) and gathers the labels.
 *
 * Exactness: every random decision comes from core/data/rng.h, the very
 * functions the CPU loader runs (splitmix64 keys of (seed, epoch, sample id),
 * integer math only), and every output value is a copy of a lut entry or a
 * 0.0f cutout, so a batch equals the CPU loader's bit for bit.
 *
 * One thread per output pixel (b, y, x), looping over the C channels (the
 * C values of a pixel are adjacent, so neighbouring threads write
 * neighbouring memory); it recomputes its sample's draws (8 hashes), which
 * is cheaper than a second pass. Indices in int64: N*H*W*C may pass 2^31.
 */
#include "common.cuh"
#include "../core/data/rng.h"

namespace {

__global__ void augment_kernel(const rnk_aug_geom g, const uint8_t *__restrict__ img,
                               const int64_t *__restrict__ labels,
                               const int64_t *__restrict__ order, int64_t start, int64_t B,
                               const float *__restrict__ lut, float *__restrict__ x,
                               int64_t *__restrict__ y) {
  const int64_t npix = B * g.oh * g.ow, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < npix; t += step) {
    const int64_t b = t / ((int64_t)g.oh * g.ow);
    const int r = (int)(t - b * g.oh * g.ow), oy = r / g.ow, ox = r - oy * g.ow;
    const int64_t id = order[start + b];
    if (oy == 0 && ox == 0) y[b] = labels[id];
    rn_sample_params p = {0, 0, false, 0, 0};
    if (g.augment)
      rn_data_sample_params_i(g.seed, g.epoch, id, g.pad, g.flip != 0, g.oh, g.ow, &p);
    const int pad = g.augment ? g.pad : 0;
    const bool flip = g.augment && p.flip, reflect = g.reflect != 0;
    const int sy = rn_data_row_i(oy, g.oh, p.dy, pad, g.oy, g.h, reflect);
    const int sx = rn_data_col_i(ox, g.ow, p.dx, pad, flip, g.ox, g.w, reflect);
    const bool cut = g.augment && rn_data_in_cutout_i(oy, ox, p.cy, p.cx, g.cutout);
    float *o = x + t * g.c;
    if (cut) {
      for (int c = 0; c < g.c; c++) o[c] = 0.0f;
    } else if (sy < 0 || sx < 0) {
      for (int c = 0; c < g.c; c++) o[c] = lut[c * 256];
    } else {
      const uint8_t *s = img + ((id * g.h + sy) * (int64_t)g.w + sx) * g.c;
      for (int c = 0; c < g.c; c++) o[c] = lut[c * 256 + s[c]];
    }
  }
}

} // namespace

extern "C" cudaError_t rnk_augment_batch(rnk_aug_geom g, const uint8_t *img,
                                         const int64_t *labels, const int64_t *order,
                                         int64_t start, int64_t B, const float *lut, float *x,
                                         int64_t *y, cudaStream_t s) {
  const int64_t npix = B * g.oh * g.ow;
  if (npix <= 0) return cudaSuccess;
  augment_kernel<<<rnk::blocks_for(npix, rnk::kThreads), rnk::kThreads, 0, s>>>(
      g, img, labels, order, start, B, lut, x, y);
  return cudaGetLastError();
}
