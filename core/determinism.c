/* determinism.c - the deterministic-mode flag (rn_set_deterministic,
 * rn_is_deterministic: rn.h) and the cuDNN convolution algorithm overrides
 * with their names and determinism facts (determinism.h). Compiled in every
 * build, so that names are validated on hosts without CUDA or a GPU. */
#include <stdio.h>
#include <string.h>

#include "determinism.h"

static bool deterministic;
static int forced[RN_CONV_NKINDS] = {-1, -1, -1};

/* The enum suffixes of cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t, in
 * enum order (checked against cudnn.h in core/cuda/cudnn.c). */
static const char *const fwd_names[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM",
                                        "DIRECT", "FFT", "FFT_TILING", "WINOGRAD",
                                        "WINOGRAD_NONFUSED"};
static const char *const bwd_data_names[] = {"ALGO_0", "ALGO_1", "FFT", "FFT_TILING",
                                             "WINOGRAD", "WINOGRAD_NONFUSED"};
static const char *const bwd_filter_names[] = {"ALGO_0", "ALGO_1", "FFT", "ALGO_3",
                                               "WINOGRAD", "WINOGRAD_NONFUSED", "FFT_TILING"};
#define COUNT(a) ((int)(sizeof(a) / sizeof(a[0])))

static const char *const *names_of(rn_conv_kind k, int *n) {
  switch (k) {
  case RN_CONV_FWD: *n = COUNT(fwd_names); return fwd_names;
  case RN_CONV_BWD_DATA: *n = COUNT(bwd_data_names); return bwd_data_names;
  case RN_CONV_BWD_FILTER: *n = COUNT(bwd_filter_names); return bwd_filter_names;
  default: *n = 0; return NULL;
  }
}

const char *rn_conv_kind_name(rn_conv_kind k) {
  static const char *const kinds[] = {"fwd", "bwd_data", "bwd_filter"};
  return k >= 0 && k < RN_CONV_NKINDS ? kinds[k] : "?";
}

int rn_conv_algo_count(rn_conv_kind k) {
  int n;
  names_of(k, &n);
  return n;
}

const char *rn_conv_algo_name(rn_conv_kind k, int algo) {
  int n;
  const char *const *names = names_of(k, &n);
  return algo >= 0 && algo < n ? names[algo] : NULL;
}

bool rn_conv_algo_deterministic(rn_conv_kind k, int algo) {
  if (k == RN_CONV_BWD_DATA) return algo != 0;                /* ALGO_0 */
  if (k == RN_CONV_BWD_FILTER) return algo != 0 && algo != 3; /* ALGO_0, ALGO_3 */
  return true;
}

int rn_conv_algo_forced(rn_conv_kind k) {
  return k >= 0 && k < RN_CONV_NKINDS ? forced[k] : -1;
}

/* "A, B, C" of kind k's algorithms (only the deterministic ones when det) */
static void list_algos(rn_conv_kind k, bool det, char *buf, size_t n) {
  int cnt;
  const char *const *names = names_of(k, &cnt);
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; i < cnt && used < n; i++) {
    if (det && !rn_conv_algo_deterministic(k, i)) continue;
    used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", names[i]);
  }
}

/* a: -1 for auto; an index; or -2 + rn_err for an unknown name */
static int parse(rn_conv_kind k, const char *name) {
  if (strcmp(name, "auto") == 0) return -1;
  int cnt;
  const char *const *names = names_of(k, &cnt);
  for (int i = 0; i < cnt; i++)
    if (strcmp(name, names[i]) == 0) return i;
  char list[256];
  list_algos(k, false, list, sizeof list);
  rn_err("rn.cuda.set_conv_algo: %s = \"%s\" is not a cuDNN %s algorithm (valid: auto, %s)",
         rn_conv_kind_name(k), name, rn_conv_kind_name(k), list);
  return -2;
}

/* -1 + rn_err(who ...) when algorithm a of kind k is non-deterministic */
static int refuse_nondet(rn_conv_kind k, int a, const char *why) {
  char list[256];
  list_algos(k, true, list, sizeof list);
  return rn_err("%s: %s = \"%s\" is a non-deterministic cuDNN algorithm; deterministic %s "
                "algorithms: %s (or \"auto\")", why, rn_conv_kind_name(k),
                rn_conv_algo_name(k, a), rn_conv_kind_name(k), list);
}

int rn_set_conv_algos(const char *const names[RN_CONV_NKINDS]) {
  int next[RN_CONV_NKINDS];
  for (int k = 0; k < RN_CONV_NKINDS; k++) {
    next[k] = forced[k];
    if (!names[k]) continue;
    int a = parse((rn_conv_kind)k, names[k]);
    if (a == -2) return -1;
    if (a >= 0 && deterministic && !rn_conv_algo_deterministic((rn_conv_kind)k, a))
      return refuse_nondet((rn_conv_kind)k, a,
                           "rn.cuda.set_conv_algo (deterministic mode is on)");
    next[k] = a;
  }
  memcpy(forced, next, sizeof forced);
  return 0;
}

int rn_set_deterministic(bool on) {
  if (on)
    for (int k = 0; k < RN_CONV_NKINDS; k++)
      if (forced[k] >= 0 && !rn_conv_algo_deterministic((rn_conv_kind)k, forced[k]))
        return refuse_nondet((rn_conv_kind)k, forced[k],
                             "rn.set_deterministic(true): the override of rn.cuda.set_conv_algo");
  deterministic = on;
  return 0;
}

bool rn_is_deterministic(void) { return deterministic; }
