-- test_layers.lua - the layer library: output shapes of every layer type
-- (symbolic inference agrees with the eager result, incl. strides, TF "same"
-- padding and explicit padding), weight shapes and Keras auto names,
-- values of Dense/BatchNormalization against formulas, BN train/eval
-- switching and moving statistics, Dropout modes, initializer statistics and
-- fans, the l2/l1 regularizer value and gradient against the formula,
-- symbolic tensor queries, and the error of each misuse.
local T = require "t"
local rn = require "rn"
local layers = require "rn.layers"
local initializers = require "rn.initializers"
local regularizers = require "rn.regularizers"

local function shape_of(t) return t:size() end

-- applies layer to a symbolic Input and to a real batch of 2; both shapes must
-- agree (batch -1 vs 2) and equal want (without the batch dim)
local function check_shape(layer, in_shapes, want, msg)
  local single = type(in_shapes[1]) == "number"
  local list = single and { in_shapes } or in_shapes
  local syms, reals = {}, {}
  for i, s in ipairs(list) do
    syms[i] = layers.Input(s)
    local full = { 2 }
    for j, d in ipairs(s) do full[j + 1] = d end
    reals[i] = rn.randn(full)
  end
  local y = layer(single and syms[1] or syms)
  local expect_sym = { -1 }
  for i, d in ipairs(want) do expect_sym[i + 1] = d end
  T.eq(y:size(), expect_sym, (msg or layer.name) .. " symbolic")
  local r = layer(single and reals[1] or reals)
  local expect_real = { 2 }
  for i, d in ipairs(want) do expect_real[i + 1] = d end
  T.eq(shape_of(r), expect_real, (msg or layer.name) .. " eager")
  return y, r
end

T.test("Conv2D output shapes: valid/same, strides, dilation, explicit padding", function()
  check_shape(layers.Conv2D(8, 3), { 32, 32, 3 }, { 30, 30, 8 }, "valid")
  check_shape(layers.Conv2D(8, 3, { padding = "same" }), { 32, 32, 3 }, { 32, 32, 8 }, "same")
  check_shape(layers.Conv2D(8, 3, { strides = 2, padding = "same" }), { 32, 32, 3 }, { 16, 16, 8 }, "same s2")
  check_shape(layers.Conv2D(8, 3, { strides = 2, padding = "same" }), { 7, 9, 3 }, { 4, 5, 8 }, "same s2 odd")
  check_shape(layers.Conv2D(4, 3, { strides = 2 }), { 7, 8, 3 }, { 3, 3, 4 }, "valid s2")
  check_shape(layers.Conv2D(4, { 1, 5 }, { strides = { 1, 2 } }), { 6, 11, 2 }, { 6, 4, 4 }, "1x5 kernel")
  check_shape(layers.Conv2D(4, 3, { dilation_rate = 2 }), { 9, 9, 1 }, { 5, 5, 4 }, "dilation")
  check_shape(layers.Conv2D(4, 3, { padding = 1 }), { 6, 6, 1 }, { 6, 6, 4 }, "padding 1")
  check_shape(layers.Conv2D(4, 3, { padding = { 0, 1, 2, 0 } }), { 6, 6, 1 }, { 5, 6, 4 }, "padding t,b,l,r")
  local c = layers.Conv2D(5, 3, { use_bias = false })
  check_shape(c, { 8, 8, 2 }, { 6, 6, 5 })
  T.eq(c.kernel:size(), { 3, 3, 2, 5 }, "HWIO kernel")
  T.eq(c.bias, nil, "use_bias=false")
  local d = layers.Conv2D(5, 3)
  check_shape(d, { 8, 8, 2 }, { 6, 6, 5 })
  T.eq(d.bias:size(), { 5 })
  T.eq(d:count_params(), 3 * 3 * 2 * 5 + 5)
end)

T.test("Conv2D computes rn.conv2d with its weights, bias and activation", function()
  local c = layers.Conv2D(4, 3, { strides = 2, padding = "same", activation = "relu",
    bias_initializer = initializers.constant(0.1) })
  local x = rn.randn({ 2, 9, 9, 3 })
  local y = c(x)
  local ref = rn.conv2d(x, c.kernel, c.bias, { stride = 2, padding = "same" }):relu()
  T.near(y, ref, 1e-6)
  T.near(c.bias, rn.full({ 4 }, 0.1), 1e-7)
end)

