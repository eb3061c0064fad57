/* wino_kern.h (cpu) - the Winograd F(4x4,3x3) block kernel, written once
 * over a vector type and included by each per-ISA file (wino_avx2.c,
 * wino_avx512.c), which defines before including it:
 *   VL                floats per vector; vf the vector type
 *   VZERO() VLOAD(p) VSTORE(p,v) VBCAST(s) VADD VSUB VMUL VMAX(a,b)
 *   VFMA(a,b,c)       a*b + c, fused
 *   KNAME             the rn_wino_isa's name, ISA_FN the getter's name
 * For tiles t0..t0+nt-1 of a job (wino.h):
 *   1. input transform, fused with the tile loads: V[p][t][c] = (B^T d B)[p]
 *      for the 6x6 input patch d of tile t (zeros outside x), over channel
 *      vectors (NHWC: a pixel's channels are contiguous);
 *   2. 36 GEMMs M[p] (Tp, Op) = V[p] (Tp, C) @ U[p] (C, Op), by a 6-row x
 *      2-vector register kernel (12 accumulators), U's column panel reused
 *      across all the block's rows while it sits in L1;
 *   3. output transform, fused with the stores: y tile = A^T m A (+ bias,
 *      + y's values for RN_POST_SUM, then max 0 for RN_POST_RELU).
 * Each output value depends only on its own tile's inputs and a fixed sum
 * order, so results do not depend on the block size or the thread count.
 *
 * B^T (6x6), A^T (4x6) of F(4x4,3x3) (Lavin & Gray), interpolation points
 * 0, +-1, +-2, inf (the filter side G is applied in wino.c). */

/* 6 -> 6: B^T applied to d0..d5 */
#define BT6(d, r)                                                                        \
  do {                                                                                   \
    vf t4_ = VSUB(d[4], d[2]), t1_ = VSUB(d[3], d[1]);                                   \
    r[0] = VADD(VFMA(VBCAST(4.f), d[0], VMUL(VBCAST(-5.f), d[2])), d[4]);                \
    r[1] = VSUB(VADD(d[4], d[3]), VMUL(VBCAST(4.f), VADD(d[1], d[2])));                  \
    r[2] = VADD(VSUB(d[4], d[3]), VMUL(VBCAST(4.f), VSUB(d[1], d[2])));                  \
    r[3] = VFMA(VBCAST(2.f), t1_, t4_);                                                  \
    r[4] = VFMA(VBCAST(-2.f), t1_, t4_);                                                 \
    r[5] = VADD(VFMA(VBCAST(4.f), d[1], VMUL(VBCAST(-5.f), d[3])), d[5]);                \
  } while (0)

/* 6 -> 4: A^T applied to m0..m5 */
#define AT6(m, r)                                                                        \
  do {                                                                                   \
    vf s12_ = VADD(m[1], m[2]), d12_ = VSUB(m[1], m[2]);                                 \
    vf s34_ = VADD(m[3], m[4]), d34_ = VSUB(m[3], m[4]);                                 \
    r[0] = VADD(VADD(m[0], s12_), s34_);                                                 \
    r[1] = VFMA(VBCAST(2.f), d34_, d12_);                                                \
    r[2] = VFMA(VBCAST(4.f), s34_, s12_);                                                \
    r[3] = VADD(VFMA(VBCAST(8.f), d34_, d12_), m[5]);                                    \
  } while (0)

/* Tile tile's origin: image n, first output row oh0 and column ow0. */
static inline void tile_pos(const rn_wino_job *j, int64_t tile, int64_t *n, int64_t *oh0,
                            int64_t *ow0) {
  int64_t per = j->th * j->tw, r = tile % per;
  *n = tile / per;
  *oh0 = (r / j->tw) * 4;
  *ow0 = (r % j->tw) * 4;
}

/* Input transform of tile t (block row t of V), channels c0..c0+VL-1 (or
 * the cn < VL remaining ones, through a zero-padded copy). */
static inline void in_tile(const rn_wino_job *j, int64_t tile, int64_t t, int64_t Tp, float *V) {
  int64_t n, oh0, ow0;
  tile_pos(j, tile, &n, &oh0, &ow0);
  const int64_t H = j->H, W = j->W, C = j->C, ih0 = oh0 - j->pt, iw0 = ow0 - j->pl;
  const float *xn = j->x + n * H * W * C;
  bool inner = ih0 >= 0 && iw0 >= 0 && ih0 + 6 <= H && iw0 + 6 <= W;
  for (int64_t c0 = 0; c0 < C; c0 += VL) {
    int64_t cn = C - c0 < VL ? C - c0 : VL;
    vf d[6][6], tmp[6][6];
    for (int i = 0; i < 6; i++) {
      int64_t ih = ih0 + i;
      for (int k = 0; k < 6; k++) {
        int64_t iw = iw0 + k;
        if (!inner && (ih < 0 || ih >= H || iw < 0 || iw >= W)) {
          d[i][k] = VZERO();
        } else if (cn == VL) {
          d[i][k] = VLOAD(xn + (ih * W + iw) * C + c0);
        } else {
          float buf[VL] = {0};
          for (int64_t c = 0; c < cn; c++) buf[c] = xn[(ih * W + iw) * C + c0 + c];
          d[i][k] = VLOAD(buf);
        }
      }
    }
    /* columns: tmp[.][k] = B^T d[.][k]; rows: V = tmp B */
    for (int k = 0; k < 6; k++) {
      vf col[6] = {d[0][k], d[1][k], d[2][k], d[3][k], d[4][k], d[5][k]}, r[6];
      BT6(col, r);
      for (int i = 0; i < 6; i++) tmp[i][k] = r[i];
    }
    for (int i = 0; i < 6; i++) {
      vf r[6];
      BT6(tmp[i], r);
      for (int k = 0; k < 6; k++) {
        float *dst = V + ((int64_t)(i * 6 + k) * Tp + t) * C + c0;
        if (cn == VL) {
          VSTORE(dst, r[k]);
        } else {
          float buf[VL];
          VSTORE(buf, r[k]);
          for (int64_t c = 0; c < cn; c++) dst[c] = buf[c];
        }
      }
    }
  }
}

