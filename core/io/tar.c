/* tar.c - a minimal streaming tar reader over rn_in (so straight from a
 * .tar.gz): ustar and GNU headers with verified checksums, octal and base-256
 * sizes, GNU long names ('L') and pax 'path' records. It only reads: member
 * data goes to the caller's buffer or is skipped; nothing is ever extracted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define BLOCK 512
#define MAX_LONGNAME 4095
#define MAX_PAX ((uint64_t)1 << 20)

struct rn_tar {
  rn_in *in;
  uint64_t left;     /* data bytes of the current member not yet read */
  uint64_t pad;      /* padding after it */
  uint64_t offset;   /* archive offset of the next unread byte */
  char longname[MAX_LONGNAME + 1];
  bool have_longname;
  uint64_t headers;  /* headers read so far (members and extended headers) */
};

rn_tar *rn_tar_open(rn_in *in) {
  rn_tar *t = calloc(1, sizeof *t);
  if (!t) { rn_err("archive %s: out of memory", rn_in_path(in)); return NULL; }
  t->in = in;
  return t;
}

void rn_tar_close(rn_tar *t) { free(t); }

const char *rn_path_base(const char *path) {
  if (!path) return NULL;
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

bool rn_path_unsafe(const char *path) {
  if (path[0] == '/') return true;
  for (const char *p = path; *p;) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.') return true;
    if (!e) break;
    p = e + 1;
  }
  return false;
}

/* Octal (space/NUL terminated, leading spaces) or base-256 (high bit set). */
static int parse_num(const unsigned char *f, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (f[0] & 0x80) {
    if (f[0] != 0x80) return -1; /* negative or too wide */
    for (size_t i = 1; i < n; i++) {
      if (v >> 55) return -1;
      v = (v << 8) | f[i];
    }
    *out = v;
    return 0;
  }
  size_t i = 0;
  while (i < n && f[i] == ' ') i++;
  size_t start = i;
  for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
    if (v >> 60) return -1;
    v = v * 8 + (uint64_t)(f[i] - '0');
  }
  if (i == start) return -1;
  for (; i < n; i++)
    if (f[i] != ' ' && f[i] != 0) return -1;
  *out = v;
  return 0;
}

/* Reads exactly n bytes of archive; error names where it ended. */
static int read_exact(rn_tar *t, void *buf, size_t n, const char *what) {
  size_t got;
  if (rn_in_read(t->in, buf, n, &got) < 0) return -1;
  t->offset += got;
  if (got < n)
    return rn_err("archive %s: truncated: ends at byte %llu, inside %s", rn_in_path(t->in),
                  (unsigned long long)t->offset, what);
  return 0;
}

static int skip(rn_tar *t, uint64_t n, const char *what) {
  uint64_t got;
  int rc = rn_in_skip(t->in, n, &got);
  t->offset += got;
  if (rc < 0) return -1;
  if (rc > 0)
    return rn_err("archive %s: truncated: ends at byte %llu, inside %s", rn_in_path(t->in),
                  (unsigned long long)t->offset, what);
  return 0;
}

/* Reads a small member body (long name or pax header) into a new buffer. */
static char *read_body(rn_tar *t, uint64_t size, uint64_t max, const char *what) {
  if (size > max) {
    rn_err("archive %s: %s of %llu bytes at byte %llu is larger than %llu bytes",
           rn_in_path(t->in), what, (unsigned long long)size,
           (unsigned long long)(t->offset - BLOCK), (unsigned long long)max);
    return NULL;
  }
  char *b = malloc((size_t)size + 1);
  if (!b) { rn_err("archive %s: out of memory", rn_in_path(t->in)); return NULL; }
  uint64_t pad = (BLOCK - size % BLOCK) % BLOCK;
  if (read_exact(t, b, (size_t)size, what) < 0 || skip(t, pad, what) < 0) {
    free(b);
    return NULL;
  }
  b[size] = 0;
  return b;
}

/* pax records "LEN key=value\n": takes "path". */
static int pax_path(rn_tar *t, const char *b, uint64_t size) {
  uint64_t i = 0;
  while (i < size) {
    uint64_t len = 0, j = i;
    while (j < size && b[j] >= '0' && b[j] <= '9' && len < size) len = len * 10 + (uint64_t)(b[j++] - '0');
    if (j >= size || b[j] != ' ' || len == 0 || len > size - i || b[i + len - 1] != '\n')
      return rn_err("archive %s: malformed pax header record at byte %llu", rn_in_path(t->in),
                    (unsigned long long)i);
    const char *kv = b + j + 1, *end = b + i + len - 1;
    if (end - kv > 5 && memcmp(kv, "path=", 5) == 0) {
      size_t n = (size_t)(end - kv - 5);
      if (n > MAX_LONGNAME) return rn_err("archive %s: pax path too long", rn_in_path(t->in));
      memcpy(t->longname, kv + 5, n);
      t->longname[n] = 0;
      t->have_longname = true;
    }
    i += len;
  }
  return 0;
}

