/* fuzz_safetensors.c - libFuzzer target for the safetensors importer
 * (rn_st_load: 8-byte header length, strict JSON header, data offsets). */
#include "fuzz_util.h"
#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = fz_write("in.safetensors", data, size);
  if (!p) return 0;
  rn_tset s;
  if (rn_st_load(p, &s) == 0) rn_tset_free(&s);
  return 0;
}
