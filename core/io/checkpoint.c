/* checkpoint.c - the RNCKPT01 checkpoint format (doc/checkpoint_format.md):
 * a fixed header, a table of entries (name, dtype, shape, payload offset,
 * compressed and raw sizes, CRC32 of the raw bytes), a metadata blob, then one
 * zlib stream per tensor. Data only: loading never executes anything. Every
 * field is validated before anything is allocated from it; saving is atomic. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io.h"

#define HDR 40

typedef struct {
  const char *name; /* into the table buffer (not NUL-terminated) */
  size_t name_len;
  rn_dtype dtype;
  int ndim;
  int64_t shape[RN_MAXDIM];
  uint64_t offset, csize, rsize;
  uint32_t crc;  /* of the raw bytes */
  uint32_t ccrc; /* of the compressed payload */
} entry;

static size_t entry_len(size_t name_len, int ndim) { return 2 + name_len + 2 + 8 * (size_t)ndim + 32; }

/* zlib never expands past compressBound, and deflate never shrinks below
 * 1/1032 (its longest match costs at least 2 bits per 258 bytes). */
static bool ratio_ok(uint64_t csize, uint64_t rsize) {
  return csize <= compressBound((uLong)rsize) && rsize / 1032 <= csize;
}

/* ---- save ------------------------------------------------------------------ */

typedef struct { const char *name; int idx; } sorted_name;
static int cmp_name(const void *a, const void *b) {
  return strcmp(((const sorted_name *)a)->name, ((const sorted_name *)b)->name);
}

