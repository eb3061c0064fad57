/* repl.c - the interactive loop of rnlua (see repl.h and doc/repl.md):
 * reading lines (readline on a terminal, plain stdio otherwise), history,
 * tab completion, compiling a line as an expression or as statements with
 * continuation lines, printing results, and Ctrl-C at the prompt. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "lauxlib.h"
#include "lua.h"
#include "repl.h"

#define PROMPT1 "rn> "
#define PROMPT2 ">> "
#define EOFMARK "<eof>"
#define HISTORY_MAX 1000
#define MAX_DEPTH 8 /* __index chain links followed by the completer */
/* Completion words run across '.' and ':' so that "rn.ze" is one word. */
#define WORD_BREAKS " \t\n\"'`@$><=;|&{}()[],+-*/%^~#!"

static bool use_rl;                     /* reading through readline */
static volatile sig_atomic_t got_sigint; /* Ctrl-C while waiting for input */

/* ---- Ctrl-C at the prompt ------------------------------------------------ */

static void on_sigint(int sig) {
  (void)sig;
  got_sigint = 1;
}

static void set_sigint(void (*handler)(int), struct sigaction *old) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0; /* no SA_RESTART: a blocked read returns EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, old);
}

/* readline's input function: like rl_getc, but a Ctrl-C ends the line (its
 * text is then dropped by read_line) instead of killing the program. */
static int getc_intr(FILE *f) {
  for (;;) {
    if (got_sigint) return '\n';
    unsigned char c;
    ssize_t n = read(fileno(f), &c, 1);
    if (n == 1) return c;
    if (n == 0) return EOF;
    if (errno != EINTR) return RL_ISSTATE(RL_STATE_READCMD) ? READERR : EOF;
    rl_check_signals(); /* readline restores the terminal, runs on_sigint */
  }
}

/* ---- history ------------------------------------------------------------- */

static char hist_file[4096];
static int hist_added; /* entries added by this session */

static void history_save(void) {
  int n = hist_added < history_length ? hist_added : history_length;
  if (n <= 0) return;
  /* Appending keeps lines from sessions running side by side. */
  if (append_history(n, hist_file) != 0 && write_history(hist_file) != 0) return;
  history_truncate_file(hist_file, HISTORY_MAX);
}

static void history_init(void) {
  const char *env = getenv("RNLUA_HISTORY"), *home = getenv("HOME");
  stifle_history(HISTORY_MAX);
  if (env) snprintf(hist_file, sizeof hist_file, "%s", env); /* "" = none */
  else if (home && *home) snprintf(hist_file, sizeof hist_file, "%s/.rnlua_history", home);
  if (!hist_file[0]) return;
  read_history(hist_file); /* a missing file is fine */
  atexit(history_save);    /* also runs on os.exit() */
}

static void history_add(const char *line) {
  if (line[strspn(line, " \t")] == '\0') return;
  HIST_ENTRY *last = history_length ? history_get(history_base + history_length - 1) : NULL;
  if (last && strcmp(last->line, line) == 0) return;
  add_history(line);
  hist_added++;
}

/* ---- completion ---------------------------------------------------------- */

static lua_State *comp_L;
static char **comp_list;   /* candidates for the word being completed */
static int comp_n, comp_next;
static size_t comp_head;   /* length of "path." before the field names */

static const char *const keywords[] = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
  "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
  "true", "until", "while", NULL
};

static bool is_ident(const char *s, size_t n) {
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return false;
  for (size_t i = 0; i < n; i++)
    if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9')))
      return false;
  return true;
}

static bool is_callable(lua_State *L, int i) {
  if (lua_type(L, i) == LUA_TFUNCTION) return true;
  if (luaL_getmetafield(L, i, "__call") == LUA_TNIL) return false;
  lua_pop(L, 1);
  return true;
}

static void add_match(lua_State *L, int set, const char *head, const char *name) {
  lua_pushfstring(L, "%s%s", head, name);
  lua_pushboolean(L, 1);
  lua_rawset(L, set);
}

/* Adds head..key to the set for each identifier key of table t that starts
 * with word (only keys holding callables when methods is true). Names
 * starting with '_' are private: offered only when word starts with '_'. */
