-- test_fit.lua - the training loop: fit lowers the loss on a learnable task,
-- validation and logs, callbacks (early stop, lr schedule, checkpoint),
-- non-finite loss detection, evaluate/predict_all/confusion matrix, and a
-- resumed run that equals an uninterrupted one bit for bit.
local T = require "t"
local rn = require "rn"
local layers = require "rn.layers"
local model_mod = require "rn.model"
local optim = require "rn.optim"
local fit = require "rn.fit"

-- 8x8x1 images whose class is where a bright square sits (4 quadrants)
local function dataset(n, seed)
  rn.manual_seed(seed)
  local img = rn.rand({n, 8, 8, 1}, {high = 60})
  local lab = {}
  for i = 1, n do
    local c = (i - 1) % 4
    lab[i] = c
    local r, q = (c // 2) * 4 + 1, (c % 2) * 4 + 1
    img[i]:narrow(1, r, 4):narrow(2, q, 4):fill_(220)
  end
  return img:byte(), rn.tensor(lab, {dtype = "int64"})
end

local function dag_model()
  layers.reset_names()
  local inp = layers.Input({8, 8, 1})
  local a = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(6, 3, {padding = "same"})(inp)))
  local b = layers.Conv2D(6, 1)(inp)
  local x = layers.Add()({a, b})
  x = layers.Dropout(0.1)(x)
  x = layers.Flatten()(layers.MaxPooling2D(2)(x)) -- keeps where the square is
  return model_mod.Model(inp, layers.Dense(4)(x))
end

local function compiled(m, lr)
  m:compile{optimizer = optim.SGD{lr = lr or 0.1, momentum = 0.9},
            loss = rn.losses.sparse_categorical_crossentropy{from_logits = true},
            metrics = {"accuracy"}}
  return m
end

local function loaders(seed)
  local xi, yi = dataset(256, seed)
  local xv, yv = dataset(64, seed + 1)
  local opts = {batch_size = 32, seed = 3, augment = false, mean = {0.5}, std = {0.3}, workers = 1}
  return rn.data.Loader(xi, yi, opts), rn.data.Loader(xv, yv, opts)
end

local sink = {write = function() end, flush = function() end}

