-- optim.lua - optimizers with Keras 3's update rules and defaults (rule =
-- "keras", the default), or PyTorch's (rule = "pytorch", checked against
-- torch 1.13 on fixtures): SGD (momentum, nesterov, weight decay; dampening
-- with the PyTorch rule), Adam and AdamW (amsgrad optional).
--
--   local opt = optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9, weight_decay = 1e-4})
--   opt:zero_grad(); loss:backward(); opt:step()
--
-- The two rules (lr_t: the step's learning rate, g: the gradient):
--   SGD momentum  keras:   v = m*v - lr_t*g;  w += v   (nesterov: w += m*v - lr_t*g)
--                 pytorch: b = m*b + (1-dampening)*g;  w -= lr_t*b
--                          (nesterov: w -= lr_t*(g + m*b))
--     equal at a constant lr; under a schedule Keras' v keeps the lr of the
--     step that added each gradient, PyTorch's b is rescaled by today's lr.
--   Adam          keras:   w -= lr_t*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v) + eps)
--                 pytorch: w -= lr_t/(1-b1^t) * m/(sqrt(v)/sqrt(1-b2^t) + eps)
--   defaults      keras: Adam/AdamW eps 1e-7, AdamW weight_decay 0.004;
--                 pytorch: eps 1e-8, AdamW weight_decay 1e-2.
--
-- Gradient clipping, every optimizer, as Keras: clipnorm (each gradient to
-- at most that L2 norm), global_clipnorm (all gradients together; not with
-- clipnorm) and clipvalue (each element to [-v, v]), applied before the step.
--
-- Parameters: a list of tensors, a list of named entries
-- (model:named_parameters()), or a list of groups
-- { {params = ..., weight_decay = 0}, {params = ...} } whose options override
-- the defaults. Without parameters (optim.SGD{lr = 0.1}) the optimizer is
-- bound later by model:compile or opt:set_params.
-- lr is a number or a schedule: a function(step) -> lr, called with the
-- number of steps done so far (0 for the first step; see rn.schedules).
-- Weight decay convention: with the Keras rule every optimizer decays the
-- weights directly, p <- p - lr * weight_decay * p, before the step (Keras'
-- weight_decay option; its l2 regularizer instead adds c*sum(w^2) to the
-- loss, i.e. 2c*w to the gradient). With the PyTorch rule SGD and Adam add
-- weight_decay * p to the gradient (L2) and AdamW decays the weights,
-- p <- p * (1 - lr * weight_decay), before the Adam step.
-- Updates are in-place ops inside rn.no_grad. Parameters stored in bfloat16
-- or float16 keep a float32 master copy in the optimizer state; the step
-- updates the master and copies it back.
-- opt:state_dict() / opt:load_state_dict(sd): plain tables of tensors and
-- numbers (state keyed by the parameter's position across groups, 1-based).
-- rn itself, looked up on first use: lua/rn/init.lua requires this module
-- while it is still loading, so `require "rn"` cannot run at load time.
local rn = setmetatable({}, { __index = function(t, k)
  local real = require "rn"
  setmetatable(t, { __index = real })
  return real[k]
end })

local M = {}

local Optimizer = {}
Optimizer.__index = Optimizer
M.Optimizer = Optimizer

local ALIASES = { learning_rate = "lr", epsilon = "eps" }

local RULES = { keras = true, pytorch = true }

local function err(self, msg, ...)
  error(string.format("%s: " .. msg, self.name, ...), 3)
end

-- the options every optimizer takes besides its own (Keras's)
local CLIP_OPTS = { clipnorm = true, global_clipnorm = true, clipvalue = true }

local function is_lr(v)
  return type(v) == "number" or type(v) == "function"
    or (type(v) == "table" and getmetatable(v) and getmetatable(v).__call ~= nil)
end

-- checks and normalizes one options table against the class's options
local function check_opts(self, o, extra)
  local out = {}
  for k, v in pairs(o) do
    local key = ALIASES[k] or k
    if key == "beta_1" or key == "beta_2" then
      out.betas = out.betas or {}
      out.betas[key == "beta_1" and 1 or 2] = v
    elseif self._defaults[key] == nil and not (extra and extra[key]) then
      local valid = {}
      for d in pairs(self._defaults) do valid[#valid + 1] = d end
      for d in pairs(extra or {}) do valid[#valid + 1] = d end
      table.sort(valid)
      err(self, "unknown option '%s'; valid options: %s", tostring(k), table.concat(valid, ", "))
    else
      out[key] = v
    end
  end
  return out
end

local function resolve_lr(self, lr)
  if type(lr) == "number" then return lr end
  local v = lr(self.iterations)
  if type(v) ~= "number" then err(self, "the lr schedule returned a %s at step %d, not a number", type(v), self.iterations) end
  return v
end

local function validate_group(self, g)
  if not is_lr(g.lr) or (type(g.lr) == "number" and g.lr < 0) then
    err(self, "lr must be a number >= 0 or a schedule function(step), got %s", tostring(g.lr))
  end
  if self._validate then self._validate(self, g) end
end

local function new(cls, a, b)
  local self = setmetatable({ param_groups = {}, state = {}, iterations = 0, _nparams = 0 }, cls)
  local params, opts
  if b ~= nil then
    params, opts = a, b
  elseif a == nil then
    opts = {}
  elseif type(a) == "table" and not rn.is_tensor(a) and a[1] == nil then
    opts = {}
    for k, v in pairs(a) do if k ~= "params" then opts[k] = v end end
    params = a.params
  else
    params, opts = a, {}
  end
  if type(opts) ~= "table" then err(self, "options must be a table, got %s", type(opts)) end
  local d = {}
  for k, v in pairs(cls._defaults) do d[k] = v end
  local o = check_opts(self, opts, CLIP_OPTS)
  -- gradient clipping (Keras's clipnorm, global_clipnorm, clipvalue): the
  -- optimizer's, not a group's
  self.clip = {}
  for k in pairs(CLIP_OPTS) do
    if o[k] ~= nil then
      if type(o[k]) ~= "number" or o[k] <= 0 or o[k] ~= o[k] then
        err(self, "%s must be a number > 0, got %s", k, tostring(o[k]))
      end
      self.clip[k] = o[k]
      o[k] = nil
    end
  end
  if self.clip.clipnorm and self.clip.global_clipnorm then
    err(self, "set only one of clipnorm and global_clipnorm (as Keras)")
  end
  if o.rule ~= nil and not RULES[o.rule] then
    err(self, "rule must be \"keras\" or \"pytorch\", got %s", tostring(o.rule))
  end
  for k, v in pairs(cls._rule_defaults[o.rule or d.rule] or {}) do d[k] = v end
  for k, v in pairs(o) do
    if k == "betas" then d.betas = { v[1] or d.betas[1], v[2] or d.betas[2] } else d[k] = v end
  end
  self.defaults = d
  validate_group(self, d)
  if params ~= nil then self:set_params(params) end
  return self
end

-- defaults: the Keras rule's; rule_defaults[rule]: what another rule changes
local function class(name, defaults, rule_defaults, update, validate)
  local cls = { name = name, _defaults = defaults, _rule_defaults = rule_defaults, _update = update,
    _validate = validate }
  cls.__index = cls
  cls.__name = "rn.optim." .. name
  return setmetatable(cls, { __index = Optimizer, __call = new })
end

local function as_tensor(self, v, where)
  if rn.is_tensor(v) then return v, nil end
  if type(v) == "table" and rn.is_tensor(v.tensor) then return v.tensor, v.name end
  err(self, "%s is a %s, not a tensor (or a {name=, tensor=} entry)", where, type(v))
end

--- opt:add_param_group{params = ..., <options>}: options default to the optimizer's.
function Optimizer:add_param_group(group)
  if type(group) ~= "table" or type(group.params) ~= "table" then
    err(self, "a parameter group must be a table with a params list")
  end
  local g = {}
  for k, v in pairs(self.defaults) do g[k] = v end
  local o = {}
  for k, v in pairs(group) do if k ~= "params" then o[k] = v end end
  for k, v in pairs(check_opts(self, o)) do
    if k == "rule" and v ~= g.rule then
      err(self, "rule is the whole optimizer's (%s here); it cannot change in a parameter group", g.rule)
    end
    if k == "betas" then g.betas = { v[1] or g.betas[1], v[2] or g.betas[2] } else g[k] = v end
  end
  validate_group(self, g)
  g.params, g.names, g.ids = {}, {}, {}
  self._seen = self._seen or {}
  local list = rn.is_tensor(group.params) and { group.params } or group.params
  for i, v in ipairs(list) do
    local t, name = as_tensor(self, v, "parameter " .. i)
    if not (t.dtype == "float32" or t.dtype == "float64" or t.dtype == "bfloat16" or t.dtype == "float16") then
      err(self, "parameter %d has dtype %s; only float tensors can be optimized", i, t.dtype)
    end
    if not t.is_leaf then err(self, "parameter %d is not a leaf tensor (it has grad history)", i) end
    if self._seen[t] then err(self, "parameter %d appears in more than one parameter group", i) end
    self._seen[t] = true
    self._nparams = self._nparams + 1
    g.params[#g.params + 1], g.names[#g.params + 1], g.ids[#g.params + 1] = t, name, self._nparams
  end
  self.param_groups[#self.param_groups + 1] = g
  return self
end

--- opt:set_params(params): adds a list of tensors (or named entries) or a
--- list of groups.
function Optimizer:set_params(params)
  if type(params) ~= "table" then err(self, "params must be a list of tensors or of groups, got %s", type(params)) end
  if rn.is_tensor(params) then params = { params } end
  local first = params[1]
  if type(first) == "table" and not rn.is_tensor(first) and first.params ~= nil then
    for _, g in ipairs(params) do self:add_param_group(g) end
  else
    self:add_param_group({ params = params })
  end
  return self
end

function Optimizer:num_params() return self._nparams end

--- opt:zero_grad(): drops every parameter's gradient (as set_to_none).
function Optimizer:zero_grad()
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do p:zero_grad() end
  end
end

--- opt:get_lr([group = 1]): the lr the next step will use.
function Optimizer:get_lr(gi)
  local g = self.param_groups[gi or 1] or self.defaults
  return resolve_lr(self, g.lr)
end

local LOW = { bfloat16 = true, float16 = true }

-- Keras's gradient clipping, before the update: global_clipnorm scales every
-- gradient by min(1, c / ||all gradients||), clipnorm each gradient by
-- min(1, c / ||g||), then clipvalue clamps each element to [-c, c]. The
-- norms are computed in float64; the gradients are replaced, not changed in
-- place (a .grad may be shared).
function Optimizer:_clip_gradients()
  local c, grads = self.clip, {}
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do if p.grad then grads[#grads + 1] = p end end
  end
  local function sq(t) local d = t.grad:double(); return (d * d):sum():item() end
  if c.global_clipnorm then
    local total = 0
    for _, p in ipairs(grads) do total = total + sq(p) end
    total = math.sqrt(total)
    if total > c.global_clipnorm then
      for _, p in ipairs(grads) do p.grad = p.grad * (c.global_clipnorm / total) end
    end
  elseif c.clipnorm then
    for _, p in ipairs(grads) do
      local n = math.sqrt(sq(p))
      if n > c.clipnorm then p.grad = p.grad * (c.clipnorm / n) end
    end
  end
  if c.clipvalue then
    for _, p in ipairs(grads) do p.grad = p.grad:maximum(-c.clipvalue):minimum(c.clipvalue) end
  end
end

--- opt:step(): one update of every parameter that has a gradient.
function Optimizer:step()
  if self._nparams == 0 then
    err(self, "no parameters to optimize; pass them (rn.optim.%s(model:parameters(), {...})) or "
      .. "compile a model with this optimizer", self.name)
  end
  if self._graph then return M._graph_step(self) end -- issue 19: a captured step
  rn.no_grad(function()
    if self.clip and next(self.clip) then self:_clip_gradients() end
    for _, g in ipairs(self.param_groups) do
      local lr = resolve_lr(self, g.lr)
      g.last_lr = lr
      if M._fused_step(self, g, lr) then goto next_group end -- issue 19: one call for the group
      for i, p in ipairs(g.params) do
        local grad = p.grad
        local c = self._l2 and self._l2[p] -- issue 19: a Keras l2 factor the loss left out
        if c then grad = grad and grad + p * (2 * c) or p * (2 * c) end
        if grad then
          local id = g.ids[i]
          local st = self.state[id]
          if not st then st = {}; self.state[id] = st end
          if LOW[p.dtype] then
            st.master = st.master or p:float()
            self._update(st.master, grad:float(), st, g, lr)
            p:copy_(st.master)
          else
            self._update(p, grad, st, g, lr)
          end
        end
      end
      ::next_group::
    end
  end)
  self.iterations = self.iterations + 1
  return self
end

-- ---- update rules (Keras 3; torch 1.13, single-tensor path) ------------------------

-- Keras' weight decay (every Keras optimizer): p <- p - lr * wd * p
local function keras_decay(p, g, lr)
  if g.weight_decay ~= 0 then p:mul_(1 - lr * g.weight_decay) end
end

local function sgd_update(p, grad, st, g, lr)
  if g.rule == "keras" then
    keras_decay(p, g, lr)
    if g.momentum == 0 then p:add_(grad, -lr); return end
    local v = st.velocity
    if v == nil then
      v = rn.zeros(p:size(), { dtype = p.dtype, device = p.device })
      st.velocity = v
    end
    v:mul_(g.momentum):add_(grad, -lr)
    if g.nesterov then p:add_(v, g.momentum):add_(grad, -lr) else p:add_(v) end
    return
  end
  local d = grad
  if g.weight_decay ~= 0 then d = d + p * g.weight_decay end
  if g.momentum ~= 0 then
    local buf = st.momentum_buffer
    if buf == nil then
      buf = d:clone()
      st.momentum_buffer = buf
    else
      buf:mul_(g.momentum):add_(d, 1 - g.dampening)
    end
    if g.nesterov then d = d + buf * g.momentum else d = buf end
  end
  p:add_(d, -lr)
end

local function sgd_validate(self, g)
  for _, k in ipairs({ "momentum", "dampening", "weight_decay" }) do
    if type(g[k]) ~= "number" or g[k] < 0 then err(self, "%s must be a number >= 0, got %s", k, tostring(g[k])) end
  end
  if g.rule == "keras" and g.dampening ~= 0 then
    err(self, "dampening is PyTorch's option (Keras' SGD has none); pass rule = \"pytorch\" with it")
  end
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    err(self, "nesterov needs momentum > 0 and dampening 0")
  end
end

local function adam_update_rule(decoupled)
  return function(p, grad, st, g, lr)
    st.step = (st.step or 0) + 1
    local b1, b2 = g.betas[1], g.betas[2]
    local keras = g.rule == "keras"
    local d = grad
    if keras then
      keras_decay(p, g, lr)
    elseif g.weight_decay ~= 0 then
      if decoupled then p:mul_(1 - lr * g.weight_decay) else d = d + p * g.weight_decay end
    end
    if not st.exp_avg then
      local o = { dtype = p.dtype, device = p.device }
      st.exp_avg, st.exp_avg_sq = rn.zeros(p:size(), o), rn.zeros(p:size(), o)
      if g.amsgrad then st.max_exp_avg_sq = rn.zeros(p:size(), o) end
    end
    st.exp_avg:mul_(b1):add_(d, 1 - b1)
    st.exp_avg_sq:mul_(b2):add_(d * d, 1 - b2)
    local bc1, bc2 = 1 - b1 ^ st.step, 1 - b2 ^ st.step
    local v = st.exp_avg_sq
    if g.amsgrad then
      st.max_exp_avg_sq:copy_(st.max_exp_avg_sq:maximum(v))
      v = st.max_exp_avg_sq
    end
    if keras then
      p:add_(st.exp_avg / (v:sqrt() + g.eps), -lr * math.sqrt(bc2) / bc1)
    else
      local denom = v:sqrt() / math.sqrt(bc2) + g.eps
      p:add_(st.exp_avg / denom, -lr / bc1)
    end
  end
end

local function adam_validate(self, g)
  if type(g.betas) ~= "table" or type(g.betas[1]) ~= "number" or type(g.betas[2]) ~= "number"
    or g.betas[1] < 0 or g.betas[1] >= 1 or g.betas[2] < 0 or g.betas[2] >= 1 then
    err(self, "betas must be {b1, b2} with each in [0, 1)")
  end
  if type(g.eps) ~= "number" or g.eps < 0 then err(self, "eps must be a number >= 0") end
  if type(g.weight_decay) ~= "number" or g.weight_decay < 0 then err(self, "weight_decay must be a number >= 0") end
end

--- SGD(params, {lr=0.01, momentum=0, nesterov=false, weight_decay=0, rule="keras"})
--- (dampening=0: with rule = "pytorch" only)
M.SGD = class("SGD", { lr = 0.01, momentum = 0, dampening = 0, nesterov = false, weight_decay = 0,
  rule = "keras" }, {}, sgd_update, sgd_validate)

--- Adam(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-7, weight_decay=0, amsgrad=false, rule="keras"})
--- (rule = "pytorch": eps 1e-8 by default)
M.Adam = class("Adam", { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-7, weight_decay = 0, amsgrad = false,
  rule = "keras" }, { pytorch = { eps = 1e-8 } }, adam_update_rule(false), adam_validate)

--- AdamW(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-7, weight_decay=0.004, amsgrad=false, rule="keras"})
--- (rule = "pytorch": eps 1e-8, weight_decay 1e-2 by default)
M.AdamW = class("AdamW", { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-7, weight_decay = 0.004,
  amsgrad = false, rule = "keras" }, { pytorch = { eps = 1e-8, weight_decay = 1e-2 } },
  adam_update_rule(true), adam_validate)

-- ---- issue 19: the multi-tensor step ------------------------------------------------
-- One rn.optim_multi_step call (core/ops/optim.c: one CUDA launch, or the
-- CPU twin's one loop, equal bit for bit to the per-tensor rules above)
-- updates a whole group with the same state entries (momentum_buffer or
-- velocity, step, exp_avg, exp_avg_sq, max_exp_avg_sq). M.fused: nil (the
-- default: on for CPU and CUDA parameters; $RN_FUSED_OPTIM=0 turns it off),
-- true or false. On the CPU it saves the per-tensor op dispatch (MobileNetV2:
-- 158 tensors, ~8 ops each per Adam step). A group it cannot take (16-bit or mixed
-- dtypes or devices, non-contiguous tensors, another optimizer class) runs
-- the per-tensor path, as when it is off.
M.fused = nil
local FUSED_KIND = { SGD = "sgd", Adam = "adam", AdamW = "adam" }

local function fused_wanted(dev)
  if M.fused ~= nil then return M.fused end
  local e = os.getenv("RN_FUSED_OPTIM")
  if e == "0" then return false end
  if e == "1" then return true end
  return dev == "cuda" or dev == "cpu"
end

-- opt:_fused_takes(dev, dtype): true when this optimizer's step runs as
-- one multi-tensor call for parameters of that device and dtype (then the
-- model may leave Keras' l2 penalties out of the loss and pass their factors
-- as opt._l2 = {[param] = c} for one step: lua/rn/regularizers.lua l2_plan).
-- The per-tensor path honours opt._l2 too (2c*p added to the gradient).
function Optimizer:_fused_takes(dev, dt)
  return FUSED_KIND[self.name] ~= nil and self._update == M[self.name]._update
    and fused_wanted(dev) and (dt == "float32" or dt == "float64")
end

function M._fused_step(self, g, lr, graph)
  local kind, p1 = FUSED_KIND[self.name], g.params[1]
  if not kind or not p1 then return false end
  if self._update ~= M[self.name]._update or not (graph or fused_wanted(p1.device)) then return false end
  local dt, dev = p1.dtype, p1.device
  if dt ~= "float32" and dt ~= "float64" then return false end
  for _, p in ipairs(g.params) do
    local gr = p.grad
    if p.dtype ~= dt or p.device ~= dev or not p:is_contiguous()
      or (gr and (gr.dtype ~= dt or gr.device ~= dev or not gr:is_contiguous())) then
      return false
    end
  end
  local rule = g.rule or "pytorch"
  local o = { dtype = dt, device = dev }
  local items = {}
  for i, p in ipairs(g.params) do
    local grad = p.grad
    local c = self._l2 and self._l2[p] -- a Keras l2 factor the loss left out (2c*p joins g)
    if c and not grad then grad = rn.zeros(p:size(), o) end
    if grad then
      local id = g.ids[i]
      local st = self.state[id]
      if not st then st = {}; self.state[id] = st end
      local it = { p = p, g = grad, l2 = c or nil }
      if kind == "sgd" then
        if g.momentum ~= 0 then
          local key = rule == "keras" and "velocity" or "momentum_buffer"
          if not st[key] then st[key] = rn.zeros(p:size(), o); it.first = true end
          it.s1 = st[key]
        end
      else
        if not graph then st.step = (st.step or 0) + 1 end -- graph: _graph_advance counts
        it.step = graph and 0 or st.step
        if not st.exp_avg then
          st.exp_avg, st.exp_avg_sq = rn.zeros(p:size(), o), rn.zeros(p:size(), o)
          if g.amsgrad then st.max_exp_avg_sq = rn.zeros(p:size(), o) end
        end
        it.s1, it.s2, it.s3 = st.exp_avg, st.exp_avg_sq, g.amsgrad and st.max_exp_avg_sq or nil
      end
      items[#items + 1] = it
    end
  end
  rn.optim_multi_step({ kind = kind, rule = rule, lr = lr, weight_decay = g.weight_decay,
    momentum = g.momentum, dampening = g.dampening, nesterov = g.nesterov,
    beta1 = g.betas and g.betas[1], beta2 = g.betas and g.betas[2], eps = g.eps,
    amsgrad = g.amsgrad, decoupled = self.name == "AdamW", scalars = graph and g._graph_scalars or nil }, items)
  return true
end

-- Whole-step graphs (lua/rn/graph.lua). In graph mode opt:step() runs each
-- group as one multi-tensor call reading {lr, step} from the group's device
-- scalars and counts nothing: opt:_graph_advance(), called by the stepper
-- before each captured or replayed step (outside the capture), resolves the
-- lr, writes the scalars and advances the counters (iterations, each Adam
-- tensor's step) as an eager step would. A group the multi-tensor call does
-- not take makes the step an error, so the capture falls back to eager.
function M._graph_step(self)
  rn.no_grad(function()
    for gi, g in ipairs(self.param_groups) do
      if not M._fused_step(self, g, 0, true) then -- lr 0 and step 0: the scalars carry them
        err(self, "group %d cannot run as one multi-tensor call (16-bit or mixed dtypes or devices, "
          .. "non-contiguous tensors, or another optimizer class): not capturable", gi)
      end
    end
  end)
  return self
end

function Optimizer:_graph_on()
  self._graph = true
  for _, g in ipairs(self.param_groups) do
    local dev = g.params[1] and g.params[1].device or "cpu"
    if not g._graph_scalars or g._graph_scalars.device ~= dev then
      g._graph_scalars = rn.zeros({ 2 }, { dtype = "float64", device = dev })
    end
  end
end

function Optimizer:_graph_off() self._graph = nil end

function Optimizer:_graph_advance()
  for _, g in ipairs(self.param_groups) do
    local lr = resolve_lr(self, g.lr)
    g.last_lr = lr
    local step = 0
    if FUSED_KIND[self.name] == "adam" then
      for i, p in ipairs(g.params) do
        local st = self.state[g.ids[i]]
        if st and st.step and st.step > step then step = st.step end
      end
      step = step + 1
      for i, p in ipairs(g.params) do
        local st = self.state[g.ids[i]]
        if st and st.exp_avg then st.step = step end
      end
    end
    rn.no_grad(function() g._graph_scalars:copy_(rn.tensor({ lr, step }, { dtype = "float64" })) end)
  end
  self.iterations = self.iterations + 1
end

-- the counters an aborted capture must restore
function Optimizer:_graph_save()
  local s = { iterations = self.iterations, steps = {} }
  for id, st in pairs(self.state) do s.steps[id] = st.step end
  return s
end

function Optimizer:_graph_restore(s)
  self.iterations = s.iterations
  for id, st in pairs(self.state) do st.step = s.steps[id] end
end
-- ---- end of issue 19 ------------------------------------------------------------------

--- get(name): an unbound optimizer with default options ("sgd", "adam", "adamw").
function M.get(name)
  local n = type(name) == "string" and name:lower()
  if n == "sgd" then return M.SGD{} end
  if n == "adam" then return M.Adam{} end
  if n == "adamw" then return M.AdamW{} end
  error("optim.get: unknown optimizer " .. tostring(name) .. " (known: sgd, adam, adamw)", 3)
end

-- ---- state ----------------------------------------------------------------------------

local function clone(v)
  if rn.is_tensor(v) then return rn.no_grad(function() return v:clone() end) end
  return v
end

--- opt:state_dict(): {iterations =, state = {[id] = {step =, momentum_buffer =, exp_avg =, ...}},
--- param_groups = {{lr = number or nil (a schedule), momentum =, ..., params = {ids}}}}.
--- Tensors are copies.
function Optimizer:state_dict()
  local sd = { iterations = self.iterations, state = {}, param_groups = {}, name = self.name }
  for id, st in pairs(self.state) do
    local c = {}
    for k, v in pairs(st) do c[k] = clone(v) end
    sd.state[id] = c
  end
  for i, g in ipairs(self.param_groups) do
    local c = { params = {} }
    for k, v in pairs(g) do
      if k == "betas" then c.betas = { v[1], v[2] }
      elseif k == "lr" then c.lr = type(v) == "number" and v or nil
      elseif type(v) == "number" or type(v) == "boolean" or k == "rule" then c[k] = v end
    end
    for j, id in ipairs(g.ids) do c.params[j] = id end
    sd.param_groups[i] = c
  end
  return sd
end

--- opt:load_state_dict(sd): restores what state_dict() saved into an
--- optimizer over the same parameters (same groups and shapes). A group
--- whose lr is a schedule keeps it; the schedule resumes from iterations.
function Optimizer:load_state_dict(sd)
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.state) ~= "table" then
    err(self, "load_state_dict: expected a table from state_dict()")
  end
  if #sd.param_groups ~= #self.param_groups then
    err(self, "load_state_dict: %d parameter groups saved, the optimizer has %d", #sd.param_groups, #self.param_groups)
  end
  local shapes = {}
  for gi, g in ipairs(self.param_groups) do
    local sg = sd.param_groups[gi]
    if sg.rule ~= nil and sg.rule ~= g.rule then
      err(self, "load_state_dict: the state was saved with rule = \"%s\", this optimizer has rule = \"%s\"",
        tostring(sg.rule), g.rule)
    end
    if #sg.params ~= #g.params then
      err(self, "load_state_dict: group %d has %d parameters saved, %d here", gi, #sg.params, #g.params)
    end
    for j, p in ipairs(g.params) do shapes[g.ids[j]] = p end
  end
  local state = {}
  for id, st in pairs(sd.state) do
    local p = shapes[id]
    if not p then err(self, "load_state_dict: state for parameter %s, which does not exist", tostring(id)) end
    local c = {}
    for k, v in pairs(st) do
      if rn.is_tensor(v) then
        local a, b = table.concat(v:size(), ","), table.concat(p:size(), ",")
        if a ~= b then err(self, "load_state_dict: state '%s' of parameter %d has shape (%s), the parameter (%s)", k, id, a, b) end
      end
      c[k] = clone(v)
    end
    state[id] = c
  end
  for gi, g in ipairs(self.param_groups) do
    for k, v in pairs(sd.param_groups[gi]) do
      if k == "betas" then g.betas = { v[1], v[2] }
      elseif k == "lr" then if type(g.lr) == "number" then g.lr = v end
      elseif k ~= "params" and k ~= "last_lr" and self._defaults[k] ~= nil then g[k] = v end
    end
  end
  self.state = state
  self.iterations = sd.iterations or 0
  return self
end

return M
