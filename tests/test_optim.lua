-- test_optim.lua - the optimizers against PyTorch 1.13 with rule = "pytorch"
-- (fixtures from tests/fixtures/gen_optim.py: SGD plain/momentum/dampening/
-- nesterov/weight decay/param groups, Adam (+weight decay, amsgrad), AdamW)
-- and against Keras 3's update equations with the default rule (fixtures from
-- tests/fixtures/gen_keras_optim.py, constant and changing learning rates):
-- the same update to 1e-6 in float32 and 1e-10 in float64; state_dict round trips that resume
-- exactly; lr schedules (formulas, composition, use as an optimizer's lr);
-- bfloat16 parameters with float32 master weights; misuse errors.
local T = require "t"
local rn = require "rn"
local optim = require "rn.optim"
local schedules = require "rn.schedules"

local fixtures = assert(loadfile("tests/fixtures/optim_fixtures.lua", "t", {}))()
local SHAPES = { { 3, 2 }, { 4 } }

local function tensor(data, shape, dtype)
  return rn.tensor(data, { dtype = dtype }):reshape(shape)
end

local function make_opt(c, params)
  local cls = optim[c.optimizer]
  local options = { rule = "pytorch" } -- these fixtures are PyTorch's rule
  for k, v in pairs(c.options) do options[k] = v end
  if not c.groups then return cls(params, options) end
  local groups = {}
  for i, g in ipairs(c.groups) do
    local grp = { params = {} }
    for _, k in ipairs(g.params) do grp.params[#grp.params + 1] = params[k] end
    for k, v in pairs(g.options) do grp[k] = v end
    groups[i] = grp
  end
  return cls(groups, options)
end

local function run_case(c, dtype, atol)
  local params = {}
  for i, s in ipairs(SHAPES) do
    params[i] = tensor(c.init[i], s, dtype):requires_grad_()
  end
  local opt = make_opt(c, params)
  for step = 1, #c.grads do
    for i, s in ipairs(SHAPES) do params[i].grad = tensor(c.grads[step][i], s, dtype) end
    opt:step()
    for i = 1, #SHAPES do
      T.near(params[i]:double():reshape(-1), rn.tensor(c.after[step][i], { dtype = "float64" }), atol, 0,
        string.format("%s %s step %d param %d", c.name, dtype, step, i))
    end
  end
end

for _, c in ipairs(fixtures) do
  T.test("torch fixture " .. c.name .. " (float64, 1e-10)", function() run_case(c, "float64", 1e-10) end)
  T.test("torch fixture " .. c.name .. " (float32, 1e-6)", function() run_case(c, "float32", 1e-6) end)
end

T.test("fixtures cover every optimizer and option the issue names", function()
  local names = {}
  for _, c in ipairs(fixtures) do names[c.name] = true end
  for _, n in ipairs({ "sgd_plain", "sgd_momentum", "sgd_nesterov", "sgd_weight_decay", "sgd_groups",
    "adam", "adam_weight_decay", "adamw" }) do
    T.truthy(names[n], "fixture " .. n)
  end
end)

-- ---- Keras' rules (the default) ------------------------------------------------------
-- fixtures from tests/fixtures/gen_keras_optim.py: Keras 3's update equations
-- in plain float64 Python, some under a changing learning rate (lrs[k] at step k)

local kfixtures = assert(loadfile("tests/fixtures/keras_optim_fixtures.lua", "t", {}))()

local function run_keras_case(c, dtype, atol, rule)
  local params = {}
  for i, s in ipairs(SHAPES) do params[i] = tensor(c.init[i], s, dtype):requires_grad_() end
  local options = { lr = function(k) return c.lrs[k + 1] end, rule = rule }
  for k, v in pairs(c.options) do options[k] = v end
  local opt = optim[c.optimizer](params, options)
  local worst = 0
  for step = 1, #c.grads do
    for i, s in ipairs(SHAPES) do params[i].grad = tensor(c.grads[step][i], s, dtype) end
    opt:step()
    for i = 1, #SHAPES do
      local want = rn.tensor(c.after[step][i], { dtype = "float64" })
      local got = params[i]:double():reshape(-1)
      if atol then
        T.near(got, want, atol, 0, string.format("%s %s step %d param %d", c.name, dtype, step, i))
      end
      worst = math.max(worst, (got - want):abs():max():item())
    end
  end
  return worst
end

for _, c in ipairs(kfixtures) do
  T.test("keras fixture " .. c.name .. " (default rule, float64, 1e-10)", function()
    run_keras_case(c, "float64", 1e-10)
  end)
  T.test("keras fixture " .. c.name .. " (float32, 1e-6)", function() run_keras_case(c, "float32", 1e-6) end)
end

T.test("a changing learning rate: Keras' trajectory, not PyTorch's; equal at a constant lr", function()
  local by = {}
  for _, c in ipairs(kfixtures) do by[c.name] = c end
  for _, n in ipairs({ "sgd_momentum_schedule", "sgd_nesterov_schedule" }) do
    T.near(run_keras_case(by[n], "float64", nil, "keras"), 0, 1e-10, 0, n .. " keras")
    -- PyTorch's rule rescales the whole momentum buffer by today's lr: off by far more than round-off
    T.truthy(run_keras_case(by[n], "float64", nil, "pytorch") > 1e-3, n .. ": the PyTorch rule differs")
  end
  for _, n in ipairs({ "sgd_momentum", "sgd_nesterov" }) do -- constant lr: the same steps
    T.near(run_keras_case(by[n], "float64", nil, "pytorch"), 0, 1e-12, 0, n .. " pytorch at constant lr")
  end
  -- Adam: the epsilon (1e-7 vs 1e-8, and where it is added) shows on small gradients
  T.truthy(run_keras_case(by.adam_small_grads, "float64", nil, "pytorch") > 1e-4, "adam eps differs")
end)

T.test("defaults: Keras' for the Keras rule, PyTorch's for rule = \"pytorch\"", function()
  local w = { rn.ones({ 2 }, { requires_grad = true }) }
  local a, aw = optim.Adam(w), optim.AdamW(w)
  T.eq({ a.defaults.eps, a.defaults.rule, aw.defaults.eps, aw.defaults.weight_decay }, { 1e-7, "keras", 1e-7, 0.004 })
  local ap, awp = optim.Adam(w, { rule = "pytorch" }), optim.AdamW(w, { rule = "pytorch" })
  T.eq({ ap.defaults.eps, awp.defaults.eps, awp.defaults.weight_decay }, { 1e-8, 1e-8, 1e-2 })
  T.eq(optim.AdamW(w, { rule = "pytorch", eps = 1e-6 }).defaults.eps, 1e-6, "an explicit eps wins")
  T.eq(optim.get("sgd").defaults.rule, "keras")
  -- a state saved under one rule does not load into the other
  local p = { rn.ones({ 2 }, { requires_grad = true }) }
  local o = optim.SGD(p, { lr = 0.1, momentum = 0.9 })
  p[1].grad = rn.ones({ 2 }); o:step()
  T.raises(function() optim.SGD(p, { lr = 0.1, momentum = 0.9, rule = "pytorch" }):load_state_dict(o:state_dict()) end,
    "saved with rule = \"keras\"")
end)

-- ---- state -------------------------------------------------------------------------

local function fresh(dtype)
  rn.manual_seed(7)
  return { rn.randn({ 3, 2 }, { dtype = dtype }):requires_grad_(), rn.randn({ 4 }, { dtype = dtype }):requires_grad_() }
end

local function grads_at(step, dtype)
  rn.manual_seed(100 + step)
  return { rn.randn({ 3, 2 }, { dtype = dtype }), rn.randn({ 4 }, { dtype = dtype }) }
end

for _, spec in ipairs({ { "SGD", { lr = 0.1, momentum = 0.9, nesterov = true } },
  { "Adam", { lr = 0.01, weight_decay = 0.01 } }, { "AdamW", { lr = 0.01, amsgrad = true } } }) do
  T.test("state_dict/load_state_dict resumes " .. spec[1] .. " exactly", function()
    local a = fresh("float64")
    local oa = optim[spec[1]](a, spec[2])
    for s = 1, 5 do
      local g = grads_at(s, "float64")
      a[1].grad, a[2].grad = g[1], g[2]
      oa:step()
    end
    local b = fresh("float64")
    local ob = optim[spec[1]](b, spec[2])
    local sd
    for s = 1, 5 do
      local g = grads_at(s, "float64")
      b[1].grad, b[2].grad = g[1], g[2]
      ob:step()
      if s == 2 then sd = ob:state_dict() end
      if s == 2 then
        -- a brand-new optimizer (and parameter copies) restored from the dict
        local c = { b[1]:detach():clone():requires_grad_(), b[2]:detach():clone():requires_grad_() }
        ob = optim[spec[1]](c, spec[2]):load_state_dict(sd)
        b = c
      end
    end
    T.near(b[1], a[1], 1e-12, 0)
    T.near(b[2], a[2], 1e-12, 0)
    T.eq(ob.iterations, 5)
    -- the dict is plain tables, tensors and numbers
    T.eq(type(sd.state[1]), "table")
    T.eq(sd.iterations, 2)
    T.eq(sd.param_groups[1].params, { 1, 2 })
  end)
end

T.test("load_state_dict rejects a mismatched optimizer", function()
  local p = fresh("float32")
  local o = optim.SGD(p, { lr = 0.1, momentum = 0.9 })
  p[1].grad, p[2].grad = rn.ones({ 3, 2 }), rn.ones({ 4 })
  o:step()
  local sd = o:state_dict()
  local q = optim.SGD({ rn.zeros({ 3, 2 }, { requires_grad = true }) }, { lr = 0.1 })
  T.raises(function() q:load_state_dict(sd) end, "group 1 has 2 parameters saved, 1 here")
  local r = optim.SGD({ rn.zeros({ 2, 3 }, { requires_grad = true }), rn.zeros({ 4 }, { requires_grad = true }) }, { lr = 0.1 })
  T.raises(function() r:load_state_dict(sd) end, "has shape %(3,2%), the parameter %(2,3%)")
end)

-- ---- schedules -----------------------------------------------------------------------

T.test("schedules: formulas", function()
  local s = schedules.step(1.0, 10, 0.5)
  T.near({ s(0), s(9), s(10), s(25) }, { 1, 1, 0.5, 0.25 }, 1e-15)
  local m = schedules.multistep(0.1, { 32000, 48000 })
  T.near({ m(0), m(31999), m(32000), m(48000) }, { 0.1, 0.1, 0.01, 0.001 }, 1e-15)
  local p = schedules.piecewise({ 5, 10 }, { 1, 0.5, 0.1 })
  T.near({ p(4), p(5), p(9), p(10) }, { 1, 0.5, 0.5, 0.1 }, 1e-15)
  local c = schedules.cosine(0.1, 100, { alpha = 0.1 })
  T.near({ c(0), c(50), c(100), c(200) }, { 0.1, 0.1 * (0.9 * 0.5 + 0.1), 0.01, 0.01 }, 1e-12)
  local l = schedules.linear(1, 0, 4)
  T.near({ l(0), l(2), l(4), l(9) }, { 1, 0.5, 0, 0 }, 1e-15)
  local e = schedules.exponential(1, 10, 0.5, { staircase = true })
  T.near({ e(9), e(10), e(20) }, { 1, 0.5, 0.25 }, 1e-15)
end)

T.test("schedules compose: warmup then cosine, sequence, scale", function()
  local w = schedules.warmup(schedules.cosine(0.1, 100), 5)
  T.near({ w(0), w(1), w(4) }, { 0.02, 0.04, 0.1 }, 1e-12)
  T.near(w(5), 0.1, 1e-12)                                         -- cosine at its step 0
  T.near(w(55), 0.05, 1e-12)                                       -- cosine at its step 50
  local seq = schedules.sequence({ { 0.5, 3 }, { schedules.linear(1, 0, 2), 2 }, { 0.01 } })
  T.near({ seq(0), seq(2), seq(3), seq(4), seq(5), seq(1000) }, { 0.5, 0.5, 1, 0.5, 0.01, 0.01 }, 1e-15)
  T.near(schedules.scale(schedules.constant(0.2), 0.5)(7), 0.1, 1e-15)
  T.raises(function() schedules.warmup("x", 5) end, "expected a number or a schedule")
  T.raises(function() schedules.step(0.1, 0) end, "step_size must be an integer >= 1")
end)

T.test("a schedule as lr: step k uses lr(k), k = steps done before it", function()
  local p = rn.zeros({ 1 }, { dtype = "float64", requires_grad = true })
  local o = optim.SGD({ p }, { lr = schedules.step(1.0, 1, 0.5) })
  for _ = 1, 3 do
    p.grad = rn.ones({ 1 }, { dtype = "float64" })
    o:step()
  end
  T.near(p, rn.tensor({ -(1 + 0.5 + 0.25) }, { dtype = "float64" }), 1e-15)
  T.near(o:get_lr(), 0.125, 1e-15)
  T.near(o.param_groups[1].last_lr, 0.25, 1e-15)
end)

-- ---- behaviour --------------------------------------------------------------------------

T.test("zero_grad drops gradients; parameters without a gradient are skipped", function()
  local a, b = rn.ones({ 2 }, { requires_grad = true }), rn.ones({ 2 }, { requires_grad = true })
  local o = optim.Adam({ a, b }, { lr = 0.1 })
  a.grad = rn.ones({ 2 })
  o:step()
  T.truthy(a:sum():item() < 2, "a moved")
  T.near(b, rn.ones({ 2 }), 0, 0, "b has no grad: unchanged")
  o:zero_grad()
  T.eq(a.grad, nil)
end)

T.test("named entries and unbound optimizers (bound by set_params)", function()
  local w = rn.ones({ 2 }, { requires_grad = true })
  local o = optim.SGD{ lr = 0.5 }
  T.eq(o:num_params(), 0)
  T.raises(function() o:step() end, "no parameters to optimize")
  o:set_params({ { name = "dense/kernel", tensor = w } })
  w.grad = rn.ones({ 2 })
  o:step()
  T.near(w, rn.full({ 2 }, 0.5), 1e-7)
  local o2 = optim.SGD{ params = { w }, learning_rate = 0.25 } -- Keras' name for lr
  T.near(o2:get_lr(), 0.25, 0)
end)

T.test("bfloat16 parameters are updated through float32 master weights", function()
  local p = rn.ones({ 4 }, { dtype = "bfloat16", requires_grad = true })
  local o = optim.SGD({ p }, { lr = 1e-3 })
  for _ = 1, 10 do
    p.grad = rn.ones({ 4 }, { dtype = "bfloat16" })
    o:step()
  end
  -- 1 - 10*1e-3 = 0.99: each single step (1 - 1e-3) would round back to 1 in bfloat16
  T.near(o.state[1].master, rn.full({ 4 }, 0.99), 1e-6)
  T.eq(o.state[1].master.dtype, "float32")
  T.near(p:float(), rn.full({ 4 }, 0.99), 4e-3)
  T.eq(p.dtype, "bfloat16")
end)

T.test("misuse: unknown option, bad values, duplicate parameters", function()
  local w = rn.ones({ 2 }, { requires_grad = true })
  T.raises(function() optim.SGD({ w }, { lr = 0.1, momentun = 0.9 }) end,
    "SGD: unknown option 'momentun'; valid options: clipnorm, clipvalue, dampening, global_clipnorm, lr, momentum, nesterov, rule, weight_decay")
  T.raises(function() optim.SGD({ w }, { lr = 0.1, rule = "torch" }) end,
    "rule must be \"keras\" or \"pytorch\", got torch")
  T.raises(function() optim.SGD({ w }, { lr = 0.1, momentum = 0.9, dampening = 0.1 }) end,
    "dampening is PyTorch's option")
  T.raises(function() optim.SGD({ { params = { w }, rule = "pytorch" } }, { lr = 0.1 }) end,
    "it cannot change in a parameter group")
  T.raises(function() optim.SGD({ w }, { lr = 0.1, nesterov = true }) end, "nesterov needs momentum > 0")
  T.raises(function() optim.Adam({ w }, { betas = { 0.9, 1.5 } }) end, "betas must be")
  T.raises(function() optim.SGD({ w }, { lr = -1 }) end, "lr must be a number >= 0")
  T.raises(function() optim.SGD({ { params = { w } }, { params = { w } } }, { lr = 0.1 }) end,
    "appears in more than one parameter group")
  T.raises(function() optim.SGD({ rn.ones({ 2 }, { dtype = "int64" }) }, { lr = 0.1 }) end,
    "only float tensors can be optimized")
end)
