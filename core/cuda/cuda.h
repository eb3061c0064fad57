/* cuda.h - the CUDA host side of the core (core/cuda/ (*.c)): device discovery
 * and error checks (device.c), the caching allocator (alloc.c), run-time
 * loading of NVIDIA libraries (dlib.c), cuBLAS gemm (blas.c), operand
 * geometry for the kernels (geom.c), and the backend slots (elementwise.c,
 * reduce.c, loss.c, nn.c: pooling and batch norm, cudnn.c: convolutions
 * through cuDNN loaded at run time, backend.c), and the device-resident data
 * loader (augment.c).
 *
 * Everything runs on one CUDA stream (rn_cuda_stream()): kernels, cuBLAS,
 * and the copies, which synchronize that stream before returning to the
 * host. Stream order is what lets the allocator hand a freed block to the
 * next allocation at once. Only compiled with -DRN_WITH_CUDA.
 */
#ifndef RN_CUDA_H
#define RN_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "../backend.h"
#include "../data/data.h"
#include "../../kernels/kernels.h"

/* ---- device and errors (device.c) ---------------------------------------- */

/* Picks the device (0, or $RN_CUDA_DEVICE) and creates the stream on first
 * use; later calls return the remembered outcome at once. 0, or -1 with
 * rn_err("cuda: no CUDA device available (cudaGetDeviceCount: ...)"). */
int rn_cuda_init(void);
/* True once rn_cuda_init() has succeeded (never starts it). */
bool rn_cuda_ready(void);
cudaStream_t rn_cuda_stream(void);
int rn_cuda_device(void);
const char *rn_cuda_device_name(void);   /* "" before a successful init */
int rn_cuda_synchronize(void);           /* waits for the stream; 0 or -1 */

/* CU(call): 0 when call returns cudaSuccess, else -1 with
 * rn_err("cuda: <call> failed: <error string> (file:line)"). */
int rn_cuda_check(cudaError_t e, const char *call, const char *file, int line);
#define CU(call) rn_cuda_check((call), #call, __FILE__, __LINE__)
/* CUBLAS(call): the same for a cublasStatus_t. */
int rn_cuda_blas_check(int status, const char *call, const char *file, int line);
#define CUBLAS(call) rn_cuda_blas_check((int)(call), #call, __FILE__, __LINE__)

/* ---- caching allocator (alloc.c) ----------------------------------------- */

typedef struct {
  size_t allocated;       /* bytes in blocks handed out (rounded sizes) */
  size_t reserved;        /* bytes held from cudaMalloc: handed out + cached */
  size_t peak_allocated;
  size_t peak_reserved;
  size_t cached_blocks;   /* blocks in the free lists */
  uint64_t num_allocs;    /* successful allocations */
  uint64_t num_frees;
  uint64_t cache_hits;    /* allocations served from the free lists */
  uint64_t cuda_mallocs;  /* cudaMalloc calls that succeeded */
  uint64_t cuda_frees;    /* cudaFree calls (cache flushes) */
  uint64_t oom_retries;   /* cudaMalloc out-of-memory answers followed by a retry */
  uint64_t ooms;          /* allocations that failed after the retry */
} rn_cuda_mem_stats;

/* Requests up to 1 MiB are rounded up to a multiple of 512 bytes, larger
 * ones to a multiple of 2 MiB; each rounded size has its own free list. A
 * freed block goes back to its list and is reused by the next request of
 * that size (ordered by the one stream). On cudaErrorMemoryAllocation the
 * allocator frees every cached block, calls rn_cuda_oom_hook (if set; the
 * Lua binding runs a full garbage collection, whose freed tensors return
 * blocks to the cache), frees the cache again and retries once; then it
 * fails with rn_err("cuda: out of memory allocating N bytes (free F of T)"). */
