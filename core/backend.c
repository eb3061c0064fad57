/* backend.c - the backend registry: which table serves a device, the support
 * query by slot name, and the errors for a missing kernel or mixed devices. */
#include <stddef.h>
#include <string.h>

#include "backend.h"

#define SLOTS(X) X(alloc) X(free) X(to_host) X(from_host) X(copy) X(fill) X(unary) \
  X(unary_backward) X(binary) X(axpy) X(reduce) X(argmax) X(softmax) X(softmax_backward) \
  X(cross_entropy) X(gemm) X(conv2d_fwd) X(conv2d_bwd_data) X(conv2d_bwd_filter) \
  X(pool2d_fwd) X(pool2d_bwd) X(bn_fwd_train) X(bn_fwd_infer) X(bn_bwd) \
  X(gnorm_fwd) X(gnorm_bwd) X(embedding_fwd) X(embedding_bwd) X(sdpa_fwd) \
  X(sdpa_bwd) X(line_fwd) X(line_bwd)

#define NAME(s) #s,
#define OFFSET(s) offsetof(rn_backend, s),
static const char *const slot_names[] = {SLOTS(NAME) NULL};
static const size_t slot_offsets[] = {SLOTS(OFFSET)};

const char *const *rn_backend_slot_names(void) { return slot_names; }

const rn_backend *rn_backend_get(rn_devtype dev) {
  if (dev == RN_CPU) return &rn_cpu_backend;
#ifdef RN_WITH_CUDA
  return rn_cuda_backend();
#else
  rn_err("cuda: this rnlua was built without CUDA (nvcc was not found at build time)");
  return NULL;
#endif
}

const rn_backend *rn_backend_of(const rn_tensor *t) {
  const rn_backend *be = rn_backend_get(t->st->device);
  return be ? be : &rn_cpu_backend; /* a tensor exists, so its backend does */
}

bool rn_backend_supports(rn_devtype dev, const char *slot) {
  const rn_backend *be = rn_backend_get(dev);
  if (!be) return false;
  for (int i = 0; slot_names[i]; i++)
    if (strcmp(slot_names[i], slot) == 0) {
      void *const *p = (void *const *)((const char *)be + slot_offsets[i]);
      return *p != NULL;
    }
  return false;
}

void rn_kernel_missing(const rn_backend *be, const char *slot) {
  rn_err("%s is not implemented on %s", slot, be->name);
}

int rn_same_device(const char *op, int n, rn_tensor *const *ts) {
  for (int i = 1; i < n; i++)
    if (ts[i] && ts[0] && rn_device(ts[i]) != rn_device(ts[0]))
      return rn_err("%s: inputs on different devices (%s and %s); move them with :to()", op,
                    rn_device_name(rn_device(ts[0])), rn_device_name(rn_device(ts[i])));
  return 0;
}
