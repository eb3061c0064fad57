/* dcache.h - a cache of derived copies of tensors (issue 19: the filter
 * cuDNN reads, HWIO transposed to KRSC / KCRS and, in bf16 math, rounded),
 * keyed by the source's storage uid, byte offset and version (rn.h), so an
 * in-place change of the weight (the optimizer's step, copy_, loading)
 * makes its old copy a miss, and by a variant code chosen by the caller
 * (layout, dtype, element count). One entry per (source, variant): a newer
 * version replaces the older in place, so the cache holds at most one copy
 * of each weight and variant; least recently used entries go when full. */
#ifndef RN_DCACHE_H
#define RN_DCACHE_H

#include <stdint.h>

#include "rn.h"

#define RN_DCACHE_SLOTS 256

typedef struct {
  uint64_t uid, version, variant;
  size_t offset;
  void *copy;
  unsigned long long used;
} rn_dcache_entry;

typedef struct {
  rn_dcache_entry e[RN_DCACHE_SLOTS];
  unsigned long long clock;
  void (*free_copy)(void *copy); /* how a copy goes */
  uint64_t hits, misses;
} rn_dcache;

/* The copy of t for variant, or NULL (a miss). */
void *rn_dcache_get(rn_dcache *c, const rn_tensor *t, uint64_t variant);
/* Keeps copy (the cache owns it from now) as t's current copy for variant,
 * freeing the one it replaces or the least recently used. */
void rn_dcache_put(rn_dcache *c, const rn_tensor *t, uint64_t variant, void *copy);
/* Frees every copy. */
void rn_dcache_clear(rn_dcache *c);

#endif
