/* blas.c (cuda) - the gemm slot through cuBLAS, which is loaded with dlopen
 * on the first gemm (dlib.c) rather than linked, so rnlua starts on hosts
 * without it. cublas_api.h is included for its types only; the five entry
 * points used are resolved with dlsym.
 *
 * Row-major C(M,N) = alpha op(A) op(B) + beta C is cuBLAS's column-major
 * C^T(N,M) = alpha op(B)^T op(A)^T + beta C^T: the same buffers, with the
 * operands swapped and M and N exchanged. The handle runs on the one stream.
 *
 * Precision: float32 gemm is plain float32 (cublasSgemm) under every math
 * policy. bfloat16 and float16 operands (bf16 tensors, and the layers
 * under the mixed_bfloat16 policy, which pass bf16 activations) go through
 * cublasGemmEx with float32 accumulation (CUBLAS_COMPUTE_32F) and float32
 * alpha/beta: bf16 in, bf16 out, no conversion pass.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <cublas_api.h>

#include "cuda.h"

typedef cublasStatus_t (*create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*destroy_fn)(cublasHandle_t);
typedef cublasStatus_t (*set_stream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*sgemm_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                   int, int, const float *, const float *, int, const float *,
                                   int, const float *, float *, int);
typedef cublasStatus_t (*dgemm_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                   int, int, const double *, const double *, int,
                                   const double *, int, const double *, double *, int);
typedef cublasStatus_t (*sgemm_sb_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                      int, int, const float *, const float *, int, long long,
                                      const float *, int, long long, const float *, float *, int,
                                      long long, int);
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                     int, const void *, const void *, cudaDataType, int, const void *,
                                     cudaDataType, int, const void *, void *, cudaDataType, int,
                                     cublasComputeType_t, cublasGemmAlgo_t);
typedef cublasStatus_t (*gemm_sb_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                        int, const void *, const void *, cudaDataType, int, long long,
                                        const void *, cudaDataType, int, long long, const void *,
                                        void *, cudaDataType, int, long long, int, cublasComputeType_t,
                                        cublasGemmAlgo_t);
typedef cublasStatus_t (*dgemm_sb_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                      int, int, const double *, const double *, int, long long,
                                      const double *, int, long long, const double *, double *,
                                      int, long long, int);

static struct {
  int state;        /* 0: not loaded, 1: ready, -1: the library is unusable */
  char why[1024];   /* the reason when state == -1 */
  char path[512];   /* the file that was loaded */
  void *lib;
  cublasHandle_t h;
  create_fn create;
  destroy_fn destroy;
  set_stream_fn set_stream;
  sgemm_fn sgemm;
  dgemm_fn dgemm;
  sgemm_sb_fn sgemm_sb; /* strided batched */
  dgemm_sb_fn dgemm_sb;
  gemm_ex_fn gemm_ex;       /* bfloat16 / float16 */
  gemm_sb_ex_fn gemm_sb_ex;
} blas;

/* dlsym into a function pointer (copied bytewise: ISO C has no cast from
 * void * to a function pointer) */
static int sym(void *dst, size_t size, const char *name) {
  void *p = rn_dlib_sym(blas.lib, "cuBLAS", name);
  if (!p) return -1;
  memcpy(dst, &p, size);
  return 0;
}

static int blas_init(void) {
  if (blas.state == 1) return 0;
  if (blas.state == -1) return rn_err("%s", blas.why);
  if (!blas.lib) {
    static const char *const names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so",
                                        NULL};
    static const char *const deps[] = {"libcublasLt", NULL};
    blas.lib = rn_dlib_open("cuBLAS", names, deps, blas.path, sizeof blas.path);
    if (!blas.lib || sym(&blas.create, sizeof blas.create, "cublasCreate_v2") < 0 ||
        sym(&blas.destroy, sizeof blas.destroy, "cublasDestroy_v2") < 0 ||
        sym(&blas.set_stream, sizeof blas.set_stream, "cublasSetStream_v2") < 0 ||
        sym(&blas.sgemm, sizeof blas.sgemm, "cublasSgemm_v2") < 0 ||
        sym(&blas.dgemm, sizeof blas.dgemm, "cublasDgemm_v2") < 0 ||
        sym(&blas.sgemm_sb, sizeof blas.sgemm_sb, "cublasSgemmStridedBatched") < 0 ||
        sym(&blas.dgemm_sb, sizeof blas.dgemm_sb, "cublasDgemmStridedBatched") < 0 ||
        sym(&blas.gemm_ex, sizeof blas.gemm_ex, "cublasGemmEx") < 0 ||
        sym(&blas.gemm_sb_ex, sizeof blas.gemm_sb_ex, "cublasGemmStridedBatchedEx") < 0) {
      snprintf(blas.why, sizeof blas.why, "%s", rn_errmsg()); /* permanent: remembered */
      blas.state = -1;
      return -1;
    }
  }
  /* a failed create (e.g. out of memory) may succeed later: not remembered */
  cublasHandle_t h = NULL;
  if (CUBLAS(blas.create(&h)) < 0) return -1;
  if (CUBLAS(blas.set_stream(h, rn_cuda_stream())) < 0) {
    (void)blas.destroy(h); /* best effort on an error path */
    return -1;
  }
  blas.h = h;
  blas.state = 1;
  return 0;
}

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

