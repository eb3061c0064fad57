-- nccl_check.lua - the nccl backend at world size 1 on a GPU, run by
-- scripts/gpu_check.sh (a single GPU: NCCL refuses two ranks on one device,
-- so the multi-rank NCCL path is left to a machine with several GPUs):
--   1. rn.distributed.init{backend = "nccl"} in one process (no launcher:
--      no MPI), collectives on CUDA tensors of each dtype NCCL takes,
--      values checked on the host;
--   2. tests/dist/equiv.lua's conv net trained 5 steps on the GPU with
--      fit{distributed = true} over NCCL against the plain GPU run: equal
--      bit for bit (the allreduce of one rank is a copy).
-- Prints "ok"/"FAIL" per check and "N ok, N failed"; exits 1 on a failure.
--   ./rnlua tests/dist/nccl_check.lua [RNLUA_BIN]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local rn = require "rn"
local BIN = arg[1] or "./rnlua"
local nok, nfail = 0, 0
local function check(ok, msg)
  print((ok and "ok   " or "FAIL ") .. msg)
  if ok then nok = nok + 1 else nfail = nfail + 1 end
end
local function same(a, b) -- tables of numbers
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

if not rn.cuda.is_available() then
  print("SKIP nccl_check: no CUDA device: " .. tostring(rn.cuda.why_unavailable()))
  os.exit(0)
end
if not rn.distributed.is_available() then
  print("SKIP nccl_check: this rnlua was built without MPI")
  os.exit(0)
end

local d = rn.distributed
local ok, err = pcall(d.init, { backend = "nccl", timeout = 60 })
check(ok, "init{backend = \"nccl\"}: " .. tostring(err or "started"))
if not ok then print(string.format("%d ok, %d failed", nok, nfail)); os.exit(1) end
check(d.backend() == "nccl" and d.world_size() == 1 and d.rank() == 0,
  string.format("backend %s, rank %d of %d", d.backend(), d.rank(), d.world_size()))

for _, dt in ipairs({ "float32", "float64", "int32", "int64" }) do
  local v = { 1, -2, 3, 7 }
  local x = rn.tensor(v, { dtype = dt }):cuda()
  local r1 = pcall(d.allreduce, x, "sum")
  check(r1 and x.device == "cuda" and same(x:cpu():totable(), v), "allreduce sum " .. dt .. " on cuda: " .. tostring(r1))
  local r2 = pcall(d.allreduce, x, "max")
  check(r2 and same(x:cpu():totable(), v), "allreduce max " .. dt)
  local r3 = pcall(d.broadcast, x, 0)
  check(r3 and same(x:cpu():totable(), v), "broadcast " .. dt)
  local r4, g = pcall(d.all_gather, x)
  check(r4 and g.device == "cuda" and same(g:size(), { 1, 4 }) and same(g:reshape({ -1 }):cpu():totable(), v),
    "all_gather " .. dt .. ": " .. (r4 and table.concat(g:size(), "x") or tostring(g)))
end
local big = rn.randn({ 1 << 20 }):cuda()
local want = big:cpu()
d.allreduce(big, "mean")
check((big:cpu() - want):abs():max():item() == 0, "allreduce mean of 1M floats: unchanged")
local nc = rn.randn({ 6, 5 }):cuda():t() -- a non-contiguous view
local wnc = nc:cpu()
d.allreduce(nc, "sum")
check((nc:cpu() - wnc):abs():max():item() == 0, "allreduce of a transposed view")
d.broadcast(nc, 0)
check((nc:cpu() - wnc):abs():max():item() == 0, "broadcast of a transposed view")
local okg, gg = pcall(d.all_gather, nc)
check(okg and (gg:reshape({5, 6}):cpu() - wnc):abs():max():item() == 0,
  "all_gather of a transposed view: " .. (okg and table.concat(gg:size(), "x") or tostring(gg)))
check(not pcall(d.broadcast, rn.ones(2):cuda(), 1), "broadcast from root 1 of a world of 1 is refused")
d.finalize()

-- training: fit{distributed = true} over NCCL vs the plain GPU run
local tmp = os.tmpname()
local function train(env, out)
  local p = io.popen(env .. " RN_TEST_DIST_DEVICE=cuda OMP_NUM_THREADS=1 " .. BIN .. " tests/dist/equiv.lua conv " ..
    out .. " 2>&1; echo rc=$?")
  local o = p:read("a")
  p:close()
  io.write(o)
  return tonumber(o:match("rc=(%d+)%s*$"))
end
local rc1 = train("", tmp .. ".plain")
local rc2 = train("RN_TEST_DIST_SOLO=1 RN_TEST_DIST_BACKEND=nccl", tmp .. ".nccl")
check(rc1 == 0 and rc2 == 0, string.format("equiv.lua conv on cuda: plain rc %s, nccl rc %s", rc1, rc2))
if rc1 == 0 and rc2 == 0 then
  local a = rn.checkpoint.load(tmp .. ".plain").tensors
  local b = rn.checkpoint.load(tmp .. ".nccl.0").tensors
  local n, worst = 0, 0
  for k, t in pairs(a) do
    n = n + 1
    worst = math.max(worst, b[k] and (t - b[k]):abs():max():item() or math.huge)
  end
  check(n > 0 and worst == 0, string.format("fit over NCCL (world 1) = plain GPU run: %d tensors, max |diff| %g", n, worst))
end
os.remove(tmp); os.remove(tmp .. ".plain"); os.remove(tmp .. ".nccl.0")
print(string.format("%d ok, %d failed", nok, nfail))
os.exit(nfail == 0 and 0 or 1)
