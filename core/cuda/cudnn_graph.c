/* cudnn_graph.c (cuda) - issue 19: the three convolution directions through
 * cuDNN 9's graph (backend) API, with an execution plan built once per
 * (direction, shapes, dtype, groups, padding, strides, dilations,
 * deterministic mode, math policy, the operands' byte alignments) and kept;
 * the steady state builds nothing and runs cudnnBackendExecute with a
 * variant pack of the call's pointers. Off by default: $RN_CUDNN_GRAPH=1
 * turns it on (the legacy API with cached descriptors, cudnn.c, stays the
 * default until a GPU run compares them).
 *
 * Per key (the raw-backend sequence of the cudnn-frontend samples):
 *   tensors x, w, y: dims in N,C,H,W order, NHWC / KRSC strides, unique ids
 *   'x', 'w', 'y', the byte alignment of this call's pointers;
 *   a convolution descriptor (cross-correlation, 2 spatial dims, FLOAT
 *   compute for float32 and bf16 data, symmetric pre/post paddings: the
 *   asymmetric case arrives already padded, as for the legacy call);
 *   the operation (forward, backward data, backward filter; alpha 1, beta
 *   0), the operation graph, heuristics mode A, and the first engine
 *   config whose plan finalizes, skipping configs whose numerical notes
 *   say DOWN_CONVERT_INPUTS, TENSOR_CORE for float32 without TF32
 *   ($RN_CUDA_TF32), or NONDETERMINISTIC in deterministic mode, and plans
 *   whose workspace exceeds $RN_CUDNN_WS_MB (default 1024 MiB).
 * A key with no usable plan is remembered as such and takes the legacy
 * path. The workspace comes from the caching allocator per call (stream
 * ordered). Every descriptor of a key lives as long as its plan (the cache
 * never forgets a key: a model has a few dozen). float64 (NCHW copies)
 * always takes the legacy path. Parity passed on an H200 (2026-12-04: the conv
 * tests with RN_CUDNN_GRAPH=1; doc/perf.md).
 */
#include <stdlib.h>
#include <string.h>

#include "cudnn_int.h"

typedef cudnnStatus_t (*be_create_fn)(cudnnBackendDescriptorType_t, cudnnBackendDescriptor_t *);
typedef cudnnStatus_t (*be_destroy_fn)(cudnnBackendDescriptor_t);
typedef cudnnStatus_t (*be_finalize_fn)(cudnnBackendDescriptor_t);
typedef cudnnStatus_t (*be_set_fn)(cudnnBackendDescriptor_t, cudnnBackendAttributeName_t,
                                   cudnnBackendAttributeType_t, int64_t, const void *);
typedef cudnnStatus_t (*be_get_fn)(cudnnBackendDescriptor_t const, cudnnBackendAttributeName_t,
                                   cudnnBackendAttributeType_t, int64_t, int64_t *, void *);
typedef cudnnStatus_t (*be_exec_fn)(cudnnHandle_t, cudnnBackendDescriptor_t,
                                    cudnnBackendDescriptor_t);

static struct {
  int state; /* 0: not looked up, 1: ready, -1: off or unusable */
  be_create_fn create;
  be_destroy_fn destroy;
  be_finalize_fn finalize;
  be_set_fn set;
  be_get_fn get;
  be_exec_fn exec;
} be;

_Static_assert(__builtin_types_compatible_p(__typeof__(&cudnnBackendCreateDescriptor), be_create_fn),
               "cudnnBackendCreateDescriptor's type");
_Static_assert(__builtin_types_compatible_p(__typeof__(&cudnnBackendSetAttribute), be_set_fn),
               "cudnnBackendSetAttribute's type");
_Static_assert(__builtin_types_compatible_p(__typeof__(&cudnnBackendGetAttribute), be_get_fn),
               "cudnnBackendGetAttribute's type");
_Static_assert(__builtin_types_compatible_p(__typeof__(&cudnnBackendExecute), be_exec_fn),
               "cudnnBackendExecute's type");

static int sym(void *dst, size_t size, const char *name) {
  void *p = rn_dlib_sym(rn_dnn.lib, "cuDNN", name);
  if (!p) return -1;
  memcpy(dst, &p, size);
  return 0;
}

