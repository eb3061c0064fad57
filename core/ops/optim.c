/* optim.c - the multi-tensor optimizer step: one call updates every
 * parameter of a group (SGD with momentum / nesterov, Adam, AdamW; PyTorch's
 * or Keras' rule; a Keras l2 factor per tensor folded into the gradient),
 * instead of a handful of elementwise ops per tensor. The math is
 * core/optim_math.h's; a backend with an optim_multi_step slot (CUDA: one
 * launch, kernels/optim.cu) runs it, and the CPU runs the host twin here:
 * one loop over all tensors, equal bit for bit to lua/rn/optim.lua's
 * per-tensor step (tests/test_optim_fused.lua).
 *
 * Issue 19: optional device scalars {lr, step} (a captured CUDA graph reads
 * the schedule from them at replay), and Keras' L2 penalties of many
 * tensors in one pass (rn_l2_penalty_multi, below).
 *
 * Checks (rn_err, nothing written): every tensor of the call on one device,
 * contiguous, float32 or float64 alike, each gradient and state buffer with
 * its parameter's element count, the state buffers the rule needs present.
 */
#include <stdlib.h>
#include <string.h>

#include "../backend.h"
#include "../optim.h"

static const char *devname(rn_devtype d) { return d == RN_CPU ? "cpu" : "cuda"; }

#define PAR_MIN 32768 /* elements below which a segment stays on one thread */

static int check_one(const rn_mt_hp *hp, const rn_mt_item *it, int i, rn_dtype dt,
                     rn_devtype dev) {
  const char *names[5] = {"parameter", "gradient", "state 1", "state 2", "state 3"};
  const rn_tensor *ts[5] = {it->p, it->g, it->s1, it->s2, it->s3};
  bool need[5] = {true, true, false, false, false};
  if (hp->kind == RN_MT_SGD) need[2] = hp->momentum != 0;
  else need[2] = need[3] = true, need[4] = hp->amsgrad != 0;
  int64_t n = it->p ? rn_numel(it->p) : 0;
  for (int k = 0; k < 5; k++) {
    const rn_tensor *t = ts[k];
    if (!t) {
      if (need[k]) return rn_err("optim_multi_step: tensor %d has no %s", i + 1, names[k]);
      continue;
    }
    if (rn_device(t) != dev)
      return rn_err("optim_multi_step: tensor %d's %s is on %s, the first parameter on %s", i + 1,
                    names[k], devname(rn_device(t)), devname(dev));
    if (t->dtype != dt)
      return rn_err("optim_multi_step: tensor %d's %s is %s, the first parameter %s (float32 "
                    "or float64, one dtype per call)", i + 1, names[k], rn_dtype_name(t->dtype),
                    rn_dtype_name(dt));
    if (!rn_is_contiguous(t))
      return rn_err("optim_multi_step: tensor %d's %s is not contiguous", i + 1, names[k]);
    if (rn_numel(t) != n)
      return rn_err("optim_multi_step: tensor %d's %s has %lld elements, its parameter %lld",
                    i + 1, names[k], (long long)rn_numel(t), (long long)n);
  }
  if (hp->kind == RN_MT_ADAM && !hp->scal && it->step < 1)
    return rn_err("optim_multi_step: tensor %d's Adam step is %lld (>= 1)", i + 1,
                  (long long)it->step);
  return 0;
}

/* the CPU twin: every segment, every element, in one pass each */
static void host_step(const rn_mt_hp *hp, rn_dtype dt, const rn_mt_seg *segs, int n) {
  for (int j = 0; j < n; j++) {
    const rn_mt_seg *s = &segs[j];
    if (dt == RN_F32) {
      rn_mt_coef_f c = rn_mt_coef_make_f(hp, s);
#pragma omp parallel for if (s->n > PAR_MIN)
      for (int64_t i = 0; i < s->n; i++)
        rn_mt_elem_f(hp, &c, (float *)s->p, (const float *)s->g, (float *)s->s1,
                     (float *)s->s2, (float *)s->s3, i);
    } else {
      rn_mt_coef_d c = rn_mt_coef_make_d(hp, s);
#pragma omp parallel for if (s->n > PAR_MIN)
      for (int64_t i = 0; i < s->n; i++)
        rn_mt_elem_d(hp, &c, (double *)s->p, (const double *)s->g, (double *)s->s1,
                     (double *)s->s2, (double *)s->s3, i);
    }
  }
}

