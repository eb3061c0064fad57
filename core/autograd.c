/* autograd.c - the eager tape: grad mode, node creation and lifetime, and the
 * reverse pass (Kahn order over the nodes reachable from the root, gradient
 * accumulation into .grad of leaves, saved tensors freed once used). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd.h"
#include "backend.h"
#include "mutant.h"

static _Thread_local bool grad_on = true;
const char *(*rn_where_hook)(void) = NULL;
static bool anomaly_on = false;
int rn_profile_scope = 0;
static bool profile_on = false;
void (*rn_profile_mark_hook)(int scope) = NULL;
static double *profile_s; /* seconds per scope, [profile_n] */
static int profile_n;
/* grad-ready hooks (autograd.h) and the pass's pending edge count per leaf */
static rn_grad_hooks hooks;
static bool hooks_on = false;
static struct { rn_tensor **leaf; int *count; int n, cap; } pend;

void rn_set_grad_hooks(const rn_grad_hooks *h) {
  hooks_on = h != NULL;
  if (h) hooks = *h;
}

static int *pend_find(rn_tensor *t) {
  for (int i = pend.n - 1; i >= 0; i--)
    if (pend.leaf[i] == t) return &pend.count[i];
  return NULL;
}

static int pend_add(rn_tensor *t) {
  int *c = pend_find(t);
  if (c) { ++*c; return 0; }
  if (pend.n == pend.cap) {
    int cap = pend.cap ? 2 * pend.cap : 64;
    rn_tensor **l = realloc(pend.leaf, sizeof *l * (size_t)cap);
    if (l) pend.leaf = l;
    int *k = realloc(pend.count, sizeof *k * (size_t)cap);
    if (k) pend.count = k;
    if (!l || !k) return rn_err("backward: out of memory counting the leaves' edges");
    pend.cap = cap;
  }
  pend.leaf[pend.n] = t;
  pend.count[pend.n++] = 1;
  return 0;
}

/* an edge into leaf t ran: fires ready at the last one */
static int pend_done(rn_tensor *t) {
  int *c = pend_find(t);
  if (c && --*c == 0) return hooks.ready(hooks.ud, t);
  return 0;
}

bool rn_grad_enabled(void) { return grad_on; }
void rn_set_grad_enabled(bool on) { grad_on = on; }
bool rn_anomaly_enabled(void) { return anomaly_on; }
void rn_set_anomaly(bool on) { anomaly_on = on; }

int rn_nonfinite(rn_tensor *t) {
  if (!t || !rn_dtype_is_float(t->dtype) || rn_numel(t) == 0) return 0;
  bool saved = grad_on;
  grad_on = false;
  rn_tensor *h = rn_device(t) != RN_CPU ? rn_to_device(t, RN_CPU) : t;
  rn_tensor *c = h ? rn_contiguous(h) : NULL;
  if (h != t) rn_release(h);
  grad_on = saved;
  if (!c) return -1;
  int found = 0;
  const char *p = rn_ptr(c);
  size_t es = rn_dtype_size(c->dtype);
  for (int64_t i = 0, n = rn_numel(c); i < n && found != RN_NONFINITE_NAN + RN_NONFINITE_INF; i++) {
    double v = rn_load(p + (size_t)i * es, c->dtype);
    if (isnan(v)) found |= RN_NONFINITE_NAN;
    else if (isinf(v)) found |= RN_NONFINITE_INF;
  }
  rn_release(c);
  return found;
}

bool rn_needs_grad(int n, rn_tensor *const *ins) {
  if (!grad_on) return false;
  for (int i = 0; i < n; i++)
    if (ins[i] && ins[i]->requires_grad) return true;
  return false;
}

