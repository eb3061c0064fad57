-- test_layers_conv.lua - the convolution layers beyond Conv2D: Conv2D(groups=),
-- DepthwiseConv2D, SeparableConv2D, Conv2DTranspose. Parameter counts and
-- weight names/shapes as Keras gives them (keras.layers, Keras 3: counts
-- computed by hand from its documented kernel shapes), outputs against the
-- ops they are defined by, symbolic shapes equal to eager shapes, float64
-- gradients, and the errors.
local T = require "t"
local rn = require "rn"
local L = rn.layers
local gradcheck = require "gradcheck"

local function weights_of(layer)
  local out = {}
  for _, w in ipairs(layer:weights()) do out[#out + 1] = { w.name, w.tensor:size() } end
  return out
end

T.test("conv layers: Keras's parameter counts, weight names and shapes", function()
  rn.layers.reset_names()
  local x = L.Input({ 16, 16, 32 })
  local cases = {
    -- layer, output shape, count (Keras: kernel + bias), weights
    { L.Conv2D(64, 3, { groups = 4, padding = "same" }), { -1, 16, 16, 64 }, 3 * 3 * 8 * 64 + 64,
      { { "kernel", { 3, 3, 8, 64 } }, { "bias", { 64 } } } },
    { L.DepthwiseConv2D(3, { padding = "same" }), { -1, 16, 16, 32 }, 3 * 3 * 32 + 32,
      { { "depthwise_kernel", { 3, 3, 32, 1 } }, { "bias", { 32 } } } },
    { L.DepthwiseConv2D({ 5, 3 }, { depth_multiplier = 2, strides = 2, use_bias = false }), { -1, 6, 7, 64 },
      5 * 3 * 32 * 2, { { "depthwise_kernel", { 5, 3, 32, 2 } } } },
    { L.SeparableConv2D(48, 3, { padding = "same", depth_multiplier = 2 }), { -1, 16, 16, 48 },
      3 * 3 * 32 * 2 + 64 * 48 + 48,
      { { "depthwise_kernel", { 3, 3, 32, 2 } }, { "pointwise_kernel", { 1, 1, 64, 48 } }, { "bias", { 48 } } } },
    { L.Conv2DTranspose(16, 3, { strides = 2, padding = "same" }), { -1, 32, 32, 16 }, 3 * 3 * 16 * 32 + 16,
      { { "kernel", { 3, 3, 16, 32 } }, { "bias", { 16 } } } },
    { L.Conv2DTranspose(8, 3, { strides = 2 }), { -1, 33, 33, 8 }, 3 * 3 * 8 * 32 + 8,
      { { "kernel", { 3, 3, 8, 32 } }, { "bias", { 8 } } } },
    { L.Conv2DTranspose(8, 2, { strides = 3 }), { -1, 48, 48, 8 }, 2 * 2 * 8 * 32 + 8,
      { { "kernel", { 2, 2, 8, 32 } }, { "bias", { 8 } } } },
    { L.Conv2DTranspose(8, 3, { strides = 2, padding = "same", output_padding = 0 }), { -1, 31, 31, 8 },
      3 * 3 * 8 * 32 + 8, { { "kernel", { 3, 3, 8, 32 } }, { "bias", { 8 } } } },
  }
  for i, c in ipairs(cases) do
    local y = c[1](x)
    T.eq(y.shape, c[2], "case " .. i .. " (" .. c[1].class_name .. ") symbolic shape")
    T.eq(c[1]:count_params(), c[3], "case " .. i .. " count")
    local ws = weights_of(c[1])
    T.eq(#ws, #c[4], "case " .. i .. " weights")
    for j, w in ipairs(c[4]) do
      T.truthy(ws[j][1]:find(w[1] .. "$"), "case " .. i .. " weight " .. j .. " name " .. ws[j][1])
      T.eq(ws[j][2], w[2], "case " .. i .. " weight " .. j .. " shape")
    end
    -- eager shape equals the symbolic one
    local real = c[1](rn.randn({ 2, 16, 16, 32 }))
    local want = { 2, c[2][2], c[2][3], c[2][4] }
    T.eq(real:size(), want, "case " .. i .. " eager shape")
  end
end)

T.test("conv layers: outputs equal the ops they are made of", function()
  rn.manual_seed(31)
  local x = rn.randn({ 2, 9, 8, 6 })
  -- DepthwiseConv2D: conv2d with groups = cin on the reshaped kernel
  local dw = L.DepthwiseConv2D(3, { depth_multiplier = 2, padding = "same", strides = 2 })
  local y = dw(x)
  local k = dw.depthwise_kernel
  local ref = rn.conv2d(x, k:reshape({ 3, 3, 1, 12 }), dw.bias, { padding = "same", stride = 2, groups = 6 })
  T.near(y, ref, 0, 0, "depthwise")
  -- channel c*2+m of the output is channel c of x through kernel (:,:,c,m)
  local one = rn.conv2d(x:narrow(4, 4, 1):contiguous(), k:narrow(3, 4, 1):narrow(4, 2, 1):contiguous(), nil,
    { padding = "same", stride = 2 }) + dw.bias[8]
  T.near(y:narrow(4, 8, 1), one, 1e-5, 1e-5, "output channel 8 = input channel 4, copy 2")
  -- SeparableConv2D: the 1x1 pointwise conv of the depthwise output
  local sep = L.SeparableConv2D(5, 3, { padding = "same", activation = "relu" })
  local ys = sep(x)
  local mid = rn.conv2d(x, sep.depthwise_kernel:reshape({ 3, 3, 1, 6 }), nil, { padding = "same", groups = 6 })
  T.near(ys, rn.conv2d(mid, sep.pointwise_kernel, sep.bias):relu(), 1e-6, 1e-6, "separable")
  -- Conv2DTranspose: rn.conv2d_transpose with the layer's options
  local ct = L.Conv2DTranspose(4, 3, { strides = 2, padding = "same" })
  T.near(ct(x), rn.conv2d_transpose(x, ct.kernel, ct.bias, { stride = 2, padding = "same" }), 0, 0, "transpose")
  -- Conv2D(groups=): group g of the output sees group g of the input only
  local g = L.Conv2D(4, 1, { groups = 2, use_bias = false })
  local yg = g(x)
  local x1 = x:narrow(4, 1, 3):contiguous()
  T.near(yg:narrow(4, 1, 2), rn.conv2d(x1, g.kernel:narrow(4, 1, 2):contiguous()), 1e-6, 1e-6, "group 1")
end)

T.test("conv layers: float64 gradients of the weights through each layer", function()
  rn.manual_seed(32)
  local function check(layer, shape)
    local x = rn.randn(shape, { dtype = "float64" })
    rn.no_grad(function() layer(x:float()) end) -- builds the weights (float32)
    layer:to("float64")
    local inputs = { x }
    for _, p in ipairs(layer:parameters()) do inputs[#inputs + 1] = p end
    local ok, err = pcall(gradcheck, function(a) return layer(a, { training = true }) end, inputs,
      { eps = 1e-2, atol = 1e-10, rtol = 1e-7 })
    assert(ok, layer.class_name .. ": " .. tostring(err))
  end
  check(L.DepthwiseConv2D(3, { depth_multiplier = 2, padding = "same" }), { 1, 5, 4, 3 })
  check(L.SeparableConv2D(2, 3, { strides = 2 }), { 1, 6, 5, 2 })
  check(L.Conv2DTranspose(2, 3, { strides = 2 }), { 1, 3, 3, 2 })
  check(L.Conv2D(4, 3, { groups = 2, padding = "same" }), { 1, 4, 4, 4 })
end)

T.test("conv layers: errors name the layer and the valid range", function()
  T.raises(function() L.Conv2D(6, 3, { groups = 4 }) end, "Conv2D: filters 6 must be divisible by groups 4")
  local x = L.Input({ 8, 8, 6 })
  T.raises(function() L.Conv2D(8, 3, { groups = 4 })(x) end, "the input's 6 channels are not divisible by groups 4")
  T.raises(function() L.DepthwiseConv2D() end, "DepthwiseConv2D: kernel_size %(argument 1%) is missing")
  T.raises(function() L.DepthwiseConv2D(3, { depth_multiplier = 0 }) end, "depth_multiplier must be an integer >= 1")
  T.raises(function() L.SeparableConv2D(4, 3, { kernel_initializer = "zeros" }) end,
    "unknown option 'kernel_initializer'")
  T.raises(function() L.Conv2DTranspose(4, 3, { padding = 1 }) end, "padding must be \"same\" or \"valid\"")
  T.raises(function() L.Conv2DTranspose(4, 3, { strides = 2, output_padding = 2 }) end,
    "output_padding must be integers >= 0 and smaller than the strides")
  local d = L.DepthwiseConv2D(3)
  d(rn.zeros({ 1, 5, 5, 4 }))
  T.raises(function() d(rn.zeros({ 1, 5, 5, 3 })) end, "input has 3 channels but the layer was built for 4")
end)

-- ---- merging and reshaping layers --------------------------------------------------

T.test("merge layers: Subtract, Multiply, Average, Maximum, Minimum values, broadcasting and errors", function()
  local a = rn.tensor({ { 1, 5, -2 }, { 4, 0, 3 } })
  local b = rn.tensor({ { 2, 1, -1 }, { 4, 7, -3 } })
  local c = rn.tensor({ { 0, 3, 9 } })                       -- (1,3): broadcasts over the batch
  T.eq(L.Subtract()({ a, b }):totable(), { { -1, 4, -1 }, { 0, -7, 6 } })
  T.eq(L.Multiply()({ a, b }):totable(), { { 2, 5, 2 }, { 16, 0, -9 } })
  T.eq(L.Average()({ a, b }):totable(), { { 1.5, 3, -1.5 }, { 4, 3.5, 0 } })
  T.eq(L.Maximum()({ a, b, c:expand({ 2, 3 }) }):totable(), { { 2, 5, 9 }, { 4, 7, 9 } })
  T.eq(L.Minimum()({ a, b }):totable(), { { 1, 1, -2 }, { 4, 0, -3 } })
  T.eq(L.Add()({ a, b, a }):totable(), { { 4, 11, -5 }, { 12, 7, 3 } })
  -- SE-style gating: (N,H,W,C) * (N,1,1,C)
  local x = L.Input({ 4, 4, 8 })
  local g = L.Reshape({ 1, 1, 8 })(L.GlobalAveragePooling2D()(x))
  T.eq(L.Multiply()({ x, g }).shape, { -1, 4, 4, 8 })
  local xr, gr = rn.randn({ 2, 4, 4, 8 }), rn.randn({ 2, 1, 1, 8 })
  T.near(L.Multiply()({ xr, gr }), xr * gr, 0, 0, "broadcast product")
  T.raises(function() L.Subtract()({ a, b, a }) end, "Subtract '.-': expects exactly 2 tensors, got 3")
  T.raises(function() L.Multiply()({ a, rn.zeros({ 2, 4 }) }) end, "shapes %(2, 3%) and %(2, 4%) differ")
  T.raises(function() L.Maximum()(a) end, "expects a list of at least 1 tensors")
  rn.manual_seed(33)
  local p, q = rn.randn({ 2, 3 }, { dtype = "float64" }), rn.randn({ 2, 3 }, { dtype = "float64" })
  for _, cls in ipairs({ "Subtract", "Multiply", "Average", "Maximum", "Minimum" }) do
    local layer = L[cls]()
    local ok, err = pcall(gradcheck, function(u, v) return layer({ u, v }) end, { p, q })
    assert(ok, cls .. ": " .. tostring(err))
  end
end)

T.test("reshaping layers: ZeroPadding2D, Cropping2D, Permute, RepeatVector", function()
  local x = rn.arange(12):reshape({ 1, 2, 3, 2 })          -- (1,2,3,2)
  local zp = L.ZeroPadding2D({ { 1, 0 }, { 0, 2 } })
  local y = zp(x)
  T.eq(y:size(), { 1, 3, 5, 2 })
  T.eq(y:sum():item(), x:sum():item())
  T.eq(y[1][1]:abs():sum():item(), 0, "the top row is zeros")
  T.eq(y[1][2][1]:totable(), { 0, 1 }, "x starts at row 2, column 1")
  T.eq(y[1][3][3]:totable(), { 10, 11 })
  T.eq(y[1][2][4]:totable(), { 0, 0 }, "right columns are zeros")
  T.eq(L.ZeroPadding2D()(x):size(), { 1, 4, 5, 2 }, "default 1 on each side")
  T.eq(L.ZeroPadding2D({ 2, 1 })(L.Input({ 5, 6, 3 })).shape, { -1, 9, 8, 3 })
  local cr = L.Cropping2D({ { 1, 0 }, { 1, 1 } })
  T.eq(cr(x):totable(), { { { { 8, 9 } } } })
  T.eq(cr(L.Input({ 5, 6, 3 })).shape, { -1, 4, 4, 3 })
  T.raises(function() L.Cropping2D(2)(L.Input({ 3, 9, 1 })) end, "leaves nothing of input")
  T.raises(function() L.ZeroPadding2D(-1) end, "padding must be integers >= 0")
  local pm = L.Permute({ 2, 1 })
  local m = rn.arange(6):reshape({ 1, 2, 3 })
  T.eq(pm(m):totable(), { { { 0, 3 }, { 1, 4 }, { 2, 5 } } })
  T.eq(pm(L.Input({ 7, 4 })).shape, { -1, 4, 7 })
  T.raises(function() L.Permute({ 1, 1 }) end, "dims must be a permutation of 1..2")
  local rv = L.RepeatVector(3)
  T.eq(rv(rn.tensor({ { 1, 2 } })):totable(), { { { 1, 2 }, { 1, 2 }, { 1, 2 } } })
  T.eq(rv(L.Input({ 5 })).shape, { -1, 3, 5 })
  -- gradients flow through each
  rn.manual_seed(34)
  for _, layer in ipairs({ L.ZeroPadding2D({ 1, 2 }), L.Cropping2D({ { 0, 1 }, { 1, 0 } }) }) do
    local ok, err = pcall(gradcheck, function(u) return layer(u) end, { rn.randn({ 1, 3, 3, 2 }, { dtype = "float64" }) })
    assert(ok, layer.class_name .. ": " .. tostring(err))
  end
  local ok, err = pcall(gradcheck, function(u) return rv(u) end, { rn.randn({ 2, 3 }, { dtype = "float64" }) })
  assert(ok, "RepeatVector: " .. tostring(err))
end)
