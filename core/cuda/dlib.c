/* dlib.c (cuda) - finds and opens NVIDIA libraries (cuBLAS, cuDNN) at run
 * time with dlopen, so that rnlua links neither and runs wherever the
 * driver is, finding the libraries in the loader path, the CUDA toolkit, or
 * the nvidia/<package>/lib dirs of PyTorch's Python wheels.
 *
 * Search order for each wanted name (most wanted first, e.g.
 * libcublas.so.13, libcublas.so.12, libcublas.so):
 *   1. dlopen(name): LD_LIBRARY_PATH, the ld.so cache, the default dirs;
 *   2. each dir of $RN_CUDA_LIB_PATH (colon-separated);
 *   3. $CUDA_HOME/lib64, $CUDA_HOME/lib, /usr/local/cuda/lib64, /usr/local/cuda/lib;
 *   4. <site>/nvidia/(any)/lib for each Python site dir matching
 *      /usr/lib/python3*\/dist-packages, /usr/local/lib/python3*\/dist-packages,
 *      /usr/local/lib/python3*\/site-packages, ~/.local/lib/python3*\/site-packages,
 *      $VIRTUAL_ENV/lib/python3*\/site-packages, /opt/(any)/.venv/lib/python3*\/site-packages,
 *      /opt/conda/lib/python3*\/site-packages.
 * Names are tried in order across all places, so a .so.13 anywhere wins
 * over a .so.12 in the loader path.
 */
#include <dlfcn.h>
#include <glob.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda.h"

#define MAXDIRS 64
#define MAXDEPS 8

typedef struct {
  char *dir[MAXDIRS];
  int n;
} dirlist;

static void add_dir(dirlist *l, const char *d) {
  if (!d || !*d || l->n >= MAXDIRS) return;
  for (int i = 0; i < l->n; i++)
    if (strcmp(l->dir[i], d) == 0) return;
  char *c = strdup(d);
  if (c) l->dir[l->n++] = c;
}

static void add_glob(dirlist *l, const char *pattern) {
  glob_t g;
  if (glob(pattern, GLOB_ONLYDIR, NULL, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; i++) add_dir(l, g.gl_pathv[i]);
  globfree(&g);
}

static void add_site(dirlist *l, const char *prefix, const char *site) {
  char pat[1024];
  if (!prefix || !*prefix) return;
  snprintf(pat, sizeof pat, "%s/%s/nvidia/*/lib", prefix, site);
  add_glob(l, pat);
}

static void build_dirs(dirlist *l) {
  const char *env = getenv("RN_CUDA_LIB_PATH");
  if (env && *env) {
    char *copy = strdup(env), *save = NULL;
    for (char *tok = copy ? strtok_r(copy, ":", &save) : NULL; tok;
         tok = strtok_r(NULL, ":", &save))
      add_dir(l, tok);
    free(copy);
  }
  char buf[1024];
  const char *ch = getenv("CUDA_HOME");
  if (ch && *ch) {
    snprintf(buf, sizeof buf, "%s/lib64", ch);
    add_dir(l, buf);
    snprintf(buf, sizeof buf, "%s/lib", ch);
    add_dir(l, buf);
  }
  add_dir(l, "/usr/local/cuda/lib64");
  add_dir(l, "/usr/local/cuda/lib");
  add_site(l, "/usr/lib", "python3*/dist-packages");
  add_site(l, "/usr/local/lib", "python3*/dist-packages");
  add_site(l, "/usr/local/lib", "python3*/site-packages");
  const char *home = getenv("HOME");
  if (home && *home) {
    snprintf(buf, sizeof buf, "%s/.local/lib", home);
    add_site(l, buf, "python3*/site-packages");
  }
  const char *venv = getenv("VIRTUAL_ENV");
  if (venv && *venv) {
    snprintf(buf, sizeof buf, "%s/lib", venv);
    add_site(l, buf, "python3*/site-packages");
  }
  add_site(l, "/opt", "*/.venv/lib/python3*/site-packages");
  add_site(l, "/opt/conda/lib", "python3*/site-packages");
}

static void free_dirs(dirlist *l) {
  for (int i = 0; i < l->n; i++) free(l->dir[i]);
  l->n = 0;
}

/* snprintf(dst, n, "%s", src) without the truncation warning */
static void copy_str(char *dst, size_t n, const char *src) {
  if (!n) return;
  size_t k = strlen(src);
  if (k >= n) k = n - 1;
  memcpy(dst, src, k);
  dst[k] = 0;
}

static void record_path(void *h, const char *fallback, char *out, size_t n) {
  if (!out || !n) return;
  struct link_map *lm = NULL;
  const char *p = fallback;
  if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && *lm->l_name) p = lm->l_name;
  copy_str(out, n, p);
}

/* Opens dir/name after preloading its deps from dir; NULL if it failed (the
 * reason goes to err). Preloaded deps are closed again on failure. */
static void *open_in(const char *dir, const char *name, const char *const *deps, char *err,
                     size_t errn) {
  char path[1400];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (access(path, R_OK) != 0) return NULL;
  void *dh[MAXDEPS];
  int nd = 0;
  const char *suffix = strstr(name, ".so"); /* ".so.13" of libcublas.so.13 */
  for (int i = 0; deps && deps[i] && suffix && nd < MAXDEPS; i++) {
    char dp[1600];
    snprintf(dp, sizeof dp, "%s/%s%s", dir, deps[i], suffix);
    if (access(dp, R_OK) != 0) continue;
    void *h = dlopen(dp, RTLD_NOW | RTLD_GLOBAL);
    if (h) dh[nd++] = h;
  }
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    copy_str(err, errn, e ? e : path);
    while (nd > 0) dlclose(dh[--nd]);
  }
  /* on success the deps stay loaded for the library's lifetime (never closed) */
  return h;
}

void *rn_dlib_open(const char *what, const char *const *names, const char *const *deps,
                   char *path_out, size_t path_n) {
  char err[512] = "not found";
  dirlist dirs = {.n = 0};
  int built = 0;
  void *h = NULL;
  for (int i = 0; names[i] && !h; i++) {
    h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (h) {
      record_path(h, names[i], path_out, path_n);
      break;
    }
    const char *e = dlerror();
    if (e && !strstr(e, "No such file")) copy_str(err, sizeof err, e);
    if (!built) {
      build_dirs(&dirs);
      built = 1;
    }
    for (int d = 0; d < dirs.n && !h; d++) {
      h = open_in(dirs.dir[d], names[i], deps, err, sizeof err);
      if (h) record_path(h, dirs.dir[d], path_out, path_n);
    }
  }
  free_dirs(&dirs);
  if (h) return h;
  char tried[256] = "";
  size_t k = 0;
  for (int i = 0; names[i] && k < sizeof tried; i++)
    k += (size_t)snprintf(tried + k, sizeof tried - k, "%s%s", i ? ", " : "", names[i]);
  rn_err("cuda: %s library not found: tried %s in the loader path, $RN_CUDA_LIB_PATH, "
         "$CUDA_HOME/lib64, /usr/local/cuda/lib64 and the nvidia/*/lib dirs of Python "
         "site-packages (last error: %s); add its dir to LD_LIBRARY_PATH or RN_CUDA_LIB_PATH",
         what, tried, err);
  return NULL;
}

void *rn_dlib_sym(void *lib, const char *what, const char *sym) {
  dlerror();
  void *p = dlsym(lib, sym);
  if (!p) {
    const char *e = dlerror();
    rn_err("cuda: %s has no symbol %s (%s)", what, sym, e ? e : "null");
  }
  return p;
}
