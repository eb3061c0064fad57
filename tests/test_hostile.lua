-- test_hostile.lua - the holes a hostile-input pass found (issue 16), each
-- closed: in-place changes caught by the tape's version counters, paths that
-- are not regular files refused without blocking, the CIFAR archive's gzip
-- trailer always verified, absolute caps on what a file header may claim,
-- overflow-free range checks, the element cap on every view, file errors that
-- name the file and entry, and the smaller misuses (x[1.5], view of a
-- non-contiguous tensor, empty tar headers, empty safetensors names).
local T = require "t"
local rn = require "rn"
local files = require "files"
local layers = require "rn.layers"
local model_mod = require "rn.model"
local optim = require "rn.optim"
local ckpt = require "rn.checkpoint"

-- a small compiled model over 4x4x1 images (batch norm and all), and data
local function small_model(opt)
  layers.reset_names()
  local inp = layers.Input({4, 4, 1})
  local x = layers.Conv2D(3, 3, {padding = "same"})(inp)
  x = layers.ReLU()(layers.BatchNormalization()(x))
  local m = model_mod.Model(inp, layers.Dense(2)(layers.Flatten()(x)))
  m:compile{optimizer = opt or optim.SGD{lr = 0.1}, metrics = {"accuracy"},
            loss = rn.losses.sparse_categorical_crossentropy{from_logits = true}}
  return m
end

local function small_loader()
  rn.manual_seed(11)
  local x = rn.rand({16, 4, 4, 1}, {high = 255}):byte()
  local y = rn.tensor({0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0}, {dtype = "int64"})
  return rn.data.Loader(x, y, {batch_size = 4, seed = 1, augment = false, mean = {0.5},
                               std = {0.3}, workers = 1})
end

local BIN = os.getenv("RNLUA_BIN") or "./rnlua"
local INPLACE = "modified by an in%-place operation"

-- ---- 1. version counters --------------------------------------------------

T.test("backward refuses a saved tensor changed in place (mul_, add_ on an intermediate)", function()
  local w = rn.tensor({1, 2, 3}, {requires_grad = true})
  local y = w * 2
  local l = (y * y):sum()
  -- scaling a recorded result changes its derivative: refused at once
  T.raises(function() y:mul_(0) end, "scale_: in%-place change of a tensor that autograd recorded")
  -- adding a constant keeps the derivative, but changes what mul saved
  y:add_(1)
  T.raises(function() l:backward() end, "backward of mul: .*" .. INPLACE)
  T.eq(w.grad, nil)
  -- unchanged: the gradient is right
  local y2 = w * 2
  ;(y2 * y2):sum():backward()
  T.eq(w.grad:totable(), {8, 16, 24})
end)

T.test("backward refuses a leaf changed in place under no_grad (fill_)", function()
  local w = rn.tensor({1, 2, 3}, {requires_grad = true})
  local l = (w * w):sum()
  rn.no_grad(function() w:fill_(0) end)
  T.raises(function() l:backward() end, INPLACE)
end)

T.test("every in-place entry point bumps the version: copy_, zero_, add_, x[i]=", function()
  local changes = {
    copy_ = function(t) t:copy_(rn.ones(3)) end,
    zero_ = function(t) t:zero_() end,
    add_ = function(t) t:add_(1) end,
    add_tensor = function(t) t:add_(rn.ones(3), 2) end,
    newindex = function(t) t[2] = 7 end,
    view = function(t) t:narrow(1, 1, 1):fill_(5) end, -- through a view of the storage
  }
  for name, change in pairs(changes) do
    local w = rn.tensor({1, 2, 3}, {requires_grad = true})
    local e = w:exp() -- saves its output
    local l = e:sum() * 1 + (w * e):sum()
    rn.no_grad(function() change(e) end)
    T.raises(function() l:backward() end, INPLACE, false)
    local _ = name
  end
end)

