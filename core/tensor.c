/* tensor.c - tensors: refcounted storage plus strided views (shape, strides,
 * offset, dtype, device); creation, views with their autograd records,
 * contiguous/clone/cast/device moves, and in-place copy and fill. */
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "backend.h"
#include "capture.h"
#include "mutant.h"

/* ---- storage ------------------------------------------------------------- */

static uint64_t storage_uids; /* the last rn_storage.uid given */

static rn_storage *storage_new(size_t nbytes, rn_devtype dev) {
  const rn_backend *be = rn_backend_get(dev);
  if (!be) return NULL;
  rn_storage *s = calloc(1, sizeof *s);
  if (!s) { rn_err("out of memory allocating a storage header"); return NULL; }
  s->data = be->alloc(nbytes ? nbytes : 1);
  if (!s->data) { free(s); return NULL; }
  s->refcount = 1;
  s->device = dev;
  s->nbytes = nbytes;
  s->uid = ++storage_uids;
  return s;
}

static void storage_release(rn_storage *s) {
  if (!s || --s->refcount > 0) return;
  if (s->external) {
    if (s->release) s->release(s->release_ctx);
    free(s);
    return;
  }
  const rn_backend *be = rn_backend_get(s->device);
  if (be) be->free(s->data);
  free(s);
}

/* ---- basics -------------------------------------------------------------- */

int64_t rn_numel(const rn_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

rn_devtype rn_device(const rn_tensor *t) { return t->st->device; }

bool rn_is_contiguous(const rn_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != s) return false;
    s *= t->shape[i];
  }
  return true;
}

bool rn_same_shape(const rn_tensor *a, const rn_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

int rn_norm_dim(int dim, int ndim, const char *op) {
  int d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim) {
    rn_err("%s: dim %d out of range for a %d-d tensor", op, dim, ndim);
    return -1;
  }
  return d;
}

int rn_check_shape(int ndim, const int64_t *shape, const char *op) {
  if (ndim < 0 || ndim > RN_MAXDIM)
    return rn_err("%s: %d dims; tensors have 0..%d dims", op, ndim, RN_MAXDIM);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return rn_err("%s: size %lld of dim %d is negative; sizes are >= 0", op,
                    (long long)shape[i], i + 1);
    if (shape[i] && n > RN_MAX_NUMEL / shape[i])
      return rn_err("%s: shape has more than 2^40 elements", op);
    if (shape[i]) n *= shape[i]; /* zeros skipped: strides must not overflow either */
  }
  return 0;
}

static void set_contiguous_strides(rn_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    t->stride[i] = s;
    s *= t->shape[i];
  }
}

rn_tensor *rn_empty(int ndim, const int64_t *shape, rn_dtype dt, rn_devtype dev) {
  if (rn_check_shape(ndim, shape, "tensor") < 0) return NULL;
  rn_tensor *t = calloc(1, sizeof *t);
  if (!t) { rn_err("out of memory allocating a tensor header"); return NULL; }
  t->refcount = 1;
  t->ndim = ndim;
  t->dtype = dt;
  if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
  set_contiguous_strides(t);
  t->st = storage_new((size_t)rn_numel(t) * rn_dtype_size(dt), dev);
  if (!t->st) { free(t); return NULL; }
  return t;
}

rn_tensor *rn_full(int ndim, const int64_t *shape, double v, rn_dtype dt, rn_devtype dev) {
  rn_tensor *t = rn_empty(ndim, shape, dt, dev);
  if (t && rn_fill_(t, v) < 0) { rn_release(t); return NULL; }
  return t;
}

rn_tensor *rn_zeros(int ndim, const int64_t *shape, rn_dtype dt, rn_devtype dev) {
  return rn_full(ndim, shape, 0, dt, dev);
}
rn_tensor *rn_empty_like(const rn_tensor *t) {
  return rn_empty(t->ndim, t->shape, t->dtype, rn_device(t));
}
rn_tensor *rn_zeros_like(const rn_tensor *t) {
  return rn_zeros(t->ndim, t->shape, t->dtype, rn_device(t));
}
rn_tensor *rn_scalar(double v, rn_dtype dt, rn_devtype dev) {
  return rn_full(0, NULL, v, dt, dev);
}

