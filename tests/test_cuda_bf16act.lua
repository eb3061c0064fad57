-- test_cuda_bf16act.lua - issue #18's bf16 activations on the GPU: batch
-- norm (training, inference, backward; with and without the fused ReLU) on
-- a bfloat16 x with float32 gamma/beta/running statistics, and max/avg
-- pooling (forward and backward) on bfloat16, against the CPU's same ops
-- (core/cuda/nn.c with kernels/nn.cu's bf16 kernels, reached through
-- core/cuda/bf16.c); and a conv+BN+ReLU+pool+Dense model under
-- mixed_bfloat16 on the device: bf16 activations between its layers, the
-- loss falls over 10 steps, the float32 variables and their gradients stay
-- float32. The device results are within 2e-2 of the largest |value| of
-- the CPU's (bf16 keeps 8 bits; both round the same float math once).
--
-- Without a device the GPU tests skip with the reason. RN_CUDA_TEST_ON_CPU=1
-- runs them with "cpu" as the second device (a check of the tests on a
-- machine without a GPU). RN_CUDA_BF16_ACT=0 on the device runs the same
-- tests through the converting path (the comparison the switch is for);
-- the model test then expects float32 activations on the GPU.
local T = require "t"
local rn = require "rn"

local ON_CPU = os.getenv("RN_CUDA_TEST_ON_CPU") ~= nil
local DEV = ON_CPU and "cpu" or "cuda"
local ACT = os.getenv("RN_CUDA_BF16_ACT") ~= "0" -- bf16 activations on the GPU
local RTOL = 2e-2

local function need_gpu()
  if ON_CPU then return end
  if not rn.cuda.is_available() then T.skip("no CUDA device: " .. tostring(rn.cuda.why_unavailable())) end
end

-- max |got - want| / max |want|, both as float32 on the CPU
local function relerr(got, want)
  local g, w = got:to("cpu"):float(), want:to("cpu"):float()
  local d = (g - w):abs():max():item()
  return d / math.max(w:abs():max():item(), 1e-30)
end

local function close(got, want, what, tol)
  tol = tol or RTOL
  local e = relerr(got, want)
  T.truthy(e <= tol, string.format("%s: max error %.3g of the largest |value| (limit %g)", what, e, tol))
end

-- ---- batch norm --------------------------------------------------------------

local SHAPE, C = { 4, 6, 6, 16 }, 16

-- batch norm (relu fused or not) of a bf16 x with float32 parameters on dev,
-- and the gradients of sum(float(y) * w): everything back on the CPU
local function bn_case(dev, training, relu)
  rn.manual_seed(41)
  local x = (rn.randn(SHAPE) * 2 + 0.5):to("bfloat16"):to(dev):requires_grad_()
  local g = (rn.rand({ C }) + 0.5):to(dev):requires_grad_()
  local b = (rn.randn({ C }) * 0.3):to(dev):requires_grad_()
  local rm, rv = (rn.randn({ C }) * 0.1):to(dev), (rn.rand({ C }) + 0.5):to(dev)
  rn.manual_seed(42)
  local w = rn.randn(SHAPE):to(dev)
  local opts = { training = training, relu = relu, momentum = 0.9 }
  -- without autograd first: the fused inference slot (a graph with grad
  -- takes batch norm, then relu, for inference); for training it would
  -- update the running statistics twice, so only for inference
  local y0 = not training and rn.no_grad(function() return rn.batch_norm(x, g, b, rm, rv, opts) end)
  local y = rn.batch_norm(x, g, b, rm, rv, opts)
  ;(y:float() * w):sum():backward()
  local function c(t) return t and t:detach():to("cpu") end
  return { y = c(y), y0 = c(y0 or nil), gx = c(x.grad), gg = c(g.grad), gb = c(b.grad), rm = c(rm),
    rv = c(rv), dt = { y = y.dtype, gx = x.grad and x.grad.dtype, gg = g.grad and g.grad.dtype,
    gb = b.grad and b.grad.dtype, rm = rm.dtype, dev = y.device } }
end

