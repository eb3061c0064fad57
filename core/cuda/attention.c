/* attention.c (cuda) - the sdpa slots with the fused kernels of
 * kernels/attention.cu on the one stream (head dims up to 256). */
#include "cuda.h"

static int geom(rnk_sdpa_geom *g, const rn_tensor *q, const rn_sdpa_params *p) {
  if (q->dtype != RN_F32 && q->dtype != RN_F64)
    return rn_err("scaled_dot_product_attention: dtype %s is not float32/float64",
                  rn_dtype_name(q->dtype));
  if (p->D > 256 || p->Dv > 256)
    return rn_err("scaled_dot_product_attention: head dims D = %lld, Dv = %lld; at most 256 on "
                  "cuda", (long long)p->D, (long long)p->Dv);
  rnk_sdpa_geom s = {p->B, p->Tq, p->Tk, p->D, p->Dv, p->msb, p->msq, p->msk, p->scale,
                     p->causal ? 1 : 0,
                     p->mask ? (const uint8_t *)rn_ptr(p->mask) : NULL};
  *g = s;
  return 0;
}

int rn_cuda_sdpa_fwd(rn_tensor *o, rn_tensor *lse, const rn_tensor *q, const rn_tensor *k,
                     const rn_tensor *v, const rn_sdpa_params *p) {
  rnk_sdpa_geom g;
  if (geom(&g, q, p) < 0) return -1;
  return CU(rnk_sdpa_fwd((int)q->dtype, g, rn_ptr(o), (double *)rn_ptr(lse), rn_ptr(q), rn_ptr(k),
                         rn_ptr(v), rn_cuda_stream()));
}

int rn_cuda_sdpa_bwd(rn_tensor *gq, rn_tensor *gk, rn_tensor *gv, const rn_tensor *go,
                     const rn_tensor *q, const rn_tensor *k, const rn_tensor *v, const rn_tensor *o,
                     const rn_tensor *lse, const rn_sdpa_params *p) {
  rnk_sdpa_geom g;
  if (geom(&g, q, p) < 0) return -1;
  int64_t n = p->B * p->Tq > 0 ? p->B * p->Tq : 1;
  double *Di = rn_cuda_alloc((size_t)n * sizeof *Di);
  if (!Di) return -1;
  int rc = CU(rnk_sdpa_bwd((int)q->dtype, g, rn_ptr(gq), rn_ptr(gk), rn_ptr(gv), Di, rn_ptr(go),
                           rn_ptr(q), rn_ptr(k), rn_ptr(v), rn_ptr(o),
                           (const double *)rn_ptr(lse), rn_cuda_stream()));
  rn_cuda_free(Di); /* stream-ordered cache: safe after the enqueue */
  return rc;
}
