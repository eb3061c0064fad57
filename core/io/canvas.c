/* canvas.c - the RGB8 raster behind rnlua's plots (see canvas.h): lines are
 * drawn as anti-aliased capsules (coverage from each pixel centre's distance
 * to the segment, one pass per major-axis column so no pixel is blended
 * twice), text with a built-in 5x8 font. Every primitive clips to the
 * canvas and works in doubles, so far-off or huge coordinates are safe. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../rn.h"
#include "canvas.h"
#include "png.h"

/* 5x8 glyphs for ASCII 32..126: five columns, left to right; bit 0 is the
 * top row, bit 6 the baseline row, bit 7 the descender row. */
static const uint8_t font5x8[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, /* ' ' */
    {0x00, 0x00, 0x5F, 0x00, 0x00}, /* ! */
    {0x00, 0x07, 0x00, 0x07, 0x00}, /* " */
    {0x14, 0x7F, 0x14, 0x7F, 0x14}, /* # */
    {0x24, 0x2A, 0x7F, 0x2A, 0x12}, /* $ */
    {0x23, 0x13, 0x08, 0x64, 0x62}, /* % */
    {0x36, 0x49, 0x55, 0x22, 0x50}, /* & */
    {0x00, 0x05, 0x03, 0x00, 0x00}, /* ' */
    {0x00, 0x1C, 0x22, 0x41, 0x00}, /* ( */
    {0x00, 0x41, 0x22, 0x1C, 0x00}, /* ) */
    {0x14, 0x08, 0x3E, 0x08, 0x14}, /* * */
    {0x08, 0x08, 0x3E, 0x08, 0x08}, /* + */
    {0x00, 0xA0, 0x60, 0x00, 0x00}, /* , */
    {0x08, 0x08, 0x08, 0x08, 0x08}, /* - */
    {0x00, 0x60, 0x60, 0x00, 0x00}, /* . */
    {0x20, 0x10, 0x08, 0x04, 0x02}, /* / */
    {0x3E, 0x51, 0x49, 0x45, 0x3E}, /* 0 */
    {0x00, 0x42, 0x7F, 0x40, 0x00}, /* 1 */
    {0x42, 0x61, 0x51, 0x49, 0x46}, /* 2 */
    {0x21, 0x41, 0x45, 0x4B, 0x31}, /* 3 */
    {0x18, 0x14, 0x12, 0x7F, 0x10}, /* 4 */
    {0x27, 0x45, 0x45, 0x45, 0x39}, /* 5 */
    {0x3C, 0x4A, 0x49, 0x49, 0x30}, /* 6 */
    {0x01, 0x71, 0x09, 0x05, 0x03}, /* 7 */
    {0x36, 0x49, 0x49, 0x49, 0x36}, /* 8 */
    {0x06, 0x49, 0x49, 0x29, 0x1E}, /* 9 */
    {0x00, 0x36, 0x36, 0x00, 0x00}, /* : */
    {0x00, 0xB6, 0x76, 0x00, 0x00}, /* ; */
    {0x08, 0x14, 0x22, 0x41, 0x00}, /* < */
    {0x14, 0x14, 0x14, 0x14, 0x14}, /* = */
    {0x00, 0x41, 0x22, 0x14, 0x08}, /* > */
    {0x02, 0x01, 0x51, 0x09, 0x06}, /* ? */
    {0x32, 0x49, 0x79, 0x41, 0x3E}, /* @ */
    {0x7E, 0x11, 0x11, 0x11, 0x7E}, /* A */
    {0x7F, 0x49, 0x49, 0x49, 0x36}, /* B */
    {0x3E, 0x41, 0x41, 0x41, 0x22}, /* C */
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, /* D */
    {0x7F, 0x49, 0x49, 0x49, 0x41}, /* E */
    {0x7F, 0x09, 0x09, 0x09, 0x01}, /* F */
    {0x3E, 0x41, 0x49, 0x49, 0x7A}, /* G */
    {0x7F, 0x08, 0x08, 0x08, 0x7F}, /* H */
    {0x00, 0x41, 0x7F, 0x41, 0x00}, /* I */
    {0x20, 0x40, 0x41, 0x3F, 0x01}, /* J */
    {0x7F, 0x08, 0x14, 0x22, 0x41}, /* K */
    {0x7F, 0x40, 0x40, 0x40, 0x40}, /* L */
    {0x7F, 0x02, 0x0C, 0x02, 0x7F}, /* M */
    {0x7F, 0x04, 0x08, 0x10, 0x7F}, /* N */
    {0x3E, 0x41, 0x41, 0x41, 0x3E}, /* O */
    {0x7F, 0x09, 0x09, 0x09, 0x06}, /* P */
    {0x3E, 0x41, 0x51, 0x21, 0x5E}, /* Q */
    {0x7F, 0x09, 0x19, 0x29, 0x46}, /* R */
    {0x46, 0x49, 0x49, 0x49, 0x31}, /* S */
    {0x01, 0x01, 0x7F, 0x01, 0x01}, /* T */
    {0x3F, 0x40, 0x40, 0x40, 0x3F}, /* U */
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, /* V */
    {0x3F, 0x40, 0x38, 0x40, 0x3F}, /* W */
    {0x63, 0x14, 0x08, 0x14, 0x63}, /* X */
    {0x07, 0x08, 0x70, 0x08, 0x07}, /* Y */
    {0x61, 0x51, 0x49, 0x45, 0x43}, /* Z */
    {0x00, 0x7F, 0x41, 0x41, 0x00}, /* [ */
    {0x02, 0x04, 0x08, 0x10, 0x20}, /* backslash */
    {0x00, 0x41, 0x41, 0x7F, 0x00}, /* ] */
    {0x04, 0x02, 0x01, 0x02, 0x04}, /* ^ */
    {0x80, 0x80, 0x80, 0x80, 0x80}, /* _ */
    {0x00, 0x01, 0x02, 0x04, 0x00}, /* ` */
    {0x20, 0x54, 0x54, 0x54, 0x78}, /* a */
    {0x7F, 0x48, 0x44, 0x44, 0x38}, /* b */
    {0x38, 0x44, 0x44, 0x44, 0x20}, /* c */
    {0x38, 0x44, 0x44, 0x48, 0x7F}, /* d */
    {0x38, 0x54, 0x54, 0x54, 0x18}, /* e */
    {0x08, 0x7E, 0x09, 0x01, 0x02}, /* f */
    {0x18, 0xA4, 0xA4, 0xA4, 0x7C}, /* g */
    {0x7F, 0x08, 0x04, 0x04, 0x78}, /* h */
    {0x00, 0x44, 0x7D, 0x40, 0x00}, /* i */
    {0x40, 0x80, 0x84, 0x7D, 0x00}, /* j */
    {0x7F, 0x10, 0x28, 0x44, 0x00}, /* k */
    {0x00, 0x41, 0x7F, 0x40, 0x00}, /* l */
    {0x7C, 0x04, 0x18, 0x04, 0x78}, /* m */
    {0x7C, 0x08, 0x04, 0x04, 0x78}, /* n */
    {0x38, 0x44, 0x44, 0x44, 0x38}, /* o */
    {0xFC, 0x24, 0x24, 0x24, 0x18}, /* p */
    {0x18, 0x24, 0x24, 0x24, 0xFC}, /* q */
    {0x7C, 0x08, 0x04, 0x04, 0x08}, /* r */
    {0x48, 0x54, 0x54, 0x54, 0x24}, /* s */
    {0x04, 0x3F, 0x44, 0x40, 0x20}, /* t */
    {0x3C, 0x40, 0x40, 0x20, 0x7C}, /* u */
    {0x1C, 0x20, 0x40, 0x20, 0x1C}, /* v */
    {0x3C, 0x40, 0x30, 0x40, 0x3C}, /* w */
    {0x44, 0x28, 0x10, 0x28, 0x44}, /* x */
    {0x1C, 0xA0, 0xA0, 0xA0, 0x7C}, /* y */
    {0x44, 0x64, 0x54, 0x4C, 0x44}, /* z */
    {0x00, 0x08, 0x36, 0x41, 0x00}, /* { */
    {0x00, 0x00, 0x7F, 0x00, 0x00}, /* | */
    {0x00, 0x41, 0x36, 0x08, 0x00}, /* } */
    {0x08, 0x04, 0x08, 0x10, 0x08}, /* ~ */
};