T.test("fit lowers the loss and reports validation, logs and curves", function()
  local train, val = loaders(1)
  rn.manual_seed(5)
  local m = compiled(dag_model())
  local log, png = os.tmpname() .. ".csv", os.tmpname() .. ".png"
  local h = m:fit(train, {epochs = 4, validation = val, out = sink, log = log, plot = png})
  T.eq(#h, 4)
  T.truthy(h[4].loss < 0.6 * h[1].loss, string.format("loss %.3f -> %.3f", h[1].loss, h[4].loss))
  T.truthy(h[4].val_accuracy > 0.6, "val accuracy " .. h[4].val_accuracy)
  T.truthy(h[1].images_per_s > 0 and h[1].lr == 0.1)
  local csv = io.open(log):read("a")
  T.truthy(csv:match("^epoch,") and select(2, csv:gsub("\n", "")) == 5, csv)
  T.eq(io.open(png):read(4), "\137PNG")
  os.remove(log); os.remove(png)
  local ev = m:evaluate(val)
  T.near(ev.accuracy, h[4].val_accuracy, 1e-9)
  local out, lab = m:predict_all(val)
  T.eq(out:size(), {64, 4}); T.eq(lab:size(), {64})
  local cm = m:confusion_matrix(val, 4)
  T.eq(cm.total, 64)
  T.near(cm.accuracy, ev.accuracy, 1e-9)
  local rows = 0
  for t = 1, 4 do for p = 1, 4 do rows = rows + cm[t][p] end end
  T.eq(rows, 64)
  T.truthy(cm:format({"tl", "tr", "bl", "br"}):find("overall accuracy", 1, true))
  -- fit trains through train_step (training = true) and leaves the layers'
  -- mode alone: model(x) afterwards is inference, as in Keras
  local xb = dataset(8, 9):float() / 255
  T.eq(m.training, false)
  T.near(m(xb), m:predict(xb), 1e-5, 1e-5, "model(x) after fit: inference mode (predict folds conv+BN)")
  T.truthy((m(xb, {training = true}) - m:predict(xb)):abs():max():item() > 1e-3, "training mode differs")
end)

T.test("progress: one clean line per epoch when output is not a terminal", function()
  local train = loaders(2)
  local m = compiled(dag_model())
  local lines = {}
  local out = {write = function(_, ...) lines[#lines + 1] = table.concat({...}) end, flush = function() end}
  m:fit(train, {epochs = 2, out = out})
  local text = table.concat(lines)
  T.truthy(text:match("^Epoch 1/2 %- 8/8 %- %d+:%d%d %- loss: [%d.]+ %- accuracy: [%d.]+ %- %d+ img/s\nEpoch 2/2"), text)
  T.truthy(not text:find("\r", 1, true), "no carriage returns in a log")
end)

T.test("progress: a log gets a line at a steady interval while an epoch runs", function()
  local P = require "rn.progress"
  local lines = {}
  local out = {write = function(_, ...) lines[#lines + 1] = table.concat({...}) end, flush = function() end}
  -- interval 0.05 s: the first update after it prints, an update right after does not
  local bar = P.new{total = 10, title = "Epoch 1/3", out = out, tty = false, interval = 0.05}
  bar:update(1, {loss = 2.5}, 32)
  T.eq(#lines, 0, "nothing before the interval has passed")
  local t0 = rn._clock()
  while rn._clock() - t0 < 0.06 do end
  bar:update(4, {loss = 2.25, accuracy = 0.5}, 128)
  bar:update(5, {loss = 2.0, accuracy = 0.5}, 160)
  T.eq(#lines, 1, table.concat(lines))
  T.truthy(lines[1]:match("^Epoch 1/3 %- step 4/10 %- 0:00 %- ETA: 0:00 %- loss: 2%.2500 %- accuracy: 0%.5000 %- %d+ img/s\n$"), lines[1])
  bar:finish({loss = 2.0})
  T.eq(#lines, 2)
  T.truthy(lines[2]:match("^Epoch 1/3 %- 10/10 %- "), lines[2])
  -- interval 0: no lines while the epoch runs
  lines = {}
  bar = P.new{total = 10, out = out, tty = false, interval = 0}
  t0 = rn._clock()
  while rn._clock() - t0 < 0.01 do end
  bar:update(3, {loss = 1}, 10)
  T.eq(#lines, 0)
end)

T.test("resume: stopped mid-epoch and resumed equals an uninterrupted run, bitwise", function()
  local function run(stop_at, resume_path, save_path)
    local train = loaders(7)
    rn.manual_seed(11)
    local m = compiled(dag_model(), 0.05)
    local cbs = {}
    if stop_at then
      local n = 0
      cbs[1] = {on_batch_end = function() n = n + 1; if n == stop_at then return "stop" end end}
    end
    m:fit(train, {epochs = 3, out = sink, callbacks = cbs, save = save_path, resume = resume_path})
    return m
  end
  local full = run()
  local path = os.tmpname()
  run(13, nil, path)           -- epoch 2, batch 5 of 8: then "killed"
  rn.manual_seed(999)          -- the resumed process starts from other state
  local resumed = run(nil, path, path)
  local a, b = full:state_dict(), resumed:state_dict()
  local n = 0
  for k, t in pairs(a) do
    n = n + 1
    T.eq(b[k]:totable(), t:totable(), k)
  end
  T.truthy(n > 8)
  os.remove(path)
end)

T.test("callbacks: early stopping, lr schedule, model checkpoint", function()
  local train, val = loaders(3)
  local m = compiled(dag_model())
  local lrs = {}
  local dir = os.tmpname(); os.remove(dir); os.execute("mkdir -p " .. dir)
  local h = m:fit(train, {epochs = 6, validation = val, out = sink, callbacks = {
    fit.callbacks.LearningRateScheduler(function(epoch) return 0.1 * 0.5 ^ (epoch - 1) end),
    {on_epoch_begin = function(_, ctx) lrs[#lrs + 1] = ctx.optimizer:get_lr(1) end},
    fit.callbacks.ModelCheckpoint{path = dir .. "/w{epoch}.ckpt", monitor = "val_loss"},
    fit.callbacks.EarlyStopping{monitor = "loss", patience = 1, min_delta = 10},
  }})
  T.eq(#h, 2, "min_delta 10 cannot be met: stops after patience 1")
  T.eq(lrs, {0.1, 0.05})
  local m2 = compiled(dag_model())
  m2:load_weights(dir .. "/w2.ckpt")
  T.near(m2:evaluate(val).loss, m:evaluate(val).loss, 1e-6)
  os.execute("rm -rf " .. dir)
end)

T.test("a non-finite loss stops training and names the epoch and step", function()
  local train = loaders(4)
  local m = compiled(dag_model(), 1e30)
  T.raises(function() m:fit(train, {epochs = 3, out = sink}) end, "fit: the loss is %-?[nai][anf][nf]? at epoch %d+, step %d+")
end)

T.test("fit errors: uncompiled model, bad options, bad resume file", function()
  local train = loaders(5)
  local m = dag_model()
  T.raises(function() m:fit(train, {epochs = 1}) end, "compile the model first")
  m = compiled(m)
  T.raises(function() m:fit(train, {epochs = 0}) end, "epochs must be an integer >= 1, got 0")
  T.raises(function() m:fit(train, {epoch = 1}) end, "unknown option 'epoch'")
  T.raises(function() m:fit({}, {epochs = 1}) end, "must be a loader")
  local bad = os.tmpname()
  io.open(bad, "w"):write("not a checkpoint"):close()
  T.raises(function() m:fit(train, {epochs = 1, resume = bad}) end, bad)
  os.remove(bad)
end)

T.test("BNRecalibration: moving statistics become the average of the training batches' statistics", function()
  local train, val = loaders(9)
  rn.manual_seed(9)
  local L = rn.layers
  local inp = L.Input({8, 8, 1})
  local bn = L.BatchNormalization()
  local out = L.Dense(4, {activation = "softmax"})(L.Flatten()(bn(L.Conv2D(3, 3, {padding = "same"})(inp))))
  local m = compiled(rn.Model(inp, out))
  local conv = m.layers[2]
  T.eq(conv.class_name, "Conv2D")
  -- the batch means of the BN input over the first 3 batches of epoch 1
  local means, vars, k = {}, {}, 0
  rn.no_grad(function()
    for x in train:epoch(1) do
      k = k + 1
      local h = conv(x)
      local mu = h:mean({1, 2, 3})
      means[k] = mu
      vars[k] = ((h - mu) * (h - mu)):mean({1, 2, 3})
      if k == 3 then break end
    end
  end)
  local cb = rn.fit.callbacks.BNRecalibration{loader = train, batches = 3}
  cb.run(m)
  T.near(bn.moving_mean, (means[1] + means[2] + means[3]) / 3, 1e-6, 1e-5, "moving mean")
  T.near(bn.moving_variance, (vars[1] + vars[2] + vars[3]) / 3, 1e-6, 1e-5, "moving variance (biased, as Keras)")
  T.eq(bn.momentum, 0.99, "the layer's momentum is restored")
  -- in fit: runs before each validation (on_validation_begin)
  local seen = {}
  local spy = {on_validation_begin = function(e) seen[#seen + 1] = e end}
  m:fit(train, {epochs = 2, validation = val, out = sink, callbacks = {cb, spy}})
  T.eq(seen, {1, 2})
  T.raises(function() rn.fit.callbacks.BNRecalibration{} end, "loader= %(the training loader%) is required")
end)
