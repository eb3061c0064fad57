/* fuzz_util.h - shared by the libFuzzer targets in tests/fuzz/: the readers
 * take paths, so each input is written to a file in a private temp folder
 * (made once per process, removed at exit) before the reader is called. */
#ifndef RN_FUZZ_UTIL_H
#define RN_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_dir[64];
static char fz_paths[4][128];
static int fz_npaths;

static void fz_cleanup(void) {
  for (int i = 0; i < fz_npaths; i++) unlink(fz_paths[i]);
  if (fz_dir[0]) rmdir(fz_dir);
}

/* The path of file `name` in the temp folder, created on first use. */
static const char *fz_path(const char *name) {
  if (!fz_dir[0]) {
    const char *tmp = getenv("TMPDIR");
    snprintf(fz_dir, sizeof fz_dir, "%s/rnfuzz.XXXXXX", tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(fz_dir)) { perror("mkdtemp"); fz_dir[0] = 0; return NULL; }
    atexit(fz_cleanup);
  }
  for (int i = 0; i < fz_npaths; i++)
    if (strcmp(strrchr(fz_paths[i], '/') + 1, name) == 0) return fz_paths[i];
  if (fz_npaths == 4) return NULL;
  snprintf(fz_paths[fz_npaths], sizeof fz_paths[0], "%s/%s", fz_dir, name);
  return fz_paths[fz_npaths++];
}

/* Writes data to temp file `name`; returns its path or NULL. */
static const char *fz_write(const char *name, const uint8_t *data, size_t size) {
  const char *p = fz_path(name);
  if (!p) return NULL;
  FILE *f = fopen(p, "wb");
  if (!f) return NULL;
  size_t w = size ? fwrite(data, 1, size, f) : 0;
  if (fclose(f) != 0 || w != size) return NULL;
  return p;
}

#endif