T.test("an optimizer step between training steps does not trip the counters", function()
  rn.manual_seed(7)
  for _, opt in ipairs({optim.Adam{lr = 0.01}, optim.SGD{lr = 0.1, momentum = 0.9}}) do
    local m = small_model(opt)
    local h = m:fit(small_loader(), {epochs = 2, verbose = false})
    T.eq(#h, 2)
    T.truthy(h[2].loss == h[2].loss and h[2].loss < math.huge, "finite loss")
  end
end)

-- ---- 2. regular files only -----------------------------------------------

-- runs code in a fresh rnlua under `timeout`, so that a hang fails the test
-- instead of the suite; returns the output
local function run_capped(code)
  local p = io.popen("timeout 20 " .. BIN .. " -e " .. files.q(code) .. " 2>&1; echo rc=$?")
  local out = p:read("a")
  p:close()
  return out
end

T.test("a FIFO is refused, never read (every loader)", function()
  local dir = files.tmpdir()
  local fifo = dir .. "/pipe"
  if not os.execute("mkfifo " .. files.q(fifo) .. " 2>/dev/null") then T.skip("no mkfifo") end
  local calls = {
    "rn.load_checkpoint(P)", "rn.load_safetensors(P)", "rn.read_idx(P)", "rn.read_cifar10(P)",
    "rn.read_cifar10(P .. '.bin')",
  }
  os.execute("ln -s pipe " .. files.q(fifo .. ".bin"))
  for _, c in ipairs(calls) do
    local out = run_capped("local rn = require 'rn'; local P = " .. string.format("%q", fifo) ..
                           "; local ok, e = pcall(function() return " .. c .. " end); " ..
                           "print(ok, e)")
    T.truthy(out:find("false", 1, true) and out:find("rc=0", 1, true) and
             (out:find("FIFO", 1, true) or out:find("not a regular file", 1, true)),
             c .. ": " .. out)
  end
  files.rmrf(dir)
end)

T.test("fit{resume=true} with a FIFO as the save path does not block", function()
  T.eq(rn.path_kind("tests"), "folder")
  T.eq(rn.path_kind("tests/run.lua"), "file")
  T.eq(rn.path_kind("tests/no such file"), nil)
  local dir = files.tmpdir()
  if not os.execute("mkfifo " .. files.q(dir .. "/p") .. " 2>/dev/null") then T.skip("no mkfifo") end
  T.eq(rn.path_kind(dir .. "/p"), "other")
  files.rmrf(dir)
end)

-- ---- 3. the CIFAR archive's trailer ----------------------------------------

local gzip_stored = dofile("tests/lib/gzip_stored.lua").encode

local function record(label)
  local t = {string.char(label)}
  for i = 1, 3072 do t[#t + 1] = string.char((i * 7 + label) % 256) end
  return table.concat(t)
end

-- a ustar archive holding cifar-10-batches-bin/test_batch.bin (2 records)
local function test_tar(dir)
  os.execute("mkdir -p " .. files.q(dir .. "/src/cifar-10-batches-bin"))
  files.write(dir .. "/src/cifar-10-batches-bin/test_batch.bin", record(4) .. record(9))
  assert(os.execute("tar --format=ustar --owner=0 --group=0 --numeric-owner --mtime=@0 -C " ..
                    files.q(dir .. "/src") .. " -cf " .. files.q(dir .. "/t.tar") ..
                    " cifar-10-batches-bin/test_batch.bin"))
  return files.read(dir .. "/t.tar")
end

T.test("CIFAR tar.gz: flipped pixel, flipped CRC32 and a cut archive are refused", function()
  local dir = files.tmpdir()
  local tar = test_tar(dir)
  local gz = gzip_stored(tar)
  local p = dir .. "/c.tar.gz"
  files.write(p, gz)
  local x, y = rn.read_cifar10(p, {split = "test"})
  T.eq(y:totable(), {4, 9})
  -- a pixel byte of the second record (stored: the archive's bytes as they are)
  local at = gz:find(record(9):sub(100, 140), 1, true)
  T.truthy(at, "pixel bytes found in the stored archive")
  local function flip(s, i) return s:sub(1, i - 1) .. string.char(s:byte(i) ~ 1) .. s:sub(i + 1) end
  files.write(p, flip(gz, at + 5))
  T.raises(function() rn.read_cifar10(p, {split = "test"}) end, "c.tar.gz.*incorrect data check")
  files.write(p, flip(gz, #gz - 6)) -- the stored CRC32
  T.raises(function() rn.read_cifar10(p, {split = "test"}) end, "incorrect data check")
  for _, cut in ipairs({3, 8, 600}) do
    files.write(p, gz:sub(1, #gz - cut))
    T.raises(function() rn.read_cifar10(p, {split = "test"}) end, "c.tar.gz.*truncated")
  end
  -- a plain .tar cut inside its end-of-archive blocks' member data
  files.write(dir .. "/c.tar", tar:sub(1, 512 + 2 * 3073 - 10))
  T.raises(function() rn.read_cifar10(dir .. "/c.tar", {split = "test"}) end, "truncated")
  local _ = x
  files.rmrf(dir)
end)

T.test("a stream of empty tar headers stops at the member cap", function()
  local dir = files.tmpdir()
  -- a valid header of an empty file named "x", repeated
  local h = ("x" .. ("\0"):rep(99) .. "0000644\0" .. "0000000\0" .. "0000000\0" ..
             "00000000000\0" .. "00000000000\0" .. "        " .. "0" .. ("\0"):rep(100) ..
             "ustar\0" .. "00" .. ("\0"):rep(247))
  assert(#h == 512)
  local sum = 0
  for i = 1, 512 do sum = sum + h:byte(i) end
  h = h:sub(1, 148) .. string.format("%06o\0 ", sum) .. h:sub(157)
  local body = h:rep(100001)
  local p = dir .. "/many.tar"
  files.write(p, body)
  T.raises(function() rn.read_cifar10(p) end, "more than 100000 members")
  files.rmrf(dir)
end)

-- ---- 4. absolute caps -------------------------------------------------------

-- a gzip IDX whose header claims 60000x256x256 (3.9 GB) with 4.3 MB of stored
-- blocks after it: past the ratio check, but far from the bytes it claims
local function big_claim_idx(path)
  local hdr = string.pack(">I4I4I4I4", 0x803, 60000, 256, 256)
  local out = {"\31\139\8\0\0\0\0\0\0\255"}
  local blk = ("\7"):rep(65535)
  out[2] = string.pack("<BI2I2", 0, #hdr, (~#hdr) & 0xFFFF) .. hdr
  for _ = 1, 66 do out[#out + 1] = string.pack("<BI2I2", 0, 65535, 0) .. blk end
  files.write(path, table.concat(out)) -- cut: no final block, no trailer
end

T.test("IDX: a header claim above rn.io_limit is refused before any allocation", function()
  local dir = files.tmpdir()
  local p = dir .. "/big.gz"
  big_claim_idx(p)
  T.raises(function() rn.read_idx(p) end,
           "big.gz: the header %(60000 images of 256x256%) claims 3932160000 bytes, more than " ..
           "the 2147483648%-byte limit.*rn.io_limit")
  -- a lower limit applies to small files as well
  local old = rn.io_limit(5)
  T.eq(old, 2147483648)
  T.raises(function() rn.read_idx("tests/fuzz/corpus/idx/labels.gz") end, "claims 6 bytes")
  T.eq(rn.io_limit(old), 5)
  T.eq(rn.read_idx("tests/fuzz/corpus/idx/labels.gz"):totable(), {0, 1, 2, 9, 3, 7})
  T.raises(function() rn.io_limit(0) end, "io_limit: bytes 0 must be >= 1")
  T.raises(function() rn.io_limit(1.5) end, "must be an integer")
  files.rmrf(dir)
end)

T.test("IDX: with the limit raised, buffers grow with the data (runs in 1.5 GB)", function()
  local dir = files.tmpdir()
  local p = dir .. "/big.gz"
  big_claim_idx(p)
  -- 1.5 GB of address space: allocating the claimed 3.9 GB up front would fail
  local old = rn.io_limit(8 << 30)
  T.raises(function() rn.read_idx(p) end, "big.gz: gzip data truncated")
  rn.io_limit(old)
  local probe = io.popen("(ulimit -v 1500000 && " .. BIN .. " -e 'print(1)') 2>&1")
  local can = probe:read("a") == "1\n"
  probe:close()
  if not can then T.skip("cannot run rnlua in 1.5 GB of address space (sanitizer build?)") end
  local code = "local rn = require 'rn'; rn.io_limit(8 << 30); " ..
               "print(pcall(rn.read_idx, " .. string.format("%q", p) .. "))"
  local sh = io.popen("(ulimit -v 1500000 && timeout 20 " .. BIN .. " -e " .. files.q(code) ..
                      ") 2>&1")
  local res = sh:read("a")
  sh:close()
  T.truthy(res:find("gzip data truncated", 1, true), res)
  files.rmrf(dir)
end)

-- ---- 5. overflow-free range checks -----------------------------------------

T.test("narrow with a length near maxinteger is refused, not wrapped", function()
  T.raises(function() rn.zeros(5):narrow(1, 2, math.maxinteger) end,
           "narrow: start 2 length 9223372036854775807 outside dim 1 of size 5")
  T.raises(function() rn.zeros(5):narrow(1, math.maxinteger, 1) end, "outside dim 1")
  T.raises(function() rn.zeros(5):narrow(1, math.mininteger, 1) end, "outside dim 1")
  T.eq(rn.arange(5):narrow(1, 2, 4):totable(), {1, 2, 3, 4})
  T.raises(function() rn.zeros(5):select(1, math.mininteger) end, "outside 1..5")
  T.raises(function() return rn.zeros(5)[math.mininteger] end, "outside 1..5")
end)

-- ---- 6. the element cap on views ---------------------------------------------

T.test("expand (and every view) keeps the 2^40 element cap", function()
  T.raises(function() rn.zeros(1):expand(1 << 41) end, "expand: shape has more than 2%^40")
  T.raises(function() rn.zeros(1):expand({1 << 20, 1 << 21}) end, "more than 2%^40")
  T.raises(function() rn.zeros(1):expand(-1) end, "expand: size 1 is %-1")
  T.eq(rn.ones(1):expand(3):totable(), {1, 1, 1})
end)

-- ---- 7. messages that name the file and entry -------------------------------

T.test("checkpoint and safetensors: a shape past the cap names file and entry", function()
  local dir = files.tmpdir()
  -- a zero-size entry saved, then its shape rewritten to (0, 2^21, 2^21)
  local ck = dir .. "/z.ckpt"
  rn.save_checkpoint(ck, {zz = rn.zeros({0, 2, 2})})
  local b = files.read(ck)
  local at = b:find(string.pack("<i8i8i8", 0, 2, 2), 1, true)
  T.truthy(at, "shape found in the entry table")
  b = b:sub(1, at - 1) .. string.pack("<i8i8i8", 0, 1 << 21, 1 << 21) .. b:sub(at + 24)
  files.write(ck, b)
  T.raises(function() rn.load_checkpoint(ck) end, "z.ckpt: entry 1 'zz': shape has more than 2%^40")
  local st = dir .. "/z.safetensors"
  local hdr = '{"zz":{"dtype":"F32","shape":[0,2097152,2097152],"data_offsets":[0,0]}}'
  files.write(st, string.pack("<I8", #hdr) .. hdr)
  T.raises(function() rn.load_safetensors(st) end,
           "z.safetensors: tensor 'zz': shape has more than 2%^40")
  files.rmrf(dir)
end)

T.test("a safetensors tensor named \"\" is refused, as the writer refuses it", function()
  local dir = files.tmpdir()
  local st = dir .. "/e.safetensors"
  local hdr = '{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
  files.write(st, string.pack("<I8", #hdr) .. hdr .. string.pack("<f", 1))
  T.raises(function() rn.load_safetensors(st) end, "e.safetensors: a tensor has an empty name")
  T.raises(function() rn.save_safetensors(st, {[""] = rn.zeros(1)}) end, "name")
  files.rmrf(dir)
end)

T.test("fit{resume=} with hostile metadata names the file and the field", function()
  rn.manual_seed(3)
  local dir = files.tmpdir()
  local model = small_model
  local loader = small_loader()
  local p = dir .. "/state.ckpt"
  model():fit(loader, {epochs = 1, save = p, verbose = false})
  local c = ckpt.load(p)
  local cases = {
    {"epoch", "x", "field 'epoch' must be an integer >= 1, got string"},
    {"batch", -1, "field 'batch' must be an integer >= 0, got %-1"},
    {"history", {{loss = "a"}}, "field 'history%[1%]%.loss' must be a number, got string"},
    {"sums", 3, "field 'sums' must be a table of numbers, got 3"},
    {"rng", {1, 2}, "field 'rng%[3%]' must be an integer, got nil"},
    {"done", "yes", "field 'done' must be a boolean"},
  }
  for _, case in ipairs(cases) do
    local meta = {}
    for k, v in pairs(c.meta) do meta[k] = v end
    meta[case[1]] = case[2]
    local q = dir .. "/bad.ckpt"
    ckpt.save(q, {tensors = c.tensors, meta = meta})
    T.raises(function() model():fit(loader, {epochs = 2, resume = q, verbose = false}) end,
             "resume: .*bad%.ckpt: " .. case[3])
  end
  files.rmrf(dir)
end)

T.test("weights: float values convert to the weight's dtype, other dtypes are refused", function()
  local m = small_model()
  local sd = m:state_dict()
  local w64 = {}
  for k, v in pairs(sd) do w64[k] = (v + 0.25):double() end
  m:load_state_dict(w64)
  for k, v in pairs(m:state_dict()) do
    T.eq(v.dtype, "float32")
    T.near(v, w64[k]:float())
  end
  local wi = {}
  for k, v in pairs(sd) do wi[k] = v:to("int64") end
  T.raises(function() m:load_state_dict(wi) end, "is int64 but the model's weight is float32")
end)

-- ---- 8. smaller -------------------------------------------------------------

T.test("x[1.5] is an error; x[2.0] is x[2]", function()
  T.raises(function() return rn.arange(3)[1.5] end, "index: 1.5 is not an integer")
  T.eq(rn.arange(3)[2.0], 1)
  T.raises(function() return rn.arange(3)[true] end, "cannot index with a boolean")
  T.eq(rn.arange(3).nosuchfield, nil)
end)

T.test("view of a non-contiguous tensor is refused; reshape copies", function()
  local t = rn.arange(6):reshape(2, 3)
  T.raises(function() return t:t():view(6) end, "view: the tensor %(3,2%) is not contiguous.*reshape")
  T.eq(t:t():reshape(6):totable(), {0, 3, 1, 4, 2, 5})
  local v = t:view(3, 2)
  v[1][1] = 9 -- a view shares storage
  T.eq(t[1][1], 9)
end)