static void add_keys(lua_State *L, int t, int set, const char *head, const char *word,
                     bool methods) {
  size_t wl = strlen(word);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    size_t kl;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tolstring(L, -2, &kl);
      if (kl >= wl && memcmp(k, word, wl) == 0 && is_ident(k, kl) &&
          (k[0] != '_' || word[0] == '_') &&
          (!methods || is_callable(L, lua_gettop(L))))
        add_match(L, set, head, k);
    }
    lua_pop(L, 1);
  }
}

/* rn._methods: the tensor methods, for userdata whose __index is a function. */
static void add_rn_methods(lua_State *L, int set, const char *head, const char *word,
                           bool methods) {
  if (lua_getglobal(L, "rn") == LUA_TTABLE && lua_getfield(L, -1, "_methods") == LUA_TTABLE)
    add_keys(L, lua_gettop(L), set, head, word, methods);
}

/* Adds the fields of value v: its own keys if it is a table, then those
 * reached through the chain of metatable __index tables. */
static void add_fields(lua_State *L, int v, int set, const char *head, const char *word,
                       bool methods) {
  int top = lua_gettop(L);
  luaL_checkstack(L, 2 * MAX_DEPTH + 10, "completion");
  lua_pushvalue(L, v);
  for (int depth = 0; depth < MAX_DEPTH; depth++) {
    int cur = lua_gettop(L);
    if (lua_type(L, cur) == LUA_TTABLE) add_keys(L, cur, set, head, word, methods);
    if (!lua_getmetatable(L, cur)) break;
    lua_pushliteral(L, "__index");
    if (lua_rawget(L, -2) != LUA_TTABLE) {
      if (depth == 0 && lua_type(L, cur) == LUA_TUSERDATA)
        add_rn_methods(L, set, head, word, methods);
      break;
    }
  }
  lua_settop(L, top);
}

/* Pushes the value of a dotted name path ("rn.nn"); false if not a path. */
static bool resolve(lua_State *L, const char *path, size_t n) {
  lua_pushglobaltable(L);
  for (size_t i = 0, j;; i = j + 1) {
    for (j = i; j < n && path[j] != '.'; j++) {}
    int t = lua_type(L, -1);
    if (!is_ident(path + i, j - i) || (t != LUA_TTABLE && t != LUA_TUSERDATA && t != LUA_TSTRING))
      return false;
    lua_pushlstring(L, path + i, j - i);
    lua_gettable(L, -2); /* may run __index: we are in a protected call */
    lua_remove(L, -2);
    if (j == n) return true;
  }
}

/* The last '.' or ':' of a word, or NULL. */
static const char *last_sep(const char *text) {
  const char *sep = NULL;
  for (const char *p = text; *p; p++)
    if (*p == '.' || *p == ':') sep = p;
  return sep;
}

/* Protected: pushes a set {candidate = true} for the word at argument 1. */
static int collect(lua_State *L) {
  const char *text = luaL_checkstring(L, 1), *sep = last_sep(text);
  lua_newtable(L); /* 2: the set */
  if (!sep) {
    lua_pushglobaltable(L);
    add_fields(L, 3, 2, "", text, false);
    for (int i = 0; keywords[i]; i++)
      if (strncmp(keywords[i], text, strlen(text)) == 0) add_match(L, 2, "", keywords[i]);
  } else if (resolve(L, text, (size_t)(sep - text))) {
    lua_pushlstring(L, text, (size_t)(sep - text) + 1); /* 4: "path." or "path:" */
    add_fields(L, 3, 2, lua_tostring(L, 4), sep + 1, *sep == ':');
  }
  lua_settop(L, 2);
  return 1;
}

static void comp_clear(void) {
  for (int i = 0; i < comp_n; i++) free(comp_list[i]);
  free(comp_list);
  comp_list = NULL;
  comp_n = 0;
}

