-- profile.lua - model:profile(x, y, {steps=3}): where a training step's time
-- goes, layer by layer.
--
--   model:compile{optimizer = rn.optim.SGD{lr = 0.01}, loss = "sparse_categorical_crossentropy"}
--   local p = model:profile(x, y, {steps = 3})   -- prints the table, returns the numbers
--
-- It runs `steps` real training steps (zero_grad, forward, loss with the
-- regularization terms, backward, optimizer step: the work of
-- model:train_step without the metrics) and times them:
--   - forward, per layer: wall time around each layer call of the model's
--     graph (taken in Lua; a layer called several times adds up);
--   - backward, per layer: every autograd node records the id of the layer
--     whose forward made it (rn.core._profile_set_scope), and the reverse pass
--     adds each node's time (its backward rule and the accumulation of its
--     gradients) to that layer (core/autograd.c);
--   - loss: the loss function and regularization terms, forward and backward;
--   - optimizer: opt:step();
--   - other: the rest of the measured step (zero_grad, graph bookkeeping,
--     the reverse pass's own overhead, reading the loss).
-- Figures are milliseconds per step, averaged over the steps. On a GPU the
-- device is synchronized around each timed region (forward only; backward
-- times on a GPU are launch times).
-- Issue 19: on a GPU each row also has gpu_forward_ms / gpu_backward_ms,
-- the device's time from CUDA events recorded at each region's edges and
-- at every autograd node (core/cuda/evprof.c; the span on the stream, idle
-- gaps inside a region included), res.gpu_step_ms (the step's span on the
-- device) and res.gpu_optimizer_ms; $RN_PROFILE_EVENTS=0 turns them off.
-- The model must be compiled, or opts must give optimizer= and loss= (an
-- rn.optim optimizer or name; a loss function or name); opts.optimizer and
-- opts.loss override the compiled ones. opts.print=false keeps it quiet;
-- opts.warmup (default 0) untimed steps first.
-- After the per-layer table it prints the layers summed by type (all Conv2D
-- layers together, ...), largest first: res.by_type.
-- On the CPU each Conv2D row also names the kernel its forward ran
-- (rn.cpu.conv_kernels(): oneDNN's implementation with its ISA, e.g.
-- "jit_wino_4x3:avx512_core", or "im2col+openblas (why)"): row.kernel.
local layers = require "rn.layers"
local Model = require("rn.model").Model
local core = require "rn.core"

local fail = layers._fail

local M = {}

local function clock() return core._clock() end

local function resolve(self, o)
  local rn = require "rn"
  local opt, loss = o.optimizer or self.optimizer, o.loss or self.loss_fn
  if opt == nil or loss == nil then
    fail("%s profile: the model is not compiled and opts lack %s; compile it " ..
      "(model:compile{optimizer=, loss=}) or pass {optimizer=, loss=}", self:who(),
      (opt == nil and loss == nil) and "optimizer= and loss=" or (opt == nil and "optimizer=" or "loss="))
  end
  if type(opt) == "string" then
    local ok, v = pcall(rn.optim.get, opt)
    if not ok then fail("%s profile: %s", self:who(), tostring(v):gsub("^[^:]*:%d+: ", "")) end
    opt = v
  end
  if type(opt) ~= "table" or not opt.step then
    fail("%s profile: optimizer must be an rn.optim optimizer or a name (\"sgd\", \"adam\", \"adamw\"), got %s",
      self:who(), type(opt))
  end
  if opt:num_params() == 0 then opt:set_params(self:parameters()) end
  if type(loss) ~= "function" then
    local ok, v = pcall(rn.losses.get, loss)
    if not ok then fail("%s profile: %s", self:who(), tostring(v):gsub("^[^:]*:%d+: ", "")) end
    loss = v
  end
  return opt, loss
end

local function fmt_table(self, res, batch)
  local out = {}
  out[#out + 1] = string.format('Profile of "%s": %d step(s) of batch %s, %.3f ms per step ' ..
    "(forward %.3f, backward %.3f, ms per step)", self.name, res.steps, tostring(batch), res.step_ms,
    res.forward_ms, res.backward_ms)
  local w = #"Layer (type)"
  for _, r in ipairs(res.rows) do
    local s = r.type and string.format("%s (%s)", r.name, r.type) or r.name
    r._label = s
    if #s > w then w = #s end
  end
  local function line(a, b, c, d, e)
    return string.format(" %-" .. w .. "s  %12s  %12s  %9s%s", a, b, c, d, e and ("  " .. e) or "")
  end
  out[#out + 1] = line("Layer (type)", "Forward ms", "Backward ms", "% of step",
    res.has_kernels and "Kernel (forward)" or nil)
  out[#out + 1] = " " .. string.rep("=", w + 41)
  for i, r in ipairs(res.rows) do
    if i == res.nlayers + 1 then out[#out + 1] = " " .. string.rep("-", w + 41) end
    out[#out + 1] = line(r._label, string.format("%.3f", r.forward_ms), string.format("%.3f", r.backward_ms),
      string.format("%.1f", r.percent), r.kernel)
    r._label = nil
  end
  out[#out + 1] = " " .. string.rep("=", w + 41)
  out[#out + 1] = line("step", string.format("%.3f", res.forward_ms), string.format("%.3f", res.backward_ms),
    string.format("%.3f ms", res.step_ms))
  out[#out + 1] = ""
  out[#out + 1] = line("Layer type (count)", "Forward ms", "Backward ms", "% of step")
  out[#out + 1] = " " .. string.rep("=", w + 41)
  for _, t in ipairs(res.by_type) do
    out[#out + 1] = line(string.format("%s (%d)", t.type, t.count), string.format("%.3f", t.forward_ms),
      string.format("%.3f", t.backward_ms), string.format("%.1f", t.percent))
  end
  if res.gpu_step_ms then -- issue 19: the device's own time (CUDA events)
    local gf, gb = 0, 0
    for _, r in ipairs(res.rows) do gf, gb = gf + (r.gpu_forward_ms or 0), gb + (r.gpu_backward_ms or 0) end
    out[#out + 1] = ""
    out[#out + 1] = string.format(" GPU (CUDA events): the step spans %.3f ms on the device of %.3f ms wall " ..
      "(%.3f ms the device waits for the host); layers and loss %.3f forward, %.3f backward; optimizer %.3f ms",
      res.gpu_step_ms, res.step_ms, math.max(0, res.step_ms - res.gpu_step_ms), gf, gb, res.gpu_optimizer_ms or 0)
    for _, t in ipairs(res.by_type) do
      if t.gpu_forward_ms then
        out[#out + 1] = line(string.format("%s (%d) on the GPU", t.type, t.count), string.format("%.3f", t.gpu_forward_ms),
          string.format("%.3f", t.gpu_backward_ms), "")
      end
    end
  end
  return table.concat(out, "\n")
end

--- model:profile(x, y [, {steps=3, warmup=0, optimizer=, loss=, print=true}]):
--- runs the training steps and prints the per-layer table; returns
--- {steps=, step_ms=, forward_ms=, backward_ms=, nlayers=, rows = {...}}
--- where rows are the layers in graph order ({name=, type=, id=, kernel=, forward_ms=,
--- backward_ms=, total_ms=, percent=}) followed by the rows "loss",
--- "optimizer" and "other"; res.loss, res.optimizer, res.other are those rows;
--- res.by_type: the layer rows summed per layer type, largest total first
--- ({type=, count=, forward_ms=, backward_ms=, total_ms=, percent=}).
function Model:profile(x, y, opts)
  local rn = require "rn"
  local o = layers.check_options(self:who() .. " profile", opts, { "steps", "warmup", "optimizer", "loss", "print" })
  local steps = o.steps == nil and 3 or o.steps
  if math.type(steps) ~= "integer" or steps < 1 or steps > 100000 then
    fail("%s profile: steps must be an integer in 1..100000, got %s", self:who(), tostring(steps))
  end
  local warmup = o.warmup == nil and 0 or o.warmup
  if math.type(warmup) ~= "integer" or warmup < 0 or warmup > 100000 then
    fail("%s profile: warmup must be an integer in 0..100000, got %s", self:who(), tostring(warmup))
  end
  if not self.built then
    fail("%s profile: the model is not built; start it with layers.Input(shape) or call it once", self:who())
  end
  local opt, loss_fn = resolve(self, o)
  if not rn.is_tensor(x) and type(x) ~= "table" then
    fail("%s profile: x must be a tensor (or a list of tensors for several inputs), got %s", self:who(), type(x))
  end
  local first = rn.is_tensor(x) and x or x[1]
  local sync = (first and first.device ~= "cpu") and rn.cuda.synchronize or function() end
  -- issue 19: GPU time from CUDA events (no-ops on the CPU)
  local gpu_ev = first and first.device == "cuda" and core._profile_gpu_begin ~= nil
    and os.getenv("RN_PROFILE_EVENTS") ~= "0"
  local gmark = gpu_ev and core._profile_gpu_mark or function() end
  local regularized = false
  for _, w in ipairs(self:weights()) do if w.regularizer then regularized = true end end

  -- the layers of the graph, in graph order, with their scope ids 1..n
  local list, id_of = {}, {}
  for _, node in ipairs(self._order) do
    local l = node.layer
    if not id_of[l] then
      list[#list + 1] = l
      id_of[l] = #list
    end
  end
  local n = #list
  local LOSS = n + 1
  local fwd, kernel = {}, {}
  for i = 1, n + 1 do fwd[i] = 0 end
  local cpu_convs = first ~= nil and first.device == "cpu"

  local timing = false
  -- wrap each layer's eager call (instance fields shadow the class method)
  local wrapped = {}
  for i, l in ipairs(list) do
    local orig = l._call_eager
    wrapped[i] = rawget(l, "_call_eager")
    l._call_eager = function(lyr, ...)
      if not timing then return orig(lyr, ...) end
      local prev = core._profile_set_scope(i)
      sync()
      gmark(i)
      local t0 = clock()
      local y_ = orig(lyr, ...)
      gmark(0)
      sync()
      fwd[i] = fwd[i] + clock() - t0
      if cpu_convs and lyr.class_name == "Conv2D" then kernel[i] = rn.cpu.conv_kernels().forward end
      core._profile_set_scope(prev)
      return y_
    end
  end
  local t_loss, t_bwd, t_opt, t_step = 0, 0, 0, 0
  local function one_step(timed)
    timing = timed
    sync()
    local ts = clock()
    opt:zero_grad()
    local pred = self(x, { training = true })
    local prev = core._profile_set_scope(LOSS)
    if timed then gmark(LOSS) end
    local t0 = clock()
    local loss = loss_fn(pred, y)
    if regularized then loss = loss + self:regularization_loss() end
    if timed then gmark(0) end
    sync()
    local t1 = clock()
    core._profile_set_scope(prev)
    loss:backward()
    sync()
    local t2 = clock()
    if timed then gmark(LOSS + 1) end
    opt:step()
    if timed then gmark(0) end
    sync()
    local t3 = clock()
    loss:item()
    local te = clock()
    if timed then
      t_loss, t_bwd, t_opt, t_step = t_loss + (t1 - t0), t_bwd + (t2 - t1), t_opt + (t3 - t2), t_step + (te - ts)
    end
  end
  local began, gpu_began = false, false
  local ok, err = pcall(function()
    for _ = 1, warmup do one_step(false) end
    core._profile_begin()
    began = true
    if gpu_ev then core._profile_gpu_begin(); gpu_began = true end
    for _ = 1, steps do one_step(true) end
  end)
  timing = false
  core._profile_set_scope(0)
  local bwd = began and core._profile_end() or {}
  local gpu, gpu_span
  if gpu_began then gmark(0); gpu, gpu_span = core._profile_gpu_end() end
  for i, l in ipairs(list) do l._call_eager = wrapped[i] end
  if not ok then error(err, 0) end

  local ms = 1000 / steps
  local res = { steps = steps, step_ms = t_step * ms, nlayers = n, rows = {} }
  local sum_f, sum_b, sum_nodes = 0, 0, 0
  for _, s in pairs(bwd) do sum_nodes = sum_nodes + s end
  local function row(name, typ, id, f, b)
    local r = { name = name, type = typ, id = id, forward_ms = f * ms, backward_ms = b * ms }
    r.total_ms = r.forward_ms + r.backward_ms
    r.percent = res.step_ms > 0 and 100 * r.total_ms / res.step_ms or 0
    res.rows[#res.rows + 1] = r
    sum_f, sum_b = sum_f + f, sum_b + b
    return r
  end
  local BWD = core._profile_gpu_bwd or 0
  local function gpu_row(r, id)
    if not gpu or not id then return r end
    r.gpu_forward_ms = (gpu[id] or 0) * ms
    r.gpu_backward_ms = (gpu[id + BWD] or 0) * ms
    return r
  end
  for i, l in ipairs(list) do
    gpu_row(row(l.name, l.class_name, i, fwd[i], bwd[i] or 0), i).kernel = kernel[i]
    if kernel[i] then res.has_kernels = true end
  end
  res.loss = gpu_row(row("loss", nil, LOSS, t_loss, bwd[LOSS] or 0), LOSS)
  res.optimizer = row("optimizer", nil, nil, t_opt, 0)
  if gpu then
    res.gpu_step_ms = gpu_span * ms
    res.gpu_optimizer_ms = (gpu[LOSS + 1] or 0) * ms
  end
  -- other: the rest of the forward and of the reverse pass, and of the step
  local other_f = math.max(0, t_step - t_bwd - sum_f)
  local other_b = math.max(0, t_bwd - sum_nodes) + (bwd[0] or 0)
  local r = row("other", nil, 0, other_f, other_b)
  res.other = r
  local f_all, b_all = 0, 0
  for i = 1, n do f_all, b_all = f_all + res.rows[i].forward_ms, b_all + res.rows[i].backward_ms end
  res.forward_ms = f_all + res.loss.forward_ms
  local by, order = {}, {}
  for i = 1, n do
    local r = res.rows[i]
    local t = by[r.type]
    if not t then
      t = { type = r.type, count = 0, forward_ms = 0, backward_ms = 0, first = i }
      by[r.type], order[#order + 1] = t, t
    end
    t.count, t.forward_ms, t.backward_ms = t.count + 1, t.forward_ms + r.forward_ms, t.backward_ms + r.backward_ms
    if r.gpu_forward_ms then
      t.gpu_forward_ms = (t.gpu_forward_ms or 0) + r.gpu_forward_ms
      t.gpu_backward_ms = (t.gpu_backward_ms or 0) + r.gpu_backward_ms
    end
  end
  for _, t in ipairs(order) do
    t.total_ms = t.forward_ms + t.backward_ms
    t.percent = res.step_ms > 0 and 100 * t.total_ms / res.step_ms or 0
  end
  table.sort(order, function(a, b) -- ties in graph order, so the order is stable
    if a.total_ms ~= b.total_ms then return a.total_ms > b.total_ms end
    return a.first < b.first
  end)
  for _, t in ipairs(order) do t.first = nil end
  res.by_type = order
  res.backward_ms = t_bwd * ms
  if o.print ~= false then
    local b = first and first:dim() > 0 and first:size(1) or "?"
    print(fmt_table(self, res, b))
  end
  return res
end

return M
