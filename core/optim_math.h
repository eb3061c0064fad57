/* optim_math.h - the per-element math of the multi-tensor optimizer step
 * (SGD with momentum / nesterov / dampening, Adam, AdamW, amsgrad; PyTorch's
 * and Keras' update rules; an optional Keras L2 factor folded into the
 * gradient), written once and compiled twice: as host C for the CPU twin
 * (core/ops/optim.c) and as CUDA device code for the one-launch kernel
 * (kernels/optim.cu). Plain C11 that nvcc also accepts.
 *
 * The host build reproduces lua/rn/optim.lua's per-tensor step bit for bit:
 * each scalar is rounded to the tensor's dtype first (as rn_scalar does) and
 * every operation rounds once, in the same order as the per-tensor ops
 * (x*s, then y + alpha*x as rn_axpy_ does; sqrt, then / sqrt(bc2), then
 * + eps). The CUDA build follows the same order (nvcc may contract a * b + c
 * into an FMA, so GPU results agree to rounding, not bitwise).
 *
 *   SGD pytorch:  d = g [+ wd*p];  b = first ? d : m*b + (1-damp)*d;
 *                 d = nesterov ? d + m*b : b;  p += -lr*d    (b: s1)
 *   SGD keras:    p *= 1-lr*wd;  v = m*v + -lr*g;  p += v
 *                 (nesterov: p += m*v; p += -lr*g)          (v: s1)
 *   Adam:         d = g [+ wd*p] (pytorch Adam) | p *= 1-lr*wd (AdamW,
 *                 keras); m = b1*m + (1-b1)*d; v = b2*v + (1-b2)*d*d;
 *                 [amsgrad: vm = max(vm, v); v = vm]
 *                 pytorch: p += -lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
 *                 keras:   p += -lr*sqrt(bc2)/bc1 * m / (sqrt(v) + eps)
 *                 (m: s1, v: s2, vm: s3; bc_i = 1 - b_i^step)
 *   L2 (Keras kernel_regularizer l2(c)): g + 2c*p first, on the step's
 *   starting p, as autograd of c*sum(p^2) would add it.
 */
#ifndef RN_OPTIM_MATH_H
#define RN_OPTIM_MATH_H

#include <math.h>
#include <stdint.h>

#include "mutant.h"

#ifdef __CUDACC__
#define RN_MT_FN static inline __host__ __device__
#else
#define RN_MT_FN static inline
#endif

enum { RN_MT_SGD = 0, RN_MT_ADAM = 1 };
enum { RN_MT_PYTORCH = 0, RN_MT_KERAS = 1 };

/* The hyper-parameters of one call (one parameter group). */
typedef struct {
  int kind;      /* RN_MT_SGD, RN_MT_ADAM */
  int rule;      /* RN_MT_PYTORCH, RN_MT_KERAS */
  int nesterov, amsgrad;
  int decoupled; /* AdamW (pytorch rule): p *= 1 - lr*wd instead of L2 */
  double lr, weight_decay, momentum, dampening, beta1, beta2, eps;
  /* issue 19, CUDA graphs: NULL, or {lr, step} in the step's memory (the
   * device's for CUDA), read in place of lr and every segment's step, so
   * that a replayed graph follows the schedule */
  const double *scal;
} rn_mt_hp;

/* One tensor of the step: device (or host) pointers to its first element,
 * all with n elements of the call's dtype. s1..s3: the state buffers the
 * rule needs (SGD momentum: s1; Adam: s1, s2, and s3 with amsgrad). */
typedef struct {
  void *p;
  const void *g;
  void *s1, *s2, *s3;
  int64_t n;
  int64_t step; /* Adam: this tensor's step number, 1 for its first */
  int first;    /* SGD pytorch momentum: the buffer starts as d */
  double l2;    /* Keras l2 factor c (0: none): 2c*p joins the gradient */
} rn_mt_seg;

/* The scalars of one segment, rounded to the dtype T (suffix f / d; SQRT:
 * sqrtf / sqrt), and the element function. */
