/* pad.c (cuda) - the line slots (pad and resize along one dim) with the
 * kernels of kernels/pad.cu on the one stream. */
#include <string.h>

#include "cuda.h"

static rnk_line line(const rn_line_params *p) {
  rnk_line l = {p->kind, p->outer, p->L, p->inner, p->Lout, p->before, p->after};
  return l;
}

int rn_cuda_line_fwd(rn_tensor *y, const rn_tensor *x, const rn_line_params *p) {
  if (p->kind == RN_LINE_BILINEAR && x->dtype != RN_F32 && x->dtype != RN_F64)
    return rn_err("resize: bilinear dtype %s is not float32/float64", rn_dtype_name(x->dtype));
  unsigned char one[8] = {0};
  rn_store(one, x->dtype, p->value);
  uint64_t bits;
  memcpy(&bits, one, sizeof bits);
  return CU(rnk_line_fwd((int)x->dtype, (int)rn_dtype_size(x->dtype), rn_ptr(y), rn_ptr(x),
                         line(p), bits, rn_cuda_stream()));
}

int rn_cuda_line_bwd(rn_tensor *gx, const rn_tensor *gy, const rn_line_params *p) {
  if (gx->dtype != RN_F32 && gx->dtype != RN_F64)
    return rn_err("%s backward: dtype %s is not float32/float64",
                  p->kind >= RN_LINE_NEAREST ? "resize" : "pad", rn_dtype_name(gx->dtype));
  return CU(rnk_line_bwd((int)gx->dtype, rn_ptr(gx), rn_ptr(gy), line(p), rn_cuda_stream()));
}