rn_tensor *rn_arange(double start, double stop, double step, rn_dtype dt) {
  if (step == 0 || step != step) { rn_err("arange: step must be non-zero"); return NULL; }
  double nd = (stop - start) / step;
  if (!(nd < (double)RN_MAX_NUMEL)) { rn_err("arange: too many elements"); return NULL; }
  int64_t n = nd > 0 ? (int64_t)nd : 0;
  if ((double)n < nd) n++;
  rn_tensor *t = rn_empty(1, &n, dt, RN_CPU);
  if (!t) return NULL;
  size_t es = rn_dtype_size(dt);
  for (int64_t i = 0; i < n; i++) rn_store(rn_ptr(t) + (size_t)i * es, dt, start + (double)i * step);
  return t;
}

rn_tensor *rn_from_buffer(int ndim, const int64_t *shape, rn_dtype dt, const void *src) {
  rn_tensor *t = rn_empty(ndim, shape, dt, RN_CPU);
  if (t) memcpy(t->st->data, src, (size_t)rn_numel(t) * rn_dtype_size(dt));
  return t;
}

rn_tensor *rn_from_external(int ndim, const int64_t *shape, rn_dtype dt, void *data,
                            void (*release)(void *ctx), void *ctx) {
  if ((unsigned)dt >= RN_NDTYPES) { rn_err("tensor: unknown dtype %d", (int)dt); return NULL; }
  if (!data) { rn_err("tensor: external data is NULL"); return NULL; }
  if ((uintptr_t)data % rn_dtype_size(dt)) {
    rn_err("tensor: external data %p is not aligned to %zu bytes (%s)", data,
           rn_dtype_size(dt), rn_dtype_name(dt));
    return NULL;
  }
  if (rn_check_shape(ndim, shape, "tensor") < 0) return NULL;
  rn_tensor *t = calloc(1, sizeof *t);
  rn_storage *s = calloc(1, sizeof *s);
  if (!t || !s) {
    free(t);
    free(s);
    rn_err("out of memory allocating a tensor header");
    return NULL;
  }
  t->refcount = 1;
  t->ndim = ndim;
  t->dtype = dt;
  if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
  set_contiguous_strides(t);
  s->refcount = 1;
  s->device = RN_CPU;
  s->nbytes = (size_t)rn_numel(t) * rn_dtype_size(dt);
  s->data = data;
  s->external = true;
  s->release = release;
  s->release_ctx = ctx;
  s->uid = ++storage_uids;
  t->st = s;
  return t;
}

void rn_retain(rn_tensor *t) { t->refcount++; }

void rn_release(rn_tensor *t) {
  if (!t || --t->refcount > 0) return;
  storage_release(t->st);
  rn_release(t->grad);
  rn_node_release(t->grad_fn);
  free(t);
}

/* A view of t's storage with the given geometry; no autograd record. */
static rn_tensor *alias(const rn_tensor *t, int ndim, const int64_t *shape,
                        const int64_t *stride, int64_t offset) {
  if (rn_check_shape(ndim, shape, "view") < 0) return NULL; /* the cap creation applies */
  rn_tensor *v = calloc(1, sizeof *v);
  if (!v) { rn_err("out of memory allocating a view"); return NULL; }
  v->refcount = 1;
  v->st = t->st;
  t->st->refcount++;
  v->dtype = t->dtype;
  v->ndim = ndim;
  if (ndim) {
    memcpy(v->shape, shape, sizeof(int64_t) * (size_t)ndim);
    memcpy(v->stride, stride, sizeof(int64_t) * (size_t)ndim);
  }
  v->offset = offset;
  return v;
}

rn_tensor *rn_detach(rn_tensor *t) {
  return alias(t, t->ndim, t->shape, t->stride, t->offset);
}

