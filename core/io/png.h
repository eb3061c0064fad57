/* png.h - writing 8-bit RGB images as PNG files (core/io/png.c), for the
 * plots rnlua draws itself (training curves). Errors follow rn.h: -1 after
 * rn_err, with a message naming the path and the reason. */
#ifndef RN_PNG_H
#define RN_PNG_H

#include <stdint.h>

#define RN_PNG_MAX_SIDE 16384 /* widths and heights lie in 1..RN_PNG_MAX_SIDE */

/* Writes rgb (h rows of w pixels, 3 bytes each, top row first) to path as an
 * RGB8 PNG, atomically: a temp file beside path, fsync, rename over it. On
 * error the previous file (if any) is kept and no temp file is left. */
int rn_png_write(const char *path, int w, int h, const uint8_t *rgb);

/* Checks w and h against 1..RN_PNG_MAX_SIDE; what names the caller. */
int rn_png_check_size(const char *what, long long w, long long h);

#endif
