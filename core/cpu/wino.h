/* wino.h (cpu) - rnlua's own Winograd F(4x4,3x3) convolution (wino.c) for
 * float32 NHWC 3x3 stride-1 undilated ungrouped layers, forward (with the
 * fused epilogues) and backward-data, and the interface between wino.c and
 * its per-ISA kernels (wino_avx2.c, wino_avx512.c: one template,
 * wino_kern.h, compiled with -mavx2 -mfma / -mavx512f ... per file).
 *
 * Entry points return 0, -1 after rn_err, or RN_WINO_SKIP (no error set)
 * when ours does not run for the call (not applicable, not chosen for the
 * shape, no AVX2+FMA under the ISA cap, ...): the caller then runs oneDNN /
 * im2col as before. */
#ifndef RN_WINO_H
#define RN_WINO_H

#include "cpu.h"

#define RN_WINO_SKIP 2

/* AUTO: ours where it applies and both sides have 16+ channels (a fixed
 * rule: the same kernels every run, so results are reproducible); BENCHMARK:
 * per shape, ours or oneDNN's, whichever measured faster on first use (like
 * cudnn.benchmark; cached; a timed choice can differ between processes);
 * ALWAYS: ours wherever it applies; NEVER: oneDNN / im2col only */
typedef enum {
  RN_WINO_AUTO = 0, RN_WINO_ALWAYS = 1, RN_WINO_NEVER = 2, RN_WINO_BENCHMARK = 3
} rn_wino_mode;
void rn_wino_set_mode(rn_wino_mode m);
rn_wino_mode rn_wino_get_mode(void);
/* drops the cached filter transforms and the per-shape choices */
void rn_wino_clear_cache(void);
/* the per-shape choices made in AUTO mode, by index until false: direction
 * (RN_CONV_FWD / RN_CONV_BWD_DATA), a shape description, the measured times
 * (ms; onednn_ms < 0 when oneDNN had no kernel) and the choice */
bool rn_wino_choice(int i, int *dir, const char **shape, double *ours_ms, double *onednn_ms,
                    bool *ours);

int rn_wino_conv2d_fwd(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                       const rn_conv_params *p, int post);
int rn_wino_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                            const rn_conv_params *p);

/* ---- between wino.c and the kernels ---------------------------------------
 * One convolution as the kernels see it: a 3x3 stride-1 conv of x (N,H,W,C)
 * into y (N,OH,OW,O), output (oh,ow) reading input rows oh-pt..oh-pt+2 and
 * columns ow-pl..ow-pl+2 (zero outside x). The output is cut into 4x4 tiles
 * (th x tw per image, N*th*tw in all, numbered image-major); a block of nt
 * consecutive tiles is transformed into V (36, Tp, C), multiplied by the
 * transformed filter U (36, C, Op) into M (36, Tp, Op), and transformed back
 * into y (Tp: nt rounded up to 6, the GEMM kernel's rows; Op: O rounded up
 * to the vector width). */
typedef struct {
  int64_t N, H, W, C, O, OH, OW, pt, pl;
  int64_t Op, th, tw;
  const float *x;
  float *y;
  const float *U;
  const float *bias; /* (Op), zero-padded, or NULL */
  int post;          /* RN_POST_SUM | RN_POST_RELU, or 0 */
} rn_wino_job;

typedef struct {
  const char *name; /* the kernel's report name, e.g. "rn_wino_f4x3:avx2" */
  int vl;           /* floats per vector */
  /* tiles t0..t0+nt-1 (nt <= what V and M were sized for) */
  void (*block)(const rn_wino_job *j, int64_t t0, int64_t nt, float *V, float *M);
} rn_wino_isa;

/* NULL where the file was compiled without its instruction set */
const rn_wino_isa *rn_wino_isa_avx2(void);
const rn_wino_isa *rn_wino_isa_avx512(void);

#endif
