-- test_rnlua.lua - tests of the rnlua program itself (core/rnlua.c and
-- core/repl.c): options and the arg table as in the lua program, errors with
-- tracebacks and exit codes, scripts on stdin, module paths, and the REPL,
-- both with piped input and on a pseudo-terminal through script(1) for
-- readline editing, completion, history and Ctrl-C.
local T = require "t"

local BIN = os.getenv("RNLUA_BIN") or "./rnlua"

-- ---- helpers ---------------------------------------------------------------

local files = require "files"
local q, slurp, spit = files.q, files.try_read, files.write
local tmpfile, tmpdir, rmrf = files.tmpfile, files.tmpdir, files.rmrf

-- Runs `env BIN args` with stdin from `input` (a string; /dev/null if nil).
-- Returns stdout, stderr and the exit status.
local function run(args, input, env)
  local out, err, inp = os.tmpname(), os.tmpname(), tmpfile(input)
  local cmd = string.format("env %s timeout -k 5 20 %s %s <%s >%s 2>%s", env or "",
                            q(BIN), args, input and q(inp) or "/dev/null", q(out), q(err))
  local _, _, code = os.execute(cmd)
  local o, e = slurp(out), slurp(err)
  os.remove(out); os.remove(err); os.remove(inp)
  return o, e, code
end

-- Runs a script file holding `src` with the given extra arguments.
local function run_script(src, args, input)
  local f = tmpfile(src)
  local o, e, code = run(q(f) .. " " .. (args or ""), input)
  os.remove(f)
  return o, e, code, f
end

local function has(s, needle) return s ~= nil and s:find(needle, 1, true) ~= nil end

local pty_ok
local function need_pty()
  if pty_ok == nil then
    pty_ok = os.execute("command -v script >/dev/null 2>&1 && " ..
                        "timeout 10 script -qec true /dev/null </dev/null >/dev/null 2>&1") == true
  end
  if not pty_ok then T.skip("script(1) or a pseudo-terminal is not available") end
end

