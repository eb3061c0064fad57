-- test_determinism.lua - two CPU runs of the same seeded training job
-- (tests/lib/tiny_train.lua, 50 steps, in child processes) save
-- byte-identical checkpoints; another seed gives different bytes (the
-- comparison can fail). Child processes use RNLUA_BIN (default ./rnlua).
package.path = "tests/lib/?.lua;" .. package.path
local T = require "t"

local bin = os.getenv("RNLUA_BIN") or "./rnlua"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- runs the job in a child with the given seed; returns the checkpoint bytes
local function job(seed, env)
  local path = os.tmpname()
  local code = string.format(
    "package.path = 'tests/lib/?.lua;' .. package.path; require('tiny_train').run(%d, 50, %q)",
    seed, path)
  local cmd = string.format("%s %s -e %q 2>&1", env or "", bin, code)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  T.truthy(ok, "child failed: " .. out)
  local bytes = read(path)
  os.remove(path)
  return bytes
end

T.test("two seeded CPU runs save byte-identical checkpoints", function()
  local a, b = job(11), job(11)
  T.truthy(#a > 100, "checkpoint too small")
  T.truthy(a == b, string.format("checkpoints differ (%d and %d bytes)", #a, #b))
  T.truthy(job(12) ~= a, "another seed gave the same checkpoint")
end)

T.test("the same bytes with 1 and with 4 OpenMP threads", function()
  local a, b = job(11, "OMP_NUM_THREADS=1"), job(11, "OMP_NUM_THREADS=4")
  T.truthy(a == b, "checkpoints differ between thread counts")
end)
