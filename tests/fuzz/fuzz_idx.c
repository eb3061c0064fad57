/* fuzz_idx.c - libFuzzer target for the MNIST IDX reader (rn_read_idx),
 * plain and gzip (the stream detects gzip by its magic, so the gzip seeds
 * drive the inflate path). Read once without and once with a class check. */
#include "fuzz_util.h"
#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = fz_write("in.idx", data, size);
  if (!p) return 0;
  rn_tensor *t = rn_read_idx(p, 0);
  rn_release(t);
  if (t) rn_release(rn_read_idx(p, 10));
  return 0;
}
