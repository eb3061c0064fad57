/* png.c - a minimal PNG encoder: 8-bit RGB, no interlace, every row with
 * filter 0 (None), the image data deflated by zlib's compress2 and cut into
 * IDAT chunks of at most 1 MiB; chunk CRCs by zlib's crc32. The file is
 * written through rn_atomic (io.h): a reader never sees half a PNG. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../rn.h"
#include "io.h"
#include "png.h"

#define IDAT_MAX ((size_t)1 << 20)

int rn_png_check_size(const char *what, long long w, long long h) {
  if (w < 1 || w > RN_PNG_MAX_SIDE || h < 1 || h > RN_PNG_MAX_SIDE)
    return rn_err("%s: image size %lldx%lld outside the valid range 1..%d (width and height)",
                  what, w, h, RN_PNG_MAX_SIDE);
  return 0;
}

static void put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* One chunk: length, type, data, CRC over type and data. */
static int write_chunk(rn_atomic *a, const char *type, const unsigned char *data, size_t n) {
  unsigned char head[8], tail[4];
  put_be32(head, (uint32_t)n);
  memcpy(head + 4, type, 4);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, head + 4, 4);
  if (n) crc = crc32(crc, data, (uInt)n);
  put_be32(tail, (uint32_t)crc);
  if (rn_atomic_write(a, head, 8) < 0) return -1;
  if (n && rn_atomic_write(a, data, n) < 0) return -1;
  return rn_atomic_write(a, tail, 4);
}

int rn_png_write(const char *path, int w, int h, const uint8_t *rgb) {
  if (!path || !*path) return rn_err("png_write: the path is empty");
  if (rn_png_check_size("png_write", w, h) < 0) return -1;
  if (!rgb) return rn_err("png_write %s: no pixel data", path);

  /* Rows with their filter byte, then deflate. Sizes fit size_t easily:
   * at most 16384 * (1 + 3*16384) bytes, about 805 MB. */
  size_t row = 1 + (size_t)w * 3;
  size_t raw_n = row * (size_t)h;
  unsigned char *raw = malloc(raw_n);
  uLongf z_n = compressBound((uLong)raw_n);
  unsigned char *z = malloc(z_n);
  if (!raw || !z) {
    free(raw);
    free(z);
    return rn_err("png_write %s: out of memory for a %dx%d image", path, w, h);
  }
  for (int y = 0; y < h; y++) {
    raw[(size_t)y * row] = 0;
    memcpy(raw + (size_t)y * row + 1, rgb + (size_t)y * w * 3, (size_t)w * 3);
  }
  int zr = compress2(z, &z_n, raw, (uLong)raw_n, 6);
  free(raw);
  if (zr != Z_OK) {
    free(z);
    return rn_err("png_write %s: zlib compress2 failed (code %d)", path, zr);
  }

  unsigned char ihdr[13];
  put_be32(ihdr, (uint32_t)w);
  put_be32(ihdr + 4, (uint32_t)h);
  ihdr[8] = 8;  /* bit depth */
  ihdr[9] = 2;  /* color type: RGB */
  ihdr[10] = 0; /* deflate */
  ihdr[11] = 0; /* filter method 0 */
  ihdr[12] = 0; /* no interlace */
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

  rn_atomic a;
  if (rn_atomic_begin(&a, path) < 0) {
    free(z);
    return -1;
  }
  int rc = rn_atomic_write(&a, sig, sizeof sig);
  if (rc == 0) rc = write_chunk(&a, "IHDR", ihdr, sizeof ihdr);
  for (size_t off = 0; rc == 0 && off < (size_t)z_n; off += IDAT_MAX) {
    size_t n = (size_t)z_n - off < IDAT_MAX ? (size_t)z_n - off : IDAT_MAX;
    rc = write_chunk(&a, "IDAT", z + off, n);
  }
  if (rc == 0) rc = write_chunk(&a, "IEND", NULL, 0);
  free(z);
  if (rc < 0) {
    rn_atomic_abort(&a);
    return -1;
  }
  return rn_atomic_commit(&a);
}