int rn_ckpt_save(const char *path, int n, const char *const *names, rn_tensor *const *ts,
                 const char *meta, size_t meta_len, int level) {
  if (level < 0) level = 1;
  if (level > 9) return rn_err("%s: compression level %d outside 0..9", path, level);
  if (n < 0 || n > RN_CKPT_MAX_ENTRIES)
    return rn_err("%s: %d tensors; a checkpoint holds at most %d", path, n, RN_CKPT_MAX_ENTRIES);
  if (meta_len > RN_CKPT_MAX_META)
    return rn_err("%s: metadata of %zu bytes is larger than %llu bytes", path, meta_len,
                  (unsigned long long)RN_CKPT_MAX_META);
  sorted_name *order = malloc(sizeof *order * (size_t)(n ? n : 1));
  if (!order) return rn_err("%s: out of memory", path);
  uint64_t table_len = 0;
  for (int i = 0; i < n; i++) {
    size_t len = strlen(names[i]);
    if (!rn_io_name_ok(names[i], len)) {
      free(order);
      return rn_err("%s: tensor name '%.40s' must be 1..%d printable ASCII characters", path,
                    names[i], RN_CKPT_MAX_NAME);
    }
    if (rn_io_dtype_code(ts[i]->dtype) < 0) {
      free(order);
      return rn_err("%s: tensor '%s' has a dtype the format does not know", path, names[i]);
    }
    order[i].name = names[i];
    order[i].idx = i;
    table_len += entry_len(len, ts[i]->ndim);
  }
  qsort(order, (size_t)n, sizeof *order, cmp_name);
  for (int i = 1; i < n; i++)
    if (strcmp(order[i].name, order[i - 1].name) == 0) {
      rn_err("%s: tensor name '%s' given twice", path, order[i].name);
      free(order);
      return -1;
    }
  if (table_len > RN_CKPT_MAX_TABLE) {
    free(order);
    return rn_err("%s: entry table of %llu bytes is too large", path, (unsigned long long)table_len);
  }
  unsigned char *head = calloc(1, HDR + (size_t)table_len);
  if (!head) { free(order); return rn_err("%s: out of memory", path); }
  rn_atomic a;
  if (rn_atomic_begin(&a, path) < 0) { free(head); free(order); return -1; }
  unsigned char *cbuf = NULL;
  uint64_t off = HDR + table_len + meta_len;
  if (rn_atomic_pwrite(&a, head, HDR + (size_t)table_len, 0) < 0) goto fail;
  if (meta_len && rn_atomic_pwrite(&a, meta, meta_len, HDR + table_len) < 0) goto fail;
  unsigned char *e = head + HDR;
  for (int k = 0; k < n; k++) {
    int i = order[k].idx;
    rn_tensor *h;
    if (rn_io_host_copies(1, &ts[i], &h) < 0) goto fail;
    uLong rsize = (uLong)rn_numel(h) * (uLong)rn_dtype_size(h->dtype);
    uLong cap = compressBound(rsize);
    cbuf = malloc(cap ? cap : 1);
    if (!cbuf) { rn_release(h); rn_err("%s: out of memory compressing '%s'", path, names[i]); goto fail; }
    uLongf clen = cap;
    int zrc = compress2(cbuf, &clen, (const Bytef *)rn_ptr(h), rsize, level);
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    for (uLong done = 0; done < rsize;) { /* crc32 takes uInt lengths */
      uLong k2 = rsize - done > (1u << 30) ? (1u << 30) : rsize - done;
      crc = (uint32_t)crc32(crc, (const Bytef *)rn_ptr(h) + done, (uInt)k2);
      done += k2;
    }
    rn_release(h);
    if (zrc != Z_OK) { rn_err("%s: zlib failed compressing '%s' (%d)", path, names[i], zrc); goto fail; }
    uint32_t ccrc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), cbuf, (uInt)clen);
    if (rn_atomic_pwrite(&a, cbuf, clen, off) < 0) goto fail;
    free(cbuf);
    cbuf = NULL;
    size_t len = strlen(names[i]);
    e[0] = (unsigned char)len;
    e[1] = (unsigned char)(len >> 8);
    memcpy(e + 2, names[i], len);
    e += 2 + len;
    e[0] = (unsigned char)rn_io_dtype_code(ts[i]->dtype);
    e[1] = (unsigned char)ts[i]->ndim;
    e += 2;
    for (int d = 0; d < ts[i]->ndim; d++, e += 8) rn_le_put64(e, (uint64_t)ts[i]->shape[d]);
    rn_le_put64(e, off);
    rn_le_put64(e + 8, clen);
    rn_le_put64(e + 16, rsize);
    rn_le_put32(e + 24, crc);
    rn_le_put32(e + 28, ccrc);
    e += 32;
    off += clen;
  }
  memcpy(head, RN_CKPT_MAGIC, 8);
  rn_le_put32(head + 8, RN_CKPT_VERSION);
  rn_le_put32(head + 12, (uint32_t)n);
  rn_le_put64(head + 16, table_len);
  rn_le_put64(head + 24, meta_len);
  uLong hcrc = crc32(0L, Z_NULL, 0);
  hcrc = crc32(hcrc, head, 32);
  hcrc = crc32(hcrc, head + HDR, (uInt)table_len);
  hcrc = crc32(hcrc, (const Bytef *)(meta ? meta : ""), (uInt)meta_len);
  rn_le_put32(head + 32, (uint32_t)hcrc);
  if (rn_atomic_pwrite(&a, head, HDR + (size_t)table_len, 0) < 0) goto fail;
  free(head);
  free(order);
  return rn_atomic_commit(&a);
fail:
  free(cbuf);
  free(head);
  free(order);
  rn_atomic_abort(&a);
  return -1;
}

/* ---- load ------------------------------------------------------------------ */

/* "entry 3 'name'" for messages */
static const char *ename(const entry *en, int i, char *buf, size_t n) {
  if (en->name && rn_io_name_ok(en->name, en->name_len))
    snprintf(buf, n, "entry %d '%.*s'", i + 1, (int)en->name_len, en->name);
  else snprintf(buf, n, "entry %d", i + 1);
  return buf;
}

