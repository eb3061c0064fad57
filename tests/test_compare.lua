-- test_compare.lua - model:compare (lua/rn/compare.lua): a run against itself
-- differs by exactly 0; the im2col CPU kernels and bf16 math differ by small,
-- non-zero amounts where they should (convolutions), 0 where they cannot; a
-- fused ReLU is flagged; afterwards the weights (the same tensor objects, so
-- a bound optimizer keeps training the model), BN statistics, policy and
-- convolution choice are as before, also after an error inside a run; bad
-- options are errors naming the valid values. The GPU comparison is in
-- tests/test_cuda.lua.
local T = require "t"
local rn = require "rn"
local layers = require "rn.layers"

local function small_model(seed)
  rn.manual_seed(seed or 11)
  local inp = layers.Input({ 8, 8, 3 })
  local h = layers.Conv2D(8, 3, { padding = "same", kernel_regularizer = rn.regularizers.l2(1e-4) })(inp)
  h = layers.BatchNormalization()(h)
  h = layers.ReLU()(h)
  local s = layers.Conv2D(8, 1)(inp)
  h = layers.Add()({ h, s })
  h = layers.GlobalAveragePooling2D()(h)
  local out = layers.Dense(3)(h)
  local m = rn.Model(inp, out)
  m:compile{ optimizer = rn.optim.SGD{ lr = 0.05, momentum = 0.9 },
    loss = rn.losses.sparse_categorical_crossentropy{ from_logits = true } }
  return m
end

local function data()
  rn.manual_seed(3)
  return rn.randn({ 6, 8, 8, 3 }), (rn.rand({ 6 }) * 3):long():minimum(2)
end

-- the k-th row (default 1st) of a layer type (layer names get numbered per process)
local function row(r, typ, k)
  k = k or 1
  for _, v in ipairs(r.rows) do
    if v.type == typ then
      k = k - 1
      if k == 0 then return v end
    end
  end
  error("no row " .. typ)
end

-- the model's state as plain numbers, and its weight tensors (identity)
local function state(m)
  local vals, objs = {}, {}
  for _, w in ipairs(m:weights()) do
    vals[w.name] = w.tensor:detach():clone():totable()
    objs[w.name] = w.tensor
  end
  return vals, objs
end

