-- base.lua (layers) - the Keras-style layer library's base: errors, shapes,
-- names, activations, the Layer class, calling, argument helpers, Input.
-- The layers themselves live in the family files beside it (conv, core,
-- norm, merge, pool, reshape); lua/rn/layers.lua gathers them into one
-- table, `require "rn.layers"`. From the original header:
--
-- The Keras-style layer library. A layer is a Lua object,
-- callable on a symbolic tensor (from layers.Input: records a node of the
-- functional graph and infers the output shape) or on real tensors (runs the
-- op with eager autograd). Weights are built lazily on the first call from
-- the input shape. Arguments mirror Keras: the main ones positional, the
-- rest in a trailing options table; unknown options raise an error naming
-- the layer and the valid options.
--
--   local layers = require "rn.layers"
--   local x = layers.Input({32, 32, 3})
--   local y = layers.Conv2D(16, 3, {padding = "same"})(x)      -- (None, 32, 32, 16)
--
-- Layers here: Input, Conv2D, BatchNormalization, ReLU, Activation, Add,
-- Concatenate, GlobalAveragePooling2D, MaxPooling2D, AveragePooling2D, Dense,
-- Flatten, Dropout, Reshape, Lambda, and the base class Layer for
-- user-defined layers (Layer:extend, add_weight, build, call).
-- Dims/axes are Lua dims: 1-based, negatives count from the end (-1 = last).
-- rn itself, looked up on first use: lua/rn/init.lua requires this module
-- while it is still loading, so `require "rn"` cannot run at load time.
local rn = setmetatable({}, { __index = function(t, k)
  local real = require "rn"
  setmetatable(t, { __index = real })
  return real[k]
end })
local initializers = require "rn.initializers"
local regularizers = require "rn.regularizers"

local M = {}

-- ---- errors ------------------------------------------------------------------

local function ours(src) return src:find("rn/[%w_/]+%.lua$") ~= nil end

