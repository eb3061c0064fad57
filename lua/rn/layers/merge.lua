-- merge.lua (layers) - merging layers: Add, Concatenate.
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

local Add = Layer:extend("Add")
M.Add = Add

--- Add({name=}): the elementwise sum of a list of same-shape tensors.
function Add:init(opts) self:_options(opts, {}) end

local function same_shapes(self, shapes)
  for i = 2, #shapes do
    local a, b = shapes[1], shapes[i]
    local same = #a == #b
    for d = 2, #a do if a[d] ~= b[d] then same = false end end
    if not same or (a[1] >= 0 and b[1] >= 0 and a[1] ~= b[1]) then
      fail("%s: shapes %s and %s differ", self:who(), M.shape_str(a), M.shape_str(b))
    end
  end
end

function Add:compute_output_shape(shapes)
  list_input(self, shapes, 1)
  same_shapes(self, shapes)
  return M.shape(shapes[1])
end

function Add:call(xs)
  list_input(self, xs, 1)
  if #xs > 1 then
    local sh = {}
    for i, x in ipairs(xs) do sh[i] = x:size() end
    same_shapes(self, sh)
  end
  local y = xs[1]
  for i = 2, #xs do y = y + xs[i] end
  return y
end
function Add:flops(s, o) return (#s - 1) * numel(o), 0 end

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
