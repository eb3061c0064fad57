/* cifar.c - the CIFAR-10 binary reader: records of 1 label byte + 3072 pixel
 * bytes (R, G, B planes of 32x32, row-major) turned into NHWC uint8 images
 * (N,32,32,3) and uint8 labels (N). Sources: the cifar-10-binary.tar.gz
 * archive (streamed; only the named members are read, nothing is extracted),
 * the extracted folder (or its parent), or a single .bin batch file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"

#define NPIX 3072
#define MAX_BATCHES 5
#define TAR_CAP ((uint64_t)1 << 31) /* decompressed archive bytes read at most */

static const char *const train_names[] = {"data_batch_1.bin", "data_batch_2.bin",
                                          "data_batch_3.bin", "data_batch_4.bin",
                                          "data_batch_5.bin"};
static const char *const test_names[] = {"test_batch.bin"};

/* Checks labels and turns nrec raw records into NHWC images and labels. */
static int decode(const unsigned char *raw, int64_t nrec, int64_t first, unsigned char *img,
                  unsigned char *lab, const char *file) {
  for (int64_t r = 0; r < nrec; r++) {
    const unsigned char *rec = raw + r * RN_CIFAR_RECORD;
    if (rec[0] > 9)
      return rn_err("%s: label %d at record %lld outside 0..9", file, rec[0],
                    (long long)(first + r + 1));
    lab[r] = rec[0];
    unsigned char *o = img + r * NPIX;
    const unsigned char *R = rec + 1, *G = R + 1024, *B = G + 1024;
    for (int p = 0; p < 1024; p++) {
      o[3 * p] = R[p];
      o[3 * p + 1] = G[p];
      o[3 * p + 2] = B[p];
    }
  }
  return 0;
}

static int check_size(uint64_t size, const char *file, const char *how) {
  if (size > RN_CIFAR_MAX_FILE)
    return rn_err("%s: %s %llu bytes, more than the %llu-byte limit for one CIFAR-10 batch", file,
                  how, (unsigned long long)size, (unsigned long long)RN_CIFAR_MAX_FILE);
  if (size % RN_CIFAR_RECORD)
    return rn_err("%s: %s %llu bytes, not a whole number of 3073-byte records (%llu records and "
                  "%llu bytes of a partial one)", file, how, (unsigned long long)size,
                  (unsigned long long)(size / RN_CIFAR_RECORD),
                  (unsigned long long)(size % RN_CIFAR_RECORD));
  return 0;
}

static int alloc_out(int64_t n, rn_tensor **images, rn_tensor **labels) {
  int64_t s4[4] = {n, 32, 32, 3}, s1[1] = {n};
  *images = rn_empty(4, s4, RN_U8, RN_CPU);
  *labels = *images ? rn_empty(1, s1, RN_U8, RN_CPU) : NULL;
  if (!*labels) { rn_release(*images); *images = NULL; return -1; }
  return 0;
}

/* ---- from files ----------------------------------------------------------- */