int rn_coalesce(int nops, const rn_tensor *const *ts, int64_t *shape,
                int64_t (*stride)[RN_MAXDIM]) {
  const rn_tensor *t0 = ts[0];
  int nd = 0;
  for (int d = 0; d < t0->ndim; d++) {
    if (t0->shape[d] == 1) continue;
    if (nd > 0) { /* merge d into the previous dim when every operand allows */
      bool merge = true;
      for (int k = 0; k < nops; k++)
        if (stride[k][nd - 1] != ts[k]->stride[d] * t0->shape[d]) merge = false;
      if (merge) {
        shape[nd - 1] *= t0->shape[d];
        for (int k = 0; k < nops; k++) stride[k][nd - 1] = ts[k]->stride[d];
        continue;
      }
    }
    shape[nd] = t0->shape[d];
    for (int k = 0; k < nops; k++) stride[k][nd] = ts[k]->stride[d];
    nd++;
  }
  if (nd == 0) { /* one element, or none */
    shape[0] = rn_numel(t0) ? 1 : 0;
    for (int k = 0; k < nops; k++) stride[k][0] = 0;
    nd = 1;
  }
  return nd;
}

rn_tensor *rn_view2d(rn_tensor *t) {
  int64_t C = t->ndim ? t->shape[t->ndim - 1] : 1;
  int64_t sh[2] = {C ? rn_numel(t) / C : 0, C};
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *v = rn_reshape(t, 2, sh);
  rn_set_grad_enabled(g);
  return v;
}

/* ---- autograd for views -------------------------------------------------- */

typedef struct { int ndim; int64_t shape[RN_MAXDIM]; int perm[RN_MAXDIM];
                 int dim; int64_t start; rn_dtype dtype; rn_devtype dev; } view_ctx;

static int record(rn_tensor *in, rn_tensor *out, const char *name, rn_backward_fn bw,
                  const view_ctx *c) {
  if (!rn_needs_grad(1, &in)) return 0;
  rn_node *n = rn_node_new(name, bw, 1, &in);
  if (!n) return -1;
  if (c) {
    n->ctx = malloc(sizeof *c);
    if (!n->ctx) { rn_node_release(n); return rn_err("out of memory"); }
    memcpy(n->ctx, c, sizeof *c);
    n->ctx_free = free;
  }
  rn_node_attach(n, out);
  return 0;
}

static rn_tensor *finish(rn_tensor *in, rn_tensor *out, const char *name, rn_backward_fn bw,
                         const view_ctx *c) {
  if (out && record(in, out, name, bw, c) < 0) { rn_release(out); return NULL; }
  return out;
}

static int reshape_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  gin[0] = rn_reshape(g, n->in_shape[0].ndim, n->in_shape[0].shape);
  return gin[0] ? 0 : -1;
}

static int identity_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  (void)n;
  rn_retain(g);
  gin[0] = g;
  return 0;
}

static int permute_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  view_ctx *c = n->ctx;
  int inv[RN_MAXDIM];
  for (int i = 0; i < c->ndim; i++) inv[c->perm[i]] = i;
  gin[0] = rn_permute(g, RN_MUTANT("permute_inverse") ? c->perm : inv);
  return gin[0] ? 0 : -1;
}

/* gradient of narrow/select: zeros of the input's shape with g copied in */
static int narrow_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  view_ctx *c = n->ctx;
  rn_inshape *s = &n->in_shape[0];
  rn_tensor *z = rn_zeros(s->ndim, s->shape, s->dtype, rn_device(g));
  if (!z) return -1;
  int64_t len = c->ndim ? g->shape[c->dim] : 1; /* select: c->ndim == 0 */
  rn_tensor *v = alias(z, z->ndim, z->shape, z->stride, z->offset);
  if (!v) { rn_release(z); return -1; }
  v->shape[c->dim] = len;
  v->offset += c->start * z->stride[c->dim];
  rn_tensor *gv = c->ndim ? (rn_retain(g), g) : rn_reshape(g, v->ndim, v->shape);
  int rc = gv ? rn_copy_(v, gv) : -1; /* select: g with the dim put back */
  rn_release(gv);
  rn_release(v);
  if (rc < 0) { rn_release(z); return -1; }
  gin[0] = z;
  return 0;
}

