-- test_fuzz_corpus.lua - replays the committed fuzz corpora
-- (tests/fuzz/corpus/<target>/: seeds and the inputs of past findings)
-- through the Lua-facing readers, so every suite run (and make test-asan)
-- re-checks them: each file loads or raises a clean Lua error, never crashes.
-- The regression inputs must raise (see doc/reliability.md).
local T = require "t"
local rn = require "rn"

local root = "tests/fuzz/corpus"

local function files(target)
  local out = {}
  local p = io.popen("ls " .. root .. "/" .. target .. " 2>/dev/null")
  for name in p:lines() do out[#out + 1] = name end
  p:close()
  return out
end

local read = require("files").read

local function replay(target, fn)
  local list = files(target)
  if #list == 0 then T.skip("no corpus for " .. target) end
  local loaded = 0
  for _, name in ipairs(list) do
    local ok, err = pcall(fn, root .. "/" .. target .. "/" .. name)
    if ok then loaded = loaded + 1
    else
      T.truthy(type(err) == "string" and #err > 0, target .. "/" .. name .. ": error without a message")
    end
    if name:find("^regress") then T.truthy(not ok, target .. "/" .. name .. " must be refused") end
  end
  return loaded
end

T.test("checkpoint corpus", function()
  T.truthy(replay("ckpt", rn.load_checkpoint) > 0)
end)

T.test("safetensors corpus", function()
  T.truthy(replay("safetensors", rn.load_safetensors) > 0)
end)

T.test("IDX corpus (plain and gzip)", function()
  T.truthy(replay("idx", function(p) return rn.read_idx(p) end) > 0)
end)

T.test("CIFAR-10 corpus (.bin and tar.gz; first byte picks the mode)", function()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local n = replay("cifar", function(p)
    local bytes = read(p)
    local mode = bytes:byte(1)
    local file = dir .. "/" .. ((mode & 1) == 1 and "data.bin" or "cifar.tar.gz")
    local f = assert(io.open(file, "wb"))
    f:write(bytes:sub(2))
    f:close()
    local ok, a, b = pcall(rn.read_cifar10, file, {split = (mode & 2) == 2 and "train" or "test"})
    os.remove(file)
    if not ok then error(a, 0) end
    return a, b
  end)
  os.execute("rm -rf " .. dir)
  T.truthy(n > 0)
end)

T.test("a zero-size IDX dim with huge others is refused (fuzz finding)", function()
  T.raises(function() return rn.read_idx(root .. "/idx/regress_zero_dim_stride_overflow") end,
           "more than 2^40 elements")
  T.raises(function() return rn.zeros({0, 4294967295, 4294967042}) end, "more than 2^40 elements")
  T.eq(rn.zeros({0, 3}):size(), {0, 3})
end)
