-- test_gradcheck64.lua - float64 gradient checks at float64 tolerances
-- (tests/lib/gradcheck.lua: rtol 1e-6, atol 1e-7 against central
-- differences): graphs that reuse intermediate (non-leaf) tensors (fan-out
-- to two and three consumers, residual adds, in-place ops on non-leaves),
-- the ops the layers use (matmul, linear, conv2d, pools, batch_norm with and
-- without relu, casts, softmax, cross-entropy in each reduction), every
-- layer type w.r.t. its input and its weights, and a small model (Conv2D,
-- BatchNormalization, ReLU, skip connection, Concatenate, pooling, Dense) in
-- training and in inference mode. Every test is seeded.
local T = require "t"
local rn = require "rn"
local layers = require "rn.layers"
local model = require "rn.model"
local gradcheck = require "gradcheck"

local function f64(shape) return rn.randn(shape, { dtype = "float64" }) end

-- ---- reuse of intermediate tensors ----------------------------------------------

T.test("a non-leaf used twice gets the sum of both gradients (exact values)", function()
  local x = rn.tensor({ 1, 2 }, { dtype = "float64", requires_grad = true })
  local y = x * 2
  ;(y * y):sum():backward()            -- d/dx (2x)^2 = 8x
  T.eq(x.grad:totable(), { 8, 16 })
  x.grad = nil
  local z = x:exp()
  ;(z + z * 3 + z:sqrt()):sum():backward() -- three consumers: 4e^x + e^(x/2)/2
  T.near(x.grad, { 4 * math.exp(1) + math.exp(0.5) / 2, 4 * math.exp(2) + math.exp(1) / 2 }, 1e-12, 1e-12)
end)

T.test("gradcheck: fan-out through non-leaf nodes (two and three consumers, residual add)", function()
  rn.manual_seed(101)
  local x, w = f64({ 3, 4 }), f64({ 4, 4 })
  gradcheck(function(a) local y = a * 2; return y * y end, { x })
  gradcheck(function(a) local y = a:tanh(); return y * y:sigmoid() + y end, { x })
  gradcheck(function(a, b) -- a residual block: h = relu(a@b); out = h@b + a@b
    local y = rn.matmul(a, b)
    local h = y:tanh()
    return rn.matmul(h, b) + y + h:exp()
  end, { x, w })
  gradcheck(function(a) -- one intermediate, three consumers of different shapes
    local y = a:exp()
    return y:sum(1, true) * y + y:mean(2, true) + y:t():sum(2):reshape(1, 4)
  end, { x })
  gradcheck(function(a) -- a diamond of diamonds
    local y = a * 1.5
    local p, q = y:tanh(), y:sigmoid()
    local r = p * q
    return r * p + r * q + y
  end, { x })
end)

T.test("gradcheck: in-place ops on non-leaves that do not change the derivative", function()
  rn.manual_seed(102)
  local x = f64({ 2, 5 })
  local c = f64({ 2, 5 })
  -- add_ of a constant to a non-leaf nobody saved: the gradient is the identity's
  gradcheck(function(a) local y = a * 3; y:add_(c); return y:tanh() end, { x })
  gradcheck(function(a) local y = a:t():contiguous(); y:add_(2.5); return y * a:t() end, { x })
end)

