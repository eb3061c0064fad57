/* matmul.c (ops) - matrix products through the backend's gemm slot, and the
 * dense layer built on them.
 *
 * rn_matmul shapes (numpy/torch rules): (...,M,K) @ (...,K,N) -> (...,M,N)
 * with the leading (batch) dims broadcast against each other, any number of
 * them (up to RN_MAXDIM in all); a 1-D a (K) is a row (1,K) and a 1-D b (K)
 * a column (K,1), whose dim is dropped from the result:
 *   (K) @ (K,N) -> (N)   (M,K) @ (K) -> (M)   (K) @ (K) -> ()
 *   (B,H,M,K) @ (B,H,K,N) -> (B,H,M,N)   (B,1,M,K) @ (H,K,N) -> (B,H,M,N)
 * Every operand is seen as a batch of matrices over the broadcast batch: the
 * batch dims of one operand merge into a single stride when they can (a
 * contiguous batch, or all broadcast: one shared matrix); otherwise (a
 * partly broadcast operand) its expanded view is copied once. A view whose
 * last two dims are transposed (unit stride on the row dim) goes to gemm
 * with its transpose flag instead of being copied.
 * Backward: gA = g @ B^T, gB = A^T @ g; for a shared (all-broadcast)
 * operand summed over the batch by gemm's beta = 1 accumulation, for a
 * partly broadcast one computed over the whole batch and summed down to its
 * shape by the tape (rn_sum_to).
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

/* The geometry of t used as the left (is_a) or right operand over the
 * batch shape (nbd dims): sh/st[0] the merged batch (sh[0] = 1 with st[0] =
 * 0 when every batch dim is broadcast), [1], [2] the matrix dims (a 1-D a
 * (K) is (1,K), a 1-D b (K) is (K,1)). False when the batch dims do not
 * merge into one stride. */
static bool promote(const rn_tensor *t, bool is_a, int nbd, const int64_t *bshape, int64_t sh[3],
                    int64_t st[3]) {
  if (t->ndim == 1) {
    if (is_a) { sh[1] = 1; st[1] = t->shape[0] * t->stride[0]; sh[2] = t->shape[0]; st[2] = t->stride[0]; }
    else { sh[1] = t->shape[0]; st[1] = t->stride[0]; sh[2] = 1; st[2] = 1; }
  } else {
    sh[1] = t->shape[t->ndim - 2]; st[1] = t->stride[t->ndim - 2];
    sh[2] = t->shape[t->ndim - 1]; st[2] = t->stride[t->ndim - 1];
  }
  int tb = t->ndim > 2 ? t->ndim - 2 : 0; /* t's own batch dims, right-aligned */
  int64_t nb = 1, inner = -1, expect = 0; /* stride the next outer dim must have */
  bool shared = true, merged = true;
  for (int d = nbd - 1; d >= 0; d--) {
    int td = d - (nbd - tb);
    int64_t size = bshape[d], stride = (td >= 0 && t->shape[td] != 1) ? t->stride[td] : 0;
    nb *= size;
    if (size == 1) continue;
    if (stride != 0) shared = false;
    if (inner < 0) inner = stride;
    else if (stride != expect) merged = false;
    expect = stride * size;
  }
  if (shared) { sh[0] = 1; st[0] = 0; return true; }
  sh[0] = nb;
  st[0] = inner;
  return merged;
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

/* The operand for tensor t over the batch shape; *tmp receives a
 * contiguous copy (of the view expanded to the batch shape, when its batch
 * dims do not merge) when t's strides do not suit gemm (release it after). */
static int operand(mat *m, rn_tensor *t, bool is_a, int nbd, const int64_t *bshape,
                   rn_tensor **tmp) {
  int64_t sh[3], st[3];
  *tmp = NULL;
  bool merges = promote(t, is_a, nbd, bshape, sh, st);
  if (merges && classify(m, t, sh, st)) return 0;
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  rn_tensor *src = t;
  if (!merges) { /* t has >= 2 dims here: 1-D operands are always shared */
    int64_t esh[RN_MAXDIM];
    memcpy(esh, bshape, (size_t)nbd * sizeof *esh);
    esh[nbd] = t->shape[t->ndim - 2];
    esh[nbd + 1] = t->shape[t->ndim - 1];
    src = rn_expand(t, nbd + 2, esh);
  }
  *tmp = src ? rn_clone(src) : NULL;
  if (src != t) rn_release(src);
  rn_set_grad_enabled(g);
  if (!*tmp) return -1;
  promote(*tmp, is_a, nbd, bshape, sh, st);
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
  if (nb > 1 && om->nb == nb && be->gemm_batched)
    return be->gemm_batched(dt, a->tr, b->tr, M, N, K, 1.0, a->p, a->ld, a->nb > 1 ? a->bs : 0,
                            b->p, b->ld, b->nb > 1 ? b->bs : 0, 0.0, om->p, om->ld, om->bs, nb);
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

typedef struct {
  int64_t B, M, K, N;
  int nbd; /* the broadcast batch shape */
  int64_t bshape[RN_MAXDIM];
} mm_ctx;

/* A gradient for input i (in_shape s, operand geometry om_nb batches of
 * rows x cols), and in *onb the number of matrices bmm writes into it: the
 * input's shape when it is one matrix (its products summed over the batch:
 * onb 1) or the operand's own om_nb matrices; else the whole batch (bshape,
 * rows, cols; onb B), which the tape sums down to the input's shape. An
 * operand whose batch strides are all 0 (an expanded view) is one matrix
 * to gemm but a whole batch to autograd: each view of it gets its own
 * product, so it takes the last branch. */
static rn_tensor *grad_for(const mm_ctx *c, const rn_inshape *s, int64_t om_nb, int64_t rows,
                           int64_t cols, rn_devtype dev, int64_t *onb) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++) n *= s->shape[i];
  if (n == rows * cols || (om_nb > 1 && n == om_nb * rows * cols)) {
    *onb = n == rows * cols ? 1 : om_nb;
    return rn_empty(s->ndim, s->shape, s->dtype, dev);
  }
  int64_t sh[RN_MAXDIM];
  memcpy(sh, c->bshape, (size_t)c->nbd * sizeof *sh);
  sh[c->nbd] = rows;
  sh[c->nbd + 1] = cols;
  *onb = c->B;
  return rn_empty(c->nbd + 2, sh, s->dtype, dev);
}