rn_node *rn_node_new(const char *name, rn_backward_fn bw, int nin, rn_tensor *const *ins) {
  size_t sz = sizeof(rn_node) + (size_t)nin * (sizeof(rn_node *) + sizeof(rn_tensor *) +
                                               sizeof(rn_inshape) + sizeof(bool));
  rn_node *n = calloc(1, sz);
  if (!n) { rn_err("%s: out of memory recording the autograd node", name); return NULL; }
  n->refcount = 1;
  n->name = name;
  n->backward = bw;
  n->nin = nin;
  char *p = (char *)(n + 1);
  n->in_shape = (rn_inshape *)p; p += (size_t)nin * sizeof(rn_inshape);
  n->next = (rn_node **)p;       p += (size_t)nin * sizeof(rn_node *);
  n->leaf = (rn_tensor **)p;     p += (size_t)nin * sizeof(rn_tensor *);
  n->needs = (bool *)p;
  for (int i = 0; i < nin; i++) {
    rn_tensor *t = ins[i];
    if (!t) continue;
    n->in_shape[i].ndim = t->ndim;
    memcpy(n->in_shape[i].shape, t->shape, sizeof t->shape);
    n->in_shape[i].dtype = t->dtype;
    if (!t->requires_grad) continue;
    n->needs[i] = true;
    if (t->grad_fn) { n->next[i] = t->grad_fn; t->grad_fn->refcount++; }
    else { n->leaf[i] = t; rn_retain(t); }
  }
  n->where = rn_where_hook ? rn_where_hook() : NULL;
  n->scope = rn_profile_scope;
  return n;
}

int rn_node_save(rn_node *n, rn_tensor *t) {
  if (n->nsaved >= RN_NODE_MAXSAVED) return rn_err("%s: too many saved tensors", n->name);
  rn_tensor *d = rn_detach(t);
  if (!d) return -1;
  n->saved_version[n->nsaved] = d->st->version;
  n->saved[n->nsaved++] = d;
  return 0;
}

void rn_node_attach(rn_node *n, rn_tensor *out) {
  rn_node_release(out->grad_fn);
  out->grad_fn = n;
  out->requires_grad = true;
}

static void free_saved(rn_node *n) {
  for (int i = 0; i < n->nsaved; i++) { rn_release(n->saved[i]); n->saved[i] = NULL; }
  n->nsaved = 0;
  n->released = true;
}

/* Releases iteratively: a long chain of nodes must not overflow the C stack. */
void rn_node_release(rn_node *n) {
  rn_node *stack_local[64], **stack = stack_local;
  int cap = 64, top = 0;
  if (!n) return;
  stack[top++] = n;
  while (top > 0) {
    rn_node *m = stack[--top];
    if (--m->refcount > 0) continue;
    for (int i = 0; i < m->nin; i++) {
      rn_release(m->leaf[i]);
      if (!m->next[i]) continue;
      if (top == cap) {
        rn_node **bigger = malloc(sizeof *bigger * (size_t)cap * 2);
        if (!bigger) { m->next[i]->refcount--; continue; } /* leak rather than crash */
        memcpy(bigger, stack, sizeof *bigger * (size_t)top);
        if (stack != stack_local) free(stack);
        stack = bigger;
        cap *= 2;
      }
      stack[top++] = m->next[i];
    }
    free_saved(m);
    rn_release(m->gbuf);
    if (m->ctx_free) m->ctx_free(m->ctx);
    free(m);
  }
  if (stack != stack_local) free(stack);
}

/* ---- reverse pass -------------------------------------------------------- */

typedef struct { rn_node **v; int n, cap; } nodevec;

static int push(nodevec *s, rn_node *x) {
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 256;
    rn_node **v = realloc(s->v, sizeof *v * (size_t)cap);
    if (!v) return rn_err("backward: out of memory");
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = x;
  return 0;
}

/* Adds g into *acc (out of place: g may alias tensors the caller holds). */
static int accumulate(rn_tensor **acc, rn_tensor *g) {
  if (!*acc || RN_MUTANT("grad_accum")) { rn_retain(g); rn_release(*acc); *acc = g; return 0; }
  rn_tensor *s = rn_binary(RN_OP_ADD, *acc, g);
  if (!s) return -1;
  rn_release(*acc);
  *acc = s;
  return 0;
}

static int accumulate_leaf(rn_tensor *leaf, rn_tensor *g) {
  if (leaf->grad) {
    rn_bump_version(leaf->grad);
    return rn_backend_of(leaf)->axpy(leaf->grad, 1.0, g);
  }
  rn_tensor *c = rn_empty_like(leaf);
  if (!c) return -1;
  if (rn_backend_of(c)->copy(c, g) < 0) { rn_release(c); return -1; }
  leaf->grad = c;
  return 0;
}

