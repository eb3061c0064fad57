-- test_l2_fused.lua - issue 19's one-pass Keras L2 (rn.l2_penalty_multi,
-- core/ops/optim.c; lua/rn/regularizers.lua l2_plan): the penalty value
-- equals the autograd form sum_i c_i*sum(w_i^2); a model trained with the
-- penalty folded into the optimizer's step (the CPU twin of the one CUDA
-- launch) reports the same losses and reaches the same weights as with the
-- autograd form (SGD momentum, Adam; float64 to 1e-12, float32 to 1e-5);
-- the per-tensor fallback honours the same factors; the plan is refused
-- where it cannot apply (l1 terms, the fused optimizer off); errors.
local T = require "t"
local rn = require "rn"
local optim = require "rn.optim"
local layers = require "rn.layers"
local Sequential = require("rn.model").Sequential
local regularizers = rn.regularizers or require "rn.regularizers"

-- runs f with optim.fused and regularizers.fused set, restoring them
local function with_switches(fo, fr, f)
  local so, sr = optim.fused, regularizers.fused
  optim.fused, regularizers.fused = fo, fr
  local ok, a, b = pcall(f)
  optim.fused, regularizers.fused = so, sr
  assert(ok, a)
  return a, b
end

T.test("l2_penalty_multi equals sum c*sum(w^2) (float32, float64, empty, none)", function()
  for _, dt in ipairs({ "float32", "float64" }) do
    rn.manual_seed(3)
    local ws = { rn.randn({ 3, 3, 4, 8 }, { dtype = dt }), rn.randn({ 0 }, { dtype = dt }),
      rn.randn({ 70000 }, { dtype = dt }), rn.randn({ 5 }, { dtype = dt }) }
    local cs = { 1e-4, 0.5, 0.01, 0 }
    local want = 0
    for i, w in ipairs(ws) do
      if w:numel() > 0 then want = want + cs[i] * (w:double() * w:double()):sum():item() end
    end
    local got = rn.l2_penalty_multi(ws, cs)
    T.eq(got:dim(), 0)
    T.eq(got.dtype, dt)
    local tol = dt == "float64" and 1e-12 or 1e-6
    T.truthy(math.abs(got:item() - want) <= tol * math.abs(want),
      string.format("%s: %.17g, want %.17g", dt, got:item(), want))
  end
  T.eq(rn.l2_penalty_multi({}, {}):item(), 0)
end)

T.test("l2_penalty_multi errors name the problem", function()
  local a, b = rn.ones({ 2 }), rn.ones({ 2 }, { dtype = "float64" })
  T.raises(function() rn.l2_penalty_multi({ a, b }, { 1, 1 }) end, "tensor 2 is float64")
  T.raises(function() rn.l2_penalty_multi({ a }, { -1 }) end, "factor 1 is %-1")
  T.raises(function() rn.l2_penalty_multi({ a }, { 1, 2 }) end, "1 tensors but 2 factors")
  T.raises(function() rn.l2_penalty_multi({ a, 5 }, { 1, 2 }) end, "item 2 must be a tensor")
  T.raises(function() rn.l2_penalty_multi({ rn.ones({ 2 }, { dtype = "int64" }) }, { 1 }) end,
    "float32 or float64")
  T.raises(function() rn.l2_penalty_multi({ rn.ones({ 4, 4 }):t() }, { 1 }) end, "not contiguous")
end)

-- a small conv net with l2 on the kernels (and on one bias)
local function net()
  rn.manual_seed(11)
  local reg = regularizers.l2(1e-2)
  local m = Sequential{ layers.Input({ 6, 6, 2 }),
    layers.Conv2D(4, 3, { padding = "same", kernel_regularizer = reg, bias_regularizer = regularizers.l2(0.05) }),
    layers.ReLU(),
    layers.Conv2D(4, 3, { kernel_regularizer = reg }),
    layers.Flatten(),
    layers.Dense(3, { kernel_regularizer = regularizers.l2(0.2) }) }
  return m
end

local function data()
  rn.manual_seed(5)
  return rn.randn({ 8, 6, 6, 2 }), rn.tensor({ 0, 1, 2, 0, 1, 2, 2, 1 }, { dtype = "int64" })
end

-- 6 steps; returns the reported losses and the final parameters (cpu copies)
local function train(fused, mk_opt)
  return with_switches(fused, fused, function()
    local m = net()
    m:compile{ optimizer = mk_opt(), loss = "sparse_categorical_crossentropy" }
    local x, y = data()
    local losses = {}
    for i = 1, 6 do losses[i] = m:train_step(x, y).loss end
    local ps = {}
    for i, p in ipairs(m:parameters()) do ps[i] = p:clone() end
    local plan = regularizers.l2_plan(m:weights(), m.optimizer)
    return { losses = losses, params = ps, test = m:test_step(x, y).loss }, plan
  end)
end