static int cast_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  view_ctx *c = n->ctx;
  rn_tensor *h = rn_cast(g, n->in_shape[0].dtype);
  if (!h) return -1;
  if (rn_device(h) != c->dev) {
    gin[0] = rn_to_device(h, c->dev);
    rn_release(h);
    return gin[0] ? 0 : -1;
  }
  gin[0] = h;
  return 0;
}

/* ---- views --------------------------------------------------------------- */

rn_tensor *rn_reshape(rn_tensor *t, int ndim, const int64_t *shape) {
  int64_t sh[RN_MAXDIM];
  if (ndim < 0 || ndim > RN_MAXDIM) {
    rn_err("reshape: %d dims; tensors have 0..%d dims", ndim, RN_MAXDIM);
    return NULL;
  }
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < ndim; i++) {
    sh[i] = shape[i];
    if (shape[i] == -1) {
      if (infer >= 0) { rn_err("reshape: only one size may be -1"); return NULL; }
      infer = i;
    } else if (shape[i] < 0) {
      rn_err("reshape: size %lld is negative", (long long)shape[i]);
      return NULL;
    } else {
      if (shape[i] && known > RN_MAX_NUMEL / shape[i]) {
        rn_err("reshape: shape has more than 2^40 elements"); return NULL;
      }
      known *= shape[i];
    }
  }
  int64_t n = rn_numel(t);
  char b1[128], b2[128];
  if (infer >= 0) {
    if (known == 0 || n % known) {
      rn_err("reshape: cannot infer the -1 size of %s for %lld elements of %s",
             rn_dims_str(ndim, shape, b1, sizeof b1), (long long)n, rn_shape_str(t, b2, sizeof b2));
      return NULL;
    }
    sh[infer] = n / known;
    known = n;
  }
  if (known != n) {
    rn_err("reshape: shape %s has %lld elements but the tensor %s has %lld",
           rn_dims_str(ndim, shape, b1, sizeof b1), (long long)known,
           rn_shape_str(t, b2, sizeof b2), (long long)n);
    return NULL;
  }
  rn_tensor *src = rn_contiguous(t);
  if (!src) return NULL;
  int64_t st[RN_MAXDIM], s = 1;
  for (int i = ndim - 1; i >= 0; i--) { st[i] = s; s *= sh[i]; }
  rn_tensor *v = alias(src, ndim, sh, st, src->offset);
  rn_release(src);
  return finish(t, v, "reshape", reshape_bw, NULL);
}

rn_tensor *rn_permute(rn_tensor *t, const int *perm) {
  view_ctx c = {.ndim = t->ndim};
  int64_t sh[RN_MAXDIM], st[RN_MAXDIM];
  bool seen[RN_MAXDIM] = {0};
  for (int i = 0; i < t->ndim; i++) {
    int p = perm[i];
    if (p < 0 || p >= t->ndim || seen[p]) {
      rn_err("permute: dims must be a permutation of 1..%d", t->ndim);
      return NULL;
    }
    seen[p] = true;
    c.perm[i] = p;
    sh[i] = t->shape[p];
    st[i] = t->stride[p];
  }
  return finish(t, alias(t, t->ndim, sh, st, t->offset), "permute", permute_bw, &c);
}

rn_tensor *rn_transpose(rn_tensor *t, int d0, int d1) {
  int a = rn_norm_dim(d0, t->ndim, "transpose"), b;
  if (a < 0 || (b = rn_norm_dim(d1, t->ndim, "transpose")) < 0) return NULL;
  int perm[RN_MAXDIM];
  for (int i = 0; i < t->ndim; i++) perm[i] = i;
  perm[a] = b;
  perm[b] = a;
  return rn_permute(t, perm);
}

rn_tensor *rn_narrow(rn_tensor *t, int dim, int64_t start, int64_t len) {
  int d = rn_norm_dim(dim, t->ndim, "narrow");
  if (d < 0) return NULL;
  if (start < 0 || len < 0 || start > t->shape[d] || len > t->shape[d] - start) {
    rn_err("narrow: start %lld and length %lld outside dim %d of size %lld "
           "(start in 1..%lld, start+length-1 <= %lld)", (long long)start + (start < INT64_MAX),
           (long long)len,
           d + 1, (long long)t->shape[d], (long long)t->shape[d], (long long)t->shape[d]);
    return NULL;
  }
  rn_tensor *v = alias(t, t->ndim, t->shape, t->stride, t->offset + start * t->stride[d]);
  if (v) v->shape[d] = len;
  view_ctx c = {.ndim = t->ndim, .dim = d, .start = start};
  return finish(t, v, "narrow", narrow_bw, &c);
}

