/* matmul.c (ops) - matrix products through the backend's gemm slot, and the
 * dense layer built on them.
 *
 * rn_matmul shapes (numpy/torch rules, at most 3 dims):
 *   (M,K) @ (K,N) -> (M,N)          (K) @ (K,N) -> (N)       (M,K) @ (K) -> (M)
 *   (K) @ (K) -> ()                 (B,M,K) @ (B,K,N) -> (B,M,N)
 *   (B,M,K) @ (K,N) -> (B,M,N)      (M,K) @ (B,K,N) -> (B,M,N)
 *   (B,M,K) @ (K) -> (B,M)          (K) @ (B,K,N) -> (B,N)
 * A batch size of 1 broadcasts against B. Every operand is seen as a batch of
 * row-major matrices; a view whose last two dims are transposed (unit stride
 * on the row dim) goes to gemm with its transpose flag instead of being
 * copied; other strided views are made contiguous first.
 * Backward: gA = g @ B^T, gB = A^T @ g, summed over a broadcast batch by
 * gemm's beta = 1 accumulation.
 */
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../backend.h"

/* One operand: nb matrices (nb == 1: shared by every batch), each of logical
 * shape rows x cols; element (i,j) of batch b is at
 * p + (b*bs + (tr ? j*ld + i : i*ld + j)) * esize. */
typedef struct {
  char *p;
  int64_t nb, bs, rows, cols, ld;
  bool tr;
} mat;

/* Promoted 3-D geometry of a tensor used as the left (is_a) or right
 * operand: 1-D a (K) -> (1,1,K); 1-D b (K) -> (1,K,1); 2-D -> (1,r,c). */
static void promote(const rn_tensor *t, bool is_a, int64_t sh[3], int64_t st[3]) {
  if (t->ndim == 1) {
    sh[0] = 1; st[0] = 0;
    if (is_a) { sh[1] = 1; st[1] = t->shape[0] * t->stride[0]; sh[2] = t->shape[0]; st[2] = t->stride[0]; }
    else { sh[1] = t->shape[0]; st[1] = t->stride[0]; sh[2] = 1; st[2] = 1; }
  } else if (t->ndim == 2) {
    sh[0] = 1; st[0] = 0;
    sh[1] = t->shape[0]; st[1] = t->stride[0];
    sh[2] = t->shape[1]; st[2] = t->stride[1];
  } else {
    for (int i = 0; i < 3; i++) { sh[i] = t->shape[i]; st[i] = t->stride[i]; }
  }
}

/* Fills m from a 3-D geometry; false when the inner two dims are not a
 * row-major or column-major matrix that gemm can read. */
static bool classify(mat *m, const rn_tensor *t, const int64_t sh[3], const int64_t st[3]) {
  int64_t r = sh[1], c = sh[2], sr = st[1], sc = st[2];
  m->p = rn_ptr(t);
  m->nb = sh[0];
  m->bs = sh[0] > 1 ? st[0] : 0;
  m->rows = r;
  m->cols = c;
  int64_t c1 = c > 1 ? c : 1, r1 = r > 1 ? r : 1;
  if ((c <= 1 || sc == 1) && (r <= 1 || sr >= c1)) {
    m->tr = false;
    m->ld = r <= 1 ? c1 : sr;
    return true;
  }
  if ((r <= 1 || sr == 1) && (c <= 1 || sc >= r1)) {
    m->tr = true;
    m->ld = c <= 1 ? r1 : sc;
    return true;
  }
  return false;
}

/* The operand for tensor t (3-D geometry from promote); *tmp receives a
 * contiguous copy when t's strides do not suit gemm (release it after use). */
static int operand(mat *m, rn_tensor *t, bool is_a, rn_tensor **tmp) {
  int64_t sh[3], st[3];
  *tmp = NULL;
  promote(t, is_a, sh, st);
  if (classify(m, t, sh, st)) return 0;
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  *tmp = rn_clone(t);
  rn_set_grad_enabled(g);
  if (!*tmp) return -1;
  promote(*tmp, is_a, sh, st);
  classify(m, *tmp, sh, st);
  return 0;
}

static mat transposed(mat m) {
  int64_t r = m.rows;
  m.rows = m.cols;
  m.cols = r;
  m.tr = !m.tr;
  return m;
}

/* The contiguous output (or gradient) tensor o seen as nb matrices of
 * rows x cols. */
static mat out_mat(rn_tensor *o, int64_t nb, int64_t rows, int64_t cols) {
  mat m = {rn_ptr(o), nb, rows * cols, rows, cols, cols > 1 ? cols : 1, false};
  return m;
}

/* o = a @ b for every batch; o (tensor behind om) is contiguous with om.nb
 * batches. With om.nb == 1 and a batched a or b, the products are summed
 * (gemm beta = 1 after the first). */
