-- test_optim_fused.lua - the multi-tensor optimizer step (rn.optim_multi_step,
-- core/ops/optim.c, math in core/optim_math.h): on the CPU (the twin of the
-- one-launch CUDA kernel) it must equal lua/rn/optim.lua's per-tensor step
-- bit for bit, for SGD (plain, momentum, dampening, nesterov, weight decay),
-- Adam (weight decay, amsgrad) and AdamW, float32 and float64, over 10 steps
-- and several tensors (one empty, one large enough to be split across
-- threads); Keras' rules (issue 23's forms) against the same per-tensor
-- tensor ops; the l2 factor against autograd of c*sum(w^2); errors. On a
-- GPU, fused against per-tensor within rounding.
local T = require "t"
local rn = require "rn"
local optim = require "rn.optim"

local SHAPES = { { 3, 5 }, { 7 }, { 0 }, { 300, 130 } } -- 39,000 elements: > one thread's share

local function params(dtype, device, seed)
  rn.manual_seed(seed)
  local ps = {}
  for i, s in ipairs(SHAPES) do
    ps[i] = rn.randn(s, { dtype = dtype }):to(device or "cpu"):requires_grad_()
  end
  return ps
end

local function grads(ps, step)
  rn.manual_seed(1000 + step)
  for _, p in ipairs(ps) do p.grad = rn.randn(p:size(), { dtype = p.dtype }):to(p.device) end
end

local function same_bits(a, b, what)
  T.eq(a:size(), b:size(), what .. ": shape")
  if a:numel() == 0 then return end
  local d = (a:to("cpu") - b:to("cpu")):abs():max():item()
  T.truthy(d == 0, string.format("%s: differs by %g (must be bitwise equal)", what, d))
end

-- runs cls(opts) for 10 steps with the fused path on or off; returns params, optimizer
local function run(cls, opts, dtype, fused, device)
  local saved = optim.fused
  optim.fused = fused
  local ps = params(dtype, device, 7)
  local opt
  local ok, err = pcall(function()
    opt = cls(ps, opts)
    for step = 1, 10 do
      grads(ps, step)
      if step == 4 then ps[2].grad = nil end -- a tensor without a gradient this step
      opt:step()
    end
  end)
  optim.fused = saved
  assert(ok, err)
  return ps, opt
end

local CASES = {
  { "SGD plain", optim.SGD, { lr = 0.1 } },
  { "SGD momentum", optim.SGD, { lr = 0.05, momentum = 0.9 } },
  { "SGD dampening + wd", optim.SGD, { lr = 0.05, momentum = 0.8, dampening = 0.3, weight_decay = 1e-3, rule = "pytorch" } },
  { "SGD nesterov + wd", optim.SGD, { lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 5e-4 } },
  { "SGD wd, schedule", optim.SGD, { lr = function(s) return 0.1 / (1 + s) end, weight_decay = 1e-2 } },
  { "Adam", optim.Adam, { lr = 1e-2 } },
  { "Adam wd amsgrad", optim.Adam, { lr = 1e-2, weight_decay = 1e-2, amsgrad = true, betas = { 0.8, 0.99 } } },
  { "AdamW", optim.AdamW, { lr = 1e-2, weight_decay = 0.1 } },
  { "AdamW amsgrad", optim.AdamW, { lr = 3e-3, weight_decay = 0.05, amsgrad = true, eps = 1e-6 } },
}

for _, dtype in ipairs({ "float32", "float64" }) do
  for _, c in ipairs(CASES) do
    T.test(string.format("fused %s equals the per-tensor step bitwise (%s, 10 steps)", c[1], dtype), function()
      local a, oa = run(c[2], c[3], dtype, false)
      local b, ob = run(c[2], c[3], dtype, true)
      for i = 1, #SHAPES do same_bits(a[i], b[i], "parameter " .. i) end
      -- the same state, under the same names (state_dict stays compatible)
      for id, st in pairs(oa.state) do
        for k, v in pairs(st) do
          if rn.is_tensor(v) then same_bits(v, ob.state[id][k], "state " .. id .. "." .. k)
          else T.eq(ob.state[id][k], v, "state " .. id .. "." .. k) end
        end
        for k in pairs(ob.state[id]) do T.truthy(st[k] ~= nil, "extra state " .. k) end
      end
      -- the step moved the parameters (a no-op would pass the equality)
      local p0 = params(dtype, nil, 7)
      T.truthy((p0[4] - b[4]):abs():max():item() > 0, "the parameters moved")
    end)
  end