void *rn_cuda_alloc(size_t nbytes);
void rn_cuda_free(void *p);
void rn_cuda_memory_stats(rn_cuda_mem_stats *out);
/* cudaFree of every cached block; 0, or -1 + rn_err. */
int rn_cuda_empty_cache(void);
/* Called once per out-of-memory before the final retry; returns nonzero if
 * it may have freed something. NULL: no hook. */
extern int (*rn_cuda_oom_hook)(void);
/* Graph pools (issue 19; see alloc.c's header): begin routes every
 * allocation to pool id until end; release gives the pool's blocks back. */
int rn_cuda_pool_begin(unsigned id);
void rn_cuda_pool_end(void);
unsigned rn_cuda_pool_current(void);
void rn_cuda_pool_release(unsigned id);

/* ---- whole-step CUDA graphs (graph.c) ------------------------------------ */

typedef struct rn_cuda_graph rn_cuda_graph;
int rn_cuda_graph_begin(void);           /* 0, or -1 + rn_err */
rn_cuda_graph *rn_cuda_graph_end(void);  /* NULL + rn_err: discarded */
void rn_cuda_graph_abort(void);          /* discards a capture in progress */
int rn_cuda_graph_launch(rn_cuda_graph *g);
void rn_cuda_graph_destroy(rn_cuda_graph *g);
int rn_cuda_capturing(void);             /* 1 between begin and end/abort */
/* evprof.c: per-region GPU time with CUDA events (model:profile) */
int rn_cuda_evprof_begin(void);
int rn_cuda_evprof_mark(int scope);
int rn_cuda_evprof_end(void (*add)(void *ctx, int scope, double s), void *ctx, double *span_s);

/* cudnn.c: drops every cached KRSC filter copy (a graph replay changes
 * weights without bumping their versions) */
void rn_dnn_filter_cache_clear(void);

/* ---- NVIDIA libraries loaded at run time (dlib.c) ------------------------ */

/* Opens the first library of `names` (NULL-terminated, most wanted first,
 * e.g. "libcublas.so.13") that loads: through the loader's own search
 * (LD_LIBRARY_PATH, ld.so.cache), then in $RN_CUDA_LIB_PATH (colon-separated
 * dirs), $CUDA_HOME/lib64, /usr/local/cuda/lib64 and the nvidia/<pkg>/lib
 * dirs of the Python site-packages where PyTorch's wheels put them. When a
 * library is opened by full path, each stem in `deps` (e.g. "libcublasLt")
 * with the same ".so.N" suffix is first loaded from that dir (RTLD_GLOBAL),
 * so its DT_NEEDED entry resolves. The loaded file's path goes to path_out.
 * Returns the handle, or NULL + rn_err naming `what` and where it looked. */
void *rn_dlib_open(const char *what, const char *const *names, const char *const *deps,
                   char *path_out, size_t path_n);
/* dlsym into a function pointer; NULL + rn_err if missing. */
void *rn_dlib_sym(void *lib, const char *what, const char *sym);

/* ---- kernel geometry (geom.c) -------------------------------------------- */

/* The geometry of nops (1..4) tensors of ts[0]'s shape: size-1 dims dropped,
 * dims dense in every operand merged, contig and idx32 set. */
void rn_cuda_geom(rnk_geom *g, int nops, const rn_tensor *const *ts);

/* ---- backend slots ------------------------------------------------------- */

int rn_cuda_to_host(void *dst, const void *src, size_t n);
int rn_cuda_from_host(void *dst, const void *src, size_t n);
int rn_cuda_copy(rn_tensor *dst, const rn_tensor *src);
int rn_cuda_fill(rn_tensor *t, double v);
int rn_cuda_unary(rn_unop op, const double *p, rn_tensor *y, const rn_tensor *x);
int rn_cuda_unary_backward(rn_unop op, const double *p, rn_tensor *gx, const rn_tensor *gy,
                           const rn_tensor *x, const rn_tensor *y);
