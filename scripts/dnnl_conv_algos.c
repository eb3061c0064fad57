/* dnnl_conv_algos.c - oneDNN alone: the seed ResNet's three stride-1 3x3
 * convolution shapes, forward, backward-data and backward-weights, timed for
 * the algorithm and layout rnlua runs (direct on NHWC) and the alternatives
 * (direct on nChw16c; Winograd, which oneDNN offers on nChw16c only).
 * A measurement tool for doc/perf.md, not part of rnlua:
 *
 *   make bench-dnnl [DNNL_ARGS="--batch 128 --reps 15 --chunk 0"]
 *
 * Shapes (logical N,C,H,W; rnlua stores them NHWC):
 *   stage 1: (N,16,32,32)  stage 2: (N,32,16,16)  stage 3: (N,64,8,8)
 * 3x3 kernels, stride 1, padding 1, bias, float32, forward_training.
 * Each figure is the median of --reps calls after two untimed calls; the
 * buffers are reused, so the data are as warm as the cache allows. The
 * thread count is OpenMP's (OMP_NUM_THREADS). --chunk K (K divides the
 * batch) runs each direction as batch/K calls of a batch-K primitive on
 * consecutive slices of the same buffers (the weight gradient of each slice
 * is computed, not summed: the time is what matters), to see whether cutting
 * a large batch into cache-sized pieces pays. Prints one line per
 * (shape, variant), with the implementation oneDNN chose for each direction.
 */
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static dnnl_engine_t eng;
static dnnl_stream_t strm;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* memory for md filled with small values, or NULL for an empty md */
static dnnl_memory_t mem(const dnnl_memory_desc_t *md) {
  if (!md || dnnl_memory_desc_get_size(md) == 0) return NULL;
  dnnl_memory_t m;
  if (dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE)) return NULL;
  float *p;
  dnnl_memory_get_data_handle(m, (void **)&p);
  size_t n = dnnl_memory_desc_get_size(md) / sizeof(float);
  for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  return m;
}

/* Activation buffers: k slices of `slice` bytes each, one dnnl_memory per
 * slice (k = 1 without --chunk). */
typedef struct { char *base; dnnl_memory_t *m; int k; } act;

static int act_init(act *a, const dnnl_memory_desc_t *md, int k) {
  size_t slice = dnnl_memory_desc_get_size(md);
  a->k = k;
  a->base = aligned_alloc(64, (slice * (size_t)k + 63) / 64 * 64);
  a->m = calloc((size_t)k, sizeof *a->m);
  if (!a->base || !a->m) return -1;
  size_t n = slice * (size_t)k / sizeof(float);
  float *p = (float *)a->base;
  for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  for (int j = 0; j < k; j++)
    if (dnnl_memory_create(&a->m[j], md, eng, a->base + slice * (size_t)j)) return -1;
  return 0;
}

static void act_free(act *a) {
  for (int j = 0; a->m && j < a->k; j++)
    if (a->m[j]) dnnl_memory_destroy(a->m[j]);
  free(a->m);
  free(a->base);
}

/* median ms of reps executions of prim over all slices; args[slot[0..1]]
 * take slice j of acts[0..1] (scratchpad dropped when NULL) */
static double timed(dnnl_primitive_t prim, dnnl_exec_arg_t *args, int nargs, const int *slot,
                    act *const *acts, int reps) {
  if (!args[nargs - 1].memory) nargs--; /* no scratchpad */
  double *t = malloc(sizeof(double) * (size_t)reps);
  if (!t) return -1;
  for (int i = 0; i < reps + 2; i++) {
    double t0 = now();
    for (int j = 0; j < acts[0]->k; j++) {
      args[slot[0]].memory = acts[0]->m[j];
      args[slot[1]].memory = acts[1]->m[j];
      dnnl_primitive_execute(prim, strm, nargs, args);
    }
    dnnl_stream_wait(strm);
    if (i >= 2) t[i - 2] = (now() - t0) * 1e3;
  }
  qsort(t, (size_t)reps, sizeof(double), cmp_d);
  double m = t[reps / 2];
  free(t);
  return m;
}

static const char *impl(dnnl_primitive_desc_t pd) {
  const char *s = "?";
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s);
  return s;
}

