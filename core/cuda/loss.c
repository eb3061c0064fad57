/* loss.c (cuda) - the softmax, softmax_backward and cross_entropy slots:
 * check layouts and dtypes, launch kernels/loss.cu, and for cross_entropy
 * read back the device flag that names the first out-of-range label, so the
 * error reads as the CPU's: "cross_entropy: label 10 at position 3 outside
 * 0..9" (positions counted from 1).
 *
 * Layout: x, y, gx, gy, logits, dlogits (R,C) contiguous; labels (N);
 * loss (N) contiguous. */
#include <string.h>

#include "cuda.h"

static int check_float(const rn_tensor *t, const char *op) {
  if (t->dtype != RN_F32 && t->dtype != RN_F64)
    return rn_err("%s: dtype %s is not supported on cuda (float32, float64)", op,
                  rn_dtype_name(t->dtype));
  return 0;
}

/* (R,C) of a contiguous tensor, C its last dim */
static int rows_cols(const rn_tensor *t, const char *op, int64_t *R, int64_t *C) {
  if (!rn_is_contiguous(t)) return rn_err("%s: the cuda kernel needs contiguous tensors", op);
  *C = t->ndim ? t->shape[t->ndim - 1] : 1;
  *R = *C ? rn_numel(t) / *C : 0;
  return 0;
}

int rn_cuda_softmax(rn_tensor *y, const rn_tensor *x, bool log) {
  const char *op = log ? "log_softmax" : "softmax";
  int64_t R, C, R2, C2;
  if (check_float(x, op) < 0 || rows_cols(x, op, &R, &C) < 0 || rows_cols(y, op, &R2, &C2) < 0)
    return -1;
  if (y->dtype != x->dtype || R2 != R || C2 != C)
    return rn_err("%s: output does not match the input", op);
  return CU(rnk_softmax((int)x->dtype, rn_ptr(y), rn_ptr(x), R, C, log, rn_cuda_stream()));
}

int rn_cuda_softmax_backward(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *y, bool log) {
  const char *op = log ? "log_softmax backward" : "softmax backward";
  int64_t R, C, R2, C2, R3, C3;
  if (check_float(y, op) < 0 || rows_cols(y, op, &R, &C) < 0 ||
      rows_cols(gy, op, &R2, &C2) < 0 || rows_cols(gx, op, &R3, &C3) < 0)
    return -1;
  if (gy->dtype != y->dtype || gx->dtype != y->dtype)
    return rn_err("%s: gradient dtype %s differs from the output's %s", op,
                  rn_dtype_name(gy->dtype), rn_dtype_name(y->dtype));
  if (R2 != R || C2 != C || R3 != R || C3 != C)
    return rn_err("%s: gradient shape does not match the output's", op);
  return CU(rnk_softmax_backward((int)y->dtype, rn_ptr(gx), rn_ptr(gy), rn_ptr(y), R, C, log,
                                 rn_cuda_stream()));
}

/* The label at position pos (0-based) read back from the device. */
static int label_at(const rn_tensor *labels, int64_t pos, long long *out) {
  int64_t s = labels->ndim ? labels->stride[0] : 0;
  size_t es = rn_dtype_size(labels->dtype);
  unsigned char buf[8] = {0};
  cudaStream_t st = rn_cuda_stream();
  if (CU(cudaMemcpyAsync(buf, rn_ptr(labels) + (size_t)(pos * s) * es, es,
                         cudaMemcpyDeviceToHost, st)) < 0 ||
      CU(cudaStreamSynchronize(st)) < 0)
    return -1;
  *out = (long long)rn_load(buf, labels->dtype);
  return 0;
}

/* loss[n] = -(1-s) log p[n,label] - s/C sum_c log p[n,c]; dlogits may be NULL */
int rn_cuda_cross_entropy(rn_tensor *loss, rn_tensor *dlogits, const rn_tensor *logits,
                          const rn_tensor *labels, double smoothing) {
  const char *op = "cross_entropy";
  if (check_float(logits, op) < 0) return -1;
  if (labels->dtype != RN_U8 && labels->dtype != RN_I32 && labels->dtype != RN_I64)
    return rn_err("%s: labels dtype %s is not an integer type (uint8, int32, int64)", op,
                  rn_dtype_name(labels->dtype));
  if (!rn_is_contiguous(logits) || !rn_is_contiguous(loss) ||
      (dlogits && !rn_is_contiguous(dlogits)))
    return rn_err("%s: the cuda kernel needs contiguous tensors", op);
  if (loss->dtype != logits->dtype || (dlogits && dlogits->dtype != logits->dtype))
    return rn_err("%s: output dtypes must match the logits' %s", op,
                  rn_dtype_name(logits->dtype));
  int64_t N = logits->ndim ? logits->shape[0] : 1;
  int64_t C = logits->ndim > 1 ? logits->shape[logits->ndim - 1] : 1;
  if (N == 0) return 0;
  int64_t ls = labels->ndim ? labels->stride[0] : 0;
  cudaStream_t st = rn_cuda_stream();
  unsigned long long *bad = rn_cuda_alloc(sizeof *bad);
  if (!bad) return -1;
  unsigned long long first = 0;
  int rc = CU(cudaMemsetAsync(bad, 0xff, sizeof *bad, st));
  if (rc == 0)
    rc = CU(rnk_cross_entropy((int)logits->dtype, rn_ptr(loss), dlogits ? rn_ptr(dlogits) : NULL,
                              rn_ptr(logits), N, C, rn_ptr(labels), (int)labels->dtype, ls,
                              smoothing, bad, st));
  if (rc == 0 && rn_cuda_capturing()) { /* issue 19: no read-back inside a graph capture; */
    rn_cuda_free(bad);                    /* the eager warm-up steps checked the labels */
    return 0;
  }
  if (rc == 0) rc = CU(cudaMemcpyAsync(&first, bad, sizeof first, cudaMemcpyDeviceToHost, st));
  if (rc == 0) rc = CU(cudaStreamSynchronize(st));
  rn_cuda_free(bad);
  if (rc < 0) return -1;
  if (first != ~0ULL) {
    long long l = 0;
    if (label_at(labels, (int64_t)first, &l) < 0) return -1;
    return rn_err("%s: label %lld at position %lld outside 0..%lld", op, l,
                  (long long)first + 1, (long long)C - 1);
  }
  return 0;
}
