-- regularizers.lua - weight penalties added to the loss, as Keras defines
-- them (no factor 1/2):
--   l2(c)(w)        = c * sum(w^2)
--   l1(c)(w)        = c * sum(|w|)
--   l1_l2{l1=, l2=} = both
-- A regularizer is a callable table (reg(w) -> 0-d tensor with autograd)
-- with fields kind, l1, l2 for inspection. Layers take one as
-- kernel_regularizer / bias_regularizer; model:regularization_loss() sums
-- them. The strings "l2", "l1", "l1_l2" give Keras' default factor 0.01.
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
