-- test_install.lua - `make install PREFIX=...` gives a working rnlua that
-- finds its lua/ modules from the installed layout, run from another folder.
local T = require "t"

T.test("make install: the installed rnlua finds rn from any folder", function()
  if os.getenv("RNLUA_BIN") then T.skip("checks the default build only (RNLUA_BIN is set)") end
  local prefix = os.tmpname()
  os.remove(prefix)
  local ok = os.execute("make -s install PREFIX=" .. prefix .. " >/dev/null 2>&1")
  T.truthy(ok, "make install failed")
  local p = io.popen("cd / && " .. prefix .. "/bin/rnlua -e 'local rn = require \"rn\"; " ..
    "print(rn.version, (rn.ones(2) + 1):sum():item(), package.searchpath(\"rn.fit\", package.path))' 2>&1")
  local out = p:read("a")
  p:close()
  os.execute("rm -rf " .. prefix)
  T.truthy(out:find("^0%.1%.0\t4%.0\t" .. prefix:gsub("%p", "%%%0") .. "/share/rnlua/lua/rn/fit%.lua"), out)
end)
