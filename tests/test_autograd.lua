-- test_autograd.lua - the eager tape: backward on scalars and with a given
-- gradient, accumulation, zero_grad, no_grad, detach, retain_graph, graphs
-- that reuse a tensor, deep chains, and misuse errors.
local T = require "t"
local rn = require "rn"

T.test("backward of a scalar fills .grad of leaves", function()
  local x = rn.tensor({1, 2, 3}, {requires_grad = true})
  local y = (x * x):sum()
  y:backward()
  T.eq(x.grad:totable(), {2, 4, 6})
  T.eq(x.is_leaf, true); T.eq(y.is_leaf, false); T.eq(y.grad_fn, "sum")
end)

T.test("gradients accumulate until zero_grad", function()
  local x = rn.tensor({1, 2}, {requires_grad = true})
  ;(x * 3):sum():backward()
  ;(x * 3):sum():backward()
  T.eq(x.grad:totable(), {6, 6})
  x:zero_grad()
  T.eq(x.grad, nil)
  ;(x * 2):sum():backward()
  T.eq(x.grad:totable(), {2, 2})
  x.grad = nil
  T.eq(x.grad, nil)
end)

T.test("backward with an explicit gradient", function()
  local x = rn.tensor({{1, 2}, {3, 4}}, {requires_grad = true})
  local y = x * 2
  y:backward(rn.tensor({{1, 0}, {0, 1}}))
  T.eq(x.grad:totable(), {{2, 0}, {0, 2}})
end)

T.test("a tensor used twice gets both contributions", function()
  local x = rn.tensor({3}, {requires_grad = true, dtype = "float64"})
  local a = x * x       -- 2x
  local b = a * x + x   -- d/dx (x^3 + x) = 3x^2 + 1
  b:sum():backward()
  T.near(x.grad, rn.tensor({28}, {dtype = "float64"}), 1e-12)
end)

T.test("no_grad records nothing and restores the mode after errors", function()
  local x = rn.ones(2):requires_grad_()
  local y = rn.no_grad(function() return x * 2 end)
  T.eq(y.requires_grad, false)
  T.raises(function() rn.no_grad(function() error("boom") end) end, "boom")
  T.eq(rn.is_grad_enabled(), true)
  T.eq(rn.no_grad(function(a, b) return a + b end, 1, 2), 3)
end)

T.test("detach stops gradients", function()
  local x = rn.tensor({2}, {requires_grad = true})
  local y = (x * x):detach() * x
  y:sum():backward()
  T.eq(x.grad:totable(), {4})
end)

T.test("saved tensors are freed: a second backward needs retain_graph", function()
  local x = rn.tensor({1, 2}, {requires_grad = true})
  local y = (x:exp()):sum()
  y:backward()
  T.raises(function() y:backward() end, "a second time.*retain_graph")
  local z = (x:exp()):sum()
  x:zero_grad()
  z:backward({retain_graph = true})
  z:backward()
  T.near(x.grad, x:exp() * 2, 1e-6)
end)

T.test("a deep chain (10000 nodes) backpropagates and frees without recursion", function()
  local x = rn.tensor({1}, {requires_grad = true, dtype = "float64"})
  local y = x
  for _ = 1, 10000 do y = y * 1.0001 end
  y:sum():backward()
  T.near(x.grad:item(), 1.0001 ^ 10000, 1e-9, 1e-9)
  y = nil
  collectgarbage()
end)

T.test("broadcast inputs get gradients of their own shape", function()
  local a = rn.ones(3, 1):requires_grad_()
  local b = rn.ones(4):requires_grad_()
  ;((a + b) * 2):sum():backward()
  T.eq(a.grad:totable(), {{8}, {8}, {8}}); T.eq(b.grad:totable(), {6, 6, 6, 6})
end)

T.test("gradients flow through casts and views", function()
  local x = rn.tensor({{1, 2}, {3, 4}}, {requires_grad = true})
  local y = x:double():t():reshape(4):narrow(1, 2, 2):sum()
  y:backward()
  T.eq(x.grad.dtype, "float32")
  T.eq(x.grad:totable(), {{0, 1}, {1, 0}})
end)

T.test("errors: non-scalar, no grad, shape of given gradient, in-place on leaf", function()
  T.raises(function() rn.ones(2):requires_grad_():mul(2):backward() end, "not a scalar")
  T.raises(function() rn.ones(2):sum():backward() end, "does not require grad")
  T.raises(function() (rn.ones(2):requires_grad_() * 2):backward(rn.ones(3)) end,
    "gradient shape %(3%) differs from the tensor's %(2%)")
  T.raises(function() rn.ones(2):requires_grad_():fill_(1) end, "in%-place change of a leaf")
  T.raises(function() rn.ones(2, {dtype = "int64"}):requires_grad_() end, "only float tensors")
  T.raises(function() rn.ones(2):backward("x") end, "argument 2 must be a gradient tensor")
  -- in-place on a leaf is allowed under no_grad (optimizers do this)
  local w = rn.ones(2):requires_grad_()
  rn.no_grad(function() w:add_(1) end)
  T.eq(w:totable(), {2, 2})
end)

T.test("gradcheck: view ops (reshape, permute, transpose, narrow, select, expand, squeeze, clone)", function()
  local gradcheck = require "gradcheck"
  local x = rn.randn({2, 3, 4}, {dtype = "float64"})
  gradcheck(function(t) return t:reshape(4, 6) * t:reshape(4, 6) end, {x})
  gradcheck(function(t) return t:permute(3, 1, 2):contiguous():exp() end, {x})
  gradcheck(function(t) return t:transpose(1, 3):reshape(-1):tanh() end, {x})
  gradcheck(function(t) return t:narrow(2, 2, 2):narrow(3, 1, 3) ^ 2 end, {x})
  gradcheck(function(t) return t:select(3, 2):select(1, 2) * 3 end, {x})
  gradcheck(function(t) return t:select(2, -1):sigmoid() end, {x})
  gradcheck(function(t) return t:narrow(1, 1, 1):expand({5, 3, 4}):tanh() end, {x})
  gradcheck(function(t) return t:unsqueeze(2):squeeze(2):flatten(2):clone() * t:flatten(2) end, {x})
  -- through float32 the finite difference is rounding noise: check exactly
  local y = rn.randn({3}, {dtype = "float64", requires_grad = true})
  ;(y:float():double() * rn.tensor({1, 2, 3}, {dtype = "float64"})):sum():backward()
  T.eq(y.grad:totable(), {1, 2, 3})
end)
