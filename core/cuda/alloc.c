/* alloc.c (cuda) - the caching device allocator: rounded size classes, one
 * free list per size, reuse ordered by the single stream, statistics, and
 * the out-of-memory path (flush the cache, let the binding collect garbage,
 * retry once).
 *
 * Sizes: a request of n bytes takes a block of round(n): multiples of 512 B
 * up to 1 MiB, multiples of 2 MiB above. Blocks come from cudaMalloc one at a
 * time and are never split; a freed block is kept in the list of its size
 * until reused or flushed (rn_cuda_empty_cache or an out-of-memory).
 *
 * Why reuse at once is safe: every kernel, copy and cuBLAS call runs on the
 * one stream (device.c), so work that a later owner of the block enqueues
 * runs after the work of the earlier owner. Host reads synchronize first.
 *
 * Book-keeping: two chained hash tables of block records, `live` keyed by
 * device address (to find a block's size on free) and `cached` keyed by
 * rounded size (the free lists). Not thread safe: the core is driven by one
 * Lua state on one thread.
 *
 * Graph pools (issue 19, CUDA graph capture, core/cuda/graph.c): between
 * rn_cuda_pool_begin(id) and rn_cuda_pool_end() every allocation comes from
 * pool id: its free blocks (cached under size | id << 56) or a new
 * cudaMalloc, never from the global lists, and an out-of-memory there fails
 * at once (no flush, no collection: either would synchronize inside the
 * capture). A pool's blocks, freed during the capture or later, go back to
 * the pool and are never flushed nor reused outside it, because the graph
 * replays over them; rn_cuda_pool_release(id) (the graph destroyed) returns
 * them to the global lists.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

#define SMALL_MAX ((size_t)1 << 20)
#define SMALL_STEP ((size_t)512)
#define LARGE_STEP ((size_t)2 << 20)

typedef struct blk {
  uintptr_t key; /* device address (live) or size | pool << 56 (cached) */
  void *ptr;
  size_t size;   /* rounded */
  unsigned pool; /* 0: global; else the graph pool it belongs to */
  struct blk *next;
} blk;

#define POOL_SHIFT 56
#define MAX_POOLS 64
static unsigned cur_pool;             /* the pool allocations come from (0: none) */
static unsigned pools_alive[MAX_POOLS]; /* ids of pools not yet released */

static int pool_alive(unsigned id) {
  for (int i = 0; i < MAX_POOLS; i++)
    if (id && pools_alive[i] == id) return 1;
  return 0;
}

static uintptr_t cache_key(const blk *b) {
  return (uintptr_t)b->size | ((uintptr_t)b->pool << POOL_SHIFT);
}

typedef struct {
  blk **b;
  size_t nb, n; /* buckets (power of 2), records */
} table;

static table live, cached;
static rn_cuda_mem_stats st;
static int in_hook;

int (*rn_cuda_oom_hook)(void) = NULL;

/* ---- hash tables --------------------------------------------------------- */

static size_t hash(uintptr_t k) {
  uint64_t x = (uint64_t)k;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (size_t)x;
}

/* Grows to twice the buckets when full; a failed grow keeps the old table
 * (longer chains, still correct). */
static void table_grow(table *t) {
  size_t nb = t->nb ? t->nb * 2 : 256;
  blk **b = calloc(nb, sizeof *b);
  if (!b) return;
  for (size_t i = 0; i < t->nb; i++) {
    blk *e = t->b[i];
    while (e) {
      blk *next = e->next;
      size_t h = hash(e->key) & (nb - 1);
      e->next = b[h];
      b[h] = e;
      e = next;
    }
  }
  free(t->b);
  t->b = b;
  t->nb = nb;
}

/* Inserts e under e->key; -1 only if the table has no buckets at all. */
static int table_put(table *t, blk *e) {
  if (t->n >= t->nb) table_grow(t);
  if (!t->nb) return -1;
  size_t h = hash(e->key) & (t->nb - 1);
  e->next = t->b[h];
  t->b[h] = e;
  t->n++;
  return 0;
}

