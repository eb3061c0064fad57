/* safetensors.c - export and import of the safetensors format: an 8-byte
 * little-endian header length, a JSON header {"name": {"dtype", "shape",
 * "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the raw
 * little-endian tensor bytes. Import validates as the safetensors crate does
 * (header bound, well-formed JSON, dtype sizes, offsets contiguous, covering
 * the data exactly) plus duplicate names; export is atomic. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

static const struct { const char *name; rn_dtype dt; } st_dtypes[] = {
    {"F32", RN_F32}, {"F64", RN_F64}, {"U8", RN_U8}, {"I32", RN_I32},
    {"I64", RN_I64}, {"BF16", RN_BF16}, {"F16", RN_F16},
};
#define NST ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))
/* the format's other dtypes: known, but not tensors rnlua holds */
static const char *const st_other[] = {"BOOL", "I8", "I16", "U16", "U32", "U64", "F8_E4M3",
                                       "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2",
                                       "C64", NULL};

static const char *st_name(rn_dtype dt) {
  for (int i = 0; i < NST; i++)
    if (st_dtypes[i].dt == dt) return st_dtypes[i].name;
  return NULL;
}

/* ---- save ------------------------------------------------------------------ */

typedef struct { char *p; size_t n, cap; bool oom; } sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t nc = (b->cap ? b->cap * 2 : 1024);
    while (nc < b->n + n + 1) nc *= 2;
    char *q = realloc(b->p, nc);
    if (!q) { b->oom = true; return; }
    b->p = q;
    b->cap = nc;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }
static void sb_fmt(sbuf *b, const char *fmt, unsigned long long v) {
  char t[32];
  int k = snprintf(t, sizeof t, fmt, v);
  sb_add(b, t, (size_t)k);
}
static void sb_json(sbuf *b, const char *s) {
  sb_add(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') {
      char e[2] = {'\\', (char)*c};
      sb_add(b, e, 2);
    } else if (*c < 0x20) {
      char e[8];
      snprintf(e, sizeof e, "\\u%04x", *c);
      sb_add(b, e, 6);
    } else {
      sb_add(b, (const char *)c, 1);
    }
  }
  sb_add(b, "\"", 1);
}

typedef struct { const char *name; int idx; } sname;
static int cmp_sname(const void *a, const void *b) {
  return strcmp(((const sname *)a)->name, ((const sname *)b)->name);
}