#define RN_MT_COEF(T, SFX, SQRT)                                                              \
  typedef struct {                                                                        \
    T l2, wd, decay, m, damp, neg_lr, b1, omb1, b2, omb2, sbc2, eps, step_size;           \
    int l2_on, wd_on, decay_on, mom_on, first;                                             \
  } rn_mt_coef_##SFX;                                                                      \
  RN_MT_FN rn_mt_coef_##SFX rn_mt_coef_make_##SFX(const rn_mt_hp *h, const rn_mt_seg *s) { \
    rn_mt_coef_##SFX c;                                                                    \
    int keras = h->rule == RN_MT_KERAS;                                                    \
    c.l2_on = s->l2 != 0;                                                                  \
    c.l2 = (T)(2 * s->l2);                                                                 \
    c.decay_on = h->weight_decay != 0 && (keras || (h->kind == RN_MT_ADAM && h->decoupled)); \
    c.wd_on = h->weight_decay != 0 && !c.decay_on;                                         \
    c.wd = (T)h->weight_decay;                                                             \
    double lr = h->scal ? h->scal[0] : h->lr;                                              \
    double step = h->scal ? h->scal[1] : (double)s->step;                                  \
    c.decay = (T)(1 - lr * h->weight_decay);                                               \
    c.mom_on = h->momentum != 0;                                                           \
    c.first = s->first;                                                                    \
    c.m = (T)h->momentum;                                                                  \
    c.damp = (T)(1 - h->dampening);                                                        \
    c.neg_lr = (T)(-lr);                                                                   \
    c.b1 = (T)h->beta1;                                                                    \
    c.omb1 = (T)(1 - h->beta1);                                                            \
    c.b2 = (T)h->beta2;                                                                    \
    c.omb2 = (T)(1 - h->beta2);                                                            \
    c.eps = (T)h->eps;                                                                     \
    double bc1 = RN_MUTANT("adam_bias_correction") ? 1.0 : 1 - pow(h->beta1, step);       \
    double bc2 = 1 - pow(h->beta2, step);                                                  \
    c.sbc2 = (T)sqrt(bc2);                                                                 \
    c.step_size = keras ? (T)(-lr * sqrt(bc2) / bc1) : (T)(-lr / bc1);                     \
    return c;                                                                              \
  }                                                                                        \
  /* element i of one segment */                                                           \
  RN_MT_FN void rn_mt_elem_##SFX(const rn_mt_hp *h, const rn_mt_coef_##SFX *c, T *p,       \
                                 const T *g, T *s1, T *s2, T *s3, int64_t i) {             \
    T pv = p[i], d = g[i];                                                                 \
    if (c->l2_on) d = d + c->l2 * pv;                                                      \
    if (c->decay_on) pv = pv * c->decay;                                                   \
    else if (c->wd_on) d = d + pv * c->wd;                                                 \
    if (h->kind == RN_MT_SGD) {                                                            \
      if (!c->mom_on) {                                                                    \
        pv = pv + c->neg_lr * d;                                                           \
      } else if (h->rule == RN_MT_KERAS) {                                                 \
        T v = s1[i] * c->m;                                                                \
        v = v + c->neg_lr * d;                                                             \
        s1[i] = v;                                                                         \
        if (h->nesterov) {                                                                 \
          pv = pv + c->m * v;                                                              \
          pv = pv + c->neg_lr * d;                                                         \
        } else {                                                                           \
          pv = pv + v;                                                                     \
        }                                                                                  \
      } else {                                                                             \
        T b = d;                                                                           \
        if (!c->first) {                                                                   \
          b = s1[i] * c->m;                                                                \
          b = b + c->damp * d;                                                             \
        }                                                                                  \
        s1[i] = b;                                                                         \
        d = h->nesterov ? d + b * c->m : b;                                                \
        pv = pv + c->neg_lr * d;                                                           \
      }                                                                                    \
    } else {                                                                               \
      T m = s1[i] * c->b1;                                                                 \
      m = m + c->omb1 * d;                                                                 \
      s1[i] = m;                                                                           \
      T dd = d * d;                                                                        \
      T v = s2[i] * c->b2;                                                                 \
      v = v + c->omb2 * dd;                                                                \
      s2[i] = v;                                                                           \
      if (h->amsgrad) {                                                                    \
        T vm = s3[i];                                                                      \
        vm = vm >= v ? vm : v;                                                             \
        s3[i] = vm;                                                                        \
        v = vm;                                                                            \
      }                                                                                    \
      T denom = h->rule == RN_MT_KERAS ? SQRT(v) + c->eps : SQRT(v) / c->sbc2 + c->eps;    \
      pv = pv + c->step_size * (m / denom);                                                \
    }                                                                                      \
    p[i] = pv;                                                                             \
  }

RN_MT_COEF(float, f, sqrtf)
RN_MT_COEF(double, d, sqrt)

#endif
