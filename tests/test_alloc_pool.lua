-- test_alloc_pool.lua - issue 19: the CUDA caching allocator's graph pools
-- (core/cuda/alloc.c) tested without a GPU: tests/c/alloc_pool.c is
-- compiled with alloc.c against a fake CUDA runtime and run (its checks:
-- capture allocations from the pool, pool frees kept out of the global
-- lists, flushes that spare the pool, out-of-memory in a capture failing at
-- once, cudaMalloc under the relaxed capture mode, release). Skips where
-- there is no C compiler or no CUDA runtime header.
local T = require "t"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

T.test("cuda allocator graph pools against a fake runtime (tests/c/alloc_pool.c)", function()
  local cuda = os.getenv("CUDA_HOME") or "/usr/local/cuda"
  local f = io.open(cuda .. "/include/cuda_runtime_api.h")
  if not f then T.skip("no " .. cuda .. "/include/cuda_runtime_api.h") end
  f:close()
  local _, has_cc = sh("command -v cc")
  if not has_cc then T.skip("no C compiler (cc)") end
  local exe = os.tmpname()
  local out, ok = sh(string.format("cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Icore -Icore/cuda "
    .. "-I%s/include tests/c/alloc_pool.c core/cuda/alloc.c core/error.c -o %s", cuda, exe))
  T.truthy(ok, "compiling tests/c/alloc_pool.c failed:\n" .. out)
  local res, ran = sh(exe)
  os.remove(exe)
  T.truthy(ran, "alloc_pool failed:\n" .. res)
  local n = tonumber(res:match("^ok (%d+) checks"))
  T.truthy(n and n >= 20, "its checks ran: " .. res)
end)
