-- test_model.lua - functional Model and Sequential: a DAG with a branch,
-- Add and Concatenate and a Sequential model each trained until the loss
-- falls below 0.7 of its start; user-defined Lua layers (add_weight/build/
-- call, and a block holding sublayers) trained inside Model and Sequential;
-- compile/train_step/test_step/predict; the manual loop with
-- regularization_loss; parameters/weights/state_dict; several inputs and
-- outputs; a model nested as a layer; summary text; losses and metrics
-- against their formulas; graph errors.
local T = require "t"
local rn = require "rn"
local layers = require "rn.layers"
local model_lib = require "rn.model"
local optim = require "rn.optim"
local losses = require "rn.losses"
local metrics = require "rn.metrics"
local regularizers = require "rn.regularizers"
local Model, Sequential = model_lib.Model, model_lib.Sequential

-- a learnable classification task: 3 classes from a fixed random linear teacher
local function teacher_data(n, d, seed)
  rn.manual_seed(seed or 5)
  local x = rn.randn({ n, d })
  local w = rn.randn({ d, 3 })
  local y = rn.matmul(x, w):argmax(-1)
  return x, y
end

-- the same for images (N, 8, 8, 2): class = which quadrant is brightest (of 3)
local function image_data(n, seed)
  rn.manual_seed(seed or 6)
  local x = rn.randn({ n, 8, 8, 2 }) * 0.5
  local y = (rn.rand({ n }) * 3):long():minimum(2)
  local yl = y:totable()
  for i = 1, n do
    local q = yl[i]
    local r0, c0 = (q == 1) and 5 or 1, (q == 2) and 5 or 1
    x:select(1, i):narrow(1, r0, 4):narrow(2, c0, 4):add_(1.5)
  end
  return x, y
end

local function train(model, opt, lossfn, x, y, steps, batch)
  local first, last
  local n = x:size(1)
  for s = 1, steps do
    local i = ((s - 1) * batch) % n + 1
    local xb, yb = x:narrow(1, i, batch), y:narrow(1, i, batch)
    opt:zero_grad()
    local loss = lossfn(model(xb, { training = true }), yb) + model:regularization_loss()
    loss:backward()
    opt:step()
    first = first or loss:item()
  end
  last = rn.no_grad(function()
    return (lossfn(model(x, { training = true }), y) + model:regularization_loss()):item()
  end)
  return first, last
end