static int cmp_entry(const void *a, const void *b) {
  const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(x->name, y->name, n);
  return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Parses and validates the table; fills ents[n]. */
static int parse_table(const char *path, const unsigned char *tab, uint64_t table_len, int n,
                       uint64_t data_start, uint64_t fsz, entry *ents) {
  const unsigned char *p = tab, *end = tab + table_len;
  uint64_t expect = data_start;
  char nm[300];
  for (int i = 0; i < n; i++) {
    entry *en = &ents[i];
    memset(en, 0, sizeof *en);
    if (end - p < 2) return rn_err("%s: entry %d: the entry table ends inside it", path, i + 1);
    en->name_len = (size_t)p[0] | ((size_t)p[1] << 8);
    p += 2;
    if ((size_t)(end - p) < en->name_len + 2)
      return rn_err("%s: entry %d: the entry table ends inside its name (length %zu)", path, i + 1,
                    en->name_len);
    en->name = (const char *)p;
    if (!rn_io_name_ok(en->name, en->name_len)) {
      en->name = NULL;
      return rn_err("%s: entry %d: name of %zu bytes is not 1..%d printable ASCII characters",
                    path, i + 1, en->name_len, RN_CKPT_MAX_NAME);
    }
    p += en->name_len;
    int code = p[0];
    en->ndim = p[1];
    p += 2;
    if (rn_io_dtype_from_code(code, &en->dtype) < 0)
      return rn_err("%s: %s: unknown dtype code %d", path, ename(en, i, nm, sizeof nm), code);
    if (en->ndim > RN_MAXDIM)
      return rn_err("%s: %s: %d dims; at most %d", path, ename(en, i, nm, sizeof nm), en->ndim,
                    RN_MAXDIM);
    if ((size_t)(end - p) < 8 * (size_t)en->ndim + 32)
      return rn_err("%s: %s: the entry table ends inside it", path, ename(en, i, nm, sizeof nm));
    uint64_t numel = 1;
    bool big = false;
    for (int d = 0; d < en->ndim; d++, p += 8) {
      en->shape[d] = (int64_t)rn_le_get64(p);
      if (en->shape[d] < 0)
        return rn_err("%s: %s: size %lld of dim %d is negative", path,
                      ename(en, i, nm, sizeof nm), (long long)en->shape[d], d + 1);
      if (en->shape[d] && numel > (uint64_t)RN_MAX_NUMEL / (uint64_t)en->shape[d]) big = true;
      else numel *= (uint64_t)en->shape[d];
    }
    char shp[200];
    rn_dims_str(en->ndim, en->shape, shp, sizeof shp);
    if (big)
      return rn_err("%s: %s: shape %s has more than 2^40 elements", path,
                    ename(en, i, nm, sizeof nm), shp);
    char who[600];
    snprintf(who, sizeof who, "%s: %s", path, ename(en, i, nm, sizeof nm));
    if (rn_check_shape(en->ndim, en->shape, who) < 0) return -1; /* as rn_empty will check */
    en->offset = rn_le_get64(p);
    en->csize = rn_le_get64(p + 8);
    en->rsize = rn_le_get64(p + 16);
    en->crc = rn_le_get32(p + 24);
    en->ccrc = rn_le_get32(p + 28);
    p += 32;
    uint64_t want = numel * rn_dtype_size(en->dtype);
    if (en->rsize != want)
      return rn_err("%s: %s: raw size %llu bytes does not match shape %s of %s (%llu bytes)",
                    path, ename(en, i, nm, sizeof nm), (unsigned long long)en->rsize, shp,
                    rn_dtype_name(en->dtype), (unsigned long long)want);
    if (en->offset > fsz || en->csize > fsz - en->offset)
      return rn_err("%s: %s: payload at bytes %llu..+%llu lies outside the file (%llu bytes)",
                    path, ename(en, i, nm, sizeof nm), (unsigned long long)en->offset,
                    (unsigned long long)en->csize, (unsigned long long)fsz);
    if (en->offset != expect)
      return rn_err("%s: %s: payload offset %llu, expected %llu (payloads follow each other in "
                    "entry order, without gaps or overlaps)", path, ename(en, i, nm, sizeof nm),
                    (unsigned long long)en->offset, (unsigned long long)expect);
    if (en->csize < 8 || !ratio_ok(en->csize, en->rsize))
      return rn_err("%s: %s: compressed size %llu is impossible for %llu raw bytes", path,
                    ename(en, i, nm, sizeof nm), (unsigned long long)en->csize,
                    (unsigned long long)en->rsize);
    if (rn_io_check_limit(want, path, ename(en, i, nm, sizeof nm)) < 0) return -1;
    expect = en->offset + en->csize;
  }
  if (p != end)
    return rn_err("%s: the entry table has %llu bytes after its %d entries", path,
                  (unsigned long long)(end - p), n);
  if (expect != fsz)
    return rn_err("%s: %llu trailing bytes after the last payload (which ends at byte %llu)", path,
                  (unsigned long long)(fsz - expect), (unsigned long long)expect);
  /* unique names */
  const entry **sorted = malloc(sizeof *sorted * (size_t)(n ? n : 1));
  if (!sorted) return rn_err("%s: out of memory", path);
  for (int i = 0; i < n; i++) sorted[i] = &ents[i];
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_entry);
  for (int i = 1; i < n; i++)
    if (cmp_entry(&sorted[i], &sorted[i - 1]) == 0) {
      int rc = rn_err("%s: duplicate name '%.*s'", path, (int)sorted[i]->name_len,
                      sorted[i]->name);
      free(sorted);
      return rc;
    }
  free(sorted);
  return 0;
}

