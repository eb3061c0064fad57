-- metrics.lua - classification metrics, computed without gradients and
-- returned as Lua numbers (fractions in 0..1):
--   accuracy(y_pred, y_true)   sparse: y_true class ids (N) and y_pred
--                              scores (N,C) (argmax); one-hot y_true (N,C) also
--                              works; a (N,1) y_pred is thresholded at 0.5
--   top_k(k)(y_pred, y_true)   true class among the k highest scores (ties
--                              with the true class's score count for it);
--                              a callable table {name = "top_<k>", fn =}
--   Mean()                     running mean: m:update(v [, n]), m:result(), m:reset()
--   get(spec) -> {name=, fn=}  "accuracy"/"acc"/"sparse_categorical_accuracy",
--                              "top_k"/"sparse_top_k_categorical_accuracy" (k=5),
--                              a function or a {name=, fn=} table
-- rn itself, looked up on first use: lua/rn/init.lua requires this module
-- while it is still loading, so `require "rn"` cannot run at load time.
local rn = setmetatable({}, { __index = function(t, k)
  local real = require "rn"
  setmetatable(t, { __index = real })
  return real[k]
end })

local M = {}

local function as_long(t) return t.dtype == "int64" and t or t:long() end

function M.accuracy(y_pred, y_true)
  return rn.no_grad(function()
    if y_pred:dim() >= 2 and y_pred:size(-1) == 1 then
      local p = y_pred:reshape(-1):gt(0.5)
      return p:eq(y_true:reshape(-1):float():gt(0.5)):float():mean():item()
    end
    local pred = y_pred:argmax(-1)
    local truth
    if y_true:dim() == y_pred:dim() and y_true:size(-1) == y_pred:size(-1) then
      truth = y_true:argmax(-1)
    else
      truth = as_long(y_true):reshape(pred:size())
    end
    return pred:eq(truth):float():mean():item()
  end)
end
M.sparse_categorical_accuracy = M.accuracy

function M.top_k(k)
  k = k or 5
  if math.type(k) ~= "integer" or k < 1 then error("metrics.top_k: k must be an integer >= 1, got " .. tostring(k), 2) end
  local function fn(y_pred, y_true)
    return rn.no_grad(function()
      local n, c = y_pred:size(1), y_pred:size(-1)
      local p = y_pred:reshape(n, c):float()
      local onehot = rn.arange(c):reshape(1, c):eq(y_true:reshape(n, 1):float())
      local true_score = (p * onehot):sum(-1, true)
      local higher = p:gt(true_score):sum(-1)
      return higher:lt(k):float():mean():item()
    end)
  end
  -- callable, and usable in compile{metrics = {metrics.top_k(3)}} under the name top_3
  return setmetatable({ name = "top_" .. k, fn = fn }, { __call = function(_, a, b) return fn(a, b) end })
end

local Mean = {}
Mean.__index = Mean
function M.Mean() return setmetatable({ total = 0, count = 0 }, Mean) end
function Mean:update(v, n)
  n = n or 1
  self.total, self.count = self.total + v * n, self.count + n
  return self
end
function Mean:result() return self.count > 0 and self.total / self.count or 0 end
function Mean:reset() self.total, self.count = 0, 0; return self end

function M.get(spec)
  if spec == "accuracy" or spec == "acc" or spec == "sparse_categorical_accuracy" then
    return { name = spec == "acc" and "acc" or "accuracy", fn = M.accuracy }
  end
  if spec == "top_k" or spec == "sparse_top_k_categorical_accuracy" then
    return M.top_k(5)
  end
  if type(spec) == "function" then return { name = "metric", fn = spec } end
  if type(spec) == "table" and type(spec.fn) == "function" and type(spec.name) == "string" then return spec end
  error("metrics.get: unknown metric " .. tostring(spec)
    .. " (known: accuracy, acc, sparse_categorical_accuracy, top_k, sparse_top_k_categorical_accuracy, "
    .. "a function or {name=, fn=})", 3)
end

return M