/* on when $RN_CUDNN_GRAPH=1 and the backend entry points are there */
static bool graph_on(void) {
  if (be.state == 0) {
    const char *e = getenv("RN_CUDNN_GRAPH");
    be.state = -1;
    if (e && strcmp(e, "1") == 0 && rn_dnn.lib &&
        sym(&be.create, sizeof be.create, "cudnnBackendCreateDescriptor") == 0 &&
        sym(&be.destroy, sizeof be.destroy, "cudnnBackendDestroyDescriptor") == 0 &&
        sym(&be.finalize, sizeof be.finalize, "cudnnBackendFinalize") == 0 &&
        sym(&be.set, sizeof be.set, "cudnnBackendSetAttribute") == 0 &&
        sym(&be.get, sizeof be.get, "cudnnBackendGetAttribute") == 0 &&
        sym(&be.exec, sizeof be.exec, "cudnnBackendExecute") == 0)
      be.state = 1;
  }
  return be.state == 1;
}

/* ---- the plan cache ------------------------------------------------------- */

#define MAXD 16 /* descriptors a key keeps */

typedef struct {
  conv_key key;
  int bf16, align[3];
  int usable; /* 0: no plan for this key (legacy path) */
  cudnnBackendDescriptor_t plan, keep[MAXD];
  int nkeep;
  int64_t ws;
} plan_entry;

static plan_entry *plans;
static int nplans, capplans;

static int align_of(const void *p) {
  uintptr_t a = (uintptr_t)p;
  int al = 16;
  while (al > 1 && a % (uintptr_t)al) al /= 2;
  return al;
}

/* ---- building ------------------------------------------------------------- */

typedef struct {
  plan_entry *e;
  int rc; /* the first failure's status, as a cudnnStatus_t */
} builder;

static cudnnBackendDescriptor_t make(builder *b, cudnnBackendDescriptorType_t t) {
  cudnnBackendDescriptor_t d = NULL;
  if (b->rc) return NULL;
  if (b->e->nkeep >= MAXD) {
    b->rc = CUDNN_STATUS_INTERNAL_ERROR;
    return NULL;
  }
  cudnnStatus_t st = be.create(t, &d);
  if (st != CUDNN_STATUS_SUCCESS) {
    b->rc = (int)st;
    return NULL;
  }
  b->e->keep[b->e->nkeep++] = d;
  return d;
}

static void set(builder *b, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a,
                cudnnBackendAttributeType_t t, int64_t n, const void *v) {
  if (b->rc || !d) return;
  cudnnStatus_t st = be.set(d, a, t, n, v);
  if (st != CUDNN_STATUS_SUCCESS) b->rc = (int)st;
}

static void fin(builder *b, cudnnBackendDescriptor_t d) {
  if (b->rc || !d) return;
  cudnnStatus_t st = be.finalize(d);
  if (st != CUDNN_STATUS_SUCCESS) b->rc = (int)st;
}

