/* atomic.c - atomic replacement of a file: write "<path>.tmp.<pid>" in the
 * target's folder, fsync it, rename it over the target, fsync the folder. A
 * crash at any point leaves the old file or the new one whole; a failure
 * removes the temp file and leaves the old target untouched.
 *
 * A process killed while saving leaves its temp file behind; the next save
 * of the same path removes such leftovers: "<path>.tmp.<pid>" files whose
 * process no longer exists on this machine and that were last written more
 * than RN_ATOMIC_STALE_SECONDS (default 60) ago, so that a writer on another
 * machine sharing the folder is not disturbed mid-write. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

static void atomic_free(rn_atomic *a) {
  free(a->path);
  free(a->tmp);
  a->path = a->tmp = NULL;
  a->fd = -1;
}

/* Removes stale "<base>.tmp.<pid>" files beside path (see the header);
 * best effort, errors ignored. */
static void remove_stale_temps(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
  if (!dir) return;
  const char *e = getenv("RN_ATOMIC_STALE_SECONDS");
  long stale = e ? atol(e) : 60;
  size_t bl = strlen(base);
  DIR *d = opendir(dir);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    const char *n = de->d_name;
    if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0) continue;
    char *end;
    long pid = strtol(n + bl + 5, &end, 10);
    if (*end || pid <= 0 || pid == (long)getpid()) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
    char *full = malloc(strlen(dir) + strlen(n) + 2);
    if (!full) break;
    sprintf(full, "%s/%s", dir, n);
    struct stat st;
    if (lstat(full, &st) == 0 && S_ISREG(st.st_mode) && time(NULL) - st.st_mtime >= stale)
      unlink(full);
    free(full);
  }
  if (d) closedir(d);
  free(dir);
}

int rn_atomic_begin(rn_atomic *a, const char *path) {
  a->fd = -1;
  a->path = strdup(path);
  size_t n = strlen(path) + 48;
  a->tmp = malloc(n);
  if (!a->path || !a->tmp) {
    atomic_free(a);
    return rn_err("file %s: out of memory", path);
  }
  snprintf(a->tmp, n, "%s.tmp.%ld", path, (long)getpid());
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    atomic_free(a);
    return rn_err("file %s: is a folder; cannot save over it", path);
  }
  remove_stale_temps(path);
  a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (a->fd < 0) {
    int e = errno;
    rn_err("file %s: cannot create the temp file %s: %s", path, a->tmp, strerror(e));
    atomic_free(a);
    return -1;
  }
  return 0;
}

int rn_atomic_pwrite(rn_atomic *a, const void *buf, size_t n, uint64_t off) {
  size_t k = 0;
  while (k < n) {
    ssize_t r = pwrite(a->fd, (const char *)buf + k, n - k, (off_t)(off + k));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return rn_err("file %s: write failed: %s (the previous file, if any, is kept)", a->path,
                    r < 0 ? strerror(errno) : "no progress");
    k += (size_t)r;
  }
  return 0;
}

int rn_atomic_write(rn_atomic *a, const void *buf, size_t n) {
  off_t off = lseek(a->fd, 0, SEEK_CUR);
  if (off < 0) return rn_err("file %s: seek failed: %s", a->path, strerror(errno));
  if (rn_atomic_pwrite(a, buf, n, (uint64_t)off) < 0) return -1;
  if (lseek(a->fd, off + (off_t)n, SEEK_SET) < 0)
    return rn_err("file %s: seek failed: %s", a->path, strerror(errno));
  return 0;
}

void rn_atomic_abort(rn_atomic *a) {
  if (a->fd >= 0) close(a->fd);
  if (a->tmp) unlink(a->tmp);
  atomic_free(a);
}

/* The folder holding path ("." when it has no slash). */
static int fsync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
  if (!dir) return rn_err("out of memory");
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rc = 0;
  if (fd < 0 || fsync(fd) < 0)
    rc = rn_err("file %s: saved, but syncing its folder %s failed: %s", path, dir, strerror(errno));
  if (fd >= 0) close(fd);
  free(dir);
  return rc;
}

int rn_atomic_commit(rn_atomic *a) {
  if (fsync(a->fd) < 0) {
    rn_err("file %s: fsync failed: %s (the previous file, if any, is kept)", a->path,
           strerror(errno));
    rn_atomic_abort(a);
    return -1;
  }
  int rc = close(a->fd);
  a->fd = -1;
  if (rc < 0) {
    rn_err("file %s: close failed: %s (the previous file, if any, is kept)", a->path,
           strerror(errno));
    rn_atomic_abort(a);
    return -1;
  }
  if (rename(a->tmp, a->path) < 0) {
    rn_err("file %s: cannot rename %s over it: %s (the previous file, if any, is kept)", a->path,
           a->tmp, strerror(errno));
    rn_atomic_abort(a);
    return -1;
  }
  rc = fsync_dir(a->path);
  atomic_free(a);
  return rc;
}