static int bmm(rn_dtype dt, rn_tensor *o, const mat *om, const mat *a, const mat *b) {
  const rn_backend *be = rn_backend_of(o);
  if (!RN_HAS(be, gemm)) return -1;
  int64_t M = a->rows, K = a->cols, N = b->cols;
  int64_t nb = a->nb > b->nb ? a->nb : b->nb;
  if (om->nb > nb) nb = om->nb;
  size_t es = rn_dtype_size(dt);
  if (rn_numel(o) == 0) return 0;
  if (K == 0) return be->fill(o, 0.0);
  /* (nb*M,K) @ (K,N): a's batches stacked as rows of one matrix */
  if (nb > 1 && om->nb == nb && a->nb == nb && b->nb == 1 && !a->tr && a->bs == M * a->ld)
    return be->gemm(dt, false, b->tr, nb * M, N, K, 1.0, a->p, a->ld, b->p, b->ld, 0.0, om->p,
                    om->ld);
  /* sum_i A_i B_i = [A_1 .. A_nb] [B_1; ..; B_nb]: one gemm over nb*K */
  if (nb > 1 && om->nb == 1 && a->nb == nb && b->nb == nb && a->tr && !b->tr &&
      a->bs == K * a->ld && b->bs == K * b->ld)
    return be->gemm(dt, true, false, M, N, nb * K, 1.0, a->p, a->ld, b->p, b->ld, 0.0, om->p,
                    om->ld);
  for (int64_t i = 0; i < nb; i++) {
    const char *ap = a->p + (size_t)(a->nb > 1 ? i * a->bs : 0) * es;
    const char *bp = b->p + (size_t)(b->nb > 1 ? i * b->bs : 0) * es;
    char *cp = om->p + (size_t)(om->nb > 1 ? i * om->bs : 0) * es;
    double beta = (om->nb == 1 && i > 0) ? 1.0 : 0.0;
    if (be->gemm(dt, a->tr, b->tr, M, N, K, 1.0, ap, a->ld, bp, b->ld, beta, cp, om->ld) < 0)
      return -1;
  }
  return 0;
}

/* ---- matmul -------------------------------------------------------------- */

typedef struct { int64_t B, M, K, N; } mm_ctx;

static int matmul_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  mm_ctx *c = n->ctx;
  rn_tensor *a = n->saved[0], *b = n->saved[1];
  rn_tensor *gc = rn_contiguous(g), *ta = NULL, *tb = NULL, *ga = NULL, *gb = NULL;
  mat am, bm, gm = {0};
  int rc = gc ? 0 : -1;
  if (rc == 0) gm = out_mat(gc, c->B, c->M, c->N);
  if (rc == 0) rc = operand(&am, a, true, &ta);
  if (rc == 0) rc = operand(&bm, b, false, &tb);
  if (rc == 0 && n->needs[0]) { /* gA = g @ B^T: (Ba,M,K) */
    rn_inshape *s = &n->in_shape[0];
    ga = rn_empty(s->ndim, s->shape, a->dtype, rn_device(a));
    mat om = ga ? out_mat(ga, am.nb, c->M, c->K) : gm, bt = transposed(bm);
    rc = ga ? bmm(a->dtype, ga, &om, &gm, &bt) : -1;
  }
  if (rc == 0 && n->needs[1]) { /* gB = A^T @ g: (Bb,K,N) */
    rn_inshape *s = &n->in_shape[1];
    gb = rn_empty(s->ndim, s->shape, b->dtype, rn_device(b));
    mat om = gb ? out_mat(gb, bm.nb, c->K, c->N) : gm, at = transposed(am);
    rc = gb ? bmm(b->dtype, gb, &om, &at, &gm) : -1;
  }
  rn_release(gc); rn_release(ta); rn_release(tb);
  if (rc < 0) { rn_release(ga); rn_release(gb); return -1; }
  gin[0] = ga;
  gin[1] = gb;
  return 0;
}

