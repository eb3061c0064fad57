-- fit.lua - the training loop: model:fit, model:evaluate, model:predict_all,
-- the confusion matrix, callbacks (learning-rate schedule, checkpoint,
-- early stop, CSV/JSON-lines log), and training state saved so that a run
-- resumes exactly where it stopped.
--
--   model:compile{optimizer = rn.optim.SGD{lr = 0.1, momentum = 0.9},
--                 loss = "sparse_categorical_crossentropy", metrics = {"accuracy"}}
--   local history = model:fit(train_loader, {epochs = 10, validation = test_loader,
--                             save = "run.ckpt", log = "run.csv", plot = "run.png"})
--
-- A loader is anything with :epoch(e [, skip]) -> iterator of (x, y) and
-- :num_batches() (rn.data.Loader is one). Epochs count from 1.
--
-- Device data: for a model on cuda, fit and evaluate replace a loader made
-- by rn.data.Loader from tensors in memory with its device-resident twin
-- (rn.data.to_device: the data set uploaded once, each batch gathered and
-- augmented on the GPU, bit for bit the CPU loader's batches); other
-- loaders' batches are moved to the model's device one by one. Option
-- device_data: nil (that default), false (always the loader as given), true
-- (the device path is required: an error says why it cannot be taken).
--
-- Resume: with save = path, the whole training state is written atomically
-- after every epoch (and every save_every steps): weights (trainable and
-- batch-norm statistics), optimizer state, the random generator, the epoch,
-- the number of batches done in it, the running sums of the epoch's logs
-- and the history. fit{resume = path} restores all of it and continues; on
-- the CPU the result equals an uninterrupted run bit for bit (tested),
-- because every kernel is deterministic for a given thread count and the
-- data pipeline's order and augmentation depend only on (seed, epoch, index).
local rn = require "rn"
local Progress = require "rn.progress"
local ckpt = require "rn.checkpoint"

local M = { callbacks = {} }

local FORMAT = "rnlua-fit-state"

local function fail(fmt, ...) error(string.format(fmt, ...), 3) end

local function check_opts(who, o, valid)
  o = o or {}
  if type(o) ~= "table" then fail("%s: options must be a table, got %s", who, type(o)) end
  local ok = {}
  for _, k in ipairs(valid) do ok[k] = true end
  for k in pairs(o) do
    if not ok[k] then
      table.sort(valid)
      fail("%s: unknown option '%s' (valid: %s)", who, tostring(k), table.concat(valid, ", "))
    end
  end
  return o
end

local function check_loader(who, v, what)
  local ok = false
  if type(v) == "table" or type(v) == "userdata" then
    local fine, has = pcall(function() return v.epoch ~= nil and v.num_batches ~= nil end)
    ok = fine and has
  end
  if not ok then
    fail("%s: %s must be a loader with :epoch() and :num_batches() (rn.data.Loader), got %s",
      who, what, type(v))
  end
end

-- ---- training state --------------------------------------------------------------------

-- Splits the optimizer's state_dict into tensors (for the checkpoint's
-- checksummed payload) and plain values (for its metadata).
local function optimizer_to_ckpt(opt, tensors)
  local sd = opt:state_dict()
  local plain = { iterations = sd.iterations, name = sd.name, param_groups = sd.param_groups, state = {} }
  for id, st in pairs(sd.state) do
    local p = {}
    for k, v in pairs(st) do
      if rn.is_tensor(v) then tensors[string.format("optim/%d/%s", id, k)] = v else p[k] = v end
    end
    plain.state[tostring(id)] = p
  end
  return plain
end

local function optimizer_from_ckpt(plain, tensors)
  local sd = { iterations = plain.iterations, name = plain.name, param_groups = plain.param_groups, state = {} }
  for sid, p in pairs(plain.state or {}) do
    local id = math.tointeger(tonumber(sid))
    local st = {}
    for k, v in pairs(p) do st[k] = v end
    sd.state[id] = st
  end
  for name, t in pairs(tensors) do
    local id, k = name:match("^optim/(%d+)/(.+)$")
    if id then
      id = math.tointeger(tonumber(id))
      sd.state[id] = sd.state[id] or {}
      sd.state[id][k] = t
    end
  end
  return sd
