/* l_plot.c - the drawing functions of rn.core behind lua/rn/plot.lua:
 *   rn._png_write(path, w, h, rgb)   rgb: a string of w*h*3 bytes, top row first
 *   rn._canvas(w, h) -> canvas       white RGB raster, sizes 1..16384
 * Canvas methods (coordinates are 0-based pixel centres, (0,0) top-left;
 * colors are integers 0..255; nothing drawn off the canvas fails):
 *   :fill(r,g,b)  :line(x0,y0,x1,y1,r,g,b[,thick=1])  :rect(x,y,w,h,r,g,b[,filled=true])
 *   :dot(x,y,radius,r,g,b)  :text(x,y,str,r,g,b[,scale=2[,vertical=false]]) -> width
 *   :text_width(str[,scale=2])  :get(x,y) -> r,g,b  :size() -> w,h  :pixels() -> string
 *   :save_png(path)  :close()
 * The pixels live in C memory owned by the userdata (freed by __gc/__close/
 * close), allocated only after every argument is checked. */
#include <math.h>
#include <string.h>

#include "../io/canvas.h"
#include "../io/png.h"
#include "rnl.h"

#define CANVAS_MT "rn.Canvas"

static rn_canvas *check_canvas(lua_State *L, const char *op) {
  rn_canvas *c = luaL_checkudata(L, 1, CANVAS_MT);
  if (!c->px) rnl_errorf(L, "canvas:%s: the canvas is closed", op);
  return c;
}

static int check_int(lua_State *L, int idx, const char *op, const char *what, lua_Integer *out) {
  int ok;
  *out = lua_tointegerx(L, idx, &ok);
  if (!ok)
    rnl_errorf(L, "%s: %s must be an integer, got %s", op, what,
               lua_type(L, idx) == LUA_TNUMBER ? "a fraction" : luaL_typename(L, idx));
  return 0;
}

static void check_size(lua_State *L, int idx, const char *op, int *w, int *h) {
  lua_Integer lw, lh;
  check_int(L, idx, op, "width", &lw);
  check_int(L, idx + 1, op, "height", &lh);
  if (rn_png_check_size(op, lw, lh) < 0) rnl_error(L);
  *w = (int)lw;
  *h = (int)lh;
}

static const char *check_path(lua_State *L, int idx, const char *op) {
  size_t n;
  if (lua_type(L, idx) != LUA_TSTRING)
    rnl_errorf(L, "%s: path must be a string, got %s", op, luaL_typename(L, idx));
  const char *p = lua_tolstring(L, idx, &n);
  if (n == 0 || strlen(p) != n) rnl_errorf(L, "%s: path is empty or holds a NUL byte", op);
  return p;
}

static rn_rgb check_rgb(lua_State *L, int idx, const char *op) {
  static const char *const names[3] = {"red", "green", "blue"};
  uint8_t v[3];
  for (int i = 0; i < 3; i++) {
    int ok;
    lua_Integer x = lua_tointegerx(L, idx + i, &ok);
    if (!ok || x < 0 || x > 255) {
      if (lua_type(L, idx + i) == LUA_TNUMBER)
        rnl_errorf(L, "%s: %s must be an integer 0..255, got %s", op, names[i],
                   lua_tostring(L, idx + i));
      rnl_errorf(L, "%s: %s must be an integer 0..255, got %s", op, names[i],
                 luaL_typename(L, idx + i));
    }
    v[i] = (uint8_t)x;
  }
  return (rn_rgb){v[0], v[1], v[2]};
}

static double check_num(lua_State *L, int idx, const char *op, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    rnl_errorf(L, "%s: %s must be a number, got %s", op, what, luaL_typename(L, idx));
  return lua_tonumber(L, idx);
}

/* Pixel coordinate as int, clamped far outside any canvas; NaN -> *skip. */
static int to_pixel(double v, int *skip) {
  if (isnan(v)) {
    *skip = 1;
    return 0;
  }
  return (int)lrint(v < -1e8 ? -1e8 : v > 1e8 ? 1e8 : v);
}

