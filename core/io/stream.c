/* stream.c - the input stream every reader uses: a plain file or a gzip file
 * (detected by its 1f 8b magic, several members allowed) read through zlib
 * into the caller's buffer, with a cap on the content size so that a gzip
 * bomb stops at the size its format implies instead of filling memory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io.h"

#define INBUF (1 << 16)

struct rn_in {
  int fd;
  char *path;
  bool gz;
  bool zinit;
  bool zend;          /* gzip: the last member ended and no more input */
  z_stream zs;
  unsigned char *inbuf;
  uint64_t file_size;
  uint64_t in_pos;    /* compressed bytes consumed from the file */
  uint64_t out_total; /* content bytes produced */
  uint64_t cap;
};

static void *in_fail(rn_in *in) {
  rn_in_close(in);
  return NULL;
}

static uint64_t io_limit = RN_IO_DEFAULT_LIMIT;
uint64_t rn_io_limit(void) { return io_limit; }
void rn_io_set_limit(uint64_t bytes) { io_limit = bytes; }

int rn_io_check_limit(uint64_t bytes, const char *file, const char *what) {
  if (bytes <= io_limit) return 0;
  return rn_err("%s: %s claims %llu bytes, more than the %llu-byte limit on what a file may "
                "claim; if the data really is that big, raise it with rn.io_limit(bytes)",
                file, what, (unsigned long long)bytes, (unsigned long long)io_limit);
}

