-- test_determinism.lua - two CPU runs of the same seeded training job
-- (tests/lib/tiny_train.lua, 50 steps, in child processes) save
-- byte-identical checkpoints; another seed gives different bytes (the
-- comparison can fail). Child processes use RNLUA_BIN (default ./rnlua).
--
-- Deterministic mode (rn.set_deterministic, rn.cuda.set_conv_algo): the API
-- round trip and its errors on any host (no GPU needed); on the CPU and,
-- with a device, on CUDA: a conv forward + backward run twice in
-- deterministic mode gives the same bits, and so do two 3-step trainings
-- of a small conv net (weights compared bit for bit). GPU tests skip
-- visibly without a device.
package.path = "tests/lib/?.lua;" .. package.path
local T = require "t"
local rn = require "rn"

local bin = os.getenv("RNLUA_BIN") or "./rnlua"

local read = require("files").read

-- runs the job in a child with the given seed; returns the checkpoint bytes
local function job(seed, env, deterministic)
  local path = os.tmpname()
  local code = string.format(
    "package.path = 'tests/lib/?.lua;' .. package.path; %s require('tiny_train').run(%d, 50, %q)",
    deterministic and "require('rn').set_deterministic(true);" or "", seed, path)
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

T.test("deterministic mode: the same bytes with 1 and with 4 OpenMP threads", function()
  -- oneDNN's filter gradient may depend on the thread count; the mode uses
  -- the im2col kernels, whose results do not
  local a, b = job(11, "OMP_NUM_THREADS=1", true), job(11, "OMP_NUM_THREADS=4", true)
  T.truthy(a == b, "checkpoints differ between thread counts")
end)

-- ---- deterministic mode -------------------------------------------------------------------

local function need_api()
  T.eq(type(rn.set_deterministic), "function", "rn.set_deterministic is registered in every build")
end

-- Runs fn with the mode and overrides restored afterwards, even on failure.
local function isolated(fn)
  need_api()
  local prev = rn.is_deterministic()
  local ok, err = pcall(fn)
  rn.set_deterministic(false)
  rn.cuda.set_conv_algo({ fwd = "auto", bwd_data = "auto", bwd_filter = "auto" })
  rn.set_deterministic(prev)
  if not ok then error(err, 0) end
end

T.test("deterministic mode: set, query, and the previous value returned", function()
  isolated(function()
    T.eq(rn.is_deterministic(), false, "off by default")
    T.eq(rn.set_deterministic(true), false, "previous mode")
    T.eq(rn.is_deterministic(), true)
    T.eq(rn.set_deterministic(true), true)
    T.eq(rn.set_deterministic(false), true)
    T.eq(rn.is_deterministic(), false)
    T.raises(function() rn.set_deterministic("yes") end, "boolean expected")
  end)
end)

T.test("conv algorithm overrides: round trip, partial updates and auto", function()
  isolated(function()
    local a = rn.cuda.conv_algo()
    T.eq(a.fwd, "auto"); T.eq(a.bwd_data, "auto"); T.eq(a.bwd_filter, "auto")
    rn.cuda.set_conv_algo({ fwd = "IMPLICIT_GEMM", bwd_data = "ALGO_1", bwd_filter = "FFT" })
    a = rn.cuda.conv_algo()
    T.eq(a.fwd, "IMPLICIT_GEMM"); T.eq(a.bwd_data, "ALGO_1"); T.eq(a.bwd_filter, "FFT")
    rn.cuda.set_conv_algo({ bwd_filter = "WINOGRAD_NONFUSED" }) -- the others stay
    a = rn.cuda.conv_algo()
    T.eq(a.fwd, "IMPLICIT_GEMM"); T.eq(a.bwd_data, "ALGO_1"); T.eq(a.bwd_filter, "WINOGRAD_NONFUSED")
    rn.cuda.set_conv_algo({ fwd = "auto" })
    T.eq(rn.cuda.conv_algo().fwd, "auto")
    -- deterministic algorithms may be forced in deterministic mode
    rn.set_deterministic(true)
    rn.cuda.set_conv_algo({ bwd_data = "FFT_TILING", bwd_filter = "ALGO_1" })
    T.eq(rn.cuda.conv_algo().bwd_filter, "ALGO_1")
  end)
end)

T.test("conv algorithm overrides: unknown names and keys list the valid ones", function()
  isolated(function()
    local e = T.raises(function() rn.cuda.set_conv_algo({ fwd = "FASTEST" }) end,
      'fwd = "FASTEST" is not a cuDNN fwd algorithm', true)
    T.truthy(e:find("valid: auto, IMPLICIT_GEMM, IMPLICIT_PRECOMP_GEMM, GEMM, DIRECT, FFT, " ..
      "FFT_TILING, WINOGRAD, WINOGRAD_NONFUSED", 1, true), e)
    e = T.raises(function() rn.cuda.set_conv_algo({ bwd_data = "ALGO_3" }) end, "bwd_data", true)
    T.truthy(e:find("ALGO_0, ALGO_1, FFT, FFT_TILING, WINOGRAD, WINOGRAD_NONFUSED", 1, true), e)
    T.raises(function() rn.cuda.set_conv_algo({ backward = "ALGO_1" }) end, "unknown option 'backward'")
    T.raises(function() rn.cuda.set_conv_algo({ fwd = 3 }) end, "must be a string")
    T.raises(function() rn.cuda.set_conv_algo("ALGO_1") end, "table expected")
    -- a failed call changes nothing, not even its valid entries
    T.raises(function() rn.cuda.set_conv_algo({ fwd = "GEMM", bwd_filter = "NOPE" }) end, "NOPE")
    T.eq(rn.cuda.conv_algo().fwd, "auto")
  end)
end)

