/* rnlua.h - the public C API of librnlua.so, for programs that embed rnlua:
 * open a Lua 5.4 state with rn loaded, run scripts, and move tensors between
 * C and Lua without copies. Build with `pkg-config --cflags --libs rnlua`
 * (doc/install.md; a complete example: doc/embed_example.c).
 *
 * librnlua.so links the shared Lua 5.4 library (liblua5.4.so): a program
 * that embeds it must use that same Lua (link -llua5.4, never a static
 * liblua.a as well: two copies of the Lua core in one process break).
 *
 * Errors: the functions returning int return LUA_OK (0) on success, or a Lua
 * error code with the error message (a string) on top of the stack, which
 * the caller pops. They never exit or abort. */
#ifndef RNLUA_H
#define RNLUA_H

#include <stdint.h>

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RNLUA_VERSION "0.1.0"
#define RNLUA_MAXDIM 8

/* Element types (the same numbers as rn's dtypes). */
typedef enum {
  RNLUA_FLOAT32 = 0, RNLUA_FLOAT64 = 1, RNLUA_UINT8 = 2, RNLUA_INT32 = 3,
  RNLUA_INT64 = 4, RNLUA_BFLOAT16 = 5, RNLUA_FLOAT16 = 6
} rnlua_dtype;

/* A new state with Lua's standard libraries and rn (rnlua_openlibs with the
 * automatic lua_dir). NULL when out of memory or when rn cannot be set up;
 * close it with lua_close. */
lua_State *rnlua_newstate(void);

/* Makes `require "rn"` work in L, a state the program made itself (after
 * luaL_openlibs): preloads the C core as package.preload["rn.core"] and puts
 * lua_dir (the folder holding rn/init.lua) ahead of package.path. lua_dir
 * NULL: the environment variable RNLUA_LUA_DIR, else found beside the
 * library (<libdir>/../share/rnlua/lua once installed, <libdir>/../lua in a
 * build tree). Does not load rn yet. */
int rnlua_openlibs(lua_State *L, const char *lua_dir);

/* Runs a script file / a string (name: the chunk name in messages, NULL for
 * "=rnlua"). On error the message carries a traceback. */
int rnlua_dofile(lua_State *L, const char *path);
int rnlua_dostring(lua_State *L, const char *code, const char *name);

/* Pushes a CPU tensor over the program's memory, no copy: data holds the
 * shape's elements in row-major order, aligned to the element size. Lua
 * reads and writes that memory. release(ctx), if not NULL, runs when the
 * last Lua view of it is collected (or the state closes); with release NULL
 * the program keeps data alive until the state is closed. On error nothing
 * is pushed but the message, and release is not called. */
int rnlua_push_tensor(lua_State *L, void *data, rnlua_dtype dtype, int ndim,
                      const int64_t *shape, void (*release)(void *ctx), void *ctx);

/* A tensor's memory as Lua holds it, no copy. data points at element
 * [0,...,0]; element [i0,i1,...] is at data + sum(i_k * stride[k]) elements.
 * Valid while the tensor at idx stays alive (keep it referenced, e.g. on the
 * stack or in the registry) and is not moved to another device. */
typedef struct {
  void *data;
  rnlua_dtype dtype;
  int ndim;
  int64_t shape[RNLUA_MAXDIM];
  int64_t stride[RNLUA_MAXDIM]; /* in elements */
  int contiguous;               /* 1 when row-major with no gaps */
} rnlua_tensor_view;

/* Fills *out for the tensor at stack index idx. Errors (pushes the message):
 * not a tensor, a closed tensor, a tensor on the GPU (move it with
 * x:to("cpu") first). Leaves the stack as it was on success. */
int rnlua_tensor_view_get(lua_State *L, int idx, rnlua_tensor_view *out);

#ifdef __cplusplus
}
#endif

#endif
