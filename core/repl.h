/* repl.h - the interactive read-eval-print loop of the rnlua program: GNU
 * readline line editing, persistent history, tab completion of globals,
 * fields and tensor methods, auto-printing of expression values and
 * multi-line statements. See doc/repl.md. */
#ifndef RN_REPL_H
#define RN_REPL_H

#include "lua.h"

/* Calls the function below narg arguments on the stack like lua_pcall, with
 * a traceback message handler and Ctrl-C turned into an "interrupted!"
 * error; returns the status (error message, a string, on top on failure).
 * rnlua.c supplies it, so that scripts and the REPL behave the same. */
typedef int (*rn_repl_call)(lua_State *L, int narg, int nres);

/* Runs the loop on stdin until end of input, then returns with the stack as
 * it found it. Defines the global `rn` (= require "rn") unless already set.
 * Uses readline (editing, history in RNLUA_HISTORY or ~/.rnlua_history,
 * completion) when stdin is a terminal; plain prompts and reads otherwise. */
void rn_repl(lua_State *L, rn_repl_call call);

#endif
