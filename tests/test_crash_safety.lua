-- test_crash_safety.lua - a child process saves checkpoints in a loop (each
-- holding one version number in every tensor and in its metadata) and is
-- SIGKILLed after a random 0.1 to 0.35 s (0.2 to 0.45 s under RN_TEST_LIGHT,
-- which sanitizer runs use), 20 times (8 under RN_TEST_LIGHT). After each
-- kill the path must hold a whole checkpoint: it loads, every value equals
-- the version its metadata names, and versions never go back. Temp files a
-- kill leaves beside the path ("<path>.tmp.<pid>") are counted (they show
-- kills that landed inside a save) and removed.
local T = require "t"
local rn = require "rn"
local ckpt = require "rn.checkpoint"

local bin = os.getenv("RNLUA_BIN") or "./rnlua"

local function tensors(v)
  return {w = rn.full({512, 512}, v), b = rn.full({1000}, v), step = rn.full({1}, v, {dtype = "int64"})}
end

local function check_whole(path)
  local ok, c = pcall(ckpt.load, path)
  T.truthy(ok, "the checkpoint does not load after a kill: " .. tostring(c))
  local v = c.meta.version
  T.truthy(type(v) == "number", "no version in the metadata")
  for name, t in pairs(c.tensors) do
    T.eq(t:min():item(), v, name .. " min")
    T.eq(t:max():item(), v, name .. " max")
  end
  T.eq(c.tensors.w:size(), {512, 512})
  return v
end

T.test("SIGKILL while saving leaves a whole old or new checkpoint", function()
  if os.execute("command -v kill >/dev/null && command -v sleep >/dev/null") ~= true then
    T.skip("no kill/sleep commands")
  end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local path = dir .. "/model.ckpt"
  ckpt.save(path, {tensors = tensors(0), meta = {version = 0}})
  local child = dir .. "/child.lua"
  local f = assert(io.open(child, "w"))
  f:write(string.format([[
local rn = require "rn"
local ckpt = require "rn.checkpoint"
local path, v = %q, tonumber(arg[1])
while true do
  v = v + 1
  ckpt.save(path, {tensors = {w = rn.full({512, 512}, v), b = rn.full({1000}, v),
                              step = rn.full({1}, v, {dtype = "int64"})}, meta = {version = v}})
end
]], path))
  f:close()
  local kills = os.getenv("RN_TEST_LIGHT") and 8 or 20
  local last, leftovers, advanced = 0, 0, 0
  math.randomseed(os.time())
  for i = 1, kills do
    local delay = (os.getenv("RN_TEST_LIGHT") and 0.2 or 0.1) + math.random() * 0.25
    local cmd = string.format("%s %s %d >/dev/null 2>&1 & pid=$!; sleep %.3f; kill -9 $pid; wait $pid 2>/dev/null; exit 0",
                              bin, child, last, delay)
    assert(os.execute(cmd))
    local v = check_whole(path)
    T.truthy(v >= last, string.format("version went back from %d to %d", last, v))
    if v > last then advanced = advanced + 1 end
    last = v
    local p = io.popen("ls " .. dir .. " 2>/dev/null")
    for name in p:lines() do
      if name:find("^model%.ckpt%.tmp") then leftovers = leftovers + 1 end
    end
    p:close()
    -- the next save removes the killed child's temp file (stale at once here)
    local q = io.popen(string.format("RN_ATOMIC_STALE_SECONDS=0 %s -e %q 2>&1", bin, string.format(
      "local rn = require 'rn'; require('rn.checkpoint').save(%q, {tensors = {w = rn.full({512, 512}, %d), " ..
      "b = rn.full({1000}, %d), step = rn.full({1}, %d, {dtype = 'int64'})}, meta = {version = %d}})",
      path, last, last, last, last)))
    local out = q:read("a")
    T.truthy(q:close(), "the cleaning save failed: " .. out)
    p = io.popen("ls " .. dir .. " 2>/dev/null")
    for name in p:lines() do
      T.truthy(not name:find("^model%.ckpt%.tmp"), "a stale temp file is left after the next save: " .. name)
    end
    p:close()
  end
  if os.getenv("RN_TEST_VERBOSE") then
    print(string.format("  [crash safety: %d kills, %d saves done, %d kills inside a save]", kills, last, leftovers))
  end
  T.truthy(advanced > 0, "the child never completed a save; the test proves nothing")
  os.execute("rm -rf " .. dir)
end)

T.test("a save removes stale temp files of dead processes only", function()
  local files = require "files"
  local dir = files.tmpdir()
  local path = dir .. "/m.ckpt"
  local p = io.popen("sh -c 'echo $$'")
  local dead = p:read("l")
  p:close()
  local p2 = io.popen("echo $PPID")
  local alive = p2:read("l") -- the shell's parent: this rnlua process, alive
  p2:close()
  local function save(env)
    local q = io.popen(string.format("%s %s -e %q 2>&1", env or "", bin,
      string.format("require('rn.checkpoint').save(%q, {tensors = {w = require('rn').ones({2})}})", path)))
    local out = q:read("a")
    T.truthy(q:close(), out)
  end
  files.write(path .. ".tmp." .. dead, "x")
  files.write(path .. ".tmp." .. alive, "x")
  files.write(path .. ".tmp.notapid", "x")
  save() -- default: 60 s; the dead process's file is too fresh to judge
  T.truthy(files.try_read(path .. ".tmp." .. dead), "a fresh temp file was removed")
  save("RN_ATOMIC_STALE_SECONDS=0")
  T.eq(files.try_read(path .. ".tmp." .. dead), nil, "the dead process's temp file stays")
  T.truthy(files.try_read(path .. ".tmp." .. alive), "a live process's temp file was removed")
  T.truthy(files.try_read(path .. ".tmp.notapid"), "a file that is not a temp of ours was removed")
  files.rmrf(dir)
end)