static bool half_type(rn_dtype dt) { return dt == RN_BF16 || dt == RN_F16; }
static cudaDataType cuda_type(rn_dtype dt) { return dt == RN_BF16 ? CUDA_R_16BF : CUDA_R_16F; }

static int check_dtype(rn_dtype dt) {
  if (dt != RN_F32 && dt != RN_F64 && !half_type(dt))
    return rn_err("gemm: dtype %s is not supported on cuda (float32, float64, bfloat16, float16)",
                  rn_dtype_name(dt));
  return 0;
}

int rn_cuda_gemm(rn_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                 const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                 int64_t ldc) {
  if (check_dtype(dt) < 0) return -1;
  if (M == 0 || N == 0) return 0;
  if (!fits_int(M) || !fits_int(N) || !fits_int(K) || !fits_int(lda) || !fits_int(ldb) ||
      !fits_int(ldc))
    return rn_err("gemm: sizes M=%lld N=%lld K=%lld (lda %lld, ldb %lld, ldc %lld) must be "
                  "0..%d on cuda", (long long)M, (long long)N, (long long)K, (long long)lda,
                  (long long)ldb, (long long)ldc, INT_MAX);
  if (rn_cuda_init() < 0) return -1;
  if (K == 0 && half_type(dt)) { /* C = beta C for beta 1 (nothing to do) or 0 (zeros) */
    if (beta == 1.0) return 0;
    if (beta != 0.0) return rn_err("gemm: K = 0 with beta %g on %s: only 0 and 1", beta, rn_dtype_name(dt));
    return CU(cudaMemset2DAsync(C, (size_t)ldc * 2, 0, (size_t)N * 2, (size_t)M, rn_cuda_stream()));
  }
  if (K == 0) /* nothing to multiply: C = beta C (cuBLAS would reject lda = 0) */
    return CU(rnk_scale2d(C, (int)dt, M, N, ldc, beta, rn_cuda_stream()));
  if (blas_init() < 0) return -1;
  cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  /* column-major: C^T (N x M, ldc) = op(B)^T (N x K, ldb) * op(A)^T (K x M, lda) */
  if (half_type(dt)) {
    float al = (float)alpha, be = (float)beta;
    cudaDataType t = cuda_type(dt);
    return CUBLAS(blas.gemm_ex(blas.h, opb, opa, (int)N, (int)M, (int)K, &al, B, t, (int)ldb, A, t, (int)lda,
                               &be, C, t, (int)ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  if (dt == RN_F32) {
    float al = (float)alpha, be = (float)beta;
    return CUBLAS(blas.sgemm(blas.h, opb, opa, (int)N, (int)M, (int)K, &al, (const float *)B,
                             (int)ldb, (const float *)A, (int)lda, &be, (float *)C, (int)ldc));
  }
  return CUBLAS(blas.dgemm(blas.h, opb, opa, (int)N, (int)M, (int)K, &alpha, (const double *)B,
                           (int)ldb, (const double *)A, (int)lda, &beta, (double *)C, (int)ldc));
}

/* The gemm_batched slot: C_i = alpha op(A_i) op(B_i) + beta C_i for i <
 * batch, A_i = A + i*sa elements (sa = 0: one A for all), through cuBLAS's
 * strided-batched gemm (one launch for the whole batch). */
int rn_cuda_gemm_batched(rn_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                         double alpha, const void *A, int64_t lda, int64_t sa, const void *B,
                         int64_t ldb, int64_t sb, double beta, void *C, int64_t ldc, int64_t sc,
                         int64_t batch) {
  if (check_dtype(dt) < 0) return -1;
  if (M == 0 || N == 0 || batch == 0) return 0;
  if (K == 0 || !fits_int(batch) || !fits_int(M) || !fits_int(N) || !fits_int(K) ||
      !fits_int(lda) || !fits_int(ldb) || !fits_int(ldc)) { /* one gemm at a time */
    size_t es = rn_dtype_size(dt);
    for (int64_t i = 0; i < batch; i++)
      if (rn_cuda_gemm(dt, ta, tb, M, N, K, alpha, (const char *)A + (size_t)(i * sa) * es, lda,
                       (const char *)B + (size_t)(i * sb) * es, ldb, beta,
                       (char *)C + (size_t)(i * sc) * es, ldc) < 0)
        return -1;
    return 0;
  }
  if (rn_cuda_init() < 0 || blas_init() < 0) return -1;
  cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (half_type(dt)) {
    float al = (float)alpha, be = (float)beta;
    cudaDataType t = cuda_type(dt);
    return CUBLAS(blas.gemm_sb_ex(blas.h, opb, opa, (int)N, (int)M, (int)K, &al, B, t, (int)ldb, sb, A, t,
                                  (int)lda, sa, &be, C, t, (int)ldc, sc, (int)batch, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
  }
  if (dt == RN_F32) {
    float al = (float)alpha, be = (float)beta;
    return CUBLAS(blas.sgemm_sb(blas.h, opb, opa, (int)N, (int)M, (int)K, &al, (const float *)B,
                                (int)ldb, sb, (const float *)A, (int)lda, sa, &be, (float *)C,
                                (int)ldc, sc, (int)batch));
  }
  return CUBLAS(blas.dgemm_sb(blas.h, opb, opa, (int)N, (int)M, (int)K, &alpha, (const double *)B,
                              (int)ldb, sb, (const double *)A, (int)lda, sa, &beta, (double *)C,
                              (int)ldc, sc, (int)batch));
}