static int matmul_bw(rn_node *n, rn_tensor *g, rn_tensor **gin) {
  mm_ctx *c = n->ctx;
  rn_tensor *a = n->saved[0], *b = n->saved[1];
  rn_tensor *gc = rn_contiguous(g), *ta = NULL, *tb = NULL, *ga = NULL, *gb = NULL;
  mat am, bm, gm = {0};
  int rc = gc ? 0 : -1;
  if (rc == 0) gm = out_mat(gc, c->B, c->M, c->N);
  if (rc == 0) rc = operand(&am, a, true, c->nbd, c->bshape, &ta);
  if (rc == 0) rc = operand(&bm, b, false, c->nbd, c->bshape, &tb);
  if (rc == 0 && n->needs[0]) { /* gA = g @ B^T: (Ba,M,K) */
    int64_t onb = 1;
    ga = grad_for(c, &n->in_shape[0], am.nb, c->M, c->K, rn_device(a), &onb);
    mat om = ga ? out_mat(ga, onb, c->M, c->K) : gm, bt = transposed(bm);
    rc = ga ? bmm(a->dtype, ga, &om, &gm, &bt) : -1;
  }
  if (rc == 0 && n->needs[1]) { /* gB = A^T @ g: (Bb,K,N) */
    int64_t onb = 1;
    gb = grad_for(c, &n->in_shape[1], bm.nb, c->K, c->N, rn_device(b), &onb);
    mat om = gb ? out_mat(gb, onb, c->K, c->N) : gm, at = transposed(am);
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
  if (a->ndim < 1 || b->ndim < 1) {
    rn_err("%s: shapes %s and %s: each operand needs at least 1 dim", name,
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
  /* the batch dims broadcast, right-aligned */
  int nba = a->ndim > 2 ? a->ndim - 2 : 0, nbb = b->ndim > 2 ? b->ndim - 2 : 0;
  int nbd = nba > nbb ? nba : nbb;
  int64_t bshape[RN_MAXDIM], B = 1;
  for (int d = 0; d < nbd; d++) {
    int da = d - (nbd - nba), db = d - (nbd - nbb);
    int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      rn_err("%s: batch dims of %s and %s do not broadcast (batch dim %d: %lld vs %lld)", name,
             rn_shape_str(a, b1, sizeof b1), rn_shape_str(b, b2, sizeof b2), d + 1,
             (long long)sa, (long long)sb);
      return NULL;
    }
    bshape[d] = sa == 1 ? sb : sa;
    B *= bshape[d];
  }
  int64_t M = a->ndim == 1 ? 1 : a->shape[a->ndim - 2];
  int64_t N = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
  int64_t osh[RN_MAXDIM + 2];
  int ond = nbd;
  memcpy(osh, bshape, (size_t)nbd * sizeof *osh);
  if (a->ndim >= 2) osh[ond++] = M;
  if (b->ndim >= 2) osh[ond++] = N;
  if (ond > RN_MAXDIM) {
    rn_err("%s: the result would have %d dims; at most %d", name, ond, RN_MAXDIM);
    return NULL;
  }
  rn_tensor *y = rn_empty(ond, osh, a->dtype, rn_device(a)), *ta = NULL, *tb = NULL;
  mat am, bm;
  int rc = y ? 0 : -1;
  if (rc == 0) rc = operand(&am, a, true, nbd, bshape, &ta);
  if (rc == 0) rc = operand(&bm, b, false, nbd, bshape, &tb);
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
      c->nbd = nbd;
      memcpy(c->bshape, bshape, sizeof bshape);
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
