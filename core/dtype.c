/* dtype.c - element types: sizes, names, scalar load/store as double, and the
 * bf16/fp16 <-> fp32 conversions (round to nearest even). */
#include <math.h>
#include <string.h>

#include "rn.h"

static const struct { const char *name; size_t size; bool fl; } info[RN_NDTYPES] = {
  [RN_F32] = {"float32", 4, true},  [RN_F64] = {"float64", 8, true},
  [RN_U8] = {"uint8", 1, false},    [RN_I32] = {"int32", 4, false},
  [RN_I64] = {"int64", 8, false},   [RN_BF16] = {"bfloat16", 2, true},
  [RN_F16] = {"float16", 2, true},
};

size_t rn_dtype_size(rn_dtype dt) { return info[dt].size; }
const char *rn_dtype_name(rn_dtype dt) { return info[dt].name; }
bool rn_dtype_is_float(rn_dtype dt) { return info[dt].fl; }

int rn_dtype_from_name(const char *name, rn_dtype *out) {
  static const struct { const char *alias; rn_dtype dt; } aliases[] = {
    {"float", RN_F32}, {"double", RN_F64}, {"byte", RN_U8}, {"int", RN_I32},
    {"long", RN_I64}, {"bf16", RN_BF16}, {"half", RN_F16}, {"fp16", RN_F16},
    {"fp32", RN_F32}, {"fp64", RN_F64},
  };
  for (int i = 0; i < RN_NDTYPES; i++)
    if (strcmp(name, info[i].name) == 0) { *out = (rn_dtype)i; return 0; }
  for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
    if (strcmp(name, aliases[i].alias) == 0) { *out = aliases[i].dt; return 0; }
  return -1;
}

const char *rn_device_name(rn_devtype d) { return d == RN_CUDA ? "cuda" : "cpu"; }

uint16_t rn_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float rn_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t rn_f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u, mant = u & 0x7fffffu;
  int32_t exp = (int32_t)((u >> 23) & 0xff);
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0)); /* inf/nan */
  exp = exp - 127 + 15;
  if (exp >= 0x1f) return (uint16_t)(sign | 0x7c00u); /* overflow -> inf */
  if (exp <= 0) {                                     /* subnormal or zero */
    if (exp < -10) return (uint16_t)sign;
    mant |= 0x800000u;
    uint32_t shift = (uint32_t)(14 - exp);
    uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = sign | ((uint32_t)exp << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++; /* may carry into exp: ok */
  return (uint16_t)half;
}

float rn_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = ldexpf((float)mant, -24);
    return sign ? -f : f;
  }
  uint32_t u = exp == 0x1f ? (sign | 0x7f800000u | (mant << 13))
                           : (sign | ((exp - 15 + 127) << 23) | (mant << 13));
  memcpy(&f, &u, 4);
  return f;
}

double rn_load(const void *p, rn_dtype dt) {
  switch (dt) {
  case RN_F32: return *(const float *)p;
  case RN_F64: return *(const double *)p;
  case RN_U8: return *(const uint8_t *)p;
  case RN_I32: return *(const int32_t *)p;
  case RN_I64: return (double)*(const int64_t *)p;
  case RN_BF16: return rn_bf16_to_f32(*(const uint16_t *)p);
  case RN_F16: return rn_f16_to_f32(*(const uint16_t *)p);
  default: return 0;
  }
}

/* Integer stores truncate toward zero and saturate (NaN stores 0), so that a
 * cast never hits C's undefined float->int conversion. */
static double clampd(double v, double lo, double hi) {
  if (v != v) return 0;
  return v < lo ? lo : v > hi ? hi : v;
}

void rn_store(void *p, rn_dtype dt, double v) {
  switch (dt) {
  case RN_F32: *(float *)p = (float)v; break;
  case RN_F64: *(double *)p = v; break;
  case RN_U8: *(uint8_t *)p = (uint8_t)clampd(v, 0, 255); break;
  case RN_I32: *(int32_t *)p = (int32_t)clampd(v, -2147483648.0, 2147483647.0); break;
  case RN_I64: *(int64_t *)p = (int64_t)clampd(v, -9223372036854775808.0, 9223372036854774784.0); break;
  case RN_BF16: *(uint16_t *)p = rn_f32_to_bf16((float)v); break;
  case RN_F16: *(uint16_t *)p = rn_f32_to_f16((float)v); break;
  default: break;
  }
}
