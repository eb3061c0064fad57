/* dcache.c - the derived-copy cache (dcache.h). Linear scans over 256
 * slots: a few hundred comparisons per convolution call, nothing next to
 * the copy it saves. */
#include "dcache.h"

static size_t offset_of(const rn_tensor *t) {
  return (size_t)(rn_ptr(t) - (char *)t->st->data);
}

static int same_source(const rn_dcache_entry *e, const rn_tensor *t, uint64_t variant) {
  return e->copy && e->uid == t->st->uid && e->offset == offset_of(t) && e->variant == variant;
}

void *rn_dcache_get(rn_dcache *c, const rn_tensor *t, uint64_t variant) {
  for (int i = 0; i < RN_DCACHE_SLOTS; i++) {
    rn_dcache_entry *e = &c->e[i];
    if (same_source(e, t, variant) && e->version == t->st->version) {
      e->used = ++c->clock;
      c->hits++;
      return e->copy;
    }
  }
  c->misses++;
  return NULL;
}

void rn_dcache_put(rn_dcache *c, const rn_tensor *t, uint64_t variant, void *copy) {
  int slot = -1;
  for (int i = 0; i < RN_DCACHE_SLOTS && slot < 0; i++)
    if (same_source(&c->e[i], t, variant)) slot = i; /* an older version: replaced */
  for (int i = 0; i < RN_DCACHE_SLOTS && slot < 0; i++)
    if (!c->e[i].copy) slot = i;
  if (slot < 0) {
    slot = 0;
    for (int i = 1; i < RN_DCACHE_SLOTS; i++)
      if (c->e[i].used < c->e[slot].used) slot = i;
  }
  rn_dcache_entry *e = &c->e[slot];
  if (e->copy && c->free_copy) c->free_copy(e->copy);
  e->uid = t->st->uid;
  e->offset = offset_of(t);
  e->version = t->st->version;
  e->variant = variant;
  e->copy = copy;
  e->used = ++c->clock;
}

void rn_dcache_clear(rn_dcache *c) {
  for (int i = 0; i < RN_DCACHE_SLOTS; i++) {
    if (c->e[i].copy && c->free_copy) c->free_copy(c->e[i].copy);
    c->e[i].copy = NULL;
  }
}
