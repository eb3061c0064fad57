/* bytes.c - byte-order helpers (file formats are little-endian, IDX is
 * big-endian) and an exact positional read that names the file when short. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "io.h"

void rn_le_put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

void rn_le_put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

uint32_t rn_le_get32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

uint64_t rn_le_get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

uint32_t rn_be_get32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int rn_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path) {
  size_t k = 0;
  while (k < n) {
    size_t want = n - k > ((size_t)1 << 30) ? ((size_t)1 << 30) : n - k;
    ssize_t r = pread(fd, (char *)buf + k, want, (off_t)(off + k));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return rn_err("file %s: read error: %s", path, strerror(errno));
    if (r == 0)
      return rn_err("file %s: ends at byte %llu, inside data expected up to byte %llu", path,
                    (unsigned long long)(off + k), (unsigned long long)(off + n));
    k += (size_t)r;
  }
  return 0;
}