T.test("pooling output shapes", function()
  check_shape(layers.MaxPooling2D(), { 8, 8, 3 }, { 4, 4, 3 }, "max 2")
  check_shape(layers.MaxPooling2D(3, { strides = 2 }), { 9, 9, 3 }, { 4, 4, 3 }, "max 3 s2")
  check_shape(layers.MaxPooling2D(3, { strides = 1, padding = "same" }), { 5, 7, 2 }, { 5, 7, 2 }, "max same")
  check_shape(layers.MaxPooling2D({ 2, 3 }), { 8, 9, 1 }, { 4, 3, 1 }, "max 2x3")
  check_shape(layers.AveragePooling2D(2), { 7, 7, 3 }, { 3, 3, 3 }, "avg 2 floor")
  check_shape(layers.AveragePooling2D(2, { padding = "same" }), { 7, 7, 3 }, { 4, 4, 3 }, "avg same")
  check_shape(layers.GlobalAveragePooling2D(), { 5, 6, 7 }, { 7 })
  check_shape(layers.GlobalAveragePooling2D({ keepdims = true }), { 5, 6, 7 }, { 1, 1, 7 })
  local _, r = check_shape(layers.AveragePooling2D(2), { 4, 4, 1 }, { 2, 2, 1 })
  T.eq(#r:size(), 4)
end)

T.test("Dense, Flatten, Reshape, Dropout, activations, BN: shapes", function()
  check_shape(layers.Dense(7), { 5 }, { 7 })
  check_shape(layers.Dense(7, { activation = "softmax" }), { 3, 5 }, { 3, 7 }, "dense on 3-d")
  check_shape(layers.Flatten(), { 3, 4, 5 }, { 60 })
  check_shape(layers.Reshape({ 4, -1 }), { 3, 4, 5 }, { 4, 15 })
  check_shape(layers.Dropout(0.5), { 6 }, { 6 })
  check_shape(layers.ReLU(), { 4, 4, 2 }, { 4, 4, 2 })
  for _, a in ipairs({ "relu", "softmax", "sigmoid", "tanh", "linear" }) do
    check_shape(layers.Activation(a), { 3, 4 }, { 3, 4 }, a)
  end
  check_shape(layers.BatchNormalization(), { 4, 4, 6 }, { 4, 4, 6 })
  check_shape(layers.Lambda(function(x) return x:sum(-1) end), { 4, 5 }, { 4 }, "lambda dry run")
end)

T.test("Add and Concatenate: shapes and values", function()
  local _, r = check_shape(layers.Add(), { { 4, 4, 2 }, { 4, 4, 2 }, { 4, 4, 2 } }, { 4, 4, 2 })
  T.eq(#r:size(), 4)
  check_shape(layers.Concatenate(), { { 4, 4, 2 }, { 4, 4, 3 } }, { 4, 4, 5 })
  check_shape(layers.Concatenate({ axis = 2 }), { { 3, 4, 2 }, { 5, 4, 2 } }, { 8, 4, 2 }, "axis 2")
  local a, b = rn.randn({ 2, 3 }), rn.randn({ 2, 3 })
  T.near(layers.Add()({ a, b }), a + b, 1e-7)
  local c = layers.Concatenate()({ a, b })
  T.near(c:narrow(2, 1, 3), a, 0)
  T.near(c:narrow(2, 4, 3), b, 0)
end)

T.test("Dense: y = x W + b with a (in, out) kernel; regularizers apply to it", function()
  local d = layers.Dense(3, { kernel_regularizer = regularizers.l2(0.5) })
  local x = rn.randn({ 4, 2 })
  local y = d(x)
  T.eq(d.kernel:size(), { 2, 3 })
  T.near(y, rn.matmul(x, d.kernel) + d.bias, 1e-6)
  local w = d.kernel:double():totable()
  local s = 0
  for _, row in ipairs(w) do for _, v in ipairs(row) do s = s + v * v end end
  T.near(d:regularization_loss():item(), 0.5 * s, 1e-6, 1e-6)
end)

T.test("l2 regularizer: value c*sum(w^2) and gradient 2cw (Keras' formula)", function()
  local w = rn.randn({ 3, 3, 2, 4 }, { dtype = "float64", requires_grad = true })
  local r = regularizers.l2(1e-4)(w)
  local s = 0
  for _, v in ipairs(w:reshape(-1):totable()) do s = s + v * v end
  T.near(r:item(), 1e-4 * s, 1e-15, 1e-12)
  r:backward()
  T.near(w.grad, w:detach() * 2e-4, 1e-15)
  local a = 0
  for _, v in ipairs(w:reshape(-1):totable()) do a = a + math.abs(v) end
  T.near(regularizers.l1(0.01)(w):item(), 0.01 * a, 1e-12, 1e-12)
  T.near(regularizers.l1_l2({ l1 = 0.01, l2 = 1e-4 })(w):item(), 0.01 * a + 1e-4 * s, 1e-12, 1e-12)
  T.eq(regularizers.l2().l2, 0.01, "Keras' default factor")
  T.eq(tostring(regularizers.l2(1e-4)), "l2(0.0001)")
end)

T.test("BatchNormalization: weights, train/eval switching, moving statistics", function()
  local bn = layers.BatchNormalization()
  local x = rn.randn({ 16, 3 }) * 2 + 5
  T.eq(bn.training, false, "layers start in inference mode, as Keras")
  local y = bn(x, { training = true })         -- training mode: batch statistics
  T.eq(bn.momentum, 0.99)
  T.eq(bn.epsilon, 1e-3)
  T.near(y:mean(1), rn.zeros({ 3 }), 1e-5)
  local w = bn:weights()
  T.eq(#w, 4)
  T.eq({ w[1].kind, w[2].kind, w[3].kind, w[4].kind }, { "gamma", "beta", "moving_mean", "moving_variance" })
  T.eq({ w[1].trainable, w[2].trainable, w[3].trainable, w[4].trainable }, { true, true, false, false })
  local total, tr, ntr = bn:count_params()
  T.eq({ total, tr, ntr }, { 12, 6, 6 })
  -- moving mean moved 1% toward the batch mean, the moving variance toward the
  -- biased batch variance (Keras)
  T.near(bn.moving_mean, x:mean(1) * 0.01, 1e-5)
  local xc = x - x:mean(1)
  local var = (xc * xc):mean(1)
  T.near(bn.moving_variance, var * 0.01 + 0.99, 1e-5)
  local mm = bn.moving_mean:clone()
  local ye = bn(x)                             -- no training option: inference mode, as Keras
  T.near(bn.moving_mean, mm, 0, 0, "inference leaves the moving stats alone")
  -- inference: (x - moving_mean) / sqrt(moving_var + eps) * gamma + beta
  local ref = (x - bn.moving_mean) / (bn.moving_variance + 1e-3):sqrt()
  T.near(ye, ref, 1e-5)
  T.truthy((ye - y):abs():max():item() > 0.5, "train and eval outputs differ")
  bn:eval()
  T.near(bn(x), ye, 0, 0, "eval(): inference mode")
  bn:train()                                   -- PyTorch's module.train(): calls train by default
  T.near(bn(x), y, 1e-5, 1e-5, "train(): batch statistics")
  -- per-call override (that training call moved the moving stats again)
  ref = (x - bn.moving_mean) / (bn.moving_variance + 1e-3):sqrt()
  T.near(bn(x, { training = false }), ref, 1e-5)
  -- a frozen BN (trainable=false) runs in inference mode and has no trainable weights
  local frozen = layers.BatchNormalization({ trainable = false })
  frozen(x, { training = true })
  local _, ftr = frozen:count_params()
  T.eq(ftr, 0)
  T.near(frozen(x), (x - frozen.moving_mean) / (frozen.moving_variance + 1e-3):sqrt(), 1e-5)
end)

T.test("BatchNormalization options: center/scale off, momentum, epsilon", function()
  rn.manual_seed(31)
  local bn = layers.BatchNormalization({ center = false, scale = false, momentum = 0.9, epsilon = 0.5 })
  local x = rn.randn({ 8, 2, 2, 3 })
  bn(x, { training = true })
  T.eq(#bn:weights(), 2)
  T.eq(bn:count_params(), 6)
  -- moving = 0.9*moving + 0.1*batch, the biased variance (Keras)
  local x2 = x:reshape({ -1, 3 })
  local mean = x2:mean(1)
  local var = ((x2 - mean) * (x2 - mean)):mean(1)
  T.near(bn.moving_mean, mean * 0.1, 1e-6)
  T.near(bn.moving_variance, var * 0.1 + 0.9, 1e-6)
  T.near(bn(x, { training = false }), (x - bn.moving_mean) / (bn.moving_variance + 0.5):sqrt(), 1e-6)
  -- unbiased = true: PyTorch's BatchNorm, var * N/(N-1) with N = 8*2*2 rows
  local bu = layers.BatchNormalization({ center = false, scale = false, momentum = 0.9, unbiased = true })
  bu(x, { training = true })
  T.near(bu.moving_variance, var * (32 / 31) * 0.1 + 0.9, 1e-6)
  T.raises(function() layers.BatchNormalization({ unbiased = "yes" }) end, "unbiased must be a boolean")
end)

T.test("Dropout: identity in eval mode, zeroes and rescales in training mode", function()
  local d = layers.Dropout(0.5)
  local x = rn.ones({ 1000 })
  T.near(d(x), x, 0, 0, "a call without training: inference mode (Keras)")
  local y = d(x, { training = true })
  local zeros = y:eq(0):float():sum():item()
  T.truthy(zeros > 350 and zeros < 650, "about half dropped: " .. zeros)
  T.near(y:max():item(), 2, 1e-6, 0, "kept values scaled by 1/(1-rate)")
  d:train()
  T.truthy(d(x):eq(0):float():sum():item() > 350, "train(): calls drop by default")
  d:eval()
  T.near(d(x), x, 0)
  T.near(layers.Dropout(0.5)(x, { training = false }), x, 0)
end)

T.test("ReLU options and activations' values", function()
  local x = rn.tensor({ -2, -0.5, 0.5, 3 })
  T.near(layers.ReLU()(x), rn.tensor({ 0, 0, 0.5, 3 }), 0)
  T.near(layers.ReLU({ max_value = 1 })(x), rn.tensor({ 0, 0, 0.5, 1 }), 0)
  T.near(layers.ReLU({ negative_slope = 0.1 })(x), rn.tensor({ -0.2, -0.05, 0.5, 3 }), 1e-7)
  local s = layers.Activation("softmax")(rn.tensor({ { 1, 2, 3 } }))
  local z = math.exp(1) + math.exp(2) + math.exp(3)
  T.near(s, { { math.exp(1) / z, math.exp(2) / z, math.exp(3) / z } }, 1e-7, 1e-6)
  T.near(layers.Activation("sigmoid")(rn.tensor({ 0, 2, -1 })),
    { 0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)) }, 1e-7, 1e-6)
end)

T.test("Keras-like automatic names", function()
  layers.reset_names()
  T.eq(layers.Conv2D(1, 1).name, "conv2d")
  T.eq(layers.Conv2D(1, 1).name, "conv2d_1")
  T.eq(layers.BatchNormalization().name, "batch_normalization")
  T.eq(layers.ReLU().name, "re_lu")
  T.eq(layers.GlobalAveragePooling2D().name, "global_average_pooling2d")
  T.eq(layers.MaxPooling2D().name, "max_pooling2d")
  T.eq(layers.Dense(2).name, "dense")
  T.eq(layers.Input({ 2 }).node.layer.name, "input_1")
  T.eq(layers.Input({ 2 }).node.layer.name, "input_2")
  T.eq(layers.Dense(2, { name = "head" }).name, "head")
  T.eq(layers.snake("BatchNormalization"), "batch_normalization")
end)

T.test("symbolic tensors: shape with unknown batch, size(d), shape[-1]", function()
  local x = layers.Input({ 32, 32, 3 })
  T.eq(x:size(), { -1, 32, 32, 3 })
  T.eq(x:size(-1), 3)
  T.eq(x:size(2), 32)
  T.eq(x.shape[-1], 3, "negative index as the seed's inputs.shape[-1]")
  T.eq(x:dim(), 4)
  T.eq(tostring(x.shape), "(None, 32, 32, 3)")
  T.raises(function() return x:size(5) end, "size: dim 5 outside 1..4")
  T.raises(function() return x + x end, "symbolic tensors have no arithmetic")
  local b = layers.Input({ 4 }, { batch_size = 8 })
  T.eq(b:size(1), 8)
end)

T.test("initializers: Keras fans, glorot/he ranges and spreads", function()
  T.eq({ initializers.fans({ 3, 3, 16, 32 }) }, { 144, 288 })
  T.eq({ initializers.fans({ 64, 10 }) }, { 64, 10 })
  T.eq({ initializers.fans({ 7 }) }, { 7, 7 })
  rn.manual_seed(11)
  local shape = { 3, 3, 64, 64 }
  local lim = math.sqrt(6 / (576 + 576))
  local g = initializers.glorot_uniform(shape)
  T.truthy(g:abs():max():item() <= lim, "within the glorot limit")
  local sd = ((g * g):mean():item()) ^ 0.5
  T.near(sd, lim / math.sqrt(3), 0, 0.03, "uniform stddev")
  local h = initializers.he_normal(shape)
  T.near(((h * h):mean():item()) ^ 0.5, math.sqrt(2 / 576), 0, 0.03, "he_normal stddev")
  T.truthy(h:abs():max():item() <= 2 * math.sqrt(2 / 576) / 0.87962566103423978 + 1e-6, "truncated at 2 sigma")
  local hu = initializers.he_uniform(shape)
  T.truthy(hu:abs():max():item() <= math.sqrt(6 / 576))
  T.near(initializers.zeros({ 2 }), rn.zeros({ 2 }), 0)
  T.near(initializers.ones({ 2 }), rn.ones({ 2 }), 0)
  -- layers accept names and functions
  local c = layers.Conv2D(2, 1, { kernel_initializer = "ones" })
  c(rn.zeros({ 1, 2, 2, 3 }))
  T.near(c.kernel, rn.ones({ 1, 1, 3, 2 }), 0)
  local d = layers.Dense(2, { kernel_initializer = function(s) return rn.full(s, 0.5) end })
  d(rn.zeros({ 1, 3 }))
  T.near(d.kernel, rn.full({ 3, 2 }, 0.5), 0)
end)

T.test("misuse: unknown options name the layer and the valid ones", function()
  T.raises(function() layers.Conv2D(8, 3, { stride = 2 }) end,
    "Conv2D: unknown option 'stride' (did you mean 'strides'?); valid options: activation, bias_initializer, "
    .. "bias_regularizer, dilation_rate, groups, kernel_initializer, kernel_regularizer, name, padding, strides, "
    .. "trainable, use_bias", true)
  T.raises(function() layers.BatchNormalization({ eps = 1e-5 }) end,
    "BatchNormalization: unknown option 'eps'")
  T.raises(function() layers.Dense(10, { activaton = "relu" }) end, "did you mean 'activation'")
  T.raises(function() layers.Dense(10, { activation = "swishy" }) end, "unknown activation 'swishy'")
  T.raises(function() layers.Conv2D(8) end, "kernel_size %(argument 2%) is missing")
  T.raises(function() layers.Conv2D(0, 3) end, "filters %(argument 1%) must be an integer >= 1")
  T.raises(function() layers.Conv2D(8, 3, { padding = "full" }) end, "padding must be")
  T.raises(function() layers.Dropout(1.5) end, "rate must be a number in %[0, 1%)")
  T.raises(function() layers.Input(32) end, "Input: shape must be a list")
  T.raises(function() layers.Conv2D(8, 3, { kernel_initializer = "magic" }) end, "unknown initializer 'magic'")
  T.raises(function() layers.Conv2D(8, 3, { kernel_regularizer = 5 }) end, "a regularizer must be")
  -- the error points at the caller's line
  local err = T.raises(function() layers.Conv2D(8, 3, { stride = 2 }) end, "stride")
  T.truthy(err:find("test_layers.lua", 1, true), "error located in the test file: " .. err)
end)

T.test("misuse: shapes that do not fit", function()
  local a, b = layers.Input({ 16, 16, 32 }), layers.Input({ 32, 32, 16 })
  T.raises(function() layers.Add()({ a, b }) end,
    "Add 'add[_%d]*': shapes %(None, 16, 16, 32%) and %(None, 32, 32, 16%) differ")
  T.raises(function() layers.Add()({ rn.zeros({ 2, 3 }), rn.zeros({ 2, 4 }) }) end, "shapes %(2, 3%) and %(2, 4%) differ")
  T.raises(function() layers.Add()(a) end, "expects a list of at least 1 tensors")
  local c = layers.Conv2D(4, 3)
  c(a)
  T.raises(function() c(b) end, "input has 16 channels but the layer was built for 32")
  T.raises(function() c(rn.zeros({ 1, 8, 8, 3 })) end, "input has 3 channels but the layer was built for 32")
  T.raises(function() layers.Conv2D(4, 3)(layers.Input({ 8, 8 })) end, "expects a 4%-d input")
  T.raises(function() layers.Conv2D(4, 5)(layers.Input({ 3, 3, 1 })) end, "the output would be empty")
  local d = layers.Dense(3)
  d(layers.Input({ 5 }))
  T.raises(function() d(rn.zeros({ 2, 6 })) end, "the last dim must be 5")
  T.raises(function() layers.Concatenate()({ layers.Input({ 2, 3 }), layers.Input({ 4, 3 }) }) end,
    "differ outside axis %-1")
  T.raises(function() layers.Dense(2)({ a, rn.zeros({ 1 }) }) end, "mix symbolic and real tensors")
  T.raises(function() layers.Dense(2)("x") end, "expected a tensor, a symbolic tensor or a list")
  T.raises(function() layers.ReLU()(rn.zeros({ 2 }), { train = true }) end, "unknown option 'train'")
end)