/* rn._png_write(path, w, h, rgb) */
static int l_png_write(lua_State *L) {
  const char *path = check_path(L, 1, "png_write");
  int w, h;
  check_size(L, 2, "png_write", &w, &h);
  if (lua_type(L, 4) != LUA_TSTRING)
    rnl_errorf(L, "png_write: rgb must be a string of bytes, got %s", luaL_typename(L, 4));
  size_t n;
  const char *rgb = lua_tolstring(L, 4, &n);
  size_t need = (size_t)w * (size_t)h * 3;
  if (n != need)
    rnl_errorf(L, "png_write: rgb has %zu bytes; a %dx%d RGB image needs %zu", n, w, h, need);
  if (rn_png_write(path, w, h, (const uint8_t *)rgb) < 0) return rnl_error(L);
  return 0;
}

/* rn._canvas(w, h) */
static int l_canvas(lua_State *L) {
  int w, h;
  check_size(L, 1, "canvas", &w, &h);
  rn_canvas *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, CANVAS_MT);
  if (rn_canvas_init(c, w, h) < 0) return rnl_error(L);
  return 1;
}

static int m_fill(lua_State *L) {
  rn_canvas *c = check_canvas(L, "fill");
  rn_canvas_fill(c, check_rgb(L, 2, "canvas:fill"));
  lua_settop(L, 1);
  return 1;
}

static int m_line(lua_State *L) {
  rn_canvas *c = check_canvas(L, "line");
  double x0 = check_num(L, 2, "canvas:line", "x0"), y0 = check_num(L, 3, "canvas:line", "y0");
  double x1 = check_num(L, 4, "canvas:line", "x1"), y1 = check_num(L, 5, "canvas:line", "y1");
  rn_rgb col = check_rgb(L, 6, "canvas:line");
  double thick = lua_isnoneornil(L, 9) ? 1 : check_num(L, 9, "canvas:line", "thick");
  if (!(thick > 0 && thick <= 1024))
    rnl_errorf(L, "canvas:line: thick %g outside (0, 1024]", thick);
  rn_canvas_line(c, x0, y0, x1, y1, col, thick);
  lua_settop(L, 1);
  return 1;
}

static int m_rect(lua_State *L) {
  rn_canvas *c = check_canvas(L, "rect");
  int skip = 0;
  int x = to_pixel(check_num(L, 2, "canvas:rect", "x"), &skip);
  int y = to_pixel(check_num(L, 3, "canvas:rect", "y"), &skip);
  int w = to_pixel(check_num(L, 4, "canvas:rect", "w"), &skip);
  int h = to_pixel(check_num(L, 5, "canvas:rect", "h"), &skip);
  rn_rgb col = check_rgb(L, 6, "canvas:rect");
  int filled = lua_isnoneornil(L, 9) ? 1 : lua_toboolean(L, 9);
  if (!skip) rn_canvas_rect(c, x, y, w, h, col, filled);
  lua_settop(L, 1);
  return 1;
}

static int m_dot(lua_State *L) {
  rn_canvas *c = check_canvas(L, "dot");
  double x = check_num(L, 2, "canvas:dot", "x"), y = check_num(L, 3, "canvas:dot", "y");
  double r = check_num(L, 4, "canvas:dot", "radius");
  rn_rgb col = check_rgb(L, 5, "canvas:dot");
  if (!(r >= 0 && r <= 4096)) rnl_errorf(L, "canvas:dot: radius %g outside [0, 4096]", r);
  rn_canvas_dot(c, x, y, r, col);
  lua_settop(L, 1);
  return 1;
}

static int check_scale(lua_State *L, int idx, const char *op) {
  if (lua_isnoneornil(L, idx)) return 2;
  lua_Integer s;
  check_int(L, idx, op, "scale", &s);
  if (s < 1 || s > 16) rnl_errorf(L, "%s: scale %lld outside 1..16", op, (long long)s);
  return (int)s;
}

