/* device.c (cuda) - device discovery on first use, the one stream, and the
 * CU()/CUBLAS() error checks that turn a status into rn_err with the call's
 * text and file:line.
 *
 * Discovery is lazy (nothing touches the driver until a CUDA tensor, the
 * support query or rn.cuda.is_available() asks) and happens once: on a host
 * without a driver or GPU, cudaGetDeviceCount fails fast (the static runtime
 * finds no libcuda.so.1) and the reason is kept for every later call. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_api.h>

#include "../capture.h"
#include "cuda.h"

static int state;             /* 0: not tried, 1: ready, -1: unavailable */
static char why[512];         /* the reason when state == -1 */
static int dev;
static char dev_name[256];
static cudaStream_t stream;

static int unavailable(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int unavailable(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  (void)cudaGetLastError(); /* clear the runtime's last error */
  state = -1;
  return rn_err("%s", why);
}

int rn_cuda_init(void) {
  if (state == 1) return 0;
  if (state == -1) return rn_err("%s", why);
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess)
    return unavailable("cuda: no CUDA device available (cudaGetDeviceCount: %s%s)",
                       cudaGetErrorString(e),
                       e == cudaErrorInsufficientDriver
                           ? "; is the NVIDIA driver (libcuda.so.1) installed?"
                           : "");
  if (n <= 0) return unavailable("cuda: no CUDA device available (cudaGetDeviceCount: 0 devices)");
  const char *env = getenv("RN_CUDA_DEVICE");
  dev = 0;
  if (env && *env) {
    char *end;
    long d = strtol(env, &end, 10);
    if (*end || d < 0 || d >= n)
      return unavailable("cuda: RN_CUDA_DEVICE=%s is not a device number (0..%d)", env, n - 1);
    dev = (int)d;
  }
  e = cudaSetDevice(dev);
  if (e != cudaSuccess)
    return unavailable("cuda: cannot use device %d: cudaSetDevice: %s", dev, cudaGetErrorString(e));
  struct cudaDeviceProp p;
  e = cudaGetDeviceProperties(&p, dev);
  if (e != cudaSuccess)
    return unavailable("cuda: cannot use device %d: cudaGetDeviceProperties: %s", dev,
                       cudaGetErrorString(e));
  if (p.major < 8)
    return unavailable("cuda: device %d (%s) has compute capability %d.%d; this build has "
                       "kernels for 8.0 and newer", dev, p.name, p.major, p.minor);
  e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (e != cudaSuccess)
    return unavailable("cuda: cannot use device %d: cudaStreamCreateWithFlags: %s", dev,
                       cudaGetErrorString(e));
  snprintf(dev_name, sizeof dev_name, "%s", p.name);
  state = 1;
  return 0;
}

bool rn_cuda_ready(void) { return state == 1; }
cudaStream_t rn_cuda_stream(void) { return stream; }
int rn_cuda_device(void) { return dev; }
const char *rn_cuda_device_name(void) { return dev_name; }

int rn_cuda_synchronize(void) {
  if (rn_cuda_init() < 0) return -1;
  if (rn_capture_forbid("a device synchronization") < 0) return -1; /* issue 19 */
  return CU(cudaStreamSynchronize(stream));
}

int rn_cuda_check(cudaError_t e, const char *call, const char *file, int line) {
  if (e == cudaSuccess) return 0;
  (void)cudaGetLastError(); /* a non-sticky error must not fail the next call */
  return rn_err("cuda: %s failed: %s (%s:%d)", call, cudaGetErrorString(e), file, line);
}

static const char *blas_status_name(int s) {
  switch (s) {
  case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
  case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
  case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
  case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
  case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  default: return "unknown cuBLAS status";
  }
}

int rn_cuda_blas_check(int status, const char *call, const char *file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return 0;
  return rn_err("cuda: %s failed: %s (%d) (%s:%d)", call, blas_status_name(status), status, file,
                line);
}