int rn_tar_next(rn_tar *t, rn_tar_member *m) {
  const char *ap = rn_in_path(t->in);
  if (skip(t, t->left + t->pad, "member data") < 0) return -1;
  t->left = t->pad = 0;
  for (;;) {
    unsigned char h[BLOCK];
    size_t got;
    uint64_t at = t->offset;
    if (rn_in_read(t->in, h, BLOCK, &got) < 0) return -1;
    t->offset += got;
    if (got == 0) return 0; /* end without the zero blocks: accepted */
    if (got < BLOCK)
      return rn_err("archive %s: truncated: ends at byte %llu, inside the header at byte %llu",
                    ap, (unsigned long long)t->offset, (unsigned long long)at);
    bool zero = true;
    for (int i = 0; i < BLOCK && zero; i++) zero = h[i] == 0;
    if (zero) return 0;
    if (++t->headers > RN_TAR_MAX_MEMBERS)
      return rn_err("archive %s: more than %d members (header at byte %llu); not a dataset "
                    "archive", ap, RN_TAR_MAX_MEMBERS, (unsigned long long)at);
    uint64_t stored;
    if (parse_num(h + 148, 8, &stored) < 0)
      return rn_err("archive %s: header at byte %llu: checksum field is not a number (not a tar "
                    "archive?)", ap, (unsigned long long)at);
    uint64_t sum = 0;
    int64_t ssum = 0;
    for (int i = 0; i < BLOCK; i++) {
      unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
      sum += c;
      ssum += (signed char)c;
    }
    if (stored != sum && (int64_t)stored != ssum)
      return rn_err("archive %s: header at byte %llu: checksum mismatch (stored %llu, computed "
                    "%llu)", ap, (unsigned long long)at, (unsigned long long)stored,
                    (unsigned long long)sum);
    uint64_t size;
    if (parse_num(h + 124, 12, &size) < 0)
      return rn_err("archive %s: header at byte %llu: size field is not a number", ap,
                    (unsigned long long)at);
    char type = (char)h[156];
    if (type == 'L' || type == 'x') {
      char *b = read_body(t, size, type == 'L' ? MAX_LONGNAME : MAX_PAX,
                          type == 'L' ? "GNU long name" : "pax header");
      if (!b) return -1;
      int rc = 0;
      if (type == 'L') {
        memcpy(t->longname, b, (size_t)size + 1);
        t->have_longname = true;
      } else {
        rc = pax_path(t, b, size);
      }
      free(b);
      if (rc < 0) return -1;
      continue;
    }
    if (type == 'g' || type == 'K') { /* global pax, long link name: not needed */
      if (skip(t, size + (BLOCK - size % BLOCK) % BLOCK, "an extended header") < 0) return -1;
      continue;
    }
    memset(m, 0, sizeof *m);
    if (t->have_longname) {
      strcpy(m->path, t->longname);
      t->have_longname = false;
    } else {
      char name[101], prefix[156];
      memcpy(name, h, 100);
      name[100] = 0;
      prefix[0] = 0;
      if (memcmp(h + 257, "ustar\0", 6) == 0) { /* POSIX: prefix field */
        memcpy(prefix, h + 345, 155);
        prefix[155] = 0;
      }
      if (prefix[0]) snprintf(m->path, sizeof m->path, "%s/%s", prefix, name);
      else snprintf(m->path, sizeof m->path, "%s", name);
    }
    m->size = size;
    m->type = type ? type : '0';
    m->header_offset = at;
    /* links, devices, folders carry no data; '7' (contiguous) counts as a file */
    bool has_data = type == '0' || type == 0 || type == '7';
    t->left = has_data ? size : 0;
    t->pad = has_data ? (BLOCK - size % BLOCK) % BLOCK : 0;
    if (!has_data && size && type != '1' && type != '2' && type != '3' && type != '4' &&
        type != '5' && type != '6') {
      t->left = size; /* unknown type with data: skipped with it */
      t->pad = (BLOCK - size % BLOCK) % BLOCK;
    }
    return 1;
  }
}

int rn_tar_read(rn_tar *t, void *buf, size_t n) {
  if (n > t->left)
    return rn_err("archive %s: read of %zu bytes past the member's %llu remaining",
                  rn_in_path(t->in), n, (unsigned long long)t->left);
  if (read_exact(t, buf, n, "member data") < 0) return -1;
  t->left -= n;
  if (t->left == 0 && t->pad) { /* the padding too: a cut archive shows even here */
    if (skip(t, t->pad, "member padding") < 0) return -1;
    t->pad = 0;
  }
  return 0;
}