rn_tensor *rn_matmul(rn_tensor *a, rn_tensor *b) {
  const char *name = "matmul";
  char b1[128], b2[128];
  rn_tensor *ins[2] = {a, b};
  if (a->ndim < 1 || a->ndim > 3 || b->ndim < 1 || b->ndim > 3) {
    rn_err("%s: shapes %s and %s: each operand must have 1 to 3 dims", name,
           rn_shape_str(a, b1, sizeof b1), rn_shape_str(b, b2, sizeof b2));
    return NULL;
  }
  if (a->dtype != b->dtype) {
    rn_err("%s: dtypes differ (%s and %s); convert one with :to(dtype)", name,
           rn_dtype_name(a->dtype), rn_dtype_name(b->dtype));
    return NULL;
  }
  if (!rn_dtype_is_float(a->dtype)) {
    rn_err("%s: dtype %s is not a float type (use :float())", name, rn_dtype_name(a->dtype));
    return NULL;
  }
  if (rn_same_device(name, 2, ins) < 0) return NULL;
  int64_t Ka = a->shape[a->ndim - 1], Kb = b->shape[b->ndim == 1 ? 0 : b->ndim - 2];
  if (Ka != Kb) {
    rn_err("%s: shapes %s and %s cannot be multiplied (%lld != %lld)", name,
           rn_shape_str(a, b1, sizeof b1), rn_shape_str(b, b2, sizeof b2), (long long)Ka,
           (long long)Kb);
    return NULL;
  }
  int64_t Ba = a->ndim == 3 ? a->shape[0] : 1, Bb = b->ndim == 3 ? b->shape[0] : 1;
  if (Ba != Bb && Ba != 1 && Bb != 1) {
    rn_err("%s: batch sizes %lld and %lld of shapes %s and %s differ", name, (long long)Ba,
           (long long)Bb, rn_shape_str(a, b1, sizeof b1), rn_shape_str(b, b2, sizeof b2));
    return NULL;
  }
  int64_t B = Ba > Bb ? Ba : Bb, M = a->ndim == 1 ? 1 : a->shape[a->ndim - 2];
  int64_t N = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
  int64_t osh[3];
  int ond = 0;
  if (a->ndim == 3 || b->ndim == 3) osh[ond++] = B;
  if (a->ndim >= 2) osh[ond++] = M;
  if (b->ndim >= 2) osh[ond++] = N;
  rn_tensor *y = rn_empty(ond, osh, a->dtype, rn_device(a)), *ta = NULL, *tb = NULL;
  mat am, bm;
  int rc = y ? 0 : -1;
  if (rc == 0) rc = operand(&am, a, true, &ta);
  if (rc == 0) rc = operand(&bm, b, false, &tb);
  if (rc == 0) {
    mat om = out_mat(y, B, M, N);
    rc = bmm(a->dtype, y, &om, &am, &bm);
  }
  rn_release(ta);
  rn_release(tb);
  if (rc == 0 && rn_needs_grad(2, ins)) {
    rn_node *n = rn_node_new(name, matmul_bw, 2, ins);
    mm_ctx *c = n ? malloc(sizeof *c) : NULL;
    if (n && !c) rn_err("%s: out of memory recording the autograd node", name);
    if (!c || rn_node_save(n, a) < 0 || rn_node_save(n, b) < 0) {
      free(c);
      rn_node_release(n);
      rc = -1;
    } else {
      c->B = B; c->M = M; c->K = Ka; c->N = N;
      n->ctx = c;
      n->ctx_free = free;
      rn_node_attach(n, y);
    }
  }
  if (rc < 0) { rn_release(y); return NULL; }
  return y;
}

/* ---- linear -------------------------------------------------------------- */

/* x: (...,in), w: (in,out), b: (out) or NULL -> (...,out); composed from
 * matmul, reshape and add, so autograd follows from theirs. */
rn_tensor *rn_linear(rn_tensor *x, rn_tensor *w, rn_tensor *b) {
  const char *name = "linear";
  char b1[128], b2[128];
  if (w->ndim != 2) {
    rn_err("%s: w has shape %s; it must be 2-D (in,out)", name, rn_shape_str(w, b1, sizeof b1));
    return NULL;
  }
  if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[0]) {
    rn_err("%s: x %s and w %s: the last dim of x must equal the rows of w (%lld)", name,
           rn_shape_str(x, b1, sizeof b1), rn_shape_str(w, b2, sizeof b2),
           (long long)w->shape[0]);
    return NULL;
  }
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[1])) {
    rn_err("%s: b has shape %s; it must be (%lld), the columns of w %s", name,
           rn_shape_str(b, b1, sizeof b1), (long long)w->shape[1], rn_shape_str(w, b2, sizeof b2));
    return NULL;
  }
  rn_tensor *y;
  if (x->ndim <= 2) {
    y = rn_matmul(x, w);
  } else {
    int64_t sh2[2] = {-1, w->shape[0]}, osh[RN_MAXDIM];
    for (int i = 0; i < x->ndim - 1; i++) osh[i] = x->shape[i];
    osh[x->ndim - 1] = w->shape[1];
    rn_tensor *x2 = rn_reshape(x, 2, sh2);
    rn_tensor *y2 = x2 ? rn_matmul(x2, w) : NULL;
    y = y2 ? rn_reshape(y2, x->ndim, osh) : NULL;
    rn_release(x2);
    rn_release(y2);
  }
  if (!y || !b) return y;
  rn_tensor *r = rn_binary(RN_OP_ADD, y, b);
  rn_release(y);
  return r;
}
