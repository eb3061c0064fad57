-- test_infer_fusion.lua - the model graph's inference fusions (lua/rn/model.lua,
-- Model:_find_infer_fusions) and the op under them, rn.core._conv2d_fused
-- (core/ops/conv.c; oneDNN post-ops in core/cpu/conv_dnnl.c, else conv, add
-- and relu composed by the front end):
--   - which patterns fuse (Conv2D -> BN [-> ReLU] folds; Add(Conv2D(h), s)
--     adds into s) and which must not (activations, shared outputs, model
--     inputs and outputs, pass-through readers, subclasses);
--   - predict with the fusions equals predict with model.fusion = false, on
--     oneDNN, on the im2col kernels, in float64, under mixed_bfloat16, and
--     after the weights and BN statistics change;
--   - nothing the caller holds is written: inputs and outputs stay intact;
--   - training, and inference with gradients on, do not use them;
--   - the op's errors.
-- No timings are asserted here (make bench measures them).
local T = require "t"
local rn = require "rn"
local L = rn.layers

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- BN statistics and affine parameters away from their initial 0/1, so a
-- wrong fold cannot pass
local function perturb(m, seed)
  rn.manual_seed(seed or 5)
  rn.no_grad(function()
    for _, l in ipairs(m.layers) do
      if l.moving_mean then
        local c = l.moving_mean:size(1)
        l.moving_mean:copy_(rn.randn({c}) * 0.3)
        l.moving_variance:copy_(rn.rand({c}) + 0.5)
        if l.gamma then l.gamma:copy_(rn.rand({c}) + 0.5) end
        if l.beta then l.beta:copy_(rn.randn({c}) * 0.2) end
      end
      if l.bias and l.class_name == "Conv2D" then l.bias:copy_(rn.randn(l.bias:size()) * 0.1) end
    end
  end)
end

-- predict with the fusions and with model.fusion = false
local function both(m, x)
  local fused = m:predict(x)
  m.fusion = false
  local plain = m:predict(x)
  m.fusion = nil
  return fused, plain
end

-- the seed's pre-activation ResNet at 16x16 (scripts/resnet_cifar.lua)
local R = loadfile("scripts/resnet_cifar.lua")()

T.test("infer fusion: the seed ResNet folds 21 conv->BN->ReLU and adds 21 convs in place", function()
  local m = R.create_resnet({16, 16, 3})
  perturb(m)
  T.eq(count(m._ifold), 21, "conv -> BN -> ReLU folds (the second conv input of each block)")
  for _, plan in pairs(m._ifold) do T.truthy(plan.relu, "each fold carries its ReLU") end
  T.eq(count(m._iadd), 21, "Add(conv, shortcut) in place")
  T.eq(count(m._idefer), 21, "the convs run at their Add")
  T.eq(count(m._iskip), 42, "folded BN and ReLU nodes")
  rn.manual_seed(7)
  local x = rn.randn({6, 16, 16, 3})
  local x0 = x:clone()
  local fused, plain = both(m, x)
  T.near(fused, plain, 1e-6, 1e-4, "softmax outputs")
  T.eq((x - x0):abs():max():item(), 0, "the input is not written")
  T.truthy((plain - plain:mean()):abs():max():item() > 1e-3, "outputs are not all equal")
end)

T.test("infer fusion: logits match on oneDNN (Winograd, direct), im2col and float64, and track " ..
    "weight changes", function()
  local inp = L.Input({10, 10, 32})          -- 32 channels: Winograd under "auto"
  local s = L.Conv2D(32, 3, {padding = "same"})(inp)
  local h = L.BatchNormalization()(s)
  h = L.ReLU()(h)
  h = L.Conv2D(32, 3, {padding = "same"})(h)
  h = L.BatchNormalization()(h)
  h = L.ReLU()(h)
  h = L.Conv2D(32, 3, {padding = "same"})(h)
  h = L.Add()({h, s})
  local m = rn.Model(inp, L.Dense(4)(L.GlobalAveragePooling2D()(h)))
  perturb(m)
  T.eq(count(m._ifold), 1, "folds")
  T.eq(count(m._iadd), 1, "adds")
  rn.manual_seed(8)
  local x = rn.randn({3, 10, 10, 32})
  local fused, plain = both(m, x)
  T.near(fused, plain, 1e-5, 1e-4, "oneDNN (post-ops)")
  local ok, err = pcall(function()
    rn.cpu.set_conv_impl("direct")
    local f1, p1 = both(m, x)
    T.near(f1, p1, 1e-5, 1e-4, "oneDNN direct (post-ops)")
    T.near(f1, fused, 1e-4, 1e-3, "direct vs Winograd")
    rn.cpu.set_conv_impl("im2col")
    local f2, p2 = both(m, x)
    T.near(f2, p2, 1e-5, 1e-4, "im2col (composed epilogue)")
    T.near(f2, fused, 1e-4, 1e-3, "im2col vs oneDNN")
  end)
  rn.cpu.set_conv_impl("auto")
  assert(ok, err)
  -- new weights and statistics: the fold is made from the current ones
  perturb(m, 11)
  local f3, p3 = both(m, x)
  T.near(f3, p3, 1e-5, 1e-4, "after the parameters changed")
  T.truthy((f3 - fused):abs():max():item() > 1e-3, "and the outputs did change")
  -- float64: the front end composes (oneDNN has no float64 kernels)
  local m64 = rn.Model(inp, m.outputs[1])
  m64:to("float64")
  local f4, p4 = both(m64, x:double())
  T.eq(f4.dtype, "float64")
  T.near(f4, p4, 1e-12, 1e-10, "float64")
end)