int rn_cuda_binary(rn_binop op, rn_tensor *y, const rn_tensor *a, const rn_tensor *b);
int rn_cuda_axpy(rn_tensor *y, double alpha, const rn_tensor *x);
int rn_cuda_reduce(rn_redop op, rn_tensor *y, const rn_tensor *x);
int rn_cuda_argmax(rn_tensor *idx, const rn_tensor *x, int dim);
int rn_cuda_softmax(rn_tensor *y, const rn_tensor *x, bool log);
int rn_cuda_softmax_backward(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *y, bool log);
int rn_cuda_cross_entropy(rn_tensor *loss, rn_tensor *dlogits, const rn_tensor *logits,
                          const rn_tensor *labels, double smoothing);
int rn_cuda_gemm_batched(rn_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                         double alpha, const void *A, int64_t lda, int64_t sa, const void *B,
                         int64_t ldb, int64_t sb, double beta, void *C, int64_t ldc, int64_t sc,
                         int64_t batch);
int rn_cuda_gemm(rn_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                 const void *A, int64_t lda, const void *B, int64_t ldb, double beta, void *C,
                 int64_t ldc);

/* pooling (NHWC) and batch norm ((R,C) channels last) with kernels/nn.cu
 * (nn.c): the CPU's semantics (core/cpu/pool.c, core/cpu/norm.c), float32
 * and float64, contiguous operands, statistics in double */
int rn_cuda_pool2d_fwd(bool max, rn_tensor *y, const rn_tensor *x, const rn_pool_params *p);
int rn_cuda_pool2d_bwd(bool max, rn_tensor *gx, const rn_tensor *gy, const rn_tensor *x,
                       const rn_tensor *y, const rn_pool_params *p);
/* pad.c: pad and resize, one dim at a time */
int rn_cuda_line_fwd(rn_tensor *y, const rn_tensor *x, const rn_line_params *p);
int rn_cuda_line_bwd(rn_tensor *gx, const rn_tensor *gy, const rn_line_params *p);
/* attention.c */
int rn_cuda_sdpa_fwd(rn_tensor *o, rn_tensor *lse, const rn_tensor *q, const rn_tensor *k,
                 const rn_tensor *v, const rn_sdpa_params *p);
int rn_cuda_sdpa_bwd(rn_tensor *gq, rn_tensor *gk, rn_tensor *gv, const rn_tensor *go,
                 const rn_tensor *q, const rn_tensor *k, const rn_tensor *v, const rn_tensor *o,
                 const rn_tensor *lse, const rn_sdpa_params *p);
/* embedding.c / norm_group.c */
int rn_cuda_embedding_fwd(rn_tensor *y, const rn_tensor *idx, const rn_tensor *w);
int rn_cuda_embedding_bwd(rn_tensor *gw, const rn_tensor *gy, const rn_tensor *idx);
/* norm_group.c: layer and group norm */
int rn_cuda_gnorm_fwd(rn_tensor *y, rn_tensor *mean, rn_tensor *rstd, const rn_tensor *x,
                  const rn_tensor *gamma, const rn_tensor *beta, int64_t N, int64_t S, int64_t G,
                  int64_t Cg, double eps);
int rn_cuda_gnorm_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                  const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *mean,
                  const rn_tensor *rstd, int64_t N, int64_t S, int64_t G, int64_t Cg);
int rn_cuda_bn_fwd_train(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                         const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                         rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                         bool unbiased, double eps);
int rn_cuda_bn_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                         const rn_tensor *beta, const rn_tensor *running_mean,
                         const rn_tensor *running_var, double eps);
int rn_cuda_bn_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                   const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *save_mean,
                   const rn_tensor *save_invstd);
int rn_cuda_bn_relu_fwd_train(rn_tensor *y, rn_tensor *save_mean, rn_tensor *save_invstd,
                              const rn_tensor *x, const rn_tensor *gamma, const rn_tensor *beta,
                              rn_tensor *running_mean, rn_tensor *running_var, double momentum,
                              bool unbiased, double eps);