T.test("cpu: batch norm of a bf16 x with float32 parameters is the float32 one rounded (the reference)",
       function()
  for _, relu in ipairs({ false, true }) do
    local a = bn_case("cpu", true, relu)
    rn.manual_seed(41)
    local x = (rn.randn(SHAPE) * 2 + 0.5):to("bfloat16"):float()
    local g, b = rn.rand({ C }) + 0.5, rn.randn({ C }) * 0.3
    local y = rn.batch_norm(x, g, b, nil, nil, { training = true, relu = relu })
    T.eq(a.dt.y, "bfloat16", "y is bf16")
    T.eq(a.dt.gx, "bfloat16", "grad x is bf16")
    T.eq(a.dt.gg, "float32", "grad gamma is float32")
    T.eq(a.dt.rm, "float32", "running mean stays float32")
    close(a.y, y, "bf16 batch norm vs float32" .. (relu and " (relu)" or ""), 8e-3)
    T.truthy(a.gx:float():abs():max():item() > 0.01, "a real gradient")
    if relu then T.truthy(a.y:eq(0):sum():item() > 100, "a dead region to mask") end
  end
end)

T.test("cuda: batch norm on a bf16 x with float32 parameters equals the CPU's (train, infer, backward, fused relu)",
       function()
  need_gpu()
  for _, relu in ipairs({ false, true }) do
    for _, training in ipairs({ true, false }) do
      local what = (training and "training" or "inference") .. (relu and " + relu" or "")
      local c, d = bn_case("cpu", training, relu), bn_case(DEV, training, relu)
      T.eq(d.dt.dev, DEV, what .. ": on the device")
      T.eq(d.dt.y, "bfloat16", what .. ": y stays bf16")
      T.eq(d.dt.gx, "bfloat16", what .. ": grad x is bf16")
      T.eq(d.dt.gg, "float32", what .. ": grad gamma is float32")
      T.eq(d.dt.gb, "float32", what .. ": grad beta is float32")
      T.eq(d.dt.rm, "float32", what .. ": running mean stays float32")
      close(d.y, c.y, what .. ": y")
      if d.y0 then close(d.y0, c.y0, what .. ": y without autograd (the fused inference slot)") end
      if relu then
        local zc, zd = c.y:eq(0):sum():item(), d.y:eq(0):sum():item()
        T.truthy(math.abs(zc - zd) <= 0.01 * c.y:numel(),
                 string.format("%s: the ReLU's zeros (%d on the cpu, %d on the device)", what, zc, zd))
      end
      close(d.gx, c.gx, what .. ": grad x")
      close(d.gg, c.gg, what .. ": grad gamma")
      close(d.gb, c.gb, what .. ": grad beta")
      close(d.rm, c.rm, what .. ": running mean", 1e-3)
      close(d.rv, c.rv, what .. ": running var", 1e-3)
    end
  end
end)

-- ---- pooling -----------------------------------------------------------------

local function pool_case(dev, max, opts)
  rn.manual_seed(51)
  local x = rn.randn({ 3, 9, 9, 8 }):to("bfloat16"):to(dev):requires_grad_()
  local y = (max and rn.max_pool2d or rn.avg_pool2d)(x, 3, opts)
  rn.manual_seed(52)
  local w = rn.randn(y:size()):to(dev)
  ;(y:float() * w):sum():backward()
  return { y = y:detach():to("cpu"), gx = x.grad:to("cpu"), ydt = y.dtype, gdt = x.grad.dtype,
    dev = y.device }
end

T.test("cuda: max/avg pooling on bf16 equals the CPU's (forward and backward)", function()
  need_gpu()
  local cases = {
    { "stride 2 same", { stride = 2, padding = "same" } },
    { "stride 1 valid", { stride = 1 } },
    { "stride 2 count_include_pad", { stride = 2, padding = "same", count_include_pad = true } },
  }
  for _, max in ipairs({ true, false }) do
    for _, k in ipairs(cases) do
      if not (max and k[2].count_include_pad) then
        local what = (max and "max_pool2d " or "avg_pool2d ") .. k[1]
        local c, d = pool_case("cpu", max, k[2]), pool_case(DEV, max, k[2])
        T.eq(d.dev, DEV, what .. ": on the device")
        T.eq(d.ydt, "bfloat16", what .. ": y stays bf16")
        T.eq(d.gdt, "bfloat16", what .. ": grad x is bf16")
        -- the same float math rounded once: within a bf16 ulp (max: exact)
        close(d.y, c.y, what .. ": y", max and 0 or 8e-3)
        close(d.gx, c.gx, what .. ": grad x", 8e-3)
        T.truthy(c.gx:float():abs():max():item() > 0.01, what .. ": a real gradient")
      end
    end
  end
end)