static int m_text(lua_State *L) {
  rn_canvas *c = check_canvas(L, "text");
  int skip = 0;
  int x = to_pixel(check_num(L, 2, "canvas:text", "x"), &skip);
  int y = to_pixel(check_num(L, 3, "canvas:text", "y"), &skip);
  if (lua_type(L, 4) != LUA_TSTRING && lua_type(L, 4) != LUA_TNUMBER)
    rnl_errorf(L, "canvas:text: text must be a string, got %s", luaL_typename(L, 4));
  size_t n;
  const char *s = lua_tolstring(L, 4, &n);
  rn_rgb col = check_rgb(L, 5, "canvas:text");
  int scale = check_scale(L, 8, "canvas:text");
  int vertical = lua_toboolean(L, 9);
  int wd = skip ? rn_canvas_text_width(n, scale)
                : rn_canvas_text(c, x, y, s, n, col, scale, vertical);
  lua_pushinteger(L, wd);
  return 1;
}

static int m_text_width(lua_State *L) {
  check_canvas(L, "text_width");
  if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
    rnl_errorf(L, "canvas:text_width: text must be a string, got %s", luaL_typename(L, 2));
  size_t n;
  lua_tolstring(L, 2, &n);
  lua_pushinteger(L, rn_canvas_text_width(n, check_scale(L, 3, "canvas:text_width")));
  return 1;
}

static int m_get(lua_State *L) {
  rn_canvas *c = check_canvas(L, "get");
  lua_Integer x, y;
  check_int(L, 2, "canvas:get", "x", &x);
  check_int(L, 3, "canvas:get", "y", &y);
  if (x < 0 || y < 0 || x >= c->w || y >= c->h)
    rnl_errorf(L, "canvas:get: pixel (%lld, %lld) outside 0..%d x 0..%d", (long long)x,
               (long long)y, c->w - 1, c->h - 1);
  const uint8_t *p = c->px + 3 * ((size_t)y * (size_t)c->w + (size_t)x);
  for (int i = 0; i < 3; i++) lua_pushinteger(L, p[i]);
  return 3;
}

static int m_size(lua_State *L) {
  rn_canvas *c = check_canvas(L, "size");
  lua_pushinteger(L, c->w);
  lua_pushinteger(L, c->h);
  return 2;
}

static int m_pixels(lua_State *L) {
  rn_canvas *c = check_canvas(L, "pixels");
  lua_pushlstring(L, (const char *)c->px, (size_t)c->w * (size_t)c->h * 3);
  return 1;
}

static int m_save_png(lua_State *L) {
  rn_canvas *c = check_canvas(L, "save_png");
  const char *path = check_path(L, 2, "canvas:save_png");
  if (rn_canvas_save_png(c, path) < 0) return rnl_error(L);
  lua_settop(L, 1);
  return 1;
}

static int m_close(lua_State *L) {
  rn_canvas *c = luaL_checkudata(L, 1, CANVAS_MT);
  rn_canvas_free(c);
  return 0;
}

static int m_tostring(lua_State *L) {
  rn_canvas *c = luaL_checkudata(L, 1, CANVAS_MT);
  if (c->px)
    lua_pushfstring(L, "rn.Canvas(%dx%d)", c->w, c->h);
  else
    lua_pushliteral(L, "rn.Canvas(closed)");
  return 1;
}

void rnl_open_plot(lua_State *L, int rn_idx, int methods_idx) {
  static const luaL_Reg funcs[] = {
      {"_png_write", l_png_write}, {"_canvas", l_canvas}, {NULL, NULL}};
  static const luaL_Reg methods[] = {
      {"fill", m_fill},   {"line", m_line},         {"rect", m_rect},
      {"dot", m_dot},     {"text", m_text},         {"text_width", m_text_width},
      {"get", m_get},     {"size", m_size},         {"pixels", m_pixels},
      {"save_png", m_save_png}, {"close", m_close}, {NULL, NULL}};
  luaL_newmetatable(L, CANVAS_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, m_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, m_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, m_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  rnl_register(L, rn_idx, methods_idx, funcs, 0);
}
