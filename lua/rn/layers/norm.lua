-- norm.lua (layers) - normalization layers: BatchNormalization,
-- LayerNormalization, GroupNormalization (the last two on the fused
-- rn.layer_norm / rn.group_norm kernels).
local M = require "rn.layers.base"
local h = M._h
local rn, fail, numel, is_sym = h.rn, h.fail, h.numel, h.is_sym
local activation, act_flops = h.activation, h.act_flops
local pos_int, pair, padding_spec = h.pos_int, h.pair, h.padding_spec
local window_out, check_4d, spatial_out = h.window_out, h.check_4d, h.spatial_out
local get_init, get_reg = h.get_init, h.get_reg
local Layer = M.Layer

-- ---- BatchNormalization --------------------------------------------------------------

local BN = Layer:extend("BatchNormalization")
BN.keep_float32_weights = true -- mixed_bfloat16: bf16 x, float32 parameters and statistics
M.BatchNormalization = BN

--- BatchNormalization({axis=-1, momentum=0.99, epsilon=1e-3, center=true,
--- scale=true, beta_initializer="zeros", gamma_initializer="ones",
--- moving_mean_initializer="zeros", moving_variance_initializer="ones",
--- beta_regularizer=, gamma_regularizer=, unbiased=false, name=}).
--- Normalizes the last (channel) dim. gamma/beta are trainable;
--- moving_mean/moving_variance are not (they count as non-trainable
--- parameters). Training mode uses the batch statistics and updates the
--- moving ones (moving = momentum*moving + (1-momentum)*batch, with the
--- biased batch variance as Keras; unbiased = true takes var*N/(N-1) as
--- PyTorch's BatchNorm); inference uses the moving ones. A layer with
--- trainable=false always runs in inference mode.
function BN:init(opts)
  opts = self:_options(opts, { "axis", "momentum", "epsilon", "center", "scale", "beta_initializer",
    "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer",
    "beta_regularizer", "gamma_regularizer", "unbiased" })
  self.axis = opts.axis or -1
  self.unbiased = opts.unbiased == true
  if opts.unbiased ~= nil and type(opts.unbiased) ~= "boolean" then
    fail("BatchNormalization: unbiased must be a boolean, got %s", type(opts.unbiased))
  end
  self.momentum = opts.momentum or 0.99
  self.epsilon = opts.epsilon or 1e-3
  if type(self.momentum) ~= "number" or self.momentum < 0 or self.momentum > 1 then
    fail("BatchNormalization: momentum must be a number in [0, 1], got %s", tostring(self.momentum))
  end
  if type(self.epsilon) ~= "number" or self.epsilon <= 0 then
    fail("BatchNormalization: epsilon must be a number > 0, got %s", tostring(self.epsilon))
  end
  self.center = opts.center ~= false
  self.scale = opts.scale ~= false
  self.beta_initializer = get_init(opts.beta_initializer or "zeros", "BatchNormalization")
  self.gamma_initializer = get_init(opts.gamma_initializer or "ones", "BatchNormalization")
  self.moving_mean_initializer = get_init(opts.moving_mean_initializer or "zeros", "BatchNormalization")
  self.moving_variance_initializer = get_init(opts.moving_variance_initializer or "ones", "BatchNormalization")
  self.beta_regularizer = get_reg(opts.beta_regularizer, "BatchNormalization")
  self.gamma_regularizer = get_reg(opts.gamma_regularizer, "BatchNormalization")
end

function BN:build(s)
  local axis = self.axis
  if axis ~= -1 and axis ~= #s then
    fail("%s: only the last axis (-1) is supported (channels last), got axis %s", self:who(), tostring(axis))
  end
  if #s < 2 then fail("%s: expects at least 2 dims, got %s", self:who(), M.shape_str(s)) end
  local c = s[#s]
  if self.scale then
    self.gamma = self:add_weight("gamma", { c }, { initializer = self.gamma_initializer,
      regularizer = self.gamma_regularizer })
  end
  if self.center then
    self.beta = self:add_weight("beta", { c }, { initializer = self.beta_initializer,
      regularizer = self.beta_regularizer })
  end
  self.moving_mean = self:add_weight("moving_mean", { c },
    { initializer = self.moving_mean_initializer, trainable = false })
  self.moving_variance = self:add_weight("moving_variance", { c },
    { initializer = self.moving_variance_initializer, trainable = false })
end

function BN:compute_output_shape(s)
  local c = self.moving_mean:size(1)
  if #s < 2 or s[#s] ~= c then
    fail("%s: input %s has %s channels but the layer was built for %d", self:who(), M.shape_str(s),
      tostring(s[#s]), c)
  end
  return M.shape(s)
end

function BN:call(x, training)
  if x:dim() < 2 or x:size(-1) ~= self.moving_mean:size(1) then self:compute_output_shape(x:size()) end
  return rn.batch_norm(x, self.gamma, self.beta, self.moving_mean, self.moving_variance,
    { training = (training and self.trainable) and true or false, momentum = self.momentum,
      eps = self.epsilon, relu = self._fuse_relu, unbiased = self.unbiased })
end

function BN:flops(_, o) return 2 * numel(o), 0 end

-- gamma and beta of a per-channel affine (LayerNormalization, GroupNormalization)
local function affine_options(self, opts, who)
  self.epsilon = opts.epsilon or 1e-3
  if type(self.epsilon) ~= "number" or self.epsilon <= 0 then
    fail("%s: epsilon must be a number > 0, got %s", who, tostring(self.epsilon))
  end
  self.axis = opts.axis or -1
  self.center = opts.center ~= false
  self.scale = opts.scale ~= false
  self.beta_initializer = get_init(opts.beta_initializer or "zeros", who)
  self.gamma_initializer = get_init(opts.gamma_initializer or "ones", who)
  self.beta_regularizer = get_reg(opts.beta_regularizer, who)
  self.gamma_regularizer = get_reg(opts.gamma_regularizer, who)
end

local AFFINE_OPTS = { "axis", "epsilon", "center", "scale", "beta_initializer", "gamma_initializer",
  "beta_regularizer", "gamma_regularizer" }

local function affine_build(self, s)
  if self.axis ~= -1 and self.axis ~= #s then
    fail("%s: only the last axis (-1) is supported (features last), got axis %s", self:who(), tostring(self.axis))
  end
  if #s < 2 then fail("%s: expects at least 2 dims, got %s", self:who(), M.shape_str(s)) end
  local c = s[#s]
  self.channels = c
  if self.scale then
    self.gamma = self:add_weight("gamma", { c }, { initializer = self.gamma_initializer, regularizer = self.gamma_regularizer })
  end
  if self.center then
    self.beta = self:add_weight("beta", { c }, { initializer = self.beta_initializer, regularizer = self.beta_regularizer })
  end
end

local function affine_shape(self, s)
  if #s < 2 or s[#s] ~= self.channels then
    fail("%s: input %s has %s features but the layer was built for %d", self:who(), M.shape_str(s),
      tostring(s[#s]), self.channels)
  end
  return M.shape(s)
end

-- ---- LayerNormalization -----------------------------------------------------------------

local LN = Layer:extend("LayerNormalization")
M.LayerNormalization = LN

--- LayerNormalization({axis=-1, epsilon=1e-3, center=true, scale=true,
--- beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=,
--- gamma_regularizer=, name=}): each sample's last dim normalized to mean 0
--- and variance 1 (biased), then scaled by gamma and shifted by beta (Keras's
--- defaults; PyTorch's eps is 1e-5). One fused kernel (rn.layer_norm).
function LN:init(opts)
  opts = self:_options(opts, AFFINE_OPTS)
  affine_options(self, opts, "LayerNormalization")
end
function LN:build(s) affine_build(self, s) end
function LN:compute_output_shape(s) return affine_shape(self, s) end
function LN:call(x)
  if x:dim() < 2 or x:size(-1) ~= self.channels then affine_shape(self, x:size()) end
  return rn.layer_norm(x, self.gamma, self.beta, { eps = self.epsilon, dims = 1 })
end
function LN:flops(_, o) return 5 * numel(o), 0 end

-- ---- GroupNormalization -----------------------------------------------------------------

local GN = Layer:extend("GroupNormalization")
M.GroupNormalization = GN

--- GroupNormalization({groups=32, axis=-1, epsilon=1e-3, center=true,
--- scale=true, ...initializers/regularizers, name=}): the channels (last
--- dim) split into groups, each normalized over its channels and all the
--- other non-batch dims, then gamma and beta per channel (Keras's
--- GroupNormalization; groups = 1 is layer norm over all features,
--- groups = channels instance norm). One fused kernel (rn.group_norm).
function GN:init(opts)
  opts = self:_options(opts, { "groups", table.unpack(AFFINE_OPTS) })
  self.groups = pos_int(opts.groups or 32, "GroupNormalization", "groups")
  affine_options(self, opts, "GroupNormalization")
end
function GN:build(s)
  if #s >= 2 and s[#s] % self.groups ~= 0 then
    fail("%s: the %d channels are not divisible by groups %d", self:who(), s[#s], self.groups)
  end
  affine_build(self, s)
end
function GN:compute_output_shape(s) return affine_shape(self, s) end
function GN:call(x)
  if x:dim() < 2 or x:size(-1) ~= self.channels then affine_shape(self, x:size()) end
  return rn.group_norm(x, self.groups, self.gamma, self.beta, { eps = self.epsilon })
end
function GN:flops(_, o) return 5 * numel(o), 0 end

return M