end

--- M.save_state(path, model, state): the training state (see the header).
function M.save_state(path, model, state)
  local tensors = {}
  for name, t in pairs(model:state_dict()) do tensors["model/" .. name] = t end
  local meta = {
    format = FORMAT, version = 1,
    epoch = state.epoch, batch = state.batch, done = state.done or false,
    sums = state.sums, seen = state.seen, history = state.history,
    rng = rn.get_rng_state(),
    optimizer = model.optimizer and optimizer_to_ckpt(model.optimizer, tensors) or nil,
  }
  ckpt.save(path, { tensors = tensors, meta = meta })
end

-- Checks the metadata fields of a training state before anything uses them:
-- every error names the file and the field.
local function check_state_meta(path, meta)
  local function bad(field, want, v)
    fail("resume: %s: field '%s' must be %s, got %s", path, field, want,
      type(v) == "number" and tostring(v) or type(v))
  end
  local function int(field, v, lo)
    if math.type(v) ~= "integer" or v < lo then bad(field, "an integer >= " .. lo, v) end
  end
  int("epoch", meta.epoch, 1)
  int("batch", meta.batch, 0)
  if meta.done ~= nil and type(meta.done) ~= "boolean" then bad("done", "a boolean", meta.done) end
  if meta.seen ~= nil then int("seen", meta.seen, 0) end
  if meta.sums ~= nil then
    if type(meta.sums) ~= "table" then bad("sums", "a table of numbers", meta.sums) end
    for k, v in pairs(meta.sums) do
      if type(k) ~= "string" then bad("sums", "keyed by metric names", k) end
      if type(v) ~= "number" then bad("sums." .. k, "a number", v) end
    end
  end
  if meta.history ~= nil then
    if type(meta.history) ~= "table" then bad("history", "a list of per-epoch logs", meta.history) end
    for i, h in pairs(meta.history) do
      if math.type(i) ~= "integer" or i < 1 or i > #meta.history then
        bad("history", "a list of per-epoch logs", i)
      end
      if type(h) ~= "table" then bad("history[" .. i .. "]", "a table of numbers", h) end
      for k, v in pairs(h) do
        if type(k) ~= "string" then bad("history[" .. i .. "]", "keyed by metric names", k) end
        if type(v) ~= "number" then bad("history[" .. i .. "]." .. k, "a number", v) end
      end
    end
  end
  if type(meta.rng) ~= "table" then bad("rng", "a table of 4 integers", meta.rng) end
  for i = 1, 4 do
    if math.type(meta.rng[i]) ~= "integer" then bad("rng[" .. i .. "]", "an integer", meta.rng[i]) end
  end
  if meta.optimizer ~= nil and type(meta.optimizer) ~= "table" then
    bad("optimizer", "a table", meta.optimizer)
  end
  if meta.optimizer and meta.optimizer.state ~= nil then
    if type(meta.optimizer.state) ~= "table" then bad("optimizer.state", "a table", meta.optimizer.state) end
    for sid, p in pairs(meta.optimizer.state) do
      if not math.tointeger(tonumber(sid)) then bad("optimizer.state", "keyed by parameter numbers", sid) end
      if type(p) ~= "table" then bad("optimizer.state." .. tostring(sid), "a table", p) end
    end
  end
end

--- M.load_state(path, model) -> state: restores weights, optimizer and RNG
--- into model (built and compiled like the saved one).
function M.load_state(path, model)
  local c = ckpt.load(path)
  local meta = c.meta
  if type(meta) ~= "table" or meta.format ~= FORMAT then
    fail("resume: %s is not an rnlua training state (format '%s')", path, tostring(meta and meta.format))
  end
  check_state_meta(path, meta)
  local weights = {}
  for name, t in pairs(c.tensors) do
    local w = name:match("^model/(.+)$")
    if w then weights[w] = t end
  end
  local ok, err = pcall(model.load_state_dict, model, weights)
  if not ok then fail("resume: %s does not fit this model: %s", path, tostring(err)) end
  if meta.optimizer then
    if not model.optimizer then fail("resume: %s holds optimizer state; compile the model first", path) end
    ok, err = pcall(model.optimizer.load_state_dict, model.optimizer, optimizer_from_ckpt(meta.optimizer, c.tensors))
    if not ok then fail("resume: %s: %s", path, tostring(err)) end
  end
  rn.set_rng_state(meta.rng)
  return meta
