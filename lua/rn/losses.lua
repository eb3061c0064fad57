-- losses.lua - loss functions as callable objects: loss(y_pred, y_true) ->
-- 0-d tensor (prediction first, as in the manual loop
-- `lossfn(model(x), y)`; Keras' own order is (y_true, y_pred)).
--
--   sparse_categorical_crossentropy{from_logits=false, label_smoothing=0, reduction="mean"}
--     y_true: integer class ids 0..C-1 (int64, int32, uint8; float ids are
--     converted), shape (N) or (N,1); y_pred: (N,C), or (..., C) with y_true (...).
--     from_logits=false (Keras' default): y_pred are probabilities (a softmax
--     output); as Keras does, they are clipped to [1e-7, 1-1e-7] and their log
--     is fed to the softmax cross-entropy. from_logits=true skips the softmax
--     and the clipping: faster and more accurate (use a Dense layer without
--     activation). label_smoothing s: targets (1-s)*onehot + s/C.
--     ignore_class k (Keras 3's; e.g. 255 or -1 for unlabeled pixels of a
--     segmentation map): those positions count neither in the loss nor in
--     the mean (y_pred (N,H,W,C) with y_true (N,H,W) is a per-pixel loss).
--   categorical_crossentropy{from_logits=false, label_smoothing=0}: one-hot / soft targets (N,C).
--   binary_crossentropy{from_logits=false, label_smoothing=0}: targets in [0,1],
--     same shape as y_pred (or y_pred (...,1) and y_true (...)); from logits
--     computed stably as max(x,0) - x*t + log(1 + exp(-|x|)); from
--     probabilities clipped to [1e-7, 1-1e-7] as Keras; label smoothing s:
--     t*(1-s) + s/2; the mean over every element.
--   mean_squared_error(): mean((y_pred - y_true)^2).
-- rn itself, looked up on first use: lua/rn/init.lua requires this module
-- while it is still loading, so `require "rn"` cannot run at load time.
local rn = setmetatable({}, { __index = function(t, k)
  local real = require "rn"
  setmetatable(t, { __index = real })
  return real[k]
end })

local M = {}

local EPS = 1e-7 -- Keras backend epsilon

local Loss = {}
Loss.__index = Loss
Loss.__name = "rn.Loss"
function Loss.__call(self, y_pred, y_true)
  if not rn.is_tensor(y_pred) then error(self.name .. ": y_pred (argument 1) must be a tensor, got " .. type(y_pred), 2) end
  if not rn.is_tensor(y_true) then error(self.name .. ": y_true (argument 2) must be a tensor, got " .. type(y_true), 2) end
  -- mixed_bfloat16 (Keras): the loss is computed in float32
  if y_pred.dtype == "bfloat16" or y_pred.dtype == "float16" then y_pred = y_pred:float() end
  if y_true.dtype == "bfloat16" or y_true.dtype == "float16" then y_true = y_true:float() end
  return self.fn(y_pred, y_true)
end
function Loss.__tostring(self) return "<loss " .. self.name .. ">" end

local function make(name, fn) return setmetatable({ name = name, fn = fn }, Loss) end

local function check(who, opts, valid)
  opts = opts or {}
  local set = {}
  for _, k in ipairs(valid) do set[k] = true end
  for k in pairs(opts) do
    if not set[k] then
      error(string.format("%s: unknown option '%s'; valid options: %s", who, tostring(k), table.concat(valid, ", ")), 3)
    end
  end
  local s = opts.label_smoothing or 0
  if type(s) ~= "number" or s < 0 or s > 1 then
    error(string.format("%s: label_smoothing must be a number in [0, 1], got %s", who, tostring(s)), 3)
  end
  return opts
end

local function shape_str(t) return "(" .. table.concat(t:size(), ",") .. ")" end

-- log-probabilities of probability outputs the Keras way: log(clip(p, eps, 1-eps))
local function clipped_log(p) return p:maximum(EPS):minimum(1 - EPS):log() end

function M.sparse_categorical_crossentropy(opts)
  local who = "sparse_categorical_crossentropy"
  opts = check(who, opts, { "from_logits", "label_smoothing", "reduction", "ignore_class" })
  local ce_opts = { label_smoothing = opts.label_smoothing or 0, reduction = opts.reduction or "mean" }
  local from_logits = opts.from_logits and true or false
  local ignore = opts.ignore_class
  if ignore ~= nil and math.type(ignore) ~= "integer" then
    error(string.format("%s: ignore_class must be an integer class id, got %s", who, tostring(ignore)), 2)
  end
  return make(who, function(y_pred, y_true)
    local c = y_pred:size(-1)
    local logits = y_pred
    if y_pred:dim() > 2 then logits = y_pred:reshape(-1, c) end
    local labels = y_true
    if labels.dtype == "float32" or labels.dtype == "float64" then labels = labels:long() end
    if labels:dim() ~= 1 then labels = labels:reshape(-1) end
    if labels:size(1) ~= logits:size(1) then
      error(string.format("%s: y_true %s has %d labels but y_pred %s has %d rows", who,
        shape_str(y_true), labels:size(1), shape_str(y_pred), logits:size(1)), 3)
    end
    if not from_logits then logits = clipped_log(logits) end
    if ignore == nil then return rn.cross_entropy(logits, labels, ce_opts) end
    -- the ignored positions get label 0 (any valid id) and weight 0
    local keep = labels:ne(ignore)
    local safe = labels * keep
    local per = rn.cross_entropy(logits, safe, { label_smoothing = ce_opts.label_smoothing, reduction = "none" })
    local w = keep:to(per.dtype)
    local total = (per * w):sum()
    if ce_opts.reduction == "sum" then return total end
    if ce_opts.reduction == "none" then return per * w end
    return total / math.max(w:sum():item(), 1)
  end)
end

function M.categorical_crossentropy(opts)
  local who = "categorical_crossentropy"
  opts = check(who, opts, { "from_logits", "label_smoothing" })
  local s = opts.label_smoothing or 0
  local from_logits = opts.from_logits and true or false
  return make(who, function(y_pred, y_true)
    if shape_str(y_pred) ~= shape_str(y_true) then
      error(string.format("%s: y_pred %s and y_true %s must have the same shape", who,
        shape_str(y_pred), shape_str(y_true)), 3)
    end
    local t = y_true
    if s > 0 then t = t * (1 - s) + s / y_pred:size(-1) end
    local logp
    if from_logits then logp = rn.log_softmax(y_pred, -1)
    else logp = clipped_log(y_pred / y_pred:sum(-1, true)) end
    return -(t * logp):sum(-1):mean()
  end)
end

function M.binary_crossentropy(opts)
  local who = "binary_crossentropy"
  opts = check(who, opts, { "from_logits", "label_smoothing" })
  local s = opts.label_smoothing or 0
  local from_logits = opts.from_logits and true or false
  return make(who, function(y_pred, y_true)
    local t = y_true
    if t.dtype ~= y_pred.dtype then t = t:to(y_pred.dtype) end
    if t:dim() == y_pred:dim() - 1 and y_pred:size(-1) == 1 then t = t:unsqueeze(-1) end
    if shape_str(t) ~= shape_str(y_pred) then
      error(string.format("%s: y_pred %s and y_true %s must have the same shape", who,
        shape_str(y_pred), shape_str(y_true)), 3)
    end
    if s > 0 then t = t * (1 - s) + s / 2 end
    if from_logits then
      local x = y_pred
      return (x:relu() - x * t + ((-x:abs()):exp() + 1):log()):mean()
    end
    local p = y_pred:maximum(EPS):minimum(1 - EPS)
    return -(t * p:log() + (1 - t) * (1 - p):log()):mean()
  end)
end

function M.mean_squared_error(opts)
  local who = "mean_squared_error"
  check(who, opts, {})
  return make(who, function(y_pred, y_true)
    local t = y_true
    if t.dtype ~= y_pred.dtype then t = t:to(y_pred.dtype) end
    if t:dim() == y_pred:dim() - 1 and y_pred:size(-1) == 1 then t = t:unsqueeze(-1) end
    if shape_str(t) ~= shape_str(y_pred) then
      error(string.format("%s: y_pred %s and y_true %s must have the same shape", who,
        shape_str(y_pred), shape_str(y_true)), 3)
    end
    local d = y_pred - t
    return (d * d):mean()
  end)
end
M.mse = M.mean_squared_error

local NAMES = {
  sparse_categorical_crossentropy = function() return M.sparse_categorical_crossentropy() end,
  categorical_crossentropy = function() return M.categorical_crossentropy() end,
  mean_squared_error = function() return M.mean_squared_error() end,
  binary_crossentropy = function() return M.binary_crossentropy() end,
  mse = function() return M.mean_squared_error() end,
}

--- get(spec): a loss from a loss object, a function(y_pred, y_true) or a
--- name (sparse_categorical_crossentropy, categorical_crossentropy,
--- mean_squared_error, mse; the cross-entropies by name take probabilities).
function M.get(spec)
  if getmetatable(spec) == Loss then return spec end
  if type(spec) == "function" then return make("loss", spec) end
  if type(spec) == "string" and NAMES[spec] then return NAMES[spec]() end
  local known = {}
  for k in pairs(NAMES) do known[#known + 1] = k end
  table.sort(known)
  error(string.format("losses.get: unknown loss %s (known: %s, or a function(y_pred, y_true))",
    tostring(spec), table.concat(known, ", ")), 3)
end

return M