int rn_optim_multi_step(const rn_mt_hp *hp_in, const rn_tensor *scalars, const rn_mt_item *items,
                        int n) {
  rn_mt_hp hpv = *hp_in, *hp = &hpv;
  hpv.scal = NULL;
  if (hp->kind != RN_MT_SGD && hp->kind != RN_MT_ADAM)
    return rn_err("optim_multi_step: unknown optimizer kind %d", hp->kind);
  if (hp->rule != RN_MT_PYTORCH && hp->rule != RN_MT_KERAS)
    return rn_err("optim_multi_step: unknown rule %d", hp->rule);
  if (n <= 0) return 0;
  if (!items[0].p) return rn_err("optim_multi_step: tensor 1 has no parameter");
  rn_dtype dt = items[0].p->dtype;
  rn_devtype dev = rn_device(items[0].p);
  if (dt != RN_F32 && dt != RN_F64)
    return rn_err("optim_multi_step: dtype %s (float32 or float64; 16-bit parameters step "
                  "through their float32 master copies)", rn_dtype_name(dt));
  if (scalars) {
    if (rn_device(scalars) != dev || scalars->dtype != RN_F64 || rn_numel(scalars) != 2 ||
        !rn_is_contiguous(scalars))
      return rn_err("optim_multi_step: scalars must be a contiguous float64 tensor of 2 "
                    "elements {lr, step} on %s, got %s with %lld elements on %s", devname(dev),
                    rn_dtype_name(scalars->dtype), (long long)rn_numel(scalars),
                    devname(rn_device(scalars)));
    hpv.scal = (const double *)rn_ptr(scalars);
  }
  for (int i = 0; i < n; i++)
    if (check_one(hp, &items[i], i, dt, dev) < 0) return -1;
  rn_mt_seg *segs = calloc((size_t)n, sizeof *segs);
  if (!segs) return rn_err("optim_multi_step: out of memory (%d segments)", n);
  for (int i = 0; i < n; i++) {
    const rn_mt_item *it = &items[i];
    rn_mt_seg *s = &segs[i];
    s->p = rn_ptr(it->p);
    s->g = rn_ptr(it->g);
    s->s1 = it->s1 ? rn_ptr(it->s1) : NULL;
    s->s2 = it->s2 ? rn_ptr(it->s2) : NULL;
    s->s3 = it->s3 ? rn_ptr(it->s3) : NULL;
    s->n = rn_numel(it->p);
    s->step = it->step;
    s->first = it->first;
    s->l2 = it->l2;
    rn_bump_version(it->p);
    if (it->s1) rn_bump_version(it->s1);
    if (it->s2) rn_bump_version(it->s2);
    if (it->s3) rn_bump_version(it->s3);
  }
  const rn_backend *be = rn_backend_of(items[0].p);
  int rc = 0;
  if (be->optim_multi_step) rc = be->optim_multi_step(hp, dt, segs, n);
  else if (dev == RN_CPU) host_step(hp, dt, segs, n);
  else rc = rn_err("optim_multi_step is not implemented on %s", be->name);
  free(segs);
  return rc;
}

/* ---- Keras L2 penalties in one pass ----------------------------------------------------- */

/* the CPU twin: per tensor, sum(w^2) in double in index order, times c */
static double host_l2(rn_dtype dt, const rn_mt_seg *segs, int n) {
  double total = 0;
  for (int j = 0; j < n; j++) {
    double s = 0;
    if (dt == RN_F32) {
      const float *p = segs[j].p;
      for (int64_t i = 0; i < segs[j].n; i++) s += (double)p[i] * p[i];
    } else {
      const double *p = segs[j].p;
      for (int64_t i = 0; i < segs[j].n; i++) s += p[i] * p[i];
    }
    total += segs[j].l2 * s;
  }
  return total;
}

int rn_l2_penalty_multi(rn_tensor *const *ws, const double *c, int n, rn_tensor **out) {
  *out = NULL;
  if (n < 0) return rn_err("l2_penalty_multi: %d tensors", n);
  rn_dtype dt = n > 0 && ws[0] ? ws[0]->dtype : RN_F32;
  rn_devtype dev = n > 0 && ws[0] ? rn_device(ws[0]) : RN_CPU;
  if (dt != RN_F32 && dt != RN_F64)
    return rn_err("l2_penalty_multi: dtype %s (float32 or float64)", rn_dtype_name(dt));
  for (int i = 0; i < n; i++) {
    const rn_tensor *t = ws[i];
    if (!t) return rn_err("l2_penalty_multi: tensor %d is missing", i + 1);
    if (rn_device(t) != dev || t->dtype != dt)
      return rn_err("l2_penalty_multi: tensor %d is %s on %s, the first %s on %s (one dtype "
                    "and device per call)", i + 1, rn_dtype_name(t->dtype),
                    devname(rn_device(t)), rn_dtype_name(dt), devname(dev));
    if (!rn_is_contiguous(t))
      return rn_err("l2_penalty_multi: tensor %d is not contiguous", i + 1);
    if (!(c[i] >= 0))
      return rn_err("l2_penalty_multi: factor %d is %g (a number >= 0)", i + 1, c[i]);
  }
  rn_mt_seg *segs = calloc(n > 0 ? (size_t)n : 1, sizeof *segs);
  if (!segs) return rn_err("l2_penalty_multi: out of memory (%d tensors)", n);
  for (int i = 0; i < n; i++) {
    segs[i].p = rn_ptr(ws[i]);
    segs[i].n = rn_numel(ws[i]);
    segs[i].l2 = c[i];
  }
  rn_tensor *r = rn_empty(0, NULL, dt, dev);
  int rc = r ? 0 : -1;
  if (rc == 0) {
    const rn_backend *be = rn_backend_of(r);
    if (be->l2_penalty_multi) rc = be->l2_penalty_multi(rn_ptr(r), dt, segs, n);
    else if (dev == RN_CPU) rn_store(rn_ptr(r), dt, host_l2(dt, segs, n));
    else rc = rn_err("l2_penalty_multi is not implemented on %s", be->name);
  }
  free(segs);
  if (rc < 0) {
    rn_release(r);
    return -1;
  }
  *out = r;
  return 0;
}