/* Fills comp_list with the candidates for text (none on any error). */
static void comp_collect(const char *text) {
  lua_State *L = comp_L;
  int top = lua_gettop(L);
  comp_clear();
  lua_pushcfunction(L, collect);
  lua_pushstring(L, text);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    int n = 0;
    for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) n++;
    comp_list = malloc(sizeof *comp_list * (size_t)(n ? n : 1));
    for (lua_pushnil(L); comp_list && lua_next(L, -2); lua_pop(L, 1))
      if ((comp_list[comp_n] = strdup(lua_tostring(L, -2)))) comp_n++;
  }
  lua_settop(L, top);
  const char *sep = last_sep(text);
  comp_head = sep ? (size_t)(sep - text) + 1 : 0;
}

static char *comp_gen(const char *text, int state) {
  (void)text;
  if (state == 0) comp_next = 0;
  return comp_next < comp_n ? strdup(comp_list[comp_next++]) : NULL;
}

static char **complete(const char *text, int start, int end) {
  (void)start, (void)end;
  rl_attempted_completion_over = 1; /* never fall back to file names */
  rl_completion_append_character = '\0';
  comp_collect(text);
  return comp_n ? rl_completion_matches(text, comp_gen) : NULL;
}

/* Lists candidates without their common "path." head, like shells do. */
static void show_matches(char **matches, int n, int maxlen) {
  char **v = malloc(sizeof *v * (size_t)(n + 2));
  if (!v) return;
  for (int i = 0; i <= n; i++)
    v[i] = strlen(matches[i]) >= comp_head ? matches[i] + comp_head : matches[i];
  v[n + 1] = NULL;
  rl_display_match_list(v, n, maxlen - (int)comp_head);
  free(v);
  rl_forced_update_display();
}

static void readline_init(lua_State *L) {
  comp_L = L;
  rl_readline_name = "rnlua"; /* for $if rnlua in ~/.inputrc */
  rl_attempted_completion_function = complete;
  rl_completer_word_break_characters = WORD_BREAKS;
  rl_completion_display_matches_hook = show_matches;
  rl_getc_function = getc_intr;
  history_init();
}

/* ---- reading lines ------------------------------------------------------- */

/* The prompt: _PROMPT / _PROMPT2 when they are strings, as in lua. */
static void get_prompt(lua_State *L, bool first, char *buf, size_t n) {
  const char *def = first ? PROMPT1 : PROMPT2;
  if (lua_getglobal(L, first ? "_PROMPT" : "_PROMPT2") == LUA_TSTRING)
    def = lua_tostring(L, -1);
  snprintf(buf, n, "%s", def);
  lua_pop(L, 1);
}

static char *read_plain(const char *prompt) {
  char *line = NULL;
  size_t cap = 0;
  fputs(prompt, stdout);
  fflush(stdout);
  ssize_t n = getline(&line, &cap, stdin);
  if (n < 0) {
    free(line);
    if (!got_sigint) return NULL;
    clearerr(stdin);
    fputc('\n', stdout);
    return strdup("");
  }
  if (n > 0 && line[n - 1] == '\n') line[n - 1] = '\0';
  return line;
}

/* A malloc'd line without its newline, or NULL at end of input; *intr is
 * set when Ctrl-C abandoned it. */
static char *read_line(lua_State *L, bool first, bool *intr) {
  char prompt[256];
  get_prompt(L, first, prompt, sizeof prompt);
  got_sigint = 0;
  char *line = use_rl ? readline(prompt) : read_plain(prompt);
  *intr = got_sigint != 0;
  got_sigint = 0;
  if (line && use_rl && !*intr) history_add(line);
  return line;
}

/* ---- compiling ----------------------------------------------------------- */

static bool incomplete(lua_State *L, int status) {
  size_t n;
  const char *msg;
  if (status != LUA_ERRSYNTAX) return false;
  msg = lua_tolstring(L, -1, &n);
  return n >= sizeof EOFMARK - 1 && strcmp(msg + n - (sizeof EOFMARK - 1), EOFMARK) == 0;
}

/* Tries "return <line>;" so that expressions get their values printed. */
static int load_return(lua_State *L, const char *line) {
  const char *code = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, code, strlen(code), "=stdin");
  lua_remove(L, -2);
  if (status != LUA_OK) lua_pop(L, 1);
  return status;
}

/* Compiles the string on top as statements, reading continuation lines while
 * the chunk ends early; replaces it with the function or error message. */
