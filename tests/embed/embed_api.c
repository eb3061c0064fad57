/* embed_api.c - the edges of librnlua's API (include/rnlua.h), built and run
 * by tests/test_embed.lua: every error path returns a status with a message
 * (never exits), release() runs exactly once when Lua's last view is
 * collected, views report strides, and rnlua_openlibs works on a state the
 * program made. Prints one "name: value" line per check; the Lua test
 * asserts the values. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>
#include <rnlua.h>

static int releases;
static void release(void *ctx) {
  releases++;
  free(ctx);
}

/* prints the status and the message it left (popping it) */
static void report(lua_State *L, const char *name, int status) {
  if (status == LUA_OK) {
    printf("%s: ok\n", name);
  } else {
    printf("%s: error: %s\n", name, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

int main(void) {
  /* a state the program opened itself, then rn added to it */
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  report(L, "openlibs_bad_dir", rnlua_openlibs(L, "/nonexistent"));
  report(L, "openlibs", rnlua_openlibs(L, NULL));
  report(L, "require", rnlua_dostring(L, "rn = require 'rn'", NULL));
  report(L, "runtime_error", rnlua_dostring(L, "rn.zeros(-1)", "=chunk"));
  report(L, "syntax_error", rnlua_dostring(L, "x = = 1", "=chunk"));
  report(L, "missing_file", rnlua_dofile(L, "/nonexistent.lua"));
  int top = lua_gettop(L);

  /* pushing: bad arguments push only the message and leave data alone */
  static double d[6] = {1, 2, 3, 4, 5, 6};
  const int64_t shape[2] = {2, 3}, neg[2] = {2, -3};
  report(L, "push_null", rnlua_push_tensor(L, NULL, RNLUA_FLOAT32, 2, shape, release, NULL));
  report(L, "push_misaligned",
         rnlua_push_tensor(L, (char *)d + 1, RNLUA_FLOAT64, 2, shape, release, NULL));
  report(L, "push_ndim", rnlua_push_tensor(L, d, RNLUA_FLOAT64, 9, shape, release, NULL));
  report(L, "push_negative", rnlua_push_tensor(L, d, RNLUA_FLOAT64, 2, neg, release, NULL));
  report(L, "push_dtype", rnlua_push_tensor(L, d, (rnlua_dtype)42, 2, shape, release, NULL));
  printf("stack_kept: %d\n", lua_gettop(L) == top);
  printf("releases_after_errors: %d\n", releases);

  /* a heap buffer handed over: Lua reads it, release frees it once */
  float *buf = malloc(6 * sizeof *buf);
  for (int i = 0; i < 6; i++) buf[i] = (float)(i + 1);
  report(L, "push", rnlua_push_tensor(L, buf, RNLUA_FLOAT32, 2, shape, release, buf));
  lua_setglobal(L, "h");
  report(L, "use", rnlua_dostring(L, "s = h:sum():item(); ht = h:t(); h[1][2] = 20", NULL));
  lua_getglobal(L, "s");
  printf("sum: %g\n", lua_tonumber(L, -1));
  lua_pop(L, 1);
  printf("write_through: %g\n", buf[1]);

  /* views: the transpose shares buf, with swapped strides */
  rnlua_tensor_view v;
  lua_getglobal(L, "ht");
  report(L, "view", rnlua_tensor_view_get(L, -1, &v));
  printf("view_shares: %d\n", v.data == (void *)buf);
  printf("view_shape: %lld %lld\n", (long long)v.shape[0], (long long)v.shape[1]);
  printf("view_stride: %lld %lld\n", (long long)v.stride[0], (long long)v.stride[1]);
  printf("view_contiguous: %d\n", v.contiguous);
  lua_pop(L, 1);
  lua_pushinteger(L, 3);
  report(L, "view_number", rnlua_tensor_view_get(L, -1, &v));
  lua_pop(L, 1);
  report(L, "close", rnlua_dostring(L, "local c <close> = rn.ones(2); cl = c", NULL));
  lua_getglobal(L, "cl");
  report(L, "view_closed", rnlua_tensor_view_get(L, -1, &v));
  lua_pop(L, 1);

  /* the last views of buf go: release runs before the state closes */
  printf("releases_while_alive: %d\n", releases);
  report(L, "drop", rnlua_dostring(L, "h, ht = nil, nil; collectgarbage(); collectgarbage()", NULL));
  printf("releases_after_collect: %d\n", releases);
  lua_close(L);
  printf("releases_at_close: %d\n", releases);

  /* without release: the program keeps the memory, Lua only borrows it */
  lua_State *L2 = rnlua_newstate();
  float keep[3] = {1, 2, 3};
  const int64_t n3 = 3;
  report(L2, "push_borrowed", rnlua_push_tensor(L2, keep, RNLUA_FLOAT32, 1, &n3, NULL, NULL));
  lua_setglobal(L2, "k");
  report(L2, "scale", rnlua_dostring(L2, "k:mul_(10)", NULL));
  lua_close(L2);
  printf("borrowed: %g %g %g\n", keep[0], keep[1], keep[2]);
  return 0;
}