static int read_files(int nf, char **files, rn_tensor **images, rn_tensor **labels) {
  uint64_t sizes[MAX_BATCHES];
  int64_t total = 0;
  for (int i = 0; i < nf; i++) {
    struct stat st;
    if (stat(files[i], &st) < 0) return rn_err("%s: cannot open: %s", files[i], strerror(errno));
    if (!S_ISREG(st.st_mode)) return rn_err("%s: is not a regular file", files[i]);
    sizes[i] = (uint64_t)st.st_size;
    if (check_size(sizes[i], files[i], "has") < 0) return -1;
    total += (int64_t)(sizes[i] / RN_CIFAR_RECORD);
  }
  if (alloc_out(total, images, labels) < 0) return -1;
  unsigned char *buf = malloc((size_t)RN_CIFAR_RECORD * 256);
  if (!buf) { rn_err("out of memory reading CIFAR-10"); goto fail; }
  int64_t at = 0;
  for (int i = 0; i < nf; i++) {
    rn_in *in = rn_in_open(files[i]);
    if (!in) goto fail;
    if (rn_in_is_gz(in)) {
      rn_in_close(in);
      rn_err("%s: is gzip-compressed; expected a raw CIFAR-10 .bin batch", files[i]);
      goto fail;
    }
    rn_in_set_cap(in, sizes[i]);
    int64_t nrec = (int64_t)(sizes[i] / RN_CIFAR_RECORD);
    for (int64_t r = 0; r < nrec;) {
      int64_t k = nrec - r < 256 ? nrec - r : 256;
      size_t want = (size_t)k * RN_CIFAR_RECORD, got;
      if (rn_in_read(in, buf, want, &got) < 0) { rn_in_close(in); goto fail; }
      if (got < want) {
        rn_err("%s: truncated while reading (the file shrank to %llu bytes)", files[i],
               (unsigned long long)(rn_in_pos(in)));
        rn_in_close(in);
        goto fail;
      }
      if (decode(buf, k, r, (unsigned char *)rn_ptr(*images) + (at + r) * NPIX,
                 (unsigned char *)rn_ptr(*labels) + at + r, files[i]) < 0) {
        rn_in_close(in);
        goto fail;
      }
      r += k;
    }
    unsigned char extra;
    size_t got;
    int rc = rn_in_read(in, &extra, 1, &got); /* grown since stat: the cap says so */
    rn_in_close(in);
    if (rc < 0) goto fail;
    at += nrec;
  }
  free(buf);
  return 0;
fail:
  free(buf);
  rn_release(*images);
  rn_release(*labels);
  *images = *labels = NULL;
  return -1;
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static int read_folder(const char *path, int nf, const char *const *names, rn_tensor **images,
                       rn_tensor **labels) {
  char *files[MAX_BATCHES] = {0};
  size_t n = strlen(path) + 64;
  char *sub = malloc(n);
  int rc = -1;
  if (!sub) return rn_err("out of memory");
  snprintf(sub, n, "%s/cifar-10-batches-bin", path);
  const char *dir = is_dir(sub) ? sub : path;
  for (int i = 0; i < nf; i++) {
    files[i] = malloc(strlen(dir) + 32);
    if (!files[i]) { rn_err("out of memory"); goto done; }
    sprintf(files[i], "%s/%s", dir, names[i]);
    if (!exists(files[i])) {
      rn_err("%s: no CIFAR-10 batch %s here (looked in %s%s%s)", path, names[i], dir,
             dir == sub ? "" : " and ", dir == sub ? "" : sub);
      goto done;
    }
  }
  rc = read_files(nf, files, images, labels);
done:
  for (int i = 0; i < nf; i++) free(files[i]);
  free(sub);
  return rc;
}

/* ---- from a .tar.gz -------------------------------------------------------- */

static int read_tar(const char *path, int nf, const char *const *names, rn_tensor **images,
                    rn_tensor **labels) {
  unsigned char *raw[MAX_BATCHES] = {0};
  uint64_t size[MAX_BATCHES] = {0};
  int found = 0, rc = -1;
  rn_in *in = rn_in_open(path);
  if (!in) return -1;
  rn_tar *t = rn_tar_open(in);
  if (!t) goto done;
  rn_in_set_cap(in, TAR_CAP);
  rn_tar_member m;
  while (found < nf) {
    int r = rn_tar_next(t, &m);
    if (r < 0) goto done;
    if (r == 0) break;
    const char *base = rn_path_base(m.path);
    int w = -1;
    for (int i = 0; i < nf; i++)
      if (strcmp(base, names[i]) == 0) w = i;
    if (w < 0) continue; /* not wanted: skipped unread */
    if (rn_path_unsafe(m.path)) {
      rn_err("archive %s: member '%s' has an unsafe path (absolute or with a '..' component); "
             "refusing it", path, m.path);
      goto done;
    }
    if (m.type != '0' && m.type != '7') {
      rn_err("archive %s: member '%s' is not a regular file (tar type '%c')", path, m.path,
             m.type);
      goto done;
    }
    if (raw[w]) {
      rn_err("archive %s: member %s appears twice (again as '%s')", path, names[w], m.path);
      goto done;
    }
    char label[4200];
    snprintf(label, sizeof label, "%s:%s", path, m.path);
    if (check_size(m.size, label, "is") < 0) goto done;
    if (m.size > rn_in_max_content(in)) {
      rn_err("archive %s: member '%s' claims %llu bytes, more than the archive can hold", path,
             m.path, (unsigned long long)m.size);
      goto done;
    }
    raw[w] = malloc(m.size ? (size_t)m.size : 1);
    if (!raw[w]) { rn_err("%s: out of memory (%llu bytes)", label, (unsigned long long)m.size); goto done; }
    size[w] = m.size;
    if (rn_tar_read(t, raw[w], (size_t)m.size) < 0) goto done;
    for (uint64_t r = 0; r < m.size / RN_CIFAR_RECORD; r++)
      if (raw[w][r * RN_CIFAR_RECORD] > 9) {
        rn_err("%s: label %d at record %llu outside 0..9", label, raw[w][r * RN_CIFAR_RECORD],
               (unsigned long long)r + 1);
        goto done;
      }
    found++;
  }
  if (found < nf) {
    char missing[256] = "";
    for (int i = 0; i < nf; i++)
      if (!raw[i]) {
        strncat(missing, " ", sizeof missing - strlen(missing) - 1);
        strncat(missing, names[i], sizeof missing - strlen(missing) - 1);
      }
    rn_err("archive %s: no member named%s (CIFAR-10 binary archives hold "
           "cifar-10-batches-bin/data_batch_1..5.bin and test_batch.bin)", path, missing);
    goto done;
  }
  /* read on to the end: every member header and the gzip trailer (CRC32 and
   * length) are verified even when the wanted members came first */
  for (int r; (r = rn_tar_next(t, &m)) != 0;)
    if (r < 0) goto done;
  uint64_t got;
  if (rn_in_skip(in, UINT64_MAX, &got) < 0) goto done;
  int64_t total = 0;
  for (int i = 0; i < nf; i++) total += (int64_t)(size[i] / RN_CIFAR_RECORD);
  if (alloc_out(total, images, labels) < 0) goto done;
  int64_t at = 0;
  for (int i = 0; i < nf; i++) {
    int64_t k = (int64_t)(size[i] / RN_CIFAR_RECORD);
    decode(raw[i], k, 0, (unsigned char *)rn_ptr(*images) + at * NPIX,
           (unsigned char *)rn_ptr(*labels) + at, path); /* labels checked above */
    free(raw[i]);
    raw[i] = NULL;
    at += k;
  }
  rc = 0;
done:
  for (int i = 0; i < nf; i++) free(raw[i]);
  rn_tar_close(t);
  rn_in_close(in);
  return rc;
}

int rn_read_cifar10(const char *path, bool train, rn_tensor **images, rn_tensor **labels) {
  *images = *labels = NULL;
  int nf = train ? 5 : 1;
  const char *const *names = train ? train_names : test_names;
  struct stat st;
  if (stat(path, &st) < 0) return rn_err("%s: cannot open: %s", path, strerror(errno));
  if (S_ISDIR(st.st_mode)) return read_folder(path, nf, names, images, labels);
  size_t n = strlen(path);
  if (n > 4 && strcmp(path + n - 4, ".bin") == 0) {
    char *one[1] = {(char *)path};
    return read_files(1, one, images, labels);
  }
  return read_tar(path, nf, names, images, labels);
}