static int load_statements(lua_State *L) {
  for (;;) {
    size_t len;
    const char *code = lua_tolstring(L, -1, &len);
    int status = luaL_loadbuffer(L, code, len, "=stdin");
    bool intr = false;
    char *more = incomplete(L, status) ? read_line(L, false, &intr) : NULL;
    if (!more || intr) {
      free(more);
      lua_remove(L, -2);
      if (intr) lua_pop(L, 1);
      return intr ? luaL_loadstring(L, "") : status;
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "\n");
    lua_pushstring(L, more);
    free(more);
    lua_concat(L, 3);
  }
}

static const char help_text[] =
  "rnlua: Lua 5.4 with the rn tensor library loaded as the global 'rn'.\n"
  "  Type an expression to print its value (1+1, rn.zeros, ...) or any Lua\n"
  "  statement; unfinished statements continue on '>> ' lines.\n"
  "  TAB completes globals, fields (rn.ze<TAB>) and methods (x:<TAB>).\n"
  "  Up/Down walk the history (~/.rnlua_history, or $RNLUA_HISTORY).\n"
  "  Ctrl-C abandons the line or interrupts a running statement;\n"
  "  Ctrl-D (or os.exit()) quits.\n";

/* The line "help", unless the program defined a global help itself. */
static bool is_help(lua_State *L, const char *line) {
  size_t i = strspn(line, " \t"), n = strlen(line);
  while (n > i && (line[n - 1] == ' ' || line[n - 1] == '\t')) n--;
  if (n - i != 4 || strncmp(line + i, "help", 4) != 0) return false;
  bool unset = lua_getglobal(L, "help") == LUA_TNIL;
  lua_pop(L, 1);
  if (unset) fputs(help_text, stdout);
  return unset;
}

/* Reads and compiles one entry; pushes the function (or error message) and
 * returns the load status, or -1 at end of input. */
static int load_entry(lua_State *L) {
  bool intr = false;
  char *line = read_line(L, true, &intr);
  if (!line) return -1;
  if (intr || is_help(L, line)) {
    free(line);
    return luaL_loadstring(L, "");
  }
  if (line[0] == '=') /* "=expr", as in Lua 5.2 */
    lua_pushfstring(L, "return %s", line + 1);
  else
    lua_pushstring(L, line);
  free(line);
  int status = load_return(L, lua_tostring(L, -1));
  if (status == LUA_OK) {
    lua_remove(L, -2);
    return status;
  }
  return load_statements(L);
}

/* ---- evaluating and printing --------------------------------------------- */

/* Protected: writes its arguments through tostring, separated by tabs. */
static int print_values(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  fwrite(s, 1, len, stdout);
  fflush(stdout);
  return 0;
}

static void report(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
  fflush(stdout);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

static void print_results(lua_State *L, int base) {
  int n = lua_gettop(L) - base;
  if (n <= 0) return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  lua_pushcfunction(L, print_values);
  lua_insert(L, base + 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK) {
    lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1));
    report(L);
  }
}

static void define_rn(lua_State *L) {
  int t = lua_getglobal(L, "rn");
  lua_pop(L, 1);
  if (t != LUA_TNIL) return;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "rn");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    lua_setglobal(L, "rn");
  } else {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "rnlua: warning: cannot load 'rn': %s\n", msg ? msg : "?");
    lua_pop(L, 1);
  }
}

void rn_repl(lua_State *L, rn_repl_call call) {
  int base = lua_gettop(L), status;
  struct sigaction old;
  use_rl = isatty(STDIN_FILENO);
  if (use_rl) readline_init(L);
  set_sigint(on_sigint, &old);
  define_rn(L);
  if (use_rl) puts("Type 'help' for help, Ctrl-D to quit.");
  while ((status = load_entry(L)) != -1) {
    if (status == LUA_OK) status = call(L, 0, LUA_MULTRET);
    if (status == LUA_OK) print_results(L, base);
    else report(L);
    lua_settop(L, base);
  }
  lua_settop(L, base);
  fputc('\n', stdout);
  fflush(stdout);
  sigaction(SIGINT, &old, NULL);
}
