-- conv.lua (layers) - convolution layers: Conv2D.
local M = require "rn.layers.base"
local h = M._h
local rn, fail, numel, is_sym = h.rn, h.fail, h.numel, h.is_sym
local activation, act_flops = h.activation, h.act_flops
local pos_int, pair, padding_spec = h.pos_int, h.pair, h.padding_spec
local window_out, check_4d, spatial_out = h.window_out, h.check_4d, h.spatial_out
local get_init, get_reg = h.get_init, h.get_reg
local Layer = M.Layer

-- ---- Conv2D --------------------------------------------------------------------------

local Conv2D = Layer:extend("Conv2D")
M.Conv2D = Conv2D

--- Conv2D(filters, kernel_size, {strides=1, padding="valid", dilation_rate=1,
--- use_bias=true, activation=nil, kernel_initializer="glorot_uniform",
--- bias_initializer="zeros", kernel_regularizer=, bias_regularizer=, name=}).
--- Kernel (kh, kw, cin, filters) as Keras; NHWC input.
function Conv2D:init(filters, kernel_size, opts)
  if kernel_size == nil or (type(kernel_size) == "table" and kernel_size[1] == nil) then
    fail("Conv2D: kernel_size (argument 2) is missing: Conv2D(filters, kernel_size, {options})")
  end
  self.filters = pos_int(filters, "Conv2D", "filters (argument 1)")
  self.kernel_size = pair(kernel_size, "Conv2D", "kernel_size (argument 2)")
  opts = self:_options(opts, { "strides", "padding", "dilation_rate", "use_bias", "activation",
    "kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer" })
  self.strides = pair(opts.strides or 1, "Conv2D", "strides")
  self.dilation_rate = pair(opts.dilation_rate or 1, "Conv2D", "dilation_rate")
  self.padding = padding_spec(opts.padding, "Conv2D")
  self.use_bias = opts.use_bias ~= false
  self.activation, self.activation_name = activation(opts.activation, "Conv2D")
  self.kernel_initializer = get_init(opts.kernel_initializer or "glorot_uniform", "Conv2D")
  self.bias_initializer = get_init(opts.bias_initializer or "zeros", "Conv2D")
  self.kernel_regularizer = get_reg(opts.kernel_regularizer, "Conv2D")
  self.bias_regularizer = get_reg(opts.bias_regularizer, "Conv2D")
end

function Conv2D:build(s)
  check_4d(self, s)
  self.kernel = self:add_weight("kernel", { self.kernel_size[1], self.kernel_size[2], s[4], self.filters },
    { initializer = self.kernel_initializer, regularizer = self.kernel_regularizer })
  if self.use_bias then
    self.bias = self:add_weight("bias", { self.filters },
      { initializer = self.bias_initializer, regularizer = self.bias_regularizer })
  end
end

function Conv2D:_check_channels(c)
  local cin = self.kernel:size(3)
  if c ~= cin then
    fail("%s: input has %d channels but the layer was built for %d", self:who(), c, cin)
  end
end

function Conv2D:call(x)
  if x:dim() ~= 4 then check_4d(self, x:size()) end
  self:_check_channels(x:size(4))
  local y = rn.conv2d(x, self.kernel, self.bias,
    { stride = self.strides, padding = self.padding, dilation = self.dilation_rate })
  if self.activation then y = self.activation(y) end
  return y
end

function Conv2D:compute_output_shape(s)
  check_4d(self, s)
  self:_check_channels(s[4])
  local oh, ow = spatial_out(self, s, self.kernel_size, self.strides, self.dilation_rate, self.padding)
  return M.shape({ s[1], oh, ow, self.filters })
end

function Conv2D:flops(s, o)
  local macs = o[2] * o[3] * o[4] * self.kernel_size[1] * self.kernel_size[2] * s[4]
  local f = 2 * macs + (self.use_bias and numel(o) or 0)
  if self.activation then f = f + act_flops(self.activation_name, numel(o)) end
  return f, macs
end

return M
