/* conv_ref.h - the naive reference 2-D convolution, for tests only (exposed to
 * Lua as rn._conv2d_ref): the fast kernels in conv.c are checked against it. */
#ifndef RN_CONV_REF_H
#define RN_CONV_REF_H

#include "../rn.h"

/* y: (N,OH,OW,Cout) preallocated, x: (N,H,W,Cin), w: (KH,KW,Cin,Cout),
 * b: (Cout) or NULL; any strides and any dtypes (accumulates in double).
 * p->same is resolved from x's size. Returns 0, or -1 after rn_err. */
int rn_cpu_conv2d_ref(rn_tensor *y, const rn_tensor *x, const rn_tensor *w, const rn_tensor *b,
                      const rn_conv_params *p);

#endif
