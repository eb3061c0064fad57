-- test_embed.lua - rn outside the rnlua program (mk/lib.mk, doc/install.md):
-- the Lua C module build-pic/rn/core.so (no Lua core of its own) under a
-- stock lua5.4 with the same results and errors as ./rnlua; librnlua.so
-- with the C example doc/embed_example.c and the API's edges
-- (tests/embed/embed_api.c); `make install` of all three. Runs under ./rnlua
-- and under lua5.4 itself (make test-lua; RN_EXPECT_ROCK=<tree> when the
-- module is the one `luarocks make` installed there).
local T = require "t"

local LUA_INC = os.getenv("LUA_INC") or "/usr/include/lua5.4"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok, code
end

local function have(prog)
  local _, ok = sh("command -v " .. prog)
  return ok
end

-- builds build-pic/ (a no-op when it is up to date); the suite's separate
-- builds (RNLUA_BIN: sanitizers) skip, like test_install
local function build_pic()
  if os.getenv("RNLUA_BIN") then T.skip("checks the default build only (RNLUA_BIN is set)") end
  local out, ok = sh("make -s pic")
  T.truthy(ok, "make pic failed:\n" .. out)
end

local function lines_of(out)
  local t = {}
  for l in out:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

T.test("module: core.so has no Lua core of its own and exports only luaopen_rn_core", function()
  build_pic()
  if not have("nm") then T.skip("nm not installed") end
  local defined = sh("nm -D --defined-only build-pic/rn/core.so | awk '{print $3}'")
  T.eq(lines_of(defined), {"luaopen_rn_core"})
  local undef = sh("nm -D --undefined-only build-pic/rn/core.so")
  T.truthy(undef:find(" lua_pushnumber\n") and undef:find(" luaL_checkudata\n"),
    "the module takes the Lua API from the interpreter")
  local needed = sh("readelf -d build-pic/rn/core.so build-pic/librnlua.so")
  T.truthy(not needed:find("build%-pic/rn/core%.so.-liblua.-File: build%-pic/librnlua"),
    "core.so must not need liblua:\n" .. needed)
  -- librnlua.so uses the shared liblua5.4 (not a copy) and exports the API
  T.truthy(needed:find("File: build%-pic/librnlua%.so.-%[liblua5%.4%.so%.0%]"), needed)
  local api = lines_of(sh("nm -D --defined-only build-pic/librnlua.so | awk '{print $3}' | sort"))
  T.eq(api, {"luaopen_rn_core", "rnlua_dofile", "rnlua_dostring", "rnlua_newstate",
             "rnlua_openlibs", "rnlua_push_tensor", "rnlua_tensor_view_get"})
  local lua_defs = sh("nm -D --defined-only build-pic/librnlua.so | grep -c ' lua_' || true")
  T.eq(tonumber(lua_defs), 0)
end)

-- The same script under ./rnlua and under lua5.4 with the module: values,
-- error messages (with their positions) and a seeded model's output match.
local SCRIPT = [[
local rn = require "rn"
rn.manual_seed(7)
local x = rn.tensor({{1, 2, 3}, {4, 5, 6}})
print("sum", (x * 2):sum():item(), x:matmul(x:t()):totable()[2][1])
for _, f in ipairs{
  function() return rn.zeros(-1) end,
  function() return x:sum(5) end,
  function() return x:matmul(x) end,
  function() return rn.zeros(2, {dtpye = "float32"}) end,
  function() return rn.no_grad(3) end,
  function() return rn.layers.Dense(2, {bogus = 1}) end,
} do print("err", select(2, pcall(f))) end
local inputs = rn.layers.Input({3})
local model = rn.Model(inputs, rn.layers.Dense(2)(rn.layers.ReLU()(rn.layers.Dense(4)(inputs))))
local y = model:predict(x):totable()
print("model", string.format("%.6f %.6f", y[1][1], y[2][2]))
print("interp", package.preload["rn.core"] and "preloaded" or "module")
]]