T.test("compare: a run against itself differs by exactly 0 in every layer", function()
  local m = small_model()
  local x, y = data()
  local r = m:compare(x, y, { device = "cpu", print = false })
  T.eq(r.loss_a, r.loss_b)
  T.eq(#r.rows, 7) -- Conv2D, BN, ReLU, Conv2D, Add, GAP, Dense
  for _, v in ipairs(r.rows) do
    if not v.fused and v.out_diff then T.eq(v.out_diff, 0, v.name .. " output") end
    if v.grad_diff then T.eq(v.grad_diff, 0, v.name .. " gradients") end
  end
  T.eq(r.worst_rel, 0)
  T.truthy(row(r, "Dense").out_max > 0, "the output's size is reported")
  T.truthy(row(r, "Conv2D").grad_max > 0, "gradients were compared")
end)

T.test("compare: im2col against oneDNN differs only in float rounding, in the convolutions", function()
  local impl = rn.cpu.conv_impl()
  if impl ~= "onednn" and impl ~= "auto" then T.skip("oneDNN is not in use here (" .. impl .. ")") end
  local m = small_model()
  local x, y = data()
  local r = m:compare(x, y, { device = "cpu", conv_impl = "im2col", print = false })
  T.eq(rn.cpu.conv_impl(), impl, "the choice is restored")
  rn.cpu.set_conv_impl("direct") -- and a "direct" setting comes back as "direct"
  local ok, err = pcall(m.compare, m, x, y, { device = "cpu", conv_impl = "auto", print = false })
  local now = rn.cpu.conv_impl()
  rn.cpu.set_conv_impl("auto")
  assert(ok, err)
  T.eq(now, "onednn-direct", "direct restored")
  local c = row(r, "Conv2D")
  T.truthy(c.out_rel < 1e-5, "conv2d output rel " .. c.out_rel)
  -- the filter gradient sums 384 products per weight in another order
  T.truthy(c.grad_diff > 0, "different kernels round differently: " .. c.grad_diff)
  T.truthy(c.grad_rel < 1e-4, "conv2d gradient rel " .. c.grad_rel)
  T.truthy(r.worst_rel > 0 and r.worst_rel < 1e-3, "worst rel " .. r.worst_rel)
  T.eq(r.worst.type, "Conv2D", "the largest difference is in a convolution")
  T.truthy(math.abs(r.loss_a - r.loss_b) < 1e-5)
end)

T.test("compare: mixed_bfloat16 against float32, the policy restored", function()
  if not rn.cpu.features().avx512_bf16 and not rn.cpu.features().amx_bf16 then
    T.skip("no AVX512-BF16 or AMX-BF16 at ISA " .. rn.cpu.features().isa ..
      (rn.cpu.features().isa_cap and " (capped by ONEDNN_MAX_CPU_ISA)" or ""))
  end
  local m = small_model()
  local x, y = data()
  local before = rn.mixed_precision.global_policy()
  local r = m:compare(x, y, { precision = "mixed_bfloat16", device = "cpu", print = false })
  T.eq(rn.mixed_precision.global_policy(), before)
  local c = row(r, "Conv2D")
  T.truthy(c.out_rel > 1e-5 and c.out_rel < 2e-2, "bf16 rounding in the first conv: " .. c.out_rel)
  T.eq(r.b:match("mixed_bfloat16") ~= nil, true, r.b)
  T.truthy(r.worst and r.worst_rel > 0, "a largest difference is named")
end)

T.test("compare: a ReLU fused into its BatchNormalization is flagged, not compared", function()
  local m = small_model()
  local x, y = data()
  local r = m:compare(x, y, { device = "cpu", print = false })
  T.eq(row(r, "ReLU").fused, true)
  T.eq(row(r, "BatchNormalization").fused, nil)
  m.fusion = false
  r = m:compare(x, y, { device = "cpu", print = false })
  T.eq(row(r, "ReLU").fused, nil, "unfused, the ReLU has its own output")
end)

T.test("compare: weights, statistics and the bound optimizer are untouched; gradients cleared", function()
  local m = small_model()
  local x, y = data()
  local vals, objs = state(m)
  m:compare(x, y, { device = "cpu", conv_impl = "im2col", print = false })
  local vals2, objs2 = state(m)
  T.eq(vals2, vals, "values (BN moving statistics included)")
  for k, t in pairs(objs) do T.truthy(rawequal(objs2[k], t), k .. " is the same tensor object") end
  for _, p in ipairs(m:parameters()) do T.eq(p.grad, nil) end
  -- the compiled optimizer still trains the model's own weights
  local kernel = m:weights()[1].tensor
  local k0 = kernel:clone()
  m:train_step(x, y)
  T.truthy((kernel - k0):abs():max():item() > 0, "a step after compare moves the weights")
end)

T.test("compare: an error inside a run restores the policy, kernels and weights", function()
  local m = small_model()
  local x = data()
  local vals = state(m)
  local bad = rn.tensor({ 0, 1, 2, 7, 0, 1 }):long() -- label 7 outside 0..2
  T.raises(function() m:compare(x, bad, { device = "cpu", conv_impl = "im2col", print = false }) end, "7")
  T.eq(rn.cpu.conv_impl() == "im2col", false, "conv choice restored")
  T.eq(state(m), vals)
end)

T.test("compare: bad options name the valid values", function()
  local m = small_model()
  local x, y = data()
  T.raises(function() m:compare(x, y, { device = "tpu" }) end, 'device must be "cpu" or "cuda", got tpu')
  T.raises(function() m:compare(x, y, { device = "cpu", precision = "fp8" }) end,
    'precision must be "float32" or "mixed_bfloat16", got fp8')
  T.raises(function() m:compare(x, y, { device = "cpu", conv_impl = "fast" }) end,
    'conv_impl must be "auto", "benchmark", "onednn", "winograd", "direct" or "im2col", got fast')
  T.raises(function() m:compare(x, y, { device = "cpu", seed = 1.5 }) end, "seed must be an integer")
  T.raises(function() m:compare(x, y, { device = "cpu", nope = 1 }) end, "nope")
  T.raises(function() m:compare(x, "y", { device = "cpu" }) end, "y must be a tensor")
  if not rn.cuda.is_available() then
    T.raises(function() m:compare(x, y) end, "device cuda: ") -- the default against a CPU model
  end
  local inp = layers.Input({ 4 })
  local plain = rn.Model(inp, layers.Dense(2)(inp))
  T.raises(function() plain:compare(rn.randn({ 2, 4 }), rn.tensor({ 0, 1 }):long(), { device = "cpu" }) end,
    "not compiled")
end)
