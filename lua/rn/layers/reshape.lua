-- reshape.lua (layers) - reshaping layers: Flatten, Reshape, Permute,
-- RepeatVector, ZeroPadding2D, Cropping2D, UpSampling2D.
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

local Permute = Layer:extend("Permute")
M.Permute = Permute

--- Permute(dims, {name=}): reorders the dims after the batch, as Keras: dims
--- is a permutation of 1..rank-1 (Permute({2, 1}) swaps the two dims of
--- (N, a, b)).
function Permute:init(dims, opts)
  self:_options(opts, {})
  if type(dims) ~= "table" or #dims == 0 then fail("Permute: dims must be a list, e.g. {2, 1}") end
  local seen = {}
  for i, d in ipairs(dims) do
    if math.type(d) ~= "integer" or d < 1 or d > #dims or seen[d] then
      fail("Permute: dims must be a permutation of 1..%d, got {%s}", #dims, table.concat(dims, ", "))
    end
    seen[d] = true
    self.dims = self.dims or {}
    self.dims[i] = d
  end
end
function Permute:compute_output_shape(s)
  if #s ~= #self.dims + 1 then
    fail("%s: input %s has %d dims after the batch; dims has %d", self:who(), M.shape_str(s), #s - 1, #self.dims)
  end
  local out = { s[1] }
  for i, d in ipairs(self.dims) do out[i + 1] = s[d + 1] end
  return M.shape(out)
end
function Permute:call(x)
  self:compute_output_shape(x:size())
  local p = { 1 }
  for i, d in ipairs(self.dims) do p[i + 1] = d + 1 end
  return x:permute(table.unpack(p))
end
function Permute:flops() return 0, 0 end

local RepeatVector = Layer:extend("RepeatVector")
M.RepeatVector = RepeatVector

--- RepeatVector(n, {name=}): (N, F) -> (N, n, F).
function RepeatVector:init(n, opts)
  self:_options(opts, {})
  self.n = pos_int(n, "RepeatVector", "n (argument 1)")
end
function RepeatVector:compute_output_shape(s)
  if #s ~= 2 then fail("%s: expects a 2-d input (batch, features), got %s", self:who(), M.shape_str(s)) end
  return M.shape({ s[1], self.n, s[2] })
end
function RepeatVector:call(x)
  self:compute_output_shape(x:size())
  return x:reshape({ x:size(1), 1, x:size(2) }):expand({ x:size(1), self.n, x:size(2) }):contiguous()
end
function RepeatVector:flops() return 0, 0 end

-- ((top, bottom), (left, right)) from n | {h, w} | {{t, b}, {l, r}}, Keras's forms
local function pads2d(v, who, what)
  local function nn(x)
    if math.type(x) ~= "integer" or x < 0 then
      fail("%s: %s must be integers >= 0: n, {h, w} or {{top, bottom}, {left, right}}; got %s", who, what,
        tostring(x))
    end
    return x
  end
  if type(v) ~= "table" then local n = nn(v == nil and 1 or v); return { n, n, n, n } end
  if #v ~= 2 then fail("%s: %s must be n, {h, w} or {{top, bottom}, {left, right}}", who, what) end
  if type(v[1]) == "table" then
    if #v[1] ~= 2 or type(v[2]) ~= "table" or #v[2] ~= 2 then
      fail("%s: %s must be n, {h, w} or {{top, bottom}, {left, right}}", who, what)
    end
    return { nn(v[1][1]), nn(v[1][2]), nn(v[2][1]), nn(v[2][2]) }
  end
  return { nn(v[1]), nn(v[1]), nn(v[2]), nn(v[2]) }
end

local ZeroPadding2D = Layer:extend("ZeroPadding2D")
M.ZeroPadding2D = ZeroPadding2D

--- ZeroPadding2D(padding=1, {name=}): zero rows and columns around an NHWC
--- input: n, {h, w} (each side) or {{top, bottom}, {left, right}}.
function ZeroPadding2D:init(padding, opts)
  if type(padding) == "table" and padding[1] == nil and next(padding) ~= nil then opts, padding = padding, nil end
  self:_options(opts, {})
  self.padding = pads2d(padding, "ZeroPadding2D", "padding")
end
function ZeroPadding2D:compute_output_shape(s)
  check_4d(self, s)
  local p = self.padding
  return M.shape({ s[1], s[2] < 0 and -1 or s[2] + p[1] + p[2], s[3] < 0 and -1 or s[3] + p[3] + p[4], s[4] })
end
function ZeroPadding2D:call(x)
  if x:dim() ~= 4 then check_4d(self, x:size()) end
  local p, s = self.padding, x:size()
  local function zeros(shape) return rn.zeros(shape, { dtype = x.dtype, device = x.device }) end
  local parts = {}
  if p[1] > 0 then parts[#parts + 1] = zeros({ s[1], p[1], s[3], s[4] }) end
  parts[#parts + 1] = x
  if p[2] > 0 then parts[#parts + 1] = zeros({ s[1], p[2], s[3], s[4] }) end
  local y = #parts > 1 and rn.concat(parts, 2) or x
  local h = y:size(2)
  parts = {}
  if p[3] > 0 then parts[#parts + 1] = zeros({ s[1], h, p[3], s[4] }) end
  parts[#parts + 1] = y
  if p[4] > 0 then parts[#parts + 1] = zeros({ s[1], h, p[4], s[4] }) end
  return #parts > 1 and rn.concat(parts, 3) or y
end
function ZeroPadding2D:flops() return 0, 0 end

local Cropping2D = Layer:extend("Cropping2D")
M.Cropping2D = Cropping2D

--- Cropping2D(cropping=0, {name=}): drops rows and columns at the edges of an
--- NHWC input: n, {h, w} (each side) or {{top, bottom}, {left, right}}.
function Cropping2D:init(cropping, opts)
  if type(cropping) == "table" and cropping[1] == nil and next(cropping) ~= nil then opts, cropping = cropping, nil end
  self:_options(opts, {})
  self.cropping = pads2d(cropping == nil and 0 or cropping, "Cropping2D", "cropping")
end
function Cropping2D:compute_output_shape(s)
  check_4d(self, s)
  local c = self.cropping
  local oh, ow = s[2] < 0 and -1 or s[2] - c[1] - c[2], s[3] < 0 and -1 or s[3] - c[3] - c[4]
  if (s[2] >= 0 and oh < 1) or (s[3] >= 0 and ow < 1) then
    fail("%s: cropping {{%d, %d}, {%d, %d}} leaves nothing of input %s", self:who(), c[1], c[2], c[3], c[4],
      M.shape_str(s))
  end
  return M.shape({ s[1], oh, ow, s[4] })
end
function Cropping2D:call(x)
  local o = self:compute_output_shape(x:size())
  local c = self.cropping
  return x:narrow(2, c[1] + 1, o[2]):narrow(3, c[3] + 1, o[3])
end
function Cropping2D:flops() return 0, 0 end

local UpSampling2D = Layer:extend("UpSampling2D")
M.UpSampling2D = UpSampling2D

--- UpSampling2D(size=2, {interpolation="nearest"|"bilinear", name=}): repeats
--- each row size[1] times and each column size[2] times (nearest), or
--- resizes by those factors with half-pixel bilinear interpolation (Keras's,
--- tf.image.resize's); NHWC.
function UpSampling2D:init(size, opts)
  if type(size) == "table" and size[1] == nil and next(size) ~= nil then opts, size = size, nil end
  opts = self:_options(opts, { "interpolation" })
  self.size = pair(size or 2, "UpSampling2D", "size")
  local mode = opts.interpolation or "nearest"
  if mode ~= "nearest" and mode ~= "bilinear" then
    fail("UpSampling2D: interpolation must be \"nearest\" or \"bilinear\", got %s", tostring(mode))
  end
  self.interpolation = mode
end
function UpSampling2D:compute_output_shape(s)
  check_4d(self, s)
  return M.shape({ s[1], s[2] < 0 and -1 or s[2] * self.size[1], s[3] < 0 and -1 or s[3] * self.size[2], s[4] })
end
function UpSampling2D:call(x)
  if x:dim() ~= 4 then check_4d(self, x:size()) end
  return rn.upsample(x, { self.size[1], self.size[2] }, { method = self.interpolation })
end
function UpSampling2D:flops() return 0, 0 end

return M
