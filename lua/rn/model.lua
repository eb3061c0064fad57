-- model.lua - symbolic tensors, the functional Model, Sequential, the
-- Keras-like summary, and the training helpers compile / train_step /
-- test_step / predict.
--
--   local inputs = layers.Input({32, 32, 3})          -- a symbolic tensor
--   local x = layers.Conv2D(16, 3, {padding = "same"})(inputs)
--   local model = Model(inputs, layers.Dense(10)(layers.GlobalAveragePooling2D()(x)))
--   model:summary()
--   local y = model(rn.randn({8, 32, 32, 3}))        -- eager, with autograd; inference
--                                                     -- mode as Keras ({training = true} trains)
--
-- A symbolic tensor records the layer call that made it (a node: layer,
-- inputs); Model(inputs, outputs) walks those records back from the outputs
-- to find the graph (any DAG; several inputs and outputs allowed) and runs
-- it in creation order. A Model is itself a layer: it can be called on
-- symbolic tensors inside a bigger model.
-- rn itself, looked up on first use: lua/rn/init.lua requires this module
-- while it is still loading, so `require "rn"` cannot run at load time.
local rn = setmetatable({}, { __index = function(t, k)
  local real = require "rn"
  setmetatable(t, { __index = real })
  return real[k]
end })
local layers = require "rn.layers"

local fail, shape_str = layers._fail, layers.shape_str
local Layer = layers.Layer

local M = {}

-- ---- symbolic tensors ------------------------------------------------------------------

local Sym = {}
Sym.__index = Sym
Sym.__name = "rn.SymbolicTensor"
Sym.is_symbolic = true
M.SymbolicTensor = Sym

--- x:size([d]): the shape (batch dim -1 = unknown) or dim d (negatives count from the end).
function Sym:size(d)
  if d == nil then return layers.shape(self.shape) end
  local n = #self.shape
  if math.type(d) ~= "integer" or d == 0 or d > n or d < -n then
    fail("size: dim %s outside 1..%d (or -%d..-1) of symbolic shape %s", tostring(d), n, n,
      shape_str(self.shape))
  end
  return self.shape[d < 0 and n + 1 + d or d]
end
function Sym:dim() return #self.shape end
function Sym.__tostring(s)
  return string.format("<symbolic %s %s from %s>", shape_str(s.shape), s.dtype, s.node.layer.name)
end
local function no_arith()
  fail("symbolic tensors have no arithmetic; use a layer, e.g. layers.Add()({a, b}) or layers.Lambda(fn)")
end
Sym.__add, Sym.__sub, Sym.__mul, Sym.__div, Sym.__unm, Sym.__pow = no_arith, no_arith, no_arith,
  no_arith, no_arith, no_arith

local node_count = 0

