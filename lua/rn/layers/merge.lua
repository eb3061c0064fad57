-- merge.lua (layers) - merging layers: Add, Subtract, Multiply, Average,
-- Maximum, Minimum (elementwise over a list of tensors whose shapes
-- broadcast, as Keras's merge layers), Concatenate.
local M = require "rn.layers.base"
local h = M._h
local rn, fail, numel, is_sym = h.rn, h.fail, h.numel, h.is_sym
local activation, act_flops = h.activation, h.act_flops
local pos_int, pair, padding_spec = h.pos_int, h.pair, h.padding_spec
local window_out, check_4d, spatial_out = h.window_out, h.check_4d, h.spatial_out
local get_init, get_reg = h.get_init, h.get_reg
local Layer = M.Layer

-- ---- merging ---------------------------------------------------------------------------

local function list_input(self, x, min)
  if rn.is_tensor(x) or is_sym(x) or type(x) ~= "table" or #x < min or type(x[1]) == "number" then
    fail("%s: expects a list of at least %d tensors, e.g. layer({a, b})", self:who(), min)
  end
end

-- The shape the list broadcasts to: equal ranks, and per dim equal sizes or
-- 1 (an unknown batch, -1, matches anything), as Keras's merge layers.
local function merged_shape(self, shapes)
  local out = M.shape(shapes[1])
  for i = 2, #shapes do
    local b = shapes[i]
    local ok = #b == #out
    for d = 1, ok and #out or 0 do
      local x, y = out[d], b[d]
      if x == -1 or y == -1 then out[d] = (x == 1 or x == -1) and y or x
      elseif x == 1 then out[d] = y
      elseif y ~= 1 and y ~= x then ok = false end
    end
    if not ok then fail("%s: shapes %s and %s differ", self:who(), M.shape_str(shapes[1]), M.shape_str(b)) end
  end
  return out
end

local function sizes(xs)
  local sh = {}
  for i, x in ipairs(xs) do sh[i] = x:size() end
  return sh
end

-- An elementwise merge layer: fold(y, x) over the list, then finish(y, n).
local function merge_class(class_name, doc_min, fold, finish)
  local C = Layer:extend(class_name)
  M[class_name] = C
  function C:init(opts) self:_options(opts, {}) end
  function C:compute_output_shape(shapes)
    list_input(self, shapes, doc_min)
    if class_name == "Subtract" and #shapes ~= 2 then
      fail("%s: expects exactly 2 tensors, got %d", self:who(), #shapes)
    end
    return merged_shape(self, shapes)
  end
  function C:call(xs)
    list_input(self, xs, doc_min)
    if #xs > 1 or class_name == "Subtract" then self:compute_output_shape(sizes(xs)) end
    local y = xs[1]
    for i = 2, #xs do y = fold(y, xs[i]) end
    if finish then y = finish(y, #xs) end
    return y
  end
  function C:flops(s, o) return (#s - 1 + (finish and 1 or 0)) * numel(o), 0 end
  return C
end

--- Add({name=}), Subtract (exactly 2: a - b), Multiply, Average, Maximum,
--- Minimum: the elementwise sum, difference, product, mean, max, min of a list
--- of tensors (shapes equal, or broadcasting over dims of size 1).
merge_class("Add", 1, function(a, b) return a + b end)
merge_class("Subtract", 2, function(a, b) return a - b end)
merge_class("Multiply", 1, function(a, b) return a * b end)
merge_class("Average", 1, function(a, b) return a + b end, function(y, n) return y * (1 / n) end)
merge_class("Maximum", 1, function(a, b) return rn.maximum(a, b) end)
merge_class("Minimum", 1, function(a, b) return rn.minimum(a, b) end)

local Concatenate = Layer:extend("Concatenate")
M.Concatenate = Concatenate

--- Concatenate({axis=-1, name=}) (or Concatenate(axis)): joins a list of
--- tensors along axis (a Lua dim: 1-based, -1 = last).
function Concatenate:init(a, opts)
  if type(a) == "table" then opts, a = a, nil end
  opts = self:_options(opts, { "axis" })
  self.axis = a or opts.axis or -1
  if math.type(self.axis) ~= "integer" then fail("Concatenate: axis must be an integer, got %s", tostring(self.axis)) end
end

function Concatenate:compute_output_shape(shapes)
  list_input(self, shapes, 1)
  local n = #shapes[1]
  local ax = self.axis < 0 and n + 1 + self.axis or self.axis
  if ax < 2 or ax > n then
    fail("%s: axis %d is outside 2..%d (or -%d..-1) for inputs %s", self:who(), self.axis, n, n - 1,
      M.shape_str(shapes[1]))
  end
  local out = M.shape(shapes[1])
  for i = 2, #shapes do
    local s = shapes[i]
    local ok = #s == n
    for d = 2, n do if d ~= ax and s[d] ~= out[d] then ok = false end end
    if not ok then
      fail("%s: shapes %s and %s differ outside axis %d", self:who(), M.shape_str(shapes[1]),
        M.shape_str(s), self.axis)
    end
    out[ax] = out[ax] + s[ax]
  end
  return out
end

function Concatenate:call(xs)
  list_input(self, xs, 1)
  local sh = {}
  for i, x in ipairs(xs) do sh[i] = x:size() end
  self:compute_output_shape(sh)
  return rn.concat(xs, self.axis)
end
function Concatenate:flops() return 0, 0 end

return M