rn_tensor *rn_select(rn_tensor *t, int dim, int64_t index) {
  int d = rn_norm_dim(dim, t->ndim, "select");
  if (d < 0) return NULL;
  if (index < 0 || index >= t->shape[d]) {
    rn_err("select: index %lld outside 1..%lld of dim %d", (long long)index + 1,
           (long long)t->shape[d], d + 1);
    return NULL;
  }
  int64_t sh[RN_MAXDIM], st[RN_MAXDIM];
  int k = 0;
  for (int i = 0; i < t->ndim; i++)
    if (i != d) { sh[k] = t->shape[i]; st[k++] = t->stride[i]; }
  rn_tensor *v = alias(t, k, sh, st, t->offset + index * t->stride[d]);
  /* backward: unsqueeze g at d, then as narrow with len 1 */
  view_ctx c = {.ndim = 0, .dim = d, .start = index};
  return finish(t, v, "select", narrow_bw, &c);
}

rn_tensor *rn_expand(rn_tensor *t, int ndim, const int64_t *shape) {
  char b1[128], b2[128];
  if (ndim < t->ndim || ndim > RN_MAXDIM) {
    rn_err("expand: cannot expand %s to %d dims", rn_shape_str(t, b1, sizeof b1), ndim);
    return NULL;
  }
  if (rn_check_shape(ndim, shape, "expand") < 0) return NULL;
  int64_t st[RN_MAXDIM];
  int off = ndim - t->ndim;
  for (int i = 0; i < ndim; i++) {
    int j = i - off;
    if (j < 0) { st[i] = 0; continue; }
    if (t->shape[j] == shape[i]) st[i] = t->stride[j];
    else if (t->shape[j] == 1) st[i] = 0;
    else {
      rn_err("expand: cannot expand %s to %s", rn_shape_str(t, b1, sizeof b1),
             rn_dims_str(ndim, shape, b2, sizeof b2));
      return NULL;
    }
  }
  /* the tape sums the gradient back to the input's shape */
  return finish(t, alias(t, ndim, shape, st, t->offset), "expand", identity_bw, NULL);
}

rn_tensor *rn_clone(rn_tensor *t) {
  rn_tensor *y = rn_empty(t->ndim, t->shape, t->dtype, rn_device(t));
  if (!y) return NULL;
  if (rn_backend_of(t)->copy(y, t) < 0) { rn_release(y); return NULL; }
  return finish(t, y, "clone", identity_bw, NULL);
}

rn_tensor *rn_contiguous(rn_tensor *t) {
  if (rn_is_contiguous(t)) { rn_retain(t); return t; }
  return rn_clone(t);
}

rn_tensor *rn_cast(rn_tensor *t, rn_dtype dt) {
  if (dt == t->dtype) { rn_retain(t); return t; }
  rn_tensor *y = rn_empty(t->ndim, t->shape, dt, rn_device(t));
  if (!y) return NULL;
  if (rn_backend_of(t)->copy(y, t) < 0) { rn_release(y); return NULL; }
  if (!rn_dtype_is_float(dt) || !rn_dtype_is_float(t->dtype)) return y; /* not differentiable */
  view_ctx c = {.dtype = t->dtype, .dev = rn_device(t)};
  return finish(t, y, "cast", cast_bw, &c);
}

