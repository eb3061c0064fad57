/* embed_example.c - a C program that embeds rnlua (doc/install.md, "The
 * library"): it opens a Lua state with rn, hands Lua a batch that lives in C
 * memory (no copy), runs a small Keras-like model on it from Lua, and reads
 * the model's output back in C (no copy). tests/test_embed.lua builds and
 * runs it, against build-pic/ and against an installed prefix:
 *
 *   cc -std=c11 embed_example.c $(pkg-config --cflags --libs rnlua) -o embed_example
 *   ./embed_example
 *
 * Shapes: the batch x is (4,3) float32; the model is Dense(2) with weights
 * set from Lua, so y = x W + b is (4,2) and the expected values are known. */
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <rnlua.h>

static int released; /* set by release(): Lua is done with the batch */

static void release(void *ctx) {
  (void)ctx;
  released = 1;
}

static int fail(lua_State *L, const char *what) {
  fprintf(stderr, "embed_example: %s: %s\n", what, lua_tostring(L, -1));
  lua_close(L);
  return 1;
}

/* The Lua side: a global function `run(x)` that fills in the model's weights,
 * doubles x in place (C sees it) and returns the model's output. */
static const char *script =
  "local rn = require 'rn'\n"
  "local layers = rn.layers\n"
  "local inputs = layers.Input({3})\n"
  "local dense = layers.Dense(2)\n"
  "local model = rn.Model(inputs, dense(inputs))\n"
  "-- W (3,2) and b (2) chosen so that the output is easy to check\n"
  "local w, b = dense.kernel, dense.bias\n"
  "rn.no_grad(function()\n"
  "  w:copy_(rn.tensor({{1, 0}, {0, 1}, {1, 1}}))\n"
  "  b:copy_(rn.tensor({0.5, -0.5}))\n"
  "end)\n"
  "print('rn from: ' .. package.searchpath('rn', package.path))\n"
  "function run(x)\n"
  "  x:mul_(2)                      -- writes through to the C array\n"
  "  return model:predict(x)\n"
  "end\n";

int main(void) {
  lua_State *L = rnlua_newstate();
  if (!L) {
    fprintf(stderr, "embed_example: rnlua_newstate failed\n");
    return 1;
  }
  if (rnlua_dostring(L, script, "=embed_example") != LUA_OK) return fail(L, "script");

  /* the batch, in C memory; Lua sees the same bytes */
  static float x[4][3] = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10, 11, 12}};
  const int64_t shape[2] = {4, 3};
  lua_getglobal(L, "run");
  if (rnlua_push_tensor(L, x, RNLUA_FLOAT32, 2, shape, release, NULL) != LUA_OK)
    return fail(L, "push_tensor");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) return fail(L, "run");

  rnlua_tensor_view y;
  if (rnlua_tensor_view_get(L, -1, &y) != LUA_OK) return fail(L, "tensor_view_get");
  if (y.dtype != RNLUA_FLOAT32 || y.ndim != 2) {
    fprintf(stderr, "embed_example: unexpected output (dtype %d, %d dims)\n", (int)y.dtype, y.ndim);
    lua_close(L);
    return 1;
  }
  printf("x[0][0] after Lua's x:mul_(2): %g\n", x[0][0]);
  const float *yd = y.data;
  int bad = 0;
  for (int64_t i = 0; i < y.shape[0]; i++) {
    float y0 = yd[i * y.stride[0]], y1 = yd[i * y.stride[0] + y.stride[1]];
    /* x doubled: y = 2 (x0 + x2) + 0.5, 2 (x1 + x2) - 0.5 */
    float e0 = x[i][0] + x[i][2] + 0.5f, e1 = x[i][1] + x[i][2] - 0.5f;
    printf("y[%lld] = %g %g\n", (long long)i, y0, y1);
    if (y0 != e0 || y1 != e1) bad = 1;
  }
  lua_pop(L, 1);
  lua_close(L); /* collects the last views of x: release() runs */
  printf("released: %d\n", released);
  if (bad || !released || x[0][0] != 2) {
    fprintf(stderr, "embed_example: wrong results\n");
    return 1;
  }
  printf("ok\n");
  return 0;
}
