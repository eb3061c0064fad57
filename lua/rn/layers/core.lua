-- core.lua (layers) - Dense, ReLU, Activation, Dropout, Lambda.
local M = require "rn.layers.base"
local h = M._h
local rn, fail, numel, is_sym = h.rn, h.fail, h.numel, h.is_sym
local activation, act_flops = h.activation, h.act_flops
local pos_int, pair, padding_spec = h.pos_int, h.pair, h.padding_spec
local window_out, check_4d, spatial_out = h.window_out, h.check_4d, h.spatial_out
local get_init, get_reg = h.get_init, h.get_reg
local Layer = M.Layer

-- ---- Dense ---------------------------------------------------------------------------

local Dense = Layer:extend("Dense")
M.Dense = Dense

--- Dense(units, {activation=, use_bias=true, kernel_initializer="glorot_uniform",
--- bias_initializer="zeros", kernel_regularizer=, bias_regularizer=, name=}).
--- Kernel (in, units) as Keras; applies to the last dim.
function Dense:init(units, opts)
  self.units = pos_int(units, "Dense", "units (argument 1)")
  opts = self:_options(opts, { "activation", "use_bias", "kernel_initializer", "bias_initializer",
    "kernel_regularizer", "bias_regularizer" })
  self.use_bias = opts.use_bias ~= false
  self.activation, self.activation_name = activation(opts.activation, "Dense")
  self.kernel_initializer = get_init(opts.kernel_initializer or "glorot_uniform", "Dense")
  self.bias_initializer = get_init(opts.bias_initializer or "zeros", "Dense")
  self.kernel_regularizer = get_reg(opts.kernel_regularizer, "Dense")
  self.bias_regularizer = get_reg(opts.bias_regularizer, "Dense")
end

function Dense:build(s)
  if #s < 2 then fail("%s: expects at least 2 dims (batch, features), got %s", self:who(), M.shape_str(s)) end
  self.kernel = self:add_weight("kernel", { s[#s], self.units },
    { initializer = self.kernel_initializer, regularizer = self.kernel_regularizer })
  if self.use_bias then
    self.bias = self:add_weight("bias", { self.units },
      { initializer = self.bias_initializer, regularizer = self.bias_regularizer })
  end
end

function Dense:compute_output_shape(s)
  local n = self.kernel:size(1)
  if #s < 2 or s[#s] ~= n then
    fail("%s: input %s: the last dim must be %d (the layer was built for it)", self:who(), M.shape_str(s), n)
  end
  local o = M.shape(s)
  o[#o] = self.units
  return o
end

function Dense:call(x)
  if x:dim() < 2 or x:size(-1) ~= self.kernel:size(1) then self:compute_output_shape(x:size()) end
  local y = rn.linear(x, self.kernel, self.bias)
  if self.activation then y = self.activation(y) end
  return y
end

function Dense:flops(s, o)
  local macs = numel(s) * self.units
  local f = 2 * macs + (self.use_bias and numel(o) or 0)
  if self.activation then f = f + act_flops(self.activation_name, numel(o)) end
  return f, macs
end

-- ---- activations ---------------------------------------------------------------------

local ReLU = Layer:extend("ReLU")
M.ReLU = ReLU

--- ReLU({max_value=nil, negative_slope=0, name=}).
function ReLU:init(opts)
  opts = self:_options(opts, { "max_value", "negative_slope" })
  self.max_value = opts.max_value
  self.negative_slope = opts.negative_slope or 0
  if self.max_value ~= nil and type(self.max_value) ~= "number" then
    fail("ReLU: max_value must be a number, got %s", type(self.max_value))
  end
  if type(self.negative_slope) ~= "number" or self.negative_slope < 0 then
    fail("ReLU: negative_slope must be a number >= 0, got %s", tostring(self.negative_slope))
  end
end

function ReLU:call(x)
  local ns, mv = self.negative_slope, self.max_value
  if ns == 0 and mv == 6 then return x:relu6() end        -- one native op
  local y = ns ~= 0 and rn.leaky_relu(x, ns) or x:relu()
  if mv then y = y:minimum(mv) end
  return y
end
function ReLU:compute_output_shape(s) return M.shape(s) end
function ReLU:flops(_, o) return numel(o), 0 end

local Activation = Layer:extend("Activation")
M.Activation = Activation

--- Activation(name_or_function, {name=}): relu, softmax (last dim),
--- log_softmax, sigmoid, tanh, linear, gelu, relu6, silu/swish,
--- hard_sigmoid, hard_swish/hard_silu, softplus, leaky_relu, elu, selu,
--- softsign, exponential, mish (Keras 3's definitions and defaults).
function Activation:init(fn, opts)
  if fn == nil then fail("Activation: argument 1 (the activation) is missing; known: %s", table.concat(ACT_NAMES, ", ")) end
  self:_options(opts, {})
  self.fn, self.activation_name = activation(fn, "Activation")
end
function Activation:call(x) return self.fn(x) end
function Activation:compute_output_shape(s) return M.shape(s) end
function Activation:flops(_, o) return act_flops(self.activation_name, numel(o)), 0 end

local Dropout = Layer:extend("Dropout")
M.Dropout = Dropout

--- Dropout(rate, {name=}): zeroes a fraction rate of the inputs in training
--- mode and scales the rest by 1/(1-rate); the identity in inference mode.
function Dropout:init(rate, opts)
  self:_options(opts, {})
  if type(rate) ~= "number" or rate < 0 or rate >= 1 then
    fail("Dropout: rate must be a number in [0, 1), got %s", tostring(rate))
  end
  self.rate = rate
end
function Dropout:compute_output_shape(s) return M.shape(s) end
function Dropout:call(x, training)
  if not training or self.rate == 0 then return x end
  return rn.dropout(x, self.rate, { training = true })
end
function Dropout:flops() return 0, 0 end

local Lambda = Layer:extend("Lambda")
M.Lambda = Lambda

--- Lambda(fn, {name=}): a weightless layer computing fn(x) (x a tensor or a
--- list); its output shape comes from a dry run on zeros.
function Lambda:init(fn, opts)
  self:_options(opts, {})
  if type(fn) ~= "function" then fail("Lambda: argument 1 must be a function(x), got %s", type(fn)) end
  self.fn = fn
end
function Lambda:call(x, training) return self.fn(x, training) end

return M
