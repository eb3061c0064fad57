-- run.lua - runs the test files (all tests/test_*.lua, or those named as
-- arguments) and ends with the line "N passed, N failed, N skipped".
-- Run from the repository root: ./rnlua tests/run.lua [files...]
-- Environment: RN_TEST_VERBOSE=1 prints a line per passed test with its wall
-- time (=2 also a line as each test starts, so a hang shows where it is);
-- RN_TEST_MATCH / RN_TEST_EXCLUDE (Lua patterns on the test name) run only
-- the tests that match / do not match.
-- After every test, passed or not, the global state a test may change (conv
-- implementation, precision policy, thread count, grad mode) is put back to
-- what the suite started with, and a test that passed but left it changed is
-- reported ("LEAK"): a failing test cannot spoil the ones after it.
-- Before every test both random generators (rn.manual_seed and Lua's
-- math.randomseed) are seeded from the test's file and name, so a test
-- that draws without seeding still draws the same values on every run and
-- in any selection of tests; a failure prints that seed.
package.path = "tests/lib/?.lua;" .. package.path
local T = require "t"

local files = {}
for i = 1, #arg do files[#files + 1] = arg[i] end
if #files == 0 then
  local p = io.popen("ls tests/test_*.lua 2>/dev/null")
  for f in p:lines() do files[#files + 1] = f end
  p:close()
end

local load_failed = 0
for _, f in ipairs(files) do
  T.current_file = f
  local chunk, err = loadfile(f, "t")
  local ok = chunk and true
  if chunk then ok, err = pcall(chunk) end
  if not ok then
    io.write(string.format("FAIL %s (loading): %s\n", f, tostring(err)))
    load_failed = load_failed + 1
  end
end

local passed, failed, skipped = 0, load_failed, 0
local verbose = os.getenv("RN_TEST_VERBOSE")
local match, exclude = os.getenv("RN_TEST_MATCH"), os.getenv("RN_TEST_EXCLUDE")
local rn = require "rn"
local clock = rn._clock -- wall time (os.clock is CPU time)
local function global_state()
  return { threads = rn.get_num_threads(), conv = rn.cpu.conv_impl(),
           policy = rn.mixed_precision.global_policy(), grad = rn.is_grad_enabled() }
end
local initial = global_state()
local function seed_of(t) -- a stable 31-bit hash of file and name
  local h = 5381
  for c in (t.file .. ":" .. t.name):gmatch(".") do h = (h * 33 + c:byte()) % 2147483647 end
  return h
end
-- restores the initial state; returns what had changed ("" if nothing)
local function restore_globals()
  local now, changed = global_state(), {}
  for _, k in ipairs({ "threads", "conv", "policy", "grad" }) do
    if now[k] ~= initial[k] then changed[#changed + 1] = k .. " " .. tostring(now[k]) end
  end
  rn.cpu.set_conv_impl("auto")
  if now.policy ~= initial.policy then pcall(rn.mixed_precision.set_global_policy, initial.policy) end
  rn.set_num_threads(initial.threads)
  rn.set_grad_enabled(initial.grad)
  return table.concat(changed, ", ")
end
for _, t in ipairs(T.tests) do
  if (match and not t.name:find(match)) or (exclude and t.name:find(exclude)) then goto continue end
  if verbose == "2" then io.write(string.format("run  %s: %s\n", t.file, t.name)); io.flush() end
  local seed = seed_of(t)
  rn.manual_seed(seed)
  math.randomseed(seed)
  local t0 = clock()
  local ok, err = xpcall(t.fn, function(e)
    if T.is_skip(e) then return e end
    return debug.traceback(tostring(e), 2)
  end)
  collectgarbage()
  local leaked = restore_globals()
  if ok and leaked ~= "" then
    io.write(string.format("LEAK %s: %s: left global state changed (%s)\n", t.file, t.name, leaked))
  end
  if ok then
    passed = passed + 1
    if verbose then io.write(string.format("ok   %s: %s (%.2fs)\n", t.file, t.name, clock() - t0)) end
  elseif T.is_skip(err) then
    skipped = skipped + 1
    io.write(string.format("SKIP %s: %s: %s\n", t.file, t.name, err.msg))
  else
    failed = failed + 1
    io.write(string.format("FAIL %s: %s (seeded %d)\n  %s\n", t.file, t.name, seed,
      (tostring(err):gsub("\n", "\n  "))))
  end
  io.flush()
  ::continue::
end
io.write(string.format("%d passed, %d failed, %d skipped\n", passed, failed, skipped))
os.exit(failed == 0 and 0 or 1, true) -- close the state: sanitizers then see every free