/* Inflates exactly en->rsize bytes into dst from src[csize]; checks the CRC. */
static int inflate_entry(const char *path, const char *who, const entry *en,
                         const unsigned char *src, unsigned char *dst) {
  uint32_t cc = (uint32_t)crc32(0L, Z_NULL, 0);
  for (uint64_t done = 0; done < en->csize;) {
    uint64_t k = en->csize - done > (1u << 30) ? (1u << 30) : en->csize - done;
    cc = (uint32_t)crc32(cc, src + done, (uInt)k);
    done += k;
  }
  if (cc != en->ccrc)
    return rn_err("%s: %s: CRC32 of the compressed payload mismatch (stored %08x, computed %08x): "
                  "the file is corrupt", path, who, en->ccrc, cc);
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit(&zs) != Z_OK) return rn_err("%s: cannot start zlib", path);
  uint64_t in_left = en->csize, out_left = en->rsize;
  zs.next_in = (Bytef *)src;
  zs.next_out = dst;
  int rc;
  unsigned char probe;
  bool probing = false;
  for (;;) {
    uInt ci = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
    uInt co = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
    if (co == 0 && !probing) { /* all raw bytes out: the stream must end now */
      zs.next_out = &probe;
      co = 1;
      probing = true;
    }
    zs.avail_in = ci;
    zs.avail_out = co;
    rc = inflate(&zs, Z_NO_FLUSH);
    in_left -= ci - zs.avail_in;
    if (!probing) out_left -= co - zs.avail_out;
    if (rc == Z_STREAM_END) break;
    if (probing && zs.avail_out == 0) {
      inflateEnd(&zs);
      return rn_err("%s: %s: payload decompresses past its %llu raw bytes", path, who,
                    (unsigned long long)en->rsize);
    }
    if (rc == Z_BUF_ERROR && in_left == 0) {
      inflateEnd(&zs);
      return rn_err("%s: %s: compressed payload is truncated or corrupt", path, who);
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      inflateEnd(&zs);
      return rn_err("%s: %s: corrupt compressed payload (zlib: %s)", path, who,
                    zs.msg ? zs.msg : "error");
    }
  }
  inflateEnd(&zs);
  if (out_left != 0)
    return rn_err("%s: %s: payload decompresses to %llu bytes, expected %llu", path, who,
                  (unsigned long long)(en->rsize - out_left), (unsigned long long)en->rsize);
  if (in_left != 0)
    return rn_err("%s: %s: %llu bytes after the end of its compressed payload", path, who,
                  (unsigned long long)in_left);
  uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
  for (uint64_t done = 0; done < en->rsize;) {
    uint64_t k = en->rsize - done > (1u << 30) ? (1u << 30) : en->rsize - done;
    crc = (uint32_t)crc32(crc, dst + done, (uInt)k);
    done += k;
  }
  if (crc != en->crc)
    return rn_err("%s: %s: CRC32 mismatch (stored %08x, computed %08x): the data is corrupt",
                  path, who, en->crc, crc);
  return 0;
}

