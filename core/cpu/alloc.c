/* alloc.c (cpu) - the CPU tensor allocator: 64-byte aligned blocks, with a
 * cache of freed large blocks.
 *
 * A training step allocates and frees the same large activation buffers
 * every step (~0.7 GB at batch 128 for the seed ResNet). From glibc they come
 * as fresh mmap pages each time (its mmap threshold cannot exceed 32 MiB and
 * trims the heap), and the kernel zeroes every page on first touch: 10-15% of
 * a step went to page faults. Blocks of at least CACHE_MIN bytes are
 * therefore kept on free, in lists by size class (sizes rounded up to 1/8 of
 * their power of two, so at most 12.5% slack), and handed out again; the
 * cache holds at most `limit` bytes (RN_CPU_CACHE_BYTES, default a quarter of
 * physical memory; 0 turns it off), dropping the oldest blocks beyond that.
 * When an allocation fails, the cache is released and the allocation tried
 * once more. Builds with AddressSanitizer never cache (so use-after-free is
 * still caught); valgrind runs set RN_CPU_CACHE_BYTES=0.
 *
 * Every block carries a 64-byte header with its size class, so free needs no
 * lookup. Thread-safe (the data loader threads allocate batches). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"

#define HDR 64                          /* header bytes; keeps 64-byte alignment */
#define CACHE_MIN ((size_t)256 << 10)   /* smaller blocks go straight to malloc */
#define NCLASS 512

typedef struct blk {
  size_t bytes;     /* usable bytes (the size class's for cacheable blocks) */
  int cacheable;
  struct blk *next, *prev_lru, *next_lru;
} blk;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static blk *bins[NCLASS];      /* free blocks by class index */
static blk *lru_old, *lru_new; /* all free blocks, oldest first */
static size_t cached, limit = (size_t)-1;
static int limit_set;
static rn_cpu_mem_stats st;

#if defined(__SANITIZE_ADDRESS__)
#define NO_CACHE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_CACHE 1
#endif
#endif
#ifndef NO_CACHE
#define NO_CACHE 0
#endif

#ifdef RN_ALLOC_FAIL
/* Test builds only (make test-allocfail): RN_FAIL_ALLOC_AT=n makes the n-th
 * CPU tensor allocation of the process fail (tests/alloc_sweep.lua). */
static long alloc_calls, alloc_fail_at = -1;
__attribute__((constructor)) static void alloc_fail_init(void) {
  const char *e = getenv("RN_FAIL_ALLOC_AT");
  if (e) alloc_fail_at = atol(e);
}
#define ALLOC_INJECTED() (__atomic_add_fetch(&alloc_calls, 1, __ATOMIC_RELAXED) == alloc_fail_at)
#else
#define ALLOC_INJECTED() 0
#endif

static void init_limit(void) {
  if (limit_set) return;
  limit_set = 1;
  const char *e = getenv("RN_CPU_CACHE_BYTES");
  if (e) {
    limit = (size_t)strtoull(e, NULL, 10);
  } else {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    limit = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / 4 : (size_t)1 << 30;
  }
  if (NO_CACHE) limit = 0;
}

/* Size class of n >= CACHE_MIN: index and rounded size (1/8 power-of-two steps). */
static int size_class(size_t n, size_t *rounded) {
  int e = 63 - __builtin_clzll((unsigned long long)n); /* 2^e <= n < 2^(e+1) */
  size_t step = (size_t)1 << (e - 3);
  size_t r = (n + step - 1) & ~(step - 1);
  int idx = (e - 18) * 8 + (int)((r >> (e - 3)) - 8); /* CACHE_MIN = 2^18 */
  *rounded = r;
  return idx >= 0 && idx < NCLASS ? idx : -1;
}

static void lru_unlink(blk *b) {
  if (b->prev_lru) b->prev_lru->next_lru = b->next_lru; else lru_old = b->next_lru;
  if (b->next_lru) b->next_lru->prev_lru = b->prev_lru; else lru_new = b->prev_lru;
}

static void bin_unlink(blk *b, int idx) {
  blk **pp = &bins[idx];
  while (*pp && *pp != b) pp = &(*pp)->next;
  if (*pp) *pp = b->next;
}

/* Frees cached blocks until at most keep bytes stay; mu held. */
static void trim_locked(size_t keep) {
  while (cached > keep && lru_old) {
    blk *b = lru_old;
    size_t r;
    int idx = size_class(b->bytes, &r);
    lru_unlink(b);
    bin_unlink(b, idx);
    cached -= b->bytes;
    st.reserved -= b->bytes;
    free(b);
  }
}

void rn_cpu_empty_cache(void) {
  pthread_mutex_lock(&mu);
  trim_locked(0);
  pthread_mutex_unlock(&mu);
}

void *rn_cpu_alloc(size_t nbytes) {
  if (ALLOC_INJECTED() || nbytes > ((size_t)1 << 56)) goto oom; /* no size overflows below */
  size_t want = (nbytes + 63) & ~(size_t)63, rounded = want;
  int idx = -1;
  pthread_mutex_lock(&mu);
  init_limit();
  if (want >= CACHE_MIN && limit > 0) idx = size_class(want, &rounded);
  if (idx >= 0 && bins[idx]) {
    blk *b = bins[idx];
    bins[idx] = b->next;
    lru_unlink(b);
    cached -= b->bytes;
    st.allocated += b->bytes;
    st.hits++;
    if (st.allocated > st.peak) st.peak = st.allocated;
    pthread_mutex_unlock(&mu);
    return (char *)b + HDR;
  }
  pthread_mutex_unlock(&mu);
  void *p = NULL;
  for (int attempt = 0; attempt < 2; attempt++) {
    if (posix_memalign(&p, 64, HDR + rounded) == 0 && p) break;
    p = NULL;
    rn_cpu_empty_cache(); /* give the cached blocks back and try once more */
  }
  if (!p) goto oom;
  blk *b = p;
  memset(b, 0, sizeof *b);
  b->bytes = rounded;
  b->cacheable = idx >= 0;
  pthread_mutex_lock(&mu);
  st.allocated += rounded;
  st.reserved += rounded;
  if (idx >= 0) st.misses++;
  if (st.allocated > st.peak) st.peak = st.allocated;
  pthread_mutex_unlock(&mu);
  return (char *)p + HDR;
oom:
  rn_err("out of memory: could not allocate %zu bytes on the cpu", nbytes);
  return NULL;
}

void rn_cpu_free(void *p) {
  if (!p) return;
  blk *b = (blk *)((char *)p - HDR);
  size_t r = b->bytes;
  pthread_mutex_lock(&mu);
  st.allocated -= r;
  int idx = b->cacheable ? size_class(r, &r) : -1;
  if (idx >= 0 && r <= limit) {
    b->next = bins[idx];
    bins[idx] = b;
    b->prev_lru = lru_new;
    b->next_lru = NULL;
    if (lru_new) lru_new->next_lru = b; else lru_old = b;
    lru_new = b;
    cached += r;
    trim_locked(limit);
    pthread_mutex_unlock(&mu);
    return;
  }
  st.reserved -= r;
  pthread_mutex_unlock(&mu);
  free(b);
}

void rn_cpu_memory_stats(rn_cpu_mem_stats *out) {
  pthread_mutex_lock(&mu);
  init_limit();
  *out = st;
  out->cached = cached;
  out->limit = limit;
  pthread_mutex_unlock(&mu);
}

int rn_cpu_memcpy(void *dst, const void *src, size_t n) {
  memcpy(dst, src, n);
  return 0;
}