int rn_canvas_init(rn_canvas *c, int w, int h) {
  c->w = c->h = 0;
  c->px = NULL;
  if (rn_png_check_size("canvas", w, h) < 0) return -1;
  size_t n = (size_t)w * (size_t)h * 3;
  c->px = malloc(n);
  if (!c->px) return rn_err("canvas: out of memory for %dx%d pixels", w, h);
  memset(c->px, 255, n);
  c->w = w;
  c->h = h;
  return 0;
}

void rn_canvas_free(rn_canvas *c) {
  free(c->px);
  c->px = NULL;
  c->w = c->h = 0;
}

void rn_canvas_fill(rn_canvas *c, rn_rgb col) {
  size_t n = (size_t)c->w * (size_t)c->h;
  for (size_t i = 0; i < n; i++) {
    c->px[3 * i] = col.r;
    c->px[3 * i + 1] = col.g;
    c->px[3 * i + 2] = col.b;
  }
}

static inline uint8_t mix(uint8_t dst, uint8_t src, double a) {
  return (uint8_t)lrint(dst + (src - dst) * a);
}

void rn_canvas_blend(rn_canvas *c, int x, int y, rn_rgb col, double a) {
  if (x < 0 || y < 0 || x >= c->w || y >= c->h || !(a > 0)) return;
  uint8_t *p = c->px + 3 * ((size_t)y * (size_t)c->w + (size_t)x);
  if (a >= 1) {
    p[0] = col.r;
    p[1] = col.g;
    p[2] = col.b;
  } else {
    p[0] = mix(p[0], col.r, a);
    p[1] = mix(p[1], col.g, a);
    p[2] = mix(p[2], col.b, a);
  }
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

void rn_canvas_line(rn_canvas *c, double x0, double y0, double x1, double y1, rn_rgb col,
                    double thick) {
  if (!isfinite(x0) || !isfinite(y0) || !isfinite(x1) || !isfinite(y1) || !(thick > 0)) return;
  if (thick > 1024) thick = 1024;
  double r = thick / 2, ext = r + 1;
  /* Walk the major axis u; v is the minor one. */
  int steep = fabs(y1 - y0) > fabs(x1 - x0);
  double u0 = steep ? y0 : x0, v0 = steep ? x0 : y0;
  double u1 = steep ? y1 : x1, v1 = steep ? x1 : y1;
  if (u0 > u1) {
    double t = u0; u0 = u1; u1 = t;
    t = v0; v0 = v1; v1 = t;
  }
  int U = steep ? c->h : c->w, V = steep ? c->w : c->h;
  double ua = u0 - ext, ub = u1 + ext;
  if (ub < 0 || ua > U - 1) return;
  int ia = (int)ceil(clampd(ua, 0, U - 1)), ib = (int)floor(clampd(ub, 0, U - 1));
  double du = u1 - u0, dv = v1 - v0;
  if (!isfinite(du) || !isfinite(dv)) return; /* ends beyond +-1e307 */
  double len = hypot(du, dv), eu = len > 0 ? du / len : 1, ev = len > 0 ? dv / len : 0;
  double slope = du > 0 ? dv / du : 0;
  double hh = ext * (1 + fabs(slope)); /* covers the band and the round caps */
  for (int u = ia; u <= ib; u++) {
    double vc = v0 + (clampd(u, u0, u1) - u0) * slope;
    if (vc + hh < 0 || vc - hh > V - 1) continue;
    int va = (int)ceil(clampd(vc - hh, 0, V - 1)), vb = (int)floor(clampd(vc + hh, 0, V - 1));
    for (int v = va; v <= vb; v++) {
      /* distance to the segment: to an end, or across; written so that far
       * ends (long lines) lose no precision near the canvas */
      double t = (u - u0) * eu + (v - v0) * ev, d;
      if (t <= 0)
        d = hypot(u - u0, v - v0);
      else if (t >= len)
        d = hypot(u - u1, v - v1);
      else
        d = fabs((v - v0) * eu - (u - u0) * ev);
      double a = r + 0.5 - d;
      if (a <= 0) continue;
      if (steep)
        rn_canvas_blend(c, v, u, col, a);
      else
        rn_canvas_blend(c, u, v, col, a);
    }
  }
}

void rn_canvas_rect(rn_canvas *c, int x, int y, int w, int h, rn_rgb col, int filled) {
  if (w <= 0 || h <= 0) return;
  long long x0 = x, y0 = y, x1 = (long long)x + w - 1, y1 = (long long)y + h - 1;
  for (long long yy = y0 < 0 ? 0 : y0; yy <= y1 && yy < c->h; yy++)
    for (long long xx = x0 < 0 ? 0 : x0; xx <= x1 && xx < c->w; xx++)
      if (filled || yy == y0 || yy == y1 || xx == x0 || xx == x1)
        rn_canvas_blend(c, (int)xx, (int)yy, col, 1);
}

void rn_canvas_dot(rn_canvas *c, double x, double y, double radius, rn_rgb col) {
  if (!isfinite(x) || !isfinite(y) || !(radius > 0)) return;
  if (radius > 4096) radius = 4096;
  double ext = radius + 1;
  if (x + ext < 0 || y + ext < 0 || x - ext > c->w - 1 || y - ext > c->h - 1) return;
  int xa = (int)ceil(clampd(x - ext, 0, c->w - 1)), xb = (int)floor(clampd(x + ext, 0, c->w - 1));
  int ya = (int)ceil(clampd(y - ext, 0, c->h - 1)), yb = (int)floor(clampd(y + ext, 0, c->h - 1));
  for (int yy = ya; yy <= yb; yy++)
    for (int xx = xa; xx <= xb; xx++)
      rn_canvas_blend(c, xx, yy, col, clampd(radius + 0.5 - hypot(xx - x, yy - y), 0, 1));
}

int rn_canvas_text_width(size_t n, int scale) {
  if (scale < 1) scale = 1;
  if (scale > 16) scale = 16;
  if (n == 0) return 0;
  double wd = (double)n * RN_FONT_W * scale - scale;
  return wd > 1e9 ? 1000000000 : (int)wd;
}

int rn_canvas_text(rn_canvas *c, int x, int y, const char *s, size_t n, rn_rgb col, int scale,
                   int vertical) {
  if (scale < 1) scale = 1;
  if (scale > 16) scale = 16;
  long long cell = (long long)RN_FONT_W * scale;
  for (size_t i = 0; i < n; i++) {
    long long tx0 = (long long)i * cell; /* along the text */
    /* Stop once the glyphs run off the canvas in the writing direction. */
    if (!vertical && x + tx0 >= c->w) break;
    if (vertical && (long long)y - tx0 < 0) break;
    unsigned char ch = (unsigned char)s[i];
    if (ch < 32 || ch > 126) ch = '?';
    const uint8_t *g = font5x8[ch - 32];
    for (int gx = 0; gx < 5; gx++)
      for (int gy = 0; gy < 8; gy++) {
        if (!(g[gx] >> gy & 1)) continue;
        long long tx = tx0 + (long long)gx * scale, ty = (long long)gy * scale;
        for (int a = 0; a < scale; a++)
          for (int b = 0; b < scale; b++) {
            long long sx = vertical ? x + ty + b : x + tx + a;
            long long sy = vertical ? y - tx - a : y + ty + b;
            if (sx >= 0 && sy >= 0 && sx < c->w && sy < c->h)
              rn_canvas_blend(c, (int)sx, (int)sy, col, 1);
          }
      }
  }
  return rn_canvas_text_width(n, scale);
}

int rn_canvas_save_png(const rn_canvas *c, const char *path) {
  if (!c->px) return rn_err("canvas: save_png on a closed canvas");
  return rn_png_write(path, c->w, c->h, c->px);
}
