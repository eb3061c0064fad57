/* error.c - the error status of the core: a thread-local message set by
 * rn_err() and read by the Lua binding, which turns it into a Lua error. */
#include <stdarg.h>
#include <stdio.h>

#include "rn.h"

static _Thread_local char errbuf[1024];

int rn_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return -1;
}

const char *rn_errmsg(void) { return errbuf[0] ? errbuf : "unknown error"; }

void rn_clear_error(void) { errbuf[0] = 0; }

char *rn_dims_str(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "(");
  for (int i = 0; i < ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, ")");
  return buf;
}

char *rn_shape_str(const rn_tensor *t, char *buf, size_t n) {
  return rn_dims_str(t->ndim, t->shape, buf, n);
}