--- _record(layer, inputs, single, out_shape [, dtype]): records a call of layer
--- on symbolic inputs and returns its symbolic output(s) (a list when
--- out_shape is a list of shapes).
function M._record(layer, inputs, single, out_shape, dtype)
  node_count = node_count + 1
  local list = single and { inputs } or inputs
  local node = { id = node_count, layer = layer, inputs = list, single_input = single,
    index = #layer._nodes, outputs = {} }
  layer._nodes[#layer._nodes + 1] = node
  dtype = dtype or (list[1] and list[1].dtype) or "float32"
  local multi = type(out_shape[1]) == "table"
  node.multi_output = multi
  local shapes = multi and out_shape or { out_shape }
  for i, s in ipairs(shapes) do
    local t = setmetatable({ shape = layers.shape(s), node = node, index = i, dtype = dtype }, Sym)
    t.ndim = #t.shape
    node.outputs[i] = t
  end
  if multi then return node.outputs end
  return node.outputs[1]
end

-- ---- the functional Model -----------------------------------------------------------------

local Model = Layer:extend("Model")
Model._is_model = true -- a container: its layers cast for mixed_bfloat16 (layers/base.lua)
Model.base_name = "model"
M.Model = Model

local function sym_list(v, what)
  if layers.is_symbolic(v) then return { v }, true end
  if rn.is_tensor(v) then
    fail("Model: %s is a real tensor, not a symbolic tensor (build models on layers.Input)", what)
  end
  if type(v) ~= "table" or #v == 0 then
    fail("Model: %s must be a symbolic tensor (from layers.Input or a layer call) or a list of them", what)
  end
  for i, s in ipairs(v) do
    if not layers.is_symbolic(s) then
      fail("Model: %s[%d] is a %s, not a symbolic tensor", what, i, rn.is_tensor(s) and "real tensor" or type(s))
    end
  end
  return v, false
end

--- Model(inputs, outputs, {name=, trainable=}).
function Model:init(inputs, outputs, opts)
  self:_options(opts, {})
  self:_graph(inputs, outputs)
end

-- finds the nodes between inputs and outputs; sets inputs, outputs, layers
function Model:_graph(inputs, outputs)
  local ins, single_in = sym_list(inputs, "inputs")
  local outs, single_out = sym_list(outputs, "outputs")
  self.inputs, self.outputs = ins, outs
  self._single_input, self._single_output = single_in, single_out
  local is_input = {}
  for _, s in ipairs(ins) do
    if s.node.layer.class_name ~= "InputLayer" then
      fail("Model: each input must come from layers.Input, but one comes from %s", s.node.layer:who())
    end
    is_input[s] = true
  end
  -- every node reachable backwards from the outputs
  local nodes, seen, stack = {}, {}, {}
  for _, s in ipairs(outs) do stack[#stack + 1] = s end
  while #stack > 0 do
    local s = table.remove(stack)
    local node = s.node
    if not seen[node] then
      seen[node] = true
      nodes[#nodes + 1] = node
      if node.layer.class_name == "InputLayer" and not is_input[s] then
        fail("Model: the graph is disconnected: it needs input '%s' %s, which is not among the model's inputs",
          node.layer.name, shape_str(s.shape))
      end
      for _, i in ipairs(node.inputs) do stack[#stack + 1] = i end
    end
  end
  for _, s in ipairs(ins) do
    if not seen[s.node] then seen[s.node] = true; nodes[#nodes + 1] = s.node end
  end
  table.sort(nodes, function(a, b) return a.id < b.id end) -- creation order is topological
  self._order, self._uses = {}, {}
  local lyr, have, names = {}, {}, {}
  for _, node in ipairs(nodes) do
    local l = node.layer
    if not have[l] then
      if names[l.name] then
        fail("Model: two different layers are named '%s'; layer names must be unique in a model", l.name)
      end
      have[l], names[l.name] = true, true
      lyr[#lyr + 1] = l
    end
    if l.class_name ~= "InputLayer" then
      self._order[#self._order + 1] = node
      for _, i in ipairs(node.inputs) do self._uses[i] = (self._uses[i] or 0) + 1 end
    end
  end
  self.layers = lyr
  self._is_output = {}
  for _, s in ipairs(outs) do self._is_output[s] = true end
  self:_find_fusions()
  self.built = true
end

-- BatchNormalization -> ReLU pairs run as one fused kernel (rn.batch_norm
-- with relu=true): the BN output must feed only that ReLU and not be a model
-- output, and both layers must be the stock classes with default options (a
-- subclass overriding call, or a ReLU with max_value/negative_slope, is left
-- alone). model.fusion = false turns it off.
function Model:_find_fusions()
  self._fuse_bn, self._fused_relu = {}, {}
  local BN, ReLU = rn.layers.BatchNormalization, rn.layers.ReLU
  for _, node in ipairs(self._order) do
    local l = node.layer
    if l.call == ReLU.call and l.class_name == "ReLU" and node.single_input and
        l.max_value == nil and l.negative_slope == 0 then
      local s = node.inputs[1]
      local p = s.node
      if p.layer.call == BN.call and p.layer.class_name == "BatchNormalization" and
          p.single_input and not p.multi_output and self._uses[s] == 1 and not self._is_output[s] then
        self._fuse_bn[p], self._fused_relu[node] = true, true
      end
    end
  end
  self:_find_infer_fusions()
end

-- Inference fusions: used by Model:call when training is false and
-- gradients are off (model:predict, evaluate, rn.no_grad(model, x, ...)),
-- unless model.fusion == false. Only the stock layer classes take part
-- (their own call; a Conv2D without activation):
--  * Conv2D -> BatchNormalization [-> ReLU fused into that BN]: the BN, with
--    its moving statistics, is folded into the convolution's kernel and
--    bias (w' = w*k, b' = (b - mean)*k + beta, k = gamma/sqrt(var + eps) per
--    output channel) and the ReLU becomes the convolution's epilogue: one
--    pass over the activation instead of two. The conv output must feed only
--    that BN and not be a model output.
--  * Add(Conv2D(h), s) of two inputs: the convolution runs at the Add and
--    adds its result into s's memory (its epilogue), when s is dead after
--    the Add and only the graph holds it: s was made by a stock Conv2D,
--    BatchNormalization, ReLU or Add (of two or more inputs: they return new
--    tensors), every layer that reads s is one of those (none passes s
--    through), s is not a model output, and at the Add no later layer
--    still needs it. Otherwise the convolution and the add run as usual.
-- Results equal the unfused graph's within float rounding (folding changes
-- the order of the BN's multiply and the convolution's sums).
local function stock(l, class, name)
  return l.call == class.call and l.class_name == name
end

function Model:_find_infer_fusions()
  local L = rn.layers
  local fold, skip, add, defer = {}, {}, {}, {}
  self._ifold, self._iskip, self._iadd, self._idefer = fold, skip, add, defer
  local consumers = {}
  for _, node in ipairs(self._order) do
    for _, s in ipairs(node.inputs) do
      consumers[s] = consumers[s] or {}
      table.insert(consumers[s], node)
    end
  end
  local function plain_conv(node)
    local l = node.layer
    return stock(l, L.Conv2D, "Conv2D") and not l.activation and node.single_input and
      not node.multi_output
  end
  local function single_use(s) return self._uses[s] == 1 and not self._is_output[s] end
  -- layers that return a new tensor, never their input or a view of it
  local function fresh(node)
    local l = node.layer
    if node.multi_output then return false end
    if stock(l, L.Add, "Add") then return #node.inputs >= 2 end
    return stock(l, L.Conv2D, "Conv2D") or stock(l, L.BatchNormalization, "BatchNormalization") or
      (stock(l, L.ReLU, "ReLU") and l.max_value == nil and l.negative_slope == 0)
  end
  for _, node in ipairs(self._order) do
    local l = node.layer
    if plain_conv(node) and single_use(node.outputs[1]) then
      local bn = consumers[node.outputs[1]][1]
      if stock(bn.layer, L.BatchNormalization, "BatchNormalization") and bn.single_input and
          not bn.multi_output then
        local plan = { bn = bn, out = bn.outputs[1] }
        skip[bn] = true
        if self._fuse_bn[bn] then -- its ReLU: the single consumer of the BN output
          local r = consumers[bn.outputs[1]][1]
          plan.relu, plan.out, skip[r] = r, r.outputs[1], true
        end
        fold[node] = plan
      end
    elseif stock(l, L.Add, "Add") and #node.inputs == 2 and not node.multi_output then
      local a, b = node.inputs[1], node.inputs[2]
      for _, pair in ipairs{ { a, b }, { b, a } } do
        local c, o = pair[1], pair[2]
        local cn, on = c.node, o.node
        if c ~= o and cn and on and plain_conv(cn) and not fold[cn] and not defer[cn] and
            single_use(c) and fresh(on) and not self._is_output[o] then
          local ok = true
          for _, u in ipairs(consumers[o]) do ok = ok and fresh(u) end
          if ok then
            add[node], defer[cn] = { conv = cn, c = c, other = o }, true
            break
          end
        end
      end
    end
  end
end

-- Whether the Conv2D layer l's output on x can be added into o in place:
-- same shape, dtype and device, o contiguous (else the usual path, which
-- also gives the usual errors).
local function can_accumulate(l, x, o)
  if not (x:dim() == 4 and o:dim() == 4 and o:is_contiguous() and o.dtype == x.dtype and
      o.device == x.device) then
    return false
  end
  local ok, sh = pcall(l.compute_output_shape, l, x:size())
  if not ok then return false end
  for d = 1, 4 do
    if o:size(d) ~= (d == 1 and x:size(1) or sh[d]) then return false end
  end
  return true
end

-- The convolution of a Conv2D layer on x with the BN of plan folded in
-- (plan nil: none) and the epilogue: relu, and/or the add into acc.
local function conv_fused(l, x, plan, relu, acc)
  if x:dim() ~= 4 then l:compute_output_shape(x:size()) end -- its error
  l:_check_channels(x:size(4))
  local w, b = l.kernel, l.bias
  local cdt = layers.compute_dtype(x)
  if cdt then x = x:to(cdt) end
  if plan then
    local bn = plan.bn.layer
    local k = 1 / (bn.moving_variance + bn.epsilon):sqrt()
    if bn.gamma then k = k * bn.gamma end
    w = w * k
    b = ((b and (b - bn.moving_mean)) or -bn.moving_mean) * k
    if bn.beta then b = b + bn.beta end
  end
  if cdt then w = w:to(cdt); b = b and b:to(cdt) end -- mixed_bfloat16: folded in float32, cast once
  return rn._conv2d_fused(x, w, b,
    { stride = l.strides, padding = l.padding, dilation = l.dilation_rate, groups = l.groups }, relu, acc)
end

--- model:get_layer(name): the layer of that name (nil if none).
function Model:get_layer(name)
  for _, l in ipairs(self.layers or {}) do if l.name == name then return l end end
  return nil
end

function Model:_check_input(i, x)
  local want = self.inputs[i].shape
  if not rn.is_tensor(x) then fail("%s: input %d is a %s, not a tensor", self:who(), i, type(x)) end
  local got = x:size()
  local ok = #got == #want
  for d = 1, #want do
    if want[d] >= 0 and got[d] ~= want[d] then ok = false end
  end
  if not ok then
    fail("%s: input %d has shape %s but the model expects %s", self:who(), i, shape_str(got), shape_str(want))
  end
end

--- call(inputs, training): runs the graph eagerly on real tensors.
function Model:call(inputs, training)
  local xs = rn.is_tensor(inputs) and { inputs } or inputs
  if type(xs) ~= "table" or #xs ~= #self.inputs then
    fail("%s: expects %d input tensor(s), got %s", self:who(), #self.inputs,
      type(xs) == "table" and tostring(#xs) or type(xs))
  end
  local vals, left = {}, {}
  for i, s in ipairs(self.inputs) do
    self:_check_input(i, xs[i])
    vals[s] = xs[i]
  end
  for s, n in pairs(self._uses) do left[s] = n end
  local fuse = self.fusion ~= false
  local infer = fuse and training == false and not rn.is_grad_enabled()
  local function drop(node) -- forget what no later node reads
    for _, s in ipairs(node.inputs) do
      left[s] = left[s] - 1
      if left[s] == 0 and not self._is_output[s] then vals[s] = nil end
    end
  end
  for _, node in ipairs(self._order) do
    local args
    if node.single_input then
      args = vals[node.inputs[1]]
    else
      args = {}
      for j, s in ipairs(node.inputs) do args[j] = vals[s] end
    end
    local y
    if infer and (self._iskip[node] or self._idefer[node]) then
      -- a BN (and ReLU) folded into its conv, or a conv that runs at its Add
      if self._iskip[node] then drop(node) end
      goto continue
    elseif infer and self._ifold[node] then
      local plan = self._ifold[node]
      vals[plan.out] = conv_fused(node.layer, args, plan, plan.relu ~= nil, nil)
      drop(node)
      goto continue
    elseif infer and self._iadd[node] then
      local plan = self._iadd[node]
      local cn = plan.conv
      local h, o = vals[cn.inputs[1]], vals[plan.other]
      if left[plan.other] == 1 and can_accumulate(cn.layer, h, o) then
        y = conv_fused(cn.layer, h, nil, false, o)
      else -- s still needed later (or of another shape, dtype, layout): as usual
        local c = cn.layer:_call_eager(h, training, true)
        for j, s in ipairs(node.inputs) do args[j] = s == plan.c and c or vals[s] end
        y = node.layer:_call_eager(args, training, false)
      end
      drop(cn)
    elseif fuse and self._fused_relu[node] then
      y = args -- its BatchNormalization ran the ReLU already
    elseif fuse and self._fuse_bn[node] then
      node.layer._fuse_relu = true
      local ok, r = pcall(node.layer._call_eager, node.layer, args, training, node.single_input)
      node.layer._fuse_relu = nil
      if not ok then error(r, 0) end
      y = r
    else
      y = node.layer:_call_eager(args, training, node.single_input)
    end
    if node.multi_output then
      for j, s in ipairs(node.outputs) do vals[s] = y[j] end
    else
      vals[node.outputs[1]] = y
    end
    drop(node)
    ::continue::
  end
  if self._single_output then return vals[self.outputs[1]] end
  local out = {}
  for i, s in ipairs(self.outputs) do out[i] = vals[s] end
  return out
end

--- model:forward(x [, {training=}]) is model(x [, {training=}]).
function Model:forward(x, opts) return self(x, opts) end

-- as a layer inside another model: the output shapes are fixed
function Model:compute_output_shape(shapes)
  local list = self._single_input and { shapes } or shapes
  for i, s in ipairs(self.inputs) do
    local want, got = s.shape, list[i]
    local ok = got and #got == #want
    for d = 2, #want do if not ok or got[d] ~= want[d] then ok = false end end
    if not ok then
      fail("%s: input %d has shape %s but the model expects %s", self:who(), i,
        got and shape_str(got) or "none", shape_str(want))
    end
  end
  if self._single_output then return layers.shape(self.outputs[1].shape) end
  local out = {}
  for i, s in ipairs(self.outputs) do out[i] = layers.shape(s.shape) end
  return out
end

-- per-sample FLOPs and multiply-accumulates of one node (nil when unknown)
local function node_flops(node)
  local ins = {}
  for i, s in ipairs(node.inputs) do ins[i] = s.shape end
  local out = node.outputs[1].shape
  return node.layer:flops(node.single_input and ins[1] or ins, out)
end

function Model:flops()
  local f, m = 0, 0
  for _, node in ipairs(self._order) do
    local a, b = node_flops(node)
    if a == nil then return nil end
    f, m = f + a, m + (b or 0)
  end
  return f, m
end

-- ---- Sequential -------------------------------------------------------------------------------

local Sequential = Model:extend("Sequential")
Sequential.base_name = "sequential"
M.Sequential = Sequential

--- Sequential{layer, layer, ..., name=, input_shape=}: a plain stack. The
--- first element may be layers.Input(shape); without it (or input_shape)
--- the model is built on its first call.
function Sequential:init(spec, opts)
  if type(spec) ~= "table" or layers.is_symbolic(spec) or rn.is_tensor(spec) then
    fail("Sequential: expects a list of layers, e.g. rn.Sequential{layers.Dense(10)}")
  end
  local o = {}
  for k, v in pairs(spec) do if type(k) ~= "number" then o[k] = v end end
  for k, v in pairs(opts or {}) do o[k] = v end
  o = self:_options(o, { "input_shape" })
  self.layers = {}
  local input
  for i, v in ipairs(spec) do
    if i == 1 and layers.is_symbolic(v) then input = v
    elseif type(v) == "table" and v.is_layer then self.layers[#self.layers + 1] = v
    else fail("Sequential: element %d is a %s, not a layer", i, layers.is_symbolic(v) and "symbolic tensor" or type(v)) end
  end
  if input == nil and o.input_shape then input = layers.Input(o.input_shape) end
  if input then self:_connect(input) end
end

function Sequential:_connect(input)
  local stack = self._stack or self.layers
  self._stack = stack
  local x = input
  for _, l in ipairs(stack) do x = l(x) end
  self:_graph(input, x)
end

--- seq:add(layer): appends a layer; returns seq.
function Sequential:add(layer)
  if type(layer) ~= "table" or not layer.is_layer then fail("Sequential add: expects a layer, got %s", type(layer)) end
  local stack = self._stack or self.layers
  stack[#stack + 1] = layer
  self._stack = stack
  if self.built then
    local y = layer(self.outputs[1])
    self:_graph(self.inputs[1], y)
  end
  return self
end

function Sequential:build(shape)
  if type(shape[1]) == "table" then fail("%s: a Sequential model takes one input tensor", self:who()) end
  local s = {}
  for i = 2, #shape do s[i - 1] = shape[i] end
  self:_connect(layers.Input(s))
end

-- ---- summary --------------------------------------------------------------------------------------

local function commas(n)
  local s = string.format("%d", n)
  local r = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (r:gsub("^,", ""))
end
M.commas = commas

local function human_bytes(b)
  if b >= 2 ^ 20 then return string.format("%.2f MiB", b / 2 ^ 20) end
  if b >= 1024 then return string.format("%.1f KiB", b / 1024) end
  return string.format("%d B", b)
end

local DTYPE_BYTES = { float32 = 4, float64 = 8, bfloat16 = 2, float16 = 2, int64 = 8, int32 = 4, uint8 = 1 }

--- model:summary({print=true, flops=false}): the Keras-like table
--- (Layer (type), Output Shape, Param #, Connected to) and the parameter
--- totals; returns it as a string. With flops=true, two more columns per
--- layer: forward FLOPs per sample and the bytes of its output per sample.
--- FLOP convention: 2 per multiply-accumulate (Conv2D, Dense), 1 per bias
--- add, BatchNormalization 2 per element (scale and shift), ReLU 1, softmax,
--- sigmoid, tanh 3, Add 1 per element per extra input, pooling 1 per window
--- element; multiply-accumulates (Conv2D, Dense) are totalled separately.
function Model:summary(opts)
  opts = layers.check_options(self:who() .. " summary", opts, { "print", "flops" })
  if not self.built then
    fail("%s: not built yet; call it on a batch or start it with layers.Input(shape)", self:who())
  end
  local sequential = self.class_name == "Sequential"
  local with_flops = opts.flops
  local header = { "Layer (type)", "Output Shape", "Param #" }
  if not sequential then header[#header + 1] = "Connected to" end
  if with_flops then header[#header + 1] = "FLOPs"; header[#header + 1] = "Activations" end
  local rows = {}
  local tot_flops, tot_macs, tot_act, flops_known = 0, 0, 0, true
  local nodes_of = {}
  for _, l in ipairs(self.layers) do nodes_of[l] = {} end
  for _, node in ipairs(self._order) do table.insert(nodes_of[node.layer], node) end
  for _, s in ipairs(self.inputs) do table.insert(nodes_of[s.node.layer], s.node) end
  for _, l in ipairs(self.layers) do
    local is_in = l.class_name == "InputLayer"
    if not (sequential and is_in) then
      local nodes = nodes_of[l]
      local shape
      if #nodes == 1 then
        local outs = {}
        for i, o in ipairs(nodes[1].outputs) do outs[i] = shape_str(o.shape) end
        shape = (is_in or #outs > 1) and "[" .. table.concat(outs, ", ") .. "]" or outs[1]
      else
        shape = "multiple"
      end
      local conns = {}
      for _, node in ipairs(nodes) do
        for _, s in ipairs(node.inputs) do
          conns[#conns + 1] = string.format("'%s[%d][%d]'", s.node.layer.name, s.node.index, s.index - 1)
        end
      end
      local row = { string.format("%s (%s)", l.name, l.class_name), shape, commas((l:count_params())) }
      if not sequential then row[#row + 1] = "[" .. table.concat(conns, ", ") .. "]" end
      if with_flops then
        local f, m, act = 0, 0, 0
        for _, node in ipairs(nodes) do
          if not is_in then
            local a, b = node_flops(node)
            if a == nil then f = nil elseif f then f, m = f + a, m + (b or 0) end
            for _, o in ipairs(node.outputs) do
              local n = 1
              for d = 2, #o.shape do n = n * o.shape[d] end
              act = act + n * (DTYPE_BYTES[o.dtype] or 4)
            end
          end
        end
        if f == nil then flops_known = false else tot_flops, tot_macs = tot_flops + f, tot_macs + m end
        tot_act = tot_act + act
        row[#row + 1] = f and commas(f) or "?"
        row[#row + 1] = commas(act)
      end
      rows[#rows + 1] = row
      -- Keras prints one connection per line when there are several
      if not sequential and #conns > 1 then
        row[4] = "[" .. conns[1] .. ","
        for i = 2, #conns do
          local cont = { "", "", "" }
          cont[4] = " " .. conns[i] .. (i == #conns and "]" or ",")
          if with_flops then cont[5], cont[6] = "", "" end
          rows[#rows + 1] = cont
        end
      end
    end
  end
  local width = {}
  for c, h in ipairs(header) do width[c] = #h end
  for _, r in ipairs(rows) do
    for c, v in ipairs(r) do if #v > width[c] then width[c] = #v end end
  end
  local function line(r)
    local parts = {}
    for c = 1, #header do
      local v = r[c] or ""
      local numeric = c == 3 or (with_flops and c >= #header - 1)
      parts[c] = numeric and string.rep(" ", width[c] - #v) .. v or v .. string.rep(" ", width[c] - #v)
    end
    return (" " .. table.concat(parts, "   ")):gsub("%s+$", "")
  end
  local total_w = 1
  for c = 1, #header do total_w = total_w + width[c] + 3 end
  local out = {}
  out[#out + 1] = string.format('Model: "%s"', self.name)
  out[#out + 1] = string.rep("_", total_w)
  out[#out + 1] = line(header)
  out[#out + 1] = string.rep("=", total_w)
  for _, r in ipairs(rows) do out[#out + 1] = line(r) end
  out[#out + 1] = string.rep("=", total_w)
  local total, tr, ntr = self:count_params()
  out[#out + 1] = "Total params: " .. commas(total)
  out[#out + 1] = "Trainable params: " .. commas(tr)
  out[#out + 1] = "Non-trainable params: " .. commas(ntr)
  if with_flops then
    out[#out + 1] = string.format("Forward per sample: %s multiply-accumulates (Conv2D, Dense); %s FLOPs%s",
      commas(tot_macs), commas(tot_flops), flops_known and "" or " (layers marked ? not counted)")
    out[#out + 1] = "  (FLOPs: 2 per multiply-accumulate, 1 per bias add and per elementwise op; BN 2 per element)"
    out[#out + 1] = string.format("Layer outputs per sample: %s (%s bytes; multiply by the batch size)",
      human_bytes(tot_act), commas(tot_act))
    self._summary_totals = { macs = tot_macs, flops = tot_flops, activation_bytes = tot_act }
  end
  out[#out + 1] = string.rep("_", total_w)
  local s = table.concat(out, "\n")
  if opts.print ~= false then print(s) end
  return s
end

--- model:flops_per_sample(): (FLOPs, multiply-accumulates) of one forward
--- pass per sample, by the summary's convention (nil if a layer cannot say).
function Model:flops_per_sample() return self:flops() end

-- ---- training helpers ---------------------------------------------------------------------------

--- model:compile{optimizer=, loss=, metrics={"accuracy"}}: optimizer is an
--- rn.optim optimizer (bound to model:parameters() if it has no parameters)
--- or a name ("sgd", "adam", "adamw"); loss a function(y_pred, y_true) or a
--- name ("sparse_categorical_crossentropy", "mse", ...); metrics names or
--- functions. Returns the model.
function Model:compile(o)
  local optim, losses, metrics = require "rn.optim", require "rn.losses", require "rn.metrics"
  o = layers.check_options(self:who() .. " compile", o, { "optimizer", "loss", "metrics" })
  if o.loss == nil then fail("%s compile: loss is required", self:who()) end
  if not self.built then
    fail("%s compile: the model is not built; start it with layers.Input(shape) or call it once", self:who())
  end
  local function get(fn, spec)
    local ok, v = pcall(fn, spec)
    if not ok then fail("%s compile: %s", self:who(), tostring(v):gsub("^[^:]*:%d+: ", "")) end
    return v
  end
  local opt = o.optimizer
  if opt == nil then
    fail("%s compile: optimizer is required (rn.optim.SGD{...}, Adam, AdamW or \"sgd\", \"adam\", \"adamw\")", self:who())
  end
  if type(opt) == "string" then opt = get(optim.get, opt) end
  if type(opt) ~= "table" or not opt.step then fail("%s compile: optimizer must be an rn.optim optimizer or a name", self:who()) end
  if opt:num_params() == 0 then opt:set_params(self:parameters()) end
  self.optimizer = opt
  self.loss_fn = get(losses.get, o.loss)
  self.metric_fns = {}
  for _, m in ipairs(o.metrics or {}) do self.metric_fns[#self.metric_fns + 1] = get(metrics.get, m) end
  return self
end

local function check_compiled(self, what)
  if not self.loss_fn then fail("%s %s: compile the model first (model:compile{optimizer=, loss=})", self:who(), what) end
end

local function has_regularizers(self)
  for _, w in ipairs(self:weights()) do if w.regularizer then return true end end
  return false
end

-- issue 19: Keras l2 penalties in one pass (lua/rn/regularizers.lua l2_plan):
-- the value from rn.l2_penalty_multi on the starting weights, the gradient
-- folded into the optimizer's step; nil: the autograd form.
local function l2_plan(self)
  if not has_regularizers(self) then return nil end
  return require("rn.regularizers").l2_plan(self:weights(), self.optimizer)
end

function Model:_l2_plan() return l2_plan(self) end -- for lua/rn/graph.lua
function Model:_has_regularizers() return has_regularizers(self) end

local function l2_value(plan)
  return rn.no_grad(function() return rn.l2_penalty_multi(plan.tensors, plan.factors) end)
end

--- model:train_step(x, y): one optimizer step in training mode; returns the
--- logs {loss = (loss + regularization), <metric> = value} as numbers.
function Model:train_step(x, y)
  check_compiled(self, "train_step")
  local opt = self.optimizer
  opt:zero_grad()
  local pred = self(x, { training = true })
  local loss = self.loss_fn(pred, y)
  local plan = l2_plan(self)
  local reported = loss
  if plan then
    reported = rn.no_grad(function() return loss + l2_value(plan) end) -- before the step
    loss:backward()
    opt._l2 = plan.by_tensor
    local ok, e = pcall(opt.step, opt)
    opt._l2 = nil
    if not ok then error(e, 0) end
  else
    if has_regularizers(self) then loss = loss + self:regularization_loss() end
    reported = loss
    loss:backward()
    opt:step()
  end
  local logs = { loss = reported:item() }
  rn.no_grad(function()
    for _, m in ipairs(self.metric_fns) do logs[m.name] = m.fn(pred, y) end
  end)
  return logs
end

--- model:test_step(x, y): loss (with regularization, as Keras reports it)
--- and metrics in inference mode, without gradients.
function Model:test_step(x, y)
  check_compiled(self, "test_step")
  return rn.no_grad(function()
    local pred = self(x, { training = false })
    local loss = self.loss_fn(pred, y)
    local plan = l2_plan(self)
    if plan then loss = loss + l2_value(plan)
    elseif has_regularizers(self) then loss = loss + self:regularization_loss() end
    local logs = { loss = loss:item() }
    for _, m in ipairs(self.metric_fns) do logs[m.name] = m.fn(pred, y) end
    return logs
  end)
end

--- model:predict(x): outputs in inference mode, without gradients.
function Model:predict(x)
  return rn.no_grad(function() return self(x, { training = false }) end)
end

return M