-- Runs rnlua on a pseudo-terminal, typing each string of `keys` after a
-- pause (the first once the prompt shows), then Ctrl-D. Returns everything
-- the terminal showed, without \r.
local function repl(keys, opts)
  opts = opts or {}
  local home = opts.home or tmpdir()
  local out = os.tmpname()
  local feed = { "for i in $(seq 150); do grep -q 'rn> ' " .. q(out) ..
                 " 2>/dev/null && break; sleep 0.1; done; sleep 0.2" }
  for _, k in ipairs(keys) do
    feed[#feed + 1] = "printf '%s' " .. q(k)
    feed[#feed + 1] = "sleep " .. (opts.pause or "0.3")
  end
  feed[#feed + 1] = "printf '\\004'; sleep 0.5"
  local hist = opts.history == false and "-u RNLUA_HISTORY"
               or "RNLUA_HISTORY=" .. q(opts.history or home .. "/hist")
  local cmd = string.format(
    "(%s) | env %s TERM=dumb INPUTRC=/dev/null SHELL=/bin/sh HOME=%s " ..
    "timeout -k 5 30 script -qec %s /dev/null >%s 2>&1",
    table.concat(feed, "; "), hist, q(home), q(q(BIN) .. " " .. (opts.args or "")), q(out))
  os.execute(cmd)
  local s = (slurp(out) or ""):gsub("\r", "")
  os.remove(out)
  if not opts.home then rmrf(home) end
  return s
end

-- ---- options and the arg table -------------------------------------------

T.test("rnlua -v prints the rnlua and Lua versions", function()
  local o, _, code = run("-v")
  T.eq(code, 0)
  T.truthy(o:match("^rnlua 0%.1%.0 %(Lua 5%.4%.%d+%)\n$"), o)
end)

T.test("script arguments reach arg and ...", function()
  local o, e, code, f = run_script([[
    print(arg[0], arg[1], arg[2], arg[3], #arg)
    print(select('#', ...), ...)
  ]], "a 'b c' ''")
  T.eq(code, 0, e)
  T.eq(o, f .. "\ta\tb c\t\t3\n3\ta\tb c\t\n")
end)

T.test("arg has negative indices for the interpreter and options", function()
  local f = tmpfile("print(arg[-1], arg[-2], arg[-3], arg[-4], arg[0], arg[1])")
  local o, e, code = run("-e 'x=1' -- " .. q(f) .. " p")
  os.remove(f)
  T.eq(code, 0, e)
  T.eq(o, "--\tx=1\t-e\t" .. BIN .. "\t" .. f .. "\tp\n")
end)

T.test("without a script arg[0] is the interpreter", function()
  local o, e, code = run([[-e 'print(arg[0], arg[1], arg[2], #arg)']])
  T.eq(code, 0, e)
  T.eq(o, BIN .. "\t-e\tprint(arg[0], arg[1], arg[2], #arg)\t2\n")
end)

T.test("-e runs in order, also with the code attached", function()
  local o, e, code = run([[-e 'io.write(1)' -e 'io.write(2)' '-eio.write(3)']])
  T.eq(code, 0, e)
  T.eq(o, "123")
end)

T.test("-e that fails stops the rest", function()
  local o, e, code = run([[-e 'error("first")' -e 'print("second")']])
  T.eq(code, 1)
  T.truthy(has(e, "first"), e)
  T.eq(o, "")
end)

T.test("-l requires a module into a global, honouring LUA_PATH", function()
  local d = tmpdir()
  spit(d .. "/rntestmod.lua", "return { v = 42 }")
  local env = "LUA_PATH=" .. q(d .. "/?.lua;;")
  local o, e, code = run([[-l rntestmod -e 'print(rntestmod.v)']], nil, env)
  T.eq(code, 0, e)
  T.eq(o, "42\n")
  o, e, code = run([[-l m=rntestmod -e 'print(m.v, rntestmod)']], nil, env)
  T.eq(code, 0, e)
  T.eq(o, "42\tnil\n")
  o, e, code = run("-E -l rntestmod", nil, env) -- -E ignores LUA_PATH
  T.eq(code, 1)
  T.truthy(has(e, "module 'rntestmod' not found"), e)
  rmrf(d)
end)

T.test("the rn package is on package.path ahead of LUA_PATH", function()
  local o, e, code = run([[-e 'print(package.path)' -e 'assert(require("rn").zeros)']],
                         nil, "LUA_PATH='/nowhere/?.lua'")
  T.eq(code, 0, e)
  local ours = o:find("/lua/?.lua;", 1, true)
  T.truthy(ours and ours < o:find("/nowhere/?.lua", 1, true), o)
  T.truthy(has(o, "/lua/?/init.lua;"), o)
end)

T.test("installed layout finds share/rnlua/lua", function()
  local d = tmpdir()
  assert(os.execute(string.format("mkdir -p %s/bin %s/share/rnlua && cp %s %s/bin/ && cp -R lua %s/share/rnlua/",
                                  q(d), q(d), q(BIN), q(d), q(d))))
  local out = os.tmpname()
  os.execute(string.format([[%s/bin/rnlua -e 'print(package.path)' -e 'print(type(require("rn").zeros))' >%s 2>&1 </dev/null]],
                           q(d), q(out)))
  local o = slurp(out)
  os.remove(out)
  rmrf(d)
  T.truthy(has(o, "/share/rnlua/lua/?.lua;"), o)
  T.truthy(has(o, "\nfunction\n"), o)
end)

T.test("-h prints usage on stdout; bad options fail", function()
  local o, _, code = run("-h")
  T.eq(code, 0)
  T.truthy(o:match("^usage: "), o)
  local _, e
  o, e, code = run("-x")
  T.eq(code, 1)
  T.truthy(has(e, "unrecognized option '-x'") and has(e, "usage:"), e)
  o, e, code = run("-e")
  T.eq(code, 1)
  T.truthy(has(e, "'-e' needs argument"), e)
end)

T.test("os.exit status is the program's", function()
  local _, _, code = run("-e 'os.exit(3)'")
  T.eq(code, 3)
  _, _, code = run("-e 'os.exit(false)'")
  T.eq(code, 1)
end)

-- ---- errors ------------------------------------------------------------------

T.test("runtime errors print the message and a traceback, exit 1", function()
  local o, e, code, f = run_script("print('before')\nlocal function g() error('boom') end\ng()\n")
  T.eq(code, 1)
  T.eq(o, "before\n")
  T.truthy(has(e, f .. ":2: boom"), e)
  T.truthy(has(e, "stack traceback:") and has(e, "in local 'g'"), e)
end)

T.test("error objects: __tostring or their type", function()
  local _, e, code = run([[-e 'error(setmetatable({}, {__tostring = function() return "custom-obj" end}))']])
  T.eq(code, 1)
  T.truthy(has(e, "custom-obj"), e)
  _, e, code = run([[-e 'error({})']])
  T.eq(code, 1)
  T.truthy(has(e, "(error object is a table value)") and has(e, "stack traceback:"), e)
end)

T.test("syntax errors and missing scripts exit 1", function()
  local _, e, code, f = run_script("x = = 1\n")
  T.eq(code, 1)
  T.truthy(has(e, f .. ":1:"), e)
  _, e, code = run("/nonexistent/script.lua")
  T.eq(code, 1)
  T.truthy(has(e, "cannot open /nonexistent/script.lua"), e)
end)

T.test("SIGINT interrupts a running script", function()
  local out, err = os.tmpname(), os.tmpname()
  local _, _, code = os.execute(string.format(
    "timeout --foreground --preserve-status -k 5 -s INT 1 %s -e 'while true do end' </dev/null >%s 2>%s",
    q(BIN), q(out), q(err)))
  local e = slurp(err)
  os.remove(out); os.remove(err)
  T.eq(code, 1)
  T.truthy(has(e, "interrupted!"), e)
end)

-- ---- stdin -------------------------------------------------------------------

T.test("'-' runs stdin as the script with arguments", function()
  local o, e, code = run("- x y", "print(arg[0], ...)\n")
  T.eq(code, 0, e)
  T.eq(o, "-\tx\ty\n")
end)

T.test("no script and stdin not a terminal: stdin is the script", function()
  local o, e, code = run("", "print(6 * 7)\n")
  T.eq(code, 0, e)
  T.eq(o, "42\n")
  _, e, code = run("", "error('from stdin')\n")
  T.eq(code, 1)
  T.truthy(has(e, "stdin:1: from stdin"), e)
end)

T.test("-i runs the script, then reads statements from a pipe", function()
  local input = "y * 2\nfunction f(a)\nreturn a * 3\nend\nf(5)\nerror('oops')\n'still' .. 'here'\ntype(rn)\n1, nil, 'x'\n"
  local f = tmpfile("y = 21\n")
  local o, e, code = run("-i " .. q(f), input)
  os.remove(f)
  T.eq(code, 0, e)
  T.truthy(o:match("^rnlua 0%.1%.0"), o)  -- -i implies -v
  T.truthy(has(o, "rn> 42\n"), o)
  T.truthy(has(o, ">> "), o)              -- continuation prompt
  T.truthy(has(o, "rn> 15\n"), o)
  T.truthy(has(o, "stillhere\n"), o)
  T.truthy(has(o, "table\n"), o)          -- rn is predefined
  T.truthy(has(o, "1\tnil\tx\n"), o)
  T.truthy(has(e, "stdin:1: oops") and has(e, "stack traceback:"), e)
end)

-- ---- the REPL on a terminal -------------------------------------------------------

T.test("repl: expressions print, multi-line statements, errors", function()
  need_pty()
  local s = repl({ "1+1\n", "function f(a)\n", "return a*3\n", "end\n", "f(5)\n",
                   "error('zz'..'top')\n", "'af'..'ter'\n", "= 2^10\n" })
  T.truthy(s:match("rnlua 0%.1%.0 %(Lua 5%.4"), s)
  T.truthy(s:find("\n2\n", 1, true), s)
  T.truthy(has(s, "rn> ") and has(s, ">> "), s)
  T.truthy(s:find("\n15\n", 1, true), s)
  T.truthy(has(s, "zztop") and has(s, "stack traceback:"), s)
  T.truthy(s:find("\nafter\n", 1, true), s)
  T.truthy(s:find("\n1024.0\n", 1, true), s)
end)

T.test("repl: history is written to RNLUA_HISTORY and to ~/.rnlua_history", function()
  need_pty()
  local home = tmpdir()
  repl({ "1+1\n", "x = 7\n" }, { home = home })
  local h = slurp(home .. "/hist") or ""
  T.truthy(has(h, "1+1\n") and has(h, "x = 7\n"), h)
  -- the next session recalls it (Up twice = "1+1")
  local s = repl({ "\27[A\27[A\n" }, { home = home })
  T.truthy(s:find("\n2\n", 1, true), s)
  repl({ "3+4\n" }, { home = home, history = false })
  h = slurp(home .. "/.rnlua_history") or ""
  T.truthy(has(h, "3+4\n"), h)
  -- an unwritable history file is not an error
  s = repl({ "5+5\n" }, { home = home, history = "/nonexistent/dir/hist" })
  T.truthy(s:find("\n10\n", 1, true), s)
  T.truthy(not has(s:lower(), "error"), s)
  rmrf(home)
end)

T.test("repl: history keeps at most 1000 lines", function()
  need_pty()
  local home = tmpdir()
  local lines = {}
  for i = 1, 1200 do lines[i] = "v = " .. i end
  spit(home .. "/hist", table.concat(lines, "\n") .. "\n")
  repl({ "9*9\n" }, { home = home })
  local h = slurp(home .. "/hist") or ""
  local n = select(2, h:gsub("\n", ""))
  T.eq(n, 1000)
  T.truthy(h:match("9%*9\n$"), h:sub(-40))
  rmrf(home)
end)

T.test("repl: tab completion of fields, globals and methods", function()
  need_pty()
  -- TAB after "rn.zer" inserts the common prefix of rn's fields starting
  -- with "zer" ("zero" when rn.zero_grad exists too); type the rest.
  local lcp
  for k in pairs(require "rn") do
    if type(k) == "string" and k:find("^zer") then
      if not lcp then lcp = k end
      while k:sub(1, #lcp) ~= lcp do lcp = lcp:sub(1, -2) end
    end
  end
  T.truthy(lcp, "rn.zeros exists")
  local rest = ("zeros"):sub(#lcp + 1)
  local obj = "obj = setmetatable({}, {__index = {frobnicate = function() return 'fro'..'bbed' end}})"
  local s = repl({ "rn.zer\t" .. rest .. " == rn.zeros\n", -- field of a table
                   "_VERSI\t:upper()\n",              -- global name
                   "io.stdout:wri\t('A'..'B')\n",     -- method of a userdata
                   "obj:frob\t()\n",                  -- method through __index
                 }, { args = "-e " .. q(obj) .. " -i" })
  T.truthy(s:find("\ntrue\n", 1, true), s)
  T.truthy(has(s, "LUA 5.4"), s)
  T.truthy(has(s, "AB"), s)
  T.truthy(has(s, "frobbed"), s)
end)

T.test("repl: Ctrl-C abandons the line or interrupts a statement", function()
  need_pty()
  local s = repl({ "12345", "\3", "function g()\n", "\3", "7*6\n", "while true do end\n", "\3",
                   "'still'..'alive'\n" }, { pause = "0.5" })
  T.truthy(s:find("\n42\n", 1, true), s)
  T.truthy(has(s, "interrupted!"), s)
  T.truthy(has(s, "stillalive"), s)
  T.truthy(not has(s, "12345\n"), s) -- never evaluated
end)
