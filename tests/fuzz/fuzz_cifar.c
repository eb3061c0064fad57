/* fuzz_cifar.c - libFuzzer target for the CIFAR-10 reader (rn_read_cifar10).
 * The first byte picks the source: bit 0 a single .bin batch file, else a
 * .tar.gz archive (plain tar too: the stream detects gzip by magic); bit 1
 * the train split (5 members) instead of test_batch. The rest is the file. */
#include "fuzz_util.h"
#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int bin = data[0] & 1;
  bool train = (data[0] & 2) != 0;
  const char *p = fz_write(bin ? "data.bin" : "cifar.tar.gz", data + 1, size - 1);
  if (!p) return 0;
  rn_tensor *images = NULL, *labels = NULL;
  rn_read_cifar10(p, train, &images, &labels);
  rn_release(images);
  rn_release(labels);
  return 0;
}