int rn_ckpt_load(const char *path, rn_tset *out) {
  memset(out, 0, sizeof *out);
  uint64_t fsz;
  int fd = rn_open_regular(path, &fsz);
  if (fd < 0) return -1;
  unsigned char *tab = NULL, *cbuf = NULL;
  entry *ents = NULL;
  unsigned char h[HDR];
  if (fsz < HDR) {
    if (fsz >= 8 && pread(fd, h, 8, 0) == 8 && memcmp(h, RN_CKPT_MAGIC, 8) != 0)
      rn_err("%s: not an rnlua checkpoint (bad magic)", path);
    else rn_err("%s: truncated: %llu bytes, shorter than the %d-byte header", path,
                (unsigned long long)fsz, HDR);
    goto fail;
  }
  if (rn_pread_full(fd, h, HDR, 0, path) < 0) goto fail;
  if (memcmp(h, RN_CKPT_MAGIC, 8) != 0) {
    rn_err("%s: not an rnlua checkpoint (bad magic; expected \"%s\")", path, RN_CKPT_MAGIC);
    goto fail;
  }
  uint32_t version = rn_le_get32(h + 8), n = rn_le_get32(h + 12);
  uint64_t table_len = rn_le_get64(h + 16), meta_len = rn_le_get64(h + 24);
  uint32_t hcrc = rn_le_get32(h + 32);
  if (version != RN_CKPT_VERSION) {
    rn_err("%s: checkpoint version %u not supported (this rnlua reads version %d)", path, version,
           RN_CKPT_VERSION);
    goto fail;
  }
  if (rn_le_get32(h + 36) != 0) { rn_err("%s: reserved header field is not zero", path); goto fail; }
  if (n > RN_CKPT_MAX_ENTRIES) {
    rn_err("%s: header says %u entries; at most %d", path, n, RN_CKPT_MAX_ENTRIES);
    goto fail;
  }
  if (table_len > RN_CKPT_MAX_TABLE || meta_len > RN_CKPT_MAX_META ||
      table_len + meta_len > fsz - HDR) {
    rn_err("%s: header says a %llu-byte entry table and %llu bytes of metadata, but the file "
           "has %llu bytes", path, (unsigned long long)table_len, (unsigned long long)meta_len,
           (unsigned long long)fsz);
    goto fail;
  }
  if (table_len < (uint64_t)n * entry_len(1, 0)) {
    rn_err("%s: header says %u entries but the entry table has only %llu bytes", path, n,
           (unsigned long long)table_len);
    goto fail;
  }
  tab = malloc((size_t)(table_len + meta_len + 1));
  ents = malloc(sizeof *ents * (n ? n : 1));
  if (!tab || !ents) { rn_err("%s: out of memory", path); goto fail; }
  if (rn_pread_full(fd, tab, (size_t)(table_len + meta_len), HDR, path) < 0) goto fail;
  if (parse_table(path, tab, table_len, (int)n, HDR + table_len + meta_len, fsz, ents) < 0)
    goto fail;
  uLong c = crc32(0L, Z_NULL, 0);
  c = crc32(c, h, 32);
  c = crc32(c, tab, (uInt)(table_len + meta_len));
  if ((uint32_t)c != hcrc) {
    rn_err("%s: header checksum mismatch (stored %08x, computed %08x): the entry table or "
           "metadata is corrupt", path, hcrc, (uint32_t)c);
    goto fail;
  }
  /* everything checked: allocate */
  out->names = calloc(n ? n : 1, sizeof *out->names);
  out->ts = calloc(n ? n : 1, sizeof *out->ts);
  out->meta = malloc((size_t)meta_len + 1);
  if (!out->names || !out->ts || !out->meta) { rn_err("%s: out of memory", path); goto fail; }
  out->n = (int)n;
  memcpy(out->meta, tab + table_len, (size_t)meta_len);
  out->meta[meta_len] = 0;
  out->meta_len = (size_t)meta_len;
  uint64_t maxc = 0;
  for (uint32_t i = 0; i < n; i++)
    if (ents[i].csize > maxc) maxc = ents[i].csize;
  cbuf = malloc((size_t)maxc + 1);
  if (!cbuf) { rn_err("%s: out of memory", path); goto fail; }
  for (uint32_t i = 0; i < n; i++) {
    entry *en = &ents[i];
    char who[300];
    ename(en, (int)i, who, sizeof who);
    out->names[i] = strndup(en->name, en->name_len);
    if (!out->names[i]) { rn_err("%s: out of memory", path); goto fail; }
    out->ts[i] = rn_empty(en->ndim, en->shape, en->dtype, RN_CPU);
    if (!out->ts[i]) goto fail;
    if (rn_pread_full(fd, cbuf, (size_t)en->csize, en->offset, path) < 0) goto fail;
    if (inflate_entry(path, who, en, cbuf, (unsigned char *)rn_ptr(out->ts[i])) < 0) goto fail;
  }
  free(cbuf);
  free(tab);
  free(ents);
  close(fd);
  return 0;
fail:
  free(cbuf);
  free(tab);
  free(ents);
  close(fd);
  rn_tset_free(out);
  return -1;
}
