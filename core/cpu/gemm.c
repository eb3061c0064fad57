/* gemm.c (cpu) - the GEMM slot of the CPU backend: row-major
 * C(M,N) = alpha * op(A)(M,K) @ op(B)(K,N) + beta * C through OpenBLAS
 * (cblas_sgemm for float32, cblas_dgemm for float64); other dtypes are an
 * error. Used by matmul/linear and by the convolution kernels. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "cpu.h"

/* BLAS takes int sizes (LP64 OpenBLAS). */
static int check_dims(int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
  if (M < 0 || N < 0 || K < 0)
    return rn_err("gemm: negative size M=%lld N=%lld K=%lld", (long long)M, (long long)N,
                  (long long)K);
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX || lda > INT_MAX || ldb > INT_MAX ||
      ldc > INT_MAX)
    return rn_err("gemm: sizes M=%lld N=%lld K=%lld exceed the BLAS limit of %d per dim",
                  (long long)M, (long long)N, (long long)K, INT_MAX);
  return 0;
}

/* C = beta * C for an (M,N) block with leading dim ldc (K == 0 case). */
#define SCALE_C(T)                                                                 \
  do {                                                                             \
    T *c = (T *)C;                                                                 \
    for (int64_t i = 0; i < M; i++)                                                \
      for (int64_t j = 0; j < N; j++)                                              \
        c[i * ldc + j] = beta == 0 ? (T)0 : (T)(beta * c[i * ldc + j]);            \
  } while (0)

int rn_cpu_gemm(rn_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                int64_t ldc) {
  if (dt != RN_F32 && dt != RN_F64)
    return rn_err("gemm: dtype %s is not supported on the cpu (float32, float64)",
                  rn_dtype_name(dt));
  if (check_dims(M, N, K, lda, ldb, ldc) < 0) return -1;
  /* row-major leading dims: checked here so BLAS never reports through xerbla */
  int64_t ma = ta ? M : K, mb = tb ? K : N;
  if (lda < (ma > 1 ? ma : 1) || ldb < (mb > 1 ? mb : 1) || ldc < (N > 1 ? N : 1))
    return rn_err("gemm: leading dims lda=%lld ldb=%lld ldc=%lld too small for M=%lld N=%lld "
                  "K=%lld (need lda >= %lld, ldb >= %lld, ldc >= %lld)", (long long)lda,
                  (long long)ldb, (long long)ldc, (long long)M, (long long)N, (long long)K,
                  (long long)(ma > 1 ? ma : 1), (long long)(mb > 1 ? mb : 1),
                  (long long)(N > 1 ? N : 1));
  if (M == 0 || N == 0) return 0;
  if (K == 0) { /* BLAS would reject lda < 1; the product is empty */
    if (dt == RN_F32) SCALE_C(float);
    else SCALE_C(double);
    return 0;
  }
  enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans;
  enum CBLAS_TRANSPOSE opb = tb ? CblasTrans : CblasNoTrans;
  if (dt == RN_F32)
    cblas_sgemm(CblasRowMajor, opa, opb, (int)M, (int)N, (int)K, (float)alpha, (const float *)A,
                (int)lda, (const float *)B, (int)ldb, (float)beta, (float *)C, (int)ldc);
  else
    cblas_dgemm(CblasRowMajor, opa, opb, (int)M, (int)N, (int)K, alpha, (const double *)A,
                (int)lda, (const double *)B, (int)ldb, beta, (double *)C, (int)ldc);
  return 0;
}