int rn_cuda_bn_relu_fwd_infer(rn_tensor *y, const rn_tensor *x, const rn_tensor *gamma,
                              const rn_tensor *beta, const rn_tensor *running_mean,
                              const rn_tensor *running_var, double eps);
int rn_cuda_bn_relu_bwd(rn_tensor *gx, rn_tensor *ggamma, rn_tensor *gbeta, const rn_tensor *gy,
                        const rn_tensor *x, const rn_tensor *y, const rn_tensor *gamma,
                        const rn_tensor *beta, const rn_tensor *save_mean,
                        const rn_tensor *save_invstd);
/* optim.c: the multi-tensor optimizer step in one launch */
int rn_cuda_optim_multi_step(const rn_mt_hp *hp, rn_dtype dt, const rn_mt_seg *segs, int n);
int rn_cuda_l2_penalty_multi(void *out, rn_dtype dt, const rn_mt_seg *segs, int n);

/* ---- cuDNN convolutions (cudnn.c) ---------------------------------------- */

/* conv2d slots, NHWC activations, HWIO weights (core/backend.h). cuDNN
 * (libcudnn.so.9) is opened on the first call with rn_dlib_open; every
 * cuDNN call is checked: rn_err("cudnn: <call> failed: <status> (file:line)").
 * Algorithms are chosen once per shape and math policy (cached); workspaces
 * come from rn_cuda_alloc. fp32 runs without TF32 unless $RN_CUDA_TF32=1.
 * Under the bfloat16 policy (rn_math_precision() == RN_BF16) float32
 * convolutions compute in bf16 with float32 accumulation on bf16 copies of
 * their operands; inputs and outputs stay float32 (cudnn.c's header). */
int rn_cuda_conv2d_fwd(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                       const rn_conv_params *p);
int rn_cuda_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                            const rn_conv_params *p);
int rn_cuda_conv2d_bwd_filter(rn_tensor *gw, rn_tensor *gb, const rn_tensor *gy,
                              const rn_tensor *x, const rn_conv_params *p);
/* The loaded cuDNN's path and version ("" / 0 before the first conv). */
const char *rn_cuda_cudnn_path(void);
size_t rn_cuda_cudnn_version(void);

/* ---- the device-resident data loader (augment.c) ------------------------- */

/* The data set of a CPU loader (core/data/) uploaded once to the device:
 * images (N,H,W,C) uint8, labels (N) int64 and the normalization table;
 * each batch is gathered and augmented there by kernels/augment.cu with the
 * CPU loader's draws, so batch b of epoch e equals the CPU loader's bit for
 * bit. The options are those of rn_loader_new (workers and prefetch are not
 * used: a batch is one kernel on the stream). */
typedef struct rn_cuda_dloader rn_cuda_dloader;
/* NULL + rn_err: the CPU loader's option errors, or a device error. */
rn_cuda_dloader *rn_cuda_dloader_new(rn_tensor *images, rn_tensor *labels,
                                     const rn_loader_opts *o);
void rn_cuda_dloader_free(rn_cuda_dloader *d); /* NULL is fine */
/* The CPU loader that defines the batches (sizes, sample shape). */
const rn_loader *rn_cuda_dloader_spec(const rn_cuda_dloader *d);
/* Batch b (0-based, < num_batches) of epoch (>= 0): x (B,OH,OW,C) float32
 * and y (B) int64, new cuda tensors; 0, or -1 + rn_err. Enqueued on the
 * stream: nothing waits for the kernel. */
int rn_cuda_dloader_batch(rn_cuda_dloader *d, int64_t epoch, int64_t b, rn_tensor **x,
                          rn_tensor **y);

/* bf16.c: puts the bf16/fp16 converting wrappers into be's slots (issue #18) */
void rn_cuda_bf16_table(rn_backend *be);

#endif
