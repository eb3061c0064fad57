-- test_activations.lua - the unary activation ops (core/oplist.h): float64
-- finite-difference gradients at float64 tolerances, values at known points,
-- float32 against float64, the parameters (defaults, errors), integer dtypes
-- of clip and relu6, and the Lua forms (rn.f(x), x:f(), gelu's approximate,
-- clip's open sides). PyTorch values: test_ops_torch.lua.
local T = require "t"
local rn = require "rn"
local gradcheck = require "gradcheck"

-- {name, params}: every op with a derivative, parameters given explicitly
local OPS = {
  {"erf", {}}, {"gelu", {}}, {"gelu_tanh", {}}, {"silu", {}}, {"hard_sigmoid", {}},
  {"hard_swish", {}}, {"relu6", {}}, {"softplus", {}}, {"leaky_relu", {0.15}}, {"elu", {0.8}},
  {"clip", {-1.25, 2.5}},
}
local KINKS = {-3, 0, 3, 6, -1.25, 2.5}

-- n values in [-7, 7], none within 1e-3 of a kink (finite differences there
-- see both sides)
local function points(n)
  local x = rn.rand({n}, {dtype = "float64"}) * 14 - 7
  local t = x:totable()
  for i, v in ipairs(t) do
    for _, k in ipairs(KINKS) do
      if math.abs(v - k) < 1e-3 then t[i] = v + 2e-3 end
    end
  end
  return rn.tensor(t, {dtype = "float64"})
end

T.test("activations: float64 gradients equal finite differences", function()
  rn.manual_seed(170)
  for _, o in ipairs(OPS) do
    local x = points(40)
    local ok, e = pcall(gradcheck, function(a) return rn[o[1]](a, table.unpack(o[2])) end, {x},
      {eps = 1e-6, atol = 1e-8, rtol = 1e-6})
    T.truthy(ok, o[1] .. ": " .. tostring(e))
  end
end)

T.test("activations: values at known points", function()
  local x = rn.tensor({-4, -1, 0, 0.5, 2, 7}, {dtype = "float64"})
  local function phi(v) return 0.5 * (1 + rn.erf(rn.tensor({v / math.sqrt(2)}, {dtype = "float64"})):item()) end
  T.near(rn.erf(rn.tensor({0.5}, {dtype = "float64"})), {0.52049987781304654}, 1e-15, 1e-15, "erf(0.5)")
  T.near(rn.gelu(x), {-4 * phi(-4), -phi(-1), 0, 0.5 * phi(0.5), 2 * phi(2), 7 * phi(7)}, 1e-15, 1e-14, "gelu")
  T.near(rn.relu6(x), {0, 0, 0, 0.5, 2, 6}, 0, 0, "relu6")
  T.near(rn.hard_sigmoid(x), {0, 1 / 3, 0.5, 0.5 + 0.5 / 6, 5 / 6, 1}, 1e-15, 1e-15, "hard_sigmoid")
  T.near(rn.hard_swish(x), {0, -1 / 3, 0, 0.5 * 3.5 / 6, 2 * 5 / 6, 7}, 1e-15, 1e-15, "hard_swish")
  T.near(rn.leaky_relu(x), {-0.8, -0.2, 0, 0.5, 2, 7}, 1e-15, 1e-15, "leaky_relu default slope 0.2 (Keras)")
  T.near(rn.elu(x), {math.exp(-4) - 1, math.exp(-1) - 1, 0, 0.5, 2, 7}, 1e-15, 1e-15, "elu default alpha 1")
  T.near(rn.elu(x, 2), {2 * (math.exp(-4) - 1), 2 * (math.exp(-1) - 1), 0, 0.5, 2, 7}, 1e-15, 1e-15, "elu alpha 2")
  T.near(rn.softplus(x), {math.log(1 + math.exp(-4)), math.log(1 + math.exp(-1)), math.log(2),
    math.log(1 + math.exp(0.5)), math.log(1 + math.exp(2)), math.log(1 + math.exp(7))}, 1e-15, 1e-14, "softplus")
  T.near(rn.silu(x), {-4 / (1 + math.exp(4)), -1 / (1 + math.exp(1)), 0, 0.5 / (1 + math.exp(-0.5)),
    2 / (1 + math.exp(-2)), 7 / (1 + math.exp(-7))}, 1e-15, 1e-14, "silu")
  T.near(rn.swish(x), rn.silu(x), 0, 0, "swish is silu")
  T.near(x:clip(-1, 0.5), {-1, -1, 0, 0.5, 0.5, 0.5}, 0, 0, "clip")
  T.near(rn.clip(x, nil, 1), {-4, -1, 0, 0.5, 1, 1}, 0, 0, "clip with an open low side")
  T.near(rn.clip(x, 0), {0, 0, 0, 0.5, 2, 7}, 0, 0, "clip with an open high side")
  T.near(rn.softplus(rn.tensor({-800, 800}, {dtype = "float64"})), {0, 800}, 1e-300, 0, "softplus does not overflow")
end)

T.test("activations: gelu's approximate forms; float32 follows float64", function()
  rn.manual_seed(171)
  local x = rn.randn({257}, {dtype = "float64"}) * 3
  T.near(rn.gelu(x, true), rn.gelu_tanh(x), 0, 0, "gelu(x, true)")
  T.near(rn.gelu(x, "tanh"), rn.gelu_tanh(x), 0, 0, "gelu(x, 'tanh')")
  T.near(rn.gelu(x, false), rn.gelu(x), 0, 0, "gelu(x, false)")
  T.near(rn.gelu(x, "none"), rn.gelu(x), 0, 0, "gelu(x, 'none')")
  T.truthy((rn.gelu(x) - rn.gelu_tanh(x)):abs():max():item() > 1e-5, "tanh form differs from exact")
  T.truthy((rn.gelu(x) - rn.gelu_tanh(x)):abs():max():item() < 1e-3, "and approximates it")
  for _, o in ipairs(OPS) do
    local y64 = rn[o[1]](x, table.unpack(o[2]))
    local y32 = rn[o[1]](x:float(), table.unpack(o[2]))
    T.eq(y32.dtype, "float32", o[1])
    T.near(y32:double(), y64, 1e-6, 1e-5, o[1] .. " float32 vs float64")
    local xs = x:float():requires_grad_()
    rn[o[1]](xs, table.unpack(o[2])):sum():backward()
    local xd = x:clone():requires_grad_()
    rn[o[1]](xd, table.unpack(o[2])):sum():backward()
    T.near(xs.grad:double(), xd.grad, 1e-6, 1e-5, o[1] .. " float32 gradient vs float64")
  end
end)

T.test("activations: strided and broadcast inputs as contiguous ones", function()
  rn.manual_seed(172)
  local x = rn.randn({5, 6}) * 4
  for _, o in ipairs(OPS) do
    local t = x:t()
    T.near(rn[o[1]](t, table.unpack(o[2])), rn[o[1]](t:contiguous(), table.unpack(o[2])), 0, 0, o[1] .. " transposed")
    local b = x:narrow(1, 2, 1):expand({5, 6})
    T.near(rn[o[1]](b, table.unpack(o[2])), rn[o[1]](b:contiguous(), table.unpack(o[2])), 0, 0, o[1] .. " broadcast")
  end
end)

T.test("activations: integer dtypes for clip, relu6; other ops refuse them", function()
  local i = rn.tensor({-9, -1, 0, 3, 8}, {dtype = "int32"})
  T.eq(i:clip(-2, 4):totable(), {-2, -1, 0, 3, 4})
  T.eq(i:clip(-2, 4).dtype, "int32")
  T.eq(rn.relu6(i):totable(), {0, 0, 0, 3, 6})
  local u = rn.tensor({0, 100, 255}, {dtype = "uint8"})
  T.eq(u:clip(10, 200):totable(), {10, 100, 200})
  T.raises(function() rn.gelu(i) end, "gelu: dtype int32 is not a float type")
  T.raises(function() rn.leaky_relu(i) end, "leaky_relu: dtype int32 is not a float type")
end)

T.test("activations: parameter errors name the op and the rule", function()
  local x = rn.randn({4})
  T.raises(function() rn.clip(x, 2, 1) end, "clip: lo (2) must not exceed hi (1)", true)
  T.raises(function() rn.clip(x) end, "clip: give lo, hi or both", true)
  T.raises(function() rn.clip(x, 0 / 0, 1) end, "clip: parameter 1 must be finite, got", true)
  T.raises(function() rn.leaky_relu(x, math.huge) end, "leaky_relu: parameter 1 must be finite", true)
  T.raises(function() rn.elu(x, "big") end, "elu: parameter 1 must be a number, got string", true)
  T.raises(function() rn.elu(x, 1, 2) end, "elu: takes 1 parameter after the tensor", true)
  T.raises(function() rn.silu(x, 1) end, "silu: takes 0 parameters after the tensor", true)
  T.raises(function() rn.gelu(x, 3) end, 'gelu: approximate must be a boolean, "tanh" or "none"', true)
  T.raises(function() rn.gelu(x, "fast") end, 'gelu: approximate must be a boolean', true)
  T.raises(function() rn.relu6("x") end, "relu6")
end)

T.test("activations: the gradient of a parameterised op uses its parameter", function()
  local x = rn.tensor({-2, -0.5, 1}, {dtype = "float64"}):requires_grad_()
  rn.leaky_relu(x, 0.3):sum():backward()
  T.near(x.grad, {0.3, 0.3, 1}, 1e-15, 0, "leaky_relu slope")
  x.grad = nil
  rn.elu(x, 2):sum():backward()
  T.near(x.grad, {2 * math.exp(-2), 2 * math.exp(-0.5), 1}, 1e-15, 1e-15, "elu alpha")
  x.grad = nil
  rn.clip(x, -1, 0.5):sum():backward()
  T.near(x.grad, {0, 1, 0}, 0, 0, "clip passes the gradient inside [lo, hi] only")
end)