T.test("infer fusion: what must not fuse", function()
  local inp = L.Input({8, 8, 8})
  local a = L.Conv2D(8, 3, {padding = "same", activation = "relu"})(inp)   -- activation: no fold
  local b = L.BatchNormalization()(a)
  local c = L.Conv2D(8, 3, {padding = "same"})(b)                         -- read twice: no fold
  local d = L.BatchNormalization()(c)
  local e = L.Add()({d, c})
  local f = L.Conv2D(8, 3, {padding = "same"})(e)
  local g = L.Add()({f, inp})                                              -- model input: not in place
  local MyBN = L.BatchNormalization:extend("MyBN2")
  function MyBN:call(x, training) return L.BatchNormalization.call(self, x, training) end
  local h = L.Conv2D(8, 3, {padding = "same"})(g)
  local i = MyBN()(h)                                                      -- subclass: no fold
  local j = L.Conv2D(8, 3, {padding = "same"})(i)
  local k = L.Dropout(0.5)(i)                                              -- passes i through
  local l = L.Add()({j, i})                                                -- i read by Dropout: not in place
  local n = L.Conv2D(8, 3, {padding = "same"})(l)
  local o = L.Add()({n, k})
  local m = rn.Model(inp, {o, l})                                          -- l is an output
  perturb(m)
  T.eq(count(m._ifold), 0, "no fold")
  T.eq(count(m._iadd), 0, "no in-place add")
  rn.manual_seed(9)
  local x = rn.randn({2, 8, 8, 8})
  local x0 = x:clone()
  local fused = m:predict(x)
  m.fusion = false
  local plain = m:predict(x)
  m.fusion = nil
  T.eq((fused[1] - plain[1]):abs():max():item(), 0, "output 1 bitwise")
  T.eq((fused[2] - plain[2]):abs():max():item(), 0, "output 2 bitwise")
  T.eq((x - x0):abs():max():item(), 0, "the input is not written")
end)

T.test("infer fusion: a shortcut still needed later is not written; BN without ReLU, scale or center folds", function()
  local inp = L.Input({6, 6, 4})
  local s = L.Conv2D(8, 1)(inp)
  local h = L.Conv2D(8, 3, {padding = "same", use_bias = false})(s)
  h = L.BatchNormalization({center = false, scale = false})(h)             -- fold, no ReLU, no gamma/beta
  h = L.Conv2D(8, 3, {padding = "same"})(h)
  local a1 = L.Add()({h, s})                                               -- s is read again below
  local t = L.Conv2D(8, 3, {padding = "same"})(a1)
  local a2 = L.Add()({t, s})                                               -- s's last reader
  local m = rn.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(a2)))
  perturb(m)
  T.eq(count(m._ifold), 1, "the BN without ReLU folds")
  local plan = next(m._ifold) and select(2, next(m._ifold))
  T.truthy(plan and plan.relu == nil, "no ReLU in the fold")
  T.eq(count(m._iadd), 2, "both Adds planned; the first must fall back at run time")
  rn.manual_seed(10)
  local x = rn.randn({3, 6, 6, 4})
  local fused, plain = both(m, x)
  T.near(fused, plain, 1e-5, 1e-4, "logits")
end)