int rn_open_regular(const char *path, uint64_t *size) {
  /* O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return rn_err("file %s: cannot open: %s", path, strerror(errno));
  struct stat st;
  const char *bad = NULL;
  if (fstat(fd, &st) < 0) {
    rn_err("file %s: cannot stat: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (S_ISDIR(st.st_mode)) bad = "is a folder, not a file";
  else if (S_ISFIFO(st.st_mode)) bad = "is a FIFO (named pipe); only regular files are read";
  else if (S_ISSOCK(st.st_mode)) bad = "is a socket; only regular files are read";
  else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
    bad = "is a device; only regular files are read";
  else if (!S_ISREG(st.st_mode)) bad = "is not a regular file";
  int fl = bad ? 0 : fcntl(fd, F_GETFL);
  if (!bad && (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)) bad = "cannot be set to blocking reads";
  if (bad) {
    rn_err("file %s: %s", path, bad);
    close(fd);
    return -1;
  }
  *size = (uint64_t)st.st_size;
  return fd;
}

rn_in *rn_in_open(const char *path) {
  rn_in *in = calloc(1, sizeof *in);
  if (!in) { rn_err("file %s: out of memory opening it", path); return NULL; }
  in->fd = -1;
  in->path = strdup(path);
  if (!in->path) { rn_err("file %s: out of memory opening it", path); return in_fail(in); }
  in->fd = rn_open_regular(path, &in->file_size);
  if (in->fd < 0) return in_fail(in);
  unsigned char magic[2];
  ssize_t r = pread(in->fd, magic, 2, 0);
  in->gz = r == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  if (in->gz) {
    in->inbuf = malloc(INBUF);
    if (!in->inbuf) { rn_err("file %s: out of memory", path); return in_fail(in); }
    if (inflateInit2(&in->zs, 15 + 16) != Z_OK) {
      rn_err("file %s: cannot start zlib", path);
      return in_fail(in);
    }
    in->zinit = true;
  }
  return in;
}

void rn_in_close(rn_in *in) {
  if (!in) return;
  if (in->zinit) inflateEnd(&in->zs);
  if (in->fd >= 0) close(in->fd);
  free(in->inbuf);
  free(in->path);
  free(in);
}

bool rn_in_is_gz(const rn_in *in) { return in->gz; }
uint64_t rn_in_file_size(const rn_in *in) { return in->file_size; }
uint64_t rn_in_pos(const rn_in *in) { return in->out_total; }
const char *rn_in_path(const rn_in *in) { return in->path; }
void rn_in_set_cap(rn_in *in, uint64_t cap) { in->cap = cap; }

uint64_t rn_in_max_content(const rn_in *in) {
  if (!in->gz) return in->file_size;
  if (in->file_size > UINT64_MAX / 1100) return UINT64_MAX;
  return in->file_size * 1032 + 4096;
}

/* Refills the zlib input; returns bytes now available (0 at end of file). */
static int refill(rn_in *in) {
  if (in->zs.avail_in) return 1;
  ssize_t r;
  do r = read(in->fd, in->inbuf, INBUF); while (r < 0 && errno == EINTR);
  if (r < 0) return rn_err("file %s: read error: %s", in->path, strerror(errno));
  in->zs.next_in = in->inbuf;
  in->zs.avail_in = (uInt)r;
  in->in_pos += (uint64_t)r;
  return r > 0;
}

/* Plain read of up to n bytes. */
static int plain_read(rn_in *in, unsigned char *buf, size_t n, size_t *got) {
  size_t k = 0;
  while (k < n) {
    ssize_t r = read(in->fd, buf + k, n - k);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return rn_err("file %s: read error: %s", in->path, strerror(errno));
    if (r == 0) break;
    k += (size_t)r;
  }
  *got = k;
  return 0;
}

/* gzip read of up to n bytes (n fits in uInt). */
static int gz_read(rn_in *in, unsigned char *buf, size_t n, size_t *got) {
  size_t k = 0;
  while (k < n && !in->zend) {
    int more = refill(in);
    if (more < 0) return -1;
    if (!more) {
      return rn_err("file %s: gzip data truncated (the file ends after %llu bytes, before the "
                    "end of its compressed stream)", in->path, (unsigned long long)in->file_size);
    }
    in->zs.next_out = buf + k;
    in->zs.avail_out = (uInt)(n - k);
    int rc = inflate(&in->zs, Z_NO_FLUSH);
    k = n - in->zs.avail_out;
    if (rc == Z_STREAM_END) {
      /* another gzip member may follow; anything else is garbage */
      if (refill(in) < 0) return -1;
      if (in->zs.avail_in == 0) { in->zend = true; break; }
      if (in->zs.next_in[0] != 0x1f) {
        return rn_err("file %s: trailing garbage after the gzip data (at byte %llu of the file)",
                      in->path, (unsigned long long)(in->in_pos - in->zs.avail_in));
      }
      if (inflateReset(&in->zs) != Z_OK) return rn_err("file %s: zlib reset failed", in->path);
    } else if (rc == Z_BUF_ERROR) {
      continue; /* needs input: refill */
    } else if (rc != Z_OK) {
      return rn_err("file %s: corrupt gzip data (zlib: %s)", in->path,
                    in->zs.msg ? in->zs.msg : "error");
    }
  }
  *got = k;
  return 0;
}

int rn_in_read(rn_in *in, void *buf, size_t n, size_t *got) {
  *got = 0;
  unsigned char *p = buf;
  while (n > 0) {
    size_t want = n > (1u << 30) ? (1u << 30) : n, g = 0;
    if (in->cap && in->out_total + want > in->cap) {
      /* read up to the cap, then probe for one byte more */
      uint64_t room = in->cap - in->out_total;
      if (room < want) {
        if (room > 0) {
          int rc = in->gz ? gz_read(in, p, (size_t)room, &g) : plain_read(in, p, (size_t)room, &g);
          if (rc < 0) return -1;
          in->out_total += g;
          *got += g;
          if (g < room) return 0;
          p += g;
          n -= g;
        }
        unsigned char extra;
        int rc = in->gz ? gz_read(in, &extra, 1, &g) : plain_read(in, &extra, 1, &g);
        if (rc < 0) return -1;
        if (g == 0) return 0;
        if (in->gz)
          return rn_err("file %s: decompresses past %llu bytes", in->path,
                        (unsigned long long)in->cap);
        return rn_err("file %s: is larger than %llu bytes", in->path, (unsigned long long)in->cap);
      }
    }
    int rc = in->gz ? gz_read(in, p, want, &g) : plain_read(in, p, want, &g);
    if (rc < 0) return -1;
    in->out_total += g;
    *got += g;
    p += g;
    n -= g;
    if (g < want) break;
  }
  return 0;
}

int rn_in_skip(rn_in *in, uint64_t n, uint64_t *got) {
  unsigned char buf[16384];
  *got = 0;
  while (*got < n) {
    size_t want = n - *got > sizeof buf ? sizeof buf : (size_t)(n - *got), g;
    if (rn_in_read(in, buf, want, &g) < 0) return -1;
    *got += g;
    if (g < want) return 1;
  }
  return 0;
}