T.test("module: require 'rn' from Debian's lua5.4 gives rnlua's results and errors", function()
  build_pic()
  if not have("lua5.4") then T.skip("lua5.4 not installed (make test-lua installs it)") end
  local f = os.tmpname()
  local h = assert(io.open(f, "w"))
  h:write(SCRIPT)
  h:close()
  local a = sh("./rnlua " .. f)
  local b = sh("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build-pic/?.so;;' lua5.4 " .. f)
  os.remove(f)
  T.truthy(a:find("^sum\t42%.0\t32%.0\n"), a)
  T.truthy(a:find("err\t.-zeros: size 1 is %-1; sizes are >= 0"), a)
  T.truthy(a:find("unknown option 'dtpye'"), a)
  T.truthy(a:find("\nmodel\t%-?%d+%.%d+ %-?%d+%.%d+\n"), a)
  T.truthy(a:find("interp\tpreloaded\n$"), a)
  T.truthy(b:find("interp\tmodule\n$"), b)
  T.eq(b:gsub("interp\tmodule\n$", ""), (a:gsub("interp\tpreloaded\n$", "")))
end)

T.test("module: this interpreter loaded rn.core from where it should", function()
  local rn = require "rn"
  T.eq((rn.ones(2, 2) * 3):sum():item(), 12)
  if package.preload["rn.core"] then return end -- inside ./rnlua: nothing to find
  local so = package.searchpath("rn.core", package.cpath)
  T.truthy(so, "rn.core not on package.cpath")
  local tree = os.getenv("RN_EXPECT_ROCK")
  if tree then
    T.truthy(so:find(tree, 1, true) == 1, so .. " is not in the LuaRocks tree " .. tree)
    local init = package.searchpath("rn", package.path)
    T.truthy(init:find(tree, 1, true) == 1, init .. " is not in the LuaRocks tree " .. tree)
  end
end)

local function cc(out, src, flags)
  local o, ok = sh(string.format("cc -std=c11 -Wall -Wextra -Werror %s %s -o %s", src, flags, out))
  T.truthy(ok, "cc " .. src .. " failed:\n" .. o)
end

local function run_example(bin, rn_dir)
  local out, ok = sh("cd / && " .. bin)
  T.truthy(ok, out)
  T.eq(lines_of(out), {
    "rn from: " .. rn_dir .. "/rn/init.lua",
    "x[0][0] after Lua's x:mul_(2): 2",
    "y[0] = 8.5 9.5", "y[1] = 20.5 21.5", "y[2] = 32.5 33.5", "y[3] = 44.5 45.5",
    "released: 1", "ok"})
end

local function cwd() return (sh("pwd"):gsub("\n$", "")) end

T.test("librnlua: doc/embed_example.c builds and runs against build-pic/", function()
  build_pic()
  local bin = os.tmpname()
  local here = cwd()
  cc(bin, "doc/embed_example.c", "-Iinclude -I" .. LUA_INC .. " -Lbuild-pic -Wl,-rpath," ..
     here .. "/build-pic -lrnlua -llua5.4")
  run_example(bin, here .. "/lua")
  os.remove(bin)
end)