end

-- Keras' rules, as issue 23 writes them with per-tensor ops
local function keras_ref(kind, o, dtype)
  local ps = params(dtype, nil, 7)
  local st = {}
  for step = 1, 10 do
    grads(ps, step)
    rn.no_grad(function()
      for i, p in ipairs(ps) do
        local g = p.grad
        st[i] = st[i] or { v = rn.zeros(p:size(), { dtype = dtype }), m = rn.zeros(p:size(), { dtype = dtype }),
          s = rn.zeros(p:size(), { dtype = dtype }), vm = rn.zeros(p:size(), { dtype = dtype }), t = 0 }
        local S = st[i]
        if (o.weight_decay or 0) ~= 0 then p:mul_(1 - o.lr * o.weight_decay) end
        if kind == "sgd" then
          if (o.momentum or 0) == 0 then p:add_(g, -o.lr)
          else
            S.v:mul_(o.momentum):add_(g, -o.lr)
            if o.nesterov then p:add_(S.v, o.momentum):add_(g, -o.lr) else p:add_(S.v) end
          end
        else
          S.t = S.t + 1
          local b1, b2 = o.beta1, o.beta2
          S.m:mul_(b1):add_(g, 1 - b1)
          S.s:mul_(b2):add_(g * g, 1 - b2)
          local v = S.s
          if o.amsgrad then S.vm:copy_(S.vm:maximum(v)); v = S.vm end
          local bc1, bc2 = 1 - b1 ^ S.t, 1 - b2 ^ S.t
          p:add_(S.m / (v:sqrt() + o.eps), -o.lr * math.sqrt(bc2) / bc1)
        end
      end
    end)
  end
  return ps
end

local function fused_run(kind, o, dtype)
  local ps = params(dtype, nil, 7)
  local st = {}
  for step = 1, 10 do
    grads(ps, step)
    local items = {}
    for i, p in ipairs(ps) do
      st[i] = st[i] or { s1 = rn.zeros(p:size(), { dtype = dtype }), s2 = rn.zeros(p:size(), { dtype = dtype }),
        s3 = rn.zeros(p:size(), { dtype = dtype }) }
      items[i] = { p = p, g = p.grad, s1 = st[i].s1, s2 = st[i].s2, s3 = o.amsgrad and st[i].s3 or nil, step = step }
    end
    local opts = { kind = kind, rule = "keras" }
    for k, v in pairs(o) do opts[k] = v end
    rn.optim_multi_step(opts, items)
  end
  return ps
end

local KERAS = {
  { "sgd", { lr = 0.1 } },
  { "sgd", { lr = 0.05, momentum = 0.9, weight_decay = 4e-3 } },
  { "sgd", { lr = 0.05, momentum = 0.9, nesterov = true } },
  { "adam", { lr = 1e-2, beta1 = 0.9, beta2 = 0.999, eps = 1e-7 } },
  { "adam", { lr = 1e-2, beta1 = 0.8, beta2 = 0.99, eps = 1e-7, weight_decay = 4e-3, amsgrad = true } },
}
for _, dtype in ipairs({ "float32", "float64" }) do
  for i, c in ipairs(KERAS) do
    T.test(string.format("fused Keras rule %s #%d equals its per-tensor form bitwise (%s)", c[1], i, dtype), function()
      local a, b = keras_ref(c[1], c[2], dtype), fused_run(c[1], c[2], dtype)
      for j = 1, #SHAPES do same_bits(a[j], b[j], "parameter " .. j) end
    end)
  end
end