/* an NHWC tensor (or KRSC filter) of dims n,c,h,w */
static cudnnBackendDescriptor_t tensor(builder *b, int64_t uid, cudnnDataType_t dt, int64_t n,
                                       int64_t c, int64_t h, int64_t w, int64_t align) {
  cudnnBackendDescriptor_t d = make(b, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  int64_t dims[4] = {n, c, h, w}, str[4] = {h * w * c, 1, w * c, c};
  set(b, d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
  set(b, d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
  set(b, d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str);
  set(b, d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  set(b, d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
  fin(b, d);
  return d;
}

/* whether an engine config's numerical notes allow it */
static bool notes_ok(cudnnBackendDescriptor_t cfg, const conv_key *k, bool bf16) {
  cudnnBackendDescriptor_t eng = NULL;
  if (be.create(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS) return false;
  int64_t n = 0;
  bool ok = be.get(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &eng) ==
            CUDNN_STATUS_SUCCESS;
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  int64_t nn = 0;
  if (ok && be.get(eng, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                   CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &nn, notes) != CUDNN_STATUS_SUCCESS)
    ok = false;
  for (int64_t i = 0; ok && i < nn; i++) {
    if (notes[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS) ok = false;
    if (notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE && !bf16 && !rn_dnn_tf32_allowed()) ok = false;
    if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC && k->det) ok = false;
  }
  be.destroy(eng);
  return ok;
}

static int64_t ws_limit(void) {
  const char *e = getenv("RN_CUDNN_WS_MB");
  long mb = e ? atol(e) : 1024;
  return (int64_t)(mb > 0 ? mb : 1024) << 20;
}

/* builds e's plan; e->usable stays 0 when no config gives one */
static void build(plan_entry *e, int kind) {
  const conv_key *k = &e->key;
  builder b = {e, 0};
  cudnnDataType_t dt = e->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
  cudnnDataType_t comp = CUDNN_DATA_FLOAT;
  int64_t oh = (k->h + 2 * k->ph - k->dh * (k->r - 1) - 1) / k->sh + 1;
  int64_t ow = (k->w + 2 * k->pw - k->dw * (k->s - 1) - 1) / k->sw + 1;
  cudnnBackendDescriptor_t x = tensor(&b, 'x', dt, k->n, k->c, k->h, k->w, e->align[0]);
  cudnnBackendDescriptor_t w = tensor(&b, 'w', dt, k->k, k->c / k->groups, k->r, k->s, e->align[1]);
  cudnnBackendDescriptor_t y = tensor(&b, 'y', dt, k->n, k->k, oh, ow, e->align[2]);
  cudnnBackendDescriptor_t conv = make(&b, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  int64_t sd = 2, dil[2] = {k->dh, k->dw}, str[2] = {k->sh, k->sw}, pad[2] = {k->ph, k->pw};
  set(&b, conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
  set(&b, conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
  set(&b, conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &sd);
  set(&b, conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil);
  set(&b, conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, str);
  set(&b, conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  set(&b, conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  fin(&b, conv);
  float alpha = 1, beta = 0;
  cudnnBackendDescriptor_t op;
  cudnnBackendDescriptorType_t ot =
      kind == K_FWD        ? CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR
      : kind == K_BWD_DATA ? CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR
                           : CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR;
  op = make(&b, ot);
  const cudnnBackendAttributeType_t D = CUDNN_TYPE_BACKEND_DESCRIPTOR;
  if (kind == K_FWD) {
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, D, 1, &x);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, D, 1, &w);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, D, 1, &y);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, D, 1, &conv);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta);
  } else if (kind == K_BWD_DATA) {
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, D, 1, &x);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, D, 1, &w);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, D, 1, &y);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC, D, 1, &conv);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA, CUDNN_TYPE_FLOAT, 1, &beta);
  } else {
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, D, 1, &w);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, D, 1, &x);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, D, 1, &y);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, D, 1, &conv);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha);
    set(&b, op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA, CUDNN_TYPE_FLOAT, 1, &beta);
  }
  fin(&b, op);
  cudnnBackendDescriptor_t graph = make(&b, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  set(&b, graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &rn_dnn.h);
  set(&b, graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, D, 1, &op);
  fin(&b, graph);
  cudnnBackendDescriptor_t heur = make(&b, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  cudnnBackendHeurMode_t hm = CUDNN_HEUR_MODE_A;
  set(&b, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, D, 1, &graph);
  set(&b, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &hm);
  fin(&b, heur);
  if (b.rc) return;
  int64_t count = 0;
  if (be.get(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, D, 0, &count, NULL) != CUDNN_STATUS_SUCCESS ||
      count <= 0)
    return;
  if (count > 64) count = 64;
  cudnnBackendDescriptor_t cfgs[64];
  int made = 0;
  for (; made < count; made++)
    if (be.create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[made]) != CUDNN_STATUS_SUCCESS) break;
  int64_t got = 0;
  if (made == count && be.get(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, D, count, &got, cfgs) ==
                           CUDNN_STATUS_SUCCESS) {
    int64_t limit = ws_limit();
    for (int64_t i = 0; i < got && !e->usable; i++) {
      if (!notes_ok(cfgs[i], k, e->bf16)) continue;
      cudnnBackendDescriptor_t plan = NULL;
      if (be.create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) != CUDNN_STATUS_SUCCESS) break;
      int64_t ws = 0, nws = 0;
      bool ok = be.set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &rn_dnn.h) ==
                    CUDNN_STATUS_SUCCESS &&
                be.set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, D, 1, &cfgs[i]) ==
                    CUDNN_STATUS_SUCCESS &&
                be.finalize(plan) == CUDNN_STATUS_SUCCESS && /* NOT_SUPPORTED: the next */
                be.get(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &nws,
                       &ws) == CUDNN_STATUS_SUCCESS &&
                ws >= 0 && ws <= limit && e->nkeep < MAXD;
      if (!ok) {
        be.destroy(plan);
        continue;
      }
      e->keep[e->nkeep++] = cfgs[i]; /* the plan's config lives as long as the plan */
      cfgs[i] = NULL;
      e->plan = plan;
      e->ws = ws;
      e->usable = 1;
    }
  }
  for (int i = 0; i < made; i++)
    if (cfgs[i]) be.destroy(cfgs[i]);
}

