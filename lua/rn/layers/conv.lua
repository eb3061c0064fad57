-- conv.lua (layers) - convolution layers: Conv2D (groups=), DepthwiseConv2D,
-- SeparableConv2D, Conv2DTranspose. NHWC inputs, Keras's kernel shapes and
-- weight names, so weights load from Keras/PyTorch models by name.
local M = require "rn.layers.base"
local h = M._h
local rn, fail, numel, is_sym = h.rn, h.fail, h.numel, h.is_sym
local activation, act_flops = h.activation, h.act_flops
local pos_int, pair, padding_spec = h.pos_int, h.pair, h.padding_spec
local window_out, check_4d, spatial_out = h.window_out, h.check_4d, h.spatial_out
local get_init, get_reg = h.get_init, h.get_reg
local Layer = M.Layer

-- FLOPs of a convolution with macs multiply-accumulates per sample: 2 per
-- MAC, the bias, the activation (the summary's convention)
local function conv_flops(self, macs, o)
  local f = 2 * macs + (self.use_bias and numel(o) or 0)
  if self.activation then f = f + act_flops(self.activation_name, numel(o)) end
  return f, macs
end

-- the (filters, kernel_size) arguments every convolution layer but the
-- depthwise one starts with
local function filters_and_kernel(self, who, filters, kernel_size)
  if kernel_size == nil or (type(kernel_size) == "table" and kernel_size[1] == nil) then
    fail("%s: kernel_size (argument 2) is missing: %s(filters, kernel_size, {options})", who, who)
  end
  self.filters = pos_int(filters, who, "filters (argument 1)")
  self.kernel_size = pair(kernel_size, who, "kernel_size (argument 2)")
end

-- ---- Conv2D --------------------------------------------------------------------------

local Conv2D = Layer:extend("Conv2D")
M.Conv2D = Conv2D

--- Conv2D(filters, kernel_size, {strides=1, padding="valid", dilation_rate=1,
--- groups=1, use_bias=true, activation=nil, kernel_initializer="glorot_uniform",
--- bias_initializer="zeros", kernel_regularizer=, bias_regularizer=, name=}).
--- Kernel (kh, kw, cin/groups, filters) as Keras; NHWC input.
function Conv2D:init(filters, kernel_size, opts)
  filters_and_kernel(self, "Conv2D", filters, kernel_size)
  opts = self:_options(opts, { "strides", "padding", "dilation_rate", "groups", "use_bias", "activation",
    "kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer" })
  self.groups = pos_int(opts.groups or 1, "Conv2D", "groups")
  if self.filters % self.groups ~= 0 then
    fail("Conv2D: filters %d must be divisible by groups %d", self.filters, self.groups)
  end
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
  if s[4] % self.groups ~= 0 then
    fail("%s: the input's %d channels are not divisible by groups %d", self:who(), s[4], self.groups)
  end
  self.kernel = self:add_weight("kernel", { self.kernel_size[1], self.kernel_size[2], s[4] // self.groups, self.filters },
    { initializer = self.kernel_initializer, regularizer = self.kernel_regularizer })
  if self.use_bias then
    self.bias = self:add_weight("bias", { self.filters },
      { initializer = self.bias_initializer, regularizer = self.bias_regularizer })
  end
end

function Conv2D:_check_channels(c)
  local cin = self.kernel:size(3) * (self.groups or 1)
  if c ~= cin then
    fail("%s: input has %d channels but the layer was built for %d", self:who(), c, cin)
  end
end

function Conv2D:call(x)
  if x:dim() ~= 4 then check_4d(self, x:size()) end
  self:_check_channels(x:size(4))
  local y = rn.conv2d(x, self.kernel, self.bias,
    { stride = self.strides, padding = self.padding, dilation = self.dilation_rate, groups = self.groups })
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
  local macs = o[2] * o[3] * o[4] * self.kernel_size[1] * self.kernel_size[2] * (s[4] // self.groups)
  return conv_flops(self, macs, o)
end

-- ---- DepthwiseConv2D ------------------------------------------------------------------

local Depthwise = Layer:extend("DepthwiseConv2D")
Depthwise.base_name = "depthwise_conv2d"
M.DepthwiseConv2D = Depthwise

local DW_OPTS = { "strides", "padding", "depth_multiplier", "dilation_rate", "use_bias", "activation",
  "depthwise_initializer", "bias_initializer", "depthwise_regularizer", "bias_regularizer" }

--- DepthwiseConv2D(kernel_size, {strides=1, padding="valid", depth_multiplier=1,
--- dilation_rate=1, use_bias=true, activation=nil, depthwise_initializer=
--- "glorot_uniform", bias_initializer="zeros", depthwise_regularizer=,
--- bias_regularizer=, name=}): each input channel convolved with its own
--- depth_multiplier filters; weight depthwise_kernel (kh, kw, cin,
--- depth_multiplier) as Keras, output channel c*depth_multiplier + m. Runs as
--- rn.conv2d with groups = cin (oneDNN's and cuDNN's depthwise kernels).
function Depthwise:init(kernel_size, opts)
  if kernel_size == nil then
    fail("DepthwiseConv2D: kernel_size (argument 1) is missing: DepthwiseConv2D(kernel_size, {options})")
  end
  self.kernel_size = pair(kernel_size, "DepthwiseConv2D", "kernel_size (argument 1)")
  opts = self:_options(opts, DW_OPTS)
  self:_depthwise_options(opts, "DepthwiseConv2D")
  self.use_bias = opts.use_bias ~= false
  self.activation, self.activation_name = activation(opts.activation, "DepthwiseConv2D")
  self.bias_initializer = get_init(opts.bias_initializer or "zeros", "DepthwiseConv2D")
  self.bias_regularizer = get_reg(opts.bias_regularizer, "DepthwiseConv2D")
end

-- the options the depthwise step of DepthwiseConv2D and SeparableConv2D share
function Depthwise:_depthwise_options(opts, who)
  self.depth_multiplier = pos_int(opts.depth_multiplier or 1, who, "depth_multiplier")
  self.strides = pair(opts.strides or 1, who, "strides")
  self.dilation_rate = pair(opts.dilation_rate or 1, who, "dilation_rate")
  self.padding = padding_spec(opts.padding, who)
  self.depthwise_initializer = get_init(opts.depthwise_initializer or "glorot_uniform", who)
  self.depthwise_regularizer = get_reg(opts.depthwise_regularizer, who)
end

function Depthwise:_build_depthwise(s)
  check_4d(self, s)
  self.depthwise_kernel = self:add_weight("depthwise_kernel",
    { self.kernel_size[1], self.kernel_size[2], s[4], self.depth_multiplier },
    { initializer = self.depthwise_initializer, regularizer = self.depthwise_regularizer })
end

function Depthwise:build(s)
  self:_build_depthwise(s)
  if self.use_bias then
    self.bias = self:add_weight("bias", { s[4] * self.depth_multiplier },
      { initializer = self.bias_initializer, regularizer = self.bias_regularizer })
  end
end

function Depthwise:_check_channels(c)
  local cin = self.depthwise_kernel:size(3)
  if c ~= cin then fail("%s: input has %d channels but the layer was built for %d", self:who(), c, cin) end
end

-- the depthwise convolution of x (bias b or nil)
function Depthwise:_depthwise(x, b)
  if x:dim() ~= 4 then check_4d(self, x:size()) end
  self:_check_channels(x:size(4))
  local k = self.depthwise_kernel
  local cin = k:size(3)
  -- (kh, kw, cin, m) is the memory of the grouped kernel (kh, kw, 1, cin*m)
  local w = k:reshape({ k:size(1), k:size(2), 1, cin * self.depth_multiplier })
  return rn.conv2d(x, w, b, { stride = self.strides, padding = self.padding, dilation = self.dilation_rate,
    groups = cin })
end

function Depthwise:call(x)
  local y = self:_depthwise(x, self.bias)
  if self.activation then y = self.activation(y) end
  return y
end

function Depthwise:compute_output_shape(s)
  check_4d(self, s)
  self:_check_channels(s[4])
  local oh, ow = spatial_out(self, s, self.kernel_size, self.strides, self.dilation_rate, self.padding)
  return M.shape({ s[1], oh, ow, s[4] * self.depth_multiplier })
end

function Depthwise:flops(_, o)
  local macs = o[2] * o[3] * o[4] * self.kernel_size[1] * self.kernel_size[2]
  return conv_flops(self, macs, o)
end

-- ---- SeparableConv2D ------------------------------------------------------------------

local Separable = Depthwise:extend("SeparableConv2D")
Separable.base_name = "separable_conv2d"
M.SeparableConv2D = Separable

--- SeparableConv2D(filters, kernel_size, {strides=1, padding="valid",
--- depth_multiplier=1, dilation_rate=1, use_bias=true, activation=nil,
--- depthwise_initializer="glorot_uniform", pointwise_initializer=
--- "glorot_uniform", bias_initializer="zeros", depthwise_regularizer=,
--- pointwise_regularizer=, bias_regularizer=, name=}): a depthwise
--- convolution (strides and dilation apply here, no bias) then a 1x1
--- convolution to filters channels with the bias, as Keras; weights
--- depthwise_kernel (kh, kw, cin, depth_multiplier), pointwise_kernel
--- (1, 1, cin*depth_multiplier, filters), bias (filters).
function Separable:init(filters, kernel_size, opts)
  filters_and_kernel(self, "SeparableConv2D", filters, kernel_size)
  local valid = { "pointwise_initializer", "pointwise_regularizer" }
  for _, k in ipairs(DW_OPTS) do valid[#valid + 1] = k end
  opts = self:_options(opts, valid)
  self:_depthwise_options(opts, "SeparableConv2D")
  self.use_bias = opts.use_bias ~= false
  self.activation, self.activation_name = activation(opts.activation, "SeparableConv2D")
  self.pointwise_initializer = get_init(opts.pointwise_initializer or "glorot_uniform", "SeparableConv2D")
  self.pointwise_regularizer = get_reg(opts.pointwise_regularizer, "SeparableConv2D")
  self.bias_initializer = get_init(opts.bias_initializer or "zeros", "SeparableConv2D")
  self.bias_regularizer = get_reg(opts.bias_regularizer, "SeparableConv2D")
end

function Separable:build(s)
  self:_build_depthwise(s)
  self.pointwise_kernel = self:add_weight("pointwise_kernel", { 1, 1, s[4] * self.depth_multiplier, self.filters },
    { initializer = self.pointwise_initializer, regularizer = self.pointwise_regularizer })
  if self.use_bias then
    self.bias = self:add_weight("bias", { self.filters },
      { initializer = self.bias_initializer, regularizer = self.bias_regularizer })
  end
end

function Separable:call(x)
  local y = rn.conv2d(self:_depthwise(x, nil), self.pointwise_kernel, self.bias)
  if self.activation then y = self.activation(y) end
  return y
end

function Separable:compute_output_shape(s)
  local o = Depthwise.compute_output_shape(self, s)
  o[4] = self.filters
  return o
end

function Separable:flops(s, o)
  local mid = o[2] * o[3] * s[4] * self.depth_multiplier
  local macs = mid * self.kernel_size[1] * self.kernel_size[2] + mid * self.filters
  return conv_flops(self, macs, o)
end

-- ---- Conv2DTranspose -------------------------------------------------------------------

local ConvT = Layer:extend("Conv2DTranspose")
ConvT.base_name = "conv2d_transpose"
M.Conv2DTranspose = ConvT

--- Conv2DTranspose(filters, kernel_size, {strides=1, padding="valid",
--- output_padding=nil, dilation_rate=1, use_bias=true, activation=nil,
--- kernel_initializer="glorot_uniform", bias_initializer="zeros",
--- kernel_regularizer=, bias_regularizer=, name=}): the transposed
--- convolution (rn.conv2d_transpose); kernel (kh, kw, filters, cin) as Keras;
--- output size as Keras: "same" H*stride, "valid" H*stride + max(k_dilated -
--- stride, 0), or with output_padding (H-1)*stride + k_dilated - 2*pad + op
--- (pad = k_dilated // 2 for "same", 0 for "valid").
function ConvT:init(filters, kernel_size, opts)
  filters_and_kernel(self, "Conv2DTranspose", filters, kernel_size)
  opts = self:_options(opts, { "strides", "padding", "output_padding", "dilation_rate", "use_bias", "activation",
    "kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer" })
  self.strides = pair(opts.strides or 1, "Conv2DTranspose", "strides")
  self.dilation_rate = pair(opts.dilation_rate or 1, "Conv2DTranspose", "dilation_rate")
  local p = opts.padding == nil and "valid" or (type(opts.padding) == "string" and opts.padding:lower())
  if p ~= "same" and p ~= "valid" then
    fail("Conv2DTranspose: padding must be \"same\" or \"valid\", got %s", tostring(opts.padding))
  end
  self.padding = p
  if opts.output_padding ~= nil then
    local op = type(opts.output_padding) == "table" and opts.output_padding or { opts.output_padding, opts.output_padding }
    for i = 1, 2 do
      if math.type(op[i]) ~= "integer" or op[i] < 0 or (op[i] >= self.strides[i] and op[i] >= self.dilation_rate[i]) then
        fail("Conv2DTranspose: output_padding must be integers >= 0 and smaller than the strides (%d,%d), got %s",
          self.strides[1], self.strides[2], tostring(op[i]))
      end
    end
    self.output_padding = { op[1], op[2] }
  end
  self.use_bias = opts.use_bias ~= false
  self.activation, self.activation_name = activation(opts.activation, "Conv2DTranspose")
  self.kernel_initializer = get_init(opts.kernel_initializer or "glorot_uniform", "Conv2DTranspose")
  self.bias_initializer = get_init(opts.bias_initializer or "zeros", "Conv2DTranspose")
  self.kernel_regularizer = get_reg(opts.kernel_regularizer, "Conv2DTranspose")
  self.bias_regularizer = get_reg(opts.bias_regularizer, "Conv2DTranspose")
end

function ConvT:build(s)
  check_4d(self, s)
  self.kernel = self:add_weight("kernel", { self.kernel_size[1], self.kernel_size[2], self.filters, s[4] },
    { initializer = self.kernel_initializer, regularizer = self.kernel_regularizer })
  if self.use_bias then
    self.bias = self:add_weight("bias", { self.filters },
      { initializer = self.bias_initializer, regularizer = self.bias_regularizer })
  end
end

function ConvT:_check_channels(c)
  local cin = self.kernel:size(4)
  if c ~= cin then fail("%s: input has %d channels but the layer was built for %d", self:who(), c, cin) end
end

function ConvT:call(x)
  if x:dim() ~= 4 then check_4d(self, x:size()) end
  self:_check_channels(x:size(4))
  local y = rn.conv2d_transpose(x, self.kernel, self.bias, { stride = self.strides, padding = self.padding,
    dilation = self.dilation_rate, output_padding = self.output_padding })
  if self.activation then y = self.activation(y) end
  return y
end

function ConvT:compute_output_shape(s)
  check_4d(self, s)
  self:_check_channels(s[4])
  local out = {}
  for i = 1, 2 do
    local n, st = s[i + 1], self.strides[i]
    local kd = self.dilation_rate[i] * (self.kernel_size[i] - 1) + 1
    local op = self.output_padding and self.output_padding[i]
    if n < 0 then out[i] = -1
    elseif op then
      local pad = self.padding == "same" and kd // 2 or 0
      out[i] = (n - 1) * st + kd - 2 * pad + op
    elseif self.padding == "same" then out[i] = n * st
    else out[i] = n * st + math.max(kd - st, 0) end
  end
  return M.shape({ s[1], out[1], out[2], self.filters })
end

function ConvT:flops(s, o)
  local macs = s[2] * s[3] * s[4] * self.kernel_size[1] * self.kernel_size[2] * self.filters
  return conv_flops(self, macs, o)
end

return M