/* C (6, NV*VL) = A (6, K) @ B (K, NV*VL); lda, ldb, ldc in floats */
#define DEF_MK(NAME, NV)                                                                 \
  static inline void NAME(const float *A, int64_t lda, const float *B, int64_t ldb,      \
                          int64_t K, float *Cm, int64_t ldc) {                           \
    vf acc[6][NV];                                                                       \
    for (int r = 0; r < 6; r++)                                                          \
      for (int v = 0; v < NV; v++) acc[r][v] = VZERO();                                  \
    for (int64_t k = 0; k < K; k++) {                                                    \
      vf b[NV];                                                                          \
      for (int v = 0; v < NV; v++) b[v] = VLOAD(B + k * ldb + v * VL);                   \
      for (int r = 0; r < 6; r++) {                                                      \
        vf a = VBCAST(A[r * lda + k]);                                                   \
        for (int v = 0; v < NV; v++) acc[r][v] = VFMA(a, b[v], acc[r][v]);               \
      }                                                                                  \
    }                                                                                    \
    for (int r = 0; r < 6; r++)                                                          \
      for (int v = 0; v < NV; v++) VSTORE(Cm + r * ldc + v * VL, acc[r][v]);             \
  }
DEF_MK(mk_2v, 2)
DEF_MK(mk_1v, 1)

/* Output transform of block row t into its tile of y. */
static inline void out_tile(const rn_wino_job *j, int64_t tile, int64_t t, int64_t Tp,
                            const float *M) {
  int64_t n, oh0, ow0;
  tile_pos(j, tile, &n, &oh0, &ow0);
  const int64_t O = j->O, Op = j->Op, OW = j->OW;
  const int64_t rows = j->OH - oh0 < 4 ? j->OH - oh0 : 4, cols = OW - ow0 < 4 ? OW - ow0 : 4;
  float *yt = j->y + ((n * j->OH + oh0) * OW + ow0) * O;
  for (int64_t o0 = 0; o0 < O; o0 += VL) {
    int64_t on = O - o0 < VL ? O - o0 : VL;
    vf m[6][6], tmp[4][6];
    for (int p = 0; p < 36; p++) m[p / 6][p % 6] = VLOAD(M + ((int64_t)p * Tp + t) * Op + o0);
    for (int k = 0; k < 6; k++) {
      vf col[6] = {m[0][k], m[1][k], m[2][k], m[3][k], m[4][k], m[5][k]}, r[4];
      AT6(col, r);
      for (int i = 0; i < 4; i++) tmp[i][k] = r[i];
    }
    vf bias = j->bias ? VLOAD(j->bias + o0) : VZERO();
    for (int i = 0; i < rows; i++) {
      vf r[4];
      AT6(tmp[i], r);
      for (int k = 0; k < cols; k++) {
        float *dst = yt + (i * OW + k) * O + o0;
        vf v = VADD(r[k], bias);
        if (on == VL) {
          if (j->post & RN_POST_SUM) v = VADD(v, VLOAD(dst));
          if (j->post & RN_POST_RELU) v = VMAX(v, VZERO());
          VSTORE(dst, v);
        } else {
          float buf[VL] = {0};
          if (j->post & RN_POST_SUM)
            for (int64_t c = 0; c < on; c++) buf[c] = dst[c];
          v = VADD(v, VLOAD(buf));
          if (j->post & RN_POST_RELU) v = VMAX(v, VZERO());
          VSTORE(buf, v);
          for (int64_t c = 0; c < on; c++) dst[c] = buf[c];
        }
      }
    }
  }
}

static void wino_block(const rn_wino_job *j, int64_t t0, int64_t nt, float *V, float *M) {
  const int64_t Tp = (nt + 5) / 6 * 6, C = j->C, Op = j->Op;
  for (int64_t t = 0; t < nt; t++) in_tile(j, t0 + t, t, Tp, V);
  if (Tp > nt) /* the GEMM kernel's padding rows: zeros, never read back */
    for (int p = 0; p < 36; p++)
      for (int64_t t = nt; t < Tp; t++)
        for (int64_t c = 0; c < C; c++) V[((int64_t)p * Tp + t) * C + c] = 0;
  for (int p = 0; p < 36; p++) {
    const float *A = V + (int64_t)p * Tp * C, *B = j->U + (int64_t)p * C * Op;
    float *Cm = M + (int64_t)p * Tp * Op;
    int64_t o = 0;
    for (; o + 2 * VL <= Op; o += 2 * VL)
      for (int64_t t = 0; t < Tp; t += 6) mk_2v(A + t * C, C, B + o, Op, C, Cm + t * Op + o, Op);
    for (; o < Op; o += VL)
      for (int64_t t = 0; t < Tp; t += 6) mk_1v(A + t * C, C, B + o, Op, C, Cm + t * Op + o, Op);
  }
  for (int64_t t = 0; t < nt; t++) out_tile(j, t0 + t, t, Tp, M);
}

static const rn_wino_isa kern = {KNAME, VL, wino_block};
const rn_wino_isa *ISA_FN(void) { return &kern; }