end

-- ---- logs ---------------------------------------------------------------------------------

local function log_keys(history)
  local keys, seen = { "epoch" }, { epoch = true }
  for _, h in ipairs(history) do
    local ks = {}
    for k in pairs(h) do if not seen[k] then ks[#ks + 1] = k end end
    table.sort(ks)
    for _, k in ipairs(ks) do seen[k] = true; keys[#keys + 1] = k end
  end
  return keys
end

local function fmt_num(v)
  if type(v) ~= "number" then return tostring(v) end
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
  return string.format("%.6g", v)
end

--- Writes the whole history as CSV (path ends in .csv) or JSON lines
--- (otherwise), replacing the file atomically (temp file + rename).
function M.write_log(path, history)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then fail("log: cannot write %s: %s", path, tostring(err)) end
  if path:match("%.csv$") then
    local keys = log_keys(history)
    f:write(table.concat(keys, ","), "\n")
    for _, h in ipairs(history) do
      local row = {}
      for i, k in ipairs(keys) do row[i] = h[k] == nil and "" or fmt_num(h[k]) end
      f:write(table.concat(row, ","), "\n")
    end
  else
    for _, h in ipairs(history) do
      local keys, parts = log_keys({ h }), {}
      for _, k in ipairs(keys) do
        local v = h[k]
        local s = type(v) == "number" and fmt_num(v) or string.format("%q", tostring(v))
        if s == "nan" or s == "inf" or s == "-inf" then s = '"' .. s .. '"' end
        parts[#parts + 1] = string.format('"%s": %s', k, s)
      end
      f:write("{", table.concat(parts, ", "), "}\n")
    end
  end
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then os.remove(tmp); fail("log: cannot write %s: %s", path, tostring(rerr)) end
end

-- ---- callbacks ----------------------------------------------------------------------------
-- A callback is a table with any of: on_train_begin(ctx), on_epoch_begin(epoch, ctx),
-- on_batch_end(step, logs, ctx), on_validation_begin(epoch, ctx),
-- on_epoch_end(epoch, logs, ctx), on_train_end(ctx).
-- ctx = {model =, optimizer =, history =, stop = false, epoch =}; set ctx.stop = true
-- (or return "stop") to end training after the current batch or epoch.

--- LearningRateScheduler(fn): sets every group's lr to fn(epoch, lr) at the
--- start of each epoch (epochs count from 1).
function M.callbacks.LearningRateScheduler(fn)
  if type(fn) ~= "function" then fail("LearningRateScheduler: expected a function(epoch, lr)") end
  return { on_epoch_begin = function(epoch, ctx)
    for gi, g in ipairs(ctx.optimizer.param_groups) do
      local lr = fn(epoch, ctx.optimizer:get_lr(gi))
      if type(lr) ~= "number" or lr < 0 then
        error(string.format("LearningRateScheduler: epoch %d gave lr %s; expected a number >= 0", epoch, tostring(lr)), 0)
      end
      g.lr = lr
    end
  end }
end

local function monitor_opts(who, o, defaults)
  o = check_opts(who, o, { "monitor", "mode", "patience", "min_delta", "path", "save_best_only" })
  local monitor = o.monitor or defaults.monitor
  local mode = o.mode or (monitor:match("acc") and "max" or "min")
  if mode ~= "min" and mode ~= "max" then fail("%s: mode must be 'min' or 'max', got '%s'", who, tostring(mode)) end
  return o, monitor, mode
end

local function improved(mode, v, best, delta)
  if best == nil then return true end
  if mode == "min" then return v < best - delta end
  return v > best + delta
end

--- EarlyStopping{monitor = "val_loss", patience = 3, min_delta = 0, mode = auto}
function M.callbacks.EarlyStopping(o)
  local opts, monitor, mode = monitor_opts("EarlyStopping", o, { monitor = "val_loss" })
  local patience, delta = opts.patience or 3, opts.min_delta or 0
  local best, wait = nil, 0
  return { on_epoch_end = function(epoch, logs, ctx)
    local v = logs[monitor]
    if v == nil then
      error(string.format("EarlyStopping: '%s' is not in the epoch's logs (have: %s)", monitor,
        table.concat(log_keys({ logs }), ", ")), 0)
    end
    if improved(mode, v, best, delta) then best, wait = v, 0
    else
      wait = wait + 1
      if wait >= patience then
        ctx.stop = true
        ctx.stop_reason = string.format("early stop at epoch %d: %s did not improve for %d epochs (best %.4f)",
          epoch, monitor, patience, best)
      end
    end
  end }
end

--- ModelCheckpoint{path =, monitor = "val_loss", save_best_only = false}:
--- writes the model's weights (model:save_weights format: a checkpoint of
--- tensors) after each epoch, or only when the monitored value improved.
--- "{epoch}" in path is replaced by the epoch number.
function M.callbacks.ModelCheckpoint(o)
  local opts, monitor, mode = monitor_opts("ModelCheckpoint", o, { monitor = "val_loss" })
  if type(opts.path) ~= "string" then fail("ModelCheckpoint: path is required") end
  local best
  return { on_epoch_end = function(epoch, logs, ctx)
    local v = logs[monitor]
    if opts.save_best_only then
      if v == nil then error(string.format("ModelCheckpoint: '%s' is not in the epoch's logs", monitor), 0) end
      if not improved(mode, v, best, 0) then return end
      best = v
    end
    M.save_weights(ctx.model, (opts.path:gsub("{epoch}", tostring(epoch))))
  end }
end

--- model weights alone (all of them, batch-norm statistics included)
--- BNRecalibration{loader =, batches = 20}: before each validation (and
--- when called as cb:run(model)), recomputes every BatchNormalization's moving
--- mean and variance as the plain average of the batch statistics of
--- `batches` training batches (training-mode forwards, no gradients, no
--- weight change). With few steps, momentum 0.99's moving statistics still
--- lean on their initial values and inference is near chance; this is the
--- usual remedy ("BN recalibration"). Deterministic: the loader's first
--- batches of epoch 1.
function M.callbacks.BNRecalibration(o)
  o = o or {}
  if o.loader == nil then error("BNRecalibration: loader= (the training loader) is required", 2) end
  local batches = o.batches or 20
  if math.type(batches) ~= "integer" or batches < 1 then
    error("BNRecalibration: batches must be an integer >= 1, got " .. tostring(batches), 2)
  end
  local cb = {}
  function cb.run(model)
    local bns = {}
    for _, node in ipairs(model._order or {}) do
      local l = node.layer
      if l.class_name == "BatchNormalization" and l.moving_mean then bns[#bns + 1] = l end
    end
    if #bns == 0 then return end
    local saved = {}
    for i, l in ipairs(bns) do saved[i] = l.momentum end
    local ok, err = pcall(function()
      rn.no_grad(function()
        local k = 0
        local p1 = model:parameters()[1]
        local dev = p1 and p1.device or "cpu"
        for x in o.loader:epoch(1) do
          k = k + 1
          -- momentum (k-1)/k: after k batches the moving value is their mean
          for _, l in ipairs(bns) do l.momentum = (k - 1) / k end
          if rn.is_tensor(x) and x.device ~= dev then x = x:to(dev) end
          model(x, { training = true })
          if k >= batches then break end
        end
      end)
    end)
    for i, l in ipairs(bns) do l.momentum = saved[i] end
    if not ok then error(err, 0) end
  end
  function cb.on_validation_begin(_, ctx) cb.run(ctx.model) end
  return cb
end

function M.save_weights(model, path)
  local d = rn.distributed
  if d and d.is_initialized() and d.world_size() > 1 and d.rank() ~= 0 then return end -- rank 0 writes
  local tensors = {}
  for name, t in pairs(model:state_dict()) do tensors[name] = t end
  ckpt.save(path, { tensors = tensors, meta = { format = "rnlua-weights", version = 1 } })
end

function M.load_weights(model, path)
  local c = ckpt.load(path)
  if type(c.meta) ~= "table" or (c.meta.format ~= "rnlua-weights" and c.meta.format ~= FORMAT) then
    fail("load_weights: %s holds no rnlua weights", path)
  end
  local w = {}
  for name, t in pairs(c.tensors) do
    if c.meta.format == FORMAT then
      local n = name:match("^model/(.+)$")
      if n then w[n] = t end
    else w[name] = t end
  end
  model:load_state_dict(w)
  return model
end

-- ---- the loop -----------------------------------------------------------------------------

local function call_cbs(cbs, event, ...)
  for _, cb in ipairs(cbs) do
    local f = cb[event]
    if f then
      local r = f(...)
      if r == "stop" then return true end
    end
  end
  return false
end

local function add_logs(sums, logs, n)
  for k, v in pairs(logs) do sums[k] = (sums[k] or 0) + v * n end
end

local function averages(sums, seen)
  local out = {}
  for k, v in pairs(sums) do out[k] = seen > 0 and v / seen or 0 / 0 end
  return out
end

-- The device of the model's weights: batches are moved there (a loader
-- prepares them on the CPU).
local function model_device(model)
  local ws = model:weights()
  return ws[1] and ws[1].tensor.device or "cpu"
end

local function on(dev, t)
  if rn.is_tensor(t) and t.device ~= dev then return t:to(dev) end
  return t
end

-- The loader fit/evaluate iterate for a model on dev (see the header).
local function data_for(who, loader, dev, want)
  if want == false then return loader end
  if dev ~= "cuda" then
    if want then fail("%s: device_data = true needs the model on cuda (it is on %s)", who, dev) end
    return loader
  end
  local ok, dl, why = pcall(rn.data.to_device, loader, dev)
  if ok and dl then return dl end
  if want then fail("%s: device_data = true: %s", who, tostring(ok and why or dl)) end
  if not ok then error(dl, 0) end -- e.g. out of device memory: not hidden
  return loader
end

local function batch_size_of(y)
  return rn.is_tensor(y) and y:size(1) or 1
end

local function finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

--- model:evaluate(loader [, {steps =, verbose =}]) -> logs {loss =, <metrics>}
--- averaged over samples, in inference mode.
function M.evaluate(model, loader, opts)
  opts = check_opts("evaluate", opts, { "steps", "verbose", "epoch", "device_data", "_dist" })
  check_loader("evaluate", loader, "the data")
  local dev = model_device(model)
  loader = data_for("evaluate", loader, dev, opts.device_data)
  local total = loader:num_batches()
  if opts.steps then total = math.min(total, opts.steps) end
  local bar = opts.verbose and Progress.new { total = total, title = "Evaluate" } or nil
  local sums, seen, step = {}, 0, 0
  for x, y in loader:epoch(opts.epoch or 1) do
    step = step + 1
    local n = batch_size_of(y)
    if n > 0 then -- (a data-parallel shard may be empty)
      add_logs(sums, model:test_step(on(dev, x), on(dev, y)), n)
      seen = seen + n
    end
    if bar then bar:update(step, averages(sums, seen), seen) end
    if step >= total then break end
  end
  if opts._dist then sums, seen = opts._dist:reduce_sums(sums, seen) end
  local avg = averages(sums, seen)
  if bar then bar:finish(avg) end
  return avg
end

--- model:predict_all(loader) -> outputs of every batch concatenated (N, ...),
--- and the labels (N) when the loader yields them.
function M.predict_all(model, loader, opts)
  opts = check_opts("predict_all", opts, { "steps" })
  check_loader("predict_all", loader, "the data")
  local outs, labels, step = {}, {}, 0
  local dev = model_device(model)
  for x, y in loader:epoch(1) do
    step = step + 1
    outs[#outs + 1] = model:predict(on(dev, x)):cpu()
    if rn.is_tensor(y) then labels[#labels + 1] = y end
    if opts.steps and step >= opts.steps then break end
  end
  if #outs == 0 then fail("predict_all: the loader yielded no batches") end
  return rn.concat(outs, 1), #labels > 0 and rn.concat(labels, 1) or nil
end

--- model:confusion_matrix(loader, num_classes) -> cm where cm[t][p] counts
--- samples of true class t-1 predicted as class p-1, with cm.per_class
--- (accuracy of each class), cm.accuracy and cm:format(class_names).
function M.confusion_matrix(model, loader, num_classes, opts)
  if math.type(num_classes) ~= "integer" or num_classes < 1 then
    fail("confusion_matrix: num_classes must be an integer >= 1, got %s", tostring(num_classes))
  end
  local cm = {}
  for t = 1, num_classes do
    cm[t] = {}
    for p = 1, num_classes do cm[t][p] = 0 end
  end
  local total, right = 0, 0
  opts = check_opts("confusion_matrix", opts, { "steps" })
  local step = 0
  local dev = model_device(model)
  for x, y in loader:epoch(1) do
    step = step + 1
    local pred = model:predict(on(dev, x)):argmax(-1):totable()
    local truth = y:totable()
    for i, t in ipairs(truth) do
      local p = pred[i]
      if t < 0 or t >= num_classes or p >= num_classes then
        fail("confusion_matrix: class %d outside 0..%d", math.max(t, p), num_classes - 1)
      end
      cm[t + 1][p + 1] = cm[t + 1][p + 1] + 1
      total = total + 1
      if t == p then right = right + 1 end
    end
    if opts.steps and step >= opts.steps then break end
  end
  cm.per_class = {}
  for t = 1, num_classes do
    local n = 0
    for p = 1, num_classes do n = n + cm[t][p] end
    cm.per_class[t] = n > 0 and cm[t][t] / n or 0 / 0
  end
  cm.accuracy = total > 0 and right / total or 0 / 0
  cm.total = total
  cm.format = M.format_confusion
  return cm
end

--- cm:format([class names]) -> a printable table with per-class accuracy.
function M.format_confusion(cm, names)
  local n = #cm
  local lines = {}
  local function name(i) return names and names[i] or tostring(i - 1) end
  local w = 10
  for i = 1, n do w = math.max(w, #name(i) + 1) end
  local head = { string.format("%-" .. w .. "s", "true\\pred") }
  for p = 1, n do head[#head + 1] = string.format("%7s", name(p):sub(1, 6)) end
  head[#head + 1] = "  accuracy"
  lines[1] = table.concat(head)
  for t = 1, n do
    local row = { string.format("%-" .. w .. "s", name(t)) }
    for p = 1, n do row[#row + 1] = string.format("%7d", cm[t][p]) end
    row[#row + 1] = string.format("  %7.2f%%", 100 * cm.per_class[t])
    lines[#lines + 1] = table.concat(row)
  end
  lines[#lines + 1] = string.format("overall accuracy %.2f%% of %d samples", 100 * cm.accuracy, cm.total)
  return table.concat(lines, "\n")
end

local FIT_OPTS = { "epochs", "validation", "callbacks", "verbose", "save", "save_every", "resume",
  "log", "plot", "steps_per_epoch", "stop_on_nan", "out", "device_data", "distributed", "cuda_graph" }

--- model:fit(loader, opts) -> history (a list of per-epoch logs)
--- opts: epochs (required), validation (a loader), callbacks (list),
--- verbose (default true), save (training-state path, written after each
--- epoch), save_every (also every N steps), resume (a training-state path,
--- or true to resume from save when it exists), log (a .csv or .jsonl path
--- rewritten each epoch), plot (a .png of the curves, redrawn each epoch),
--- distributed (true: data-parallel across the ranks of rn.distributed,
--- doc/distributed.md), steps_per_epoch (cap), stop_on_nan (default true: stop with an error
--- naming the epoch and step of a non-finite loss), out (default io.stdout),
--- device_data (nil/true/false: the device-resident data path, see the header),
--- cuda_graph (nil: on the GPU each step after the warm-up is one replayed
--- CUDA graph, lua/rn/graph.lua; false or $RN_CUDA_GRAPH=0: eager).
function M.fit(model, loader, opts)
  opts = check_opts("fit", opts, FIT_OPTS)
  check_loader("fit", loader, "the training data")
  if not model.loss_fn or not model.optimizer then
    fail("fit: compile the model first (model:compile{optimizer =, loss =, metrics =})")
  end
  local epochs = opts.epochs
  if math.type(epochs) ~= "integer" or epochs < 1 then
    fail("fit: epochs must be an integer >= 1, got %s", tostring(epochs))
  end
  if opts.validation ~= nil then check_loader("fit", opts.validation, "validation") end
  if opts.save_every ~= nil and (math.type(opts.save_every) ~= "integer" or opts.save_every < 1) then
    fail("fit: save_every must be an integer >= 1, got %s", tostring(opts.save_every))
  end
  if opts.save_every and not opts.save then fail("fit: save_every needs save = path") end
  if opts.device_data ~= nil and type(opts.device_data) ~= "boolean" then
    fail("fit: device_data must be a boolean or nil, got %s", type(opts.device_data))
  end
  if opts.cuda_graph ~= nil and type(opts.cuda_graph) ~= "boolean" then
    fail("fit: cuda_graph must be a boolean or nil, got %s", type(opts.cuda_graph))
  end
  local cbs = opts.callbacks or {}
  if type(cbs) ~= "table" then fail("fit: callbacks must be a list of tables") end
  local verbose = opts.verbose ~= false
  local out = opts.out or io.stdout
  local stop_on_nan = opts.stop_on_nan ~= false

  local history, start_epoch, skip, sums, seen = {}, 1, 0, {}, 0
  local resume = opts.resume
  -- (never io.open: opening a FIFO would block; load_state refuses non-files)
  if resume == true then resume = opts.save and rn.path_kind(opts.save) and opts.save or nil end
  if resume then
    local st = M.load_state(resume, model)
    history = st.history or {}
    if st.done then start_epoch, skip = st.epoch + 1, 0
    else start_epoch, skip, sums, seen = st.epoch, st.batch, st.sums or {}, st.seen or 0 end
    if verbose then
      out:write(string.format("resumed from %s at epoch %d, batch %d\n", resume, start_epoch, skip))
    end
  end

  -- data-parallel (doc/distributed.md): shards the loaders, syncs rank 0's
  -- state; rank 0 alone prints and writes files; stop decisions are agreed
  local dp = opts.distributed and require("rn.distributed")._fit_begin(model, loader, opts) or nil
  local root = not dp or dp.is_root
  if not root then verbose = false end
  local function agree(flag) if dp then return dp:agree(flag) end return flag end

  local ctx = { model = model, optimizer = model.optimizer, history = history, stop = false }
  call_cbs(cbs, "on_train_begin", ctx)
  loader = data_for("fit", loader, model_device(model), opts.device_data)
  local nb = loader:num_batches()
  local steps = opts.steps_per_epoch and math.min(nb, opts.steps_per_epoch) or nb
  -- issue 19: whole-step graphs (lua/rn/graph.lua), not with distributed steps
  local graph_lib = require "rn.graph"
  local gb = not dp and graph_lib.wanted(opts.cuda_graph, model_device(model))
  local stepper = gb and graph_lib.Stepper(model, gb) or nil
  M._last_stepper = stepper
  local function run_epochs()
  for epoch = start_epoch, epochs do
    ctx.epoch = epoch
    if call_cbs(cbs, "on_epoch_begin", epoch, ctx) then ctx.stop = true end
    ctx.stop = agree(ctx.stop)
    if ctx.stop then break end
    local bar = verbose and Progress.new { total = steps, title = string.format("Epoch %d/%d", epoch, epochs), out = out } or nil
    local step, t0 = skip, rn._clock()
    local seen0 = seen
    local dev = model_device(model)
    if step < steps then
      for x, y in loader:epoch(epoch, skip) do
        step = step + 1
        local logs, n
        if dp then logs, n = dp:train_step(on(dev, x), on(dev, y)) -- global logs and count
        elseif stepper then logs, n = stepper:step(on(dev, x), on(dev, y)), batch_size_of(y)
        else logs, n = model:train_step(on(dev, x), on(dev, y)), batch_size_of(y) end
        if stop_on_nan and not finite(logs.loss) then
          error(string.format("fit: the loss is %s at epoch %d, step %d; stopping (pass stop_on_nan = false to go on)",
            fmt_num(logs.loss), epoch, step), 0)
        end
        add_logs(sums, logs, n)
        seen = seen + n
        if bar then bar:update(step, averages(sums, seen), seen - seen0) end
        if call_cbs(cbs, "on_batch_end", step, logs, ctx) then ctx.stop = true end
        ctx.stop = agree(ctx.stop)
        if root and opts.save_every and step % opts.save_every == 0 and step < steps then
          M.save_state(opts.save, model, { epoch = epoch, batch = step, sums = sums, seen = seen, history = history })
        end
        if ctx.stop or step >= steps then break end
      end
    end
    if ctx.stop and step < steps then
      -- stopped mid-epoch: keep the position so that resume continues here
      if opts.save and root then
        M.save_state(opts.save, model, { epoch = epoch, batch = step, sums = sums, seen = seen, history = history })
      end
      if bar then out:write("\n") end
      break
    end
    local logs = averages(sums, seen)
    local train_time = rn._clock() - t0
    if opts.validation then
      call_cbs(cbs, "on_validation_begin", epoch, ctx)
      for k, v in pairs(M.evaluate(model, opts.validation, { device_data = opts.device_data, _dist = dp })) do
        logs["val_" .. k] = v
      end
    end
    logs.epoch = epoch
    logs.lr = model.optimizer:get_lr(1)
    logs.time = rn._clock() - t0
    logs.images_per_s = train_time > 0 and (seen - seen0) / train_time or nil
    if bar then
      local shown = {}
      for k, v in pairs(logs) do if k ~= "epoch" and k ~= "time" and k ~= "lr" and k ~= "images_per_s" then shown[k] = v end end
      bar:finish(shown)
    end
    history[#history + 1] = logs
    if call_cbs(cbs, "on_epoch_end", epoch, logs, ctx) then ctx.stop = true end
    ctx.stop = agree(ctx.stop)
    sums, seen, skip = {}, 0, 0
    if opts.save and root then
      M.save_state(opts.save, model, { epoch = epoch, batch = 0, done = true, history = history })
    end
    if opts.log and root then M.write_log(opts.log, history) end
    if opts.plot and root then rn.plot.training_curves(history, opts.plot) end
    if ctx.stop then
      if ctx.stop_reason and verbose then out:write(ctx.stop_reason, "\n") end
      break
    end
  end
  end
  if stepper then -- the graph's pool goes back however the epochs end
    local ok_fit, err_fit = pcall(run_epochs)
    stepper:close()
    if not ok_fit then error(err_fit, 0) end
  else
    run_epochs()
  end
  if dp then dp:unshard() end -- the loaders serve whole batches again
  call_cbs(cbs, "on_train_end", ctx)
  return history
end

--- Adds fit, evaluate, predict_all, confusion_matrix, save_weights and
--- load_weights to a Model class.
function M.install(Model)
  Model.fit = M.fit
  Model.evaluate = M.evaluate
  Model.predict_all = M.predict_all
  Model.confusion_matrix = M.confusion_matrix
  Model.save_weights = M.save_weights
  Model.load_weights = M.load_weights
  Model.save_state = M.save_state
  Model.load_state = M.load_state
end

return M
