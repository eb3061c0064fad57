/* conv_dnnl.h (cpu) - the oneDNN convolution kernels (conv_dnnl.c), tried
 * first by the im2col entry points of conv.c. Same layouts and contracts as
 * the rn_backend conv slots: x (N,H,W,Cin), w (KH,KW,Cin,Cout), y (N,OH,OW,Cout),
 * contiguous, explicit pads. Each returns 0, -1 with an error set, or
 * RN_DNNL_FALLBACK (no error set) when oneDNN has no kernel for the case. */
#ifndef RN_CONV_DNNL_H
#define RN_CONV_DNNL_H

#include "cpu.h"

#define RN_DNNL_FALLBACK 1

/* AUTO: oneDNN, Winograd where it is faster (wino_ok in conv_dnnl.c);
 * DIRECT: oneDNN's direct kernels only; OFF: the im2col kernels */
typedef enum { RN_DNNL_AUTO = 0, RN_DNNL_OFF = 1, RN_DNNL_DIRECT = 2 } rn_dnnl_mode;

void rn_dnnl_set_mode(rn_dnnl_mode m);
rn_dnnl_mode rn_dnnl_get_mode(void);
bool rn_dnnl_available(void);
void rn_dnnl_clear_cache(void);

/* What ran (conv_dnnl.c): directions, the last call's kernel name per
 * direction (NULL before any call), and the calls per (direction, kernel)
 * since the last reset, read by index until it returns false. */
enum { RN_CONV_FWD = 0, RN_CONV_BWD_DATA = 1, RN_CONV_BWD_FILTER = 2 };
#define RN_KERNEL_NAME_MAX 96
const char *rn_dnnl_last_kernel(int dir);
bool rn_dnnl_kernel_stat(int i, int *dir, const char **name, long long *calls);
void rn_dnnl_reset_kernel_stats(void);
/* notes a kernel that ran (our own: wino.c); mute(true) stops the noting
 * while calls are made only to measure them */
void rn_dnnl_note(int dir, const char *name);
void rn_dnnl_mute(bool on);

int rn_dnnl_conv2d_fwd(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                       const rn_conv_params *p);
/* The forward with an epilogue: post is RN_POST_SUM (y += conv, y holding
 * the summand on entry) and/or RN_POST_RELU (backend.h). */
int rn_dnnl_conv2d_fwd_post(rn_tensor *y, const rn_tensor *x, const rn_tensor *w,
                            const rn_tensor *b, const rn_conv_params *p, int post);
int rn_dnnl_conv2d_bwd_data(rn_tensor *gx, const rn_tensor *gy, const rn_tensor *w,
                            const rn_conv_params *p);
int rn_dnnl_conv2d_bwd_filter(rn_tensor *gw, rn_tensor *gb, const rn_tensor *gy,
                              const rn_tensor *x, const rn_conv_params *p);

#endif
