-- pool.lua (layers) - pooling layers: GlobalAveragePooling2D, MaxPooling2D,
-- AveragePooling2D.
local M = require "rn.layers.base"
local h = M._h
local rn, fail, numel, is_sym = h.rn, h.fail, h.numel, h.is_sym
local activation, act_flops = h.activation, h.act_flops
local pos_int, pair, padding_spec = h.pos_int, h.pair, h.padding_spec
local window_out, check_4d, spatial_out = h.window_out, h.check_4d, h.spatial_out
local get_init, get_reg = h.get_init, h.get_reg
local Layer = M.Layer

-- ---- pooling ---------------------------------------------------------------------------

local GAP = Layer:extend("GlobalAveragePooling2D")
M.GlobalAveragePooling2D = GAP

--- GlobalAveragePooling2D({keepdims=false, name=}): (N,H,W,C) -> (N,C) (or (N,1,1,C)).
function GAP:init(opts)
  opts = self:_options(opts, { "keepdims" })
  self.keepdims = opts.keepdims and true or false
end
function GAP:compute_output_shape(s)
  check_4d(self, s)
  if self.keepdims then return M.shape({ s[1], 1, 1, s[4] }) end
  return M.shape({ s[1], s[4] })
end
function GAP:call(x)
  if x:dim() ~= 4 then check_4d(self, x:size()) end
  local y = rn.global_avg_pool2d(x)
  if self.keepdims then y = y:reshape(x:size(1), 1, 1, x:size(4)) end
  return y
end
function GAP:flops(s) return s[2] * s[3] * s[4], 0 end

local function pool_class(class_name, fn_name)
  local P = Layer:extend(class_name)
  --- (pool_size=2, {strides=pool_size, padding="valid", name=})
  function P:init(pool_size, opts)
    if type(pool_size) == "table" and pool_size[1] == nil then opts, pool_size = pool_size, nil end
    opts = self:_options(opts, { "pool_size", "strides", "padding" })
    self.pool_size = pair(pool_size or opts.pool_size or 2, class_name, "pool_size")
    self.strides = pair(opts.strides or self.pool_size, class_name, "strides")
    self.padding = padding_spec(opts.padding, class_name)
  end
  function P:compute_output_shape(s)
    check_4d(self, s)
    local oh, ow = spatial_out(self, s, self.pool_size, self.strides, { 1, 1 }, self.padding)
    return M.shape({ s[1], oh, ow, s[4] })
  end
  function P:call(x)
    if x:dim() ~= 4 then check_4d(self, x:size()) end
    return rn[fn_name](x, self.pool_size, { stride = self.strides, padding = self.padding })
  end
  function P:flops(_, o) return numel(o) * self.pool_size[1] * self.pool_size[2], 0 end
  return P
end
M.MaxPooling2D = pool_class("MaxPooling2D", "max_pool2d")
M.AveragePooling2D = pool_class("AveragePooling2D", "avg_pool2d")

return M
