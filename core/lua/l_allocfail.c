/* l_allocfail.c - allocation-failure injection into Lua's allocator, for
 * test builds only (compiled empty unless -DRN_ALLOC_FAIL: make
 * test-allocfail). With RN_FAIL_LUA_ALLOC_AT=n in the environment, the
 * allocator of the first Lua state that opens rn.core is wrapped so that its
 * n-th allocation or growth (counted from that moment) fails, and so does
 * Lua's retry after its emergency collection, as with real memory
 * exhaustion: Lua then raises "not enough memory". Shrinking and
 * freeing never fail (Lua assumes they cannot). The tensor allocator's
 * counterpart is RN_FAIL_ALLOC_AT (core/cpu/elementwise.c). */
#include <stdlib.h>

#include "rnl.h"

#ifdef RN_ALLOC_FAIL
static struct {
  lua_Alloc f;
  void *ud;
  long calls, fail_at;
} wrap;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  bool grows = nsize > 0 && (ptr == NULL || nsize > osize);
  /* n and n+1: Lua retries a failed allocation once after an emergency
   * collection, which frees memory but cannot make more */
  if (grows && ++wrap.calls >= wrap.fail_at && wrap.calls <= wrap.fail_at + 1) return NULL;
  return wrap.f(wrap.ud, ptr, osize, nsize);
}

void rnl_allocfail_install(lua_State *L) {
  const char *e = getenv("RN_FAIL_LUA_ALLOC_AT");
  if (!e || wrap.f) return; /* once per process */
  wrap.fail_at = atol(e);
  wrap.f = lua_getallocf(L, &wrap.ud);
  lua_setallocf(L, failing_alloc, NULL);
}
#else
void rnl_allocfail_install(lua_State *L) { (void)L; }
#endif