--- Raises msg pointing at the first caller outside lua/rn/*.lua (the user's line).
local function fail(msg, ...)
  if select("#", ...) > 0 then msg = string.format(msg, ...) end
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then error(msg, 0) end
    if info.what ~= "C" and not ours(info.source) then error(msg, level) end
    level = level + 1
  end
end
M._fail = fail

-- edit distance, for "did you mean" hints
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local c = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + c)
    end
    prev = cur
  end
  return prev[#b]
end

--- check_options(who, opts, valid): opts must be nil or a table whose keys
--- are all in the list valid; returns opts or {}.
function M.check_options(who, opts, valid)
  if opts == nil then return {} end
  if type(opts) ~= "table" or rn.is_tensor(opts) or opts.is_symbolic then
    if rn.is_tensor(opts) or (type(opts) == "table" and opts.is_symbolic) then
      fail("%s: options must be a table, got a %s tensor: make the layer, then call it on the tensor, "
        .. "e.g. layers.ReLU()(x)", who, rn.is_tensor(opts) and "real" or "symbolic")
    end
    fail("%s: options must be a table, got %s", who, type(opts))
  end
  local set = {}
  for _, k in ipairs(valid) do set[k] = true end
  for k in pairs(opts) do
    if not set[k] then
      local hint, best = "", 3
      for _, v in ipairs(valid) do
        local d = type(k) == "string" and distance(k, v) or 99
        if d < best then best, hint = d, string.format(" (did you mean '%s'?)", v) end
      end
      fail("%s: unknown option '%s'%s; valid options: %s", who, tostring(k), hint,
        table.concat(valid, ", "))
    end
  end
  return opts
end

-- ---- shapes --------------------------------------------------------------------
-- A shape is a list of dims with -1 for an unknown (batch) dim; shape[-1] is
-- the last dim, as in Python.

local shape_mt = {}
shape_mt.__index = function(t, k)
  if math.type(k) == "integer" and k < 0 then return rawget(t, #t + 1 + k) end
end
shape_mt.__tostring = function(t) return M.shape_str(t) end

--- shape(list): a copy of list that accepts negative indices.
function M.shape(list)
  local s = {}
  for i = 1, #list do s[i] = list[i] end
  return setmetatable(s, shape_mt)
end

--- shape_str(s): "(None, 32, 32, 3)" as Keras prints it.
function M.shape_str(s)
  local parts = {}
  for i = 1, #s do
    parts[i] = (s[i] == nil or s[i] < 0) and "None" or string.format("%d", s[i])
  end
  return "(" .. table.concat(parts, ", ") .. (#s == 1 and ",)" or ")")
end

local function numel(s, from)
  local n = 1
  for i = from or 2, #s do n = n * s[i] end
  return n
end

local function is_sym(v) return type(v) == "table" and v.is_symbolic == true end
M.is_symbolic = is_sym

-- ---- names ---------------------------------------------------------------------

local name_counts = {}

--- unique_name(base): base, base_1, base_2, ... (Keras); "input" gives input_1, input_2, ...
function M.unique_name(base)
  local n = name_counts[base] or 0
  name_counts[base] = n + 1
  if base == "input" then return "input_" .. (n + 1) end
  return n == 0 and base or (base .. "_" .. n)
end

--- reset_names(): restart the automatic names (Keras' clear_session).
function M.reset_names() name_counts = {} end

--- snake(class_name): Keras' to_snake_case (Conv2D -> conv2d, ReLU -> re_lu).
function M.snake(s)
  return (s:gsub("(.)(%u[%l%d]+)", "%1_%2"):gsub("(%l)(%u)", "%1_%2"):lower())
end

-- ---- activations ---------------------------------------------------------------

local SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
local ACT = {
  relu = function(x) return x:relu() end,
  softmax = function(x) return rn.softmax(x, -1) end,
  log_softmax = function(x) return rn.log_softmax(x, -1) end,
  sigmoid = function(x) return x:sigmoid() end,
  tanh = function(x) return x:tanh() end,
  linear = function(x) return x end,
  -- Keras 3's defaults: gelu exact (approximate=False), leaky_relu slope 0.2,
  -- elu alpha 1, hard_sigmoid relu6(x+3)/6, hard_silu = hard_swish
  gelu = function(x) return x:gelu() end,
  relu6 = function(x) return x:relu6() end,
  silu = function(x) return x:silu() end,
  swish = function(x) return x:silu() end,
  hard_sigmoid = function(x) return x:hard_sigmoid() end,
  hard_swish = function(x) return x:hard_swish() end,
  hard_silu = function(x) return x:hard_swish() end,
  softplus = function(x) return x:softplus() end,
  leaky_relu = function(x) return rn.leaky_relu(x, 0.2) end,
  elu = function(x) return rn.elu(x, 1) end,
  selu = function(x) return rn.elu(x, SELU_ALPHA) * SELU_SCALE end,
  softsign = function(x) return x / (x:abs() + 1) end,
  exponential = function(x) return x:exp() end,
  mish = function(x) return x * x:softplus():tanh() end,
}
local ACT_NAMES = { "relu", "softmax", "log_softmax", "sigmoid", "tanh", "linear", "gelu", "relu6", "silu",
  "swish", "hard_sigmoid", "hard_swish", "hard_silu", "softplus", "leaky_relu", "elu", "selu", "softsign",
  "exponential", "mish" }
-- FLOPs per output element of each activation (the summary's convention)
local ACT_FLOPS = { relu = 1, softmax = 3, log_softmax = 3, sigmoid = 3, tanh = 3, linear = 0, relu6 = 1,
  leaky_relu = 1, hard_sigmoid = 2, hard_swish = 3 }
M.activations = ACT

local function activation(spec, who)
  if spec == nil then return nil, nil end
  if type(spec) == "function" then return spec, "custom" end
  if type(spec) == "string" and ACT[spec:lower()] then return ACT[spec:lower()], spec:lower() end
  fail("%s: unknown activation '%s' (known: %s, or a function(x))", who, tostring(spec),
    table.concat(ACT_NAMES, ", "))
end

local function act_flops(name, n) return (ACT_FLOPS[name] or 1) * n end

-- ---- the base class --------------------------------------------------------------

local Layer = {}
Layer.__index = Layer
Layer.__name = "rn.Layer"
Layer.class_name = "Layer"
Layer.is_layer = true
M.Layer = Layer

--- Layer:extend(class_name [, methods]): a subclass. Instances are made by
--- calling the class: Cls(...) runs Cls:init(...). Override init (options),
--- build(input_shape) (weights via self:add_weight) and call(x, training).
function Layer:extend(class_name, methods)
  if type(class_name) ~= "string" then fail("Layer:extend: the class name must be a string") end
  local cls = methods or {}
  cls.__index = cls
  cls.__call = rawget(cls, "__call") or self.__call
  cls.__tostring = rawget(cls, "__tostring") or self.__tostring
  cls.__name = "rn." .. class_name
  cls.class_name = class_name
  cls.super = self
  return setmetatable(cls, { __index = self, __call = function(c, ...) return c:new(...) end })
end

function Layer:new(...)
  local obj = setmetatable({ _weights = {}, _nodes = {}, training = false, trainable = true,
    built = false }, self)
  obj:init(...)
  if obj.name == nil then obj.name = M.unique_name(obj.base_name or M.snake(obj.class_name)) end
  if type(obj.name) ~= "string" then fail("%s: name must be a string", obj.class_name) end
  return obj
end

--- Default init for user layers: options {name=, trainable=}.
function Layer:init(opts) self:_options(opts, {}) end

--- _options(opts, valid): checks opts (name and trainable always allowed),
--- sets name/trainable, returns opts (never nil).
function Layer:_options(opts, valid)
  local all = { "name", "trainable" }
  for _, v in ipairs(valid) do all[#all + 1] = v end
  table.sort(all)
  opts = M.check_options(self.class_name, opts, all)
  if opts.name ~= nil then self.name = opts.name end
  if opts.trainable ~= nil then self.trainable = opts.trainable and true or false end
  return opts
end

function Layer:who() return string.format("%s '%s'", self.class_name, tostring(self.name)) end
Layer.__tostring = function(self) return "<" .. self:who() .. ">" end

function Layer:build(_) end

function Layer:call(_)
  fail("%s: call(x, training) is not defined; a layer class needs one", self:who())
end

--- add_weight(name, shape, {initializer="glorot_uniform", trainable=true,
--- regularizer=nil, dtype="float32"}): creates, records and returns a weight.
function Layer:add_weight(name, shape, opts)
  local who = self:who() .. " add_weight"
  opts = M.check_options(who, opts, { "initializer", "trainable", "regularizer", "dtype" })
  if type(name) ~= "string" then fail("%s: the weight name must be a string", who) end
  if type(shape) ~= "table" then fail("%s: shape of '%s' must be a table", who, name) end
  local plain = {}
  for i = 1, #shape do
    local d = shape[i]
    if math.type(d) ~= "integer" or d < 1 then
      fail("%s: dim %d of weight '%s' is %s; dims must be integers >= 1", who, i, name, tostring(d))
    end
    plain[i] = d
  end
  for _, w in ipairs(self._weights) do
    if w.name == name then fail("%s: the layer already has a weight named '%s'", who, name) end
  end
  local init, msg = initializers.lookup(opts.initializer or "glorot_uniform")
  if not init then fail("%s: %s", who, msg) end
  local reg
  if opts.regularizer ~= nil then
    reg, msg = regularizers.lookup(opts.regularizer)
    if not reg then fail("%s: %s", who, msg) end
  end
  local dtype = opts.dtype or "float32"
  local t = rn.no_grad(function() return init(plain, dtype) end)
  if not rn.is_tensor(t) then fail("%s: the initializer of '%s' returned a %s, not a tensor", who, name, type(t)) end
  local got = t:size()
  for i = 1, #plain do
    if got[i] ~= plain[i] or #got ~= #plain then
      fail("%s: the initializer of '%s' returned shape %s, expected %s", who, name,
        M.shape_str(got), M.shape_str(plain))
    end
  end
  if t.dtype ~= dtype then t = t:to(dtype) end
  if not t.is_leaf then t = t:detach() end
  local trainable = opts.trainable ~= false
  if trainable then t:requires_grad_(true) end
  self._weights[#self._weights + 1] = { name = name, tensor = t, trainable = trainable,
    regularizer = reg, layer = self }
  return t
end

-- Layers held in this layer's fields (directly or in a list), in key order:
-- the sublayers of a user-defined block or of a Model.
function Layer:_sublayers()
  local keys = {}
  for k, v in pairs(self) do
    if type(v) == "table" and k ~= "super" then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do
    local v = self[k]
    if v.is_layer and getmetatable(v) ~= nil and v ~= self then out[#out + 1] = v
    elseif getmetatable(v) == nil then
      for _, e in ipairs(v) do
        if type(e) == "table" and e.is_layer and getmetatable(e) ~= nil and e ~= self then out[#out + 1] = e end
      end
    end
  end
  return out
end

-- every weight entry under layer, once; frozen[entry] when a layer on the way
-- down has trainable = false
local function collect(layer, seen, out, frozen, under_frozen)
  if seen[layer] then return end
  seen[layer] = true
  local f = under_frozen or not layer.trainable
  for _, w in ipairs(layer._weights or {}) do
    out[#out + 1] = w
    if frozen and f then frozen[w] = true end
  end
  for _, sub in ipairs(layer:_sublayers()) do collect(sub, seen, out, frozen, f) end
end

--- weights(): every weight of this layer and its sublayers, as entries
--- {name = "conv2d/kernel", kind = "kernel", tensor =, trainable =, regularizer =, layer =}.
--- A weight is trainable when it was made so and no layer above it (itself,
--- a block or model holding it) has trainable = false.
function Layer:weights()
  local raw, frozen = {}, {}
  collect(self, {}, raw, frozen, false)
  local out = {}
  for i, w in ipairs(raw) do
    out[i] = { name = w.layer.name .. "/" .. w.name, kind = w.name, tensor = w.tensor,
      trainable = w.trainable and not frozen[w], regularizer = w.regularizer, layer = w.layer }
  end
  return out
end

--- set_trainable(flag): sets trainable on this layer and every sublayer
--- (a frozen BatchNormalization also runs in inference mode); returns self.
function Layer:set_trainable(flag)
  local function set(l, seen)
    if seen[l] then return end
    seen[l] = true
    l.trainable = flag and true or false
    for _, s in ipairs(l:_sublayers()) do set(s, seen) end
  end
  set(self, {})
  return self
end

--- named_parameters(): the trainable entries of weights().
function Layer:named_parameters()
  local out = {}
  for _, w in ipairs(self:weights()) do if w.trainable then out[#out + 1] = w end end
  return out
end

--- parameters(): the trainable tensors (what an optimizer updates).
function Layer:parameters()
  local out = {}
  for _, w in ipairs(self:named_parameters()) do out[#out + 1] = w.tensor end
  return out
end

--- count_params(): (total, trainable, non_trainable) element counts.
function Layer:count_params()
  local total, tr = 0, 0
  for _, w in ipairs(self:weights()) do
    local n = w.tensor:numel()
    total = total + n
    if w.trainable then tr = tr + n end
  end
  return total, tr, total - tr
end

--- regularization_loss(): the sum of every weight regularizer (0-d tensor;
--- zero when there is none).
function Layer:regularization_loss()
  local sum
  for _, w in ipairs(self:weights()) do
    if w.regularizer then
      local r = w.regularizer(w.tensor)
      sum = sum and sum + r or r
    end
  end
  return sum or rn.tensor(0)
end

--- train(mode = true) / eval(): the mode of a call without {training =}
--- for this layer and its sublayers (BatchNormalization: batch vs moving
--- statistics; Dropout on/off). Layers start in inference mode, as Keras
--- (model(x) is model(x, {training = false}); fit and train_step pass
--- training = true); train() is PyTorch's module.train() for ported code.
function Layer:train(mode)
  if mode == nil then mode = true end
  local function set(l, seen)
    if seen[l] then return end
    seen[l] = true
    l.training = mode and true or false
    for _, s in ipairs(l:_sublayers()) do set(s, seen) end
  end
  set(self, {})
  return self
end
function Layer:eval() return self:train(false) end

--- to(dtype_or_device): converts every weight (e.g. "float64", "cuda") in
--- place of the old ones, in the entries and in the layers' fields; returns
--- self. Create the optimizer after moving (it holds the tensors it gets).
function Layer:to(spec)
  local raw = {}
  collect(self, {}, raw)
  rn.no_grad(function()
    for _, w in ipairs(raw) do
      local old = w.tensor
      local new = old:to(spec)
      if not rawequal(new, old) then
        if w.trainable then new:requires_grad_(true) end
        w.tensor = new
        for k, v in pairs(w.layer) do
          if rawequal(v, old) then w.layer[k] = new end
        end
      end
    end
  end)
  return self
end

--- state_dict(): {[weight name] = tensor} of every weight (shared, not copied).
function Layer:state_dict()
  local sd = {}
  for _, w in ipairs(self:weights()) do sd[w.name] = w.tensor end
  return sd
end

local FLOAT = { float32 = true, float64 = true, float16 = true, bfloat16 = true }

--- load_state_dict(sd, {strict = true}): copies values into the weights.
--- Float values convert to the weight's dtype; other dtypes are refused.
function Layer:load_state_dict(sd, opts)
  opts = M.check_options(self:who() .. " load_state_dict", opts, { "strict" })
  local strict = opts.strict ~= false
  local seen = {}
  rn.no_grad(function()
    for _, w in ipairs(self:weights()) do
      local v = sd[w.name]
      if v == nil then
        if strict then fail("%s load_state_dict: no value for weight '%s'", self:who(), w.name) end
      else
        if not rn.is_tensor(v) then fail("load_state_dict: '%s' is a %s, not a tensor", w.name, type(v)) end
        local a, b = w.tensor:size(), v:size()
        if M.shape_str(a) ~= M.shape_str(b) then
          fail("load_state_dict: '%s' has shape %s, the model's weight is %s", w.name,
            M.shape_str(b), M.shape_str(a))
        end
        -- the dtype rule: a float value converts to the weight's float dtype
        -- (rounded as copy_ rounds); an integer value for a float weight, or
        -- the reverse, is refused
        if FLOAT[v.dtype] ~= FLOAT[w.tensor.dtype] then
          fail("load_state_dict: '%s' is %s but the model's weight is %s; only float values "
            .. "load into float weights (converted to the weight's dtype)", w.name, v.dtype,
            w.tensor.dtype)
        end
        w.tensor:copy_(v)
        seen[w.name] = true
      end
    end
  end)
  if strict then
    for k in pairs(sd) do
      if not seen[k] then fail("%s load_state_dict: unexpected key '%s'", self:who(), tostring(k)) end
    end
  end
  return self
end

-- ---- calling -----------------------------------------------------------------------

local function real_shape(t) return M.shape(t:size()) end

-- "symbolic" | "tensor", checking a single value or a list
local function input_kind(who, inputs)
  if is_sym(inputs) then return "symbolic", true end
  if rn.is_tensor(inputs) then return "tensor", true end
  if type(inputs) ~= "table" or #inputs == 0 then
    fail("%s: expected a tensor, a symbolic tensor or a list of them, got %s", who,
      type(inputs) == "table" and "an empty table" or type(inputs))
  end
  local kind
  for i, v in ipairs(inputs) do
    local k = is_sym(v) and "symbolic" or rn.is_tensor(v) and "tensor" or nil
    if not k then fail("%s: input %d is a %s, not a tensor", who, i, type(v)) end
    if kind and k ~= kind then fail("%s: the inputs mix symbolic and real tensors", who) end
    kind = k
  end
  return kind, false
end

local function shapes_of(inputs, single, of)
  if single then return of(inputs) end
  local s = {}
  for i, v in ipairs(inputs) do s[i] = of(v) end
  return s
end

-- layer(x [, {training = bool}])
function Layer.__call(self, inputs, opts)
  local training
  if opts ~= nil then
    opts = M.check_options(self:who() .. " call", opts, { "training" })
    training = opts.training
  end
  local kind, single = input_kind(self:who(), inputs)
  if kind == "symbolic" then return self:_call_symbolic(inputs, single) end
  return self:_call_eager(inputs, training, single)
end

function Layer:_build(shapes)
  self:build(shapes)
  self.built = true
end

-- ---- mixed_bfloat16 (Keras's policy) -----------------------------------------------
-- Under rn.mixed_precision.set_global_policy("mixed_bfloat16") a layer called
-- on CPU or CUDA tensors computes in bfloat16: its float32 inputs are cast to
-- bfloat16, and its float32 weights (the float32 variables: the master copy
-- the optimizer updates) are cast for the call, a differentiable cast whose
-- backward hands the optimizer float32 gradients. Activations between
-- layers are therefore bfloat16. Layers with keep_float32_weights (the
-- normalizations) use their float32 parameters and statistics as they are:
-- their kernels take a bfloat16 x with float32 statistics (on the GPU too:
-- core/cuda/nn.c). Models (layer containers) pass tensors through; the
-- losses compute in float32. On the GPU, cuDNN convolutions, cuBLAS gemm,
-- batch norm, pooling and the elementwise ops read and write bf16 as it is;
-- the other CUDA ops convert around float32 kernels (core/cuda/bf16.c).
-- $RN_CUDA_BF16_ACT=0 keeps float32 tensors on the GPU (bf16 math inside the
-- convolutions only, core/precision.c: the behaviour before issue #18's GPU
-- part).

local function cuda_bf16_act()
  return os.getenv("RN_CUDA_BF16_ACT") ~= "0"
end

--- M.compute_dtype(x): "bfloat16" when layers compute in bf16 for input x
--- (the mixed_bfloat16 policy, x a float32 CPU or CUDA tensor), else nil.
--- (A bfloat16 x under the policy also gives "bfloat16": its layer's
--- weights follow it.)
function M.compute_dtype(x)
  if not rn.is_tensor(x) or (x.dtype ~= "float32" and x.dtype ~= "bfloat16") then return nil end
  if x.device ~= "cpu" and not (x.device == "cuda" and cuda_bf16_act()) then return nil end
  local mp = rn.mixed_precision
  if mp and mp.global_policy() == "mixed_bfloat16" then return "bfloat16" end
  return nil
end

local function cast_in(inputs, single, dt)
  if single then return inputs.dtype == "float32" and inputs:to(dt) or inputs end
  local out = {}
  for i, t in ipairs(inputs) do
    out[i] = (rn.is_tensor(t) and t.dtype == "float32") and t:to(dt) or t
  end
  return out
end

local function first_tensor(inputs, single)
  if single then return inputs end
  for _, t in ipairs(inputs) do if rn.is_tensor(t) then return t end end
  return nil
end

--- _call_eager(inputs, training): runs call on real tensors (builds first).
function Layer:_call_eager(inputs, training, single)
  if single == nil then single = rn.is_tensor(inputs) end
  if not self.built then self:_build(shapes_of(inputs, single, real_shape)) end
  if training == nil then training = self.training end
  local dt = not self._is_model and M.compute_dtype(first_tensor(inputs, single)) or nil
  local y
  if dt and not self.keep_float32_weights and #self._weights > 0 then
    -- the fields holding float32 weights get bf16 casts for the call
    local saved = {}
    for k, v in pairs(self) do
      if rn.is_tensor(v) and v.dtype == "float32" then
        for _, w in ipairs(self._weights) do
          if rawequal(w.tensor, v) then saved[k] = v; break end
        end
      end
    end
    for k, v in pairs(saved) do self[k] = v:to(dt) end
    local ok, r = pcall(self.call, self, cast_in(inputs, single, dt), training)
    for k, v in pairs(saved) do self[k] = v end
    if not ok then error(r, 0) end
    y = r
  elseif dt then
    y = self:call(cast_in(inputs, single, dt), training)
  else
    y = self:call(inputs, training)
  end
  if y == nil then fail("%s: call returned nothing", self:who()) end
  return y
end

-- shape of a dry run: call on zeros (batch 1, inference, no grad)
function Layer:_dry_run_shape(shapes, single)
  local function zeros(s)
    local r = {}
    for i = 1, #s do r[i] = s[i] < 0 and 1 or s[i] end
    return rn.zeros(r)
  end
  local x = single and zeros(shapes) or {}
  if not single then for i, s in ipairs(shapes) do x[i] = zeros(s) end end
  local batch_unknown = (single and shapes[1] or shapes[1][1]) < 0
  local y = rn.no_grad(function() return self:call(x, false) end)
  local function sym(t)
    if not rn.is_tensor(t) then fail("%s: call returned a %s, not a tensor", self:who(), type(t)) end
    local s = t:size()
    if batch_unknown and #s > 0 then s[1] = -1 end
    return M.shape(s)
  end
  if rn.is_tensor(y) then return sym(y) end
  if type(y) ~= "table" then fail("%s: call returned a %s, not a tensor", self:who(), type(y)) end
  local out = {}
  for i, t in ipairs(y) do out[i] = sym(t) end
  return out
end

function Layer:_call_symbolic(inputs, single)
  local model = require "rn.model"
  local shapes = shapes_of(inputs, single, function(s) return M.shape(s.shape) end)
  if not self.built then self:_build(shapes) end
  local out
  if self.compute_output_shape then out = self:compute_output_shape(shapes)
  else out = self:_dry_run_shape(shapes, single) end
  return model._record(self, inputs, single, out)
end

--- flops(input_shapes, output_shape): (FLOPs, multiply-accumulates) per
--- sample; nil for layers that do not say (the summary shows "?").
function Layer:flops(_, _) return nil end

-- ---- argument helpers ---------------------------------------------------------------

local function pos_int(v, who, what)
  if math.type(v) ~= "integer" or v < 1 then
    fail("%s: %s must be an integer >= 1, got %s", who, what, tostring(v))
  end
  return v
end

-- n or {a, b} -> {a, b}
local function pair(v, who, what)
  if type(v) == "table" then
    if #v ~= 2 then fail("%s: %s must be an integer or a list of 2 integers", who, what) end
    return { pos_int(v[1], who, what), pos_int(v[2], who, what) }
  end
  local n = pos_int(v, who, what)
  return { n, n }
end

-- padding: "same" | "valid" | n | {ph, pw} | {top, bottom, left, right}
local function padding_spec(p, who)
  if p == nil then return "valid" end
  if type(p) == "string" then
    local s = p:lower()
    if s == "same" or s == "valid" then return s end
  elseif math.type(p) == "integer" and p >= 0 then
    return p
  elseif type(p) == "table" and (#p == 2 or #p == 4) then
    local ok = true
    for _, v in ipairs(p) do
      if math.type(v) ~= "integer" or v < 0 then ok = false end
    end
    if ok then return p end
  end
  fail("%s: padding must be \"same\", \"valid\", an integer >= 0, {ph, pw} or "
    .. "{top, bottom, left, right}, got %s", who, tostring(p))
end

-- output size of a window op along one dim (k: kernel, s: stride, d: dilation)
local function window_out(padding, n, k, s, d, axis)
  if padding == "same" then return (n + s - 1) // s end
  local lo, hi = 0, 0
  if type(padding) == "number" then lo, hi = padding, padding
  elseif type(padding) == "table" then
    if #padding == 2 then lo = padding[axis]; hi = lo
    else lo, hi = padding[2 * axis - 1], padding[2 * axis] end
  end
  local eff = n + lo + hi - d * (k - 1) - 1
  if eff < 0 then return 0 end
  return eff // s + 1
end

local function check_4d(self, s)
  if #s ~= 4 then
    fail("%s: expects a 4-d input (batch, height, width, channels), got %s", self:who(), M.shape_str(s))
  end
end

local function spatial_out(self, s, k, st, dil, padding)
  local oh = window_out(padding, s[2], k[1], st[1], dil[1], 1)
  local ow = window_out(padding, s[3], k[2], st[2], dil[2], 2)
  if oh < 1 or ow < 1 then
    fail("%s: the output would be empty: input %s, window %dx%d, padding %s", self:who(),
      M.shape_str(s), k[1], k[2], type(padding) == "table" and "{...}" or tostring(padding))
  end
  return oh, ow
end

local function get_init(spec, who)
  local f, msg = initializers.lookup(spec)
  if not f then fail("%s: %s", who, msg) end
  return f
end

local function get_reg(spec, who)
  if spec == nil then return nil end
  local r, msg = regularizers.lookup(spec)
  if not r then fail("%s: %s", who, msg) end
  return r
end

-- ---- Input ---------------------------------------------------------------------------

local InputLayer = Layer:extend("InputLayer")
InputLayer.base_name = "input"
M.InputLayer = InputLayer

function InputLayer:init(shape, opts)
  opts = self:_options(opts, { "batch_size", "dtype" })
  if type(shape) ~= "table" or is_sym(shape) or rn.is_tensor(shape) then
    fail("Input: shape must be a list of dims without the batch dim, e.g. {32, 32, 3}; got %s", type(shape))
  end
  local s = { opts.batch_size or -1 }
  for i = 1, #shape do s[i + 1] = pos_int(shape[i], "Input", "dim " .. i .. " of the shape") end
  self.input_shape = M.shape(s)
  self.dtype = opts.dtype or "float32"
  self.built = true
end

function InputLayer:call(x) return x end
function InputLayer:flops() return 0, 0 end

--- Input(shape, {name=, batch_size=, dtype=}): a symbolic tensor of shape
--- (batch, table.unpack(shape)), the start of a functional model.
function M.Input(shape, opts)
  local layer = InputLayer(shape, opts)
  return require("rn.model")._record(layer, {}, false, layer.input_shape, layer.dtype)
end

-- ---- for the family files --------------------------------------------------------------

-- the helpers the family files (lua/rn/layers/*.lua) share
M._h = {
  rn = rn, initializers = initializers, regularizers = regularizers, fail = fail,
  numel = numel, is_sym = is_sym, activation = activation, act_flops = act_flops,
  pos_int = pos_int, pair = pair, padding_spec = padding_spec, window_out = window_out,
  check_4d = check_4d, spatial_out = spatial_out, get_init = get_init, get_reg = get_reg,
  distance = distance,
}

return M