-- The in-place ops (add_, mul_, ...) are not recorded by autograd: scaling a
-- non-leaf in place, or changing a tensor a backward has saved, must either
-- give the right gradient or raise. Today it silently gives a wrong one;
-- this test reports that as a skip naming the bug, and checks for real once
-- it is fixed (version counters, issue #16; recording of in-place scaling).
T.test("in-place change of a non-leaf: the right gradient or an error", function()
  local function case(name, run, want)
    local x = rn.tensor({ 1, 2 }, { dtype = "float64", requires_grad = true })
    local ok, err = pcall(run, x)
    if not ok then T.truthy(tostring(err):find("in%-place"), name .. ": unexpected error " .. tostring(err)); return nil end
    local g = x.grad:totable()
    if math.abs(g[1] - want[1]) > 1e-12 or math.abs(g[2] - want[2]) > 1e-12 then
      return string.format("%s: gradient {%g,%g}, want {%g,%g}", name, g[1], g[2], want[1], want[2])
    end
  end
  local bugs = {}
  bugs[#bugs + 1] = case("y=x*2; y:mul_(3)", function(x) local y = x * 2; y:mul_(3); y:sum():backward() end, { 6, 6 })
  bugs[#bugs + 1] = case("z=y*y; y:add_(1)", function(x) local y = x * 2; local z = y * y; y:add_(1); z:sum():backward() end,
    { 8, 16 })
  bugs[#bugs + 1] = case("y=exp(x); y:add_(1)", function(x) local y = x:exp(); y:add_(1); y:sum():backward() end,
    { math.exp(1), math.exp(2) })
  T.eq(#bugs, 0, "in-place changes of non-leaves: " .. table.concat(bugs, "; "))
end)

-- ---- ops ------------------------------------------------------------------------

T.test("gradcheck: matmul (batched, transposed views), linear, casts", function()
  rn.manual_seed(103)
  gradcheck(function(a, b) return rn.matmul(a, b) end, { f64({ 3, 4 }), f64({ 4, 2 }) })
  gradcheck(function(a, b) return rn.matmul(a, b) end, { f64({ 2, 3, 4 }), f64({ 2, 4, 5 }) })
  gradcheck(function(a, b) return rn.matmul(a:t(), b:t()) end, { f64({ 4, 3 }), f64({ 2, 4 }) })
  gradcheck(function(a, b) return rn.matmul(a, b) end, { f64({ 2, 3, 4 }), f64({ 4, 2 }) })
  gradcheck(function(a, w, b) return rn.linear(a, w, b) end, { f64({ 3, 4 }), f64({ 4, 5 }), f64({ 5 }) })
  -- casts: float64 -> float64 round trips through :double(), :to()
  gradcheck(function(a) return a:double():to("float64") * a end, { f64({ 3 }) })
end)

T.test("gradcheck: permute backward on 3-cycles and non-square shapes", function()
  rn.manual_seed(104)
  local x = f64({ 2, 3, 4 })
  gradcheck(function(a) return a:permute(2, 3, 1):exp() end, { x })
  local k = f64({ 4, 2, 3 })
  gradcheck(function(a) return a:permute(3, 1, 2) * k end, { x })
  local cube = f64({ 2, 2, 2 }) -- same shape after the permutation: only values tell
  gradcheck(function(a) return a:permute(2, 3, 1) * rn.arange(8, { dtype = "float64" }):reshape(2, 2, 2) end, { cube })
end)

T.test("gradcheck: broadcast inputs (bias-like, scalars, leading dims)", function()
  rn.manual_seed(105)
  local a, b, c = f64({ 4, 3 }), f64({ 3 }), f64({ 4, 1 })
  gradcheck(function(x, y, z) return x * y + z end, { a, b, c })
  gradcheck(function(x, y) return (x + y):tanh() end, { f64({ 2, 3, 4 }), f64({ 1, 3, 1 }) })
  gradcheck(function(x, y) return x / (y:abs() + 1) end, { f64({ 5 }), f64({ 1 }) })
end)

T.test("gradcheck: softmax, log_softmax, cross-entropy (mean, sum, none, smoothing)", function()
  rn.manual_seed(106)
  local logits = f64({ 4, 5 })
  local labels = rn.tensor({ 0, 3, 4, 1 }, { dtype = "int64" })
  gradcheck(function(x) return rn.softmax(x, -1) end, { logits })
  gradcheck(function(x) return rn.log_softmax(x, 1) end, { logits })
  for _, red in ipairs({ "mean", "sum", "none" }) do
    gradcheck(function(x) return rn.cross_entropy(x, labels, { reduction = red }) end, { logits })
  end
  gradcheck(function(x) return rn.cross_entropy(x, labels, { label_smoothing = 0.1 }) end, { logits })
  -- the mean is the sum / N, value and gradient
  local m = rn.cross_entropy(logits, labels):item()
  local s = rn.cross_entropy(logits, labels, { reduction = "sum" }):item()
  T.near(m, s / 4, 1e-14, 1e-12)
end)

T.test("gradcheck: conv2d and pools with strides that differ per axis, padding same", function()
  rn.manual_seed(107)
  local x = f64({ 2, 5, 6, 2 })
  gradcheck(function(a, w, b) return rn.conv2d(a, w, b, { stride = { 1, 2 }, padding = "same" }) end,
    { x, f64({ 3, 2, 2, 3 }), f64({ 3 }) })
  gradcheck(function(a, w) return rn.conv2d(a, w, nil, { stride = { 2, 1 }, dilation = { 1, 2 } }) end,
    { x, f64({ 2, 2, 2, 2 }) })
  gradcheck(function(a) return rn.max_pool2d(a, { 2, 3 }, { stride = { 1, 2 }, padding = "same" }) end, { x })
  gradcheck(function(a) return rn.avg_pool2d(a, 3, { stride = 2, padding = "same" }) end, { x })
  gradcheck(function(a) return rn.avg_pool2d(a, 2, { count_include_pad = true, padding = "same" }) end, { x })
  gradcheck(function(a) return rn.global_avg_pool2d(a) end, { x })
end)

T.test("gradcheck: batch_norm (training and inference, relu fused or not)", function()
  rn.manual_seed(108)
  local x = f64({ 6, 3 })
  local x4 = f64({ 2, 3, 2, 3 })
  local g, b = f64({ 3 }), f64({ 3 })
  for _, relu in ipairs({ false, true }) do
    for _, training in ipairs({ true, false }) do
      local rm, rv = f64({ 3 }) * 0.1, f64({ 3 }):abs() + 0.5
      local opts = { training = training, momentum = 0.9, eps = 1e-3, relu = relu }
      for _, input in ipairs({ x, x4 }) do
        gradcheck(function(a, gg, bb) return rn.batch_norm(a, gg, bb, rm, rv, opts) end, { input, g, b })
      end
    end
  end
end)

-- ---- layers ---------------------------------------------------------------------

-- gradcheck of layer on input shape `shape` (batch first) w.r.t. the input
-- and every trainable weight, with the layer in float64
local function check_layer(layer, shape, training)
  local x = f64(shape)
  rn.no_grad(function() layer(x:float()) end) -- builds the weights (float32)
  layer:to("float64")
  local inputs = { x }
  for _, p in ipairs(layer:parameters()) do inputs[#inputs + 1] = p end
  gradcheck(function(a) return layer(a, { training = training }) end, inputs)
end

T.test("gradcheck: every layer type w.r.t. input and weights, float64", function()
  rn.manual_seed(109)
  local L = layers
  check_layer(L.Conv2D(3, 3, { strides = { 1, 2 }, padding = "same" }), { 2, 5, 6, 2 })
  check_layer(L.Conv2D(2, { 2, 3 }, { dilation_rate = 2, activation = "tanh" }), { 1, 6, 7, 2 })
  check_layer(L.Dense(3, { activation = "sigmoid" }), { 4, 5 })
  check_layer(L.Dense(3, { use_bias = false, activation = "softmax" }), { 4, 5 })
  for _, training in ipairs({ true, false }) do
    local bn = L.BatchNormalization({ momentum = 0.9, epsilon = 1e-2 })
    check_layer(bn, { 5, 3 }, training)
    check_layer(L.BatchNormalization({ momentum = 0.9 }), { 2, 3, 2, 4 }, training)
  end
  for _, name in ipairs({ "relu", "softmax", "log_softmax", "sigmoid", "tanh", "linear" }) do
    check_layer(L.Activation(name), { 3, 4 })
  end
  check_layer(L.ReLU({ negative_slope = 0.1, max_value = 1.5 }), { 3, 4 })
  check_layer(L.MaxPooling2D(2, { strides = 1, padding = "same" }), { 2, 3, 4, 2 })
  check_layer(L.AveragePooling2D({ 2, 3 }, { strides = { 1, 2 } }), { 2, 4, 6, 2 })
  check_layer(L.GlobalAveragePooling2D(), { 2, 3, 4, 2 })
  check_layer(L.Flatten(), { 2, 3, 4, 2 })
  check_layer(L.Reshape({ 4, -1 }), { 2, 3, 4, 2 })
  check_layer(L.Lambda(function(t) return t:tanh() * 2 end), { 2, 3 })
  -- multi-input layers: gradient w.r.t. each input
  local add, cat = L.Add(), L.Concatenate()
  gradcheck(function(a, b, c) return add({ a, b, c }) end, { f64({ 2, 3 }), f64({ 2, 3 }), f64({ 2, 3 }) })
  gradcheck(function(a, b) return cat({ a, b }) * rn.arange(7, { dtype = "float64" }) end, { f64({ 2, 3 }), f64({ 2, 4 }) })
  gradcheck(function(a, b) return L.Concatenate(2)({ a, b }):exp() end, { f64({ 2, 1, 3 }), f64({ 2, 2, 3 }) })
end)

-- Conv2D -> BN -> ReLU -> Conv2D -> (+ skip) -> Concatenate(with a 1x1 branch)
-- -> MaxPooling2D -> GAP -> Dense, float64
local function small_model()
  local L = layers
  local inp = L.Input({ 4, 4, 2 })
  local h = L.Conv2D(3, 3, { padding = "same" })(inp)
  h = L.BatchNormalization({ momentum = 0.9, epsilon = 1e-3 })(h)
  h = L.ReLU()(h)
  local h2 = L.Conv2D(3, 3, { padding = "same" })(h)
  h = L.Add()({ h, h2 })
  local side = L.Conv2D(2, 1)(inp)
  h = L.Concatenate()({ h, side })
  h = L.MaxPooling2D(2)(h)
  h = L.GlobalAveragePooling2D()(h)
  local out = L.Dense(3, { activation = "tanh" })(h)
  return model.Model(inp, out):to("float64")
end

for _, training in ipairs({ true, false }) do
  T.test("gradcheck: small model (conv, BN, ReLU, skip, concat, pooling, dense), training=" ..
    tostring(training), function()
    rn.manual_seed(110)
    local m = small_model()
    local x = f64({ 2, 4, 4, 2 })
    if not training then -- moving statistics that are not the defaults
      rn.no_grad(function() for _ = 1, 3 do m(f64({ 3, 4, 4, 2 }) * 2 + 1, { training = true }) end end)
    end
    local inputs = { x }
    for _, p in ipairs(m:parameters()) do inputs[#inputs + 1] = p end
    gradcheck(function(a) return m(a, { training = training }) end, inputs)
  end)
end