for _, case in ipairs({
  { "SGD momentum", function() return optim.SGD{ lr = 0.02, momentum = 0.9 } end },
  { "Adam", function() return optim.Adam{ lr = 0.01 } end },
  { "SGD nesterov (pytorch rule)", function() return optim.SGD{ lr = 0.02, momentum = 0.9, nesterov = true, rule = "pytorch" } end },
}) do
  T.test("train_step with one-pass L2 equals the autograd form: " .. case[1], function()
    local a, pa = train(false, case[2])
    local b, pb = train(true, case[2])
    T.eq(pa, nil, "the autograd run took the autograd form")
    T.truthy(pb ~= nil, "the fused run took the one-pass form")
    T.eq(#pb.tensors, 4, "three kernels and one bias are penalized")
    for i = 1, 6 do
      T.truthy(math.abs(a.losses[i] - b.losses[i]) <= 1e-5 * math.abs(a.losses[i]),
        string.format("step %d loss %.9g vs %.9g", i, a.losses[i], b.losses[i]))
    end
    T.truthy(a.losses[6] < a.losses[1], string.format("it trains: %g -> %g", a.losses[1], a.losses[6]))
    T.truthy(math.abs(a.test - b.test) <= 1e-5 * math.abs(a.test), "test_step loss")
    for i, p in ipairs(a.params) do T.near(b.params[i], p, 1e-5, 1e-5, "parameter " .. i) end
  end)
end

T.test("the reported loss includes the penalty (value on the starting weights)", function()
  with_switches(true, true, function()
    local m = net()
    m:compile{ optimizer = optim.SGD{ lr = 0.1 }, loss = "sparse_categorical_crossentropy" }
    local x, y = data()
    local pen = m:regularization_loss():item()
    local base = rn.no_grad(function() return m.loss_fn(m(x, { training = true }), y):item() end)
    local logs = m:train_step(x, y)
    T.truthy(pen > 0.01, "the penalty is not negligible: " .. pen)
    T.truthy(math.abs(logs.loss - (base + pen)) <= 1e-5 * (base + pen),
      string.format("loss %.9g, want %.9g + %.9g", logs.loss, base, pen))
  end)
end)

T.test("per-tensor step honours opt._l2 as the gradient 2c*w (float64)", function()
  rn.manual_seed(9)
  local p = rn.randn({ 4, 3 }, { dtype = "float64" }):requires_grad_()
  local q = rn.no_grad(function() return p:clone() end):requires_grad_()
  local g = rn.randn({ 4, 3 }, { dtype = "float64" })
  local c = 0.3
  with_switches(false, nil, function()
    local o1 = optim.SGD({ p }, { lr = 0.1 })
    p.grad = g:clone()
    o1._l2 = { [p] = c }
    o1:step()
    local o2 = optim.SGD({ q }, { lr = 0.1 })
    local pen = (q * q):sum() * c
    pen:backward()
    q.grad = q.grad + g
    o2:step()
  end)
  T.near(p, q, 1e-14, 1e-14)
end)

T.test("l2_plan: nil with an l1 term, with the fused optimizer off, or RN_FUSED_L2 off", function()
  local m = net()
  m:compile{ optimizer = optim.SGD{ lr = 0.1 }, loss = "mse" }
  T.truthy(with_switches(true, true, function() return regularizers.l2_plan(m:weights(), m.optimizer) end) ~= nil)
  T.eq(with_switches(false, true, function() return regularizers.l2_plan(m:weights(), m.optimizer) end), nil)
  T.eq(with_switches(true, false, function() return regularizers.l2_plan(m:weights(), m.optimizer) end), nil)
  local ws = m:weights()
  ws[1].regularizer = regularizers.l1_l2{ l1 = 0.01, l2 = 0.01 }
  T.eq(with_switches(true, true, function() return regularizers.l2_plan(ws, m.optimizer) end), nil)
  -- default (nil): on where the optimizer's fused step is (the CPU and CUDA, unless switched off)
  local plan = with_switches(nil, nil, function() return regularizers.l2_plan(m:weights(), m.optimizer) end)
  T.eq(plan ~= nil, os.getenv("RN_FUSED_OPTIM") ~= "0" and os.getenv("RN_FUSED_L2") ~= "0")
end)

T.test("cuda: l2_penalty_multi and the one-pass train_step against the autograd form", function()
  if not rn.cuda.is_available() then T.skip("no CUDA device") end
  rn.manual_seed(4)
  local ws = { rn.randn({ 3, 3, 16, 16 }):to("cuda"), rn.randn({ 100000 }):to("cuda"), rn.zeros({ 0 }):to("cuda") }
  local want = 0
  for i, w in ipairs(ws) do want = want + 0.01 * i * (w:to("cpu"):double() ^ 2):sum():item() end
  local got = rn.l2_penalty_multi(ws, { 0.01, 0.02, 0.03 }):item()
  T.truthy(math.abs(got - want) <= 1e-6 * want, string.format("%.9g vs %.9g", got, want))
  local again = rn.l2_penalty_multi(ws, { 0.01, 0.02, 0.03 }):item()
  T.eq(again, got, "deterministic")
end)
