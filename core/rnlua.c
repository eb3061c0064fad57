/* rnlua.c - main() of the rnlua program: a Lua 5.4 interpreter with the rn
 * core preloaded as package.preload["rn.core"] and the rn Lua modules on
 * package.path. Options, the arg table, error reports, LUA_INIT and Ctrl-C
 * follow the standard lua program; the interactive loop is in repl.c. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#include "dist/dist.h"
#include "lua/rnl.h"
#include "repl.h"
#include "rn.h"

static const char *progname = "rnlua";
static lua_State *globalL;

/* ---- messages ------------------------------------------------------------ */

static void l_message(const char *pname, const char *msg) {
  fflush(stdout);
  if (pname) fprintf(stderr, "%s: ", pname);
  if (rn_dist_initialized() && rn_dist_world() > 1) /* which rank of a job said it */
    fprintf(stderr, "rank %d of %d: ", rn_dist_rank(), rn_dist_world());
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* Prints the error message on top (if status is an error) and pops it. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (!msg) msg = "(error object is not a string)";
    l_message(progname, msg);
    lua_pop(L, 1);
  }
  return status;
}

static void print_version(void) {
  printf("rnlua %s (%s)\n", RN_VERSION, LUA_RELEASE);
  fflush(stdout);
}

static const char usage_text[] =
  "usage: %s [options] [script [args]]\n"
  "Available options are:\n"
  "  -e stat   execute string 'stat'\n"
  "  -i        enter interactive mode after executing 'script'\n"
  "  -l mod    require library 'mod' into global 'mod'\n"
  "  -l g=mod  require library 'mod' into global 'g'\n"
  "  -v        show version information\n"
  "  -E        ignore environment variables\n"
  "  -W        turn warnings on\n"
  "  -h        show this help\n"
  "  --        stop handling options\n"
  "  -         stop handling options and execute stdin\n"
  "With no script, an interactive session starts when stdin is a terminal\n"
  "(see doc/repl.md); otherwise the script is read from stdin.\n";

static void print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", progname);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  fprintf(stderr, usage_text, progname);
  fflush(stderr);
}

/* ---- protected calls ----------------------------------------------------- */

/* Error message handler: the message (or __tostring of the error object)
 * with a traceback appended. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void setsignal(int sig, void (*handler)(int), struct sigaction *old) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, old);
}

/* Hook set by Ctrl-C: raises the error at the next Lua instruction. */
static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/* SIGINT handler while Lua code runs; a second Ctrl-C kills the program. */
static void laction(int sig) {
  int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  setsignal(sig, SIG_DFL, NULL);
  lua_sethook(globalL, lstop, flag, 1);
}

/* lua_pcall with msghandler and Ctrl-C handling (see rn_repl_call). */
static int docall(lua_State *L, int narg, int nres) {
  struct sigaction old;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  globalL = L;
  setsignal(SIGINT, laction, &old);
  int status = lua_pcall(L, narg, nres, base);
  sigaction(SIGINT, &old, NULL);
  if (lua_gethook(L) == lstop) lua_sethook(L, NULL, 0, 0); /* a late Ctrl-C */
  lua_remove(L, base);
  return status;
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

static int dofile(lua_State *L, const char *name) {
  return dochunk(L, luaL_loadfile(L, name));
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l [g=]mod: global g (default mod) = require(mod). */
static int dolibrary(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  const char *modname = eq ? eq + 1 : spec;
  lua_pushlstring(L, spec, eq ? (size_t)(eq - spec) : strlen(spec));
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  int status = docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, lua_tostring(L, -2)); /* pops the module */
  lua_remove(L, status == LUA_OK ? -1 : -2);                    /* the global name */
  return report(L, status);
}

/* ---- arguments ----------------------------------------------------------- */

enum { has_error = 1, has_i = 2, has_v = 4, has_e = 8, has_E = 16, has_h = 32 };

/* Scans the options; *first gets the index of the script (0 if none, or of
 * the bad option on error). Returns the set of has_* flags. */
static int collectargs(char **argv, int *first) {
  int args = 0, i;
  *first = 0;
  if (!argv[0]) return 0; /* no program name, no arguments */
  for (i = 1; argv[i]; i++) {
    *first = i;
    if (argv[i][0] != '-') return args; /* the script */
    switch (argv[i][1]) {
    case '-': /* "--" */
      if (strcmp(argv[i], "--help") == 0) return args | has_h;
      if (argv[i][2] != '\0') return has_error;
      *first = argv[i + 1] ? i + 1 : 0;
      return args;
    case '\0': /* "-": the script is stdin */
      return args;
    case 'h':
      if (argv[i][2] != '\0') return has_error;
      return args | has_h;
    case 'E': case 'W':
      if (argv[i][2] != '\0') return has_error;
      if (argv[i][1] == 'E') args |= has_E;
      break;
    case 'i':
      args |= has_i; /* -i implies -v */
      /* fall through */
    case 'v':
      if (argv[i][2] != '\0') return has_error;
      args |= has_v;
      break;
    case 'e':
      args |= has_e;
      /* fall through */
    case 'l': /* both need an argument */
      if (argv[i][2] == '\0') {
        i++;
        if (!argv[i] || argv[i][0] == '-') return has_error;
      }
      break;
    default:
      return has_error;
    }
  }
  *first = 0;
  return args;
}

/* arg[0] = script, arg[1..] = its arguments, arg[-1..] = options and the
 * interpreter; with no script, arg[0] is the interpreter. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script - 1 > 0 ? argc - script - 1 : 0, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* Pushes arg[1..#arg] for the script; returns how many. */
static int pushargs(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  int n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -n - 1);
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL; /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) status = docall(L, pushargs(L), LUA_MULTRET);
  return report(L, status);
}

