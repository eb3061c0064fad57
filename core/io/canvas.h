/* canvas.h - a small RGB8 raster for plots (core/io/canvas.c): fill,
 * anti-aliased lines of any thickness, rectangles, dots, and text in a
 * built-in 5x8 bitmap font (printable ASCII) at integer scales. Drawing is
 * clipped to the canvas and never fails; coordinates are pixel centres
 * (pixel (0,0) is the top-left one). Non-finite coordinates draw nothing. */
#ifndef RN_CANVAS_H
#define RN_CANVAS_H

#include <stdint.h>

typedef struct {
  int w, h;
  uint8_t *px; /* h rows of w pixels, 3 bytes each, top row first */
} rn_canvas;

typedef struct {
  uint8_t r, g, b;
} rn_rgb;

/* Glyph cell: 5x8 glyph + 1 column and 1 row of spacing, times the scale. */
#define RN_FONT_W 6
#define RN_FONT_H 9

/* Allocates a w x h canvas filled white; sizes in 1..RN_PNG_MAX_SIDE.
 * Returns -1 (rn_err) on a bad size or no memory; c is then empty. */
int rn_canvas_init(rn_canvas *c, int w, int h);
void rn_canvas_free(rn_canvas *c); /* frees the pixels, zeroes c; idempotent */

void rn_canvas_fill(rn_canvas *c, rn_rgb col);
/* Blends col over pixel (x, y) with coverage a in [0,1]; clipped. */
void rn_canvas_blend(rn_canvas *c, int x, int y, rn_rgb col, double a);
/* A segment of width thick (>0) with round ends, anti-aliased. */
void rn_canvas_line(rn_canvas *c, double x0, double y0, double x1, double y1, rn_rgb col,
                    double thick);
/* The w x h pixels from (x, y): filled, or a 1-pixel outline. */
void rn_canvas_rect(rn_canvas *c, int x, int y, int w, int h, rn_rgb col, int filled);
/* A filled, anti-aliased disc of the given radius centred on (x, y). */
void rn_canvas_dot(rn_canvas *c, double x, double y, double radius, rn_rgb col);
/* Text with its top-left corner at (x, y), scale 1..16 (clamped); bytes
 * outside printable ASCII draw as '?'. vertical: rotated 90 degrees
 * counter-clockwise (reads bottom to top), (x, y) then is the bottom-left.
 * Returns the text's advance in pixels (its length along the baseline). */
int rn_canvas_text(rn_canvas *c, int x, int y, const char *s, size_t n, rn_rgb col, int scale,
                   int vertical);
/* Advance of n bytes of text at scale (the last glyph's spacing excluded). */
int rn_canvas_text_width(size_t n, int scale);

int rn_canvas_save_png(const rn_canvas *c, const char *path);

#endif