/* Brings a raw input gradient to the input's shape and dtype. */
static rn_tensor *fit_grad(rn_node *n, int i, rn_tensor *g) {
  rn_inshape *s = &n->in_shape[i];
  rn_tensor *r = g;
  rn_retain(r);
  if (r->ndim != s->ndim || memcmp(r->shape, s->shape, sizeof(int64_t) * (size_t)s->ndim)) {
    rn_tensor *t = rn_sum_to(r, s->ndim, s->shape);
    rn_release(r);
    if (!t) return NULL;
    r = t;
  }
  if (r->dtype != s->dtype) {
    rn_tensor *t = rn_cast(r, s->dtype);
    rn_release(r);
    r = t;
  }
  return r;
}

/* -1 + rn_err when a saved tensor was changed in place after the forward */
static int check_saved(rn_node *n) {
  char b1[128], at[300] = "";
  if (n->where) snprintf(at, sizeof at, " (forward at %s)", n->where);
  for (int i = 0; i < n->nsaved; i++) {
    rn_tensor *t = n->saved[i];
    if (!t || t->st->version == n->saved_version[i]) continue;
    return rn_err("backward of %s%s: one of the tensors it saved for the gradient, of "
                  "shape %s (saved tensor %d), was modified by an in-place operation after "
                  "the forward (version %llu, expected %llu); change a clone instead, or "
                  "change it after backward",
                  n->name, at,
                  rn_shape_str(t, b1, sizeof b1), i + 1, (unsigned long long)t->st->version,
                  (unsigned long long)n->saved_version[i]);
  }
  return 0;
}

static int run_node(rn_node *n, nodevec *ready, bool retain) {
  rn_tensor *gin_local[8], **gin = gin_local;
  if (n->nin > 8 && !(gin = calloc((size_t)n->nin, sizeof *gin)))
    return rn_err("backward: out of memory");
  if (gin == gin_local) memset(gin_local, 0, sizeof gin_local);
  int rc = 0;
  if (n->released) {
    rc = rn_err("backward through %s a second time: its saved tensors were freed; "
                "pass retain_graph=true to the first backward", n->name);
  } else if ((rc = check_saved(n)) == 0) {
    rc = n->backward(n, n->gbuf, gin);
    if (rc < 0) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", rn_errmsg());
      rn_err("%s backward: %s", n->name, msg);
    }
    /* anomaly mode: a kind of non-finite value the output gradient lacks */
    int gout_bad = anomaly_on && rc == 0 ? rn_nonfinite(n->gbuf) : 0;
    for (int i = 0; anomaly_on && rc == 0 && gout_bad >= 0 && i < n->nin; i++) {
      int bad = gin[i] && n->needs[i] ? rn_nonfinite(gin[i]) : 0;
      if (bad < 0) rc = -1;
      else if (bad & ~gout_bad)
        rc = rn_err("anomaly: backward of %s (forward at %s) produced %s", n->name,
                    n->where ? n->where : "an unknown line",
                    (bad & ~gout_bad) & RN_NONFINITE_NAN ? "nan" : "inf");
    }
    if (gout_bad < 0) rc = -1;
  }
  for (int i = 0; i < n->nin; i++) {
    rn_tensor *g = gin[i];
    if (rc == 0 && n->needs[i] && g) {
      rn_tensor *f = fit_grad(n, i, g);
      if (!f) rc = -1;
      else if (n->next[i]) rc = accumulate(&n->next[i]->gbuf, f);
      else rc = accumulate_leaf(n->leaf[i], f);
      rn_release(f);
    }
    rn_release(g);
    if (rc == 0 && n->next[i] && --n->next[i]->deps == 0) rc = push(ready, n->next[i]);
    if (rc == 0 && hooks_on && !n->next[i] && n->leaf[i] && n->needs[i]) rc = pend_done(n->leaf[i]);
  }
  if (gin != gin_local) free(gin);
  rn_release(n->gbuf);
  n->gbuf = NULL;
  if (!retain) free_saved(n);
  return rc;
}

/* ---- profiling ------------------------------------------------------------ */
bool rn_profile_enabled(void) { return profile_on; }

void rn_profile_clear(void) {
  free(profile_s);
  profile_s = NULL;
  profile_n = 0;
}

int rn_profile_begin(void) {
  if (profile_on) return rn_err("profile: profiling is already on (end it first)");
  rn_profile_clear();
  profile_on = true;
  return 0;
}

void rn_profile_end(void) { profile_on = false; }

