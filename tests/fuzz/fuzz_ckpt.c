/* fuzz_ckpt.c - libFuzzer target for the RNCKPT01 checkpoint loader
 * (rn_ckpt_load). Each input is loaded twice: as given, and with its
 * checksums made right (the CRC32 of each compressed payload the entry table
 * locates inside the file, then the header CRC), so that mutations get past
 * the checksums into the entry table, the duplicate-name check, inflate and
 * the raw-data CRC. Layout: doc/checkpoint_format.md. */
#include <zlib.h>

#include "fuzz_util.h"
#include "io/io.h"

#define HDR 40

static void load(const uint8_t *data, size_t size) {
  const char *p = fz_write("in.rnckpt", data, size);
  if (!p) return;
  rn_tset s;
  if (rn_ckpt_load(p, &s) == 0) rn_tset_free(&s);
}

/* Recomputes the payload CRCs and the header CRC of d in place, as far as
 * the table can be walked; returns 0 if the header lengths do not fit. */
static int fix_crcs(uint8_t *d, size_t size) {
  uint32_t n = rn_le_get32(d + 12);
  uint64_t table_len = rn_le_get64(d + 16), meta_len = rn_le_get64(d + 24);
  if (table_len > size - HDR || meta_len > size - HDR - table_len) return 0;
  uint8_t *p = d + HDR, *end = d + HDR + table_len;
  for (uint32_t i = 0; i < n && i < 10000; i++) {
    if (end - p < 2) break;
    size_t name_len = (size_t)p[0] | ((size_t)p[1] << 8);
    p += 2;
    if ((size_t)(end - p) < name_len + 2) break;
    p += name_len;
    size_t ndim = p[1];
    p += 2;
    if (ndim > RN_MAXDIM || (size_t)(end - p) < 8 * ndim + 32) break;
    p += 8 * ndim;
    uint64_t off = rn_le_get64(p), csize = rn_le_get64(p + 8);
    if (off <= size && csize <= size - off)
      rn_le_put32(p + 28, (uint32_t)crc32(crc32(0L, Z_NULL, 0), d + off, (uInt)csize));
    p += 32;
  }
  uLong c = crc32(0L, Z_NULL, 0);
  c = crc32(c, d, 32);
  c = crc32(c, d + HDR, (uInt)(table_len + meta_len));
  rn_le_put32(d + 32, (uint32_t)c);
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  load(data, size);
  if (size < HDR) return 0;
  uint8_t *fixed = malloc(size);
  if (!fixed) return 0;
  memcpy(fixed, data, size);
  if (fix_crcs(fixed, size) && memcmp(fixed, data, size) != 0) load(fixed, size);
  free(fixed);
  return 0;
}
