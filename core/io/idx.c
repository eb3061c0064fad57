/* idx.c - the MNIST / Fashion-MNIST IDX reader, plain or gzip: magic 0x801
 * (labels, uint8, 1-D) or 0x803 (images, uint8, 3-D), big-endian dims, then
 * exactly the bytes the dims imply. The gzip output is capped at that size,
 * and the size is checked against what the file can hold before allocating. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

static const char *idx_kind(int nd) { return nd == 1 ? "labels" : "images"; }

#define CHUNK ((size_t)64 << 20)

/* gzip content: the header's size is only a claim, so the data is read into
 * chunks as it arrives and the tensor is allocated once all of it did; a
 * short stream costs what it holds, not what its header says. *got: bytes
 * read (< total: *t stays NULL). */
static int read_gz_body(rn_in *in, int nd, const int64_t *shape, uint64_t total, rn_tensor **t,
                        size_t *got) {
  size_t nchunks = (size_t)((total + CHUNK - 1) / CHUNK), have = 0;
  unsigned char **ch = calloc(nchunks ? nchunks : 1, sizeof *ch);
  int rc = -1;
  *t = NULL;
  *got = 0;
  if (!ch) return rn_err("%s: out of memory", rn_in_path(in));
  for (size_t i = 0; i < nchunks; i++) {
    size_t want = total - (uint64_t)i * CHUNK < CHUNK ? (size_t)(total - (uint64_t)i * CHUNK) : CHUNK;
    size_t g;
    if (!(ch[i] = malloc(want))) { rn_err("%s: out of memory", rn_in_path(in)); goto done; }
    if (rn_in_read(in, ch[i], want, &g) < 0) goto done;
    have += g;
    if (g < want) { *got = have; rc = 0; goto done; }
  }
  *got = have;
  if (!(*t = rn_empty(nd, shape, RN_U8, RN_CPU))) goto done;
  for (size_t i = 0; i < nchunks; i++) {
    size_t n = total - (uint64_t)i * CHUNK < CHUNK ? (size_t)(total - (uint64_t)i * CHUNK) : CHUNK;
    memcpy(rn_ptr(*t) + i * CHUNK, ch[i], n);
    free(ch[i]);
    ch[i] = NULL;
  }
  rc = 0;
done:
  for (size_t i = 0; i < nchunks; i++) free(ch[i]);
  free(ch);
  return rc;
}

rn_tensor *rn_read_idx(const char *path, int64_t classes) {
  rn_in *in = rn_in_open(path);
  if (!in) return NULL;
  rn_tensor *t = NULL;
  unsigned char hdr[16];
  size_t got;
  if (rn_in_read(in, hdr, 4, &got) < 0) goto fail;
  if (got < 4) {
    rn_err("%s: truncated: %zu bytes, shorter than the 4-byte IDX magic", path, got);
    goto fail;
  }
  uint32_t magic = rn_be_get32(hdr);
  if (magic != 0x801 && magic != 0x803) {
    rn_err("%s: bad magic 0x%08x: not an IDX file of uint8 labels (0x00000801) or images "
           "(0x00000803)", path, magic);
    goto fail;
  }
  int nd = (int)(magic & 0xff);
  size_t hlen = 4 + 4 * (size_t)nd;
  if (rn_in_read(in, hdr + 4, hlen - 4, &got) < 0) goto fail;
  if (got < hlen - 4) {
    rn_err("%s: truncated: %zu bytes, shorter than the %zu-byte IDX %s header", path, 4 + got,
           hlen, idx_kind(nd));
    goto fail;
  }
  int64_t shape[3];
  uint64_t total = 1;
  for (int i = 0; i < nd; i++) {
    shape[i] = rn_be_get32(hdr + 4 + 4 * i);
    if (shape[i] && total > ((uint64_t)1 << 62) / (uint64_t)shape[i]) total = (uint64_t)1 << 62;
    else total *= (uint64_t)shape[i];
  }
  if (nd == 3 && (shape[1] == 0 || shape[2] == 0)) {
    rn_err("%s: header says images of %lldx%lld; sizes must be positive", path,
           (long long)shape[1], (long long)shape[2]);
    goto fail;
  }
  char what[160];
  if (nd == 1) snprintf(what, sizeof what, "%lld labels", (long long)shape[0]);
  else snprintf(what, sizeof what, "%lld images of %lldx%lld", (long long)shape[0],
                (long long)shape[1], (long long)shape[2]);
  if (total > (uint64_t)RN_MAX_NUMEL) {
    rn_err("%s: header says %s, more than 2^40 bytes", path, what);
    goto fail;
  }
  char claim[200];
  snprintf(claim, sizeof claim, "the header (%s)", what);
  if (rn_io_check_limit(total, path, claim) < 0) goto fail;
  uint64_t need = hlen + total, fsz = rn_in_file_size(in);
  if (!rn_in_is_gz(in)) {
    if (fsz < need) {
      rn_err("%s: truncated: header says %s (%llu bytes) but the file has %llu bytes", path, what,
             (unsigned long long)need, (unsigned long long)fsz);
      goto fail;
    }
    if (fsz > need) {
      rn_err("%s: %llu trailing bytes: header says %s (%llu bytes) but the file has %llu bytes",
             path, (unsigned long long)(fsz - need), what, (unsigned long long)need,
             (unsigned long long)fsz);
      goto fail;
    }
  } else if (need > rn_in_max_content(in)) {
    rn_err("%s: truncated: header says %s (%llu bytes) but %llu bytes of gzip data cannot hold "
           "more than %llu bytes", path, what, (unsigned long long)need, (unsigned long long)fsz,
           (unsigned long long)rn_in_max_content(in));
    goto fail;
  }
  rn_in_set_cap(in, need);
  if (rn_in_is_gz(in)) {
    if (read_gz_body(in, nd, shape, total, &t, &got) < 0) goto fail;
  } else {
    t = rn_empty(nd, shape, RN_U8, RN_CPU);
    if (!t || rn_in_read(in, rn_ptr(t), (size_t)total, &got) < 0) goto fail;
  }
  if (got < total) {
    rn_err("%s: truncated: header says %s (%llu bytes) but it decompresses to only %llu bytes",
           path, what, (unsigned long long)need, (unsigned long long)(hlen + got));
    goto fail;
  }
  unsigned char extra;
  if (rn_in_read(in, &extra, 1, &got) < 0) goto fail; /* past the cap: an error */
  if (classes > 0 && nd == 1) {
    const unsigned char *p = (const unsigned char *)rn_ptr(t);
    for (int64_t i = 0; i < shape[0]; i++)
      if (p[i] >= classes) {
        rn_err("%s: label %d at record %lld outside 0..%lld", path, p[i], (long long)i + 1,
               (long long)classes - 1);
        goto fail;
      }
  }
  rn_in_close(in);
  return t;
fail:
  rn_release(t);
  rn_in_close(in);
  return NULL;
}