const double *rn_profile_times(int *n) {
  *n = profile_n;
  return profile_s;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* run_node, its time added to the node's scope */
static int run_node_timed(rn_node *n, nodevec *ready, bool retain) {
  int scope = n->scope < 0 || n->scope > (1 << 24) ? 0 : n->scope; /* out of range: "none" */
  if (scope >= profile_n) {
    int cap = profile_n ? profile_n : 64;
    while (cap <= scope) cap *= 2;
    double *v = realloc(profile_s, sizeof *v * (size_t)cap);
    if (!v) return rn_err("backward: out of memory growing the profile to %d scopes", cap);
    memset(v + profile_n, 0, sizeof *v * (size_t)(cap - profile_n));
    profile_s = v;
    profile_n = cap;
  }
  if (rn_profile_mark_hook) rn_profile_mark_hook(scope); /* issue 19: GPU events */
  double t0 = now_s();
  int rc = run_node(n, ready, retain);
  profile_s[scope] += now_s() - t0;
  return rc;
}

int rn_backward(rn_tensor *root, rn_tensor *grad, bool retain_graph) {
  char b1[128], b2[128];
  if (!root->requires_grad)
    return rn_err("backward: the tensor does not require grad (no input had requires_grad)");
  if (grad) {
    if (!rn_same_shape(grad, root))
      return rn_err("backward: gradient shape %s differs from the tensor's %s",
                    rn_shape_str(grad, b1, sizeof b1), rn_shape_str(root, b2, sizeof b2));
    if (rn_device(grad) != rn_device(root))
      return rn_err("backward: gradient on %s but the tensor on %s",
                    rn_device_name(rn_device(grad)), rn_device_name(rn_device(root)));
  } else if (rn_numel(root) != 1) {
    return rn_err("backward: the tensor %s is not a scalar; pass a gradient of its shape",
                  rn_shape_str(root, b1, sizeof b1));
  }
  bool saved_mode = rn_grad_enabled();
  rn_set_grad_enabled(false);
  int rc = 0;
  rn_tensor *g0 = grad ? rn_cast(grad, root->dtype)
                       : rn_full(root->ndim, root->shape, 1.0, root->dtype, rn_device(root));
  if (!g0) { rn_set_grad_enabled(saved_mode); return -1; }
  if (!root->grad_fn) { /* a leaf */
    bool h = hooks_on;
    rc = h ? hooks.begin(hooks.ud, &root, 1) : 0;
    if (rc == 0) rc = accumulate_leaf(root, g0);
    if (rc == 0 && h) rc = hooks.ready(hooks.ud, root);
    rn_release(g0);
    rn_set_grad_enabled(saved_mode);
    return rc;
  }
  /* collect reachable nodes and count consumers (iterative DFS) */
  nodevec all = {0}, stack = {0}, ready = {0};
  rn_node *r = root->grad_fn;
  static int epoch = 0;
  int mark = ++epoch;
  r->mark = mark;
  r->deps = 0;
  pend.n = 0;
  bool h = hooks_on;
  rc = push(&stack, r);
  while (rc == 0 && stack.n) {
    rn_node *m = stack.v[--stack.n];
    if ((rc = push(&all, m)) < 0) break;
    for (int i = 0; i < m->nin && rc == 0; i++) {
      rn_node *p = m->next[i];
      if (h && !p && m->leaf[i] && m->needs[i]) rc = pend_add(m->leaf[i]);
      if (!p) continue;
      if (p->mark != mark) { p->mark = mark; p->deps = 0; rc = push(&stack, p); }
      p->deps++;
    }
  }
  if (rc == 0 && h) rc = hooks.begin(hooks.ud, pend.leaf, pend.n);
  if (rc == 0) {
    r->gbuf = g0;
    g0 = NULL;
    rc = push(&ready, r);
  }
  while (rc == 0 && ready.n) {
    rn_node *m = ready.v[--ready.n];
    rc = profile_on ? run_node_timed(m, &ready, retain_graph) : run_node(m, &ready, retain_graph);
  }
  /* after an error, drop partial gradient buffers */
  for (int i = 0; i < all.n; i++) { rn_release(all.v[i]->gbuf); all.v[i]->gbuf = NULL; }
  rn_release(g0);
  free(all.v); free(stack.v); free(ready.v);
  rn_set_grad_enabled(saved_mode);
  return rc;
}