T.test("librnlua: API errors return a status and a message; release runs once", function()
  build_pic()
  local bin = os.tmpname()
  cc(bin, "tests/embed/embed_api.c", "-Iinclude -I" .. LUA_INC .. " -Lbuild-pic -Wl,-rpath," ..
     cwd() .. "/build-pic -lrnlua -llua5.4")
  local out, ok = sh(bin)
  os.remove(bin)
  T.truthy(ok, out)
  local r = {}
  for k, v in out:gmatch("([%w_]+): ([^\n]*)") do r[k] = r[k] or v end
  T.eq(r.openlibs_bad_dir, "error: rnlua_openlibs: /nonexistent/rn/init.lua not found")
  T.eq(r.openlibs, "ok"); T.eq(r.require, "ok")
  T.eq(r.runtime_error, "error: chunk:1: zeros: size 1 is -1; sizes are >= 0")
  T.truthy(out:find("stack traceback:\n\t%[C%]: in function 'rn%.[%w.]*zeros'"), out)
  T.eq(r.syntax_error, "error: chunk:1: unexpected symbol near '='")
  T.eq(r.missing_file, "error: cannot open /nonexistent.lua: No such file or directory")
  T.eq(r.push_null, "error: rnlua_push_tensor: tensor: external data is NULL")
  T.truthy(r.push_misaligned:find("is not aligned to 8 bytes %(float64%)$"), r.push_misaligned)
  T.eq(r.push_ndim, "error: rnlua_push_tensor: 9 dims; tensors have 0..8 dims (shape not NULL)")
  T.eq(r.push_negative, "error: rnlua_push_tensor: tensor: size -3 of dim 2 is negative; sizes are >= 0")
  T.eq(r.push_dtype, "error: rnlua_push_tensor: tensor: unknown dtype 42")
  T.eq(r.stack_kept, "1"); T.eq(r.releases_after_errors, "0")
  T.eq(r.push, "ok"); T.eq(r.use, "ok"); T.eq(r.sum, "21"); T.eq(r.write_through, "20")
  T.eq(r.view, "ok"); T.eq(r.view_shares, "1"); T.eq(r.view_shape, "3 2")
  T.eq(r.view_stride, "1 3"); T.eq(r.view_contiguous, "0")
  T.eq(r.view_number, "error: rnlua_tensor_view_get: stack index -1 is a number, not a tensor")
  T.eq(r.view_closed, "error: rnlua_tensor_view_get: stack index -1 is a closed tensor")
  T.eq(r.releases_while_alive, "0"); T.eq(r.releases_after_collect, "1")
  T.eq(r.releases_at_close, "1")
  T.eq(r.push_borrowed, "ok"); T.eq(r.borrowed, "10 20 30")
end)

T.test("make install: program, module (stock lua5.4), librnlua with rnlua.pc", function()
  if os.getenv("RNLUA_BIN") then T.skip("checks the default build only (RNLUA_BIN is set)") end
  local prefix = os.tmpname()
  os.remove(prefix)
  local out, ok = sh("make -s install PREFIX=" .. prefix)
  T.truthy(ok, "make install failed:\n" .. out)
  for _, f in ipairs{"bin/rnlua", "lib/librnlua.so", "lib/librnlua.so.0", "include/rnlua.h",
                     "lib/pkgconfig/rnlua.pc", "lib/lua/5.4/rn/core.so",
                     "share/lua/5.4/rn/init.lua", "share/rnlua/lua/rn/init.lua"} do
    T.truthy(io.open(prefix .. "/" .. f), f .. " not installed")
  end
  if have("lua5.4") then
    local o = sh(string.format("cd / && LUA_PATH='%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua' " ..
      "LUA_CPATH='%s/lib/lua/5.4/?.so' lua5.4 -e 'local rn = require \"rn\"; " ..
      "print((rn.ones(3) * 2):sum():item(), package.searchpath(\"rn.core\", package.cpath))'",
      prefix, prefix, prefix))
    T.eq(o, "6.0\t" .. prefix .. "/lib/lua/5.4/rn/core.so\n")
  end
  if have("pkg-config") then
    local flags, fok = sh("PKG_CONFIG_PATH=" .. prefix .. "/lib/pkgconfig pkg-config --cflags --libs rnlua")
    T.truthy(fok and flags:find("-I" .. prefix .. "/include", 1, true), flags)
    local bin = os.tmpname()
    cc(bin, "doc/embed_example.c", (flags:gsub("\n", "")))
    run_example(bin, prefix .. "/share/rnlua/lua")
    os.remove(bin)
  end
  os.execute("rm -rf " .. prefix)
end)