/* Unlinks and returns a record with this key, or NULL. */
static blk *table_take(table *t, uintptr_t key) {
  if (!t->nb) return NULL;
  blk **pp = &t->b[hash(key) & (t->nb - 1)];
  for (blk *e = *pp; e; pp = &e->next, e = e->next) {
    if (e->key == key) {
      *pp = e->next;
      t->n--;
      return e;
    }
  }
  return NULL;
}

/* ---- sizes and the cache ------------------------------------------------- */

static size_t round_size(size_t n) {
  if (n == 0) n = 1;
  if (n <= SMALL_MAX) return (n + SMALL_STEP - 1) / SMALL_STEP * SMALL_STEP;
  return (n + LARGE_STEP - 1) / LARGE_STEP * LARGE_STEP;
}

/* cudaFree of every cached block; the first failure is reported (the
 * records are dropped either way: a block cudaFree refused is lost). A
 * cached block may still be read by queued work of its last owner, so the
 * stream is drained first (cudaFree also synchronizes; this says it). */
static int flush_cache(void) {
  if (cached.n == 0 || cur_pool) return 0; /* nothing, or inside a capture: never */
  int rc = CU(cudaStreamSynchronize(rn_cuda_stream()));
  for (size_t i = 0; i < cached.nb; i++) {
    blk *e = cached.b[i], *keep = NULL;
    while (e) {
      blk *next = e->next;
      if (e->pool) { /* a graph's: stays until the graph goes */
        e->next = keep;
        keep = e;
        e = next;
        continue;
      }
      cudaError_t fe = cudaFree(e->ptr);
      if (fe != cudaSuccess && rc == 0)
        rc = rn_cuda_check(fe, "cudaFree(cached block)", __FILE__, __LINE__);
      else if (fe != cudaSuccess)
        (void)cudaGetLastError(); /* only the first failure is reported */
      st.cuda_frees++;
      st.reserved -= e->size;
      free(e);
      cached.n--;
      e = next;
    }
    cached.b[i] = keep;
  }
  return rc;
}

int rn_cuda_empty_cache(void) {
  if (!rn_cuda_ready()) return 0; /* nothing was ever allocated */
  return flush_cache();
}

void rn_cuda_memory_stats(rn_cuda_mem_stats *out) {
  *out = st;
  out->cached_blocks = cached.n;
}

/* ---- alloc and free ------------------------------------------------------ */

static void *oom(size_t n) {
  size_t fr = 0, tot = 0;
  if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) fr = tot = 0;
  (void)cudaGetLastError();
  st.ooms++;
  rn_err("cuda: out of memory allocating %zu bytes (free %zu of %zu)", n, fr, tot);
  return NULL;
}

/* a new block of `size` bytes from the driver, with the one retry */
static blk *new_block(size_t n, size_t size) {
  void *p = NULL;
  cudaError_t e;
  if (cur_pool) {
    /* inside a capture, cudaMalloc is a "potentially unsafe" call that the
     * capture modes refuse; the block is the pool's for the graph's life, so
     * its allocation need not be replayed: relaxed for this call only (as
     * PyTorch's allocator does) */
    enum cudaStreamCaptureMode m = cudaStreamCaptureModeRelaxed;
    (void)cudaThreadExchangeStreamCaptureMode(&m);
    e = cudaMalloc(&p, size);
    (void)cudaThreadExchangeStreamCaptureMode(&m);
  } else {
    e = cudaMalloc(&p, size);
  }
  if (e == cudaErrorMemoryAllocation && cur_pool) { /* in a capture: fail, no flush */
    (void)cudaGetLastError();
    return oom(n);
  }
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    st.oom_retries++;
    if (flush_cache() < 0) return NULL;
    if (rn_cuda_oom_hook && !in_hook) {
      in_hook = 1; /* a finalizer that allocates must not collect again */
      rn_cuda_oom_hook();
      in_hook = 0;
      blk *b = table_take(&cached, size); /* freed by the collection */
      if (b) {
        st.cache_hits++;
        return b;
      }
      if (flush_cache() < 0) return NULL;
    }
    e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) return oom(n);
  }
  if (CU(e) < 0) return NULL;
  blk *b = malloc(sizeof *b);
  if (!b) {
    (void)cudaFree(p); /* best effort: the error below is the one to report */
    rn_err("cuda: out of host memory for an allocation record");
    return NULL;
  }
  b->ptr = p;
  b->size = size;
  b->pool = cur_pool;
  st.cuda_mallocs++;
  st.reserved += size;
  if (st.reserved > st.peak_reserved) st.peak_reserved = st.reserved;
  return b;
}

