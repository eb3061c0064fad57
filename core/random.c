/* random.c - the seeded generator behind rn.manual_seed, rand, randn and
 * dropout: xoshiro256** seeded through splitmix64; normals by Box-Muller.
 * One global stream (state saved/restored by checkpoints). */
#include <math.h>

#include "backend.h"

static uint64_t S[4] = {0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull,
                        0x94d049bb133111ebull, 0x2545f4914f6cdd1dull};

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void rn_manual_seed(uint64_t seed) {
  for (int i = 0; i < 4; i++) S[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rn_random_u64(void) {
  uint64_t r = rotl(S[1] * 5, 7) * 9, t = S[1] << 17;
  S[2] ^= S[0]; S[3] ^= S[1]; S[1] ^= S[2]; S[0] ^= S[3];
  S[2] ^= t;
  S[3] = rotl(S[3], 45);
  return r;
}

double rn_random_uniform(void) { return (double)(rn_random_u64() >> 11) * 0x1.0p-53; }

double rn_random_normal(void) {
  double u1 = 1.0 - rn_random_uniform(), u2 = rn_random_uniform(); /* u1 in (0,1] */
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void rn_random_get_state(uint64_t st[4]) { for (int i = 0; i < 4; i++) st[i] = S[i]; }
void rn_random_set_state(const uint64_t st[4]) { for (int i = 0; i < 4; i++) S[i] = st[i]; }

static rn_tensor *fill_random(int ndim, const int64_t *shape, rn_dtype dt, double a, double b,
                              bool normal) {
  if (!rn_dtype_is_float(dt)) {
    rn_err("%s: dtype %s is not a float type", normal ? "randn" : "rand", rn_dtype_name(dt));
    return NULL;
  }
  rn_tensor *t = rn_empty(ndim, shape, dt, RN_CPU);
  if (!t) return NULL;
  int64_t n = rn_numel(t);
  size_t es = rn_dtype_size(dt);
  char *p = rn_ptr(t);
  if (dt == RN_F32) {
    float *f = (float *)p;
    for (int64_t i = 0; i < n; i++)
      f[i] = (float)(normal ? a + b * rn_random_normal() : a + (b - a) * rn_random_uniform());
  } else {
    for (int64_t i = 0; i < n; i++)
      rn_store(p + (size_t)i * es, dt, normal ? a + b * rn_random_normal() : a + (b - a) * rn_random_uniform());
  }
  return t;
}

rn_tensor *rn_rand(int ndim, const int64_t *shape, rn_dtype dt, double lo, double hi) {
  return fill_random(ndim, shape, dt, lo, hi, false);
}

rn_tensor *rn_randn(int ndim, const int64_t *shape, rn_dtype dt, double mean, double std) {
  return fill_random(ndim, shape, dt, mean, std, true);
}