int rn_st_save(const char *path, int n, const char *const *names, rn_tensor *const *ts,
               int nmeta, const char *const *mkeys, const char *const *mvals) {
  for (int i = 0; i < n; i++) {
    size_t len = strlen(names[i]);
    if (len == 0 || !rn_utf8_valid(names[i], len) || strcmp(names[i], "__metadata__") == 0)
      return rn_err("%s: tensor name '%.40s' must be non-empty UTF-8 and not __metadata__", path,
                    names[i]);
    if (!st_name(ts[i]->dtype))
      return rn_err("%s: tensor '%s': dtype %s has no safetensors name", path, names[i],
                    rn_dtype_name(ts[i]->dtype));
  }
  for (int i = 0; i < nmeta; i++)
    if (!rn_utf8_valid(mkeys[i], strlen(mkeys[i])) || !rn_utf8_valid(mvals[i], strlen(mvals[i])))
      return rn_err("%s: metadata '%.40s' is not valid UTF-8", path, mkeys[i]);
  sname *order = malloc(sizeof *order * (size_t)(n ? n : 1));
  if (!order) return rn_err("%s: out of memory", path);
  for (int i = 0; i < n; i++) { order[i].name = names[i]; order[i].idx = i; }
  qsort(order, (size_t)n, sizeof *order, cmp_sname);
  for (int i = 1; i < n; i++)
    if (strcmp(order[i].name, order[i - 1].name) == 0) {
      int rc = rn_err("%s: tensor name '%s' given twice", path, order[i].name);
      free(order);
      return rc;
    }
  /* header */
  sbuf b = {0};
  sb_str(&b, "{");
  if (nmeta > 0) {
    sb_str(&b, "\"__metadata__\":{");
    for (int i = 0; i < nmeta; i++) {
      if (i) sb_str(&b, ",");
      sb_json(&b, mkeys[i]);
      sb_str(&b, ":");
      sb_json(&b, mvals[i]);
    }
    sb_str(&b, "}");
  }
  uint64_t off = 0;
  for (int k = 0; k < n; k++) {
    const rn_tensor *t = ts[order[k].idx];
    if (k || nmeta > 0) sb_str(&b, ",");
    sb_json(&b, order[k].name);
    sb_str(&b, ":{\"dtype\":\"");
    sb_str(&b, st_name(t->dtype));
    sb_str(&b, "\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) sb_fmt(&b, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
    uint64_t nb = (uint64_t)rn_numel(t) * rn_dtype_size(t->dtype);
    sb_fmt(&b, "],\"data_offsets\":[%llu", off);
    sb_fmt(&b, ",%llu]}", off + nb);
    off += nb;
  }
  sb_str(&b, "}");
  while (b.n % 8) sb_str(&b, " "); /* data starts 8-aligned, as the crate writes */
  if (b.oom || b.n > RN_ST_MAX_HEADER) {
    free(b.p);
    free(order);
    return rn_err("%s: %s", path, b.oom ? "out of memory" : "header too large");
  }
  rn_atomic a;
  if (rn_atomic_begin(&a, path) < 0) { free(b.p); free(order); return -1; }
  unsigned char len8[8];
  rn_le_put64(len8, b.n);
  uint64_t pos = 8 + b.n;
  if (rn_atomic_pwrite(&a, len8, 8, 0) < 0 || rn_atomic_pwrite(&a, b.p, b.n, 8) < 0) goto fail;
  for (int k = 0; k < n; k++) {
    rn_tensor *h;
    if (rn_io_host_copies(1, &ts[order[k].idx], &h) < 0) goto fail;
    size_t nb = (size_t)rn_numel(h) * rn_dtype_size(h->dtype);
    int rc = rn_atomic_pwrite(&a, rn_ptr(h), nb, pos);
    rn_release(h);
    if (rc < 0) goto fail;
    pos += nb;
  }
  free(b.p);
  free(order);
  return rn_atomic_commit(&a);
fail:
  free(b.p);
  free(order);
  rn_atomic_abort(&a);
  return -1;
}

/* ---- load ------------------------------------------------------------------ */

typedef struct {
  const char *name;
  rn_dtype dt;
  int ndim;
  int64_t shape[RN_MAXDIM];
  uint64_t b, e;
} sinfo;

static int cmp_off(const void *a, const void *b) {
  const sinfo *x = *(const sinfo *const *)a, *y = *(const sinfo *const *)b;
  if (x->b != y->b) return x->b < y->b ? -1 : 1;
  return (x->e > y->e) - (x->e < y->e);
}

static int tensor_info(const char *path, const char *name, const rn_json *v, sinfo *si) {
  if (!name[0]) return rn_err("%s: a tensor has an empty name; names are 1..255 bytes", path);
  if (v->type != RN_J_OBJ) return rn_err("%s: tensor '%s': entry is not an object", path, name);
  for (int i = 0; i < v->n; i++)
    if (strcmp(v->keys[i], "dtype") && strcmp(v->keys[i], "shape") &&
        strcmp(v->keys[i], "data_offsets"))
      return rn_err("%s: tensor '%s': unknown field \"%.60s\"", path, name, v->keys[i]);
  const rn_json *dt = rn_json_get(v, "dtype"), *sh = rn_json_get(v, "shape"),
                *of = rn_json_get(v, "data_offsets");
  if (!dt || !sh || !of)
    return rn_err("%s: tensor '%s': missing field \"%s\"", path, name,
                  !dt ? "dtype" : !sh ? "shape" : "data_offsets");
  if (dt->type != RN_J_STR) return rn_err("%s: tensor '%s': dtype is not a string", path, name);
  int k = -1;
  for (int i = 0; i < NST; i++)
    if (strcmp(dt->str, st_dtypes[i].name) == 0) k = i;
  if (k < 0) {
    for (int i = 0; st_other[i]; i++)
      if (strcmp(dt->str, st_other[i]) == 0)
        return rn_err("%s: tensor '%s': dtype %s is not supported (rnlua reads F32, F64, U8, I32, "
                      "I64, BF16, F16)", path, name, dt->str);
    return rn_err("%s: tensor '%s': unknown dtype \"%.40s\"", path, name, dt->str);
  }
  si->dt = st_dtypes[k].dt;
  if (sh->type != RN_J_ARR) return rn_err("%s: tensor '%s': shape is not an array", path, name);
  if (sh->n > RN_MAXDIM)
    return rn_err("%s: tensor '%s': %d dims; at most %d", path, name, sh->n, RN_MAXDIM);
  si->ndim = sh->n;
  uint64_t numel = 1;
  for (int d = 0; d < sh->n; d++) {
    if (sh->kids[d]->type != RN_J_INT)
      return rn_err("%s: tensor '%s': shape entry %d is not an integer", path, name, d + 1);
    uint64_t s = sh->kids[d]->num;
    si->shape[d] = (int64_t)s;
    if (s && numel > (uint64_t)RN_MAX_NUMEL / s)
      return rn_err("%s: tensor '%s': shape has more than 2^40 elements", path, name);
    numel *= s;
  }
  char who[400];
  snprintf(who, sizeof who, "%s: tensor '%.255s'", path, name);
  if (rn_check_shape(si->ndim, si->shape, who) < 0) return -1; /* as rn_empty will check */
  if (rn_io_check_limit(numel * rn_dtype_size(si->dt), path, who + strlen(path) + 2) < 0)
    return -1;
  if (of->type != RN_J_ARR || of->n != 2 || of->kids[0]->type != RN_J_INT ||
      of->kids[1]->type != RN_J_INT)
    return rn_err("%s: tensor '%s': data_offsets must be [begin, end]", path, name);
  si->b = of->kids[0]->num;
  si->e = of->kids[1]->num;
  if (si->e < si->b)
    return rn_err("%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, name,
                  (unsigned long long)si->b, (unsigned long long)si->e);
  uint64_t need = numel * rn_dtype_size(si->dt);
  if (si->e - si->b != need) {
    char shp[200];
    rn_dims_str(si->ndim, si->shape, shp, sizeof shp);
    return rn_err("%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape %s of %s "
                  "needs %llu", path, name, (unsigned long long)si->b, (unsigned long long)si->e,
                  (unsigned long long)(si->e - si->b), shp, dt->str, (unsigned long long)need);
  }
  si->name = name;
  return 0;
}

int rn_st_load(const char *path, rn_tset *out) {
  memset(out, 0, sizeof *out);
  uint64_t fsz;
  int fd = rn_open_regular(path, &fsz);
  if (fd < 0) return -1;
  char *hdr = NULL;
  rn_json *j = NULL;
  sinfo *infos = NULL;
  sinfo **sorted = NULL;
  unsigned char len8[8];
  if (fsz < 8) {
    rn_err("%s: truncated: %llu bytes, shorter than the 8-byte header length", path,
           (unsigned long long)fsz);
    goto fail;
  }
  if (rn_pread_full(fd, len8, 8, 0, path) < 0) goto fail;
  uint64_t hn = rn_le_get64(len8);
  if (hn > RN_ST_MAX_HEADER) {
    rn_err("%s: header length %llu exceeds the %llu-byte limit (not a safetensors file?)", path,
           (unsigned long long)hn, (unsigned long long)RN_ST_MAX_HEADER);
    goto fail;
  }
  if (hn > fsz - 8) {
    rn_err("%s: truncated: header length %llu runs past the end of the file (%llu bytes)", path,
           (unsigned long long)hn, (unsigned long long)fsz);
    goto fail;
  }
  hdr = malloc((size_t)hn + 1);
  if (!hdr) { rn_err("%s: out of memory", path); goto fail; }
  if (rn_pread_full(fd, hdr, (size_t)hn, 8, path) < 0) goto fail;
  if (hn == 0 || hdr[0] != '{') {
    rn_err("%s: header does not start with '{' (not a safetensors file?)", path);
    goto fail;
  }
  j = rn_json_parse(hdr, (size_t)hn, path);
  if (!j) goto fail;
  uint64_t dlen = fsz - 8 - hn;
  int nt = 0;
  for (int i = 0; i < j->n; i++) nt += strcmp(j->keys[i], "__metadata__") != 0;
  infos = calloc((size_t)(nt ? nt : 1), sizeof *infos);
  sorted = calloc((size_t)(nt ? nt : 1), sizeof *sorted);
  if (!infos || !sorted) { rn_err("%s: out of memory", path); goto fail; }
  const rn_json *meta = NULL;
  for (int i = 0, k = 0; i < j->n; i++) {
    if (strcmp(j->keys[i], "__metadata__") == 0) {
      meta = j->kids[i];
      if (meta->type != RN_J_OBJ) { rn_err("%s: __metadata__ is not an object", path); goto fail; }
      for (int m = 0; m < meta->n; m++)
        if (meta->kids[m]->type != RN_J_STR) {
          rn_err("%s: __metadata__ value of \"%.60s\" is not a string", path, meta->keys[m]);
          goto fail;
        }
      continue;
    }
    if (tensor_info(path, j->keys[i], j->kids[i], &infos[k]) < 0) goto fail;
    sorted[k] = &infos[k];
    k++;
  }
  qsort(sorted, (size_t)nt, sizeof *sorted, cmp_off);
  uint64_t expect = 0;
  for (int k = 0; k < nt; k++) {
    if (sorted[k]->b != expect) {
      rn_err("%s: tensor '%s': data_offsets [%llu, %llu] %s (expected it to begin at %llu: tensors "
             "must cover the data without gaps or overlaps)", path, sorted[k]->name,
             (unsigned long long)sorted[k]->b, (unsigned long long)sorted[k]->e,
             sorted[k]->b < expect ? "overlap the previous tensor" : "leave a gap",
             (unsigned long long)expect);
      goto fail;
    }
    expect = sorted[k]->e;
    if (expect > dlen) {
      rn_err("%s: tensor '%s': data_offsets [%llu, %llu] run past the %llu data bytes of the file",
             path, sorted[k]->name, (unsigned long long)sorted[k]->b,
             (unsigned long long)sorted[k]->e, (unsigned long long)dlen);
      goto fail;
    }
  }
  if (expect != dlen) {
    rn_err("%s: %llu bytes of data after the last tensor (the tensors cover %llu of %llu)", path,
           (unsigned long long)(dlen - expect), (unsigned long long)expect,
           (unsigned long long)dlen);
    goto fail;
  }
  /* everything checked: allocate */
  out->names = calloc((size_t)(nt ? nt : 1), sizeof *out->names);
  out->ts = calloc((size_t)(nt ? nt : 1), sizeof *out->ts);
  if (!out->names || !out->ts) { rn_err("%s: out of memory", path); goto fail; }
  out->n = nt;
  int nm = meta ? meta->n : 0;
  out->mkeys = calloc((size_t)(nm ? nm : 1), sizeof *out->mkeys);
  out->mvals = calloc((size_t)(nm ? nm : 1), sizeof *out->mvals);
  if (!out->mkeys || !out->mvals) { rn_err("%s: out of memory", path); goto fail; }
  out->nmeta = nm;
  for (int m = 0; m < nm; m++) {
    out->mkeys[m] = strdup(meta->keys[m]);
    out->mvals[m] = strdup(meta->kids[m]->str);
    if (!out->mkeys[m] || !out->mvals[m]) { rn_err("%s: out of memory", path); goto fail; }
  }
  for (int k = 0; k < nt; k++) {
    out->names[k] = strdup(infos[k].name);
    if (!out->names[k]) { rn_err("%s: out of memory", path); goto fail; }
    out->ts[k] = rn_empty(infos[k].ndim, infos[k].shape, infos[k].dt, RN_CPU);
    if (!out->ts[k]) goto fail;
    if (rn_pread_full(fd, rn_ptr(out->ts[k]), (size_t)(infos[k].e - infos[k].b),
                      8 + hn + infos[k].b, path) < 0)
      goto fail;
  }
  rn_json_free(j);
  free(hdr);
  free(infos);
  free(sorted);
  close(fd);
  return 0;
fail:
  rn_json_free(j);
  free(hdr);
  free(infos);
  free(sorted);
  close(fd);
  rn_tset_free(out);
  return -1;
}