rn_tensor *rn_to_device(rn_tensor *t, rn_devtype dev) {
  if (dev == rn_device(t)) { rn_retain(t); return t; }
  if (rn_capture_forbid(dev == RN_CPU ? "a copy to the host" : "a copy from the host") < 0)
    return NULL; /* issue 19: core/capture.h */
  const rn_backend *dst = rn_backend_get(dev);
  if (!dst) return NULL;
  rn_tensor *src = rn_contiguous(t);
  if (!src) return NULL;
  rn_tensor *y = rn_empty(t->ndim, t->shape, t->dtype, dev);
  size_t nb = (size_t)rn_numel(t) * rn_dtype_size(t->dtype);
  int rc = -1;
  if (y) {
    if (dev == RN_CPU) rc = rn_backend_of(src)->to_host(rn_ptr(y), rn_ptr(src), nb);
    else rc = dst->from_host(rn_ptr(y), rn_ptr(src), nb);
  }
  rn_release(src);
  if (rc < 0) { rn_release(y); return NULL; }
  if (!rn_dtype_is_float(t->dtype)) return y;
  view_ctx c = {.dtype = t->dtype, .dev = rn_device(t)};
  return finish(t, y, "to", cast_bw, &c);
}

/* ---- in place ------------------------------------------------------------ */

/* In-place ops are not recorded by autograd. With gradients on they are
 * refused on a leaf that requires grad, and on a result of recorded ops
 * when they change its derivative (scaling, overwriting, adding something
 * that requires grad: the backward would skip the change and give a wrong
 * gradient); adding a constant keeps the derivative and is allowed. Changes
 * of tensors a backward saved are caught there, by the version counter. */
int rn_check_inplace_ex(const rn_tensor *t, const char *op, bool keeps_derivative) {
  if (rn_grad_enabled() && t->requires_grad && !t->grad_fn)
    return rn_err("%s: in-place change of a leaf tensor that requires grad; "
                  "use rn.no_grad or detach()", op);
  if (rn_grad_enabled() && t->grad_fn && !keeps_derivative)
    return rn_err("%s: in-place change of a tensor that autograd recorded (the result of an "
                  "op on tensors that require grad) would make its gradient wrong; use the "
                  "out-of-place form (y = y * s, y = y + a), or rn.no_grad / detach()", op);
  return 0;
}

int rn_check_inplace(const rn_tensor *t, const char *op) {
  return rn_check_inplace_ex(t, op, false);
}

/* True when a and b share storage but are not the same view: an in-place
 * kernel reading b while writing a could then read values it already wrote
 * (the kernels run vectorized and in parallel, with no ordering). */
bool rn_partial_alias(const rn_tensor *a, const rn_tensor *b) {
  if (a->st != b->st) return false;
  if (a->offset != b->offset || a->ndim != b->ndim) return true;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d] || (a->shape[d] > 1 && a->stride[d] != b->stride[d]))
      return true;
  return false;
}

int rn_copy_(rn_tensor *dst, const rn_tensor *src) {
  if (rn_check_inplace(dst, "copy_") < 0) return -1;
  if (rn_device(dst) != rn_device(src)) {
    rn_tensor *s2 = rn_to_device((rn_tensor *)src, rn_device(dst));
    if (!s2) return -1;
    int rc = rn_copy_(dst, s2);
    rn_release(s2);
    return rc;
  }
  rn_tensor *e = NULL;
  if (!rn_same_shape(dst, src)) {
    bool g = rn_grad_enabled();
    rn_set_grad_enabled(false);
    e = rn_expand((rn_tensor *)src, dst->ndim, dst->shape);
    rn_set_grad_enabled(g);
    if (!e) {
      char b1[128], b2[128];
      return rn_err("copy_: source %s does not broadcast to %s", rn_shape_str(src, b1, sizeof b1),
                    rn_shape_str(dst, b2, sizeof b2));
    }
    src = e;
  }
  rn_tensor *tmp = NULL;
  if (rn_partial_alias(dst, src)) { /* overlapping views: read from a copy */
    bool g = rn_grad_enabled();
    rn_set_grad_enabled(false);
    tmp = rn_clone((rn_tensor *)src);
    rn_set_grad_enabled(g);
    if (!tmp) { rn_release(e); return -1; }
    src = tmp;
  }
  rn_bump_version(dst);
  int rc = rn_backend_of(dst)->copy(dst, src);
  rn_release(tmp);
  rn_release(e);
  return rc;
}

int rn_fill_(rn_tensor *t, double v) {
  if (rn_check_inplace(t, "fill_") < 0) return -1;
  rn_bump_version(t);
  return rn_backend_of(t)->fill(t, v);
}