-- ---- a model under mixed_bfloat16 --------------------------------------------

T.test("cuda: conv+BN+ReLU+pool+Dense under mixed_bfloat16: bf16 activations, loss falls, float32 variables",
       function()
  need_gpu()
  local L = rn.layers
  local ok = pcall(rn.mixed_precision.set_global_policy, "mixed_bfloat16")
  rn.mixed_precision.set_global_policy("float32")
  if not ok then T.skip("mixed_bfloat16 refused here") end
  rn.manual_seed(61)
  math.randomseed(61)
  local inp = L.Input({ 8, 8, 3 })
  local h = L.Conv2D(8, 3, { padding = "same" })(inp)
  h = L.BatchNormalization()(h)
  h = L.ReLU()(h)
  local pooled = L.MaxPooling2D(2)(h)
  local out = L.Dense(3, { activation = "softmax" })(L.Flatten()(pooled))
  local m = rn.Model(inp, out)
  local sub = rn.Model(inp, pooled) -- the same layers, up to the pooling
  m:to(DEV)
  m:compile({ optimizer = rn.optim.SGD(m:parameters(), { lr = 0.05, momentum = 0.9 }),
    loss = "sparse_categorical_crossentropy" })
  -- a learnable batch: class c lifts channel c of every pixel by 1.5
  local B = 24
  local lab, offs = {}, {}
  for i = 1, B do
    lab[i] = (i - 1) % 3
    local o = { 0, 0, 0 }
    o[lab[i] + 1] = 1.5
    offs[i] = { { o } }
  end
  local x = (rn.randn({ B, 8, 8, 3 }) + rn.tensor(offs)):to(DEV)
  local y = rn.tensor(lab, { dtype = "int64" }):to(DEV)
  rn.mixed_precision.set_global_policy("mixed_bfloat16")
  local res = table.pack(pcall(function()
    local act = DEV == "cpu" or ACT -- RN_CUDA_BF16_ACT=0: float32 on the GPU
    local want = act and "bfloat16" or "float32"
    local a = sub:predict(x)
    T.eq(a.dtype, want, "the pooled activation (inference)")
    T.eq(a.device, DEV, "on the device")
    local at = sub(x, { training = true })
    T.eq(at.dtype, want, "the pooled activation (training)")
    -- the float32 variables get float32 gradients
    m.optimizer:zero_grad()
    local loss = m.loss_fn(m(x, { training = true }), y)
    T.eq(loss.dtype, "float32", "the loss is float32")
    loss:backward()
    for _, p in ipairs(m:parameters()) do
      T.eq(p.dtype, "float32", "a variable stays float32")
      T.truthy(p.grad, "a gradient")
      T.eq(p.grad.dtype, "float32", "its gradient is float32")
    end
    local ls = {}
    for step = 1, 10 do ls[step] = m:train_step(x, y).loss end
    return ls
  end))
  rn.mixed_precision.set_global_policy("float32")
  if not res[1] then error(res[2], 0) end
  local losses = res[2]
  for step, l in ipairs(losses) do
    T.truthy(l == l and l < math.huge, "finite loss at step " .. step .. ": " .. tostring(l))
  end
  T.truthy(losses[10] < 0.7 * losses[1],
           string.format("loss falls: step 1 %.4f, step 10 %.4f", losses[1], losses[10]))
  for _, wt in ipairs(m:weights()) do
    T.eq(wt.tensor.device, DEV, wt.name)
    T.eq(wt.tensor.dtype, "float32", wt.name .. " stays float32")
  end
end)