static int run(int N, int K, int C, int H, dnnl_alg_kind_t alg, dnnl_format_tag_t tag,
               const char *name, int reps) {
  dnnl_dims_t xd = {K, C, H, H}, wd = {C, C, 3, 3}, bd = {C}, st = {1, 1}, pad = {1, 1};
  dnnl_memory_desc_t x, y, w, b;
  dnnl_memory_desc_init_by_tag(&x, 4, xd, dnnl_f32, tag);
  dnnl_memory_desc_init_by_tag(&y, 4, xd, dnnl_f32, tag);
  dnnl_memory_desc_init_by_tag(&w, 4, wd, dnnl_f32, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&b, 1, bd, dnnl_f32, dnnl_a);
  dnnl_convolution_desc_t fd, dd, wdsc;
  dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
  if (dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &x, &w, &b, &y, st, pad, pad) ||
      dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL) ||
      dnnl_convolution_backward_data_desc_init(&dd, alg, &x, &w, &y, st, pad, pad) ||
      dnnl_primitive_desc_create(&dpd, &dd, NULL, eng, fpd) ||
      dnnl_convolution_backward_weights_desc_init(&wdsc, alg, &x, &w, &b, &y, st, pad, pad) ||
      dnnl_primitive_desc_create(&wpd, &wdsc, NULL, eng, fpd)) {
    printf("N=%d C=%-2d %2dx%-2d %-18s not available in this oneDNN\n", N, C, H, H, name);
    return 0;
  }
  act X = {0}, Y = {0}, DX = {0}, DY = {0};
  int bad = act_init(&X, &x, N / K) | act_init(&Y, &y, N / K) | act_init(&DX, &x, N / K) |
            act_init(&DY, &y, N / K);
  dnnl_memory_t B = mem(&b), DB = mem(&b);
  dnnl_memory_t W = mem(dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0));
  dnnl_memory_t W2 = mem(dnnl_primitive_desc_query_md(dpd, dnnl_query_weights_md, 0));
  dnnl_memory_t DW = mem(dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_weights_md, 0));
  dnnl_memory_t S1 = mem(dnnl_primitive_desc_query_md(fpd, dnnl_query_scratchpad_md, 0));
  dnnl_memory_t S2 = mem(dnnl_primitive_desc_query_md(dpd, dnnl_query_scratchpad_md, 0));
  dnnl_memory_t S3 = mem(dnnl_primitive_desc_query_md(wpd, dnnl_query_scratchpad_md, 0));
  dnnl_primitive_t F = NULL, D = NULL, G = NULL;
  int rc = 0;
  if (bad || !B || !DB || !W || !W2 || !DW || dnnl_primitive_create(&F, fpd) ||
      dnnl_primitive_create(&D, dpd) || dnnl_primitive_create(&G, wpd)) {
    fprintf(stderr, "dnnl_conv_algos: out of memory or primitive creation failed\n");
    rc = -1;
  } else {
    dnnl_exec_arg_t fa[] = {{DNNL_ARG_SRC, NULL}, {DNNL_ARG_WEIGHTS, W}, {DNNL_ARG_BIAS, B},
                            {DNNL_ARG_DST, NULL}, {DNNL_ARG_SCRATCHPAD, S1}};
    dnnl_exec_arg_t da[] = {{DNNL_ARG_DIFF_SRC, NULL}, {DNNL_ARG_WEIGHTS, W2},
                            {DNNL_ARG_DIFF_DST, NULL}, {DNNL_ARG_SCRATCHPAD, S2}};
    dnnl_exec_arg_t ga[] = {{DNNL_ARG_SRC, NULL}, {DNNL_ARG_DIFF_WEIGHTS, DW}, {DNNL_ARG_DIFF_BIAS, DB},
                            {DNNL_ARG_DIFF_DST, NULL}, {DNNL_ARG_SCRATCHPAD, S3}};
    static const int fs[2] = {0, 3}, ds[2] = {0, 2}, gs[2] = {0, 3};
    act *fx[2] = {&X, &Y}, *dx[2] = {&DX, &DY}, *gx[2] = {&X, &DY};
    double tf = timed(F, fa, 5, fs, fx, reps), td = timed(D, da, 4, ds, dx, reps),
           tw = timed(G, ga, 5, gs, gx, reps);
    if (K < N) printf("(in %d calls of %d) ", N / K, K);
    printf("N=%d C=%-2d %2dx%-2d %-18s fwd %6.2f  bwd_data %6.2f  bwd_w %6.2f  total %6.2f ms"
           "   [%s | %s | %s]\n",
           N, C, H, H, name, tf, td, tw, tf + td + tw, impl(fpd), impl(dpd), impl(wpd));
  }
  act_free(&X);
  act_free(&Y);
  act_free(&DX);
  act_free(&DY);
  dnnl_memory_t all[] = {B, DB, W, W2, DW, S1, S2, S3};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (all[i]) dnnl_memory_destroy(all[i]);
  if (F) dnnl_primitive_destroy(F);
  if (D) dnnl_primitive_destroy(D);
  if (G) dnnl_primitive_destroy(G);
  dnnl_primitive_desc_destroy(fpd);
  dnnl_primitive_desc_destroy(dpd);
  dnnl_primitive_desc_destroy(wpd);
  return rc;
}

int main(int argc, char **argv) {
  int N = 128, reps = 15, K = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--batch") && i + 1 < argc) N = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) K = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: dnnl_conv_algos [--batch N (1..4096)] [--reps N (1..1000)] "
                      "[--chunk K (divides N; 0: whole batch)]\n");
      return 2;
    }
  }
  if (K == 0) K = N;
  if (N < 1 || N > 4096 || reps < 1 || reps > 1000 || K < 1 || K > N || N % K) {
    fprintf(stderr, "dnnl_conv_algos: --batch must be in 1..4096, --reps in 1..1000 and "
                    "--chunk a divisor of the batch (got %d, %d, %d)\n", N, reps, K);
    return 2;
  }
  if (dnnl_engine_create(&eng, dnnl_cpu, 0) || dnnl_stream_create(&strm, eng, dnnl_stream_default_flags)) {
    fprintf(stderr, "dnnl_conv_algos: no oneDNN CPU engine\n");
    return 1;
  }
  const dnnl_version_t *v = dnnl_version();
  printf("oneDNN %d.%d.%d, %s threads, median of %d calls, ms per call\n", v->major, v->minor,
         v->patch, getenv("OMP_NUM_THREADS") ? getenv("OMP_NUM_THREADS") : "default", reps);
  const int cs[3] = {16, 32, 64}, hs[3] = {32, 16, 8};
  int rc = 0;
  for (int i = 0; i < 3 && rc == 0; i++) {
    rc |= run(N, K, cs[i], hs[i], dnnl_convolution_direct, dnnl_nhwc, "direct NHWC", reps);
    rc |= run(N, K, cs[i], hs[i], dnnl_convolution_direct, dnnl_nChw16c, "direct nChw16c", reps);
    rc |= run(N, K, cs[i], hs[i], dnnl_convolution_winograd, dnnl_nChw16c, "winograd nChw16c", reps);
  }
  dnnl_stream_destroy(strm);
  dnnl_engine_destroy(eng);
  return rc ? 1 : 0;
}
