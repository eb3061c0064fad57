/* tset.c - what the checkpoint and safetensors code share: the named tensor
 * set loaders return, dtype codes, name rules, and the CPU contiguous copies
 * taken of tensors before they are written (any device, any strides). */
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "io.h"

void rn_tset_free(rn_tset *s) {
  if (!s) return;
  for (int i = 0; i < s->n; i++) {
    if (s->names) free(s->names[i]);
    if (s->ts) rn_release(s->ts[i]);
  }
  for (int i = 0; i < s->nmeta; i++) {
    if (s->mkeys) free(s->mkeys[i]);
    if (s->mvals) free(s->mvals[i]);
  }
  free(s->names);
  free(s->ts);
  free(s->meta);
  free(s->mkeys);
  free(s->mvals);
  memset(s, 0, sizeof *s);
}

/* File codes are fixed here, independent of the enum's order. */
static const rn_dtype code_dtype[] = {RN_F32, RN_F64, RN_U8, RN_I32, RN_I64, RN_BF16, RN_F16};
#define NCODES ((int)(sizeof code_dtype / sizeof code_dtype[0]))

int rn_io_dtype_code(rn_dtype dt) {
  for (int i = 0; i < NCODES; i++)
    if (code_dtype[i] == dt) return i;
  return -1;
}

int rn_io_dtype_from_code(int code, rn_dtype *dt) {
  if (code < 0 || code >= NCODES) return -1;
  *dt = code_dtype[code];
  return 0;
}

bool rn_io_name_ok(const char *name, size_t len) {
  if (len == 0 || len > RN_CKPT_MAX_NAME) return false;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] > 0x7e) return false;
  return true;
}

int rn_io_host_copies(int n, rn_tensor *const *ts, rn_tensor **out) {
  bool g = rn_grad_enabled();
  rn_set_grad_enabled(false);
  int rc = 0;
  for (int i = 0; i < n; i++) out[i] = NULL;
  for (int i = 0; i < n && rc == 0; i++) {
    rn_tensor *h = rn_to_device(ts[i], RN_CPU);
    rn_tensor *c = h ? rn_contiguous(h) : NULL;
    rn_release(h);
    if (!c) rc = -1;
    out[i] = c;
  }
  rn_set_grad_enabled(g);
  if (rc < 0)
    for (int i = 0; i < n; i++) { rn_release(out[i]); out[i] = NULL; }
  return rc;
}