/* Runs -e, -l and -W in order; 0 if one failed. */
static int runargs(lua_State *L, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    int option = argv[i][1];
    if (option == 'W') lua_warning(L, "@on", 0);
    if (option != 'e' && option != 'l') continue;
    const char *extra = argv[i] + 2;
    if (*extra == '\0') extra = argv[++i];
    int status = option == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
    if (status != LUA_OK) return 0;
  }
  return 1;
}

static int handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (!init) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (!init) return LUA_OK;
  if (init[0] == '@') return dofile(L, init + 1);
  return dostring(L, init, name);
}

/* ---- module paths -------------------------------------------------------- */

#define DIR_MAX (PATH_MAX + 64)

static int file_exists(const char *dir, const char *rel) {
  char p[2 * DIR_MAX];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  return access(p, R_OK) == 0;
}

/* The directory holding rn/init.lua: <exe dir>/lua in the source tree (or
 * <exe dir>/../lua for a build directory such as build-asan/), then
 * <exe dir>/../share/rnlua/lua once installed, else RN_LUA_DIR. */
static void find_lua_dir(char *out, size_t n) {
  char exe[PATH_MAX], share[DIR_MAX];
  out[0] = '\0';
  if (!realpath("/proc/self/exe", exe)) {
#ifdef RN_LUA_DIR
    snprintf(out, n, "%s", RN_LUA_DIR);
#endif
    return;
  }
  char *slash = strrchr(exe, '/');
  if (slash) *slash = '\0';
  snprintf(out, n, "%s/lua", exe);
  if (file_exists(out, "rn/init.lua")) return;
  snprintf(share, sizeof share, "%s/../lua", exe);
  if (file_exists(share, "rn/init.lua") && realpath(share, out)) return;
  snprintf(share, sizeof share, "%s/../share/rnlua/lua", exe);
  if (!realpath(share, out)) snprintf(out, n, "%s", share);
  if (file_exists(out, "rn/init.lua")) return;
#ifdef RN_LUA_DIR
  snprintf(out, n, "%s", RN_LUA_DIR);
#endif
}

/* Puts our modules ahead of package.path (which already honours LUA_PATH)
 * and the core in package.preload["rn.core"]. */
static void setup_rn(lua_State *L) {
  char dir[DIR_MAX];
  find_lua_dir(dir, sizeof dir);
  lua_getglobal(L, "package");
  if (dir[0]) {
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
  }
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_rn_core);
  lua_setfield(L, -2, "rn.core");
  lua_pop(L, 2);
}

/* ---- main ---------------------------------------------------------------- */

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script;
  int args = collectargs(argv, &script);
  int optlim = script > 0 ? script : argc; /* first argv that is not an option */
  luaL_checkversion(L);
  if (args == has_error) {
    print_usage(argv[script]);
    return 0;
  }
  if (args & has_h) {
    printf(usage_text, progname);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (args & has_v) print_version();
  if (args & has_E) { /* tell the package library to ignore LUA_PATH etc. */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  setup_rn(L);
  createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART); /* incremental mode, as tensors live off-heap */
  if (!(args & has_E) && handle_luainit(L) != LUA_OK) return 0;
  if (!runargs(L, argv, optlim)) return 0;
  if (script > 0 && handle_script(L, argv + script) != LUA_OK) return 0;
  if (args & has_i) {
    rn_repl(L, docall);
  } else if (script == 0 && !(args & (has_e | has_v))) {
    if (isatty(STDIN_FILENO)) {
      print_version();
      rn_repl(L, docall);
    } else if (dofile(L, NULL) != LUA_OK) {
      return 0;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* Started by mpirun/srun as one of N > 1 processes, a build without MPI
 * would train N independent copies: refuse (doc/distributed.md). */
static int launcher_check(void) {
  const char *var = NULL;
  int n = rn_dist_launcher_size(&var);
  if (n <= 1 || rn_dist_compiled() || getenv("RN_DIST_ALLOW_COPIES")) return 0;
  fprintf(stderr,
          "%s: started by a launcher as one of %d processes (%s is set), but this rnlua was built "
          "without MPI (NOMPI=1, or no mpicc at build time): it would run %d independent copies. "
          "Install libopenmpi-dev and rebuild (make), or set RN_DIST_ALLOW_COPIES=1 to run copies on purpose.\n",
          progname, n, var, n);
  return -1;
}

int main(int argc, char **argv) {
  if (argv[0] && argv[0][0]) progname = argv[0];
  if (launcher_check() < 0) return EXIT_FAILURE;
  lua_State *L = luaL_newstate();
  if (!L) {
    l_message(progname, "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP); /* no collections while building the state */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int result = lua_toboolean(L, -1);
  report(L, status);
  bool ok = result && status == LUA_OK;
  /* a Lua error on one rank of a job ends the whole job now (the others
   * would wait in their next collective): MPI_Abort, after the message */
  if (!ok) rn_dist_abort(EXIT_FAILURE);
  lua_close(L);
  rn_dist_finalize();
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
