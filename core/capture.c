/* capture.c - the step-capture guard (capture.h): one flag, set by the
 * capture's begin and cleared by its end or abort. Checked by the host-read
 * points: tensor transfers (tensor.c rn_to_device), :item() / :totable()
 * (core/lua/l_tensor.c) and the CUDA backend's synchronizing calls. */
#include "capture.h"
#include "rn.h"

static const char *capturing;

void rn_capture_set(const char *kind) { capturing = kind; }

const char *rn_capture_kind(void) { return capturing; }

int rn_capture_forbid(const char *what) {
  if (!capturing) return 0;
  return rn_err("%s inside a captured step (%s graph capture): a host read or synchronization "
                "cannot be captured", what, capturing);
}
