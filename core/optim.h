/* optim.h - the multi-tensor optimizer step's front end (core/ops/optim.c):
 * one call over a parameter group's tensors, math in core/optim_math.h. */
#ifndef RN_OPTIM_H
#define RN_OPTIM_H

#include "optim_math.h"
#include "rn.h"

/* One parameter of the call: p, its gradient g, the state buffers the rule
 * needs (SGD momentum: s1; Adam: s1 = m, s2 = v, s3 = max v with amsgrad),
 * and the rn_mt_seg fields step, first, l2. */
typedef struct {
  rn_tensor *p, *g, *s1, *s2, *s3;
  int64_t step;
  int first;
  double l2;
} rn_mt_item;

/* Updates items[0..n) in place (p and the state buffers): 0, or -1 after
 * rn_err with nothing written. scalars (issue 19, CUDA graphs): NULL, or a
 * contiguous float64 tensor of 2 elements {lr, step} on the parameters'
 * device, read by the step in place of hp->lr and the items' steps. */
int rn_optim_multi_step(const rn_mt_hp *hp, const rn_tensor *scalars, const rn_mt_item *items,
                        int n);

/* Keras' L2 penalties of n tensors in one pass (one CUDA launch):
 * *out = a new 0-d tensor, on ws[0]'s device and of its dtype (float32 or
 * float64), holding sum_i c[i] * sum(ws[i]^2), accumulated in double in a
 * fixed order (deterministic). n == 0 gives 0 on the CPU. 0, or -1 after
 * rn_err with *out NULL. */
int rn_l2_penalty_multi(rn_tensor *const *ws, const double *c, int n, rn_tensor **out);

#endif