T.test("infer fusion: not in training, nor with gradients on; mixed_bfloat16 predict", function()
  local m = R.create_resnet({8, 8, 3})
  perturb(m)
  rn.manual_seed(12)
  local x = rn.randn({4, 8, 8, 3})
  -- training=false with gradients on: the usual graph, so gradients flow
  local y = m(x, {training = false});
  (y * rn.randn(y:size())):sum():backward() -- (softmax rows sum to 1: weight them)
  local k = m.layers[2].kernel
  T.truthy(k.grad and k.grad:abs():max():item() > 0, "gradient reached the first conv")
  local yg = y:detach()
  local yp = m:predict(x)
  T.near(yp, yg, 1e-6, 1e-4, "predict (fused) = forward with gradients (unfused)")
  -- a training step after predict is unchanged by it (bitwise against fusion off)
  local function step(fusion)
    rn.manual_seed(13)
    local mm = R.create_resnet({8, 8, 3})
    mm.fusion = fusion
    mm:compile{optimizer = rn.optim.SGD{lr = 0.05}, loss = "sparse_categorical_crossentropy"}
    local yy = rn.tensor({0, 1, 2, 3}):long()
    mm:predict(x)
    return mm:train_step(x, yy), mm:predict(x)
  end
  local l1, p1 = step(nil)
  local l2, p2 = step(false)
  T.eq(l1, l2, "training loss after a fused predict")
  T.near(p1, p2, 1e-6, 1e-4, "predict after training")
  -- mixed_bfloat16: the folded weights go through the same bf16 conv math
  local mp = rn.mixed_precision
  if not rn.cpu.features().avx512_bf16 and not rn.cpu.features().amx_bf16 then
    T.skip("no AVX512-BF16 or AMX-BF16 at ISA " .. rn.cpu.features().isa ..
      (rn.cpu.features().isa_cap and " (capped by ONEDNN_MAX_CPU_ISA)" or "") .. ": the bf16 conv path is not taken here")
  end
  mp.set_global_policy("mixed_bfloat16")
  local ok, err = pcall(function()
    local m16 = R.create_resnet({8, 8, 3})
    perturb(m16)
    local f, p = both(m16, x)
    T.near(f, p, 2e-2, 5e-2, "bf16 math")
  end)
  mp.set_global_policy("float32")
  assert(ok, err)
end)

T.test("conv2d_fused: epilogues against conv + add + relu, and its errors", function()
  local fused = require("rn.core")._conv2d_fused
  rn.manual_seed(14)
  local x, w, b = rn.randn({2, 7, 7, 16}), rn.randn({3, 3, 16, 32}) * 0.2, rn.randn({32})
  local o = {padding = "same"}
  local acc = rn.randn({2, 7, 7, 32})
  -- 16 -> 32 channels: oneDNN's direct kernels; 32 -> 32: Winograd under "auto"
  for _, cin in ipairs({16, 32}) do
    if cin == 32 then x, w = rn.randn({2, 7, 7, 32}), rn.randn({3, 3, 32, 32}) * 0.2 end
    rn.no_grad(function()
      local c = rn.conv2d(x, w, b, o)
      -- c is computed once, by "auto"'s kernel (perhaps rnlua's Winograd, whose
      -- rounding differs from the direct kernels' by ~1e-5 of the scale)
      for _, impl in ipairs({"auto", "direct", "im2col"}) do
        rn.cpu.set_conv_impl(impl)
        local what = cin .. " channels, " .. impl
        local ok, err = pcall(function()
          T.near(fused(x, w, b, o, false, nil), c, 5e-5, 5e-5, what .. ": plain")
          T.near(fused(x, w, b, o, true, nil), c:relu(), 5e-5, 5e-5, what .. ": relu")
          local a = acc:clone()
          local y = fused(x, w, nil, o, false, a)
          T.near(y, rn.conv2d(x, w, nil, o) + acc, 5e-5, 5e-5, what .. ": sum")
          T.eq((y - a):abs():max():item(), 0, what .. ": the result is the accumulator's memory")
          a = acc:clone()
          T.near(fused(x, w, b, o, true, a), (c + acc):relu(), 5e-5, 5e-5, what .. ": sum + relu")
          local s2 = {stride = 2, padding = "same"}
          T.near(fused(x, w, b, s2, true, nil), rn.conv2d(x, w, b, s2):relu(), 5e-5, 5e-5,
            what .. ": stride 2")
        end)
        rn.cpu.set_conv_impl("auto")
        assert(ok, err)
      end
    end)
  end
  T.raises(function() fused(x:clone():requires_grad_(), w, b, o, false, nil) end,
    "inference only", true)
  T.raises(function() rn.no_grad(fused, x, w, b, o, false, rn.randn({2, 7, 7, 31})) end,
    "accumulator has shape (2,7,7,31); it must be the output's (2,7,7,32)", true)
  T.raises(function() rn.no_grad(fused, x, w, b, o, false, acc:double()) end,
    "accumulator has dtype float64 but x has float32", true)
  T.raises(function() rn.no_grad(fused, x, w, b, o, false, acc:transpose(2, 3)) end,
    "accumulator must be contiguous", true)
  local x32 = rn.randn({2, 7, 7, 32})
  T.raises(function() rn.no_grad(fused, x32, rn.randn({3, 3, 32, 32}), nil, o, false, x32) end,
    "accumulator shares memory with an input", true)
  T.raises(function() rn.no_grad(fused, x, w, b, o, 1, nil) end, "boolean expected")
  T.raises(function() rn.no_grad(fused, x, w, b, nil, false, nil) end, "options table", true)
  T.raises(function() rn.no_grad(fused, x, rn.randn({3, 3, 8, 32}), b, o, false, nil) end,
    "conv2d")
end)
