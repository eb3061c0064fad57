/* l_print.c - tostring of tensors: a header line with shape, dtype, device
 * and autograd state, then the values, nested by dim, right-aligned in one
 * format chosen from the values shown, truncated to 3+3 per dim past 1000
 * elements. Only the elements shown are read: a summarized tensor's corners
 * are gathered into a small CPU tensor first, so printing a 50 GB GPU
 * tensor copies at most 6^ndim elements to the host. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../autograd.h"
#include "rnl.h"

#define EDGE 3
#define SUMMARIZE 1000

typedef struct {
  const rn_tensor *t; /* the shown part, on the CPU */
  bool cut[RN_MAXDIM]; /* dim d of the original was cut to EDGE ... EDGE */
  bool integer_dtype;
  char fmt[16];
  int width;
} printer;

/* The shown part of t on the CPU: where t has more than SUMMARIZE elements,
 * each dim longer than 2*EDGE keeps its first and last EDGE (cut[d] set),
 * copied corner by corner (at most 2^ndim views); else all of t. */
static rn_tensor *shown_part(rn_tensor *t, bool *cut) {
  bool summarize = rn_numel(t) > SUMMARIZE;
  int64_t shape[RN_MAXDIM];
  int ncut = 0;
  for (int d = 0; d < t->ndim; d++) {
    cut[d] = summarize && t->shape[d] > 2 * EDGE;
    shape[d] = cut[d] ? 2 * EDGE : t->shape[d];
    ncut += cut[d];
  }
  if (ncut == 0) return rn_device(t) == RN_CPU ? (rn_retain(t), t) : rn_to_device(t, RN_CPU);
  rn_tensor *out = rn_empty(t->ndim, shape, t->dtype, RN_CPU);
  if (!out) return NULL;
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  int rc = 0;
  for (unsigned mask = 0; rc == 0 && mask < (1u << t->ndim); mask++) {
    rn_tensor *src = t, *dst = out;
    rn_retain(src);
    rn_retain(dst);
    for (int d = 0; d < t->ndim && src && dst; d++) {
      bool hi = (mask >> d) & 1u;
      if (!cut[d] && hi) { rn_release(src); src = NULL; break; } /* a corner counted twice */
      if (!cut[d]) continue;
      rn_tensor *s2 = rn_narrow(src, d, hi ? t->shape[d] - EDGE : 0, EDGE);
      rn_tensor *d2 = rn_narrow(dst, d, hi ? EDGE : 0, EDGE);
      rn_release(src);
      rn_release(dst);
      src = s2;
      dst = d2;
      if (!src || !dst) rc = -1;
    }
    if (src && dst) rc = rn_copy_(dst, src);
    rn_release(src);
    rn_release(dst);
  }
  rn_set_grad_enabled(g);
  if (rc < 0) { rn_release(out); return NULL; }
  return out;
}

static double value_at(const rn_tensor *t, int64_t off) {
  return rn_load(rn_ptr(t) + (size_t)off * rn_dtype_size(t->dtype), t->dtype);
}

static void fmt_one(const printer *p, double v, char *buf, size_t n) {
  if (isnan(v)) snprintf(buf, n, "nan");
  else if (isinf(v)) snprintf(buf, n, v > 0 ? "inf" : "-inf");
  else if (p->integer_dtype) snprintf(buf, n, "%lld", (long long)v);
  else snprintf(buf, n, p->fmt, v);
}

/* visits every element of the shown part, calling f on each */
static void visit(const printer *p, int d, int64_t off, void (*f)(printer *, double), printer *pp) {
  const rn_tensor *t = p->t;
  if (d == t->ndim) { f(pp, value_at(t, off)); return; }
  for (int64_t i = 0; i < t->shape[d]; i++) visit(p, d + 1, off + i * t->stride[d], f, pp);
}

static double g_maxabs, g_minabs;
static bool g_allint;
static void scan(printer *p, double v) {
  (void)p;
  if (!isfinite(v)) return;
  double a = fabs(v);
  if (a > g_maxabs) g_maxabs = a;
  if (a > 0 && a < g_minabs) g_minabs = a;
  if (v != floor(v)) g_allint = false;
}
static void measure(printer *p, double v) {
  char b[64];
  fmt_one(p, v, b, sizeof b);
  int w = (int)strlen(b);
  if (w > p->width) p->width = w;
}