T.test("fused l2 factor: the gradient of c*sum(w^2) joins the step (float64)", function()
  local c = 0.01
  -- reference: autograd of the penalty added to the gradient, then plain SGD
  local ps = params("float64", nil, 3)
  rn.manual_seed(5)
  local g0 = rn.randn(ps[1]:size(), { dtype = "float64" })
  local pen = (ps[1] * ps[1]):sum() * c
  pen:backward()
  local ref = ps[1]:detach() - (ps[1].grad + g0) * 0.1
  local q = ps[1]:detach():clone()
  rn.optim_multi_step({ kind = "sgd", lr = 0.1 }, { { p = q, g = g0, l2 = c } })
  T.near(q, ref, 1e-14)
  T.truthy((q - ps[1]:detach()):abs():max():item() > 0)
end)

T.test("optim_multi_step errors name the tensor and the problem", function()
  local p, g = rn.zeros({ 3 }), rn.zeros({ 4 })
  T.raises(function() rn.optim_multi_step({ kind = "sgd" }, { { p = p, g = g } }) end,
    "tensor 1's gradient has 4 elements, its parameter 3", true)
  T.raises(function() rn.optim_multi_step({ kind = "sgd", momentum = 0.9 }, { { p = p, g = rn.zeros({ 3 }) } }) end,
    "tensor 1 has no state 1", true)
  T.raises(function() rn.optim_multi_step({ kind = "adam" }, { { p = p, g = p, s1 = p, s2 = p, step = 0 } }) end,
    "Adam step is 0", true)
  T.raises(function() rn.optim_multi_step({ kind = "sgd" }, { { p = p, g = rn.zeros({ 3 }, { dtype = "float64" }) } }) end,
    "gradient is float64", true)
  T.raises(function() rn.optim_multi_step({ kind = "lion" }, {}) end, 'kind must be "sgd" or "adam"', true)
  T.raises(function() rn.optim_multi_step({ kind = "sgd", rule = "tf" }, {}) end, 'rule must be', true)
  T.raises(function() rn.optim_multi_step({ kind = "sgd", foo = 1 }, {}) end, "foo", true)
  T.raises(function() rn.optim_multi_step({ kind = "sgd" }, { { p = rn.zeros({ 2 }, { dtype = "bfloat16" }), g = rn.zeros({ 2 }, { dtype = "bfloat16" }) } }) end,
    "dtype bfloat16", true)
  -- a failed call writes nothing
  local q = rn.ones({ 3 })
  pcall(rn.optim_multi_step, { kind = "sgd", lr = 1 }, { { p = q, g = rn.ones({ 3 }) }, { p = p, g = g } })
  T.eq(q:totable(), { 1, 1, 1 })
end)

T.test("the fused path is on by default on the CPU too, and RN_FUSED_OPTIM / optim.fused switch it", function()
  T.eq(optim.fused, nil)
  local ps = params("float32", nil, 1)
  local opt = optim.SGD(ps, { lr = 0.1 })
  grads(ps, 1)
  local env = os.getenv("RN_FUSED_OPTIM")
  T.eq(optim._fused_step(opt, opt.param_groups[1], 0.1), env ~= "0")
  optim.fused = false
  local ok = pcall(function() T.eq(optim._fused_step(opt, opt.param_groups[1], 0.1), false) end)
  optim.fused = nil
  T.truthy(ok)
end)

T.test("cuda: fused step equals the per-tensor step within rounding (SGD nesterov, AdamW)", function()
  if not rn.cuda.is_available() then T.skip("no CUDA device") end
  for _, c in ipairs({ CASES[4], CASES[9] }) do
    local a = run(c[2], c[3], "float32", false, "cuda")
    local b = run(c[2], c[3], "float32", true, "cuda")
    local r = run(c[2], c[3], "float32", true, "cpu")
    for i = 1, #SHAPES do
      T.near(b[i]:to("cpu"), a[i]:to("cpu"), 1e-5, 1e-5, c[1] .. " parameter " .. i)
      T.near(b[i]:to("cpu"), r[i], 1e-5, 1e-5, c[1] .. " cpu twin, parameter " .. i)
    end
  end
end)
