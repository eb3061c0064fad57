-- run.lua - runs the test files (all tests/test_*.lua, or those named as
-- arguments) and ends with the line "N passed, N failed, N skipped".
-- Run from the repository root: ./rnlua tests/run.lua [files...]
-- Environment: RN_TEST_VERBOSE=1 prints a line per passed test with its wall
-- time (=2 also a line as each test starts, so a hang shows where it is);
-- RN_TEST_MATCH / RN_TEST_EXCLUDE (Lua patterns on the test name) run only
-- the tests that match / do not match.
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
local clock = require("rn")._clock -- wall time (os.clock is CPU time)
for _, t in ipairs(T.tests) do
  if (match and not t.name:find(match)) or (exclude and t.name:find(exclude)) then goto continue end
  if verbose == "2" then io.write(string.format("run  %s: %s\n", t.file, t.name)); io.flush() end
  local t0 = clock()
  local ok, err = xpcall(t.fn, function(e)
    if T.is_skip(e) then return e end
    return debug.traceback(tostring(e), 2)
  end)
  collectgarbage()
  if ok then
    passed = passed + 1
    if verbose then io.write(string.format("ok   %s: %s (%.2fs)\n", t.file, t.name, clock() - t0)) end
  elseif T.is_skip(err) then
    skipped = skipped + 1
    io.write(string.format("SKIP %s: %s: %s\n", t.file, t.name, err.msg))
  else
    failed = failed + 1
    io.write(string.format("FAIL %s: %s\n  %s\n", t.file, t.name, tostring(err):gsub("\n", "\n  ")))
  end
  io.flush()
  ::continue::
end
io.write(string.format("%d passed, %d failed, %d skipped\n", passed, failed, skipped))
os.exit(failed == 0 and 0 or 1, true) -- close the state: sanitizers then see every free
