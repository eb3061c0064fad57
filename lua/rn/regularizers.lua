-- regularizers.lua - weight penalties added to the loss, as Keras defines
-- them (no factor 1/2):
--   l2(c)(w)        = c * sum(w^2)
--   l1(c)(w)        = c * sum(|w|)
--   l1_l2{l1=, l2=} = both
-- A regularizer is a callable table (reg(w) -> 0-d tensor with autograd)
-- with fields kind, l1, l2 for inspection. Layers take one as
-- kernel_regularizer / bias_regularizer; model:regularization_loss() sums
-- them. The strings "l2", "l1", "l1_l2" give Keras' default factor 0.01.
--
-- Issue 19, the one-pass L2 (M.l2_plan, used by model:train_step/test_step):
-- when every regularizer of a model is a plain l2(c) and the optimizer's
-- multi-tensor step is on for the weights' device (lua/rn/optim.lua), the
-- penalty's value comes from one rn.l2_penalty_multi call (one CUDA launch)
-- on the step's starting weights and its gradient 2c*w is folded into the
-- optimizer's step (the l2 factor of core/optim_math.h), instead of 45
-- autograd subgraphs. The reported loss still includes the penalty.
-- M.fused: nil (the default: on where the fused optimizer is;
-- $RN_FUSED_L2=0 turns it off), true or false (false: the autograd form).
local M = {}

local Reg = {}
Reg.__index = Reg
Reg.__name = "rn.Regularizer"

function Reg.__call(self, w)
  local r
  if self.l2 ~= 0 then r = (w * w):sum() * self.l2 end
  if self.l1 ~= 0 then
    local a = w:abs():sum() * self.l1
    r = r and r + a or a
  end
  if not r then r = (w * 0):sum() end
  return r
end

function Reg.__tostring(self)
  if self.kind == "l2" then return string.format("l2(%g)", self.l2) end
  if self.kind == "l1" then return string.format("l1(%g)", self.l1) end
  return string.format("l1_l2(l1=%g, l2=%g)", self.l1, self.l2)
end

local function factor(v, who)
  if v == nil then return 0.01 end
  if type(v) ~= "number" or v < 0 or v ~= v then
    error(string.format("regularizers.%s: the factor must be a number >= 0, got %s", who, tostring(v)), 3)
  end
  return v
end

--- l2(c = 0.01): c * sum(w^2), exactly as tf.keras.regularizers.l2.
function M.l2(c) return setmetatable({ kind = "l2", l1 = 0, l2 = factor(c, "l2") }, Reg) end

--- l1(c = 0.01): c * sum(|w|).
function M.l1(c) return setmetatable({ kind = "l1", l1 = factor(c, "l1"), l2 = 0 }, Reg) end

--- l1_l2{l1 = 0.01, l2 = 0.01}.
function M.l1_l2(o)
  o = o or {}
  return setmetatable({ kind = "l1_l2", l1 = factor(o.l1, "l1_l2"), l2 = factor(o.l2, "l1_l2") }, Reg)
end

-- ---- issue 19: the one-pass L2 plan ------------------------------------------------------
M.fused = nil

--- l2_plan(weights, opt): {tensors = {...}, factors = {...}, by_tensor =
--- {[tensor] = c}} when the one-pass form applies to these weights (the
--- model:weights() list) and optimizer, else nil (the autograd form).
function M.l2_plan(weights, opt)
  local fused = M.fused
  if fused == nil then fused = os.getenv("RN_FUSED_L2") ~= "0" end
  if not fused or not opt or not opt._fused_takes then return nil end
  local plan = { tensors = {}, factors = {}, by_tensor = {} }
  local dev, dt
  for _, w in ipairs(weights) do
    local r = w.regularizer
    if r then
      if getmetatable(r) ~= Reg or r.l1 ~= 0 then return nil end
      local t = w.tensor
      dev, dt = dev or t.device, dt or t.dtype
      if t.device ~= dev or t.dtype ~= dt or not t:is_contiguous() then return nil end
      if r.l2 ~= 0 then
        plan.tensors[#plan.tensors + 1] = t
        plan.factors[#plan.factors + 1] = r.l2
        plan.by_tensor[t] = r.l2
      end
    end
  end
  if not dev or (dt ~= "float32" and dt ~= "float64") or not opt:_fused_takes(dev, dt) then return nil end
  return plan
end
-- ---- end of issue 19 ---------------------------------------------------------------------

--- is_regularizer(v): true for a regularizer made here.
function M.is_regularizer(v) return getmetatable(v) == Reg end

--- lookup(spec): a regularizer from a regularizer, a function(w) -> tensor or
--- a name ("l1", "l2", "l1_l2"); nil and a message otherwise.
function M.lookup(spec)
  if spec == nil then return nil end
  if type(spec) == "function" or getmetatable(spec) == Reg then return spec end
  if type(spec) == "table" and getmetatable(spec) and getmetatable(spec).__call then return spec end
  if spec == "l2" then return M.l2() end
  if spec == "l1" then return M.l1() end
  if spec == "l1_l2" then return M.l1_l2() end
  return nil, string.format("a regularizer must be rn.regularizers.l2(c), l1(c), l1_l2{...}, a "
    .. "function(w) or one of the names l1, l2, l1_l2; got %s", tostring(spec))
end

return M
