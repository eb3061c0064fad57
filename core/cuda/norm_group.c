/* norm_group.c (cuda) - the gnorm slots (layer and group normalization)
 * and the embedding slots, with the kernels of kernels/norm_group.cu and
 * kernels/embedding.cu on the one stream. */
#include "cuda.h"

static const void *opt_ptr(const rn_tensor *t) { return t ? rn_ptr(t) : NULL; }

int rn_cuda_gnorm_fwd(rn_tensor *y, rn_tensor *mean, rn_tensor *rstd, const rn_tensor *x,
                      const rn_tensor *gamma, const rn_tensor *beta, int64_t N, int64_t S,
                      int64_t G, int64_t Cg, double eps) {
  if (x->dtype != RN_F32 && x->dtype != RN_F64)
    return rn_err("norm forward: dtype %s is not float32/float64", rn_dtype_name(x->dtype));
  if (N * G > 2147483647LL) return rn_err("norm forward: %lld groups exceed a grid", (long long)(N * G));
  return CU(rnk_gnorm_fwd((int)x->dtype, rn_ptr(y), (double *)rn_ptr(mean), (double *)rn_ptr(rstd),
                          rn_ptr(x), opt_ptr(gamma), opt_ptr(beta), N, S, G, Cg, eps,
                          rn_cuda_stream()));
}

int rn_cuda_gnorm_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                      const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *mean,
                      const rn_tensor *rstd, int64_t N, int64_t S, int64_t G, int64_t Cg) {
  if (x->dtype != RN_F32 && x->dtype != RN_F64)
    return rn_err("norm backward: dtype %s is not float32/float64", rn_dtype_name(x->dtype));
  if (N * G > 2147483647LL) return rn_err("norm backward: %lld groups exceed a grid", (long long)(N * G));
  double *part = NULL; /* the parameter gradients' row-block partial sums */
  if ((ggamma || gbeta) && N * S > 0 && G * Cg > 0 &&
      !(part = rn_cuda_alloc((size_t)(2 * G * Cg * rnk_bn_nblk(N * S, G * Cg)) * sizeof(double))))
    return -1;
  int rc = CU(rnk_gnorm_bwd((int)x->dtype, gx ? rn_ptr(gx) : NULL, ggamma ? rn_ptr(ggamma) : NULL,
                            gbeta ? rn_ptr(gbeta) : NULL, rn_ptr(gy), rn_ptr(x), opt_ptr(gamma),
                            (const double *)rn_ptr(mean), (const double *)rn_ptr(rstd), N, S, G, Cg,
                            part, rn_cuda_stream()));
  rn_cuda_free(part); /* stream-ordered */
  return rc;
}

int rn_cuda_embedding_fwd(rn_tensor *y, const rn_tensor *idx, const rn_tensor *w) {
  if (w->dtype != RN_F32 && w->dtype != RN_F64 && w->dtype != RN_BF16 && w->dtype != RN_F16)
    return rn_err("embedding: dtype %s is not a float type on cuda", rn_dtype_name(w->dtype));
  return CU(rnk_embedding_fwd((int)w->dtype, rn_ptr(y), rn_ptr(idx), (int)idx->dtype, rn_ptr(w),
                              rn_numel(idx), w->shape[1], rn_cuda_stream()));
}

int rn_cuda_embedding_bwd(rn_tensor *gw, const rn_tensor *gy, const rn_tensor *idx) {
  if (gw->dtype != RN_F32 && gw->dtype != RN_F64)
    return rn_err("embedding backward: dtype %s is not float32/float64", rn_dtype_name(gw->dtype));
  return CU(rnk_embedding_bwd((int)gw->dtype, rn_ptr(gw), rn_ptr(gy), rn_ptr(idx), (int)idx->dtype,
                              rn_numel(idx), gw->shape[1], rn_cuda_stream()));
}