static plan_entry *lookup(const cgeom *g, int kind, const void *x, const void *w, const void *y) {
  conv_key k = g->key;
  k.kind = kind;
  int al[3] = {align_of(x), align_of(w), align_of(y)};
  for (int i = 0; i < nplans; i++) {
    plan_entry *e = &plans[i];
    if (memcmp(&e->key, &k, sizeof k) == 0 && e->bf16 == (int)g->bf16 && e->align[0] == al[0] &&
        e->align[1] == al[1] && e->align[2] == al[2])
      return e;
  }
  if (nplans == capplans) {
    int nc = capplans ? capplans * 2 : 64;
    plan_entry *p = realloc(plans, sizeof *p * (size_t)nc);
    if (!p) return NULL;
    plans = p;
    capplans = nc;
  }
  plan_entry *e = &plans[nplans++];
  memset(e, 0, sizeof *e);
  e->key = k;
  e->bf16 = g->bf16;
  memcpy(e->align, al, sizeof al);
  build(e, kind);
  if (!e->usable) { /* keep the key (legacy from now on), drop its descriptors */
    for (int i = e->nkeep - 1; i >= 0; i--) be.destroy(e->keep[i]);
    e->nkeep = 0;
  }
  return e;
}

int rn_dnn_graph_conv(const cgeom *g, int kind, const void *x, const void *w, void *y, bool *used) {
  *used = false;
  if (g->nchw || g->key.dt != RN_F32 || !graph_on()) return 0;
  /* memcmp of keys needs their padding bytes equal: conv_key is all ints */
  _Static_assert(sizeof(conv_key) == 19 * sizeof(int), "conv_key must be ints only");
  plan_entry *e = lookup(g, kind, x, w, y);
  if (!e || !e->usable) return 0;
  void *ws = e->ws ? rn_cuda_alloc((size_t)e->ws) : NULL;
  if (e->ws && !ws) return -1;
  int64_t uids[3] = {'x', 'w', 'y'};
  void *ptrs[3] = {(void *)x, (void *)w, y};
  cudnnBackendDescriptor_t vp = NULL;
  int rc = rn_dnn_check(be.create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp),
                        "cudnnBackendCreateDescriptor(variant pack)", __FILE__, __LINE__);
  if (rc == 0)
    rc = rn_dnn_check(be.set(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids),
                      "cudnnBackendSetAttribute(uids)", __FILE__, __LINE__);
  if (rc == 0)
    rc = rn_dnn_check(be.set(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, ptrs),
                      "cudnnBackendSetAttribute(pointers)", __FILE__, __LINE__);
  if (rc == 0)
    rc = rn_dnn_check(be.set(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws),
                      "cudnnBackendSetAttribute(workspace)", __FILE__, __LINE__);
  if (rc == 0)
    rc = rn_dnn_check(be.finalize(vp), "cudnnBackendFinalize(variant pack)", __FILE__, __LINE__);
  if (rc == 0)
    rc = rn_dnn_check(be.exec(rn_dnn.h, e->plan, vp), "cudnnBackendExecute", __FILE__, __LINE__);
  if (vp) be.destroy(vp);
  rn_cuda_free(ws);
  if (rc == 0) *used = true;
  return rc;
}
