/* autograd.h - the eager tape: nodes recorded by differentiable ops, and the
 * reverse pass that walks them.
 *
 * An op that may need gradients does:
 *   if (rn_needs_grad(nin, ins)) {
 *     rn_node *n = rn_node_new("relu", relu_backward, nin, ins);
 *     rn_node_save(n, x);            // detached alias, freed after backward
 *     n->ctx = params; n->ctx_free = free;
 *     rn_node_attach(n, y);          // y->grad_fn = n
 *   }
 * The backward function gets the output gradient gout (same shape and dtype as
 * the op's output) and fills gin[i] with a new reference for every input i
 * with n->needs[i]; it may leave gin[i] NULL when the gradient is zero.
 * Gradients of broadcast inputs are reduced to the input's shape by the tape
 * (n->in_shape), so backward functions may return the broadcast shape.
 */
#ifndef RN_AUTOGRAD_H
#define RN_AUTOGRAD_H

#include "rn.h"

#define RN_NODE_MAXSAVED 8

typedef struct rn_node rn_node;
typedef int (*rn_backward_fn)(rn_node *n, rn_tensor *gout, rn_tensor **gin);

typedef struct rn_inshape {
  int ndim;
  int64_t shape[RN_MAXDIM];
  rn_dtype dtype;
} rn_inshape;

struct rn_node {
  int refcount;
  const char *name;       /* op name, for messages */
  rn_backward_fn backward;
  int nin;
  rn_node **next;         /* [nin] grad_fn of input i, or NULL */
  rn_tensor **leaf;       /* [nin] input i when it is a leaf requiring grad */
  bool *needs;            /* [nin] whether input i needs a gradient */
  rn_inshape *in_shape;   /* [nin] */
  int nsaved;
  rn_tensor *saved[RN_NODE_MAXSAVED];
  uint64_t saved_version[RN_NODE_MAXSAVED]; /* storage version when saved */
  bool released;          /* saved tensors freed by a backward pass */
  void *ctx;              /* op parameters */
  void (*ctx_free)(void *);
  const char *where;      /* Lua source line of the forward call, or NULL */
  int scope;              /* rn_profile_scope when the node was made (profiling) */
  /* scratch used during backward */
  rn_tensor *gbuf;
  int deps;
  int mark;
};

bool rn_grad_enabled(void);
void rn_set_grad_enabled(bool on);
/* True when grad mode is on and one of the inputs requires grad. */
bool rn_needs_grad(int n, rn_tensor *const *ins);
rn_node *rn_node_new(const char *name, rn_backward_fn bw, int nin, rn_tensor *const *ins);
/* Saves a detached alias of t (no reference cycle through t->grad_fn). */
int rn_node_save(rn_node *n, rn_tensor *t);
void rn_node_attach(rn_node *n, rn_tensor *out); /* takes the caller's ref to n */
void rn_node_release(rn_node *n);
/* Reverse pass from root. grad NULL means ones (root must hold one element). */
int rn_backward(rn_tensor *root, rn_tensor *grad, bool retain_graph);
/* Set by the binding: returns "file:line" of the Lua caller, or NULL. */
extern const char *(*rn_where_hook)(void);

/* Grad-ready hooks (off by default; the data-parallel gradient reducer,
 * core/dist/reducer.c, sets them). While set, each reverse pass first calls
 * begin with the leaves requiring grad that the pass can reach (known from
 * its graph walk before any node runs: the others will get no gradient),
 * then ready(leaf) once per reached leaf when its gradient is final: after
 * the last edge into it ran (a shared weight, several edges, fires once),
 * also when those edges produced no gradient (leaf->grad may stay NULL).
 * A hook's -1 (with rn_err) ends the pass with that error. When unset the
 * reverse pass pays one branch per edge. */
typedef struct {
  int (*begin)(void *ud, rn_tensor *const *leaves, int n);
  int (*ready)(void *ud, rn_tensor *leaf);
  void *ud;
} rn_grad_hooks;
void rn_set_grad_hooks(const rn_grad_hooks *h); /* NULL: none */

/* Anomaly mode (off by default): the reverse pass fails with "anomaly:
 * backward of OP (forward at FILE:LINE) produced nan|inf" when a node turns a
 * finite output gradient into a non-finite input gradient; the binding checks
 * forward results (core/lua/l_anomaly.c). */
bool rn_anomaly_enabled(void);
void rn_set_anomaly(bool on);
/* What non-finite values t holds: 0 none (or not a float dtype), a sum of the
 * flags below, -1 on an error (message set). Copies to the CPU if needed. */
#define RN_NONFINITE_NAN 1
#define RN_NONFINITE_INF 2
int rn_nonfinite(rn_tensor *t);

/* Profiling of the reverse pass (off by default; core/lua/l_profile.c):
 * each new node copies rn_profile_scope (0 = none; the binding sets it to
 * the id of the layer being run), and while profiling is on the reverse pass
 * adds each node's time (its backward function plus the accumulation of the
 * gradients it produced) to the seconds of its scope. When profiling is off
 * the reverse pass pays one branch per node. rn_profile_begin fails when
 * profiling is already on; rn_profile_end stops it and keeps the figures for
 * rn_profile_times until rn_profile_clear or the next begin. */
extern int rn_profile_scope;
bool rn_profile_enabled(void);
int rn_profile_begin(void);
void rn_profile_end(void);
/* seconds per scope: times[s] for s in 0..*n-1 (NULL and *n = 0 when none) */
const double *rn_profile_times(int *n);
void rn_profile_clear(void);
/* Issue 19, GPU event profiling (core/cuda/evprof.c): while profiling is
 * on, called with a node's scope before its backward runs (NULL: none). */
extern void (*rn_profile_mark_hook)(int scope);
#define RN_EVPROF_BWD (1 << 24) /* added to a backward node's scope by the hook */

#endif
