-- reshape.lua (layers) - reshaping layers: Flatten, Reshape.
local M = require "rn.layers.base"
local h = M._h
local rn, fail, numel, is_sym = h.rn, h.fail, h.numel, h.is_sym
local activation, act_flops = h.activation, h.act_flops
local pos_int, pair, padding_spec = h.pos_int, h.pair, h.padding_spec
local window_out, check_4d, spatial_out = h.window_out, h.check_4d, h.spatial_out
local get_init, get_reg = h.get_init, h.get_reg
local Layer = M.Layer

-- ---- reshaping and regularization ----------------------------------------------------

local Flatten = Layer:extend("Flatten")
M.Flatten = Flatten

--- Flatten({name=}): (N, d1, d2, ...) -> (N, d1*d2*...).
function Flatten:init(opts) self:_options(opts, {}) end
function Flatten:compute_output_shape(s) return M.shape({ s[1], numel(s) }) end
function Flatten:call(x)
  if x:dim() == 1 then return x:reshape(x:size(1), 1) end
  return x:flatten(2)
end
function Flatten:flops() return 0, 0 end

local Reshape = Layer:extend("Reshape")
M.Reshape = Reshape

--- Reshape(target_shape, {name=}): target without the batch dim; one -1 allowed.
function Reshape:init(target, opts)
  self:_options(opts, {})
  if type(target) ~= "table" or #target == 0 then fail("Reshape: target_shape must be a list of dims") end
  self.target_shape = {}
  for i, d in ipairs(target) do
    if math.type(d) ~= "integer" or (d < 1 and d ~= -1) then
      fail("Reshape: dim %d of target_shape is %s; use integers >= 1 or one -1", i, tostring(d))
    end
    self.target_shape[i] = d
  end
end
function Reshape:compute_output_shape(s)
  local n, known, free = numel(s), 1, nil
  for i, d in ipairs(self.target_shape) do
    if d == -1 then free = i else known = known * d end
  end
  local out = { s[1] }
  for i, d in ipairs(self.target_shape) do out[i + 1] = d end
  if free then out[free + 1] = n // known end
  if n ~= numel(out) or (free and n % known ~= 0) then
    fail("%s: cannot reshape %s into (None, %s)", self:who(), M.shape_str(s), table.concat(self.target_shape, ", "))
  end
  return M.shape(out)
end
function Reshape:call(x)
  local s = { x:size(1) }
  for i, d in ipairs(self.target_shape) do s[i + 1] = d end
  return x:reshape(s)
end
function Reshape:flops() return 0, 0 end

return M