void *rn_cuda_alloc(size_t n) {
  if (rn_cuda_init() < 0) return NULL;
  if (n > ((size_t)1 << 62)) {
    rn_err("cuda: cannot allocate %zu bytes", n);
    return NULL;
  }
  size_t size = round_size(n);
  blk *b = table_take(&cached, size | ((uintptr_t)cur_pool << POOL_SHIFT));
  if (b) st.cache_hits++;
  else if (!(b = new_block(n, size))) return NULL;
  b->key = (uintptr_t)b->ptr;
  if (table_put(&live, b) < 0) { /* no memory for even one bucket */
    b->key = cache_key(b);
    if (table_put(&cached, b) < 0) {
      (void)cudaFree(b->ptr); /* best effort: the error below is the one to report */
      st.reserved -= b->size;
      free(b);
    }
    rn_err("cuda: out of host memory for the allocator's table");
    return NULL;
  }
  st.allocated += size;
  if (st.allocated > st.peak_allocated) st.peak_allocated = st.allocated;
  st.num_allocs++;
  return b->ptr;
}

void rn_cuda_free(void *p) {
  if (!p) return;
  blk *b = table_take(&live, (uintptr_t)p);
  if (!b) return; /* not from this allocator: nothing to do */
  st.allocated -= b->size;
  st.num_frees++;
  if (b->pool && !pool_alive(b->pool)) b->pool = 0; /* its graph is gone */
  b->key = cache_key(b);
  if (table_put(&cached, b) < 0) { /* cannot cache it: give it back */
    (void)cudaFree(b->ptr); /* free() has no way to report a failure */
    st.cuda_frees++;
    st.reserved -= b->size;
    free(b);
  }
}

/* ---- graph pools ---------------------------------------------------------- */

int rn_cuda_pool_begin(unsigned id) {
  if (!id || cur_pool) return rn_err("cuda: graph pool %u cannot begin (pool %u is open)", id, cur_pool);
  for (int i = 0; i < MAX_POOLS; i++)
    if (!pools_alive[i]) {
      pools_alive[i] = id;
      cur_pool = id;
      return 0;
    }
  return rn_err("cuda: more than %d CUDA graphs alive; destroy some first", MAX_POOLS);
}

void rn_cuda_pool_end(void) { cur_pool = 0; }

unsigned rn_cuda_pool_current(void) { return cur_pool; }

void rn_cuda_pool_release(unsigned id) {
  if (!id) return;
  if (cur_pool == id) cur_pool = 0;
  for (int i = 0; i < MAX_POOLS; i++)
    if (pools_alive[i] == id) pools_alive[i] = 0;
  /* its free blocks go back to the global lists (live ones do on free) */
  for (size_t i = 0; i < cached.nb; i++) {
    blk **pp = &cached.b[i];
    while (*pp) {
      blk *e = *pp;
      if (e->pool == id) {
        *pp = e->next;
        cached.n--;
        e->pool = 0;
        e->key = cache_key(e);
        if (table_put(&cached, e) < 0) { /* cannot happen: the table has buckets */
          (void)cudaFree(e->ptr);
          st.reserved -= e->size;
          free(e);
        }
        continue; /* *pp is already the next record */
      }
      pp = &e->next;
    }
  }
}
