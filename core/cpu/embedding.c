/* embedding.c (cpu) - the embedding slots: gather rows of the table, and the
 * scatter-add of the backward. The backward splits the D columns among the
 * threads and walks the indices in order within each, so duplicate indices
 * accumulate in a fixed order (deterministic). Indices are range-checked by
 * the front end (core/ops/embedding.c). */
#include <string.h>

#include "cpu.h"

static inline int64_t index_at(const rn_tensor *idx, int64_t i) {
  return idx->dtype == RN_I32 ? ((const int32_t *)rn_ptr(idx))[i] : ((const int64_t *)rn_ptr(idx))[i];
}

int rn_cpu_embedding_fwd(rn_tensor *y, const rn_tensor *idx, const rn_tensor *w) {
  int64_t n = rn_numel(idx), D = w->shape[1];
  size_t row = (size_t)D * rn_dtype_size(w->dtype);
  const char *wp = rn_ptr(w);
  char *yp = rn_ptr(y);
#pragma omp parallel for if (n * D > 32768)
  for (int64_t i = 0; i < n; i++) memcpy(yp + (size_t)i * row, wp + (size_t)index_at(idx, i) * row, row);
  return 0;
}

int rn_cpu_embedding_bwd(rn_tensor *gw, const rn_tensor *gy, const rn_tensor *idx) {
  int64_t n = rn_numel(idx), D = gw->shape[1];
  if (gw->dtype != RN_F32 && gw->dtype != RN_F64)
    return rn_err("embedding backward: dtype %s is not float32/float64", rn_dtype_name(gw->dtype));
  int64_t chunk = 64, nch = (D + chunk - 1) / chunk;
#pragma omp parallel for if (n * D > 32768)
  for (int64_t c = 0; c < nch; c++) {
    int64_t d0 = c * chunk, d1 = d0 + chunk < D ? d0 + chunk : D;
    for (int64_t i = 0; i < n; i++) {
      int64_t r = index_at(idx, i);
      if (gw->dtype == RN_F32) {
        float *g = (float *)rn_ptr(gw) + r * D;
        const float *s = (const float *)rn_ptr(gy) + i * D;
        for (int64_t d = d0; d < d1; d++) g[d] += s[d];
      } else {
        double *g = (double *)rn_ptr(gw) + r * D;
        const double *s = (const double *)rn_ptr(gy) + i * D;
        for (int64_t d = d0; d < d1; d++) g[d] += s[d];
      }
    }
  }
  return 0;
}
