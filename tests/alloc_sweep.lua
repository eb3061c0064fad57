-- alloc_sweep.lua - allocation-failure sweep (make test-allocfail). With a
-- binary built with -DRN_ALLOC_FAIL, RN_FAIL_ALLOC_AT=n makes the n-th CPU
-- tensor allocation fail, and RN_FAIL_LUA_ALLOC_AT=n the n-th allocation of
-- Lua's allocator (counted from the opening of rn.core). This driver runs a short training job (3 steps of
-- tests/lib/tiny_train.lua, saving the weights and loading them back) in a
-- child process for n = 1..N and checks that each run
--   - fails with a Lua error saying "out of memory" (Lua's own: "not enough
--     memory") and exit code 1,
--   - keeps working: the same job run again in that process succeeds,
--   - shows no sanitizer report (ASan, UBSan, LeakSanitizer) and no crash;
-- and that n past the job's allocation count succeeds (exit code 0).
-- N is found by search (success iff n > count). Runs every n when the count
-- is at most RN_SWEEP_MAX (default 400; RN_SWEEP_LUA_MAX, default 300, for
-- Lua's allocator), else the first and last 50 and an even sample between.
-- RN_SWEEP_ONLY=tensor|lua runs one kind. Run from the repository root:
--   RNLUA_BIN=build-allocfail/rnlua build-allocfail/rnlua tests/alloc_sweep.lua
package.path = "tests/lib/?.lua;" .. package.path

if arg[1] == "--child" then
  local path = arg[2]
  local function job()
    local tt = require "tiny_train"
    local _, m = tt.run(1, 3, path)
    require("rn.fit").load_weights(m, path) -- the checkpoint reader too
  end
  local ok, err = pcall(job)
  if ok then os.exit(0) end -- allocates nothing after the job
  io.stdout:write("first run: ", tostring(err), "\n")
  local core = require "rn.core"
  if not core.is_grad_enabled() then
    io.stdout:write("GRAD MODE LEFT OFF by the failure\n")
    core.set_grad_enabled(true)
  end
  -- A require that failed half way leaves its module half made: lua/rn/init.lua
  -- registers package.loaded.rn before it finishes (see doc/reliability.md),
  -- so the modules are loaded afresh; the C state must still be sound.
  for name in pairs(package.loaded) do
    if (name == "rn" or name:find("^rn%.") or name == "tiny_train") and name ~= "rn.core" then
      package.loaded[name] = nil
    end
  end
  local ok2, err2 = pcall(job) -- the n-th allocation is past: must work now
  if not ok2 then io.stdout:write("RECOVERY FAILED: ", tostring(err2), "\n"); os.exit(2) end
  io.stdout:write("recovered\n")
  error(err, 0) -- exits 1 with the message, as any script error
end

local bin = os.getenv("RNLUA_BIN") or "./rnlua"
local script = arg[0]
local tmp = os.tmpname()

-- kinds of allocation: the variable that picks the failing one, the error
-- message expected, and the most failure points to try
local kinds = {
  {name = "tensor", var = "RN_FAIL_ALLOC_AT", msg = {"out of memory"},
   max = tonumber(os.getenv("RN_SWEEP_MAX") or "400")},
  {name = "lua", var = "RN_FAIL_LUA_ALLOC_AT", msg = {"not enough memory", "out of memory"},
   max = tonumber(os.getenv("RN_SWEEP_LUA_MAX") or "300")},
}

local function run(kind, n)
  local cmd = string.format("OMP_NUM_THREADS=1 %s=%d %s %s --child %s 2>&1", kind.var, n, bin, script, tmp)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

-- is the sweep possible at all?
if run(kinds[1], 1) == 0 then
  print("alloc_sweep: SKIP: " .. bin .. " was not built with -DRN_ALLOC_FAIL (make test-allocfail)")
  os.remove(tmp)
  os.exit(0)
end

-- the largest n that fails (success iff n > count)
local function count_of(kind)
  local lo, hi = 1, 2
  while run(kind, hi) ~= 0 do
    lo, hi = hi, hi * 2
    if hi > 1e8 then error("alloc_sweep: no success below " .. hi) end
  end
  while hi - lo > 1 do
    local mid = (lo + hi) // 2
    if run(kind, mid) == 0 then hi = mid else lo = mid end
  end
  return lo
end

local function points(count, max_runs)
  local ns = {}
  if count <= max_runs then
    for n = 1, count do ns[#ns + 1] = n end
    return ns
  end
  local seen = {}
  local function add(n) if n >= 1 and n <= count and not seen[n] then seen[n] = true; ns[#ns + 1] = n end end
  for n = 1, 50 do add(n) end
  for n = count - 49, count do add(n) end
  local step = (count - 100) / (max_runs - 100)
  for i = 1, max_runs - 100 do add(50 + math.floor(i * step)) end
  table.sort(ns)
  return ns
end

local bad = 0
local function check(kind, n, c, o)
  local why
  local said = false
  for _, m in ipairs(kind.msg) do if o:find(m, 1, true) then said = true end end
  if o:find("Sanitizer") or o:find("runtime error") then why = "sanitizer report"
  elseif c ~= 1 then why = "exit code " .. tostring(c)
  elseif not said then why = "no '" .. kind.msg[1] .. "' in the error"
  elseif o:find("GRAD MODE LEFT OFF", 1, true) then why = "grad mode left off"
  elseif not o:find("recovered\n", 1, true) then why = "did not keep working"
  end
  if why then
    bad = bad + 1
    if bad <= 10 then
      io.write(string.format("FAIL %s n=%d: %s\n  %s\n", kind.name, n, why, (o:sub(1, 3000):gsub("\n", "\n  "))))
    end
  end
end

local only = os.getenv("RN_SWEEP_ONLY") -- "tensor" or "lua"
if only == "" then only = nil end
for _, kind in ipairs(kinds) do
  if only and only ~= kind.name then goto next_kind end
  local t0 = os.time()
  local count = count_of(kind)
  local ns = points(count, kind.max)
  for _, n in ipairs(ns) do
    local c, o = run(kind, n)
    check(kind, n, c, o)
  end
  if run(kind, count + 1) ~= 0 then bad = bad + 1; print("FAIL " .. kind.name .. ": n past the count did not succeed") end
  io.write(string.format("alloc_sweep: %s allocator: %d allocations in the job, %d failure points checked (%ds)\n",
                         kind.name, count, #ns, os.time() - t0))
  ::next_kind::
end
os.remove(tmp)
io.write(string.format("alloc_sweep: %d bad\n", bad))
os.exit(bad == 0 and 0 or 1)