T.test("deterministic mode refuses non-deterministic cuDNN algorithms, naming them", function()
  isolated(function()
    rn.set_deterministic(true)
    local e = T.raises(function() rn.cuda.set_conv_algo({ bwd_data = "ALGO_0" }) end,
      'bwd_data = "ALGO_0" is a non-deterministic cuDNN algorithm', true)
    T.truthy(e:find("ALGO_1, FFT, FFT_TILING, WINOGRAD, WINOGRAD_NONFUSED", 1, true), e)
    for _, name in ipairs({ "ALGO_0", "ALGO_3" }) do
      e = T.raises(function() rn.cuda.set_conv_algo({ bwd_filter = name }) end,
        'bwd_filter = "' .. name .. '" is a non-deterministic', true)
      T.truthy(e:find("deterministic bwd_filter algorithms: ALGO_1, FFT,", 1, true), e)
    end
    T.eq(rn.cuda.conv_algo().bwd_filter, "auto", "refused: nothing set")
    -- the other way round: the mode cannot be turned on over such an override
    rn.set_deterministic(false)
    rn.cuda.set_conv_algo({ bwd_filter = "ALGO_3" })
    e = T.raises(function() rn.set_deterministic(true) end, 'bwd_filter = "ALGO_3"', true)
    T.truthy(e:find("non-deterministic", 1, true) and e:find("ALGO_1", 1, true), e)
    T.eq(rn.is_deterministic(), false, "the mode stayed off")
    rn.cuda.set_conv_algo({ bwd_filter = "auto" })
    rn.set_deterministic(true)
    T.eq(rn.is_deterministic(), true)
  end)
end)

-- The exact bits of a float tensor (any device), as a string.
local function bits(t)
  local flat = t:contiguous():reshape({ -1 }):cpu():totable()
  local fmt = t.dtype == "float64" and "<d" or "<f"
  local parts = {}
  for i, v in ipairs(flat) do parts[i] = string.pack(fmt, v) end
  return table.concat(parts)
end

local function need_device(dev)
  if dev == "cuda" and not rn.cuda.is_available() then
    T.skip("no CUDA device: " .. tostring(rn.cuda.why_unavailable()))
  end
end

-- conv2d forward + backward (data, filter, bias) on dev: the four results' bits
local function conv_once(dev)
  rn.manual_seed(5)
  local x = rn.randn({ 8, 12, 12, 16 }):to(dev):requires_grad_(true)
  local w = (rn.randn({ 3, 3, 16, 32 }) * 0.1):to(dev):requires_grad_(true)
  local b = rn.randn({ 32 }):to(dev):requires_grad_(true)
  local y = rn.conv2d(x, w, b, { stride = 1, padding = "same" })
  local g = rn.randn({ 8, 12, 12, 32 }):to(dev)
  ;(y * g):sum():backward()
  return { bits(y), bits(x.grad), bits(w.grad), bits(b.grad) }
end

-- a small conv net trained 3 steps on dev from fixed seeds: every weight's bits
local function train3(dev)
  local L = rn.layers
  rn.manual_seed(21)
  if L.reset_names then L.reset_names() end
  local inp = L.Input({ 10, 10, 3 })
  local h = L.Conv2D(8, 3, { padding = "same" })(inp)
  h = L.BatchNormalization()(h)
  h = L.ReLU()(h)
  h = L.Conv2D(12, 3, { strides = 2, padding = "same" })(h)
  h = L.BatchNormalization()(h)
  h = L.ReLU()(h)
  h = L.GlobalAveragePooling2D()(h)
  local m = rn.Model(inp, L.Dense(4, { activation = "softmax" })(h))
  m:to(dev)
  m:compile({ optimizer = rn.optim.SGD(m:parameters(), { lr = 0.05, momentum = 0.9 }),
              loss = "sparse_categorical_crossentropy" })
  rn.manual_seed(22)
  for _ = 1, 3 do
    local x, y = rn.randn({ 16, 10, 10, 3 }), (rn.rand({ 16 }) * 4):long()
    m:train_step(x:to(dev), y:to(dev))
  end
  local out = {}
  for _, wt in ipairs(m:weights()) do out[#out + 1] = wt.name .. "=" .. bits(wt.tensor) end
  return table.concat(out, ";")
end

for _, dev in ipairs({ "cpu", "cuda" }) do
  T.test("deterministic mode: conv2d forward + backward twice, the same bits (" .. dev .. ")", function()
    need_device(dev)
    isolated(function()
      rn.set_deterministic(true)
      local a, b = conv_once(dev), conv_once(dev)
      local what = { "output", "input gradient", "weight gradient", "bias gradient" }
      for i = 1, 4 do T.truthy(a[i] == b[i], what[i] .. " differs between two runs on " .. dev) end
    end)
  end)

  T.test("deterministic mode: two 3-step trainings give identical weights (" .. dev .. ")", function()
    need_device(dev)
    if not (rn.layers and rn.Model and rn.optim) then T.skip("rn.layers / rn.Model not available") end
    isolated(function()
      rn.set_deterministic(true)
      local a, b = train3(dev), train3(dev)
      T.truthy(#a > 100, "weights were compared")
      T.truthy(a == b, "weights differ between two seeded 3-step trainings on " .. dev)
    end)
  end)
end

T.test("deterministic mode with forced deterministic cuDNN algorithms (cuda)", function()
  need_device("cuda")
  isolated(function()
    rn.set_deterministic(true)
    rn.cuda.set_conv_algo({ fwd = "IMPLICIT_GEMM", bwd_data = "ALGO_1", bwd_filter = "ALGO_1" })
    local a, b = conv_once("cuda"), conv_once("cuda")
    for i = 1, 4 do T.truthy(a[i] == b[i], "result " .. i .. " differs with forced algorithms") end
  end)
end)
