/* mutant.h - planted bugs for `make test-mutants` (tests of the tests,
 * tests/mutants.lua). Only a build with -DRN_MUTANTS (build-mutants/)
 * compiles them in: there RN_MUTANT("name") is true when the environment
 * variable RN_MUTANT equals "name", so one build carries every mutant,
 * switched on one at a time. In every other build RN_MUTANT(name) is the
 * constant 0 and the planted code is dead and dropped by the compiler.
 * Usage at a planted site: `if (RN_MUTANT("grad_accum")) ...wrong... else ...right...`. */
#ifndef RN_MUTANT_H
#define RN_MUTANT_H

#ifdef RN_MUTANTS
#include <stdlib.h>
#include <string.h>

static inline int rn_mutant_on(const char *name) {
  const char *m = getenv("RN_MUTANT");
  return m && strcmp(m, name) == 0;
}
#define RN_MUTANT(name) rn_mutant_on(name)
#else
#define RN_MUTANT(name) 0
#endif

#endif