static void emit(luaL_Buffer *b, const printer *p, int d, int64_t off, int indent) {
  const rn_tensor *t = p->t;
  char buf[64];
  luaL_addchar(b, '[');
  for (int64_t i = 0; i < t->shape[d]; i++) {
    if (p->cut[d] && i == EDGE) { /* the elements left out */
      if (d == t->ndim - 1) luaL_addstring(b, "..., ");
      else {
        luaL_addstring(b, "...,\n");
        for (int k = 0; k < indent + 1; k++) luaL_addchar(b, ' ');
      }
    }
    if (d == t->ndim - 1) {
      fmt_one(p, value_at(t, off + i * t->stride[d]), buf, sizeof buf);
      int pad = p->width - (int)strlen(buf);
      for (int k = 0; k < pad; k++) luaL_addchar(b, ' ');
      luaL_addstring(b, buf);
      if (i < t->shape[d] - 1) luaL_addstring(b, ", ");
    } else {
      emit(b, p, d + 1, off + i * t->stride[d], indent + 1);
      if (i < t->shape[d] - 1) {
        luaL_addchar(b, ',');
        for (int k = d; k < t->ndim - 1; k++) luaL_addchar(b, '\n');
        for (int k = 0; k < indent + 1; k++) luaL_addchar(b, ' ');
      }
    }
  }
  luaL_addchar(b, ']');
}

int rnl_tostring(lua_State *L) {
  rn_tensor **box = luaL_checkudata(L, 1, RNL_TENSOR);
  if (!*box) { lua_pushstring(L, "rn.Tensor (closed)"); return 1; }
  rn_tensor *t = *box;
  char sh[160];
  luaL_Buffer b;
  printer p = {.integer_dtype = !rn_dtype_is_float(t->dtype)};
  rn_tensor *c = shown_part(t, p.cut); /* values are read on the CPU */
  if (!c) return rnl_error(L);
  p.t = c;
  rn_tensor **hold = lua_newuserdatauv(L, sizeof *hold, 0); /* released by __gc */
  *hold = NULL;
  luaL_setmetatable(L, RNL_TENSOR);
  *hold = c;
  luaL_buffinit(L, &b);
  if (rn_numel(c) > 0) {
    g_maxabs = 0; g_minabs = INFINITY; g_allint = true;
    visit(&p, 0, 0, scan, &p);
    if (p.integer_dtype) strcpy(p.fmt, "%.0f");
    else if (g_allint && g_maxabs < 1e8) strcpy(p.fmt, "%.0f.");
    else if (g_maxabs < 1e5 && (g_minabs >= 1e-4 || g_minabs == INFINITY)) strcpy(p.fmt, "%.4f");
    else strcpy(p.fmt, "%.4e");
    visit(&p, 0, 0, measure, &p);
  }
  luaL_addstring(&b, "rn.Tensor ");
  luaL_addstring(&b, rn_shape_str(t, sh, sizeof sh));
  luaL_addchar(&b, ' ');
  luaL_addstring(&b, rn_dtype_name(t->dtype));
  luaL_addchar(&b, ' ');
  luaL_addstring(&b, rn_device_name(rn_device(t)));
  if (t->grad_fn) {
    luaL_addstring(&b, " grad_fn=");
    luaL_addstring(&b, t->grad_fn->name);
  } else if (t->requires_grad) {
    luaL_addstring(&b, " requires_grad");
  }
  luaL_addchar(&b, '\n');
  if (c->ndim == 0) {
    char v[64];
    fmt_one(&p, value_at(c, 0), v, sizeof v);
    luaL_addstring(&b, v);
  } else if (rn_numel(c) == 0) {
    luaL_addstring(&b, "[]");
  } else {
    emit(&b, &p, 0, 0, 0);
  }
  luaL_pushresult(&b);
  return 1;
}