T.test("functional DAG with a branch, Add and Concatenate trains (loss < 0.7x)", function()
  rn.manual_seed(1)
  local inputs = layers.Input({ 8, 8, 2 })
  local x = layers.Conv2D(8, 3, { padding = "same" })(inputs)
  x = layers.BatchNormalization()(x)
  x = layers.ReLU()(x)
  -- two branches
  local a = layers.Conv2D(8, 3, { padding = "same", kernel_regularizer = regularizers.l2(1e-4) })(x)
  local b = layers.Conv2D(8, 1)(x)
  local s = layers.Add()({ a, b })
  local p = layers.MaxPooling2D(2)(s)
  local q = layers.AveragePooling2D(2)(s)
  local c = layers.Concatenate()({ p, q })          -- (None, 4, 4, 16)
  local g = layers.GlobalAveragePooling2D()(c)
  local f = layers.Flatten()(c)
  local h = layers.Concatenate()({ g, layers.Dense(8, { activation = "relu" })(f) })
  local out = layers.Dense(3)(h)
  local model = Model(inputs, out)
  T.eq(out:size(), { -1, 3 })
  T.eq(#model.layers, 15)
  local xs, ys = image_data(192)
  local lossfn = losses.sparse_categorical_crossentropy({ from_logits = true })
  local opt = optim.Adam(model:parameters(), { lr = 0.01 })
  local first, last = train(model, opt, lossfn, xs, ys, 60, 32)
  T.truthy(last < 0.7 * first, string.format("loss %.4f -> %.4f", first, last))
  T.truthy(metrics.accuracy(model:predict(xs), ys) > 0.8, "learned the task")
end)

T.test("Sequential (dense regression) trains (loss < 0.7x); lazy build and add()", function()
  rn.manual_seed(2)
  local model = Sequential{ layers.Input({ 4 }), layers.Dense(16, { activation = "tanh" }), layers.Dense(1) }
  local x = rn.randn({ 128, 4 })
  local y = (x:narrow(2, 1, 1) * 2 - x:narrow(2, 3, 1) + 0.5):reshape(128)
  local opt = optim.SGD(model:parameters(), { lr = 0.05, momentum = 0.9 })
  local first, last = train(model, opt, losses.mean_squared_error(), x, y, 80, 32)
  T.truthy(last < 0.7 * first, string.format("loss %.4f -> %.4f", first, last))
  T.truthy(last < 0.1, "fits: " .. last)
  -- built on first call, then extended with add()
  local lazy = Sequential{ layers.Dense(5), layers.ReLU() }
  T.raises(function() lazy:summary() end, "not built yet")
  T.eq(lazy(rn.randn({ 3, 7 })):size(), { 3, 5 })
  lazy:add(layers.Dense(2))
  T.eq(lazy(rn.randn({ 3, 7 })):size(), { 3, 2 })
  T.eq(lazy.outputs[1]:size(), { -1, 2 })
  local with_shape = Sequential{ layers.Dense(3), input_shape = { 6 }, name = "seq6" }
  T.eq(with_shape.name, "seq6")
  T.eq(with_shape.outputs[1]:size(), { -1, 3 })
end)

-- ---- user-defined layers --------------------------------------------------------------

-- the documented pattern: a class with build (weights via add_weight) and call
local Scale = layers.Layer:extend("Scale")
function Scale:build(input_shape)
  self.gain = self:add_weight("gain", { input_shape[-1] }, { initializer = "ones" })
  self.shift = self:add_weight("shift", { input_shape[-1] }, { initializer = "zeros",
    regularizer = regularizers.l2(1e-3) })
end
function Scale:call(x)
  return x * self.gain + self.shift
end

-- a block made of other layers (sublayers are found in its fields)
local Block = layers.Layer:extend("Block")
function Block:init(ch, opts)
  layers.Layer.init(self, opts)
  self.conv = layers.Conv2D(ch, 3, { padding = "same" })
  self.bn = layers.BatchNormalization()
end
function Block:call(x, training)
  return self.bn(self.conv(x), { training = training }):relu() + x
end

T.test("a user-defined Lua layer trains inside a functional Model", function()
  rn.manual_seed(3)
  layers.reset_names()
  local x, y = teacher_data(256, 6)
  local inputs = layers.Input({ 6 })
  local scale = Scale()
  local h = scale(inputs)
  local out = layers.Dense(3)(h)
  local model = Model(inputs, out)
  T.eq(scale.name, "scale")
  T.eq(h:size(), { -1, 6 })
  local names = {}
  for _, w in ipairs(model:named_parameters()) do names[#names + 1] = w.name end
  T.eq(names, { "scale/gain", "scale/shift", "dense/kernel", "dense/bias" })
  local before = scale.gain:clone()
  local opt = optim.Adam(model:parameters(), { lr = 0.05 })
  local first, last = train(model, opt, losses.sparse_categorical_crossentropy({ from_logits = true }), x, y, 40, 64)
  T.truthy(last < 0.7 * first, string.format("loss %.4f -> %.4f", first, last))
  T.truthy((scale.gain - before):abs():max():item() > 1e-3, "its weights were trained")
  -- its regularizer is part of the model's
  local r = model:regularization_loss():item()
  T.near(r, 1e-3 * (scale.shift * scale.shift):sum():item(), 1e-9, 1e-5)
end)

T.test("user-defined layers plug into Sequential; a block's sublayers are tracked", function()
  rn.manual_seed(4)
  local x, y = image_data(128)
  local blk = Block(4)
  local model = Sequential{ layers.Input({ 8, 8, 2 }), layers.Conv2D(4, 1), blk, Scale(),
    layers.GlobalAveragePooling2D(), layers.Dense(3) }
  local total, tr, ntr = model:count_params()
  -- conv 2*4+4, block conv 3*3*4*4+4 + bn 4*4, scale 8, dense 4*3+3
  T.eq(total, 12 + 148 + 16 + 8 + 15)
  T.eq(ntr, 8)
  T.eq(tr, total - 8)
  local kinds = {}
  for _, w in ipairs(blk:weights()) do kinds[#kinds + 1] = w.name end
  -- sublayers in field-name order (bn, conv), each layer's weights in creation order
  T.eq(kinds, { blk.bn.name .. "/gamma", blk.bn.name .. "/beta",
    blk.bn.name .. "/moving_mean", blk.bn.name .. "/moving_variance", blk.conv.name .. "/kernel",
    blk.conv.name .. "/bias" })
  local opt = optim.Adam(model:parameters(), { lr = 0.02 })
  local first, last = train(model, opt, losses.sparse_categorical_crossentropy({ from_logits = true }), x, y, 40, 32)
  T.truthy(last < 0.7 * first, string.format("loss %.4f -> %.4f", first, last))
  -- train()/eval() reach the block's BN
  model:eval()
  T.eq(blk.bn.training, false)
  model:train()
  T.eq(blk.bn.training, true)
end)

-- ---- compile / steps --------------------------------------------------------------------

T.test("compile, train_step, test_step, predict", function()
  rn.manual_seed(8)
  local x, y = teacher_data(256, 5)
  local inputs = layers.Input({ 5 })
  local h = layers.Dense(16, { activation = "relu", kernel_regularizer = regularizers.l2(1e-3) })(inputs)
  local out = layers.Dense(3, { activation = "softmax" })(h)
  local model = Model(inputs, out)
  T.raises(function() model:train_step(x, y) end, "compile the model first")
  T.raises(function() model:compile({ loss = "mse" }) end, "optimizer is required")
  T.raises(function() model:compile({ optimizer = "sgd", loss = "hinge" }) end,
    "compile: losses.get: unknown loss hinge")
  T.raises(function() model:compile({ optimizer = "sgd", loss = "mse", metrics = { "auc" } }) end,
    "compile: metrics.get: unknown metric auc")
  T.raises(function() model:compile({ optimizer = "rmsprop", loss = "mse" }) end, "unknown optimizer rmsprop")
  model:compile({ optimizer = optim.Adam{ lr = 0.02 }, loss = "sparse_categorical_crossentropy",
    metrics = { "accuracy", metrics.top_k(2) } })
  T.eq(model.optimizer:num_params(), 4, "compile bound the model's parameters")
  local l0 = model:test_step(x, y)
  T.truthy(l0.loss > 0 and l0.accuracy >= 0 and l0.top_2 >= l0.accuracy)
  -- test_step's loss = the loss from probabilities + the l2 term
  local manual = rn.no_grad(function()
    return (losses.sparse_categorical_crossentropy()(model(x), y) + model:regularization_loss()):item()
  end)
  T.near(l0.loss, manual, 1e-6, 1e-6)
  local w = model:parameters()[1]:clone()
  model:test_step(x, y)
  T.near(model:parameters()[1], w, 0, 0, "test_step does not train")
  local logs
  for _ = 1, 30 do logs = model:train_step(x, y) end
  T.truthy(logs.loss and logs.accuracy and logs.top_2, "train_step logs")
  local l1 = model:test_step(x, y)
  T.truthy(l1.loss < 0.7 * l0.loss, string.format("loss %.4f -> %.4f", l0.loss, l1.loss))
  T.truthy(l1.accuracy > 0.8, "accuracy " .. l1.accuracy)
  local p = model:predict(x)
  T.eq(p:size(), { 256, 3 })
  T.eq(p.requires_grad, false)
  -- an optimizer given by name
  local m2 = Sequential{ layers.Input({ 5 }), layers.Dense(3) }
  m2:compile({ optimizer = "sgd", loss = losses.sparse_categorical_crossentropy({ from_logits = true }) })
  T.eq(m2.optimizer.name, "SGD")
  T.truthy(m2:train_step(x, y).loss > 0)
end)

T.test("the manual loop: zero_grad, loss + regularization_loss, backward, step", function()
  rn.manual_seed(9)
  local x, y = teacher_data(128, 4)
  local model = Sequential{ layers.Input({ 4 }),
    layers.Dense(8, { activation = "relu", kernel_regularizer = regularizers.l2(1e-2) }), layers.Dense(3) }
  local lossfn = losses.sparse_categorical_crossentropy({ from_logits = true })
  local opt = optim.SGD(model:parameters(), { lr = 0.1, momentum = 0.9 })
  local k = model.layers[2].kernel
  local reg = model:regularization_loss()
  T.near(reg:item(), 1e-2 * (k * k):sum():item(), 1e-9, 1e-5)
  local first
  for _ = 1, 40 do
    opt:zero_grad()
    local loss = lossfn(model(x), y) + model:regularization_loss()
    loss:backward()
    opt:step()
    first = first or loss:item()
  end
  local last = (lossfn(model(x), y) + model:regularization_loss()):item()
  T.truthy(last < 0.7 * first, string.format("loss %.4f -> %.4f", first, last))
end)

-- ---- structure --------------------------------------------------------------------------

T.test("parameters, weights, state_dict round trip", function()
  layers.reset_names()
  local m = Sequential{ layers.Input({ 3, 3, 2 }), layers.Conv2D(4, 3), layers.BatchNormalization(),
    layers.Flatten(), layers.Dense(2) }
  local names = {}
  for _, w in ipairs(m:weights()) do names[#names + 1] = w.name end
  T.eq(names, { "conv2d/kernel", "conv2d/bias", "batch_normalization/gamma", "batch_normalization/beta",
    "batch_normalization/moving_mean", "batch_normalization/moving_variance", "dense/kernel", "dense/bias" })
  T.eq(#m:parameters(), 6)
  T.eq(m:get_layer("dense").units, 2)
  local sd = m:state_dict()
  T.truthy(rn.is_tensor(sd["batch_normalization/moving_variance"]))
  local snapshot = {}
  for k, v in pairs(sd) do snapshot[k] = v:clone() end
  local x = rn.randn({ 5, 3, 3, 2 })
  local y0 = m:predict(x)
  rn.no_grad(function() for _, p in ipairs(m:parameters()) do p:add_(1) end end)
  T.truthy((m:predict(x) - y0):abs():max():item() > 1e-3)
  m:load_state_dict(snapshot)
  T.near(m:predict(x), y0, 1e-6)
  snapshot["dense/kernel"] = rn.zeros({ 3, 3 })
  T.raises(function() m:load_state_dict(snapshot) end, "'dense/kernel' has shape %(3, 3%), the model's weight is %(4, 2%)")
  snapshot["dense/kernel"] = nil
  T.raises(function() m:load_state_dict(snapshot) end, "no value for weight 'dense/kernel'")
  m:load_state_dict(snapshot, { strict = false })
end)

T.test("model:to(dtype) converts every weight (fields, entries, BN statistics)", function()
  local m = Sequential{ layers.Input({ 4, 4, 1 }), layers.Conv2D(2, 3), layers.BatchNormalization(),
    layers.Flatten(), layers.Dense(2) }
  local y32 = m:predict(rn.ones({ 1, 4, 4, 1 }))
  m:to("float64")
  for _, w in ipairs(m:weights()) do
    T.eq(w.tensor.dtype, "float64", w.name)
    T.eq(w.tensor.requires_grad, w.trainable, w.name)
  end
  T.eq(m.layers[2].kernel.dtype, "float64")
  T.eq(m.layers[3].moving_variance.dtype, "float64")
  local y64 = m:predict(rn.ones({ 1, 4, 4, 1 }, { dtype = "float64" }))
  T.near(y64:float(), y32, 1e-5)
  local opt = optim.SGD(m:parameters(), { lr = 0.1 })
  local loss = (m(rn.randn({ 3, 4, 4, 1 }, { dtype = "float64" })) ^ 2):mean()
  loss:backward()
  opt:step()
  T.eq(m.layers[5].kernel.grad.dtype, "float64")
end)

T.test("several inputs and outputs; a model used as a layer", function()
  local a, b = layers.Input({ 4 }), layers.Input({ 6 })
  local h = layers.Concatenate()({ layers.Dense(5)(a), layers.Dense(5)(b) })
  local o1, o2 = layers.Dense(2)(h), layers.Dense(1)(h)
  local m = Model({ a, b }, { o1, o2 })
  local ys = m({ rn.randn({ 3, 4 }), rn.randn({ 3, 6 }) })
  T.eq(ys[1]:size(), { 3, 2 })
  T.eq(ys[2]:size(), { 3, 1 })
  -- nested: an encoder model called on a new Input inside a bigger model
  local ein = layers.Input({ 4 })
  local enc = Model(ein, layers.Dense(3, { activation = "relu" })(ein), { name = "encoder" })
  local inp = layers.Input({ 4 })
  local z = enc(inp)
  T.eq(z:size(), { -1, 3 })
  local outer = Model(inp, layers.Dense(1)(z))
  T.eq(outer:count_params(), (4 * 3 + 3) + (3 + 1))
  T.eq(#outer:parameters(), 4)
  T.eq(outer(rn.randn({ 2, 4 })):size(), { 2, 1 })
  -- freezing the nested model takes its weights out of the outer parameters
  enc.trainable = false
  T.eq(#outer:parameters(), 2)
  T.eq(select(3, outer:count_params()), 4 * 3 + 3)
  enc.trainable = true
  enc:set_trainable(false)
  T.eq(enc.layers[2].trainable, false)
  T.eq(#outer:parameters(), 2)
  enc:set_trainable(true)
  T.eq(#outer:parameters(), 4)
  local s = outer:summary({ print = false })
  T.truthy(s:find("encoder (Model)", 1, true), s)
end)

T.test("summary: Keras layout, totals, print=false returns the string", function()
  layers.reset_names()
  local inputs = layers.Input({ 8, 8, 3 })
  local x = layers.Conv2D(4, 3, { padding = "same" })(inputs)
  local y = layers.Conv2D(4, 1)(inputs)
  local out = layers.Dense(2)(layers.GlobalAveragePooling2D()(layers.Add()({ x, y })))
  local m = Model(inputs, out, { name = "tiny" })
  local s = m:summary({ print = false })
  T.truthy(s:find('Model: "tiny"', 1, true))
  T.truthy(s:find(" Layer (type)", 1, true) and s:find("Output Shape", 1, true)
    and s:find("Param #", 1, true) and s:find("Connected to", 1, true), s)
  T.truthy(s:find("input_1 %(InputLayer%)%s+%[%(None, 8, 8, 3%)%]"), s)
  T.truthy(s:find("conv2d %(Conv2D%)%s+%(None, 8, 8, 4%)%s+112%s+%['input_1%[0%]%[0%]'%]"), s)
  T.truthy(s:find("add %(Add%)%s+%(None, 8, 8, 4%)%s+0%s+%['conv2d%[0%]%[0%]',"), s)
  T.truthy(s:find("'conv2d_1[0][0]']", 1, true), s)
  T.truthy(s:find("Total params: 138\nTrainable params: 138\nNon-trainable params: 0", 1, true), s)
  local f = m:summary({ print = false, flops = true })
  -- conv2d: 8*8*4*27 MACs; conv2d_1: 8*8*4*3; dense 4*2
  T.truthy(f:find("Forward per sample: " .. model_lib.commas(8 * 8 * 4 * 27 + 8 * 8 * 4 * 3 + 8)
    .. " multiply%-accumulates"), f)
  T.truthy(f:find("FLOPs") and f:find("Activations"), f)
  local seq = Sequential{ layers.Input({ 3 }), layers.Dense(2) }:summary({ print = false })
  T.truthy(not seq:find("Connected to", 1, true) and not seq:find("InputLayer", 1, true), seq)
  T.raises(function() m:summary({ flop = true }) end, "unknown option 'flop'")
end)

T.test("graph errors: disconnected input, duplicate names, wrong input shape", function()
  local a, b = layers.Input({ 4 }), layers.Input({ 4 })
  local s = layers.Add()({ a, b })
  T.raises(function() Model(a, s) end, "graph is disconnected: it needs input 'input_%d+'")
  local d = layers.Dense(2, { name = "same" })(a)
  local e = layers.Dense(2, { name = "same" })(d)
  T.raises(function() Model(a, e) end, "two different layers are named 'same'")
  local m = Model(a, layers.Dense(2)(a))
  T.raises(function() m(rn.zeros({ 3, 5 })) end, "input 1 has shape %(3, 5%) but the model expects %(None, 4%)")
  T.raises(function() m({ rn.zeros({ 3, 4 }), rn.zeros({ 3, 4 }) }) end, "expects 1 input tensor")
  T.raises(function() Model(rn.zeros({ 2 }), a) end, "is a real tensor, not a symbolic tensor")
  T.raises(function() Model(s, s) end, "each input must come from layers.Input")
  T.raises(function() Sequential{ layers.Dense(2), 5 } end, "element 2 is a number, not a layer")
end)

-- ---- losses and metrics -------------------------------------------------------------------

T.test("sparse categorical cross-entropy: from probabilities (Keras clipping) and from logits", function()
  local logits = rn.tensor({ { 2, 0.5, -1 }, { 0.1, 0.2, 3 }, { -30, 30, 0 } }, { dtype = "float64" })
  local y = rn.tensor({ 0, 2, 0 }, { dtype = "int64" })
  local p = rn.softmax(logits, -1)
  -- Keras: log(clip(p, 1e-7, 1-1e-7)) fed to the softmax cross-entropy
  local pt = p:totable()
  local want = 0
  for i, row in ipairs(pt) do
    local lsum = 0
    for _, v in ipairs(row) do lsum = lsum + math.min(math.max(v, 1e-7), 1 - 1e-7) end
    local py = math.min(math.max(row[({ 1, 3, 1 })[i]], 1e-7), 1 - 1e-7)
    want = want - math.log(py) + math.log(lsum)
  end
  want = want / 3
  T.near(losses.sparse_categorical_crossentropy()(p, y):item(), want, 1e-9, 1e-9)
  -- row 3's label probability (e^-60) is below the clip: the clipped branch is exercised,
  -- and without the clip the loss would be about 60/3, not -log(1e-7)/3 ~ 5.4
  T.truthy(pt[3][1] < 1e-7, "row 3 is clipped")
  -- from logits = the exact cross-entropy
  local exact = losses.sparse_categorical_crossentropy({ from_logits = true })(logits, y):item()
  T.near(exact, rn.cross_entropy(logits, y):item(), 1e-12)
  T.truthy(exact > losses.sparse_categorical_crossentropy()(p, y):item() + 10,
    "from probabilities the clip caps row 3's term at -log(1e-7)")
  -- label smoothing: (1-s)*onehot + s/C
  local s = 0.1
  local ls = losses.sparse_categorical_crossentropy({ from_logits = true, label_smoothing = s })(logits, y):item()
  local lp = rn.log_softmax(logits, -1):totable()
  local ref = 0
  for i, row in ipairs(lp) do
    for c, v in ipairs(row) do
      local t = (c == ({ 1, 3, 1 })[i] and (1 - s) or 0) + s / 3
      ref = ref - t * v
    end
  end
  T.near(ls, ref / 3, 1e-9, 1e-9)
  -- uint8 and float labels, (N,1) labels
  T.near(losses.sparse_categorical_crossentropy({ from_logits = true })(logits, y:byte():reshape(3, 1)):item(), exact, 1e-12)
  T.near(losses.sparse_categorical_crossentropy({ from_logits = true })(logits, y:double()):item(), exact, 1e-12)
  T.raises(function() losses.sparse_categorical_crossentropy({ from_logit = true }) end, "unknown option 'from_logit'")
  T.raises(function() losses.sparse_categorical_crossentropy()(p, rn.zeros({ 2 }, { dtype = "int64" })) end,
    "has 2 labels but y_pred")
end)

T.test("categorical cross-entropy and mean squared error", function()
  local logits = rn.tensor({ { 1, 2, 3 }, { 0, 0, 1 } }, { dtype = "float64" })
  local onehot = rn.tensor({ { 0, 0, 1 }, { 1, 0, 0 } }, { dtype = "float64" })
  local y = rn.tensor({ 2, 0 }, { dtype = "int64" })
  T.near(losses.categorical_crossentropy({ from_logits = true })(logits, onehot):item(),
    rn.cross_entropy(logits, y):item(), 1e-12)
  T.near(losses.categorical_crossentropy()(rn.softmax(logits, -1), onehot):item(),
    rn.cross_entropy(logits, y):item(), 1e-9)
  local a, b = rn.tensor({ { 1 }, { 2 }, { 4 } }), rn.tensor({ 0, 2, 1 })
  T.near(losses.mean_squared_error()(a, b):item(), (1 + 0 + 9) / 3, 1e-6)
  T.near(losses.get("mse")(a, b:reshape(3, 1)):item(), 10 / 3, 1e-6)
  T.raises(function() losses.mean_squared_error()(rn.zeros({ 3, 2 }), rn.zeros({ 3 })) end, "must have the same shape")
  T.raises(function() losses.get("hinge") end, "unknown loss hinge")
end)

T.test("metrics: accuracy (sparse, one-hot, binary) and top-k", function()
  local p = rn.tensor({ { 0.1, 0.7, 0.2 }, { 0.5, 0.3, 0.2 }, { 0.2, 0.3, 0.5 }, { 0.4, 0.35, 0.25 } })
  local y = rn.tensor({ 1, 0, 1, 2 }, { dtype = "int64" })
  T.near(metrics.accuracy(p, y), 0.5, 1e-7)
  T.near(metrics.accuracy(p, y:byte()), 0.5, 1e-7)
  local onehot = rn.tensor({ { 0, 1, 0 }, { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } })
  T.near(metrics.accuracy(p, onehot), 0.5, 1e-7)
  T.near(metrics.top_k(2)(p, y), 0.75, 1e-7)
  T.near(metrics.top_k(3)(p, y), 1, 1e-7)
  T.near(metrics.top_k(1)(p, y), 0.5, 1e-7)
  T.near(metrics.accuracy(rn.tensor({ { 0.9 }, { 0.2 } }), rn.tensor({ 1, 1 })), 0.5, 1e-7)
  local m = metrics.Mean()
  m:update(1, 2):update(4)
  T.near(m:result(), 2, 1e-12)
end)
