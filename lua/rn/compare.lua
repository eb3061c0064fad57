-- compare.lua - model:compare(x, y, opts): one training step's forward and
-- backward, run twice from the same weights: once as the model is, once on
-- another device (the GPU against the CPU), under another precision
-- (mixed_bfloat16 against float32) or with the other CPU convolution kernels
-- (im2col against oneDNN). For each layer it reports the largest difference
-- of its output and of its weights' gradients, and where in the graph the two
-- runs part:
--
--   local r = model:compare(x, y, {device = "cuda"})   -- prints the table
--   local r = model:compare(x, y, {precision = "mixed_bfloat16", print = false})
--   r.rows[i] = {name=, type=, out_max=, out_diff=, out_rel=, grad_max=,
--                grad_diff=, grad_rel=}; r.loss_a, r.loss_b, r.worst (the row
--                with the largest relative difference)
--
-- Relative differences are max|a - b| / max|a| over the whole output (or all
-- of a layer's gradients): one number per layer, comparable across layers. The
-- weights (the same tensor objects, so an optimizer bound to them stays
-- valid), BN moving statistics, precision policy and CPU convolution choice
-- are restored afterwards; parameter gradients are left cleared. Both runs seed the generator with opts.seed
-- (default 1) first; a Dropout layer still draws differently on another
-- device, so compare such models with training = false.
-- A layer fused into the previous one (ReLU after BatchNormalization) has no
-- output of its own: its row says "fused".
local layers = require "rn.layers"
local Model = require("rn.model").Model

local fail = layers._fail

local M = {}

-- a tensor (or the first tensor of a list) as float64 on the CPU, no graph
local function host64(t)
  if type(t) == "table" and not require("rn").is_tensor(t) then t = t[1] end
  if t == nil then return nil end
  return t:detach():cpu():double()
end

-- max |a|, max |a - b| (same shapes), both as numbers
local function diff(a, b)
  if a == nil or b == nil then return nil, nil end
  local ma = a:numel() > 0 and a:abs():max():item() or 0
  local d = a:numel() > 0 and (a - b):abs():max():item() or 0
  return ma, d
end

local function rel(m, d)
  if m == nil then return nil end
  if d ~= d then return d end -- NaN
  return d / math.max(m, 1e-30)
end

local function move(x, dev)
  local rn = require "rn"
  if rn.is_tensor(x) then return x:to(dev) end
  local out = {}
  for i, v in ipairs(x) do out[i] = v:to(dev) end
  return out
end

local function fmt_num(v)
  if v == nil then return "-" end
  return string.format("%.3e", v)
end

local function fmt_table(self, res)
  local out = {}
  out[#out + 1] = string.format('Compare of "%s": %s against %s; loss %.9g against %.9g', self.name,
    res.a, res.b, res.loss_a, res.loss_b)
  local w = #"Layer (type)"
  for _, r in ipairs(res.rows) do
    r._label = string.format("%s (%s)", r.name, r.type)
    if #r._label > w then w = #r._label end
  end
  local function line(a, b, c, d, e)
    return string.format(" %-" .. w .. "s  %10s  %10s  %10s  %10s", a, b, c, d, e)
  end
  out[#out + 1] = line("Layer (type)", "out max", "out rel", "grad max", "grad rel")
  out[#out + 1] = " " .. string.rep("=", w + 48)
  for _, r in ipairs(res.rows) do
    if r.fused then
      out[#out + 1] = line(r._label, "fused", "", fmt_num(r.grad_max), fmt_num(r.grad_rel))
    else
      out[#out + 1] = line(r._label, fmt_num(r.out_max), fmt_num(r.out_rel), fmt_num(r.grad_max),
        fmt_num(r.grad_rel))
    end
    r._label = nil
  end
  out[#out + 1] = " " .. string.rep("=", w + 48)
  if res.worst then
    out[#out + 1] = string.format(" largest relative difference: %s at %s (%s)", fmt_num(res.worst_rel),
      res.worst.name, res.worst_what)
  end
  return table.concat(out, "\n")
end

local POLICIES = { float32 = true, mixed_bfloat16 = true }
local IMPLS = { auto = true, benchmark = true, onednn = true, winograd = true, direct = true, im2col = true }
-- rn.cpu.conv_impl()'s answer -> the set_conv_impl setting that gives it
local IMPL_SETTING = { auto = "auto", benchmark = "benchmark", onednn = "onednn", winograd = "winograd",
  ["onednn-direct"] = "direct", im2col = "im2col" }

--- model:compare(x, y [, {device=, precision=, conv_impl=, loss=, training=true,
--- seed=1, print=true}]): see the file header.
function Model:compare(x, y, opts)
  local rn = require "rn"
  local who = self:who() .. " compare"
  local o = layers.check_options(who, opts,
    { "device", "precision", "conv_impl", "loss", "training", "seed", "print" })
  if not self.built then
    fail("%s: the model is not built; start it with layers.Input(shape) or call it once", who)
  end
  if not rn.is_tensor(x) and type(x) ~= "table" then
    fail("%s: x must be a tensor (or a list of tensors for several inputs), got %s", who, type(x))
  end
  if not rn.is_tensor(y) then fail("%s: y must be a tensor, got %s", who, type(y)) end
  local params = self:parameters()
  local home = (params[1] and params[1].device) or (rn.is_tensor(x) and x.device) or "cpu"
  local dev = o.device or (home == "cpu" and "cuda" or "cpu")
  if dev ~= "cpu" and dev ~= "cuda" then
    fail("%s: device must be \"cpu\" or \"cuda\", got %s", who, tostring(dev))
  end
  if (dev == "cuda" or home == "cuda") and not rn.cuda.is_available() then
    fail("%s: device cuda: %s", who, tostring(rn.cuda.why_unavailable()))
  end
  local policy_a = rn.mixed_precision.global_policy()
  local policy_b = o.precision or policy_a
  if not POLICIES[policy_b] then
    fail("%s: precision must be \"float32\" or \"mixed_bfloat16\", got %s", who, tostring(policy_b))
  end
  local impl_a = IMPL_SETTING[rn.cpu.conv_impl()] or "auto"
  local impl_b = o.conv_impl or impl_a
  if not IMPLS[impl_b] then
    fail("%s: conv_impl must be \"auto\", \"benchmark\", \"onednn\", \"winograd\", \"direct\" or \"im2col\", got %s", who,
      tostring(impl_b))
  end
  local seed = o.seed == nil and 1 or o.seed
  if math.type(seed) ~= "integer" then fail("%s: seed must be an integer, got %s", who, tostring(seed)) end
  local training = o.training ~= false
  local loss_fn = o.loss or self.loss_fn
  if loss_fn == nil then
    fail("%s: the model is not compiled and opts lack loss=; compile it or pass {loss = ...}", who)
  end
  if type(loss_fn) ~= "function" then
    local ok, v = pcall(rn.losses.get, loss_fn)
    if not ok then fail("%s: %s", who, tostring(v):gsub("^[^:]*:%d+: ", "")) end
    loss_fn = v
  end
  local regularized = false
  for _, w in ipairs(self:weights()) do if w.regularizer then regularized = true end end

  -- the layers in graph order
  local list, seen = {}, {}
  for _, node in ipairs(self._order) do
    if not seen[node.layer] then
      seen[node.layer] = true
      list[#list + 1] = node.layer
    end
  end

  -- the state both runs start from, on the host
  local snap = {}
  for name, t in pairs(self:state_dict()) do snap[name] = t:detach():cpu():clone() end
  -- the weight tensors themselves: a run on another device swaps in copies
  -- (Layer:to), and an optimizer bound to the model holds the originals, so
  -- those are put back afterwards rather than copied back
  local raws, met = {}, {}
  local function gather(l)
    if met[l] then return end
    met[l] = true
    for _, w in ipairs(l._weights or {}) do raws[#raws + 1] = { w = w, t = w.tensor } end
    for _, sub in ipairs(l:_sublayers()) do gather(sub) end
  end
  gather(self)
  local function put_back()
    for _, r in ipairs(raws) do
      local cur = r.w.tensor
      if not rawequal(cur, r.t) then
        r.w.tensor = r.t
        for k, v in pairs(r.w.layer) do
          if rawequal(v, cur) then r.w.layer[k] = r.t end
        end
      end
    end
  end

  local outs -- per layer index: its last output (float64, host)
  local wrapped = {}
  for i, l in ipairs(list) do
    local orig = l._call_eager
    wrapped[i] = rawget(l, "_call_eager")
    l._call_eager = function(lyr, ...)
      local y_ = orig(lyr, ...)
      if outs then outs[i] = host64(y_) end
      return y_
    end
  end

  local function clear_grads()
    for _, p in ipairs(self:parameters()) do p:zero_grad() end
  end

  local function run(device, policy, impl)
    put_back()
    self:load_state_dict(snap)
    self:to(device)
    rn.mixed_precision.set_global_policy(policy)
    rn.cpu.set_conv_impl(impl)
    clear_grads()
    outs = {}
    rn.manual_seed(seed)
    local pred = self(move(x, device), { training = training })
    local loss = loss_fn(pred, y:to(device))
    if regularized then loss = loss + self:regularization_loss() end
    loss:backward()
    local got = { outs = outs, grads = {}, loss = loss:item() }
    outs = nil
    for i, l in ipairs(list) do
      local g = {}
      for _, w in ipairs(l:weights()) do
        if w.trainable and w.tensor.grad then g[#g + 1] = host64(w.tensor.grad) end
      end
      got.grads[i] = g
    end
    return got
  end

  local ok, a, b = pcall(function()
    local ra = run(home, policy_a, impl_a)
    local rb = run(dev, policy_b, impl_b)
    return ra, rb
  end)
  -- restore everything, whatever happened
  for i, l in ipairs(list) do l._call_eager = wrapped[i] end
  outs = nil
  local rok, rerr = pcall(function()
    rn.mixed_precision.set_global_policy(policy_a)
    rn.cpu.set_conv_impl(impl_a)
    put_back()
    self:load_state_dict(snap)
    clear_grads()
  end)
  if not ok then error(a, 0) end
  if not rok then error(rerr, 0) end

  local res = { rows = {}, loss_a = a.loss, loss_b = b.loss,
    a = string.format("%s/%s%s", home, policy_a, home == "cpu" and ("/" .. impl_a) or ""),
    b = string.format("%s/%s%s", dev, policy_b, dev == "cpu" and ("/" .. impl_b) or "") }
  local worst_rel = -1
  for i, l in ipairs(list) do
    local r = { name = l.name, type = l.class_name }
    if a.outs[i] == nil or b.outs[i] == nil then
      r.fused = true
    else
      r.out_max, r.out_diff = diff(a.outs[i], b.outs[i])
      r.out_rel = rel(r.out_max, r.out_diff)
    end
    local ga, gb = a.grads[i], b.grads[i]
    if #ga > 0 and #ga == #gb then
      local m, d = 0, 0
      for k = 1, #ga do
        local mk, dk = diff(ga[k], gb[k])
        m = math.max(m, mk)
        d = (dk ~= dk or d ~= d) and 0 / 0 or math.max(d, dk)
      end
      r.grad_max, r.grad_diff, r.grad_rel = m, d, rel(m, d)
    end
    for _, what in ipairs({ "out", "grad" }) do
      local v = r[what .. "_rel"]
      if v ~= nil and (v ~= v or v > worst_rel) and worst_rel == worst_rel then
        worst_rel, res.worst, res.worst_what = v, r, what == "out" and "output" or "weight gradients"
      end
    end
    res.rows[#res.rows + 1] = r
  end
  if res.worst then res.worst_rel = worst_rel end
  if o.print ~= false then print(fmt_table(self, res)) end
  return res
end

return M
