-- test_norm_group.lua - rn.layer_norm and rn.group_norm (core/ops/
-- norm_group.c): float64 finite-difference gradients of x, gamma and beta at
-- float64 tolerances, the statistics they produce, the relation between the
-- two (group_norm with 1 group is layer_norm over all but the batch dim),
-- optional gamma/beta, strided inputs, and the errors. PyTorch values:
-- test_ops_torch.lua.
local T = require "t"
local rn = require "rn"
local gradcheck = require "gradcheck"

local F64 = {dtype = "float64"}

T.test("layer_norm: float64 gradients equal finite differences", function()
  rn.manual_seed(180)
  local cases = {
    {{3, 5}, {5}, 1}, {{2, 3, 4}, {3, 4}, 2}, {{4, 6}, nil, 1},
  }
  for _, c in ipairs(cases) do
    local x = rn.randn(c[1], F64) * 2 + 0.5
    local g = c[2] and rn.randn(c[2], F64) or nil
    local b = c[2] and rn.randn(c[2], F64) or nil
    local ins = {x}
    if g then ins[2], ins[3] = g, b end
    local ok, e = pcall(gradcheck, function(xx, gg, bb) return rn.layer_norm(xx, gg, bb, {dims = c[3]}) end,
      ins, {eps = 1e-6, atol = 1e-8, rtol = 1e-6})
    T.truthy(ok, "shape " .. table.concat(c[1], "x") .. ": " .. tostring(e))
  end
end)

T.test("group_norm: float64 gradients equal finite differences", function()
  rn.manual_seed(181)
  for _, c in ipairs({{{2, 3, 2, 6}, 3}, {{2, 5, 4}, 2}, {{3, 4}, 4}, {{2, 2, 2, 4}, 1}}) do
    local C = c[1][#c[1]]
    local x, g, b = rn.randn(c[1], F64), rn.randn({C}, F64), rn.randn({C}, F64)
    local ok, e = pcall(gradcheck, function(xx, gg, bb) return rn.group_norm(xx, c[2], gg, bb) end,
      {x, g, b}, {eps = 1e-6, atol = 1e-8, rtol = 1e-6})
    T.truthy(ok, "shape " .. table.concat(c[1], "x") .. " groups " .. c[2] .. ": " .. tostring(e))
  end
end)

T.test("layer_norm: zero mean, unit variance per row, then the affine", function()
  rn.manual_seed(182)
  local x = rn.randn({4, 3, 10}, F64) * 5 + 3
  local y = rn.layer_norm(x, nil, nil, {eps = 0})
  T.near(y:mean(-1), rn.zeros({4, 3}, F64), 1e-14, 0, "mean 0")
  T.near(y:pow(2):mean(-1), rn.ones({4, 3}, F64), 1e-12, 1e-12, "biased variance 1")
  local g, b = rn.randn({10}, F64), rn.randn({10}, F64)
  T.near(rn.layer_norm(x, g, b, {eps = 0}), y * g + b, 1e-13, 1e-13, "gamma and beta")
  -- eps enters as 1/sqrt(var + eps)
  local x2 = rn.tensor({{1, 3}}, F64)
  T.near(rn.layer_norm(x2, nil, nil, {eps = 3}), {{-0.5, 0.5}}, 1e-15, 0, "eps = 3")
  -- gamma of the last 2 dims sets dims = 2 by default
  local g2 = rn.randn({3, 10}, F64)
  local m = x:reshape({4, 30})
  local want = rn.layer_norm(m, nil, nil):reshape({4, 3, 10}) * g2
  T.near(rn.layer_norm(x, g2), want, 1e-13, 1e-12, "2 trailing dims")
end)

T.test("group_norm: 1 group is a layer norm over all but N; C groups normalise each channel", function()
  rn.manual_seed(183)
  local x = rn.randn({2, 3, 4, 6}, F64) * 2 - 1
  local lnx = rn.layer_norm(x:reshape({2, 72})):reshape({2, 3, 4, 6})
  T.near(rn.group_norm(x, 1), lnx, 1e-13, 1e-12, "1 group")
  local y = rn.group_norm(x, 6, nil, nil, {eps = 0})
  T.near(y:mean({2, 3}), rn.zeros({2, 6}, F64), 1e-14, 0, "per-channel mean 0")
  T.near(y:pow(2):mean({2, 3}), rn.ones({2, 6}, F64), 1e-12, 1e-12, "per-channel variance 1")
  -- 2 groups of 3 channels: channels 1..3 share statistics
  local y2 = rn.group_norm(x, 2, nil, nil, {eps = 0})
  local first = y2:narrow(4, 1, 3)
  T.near(first:mean({2, 3, 4}), rn.zeros({2}, F64), 1e-14, 0, "group 1 mean")
  T.near(first:pow(2):mean({2, 3, 4}), rn.ones({2}, F64), 1e-12, 1e-12, "group 1 variance")
end)

T.test("layer_norm, group_norm: float32 follows float64; strided x as contiguous", function()
  rn.manual_seed(184)
  local x = rn.randn({5, 4, 8}, F64)
  local g, b = rn.randn({8}, F64), rn.randn({8}, F64)
  T.near(rn.layer_norm(x:float(), g:float(), b:float()):double(), rn.layer_norm(x, g, b), 1e-5, 1e-5, "layer_norm f32")
  T.near(rn.group_norm(x:float(), 4, g:float(), b:float()):double(), rn.group_norm(x, 4, g, b), 1e-5, 1e-5, "group_norm f32")
  local t = x:permute(2, 1, 3)
  T.near(rn.layer_norm(t, g, b), rn.layer_norm(t:contiguous(), g, b), 0, 0, "permuted")
  T.near(rn.group_norm(t, 2, g, b), rn.group_norm(t:contiguous(), 2, g, b), 0, 0, "permuted group_norm")
  -- only beta given: its gradient, and x's
  local xx, bb = x:clone():requires_grad_(), b:clone():requires_grad_()
  rn.layer_norm(xx, nil, bb):sum():backward()
  T.near(bb.grad, rn.full({8}, 20, F64), 0, 0, "beta gradient = sum over rows")
  T.near(xx.grad, rn.zeros({5, 4, 8}, F64), 1e-13, 0, "sum of a normalised row has no gradient")
end)

T.test("layer_norm, group_norm: errors name the op and the rule", function()
  local x = rn.randn({2, 3, 4})
  T.raises(function() rn.layer_norm(x, rn.ones({3})) end, "layer_norm: gamma has shape (3), expected (4)", true)
  T.raises(function() rn.layer_norm(x, nil, rn.ones({4}, {dtype = "float64"})) end, "layer_norm: beta is float64 but x is float32", true)
  T.raises(function() rn.layer_norm(x, nil, nil, {dims = 4}) end, "layer_norm: dims = 4, valid: 1..3", true)
  T.raises(function() rn.layer_norm(x, nil, nil, {eps = -1}) end, "layer_norm: eps must be >= 0", true)
  T.raises(function() rn.layer_norm(x, nil, nil, {epsilon = 1}) end, "epsilon")
  T.raises(function() rn.layer_norm(rn.ones({3}, {dtype = "int32"})) end, "layer_norm: x is int32; a float type is needed", true)
  T.raises(function() rn.group_norm(x, 3) end, "group_norm: 3 groups do not divide 4 channels", true)
  T.raises(function() rn.group_norm(x, 0) end, "group_norm: groups = 0, must be >= 1", true)
  T.raises(function() rn.group_norm(rn.ones({4}), 2) end, "group_norm: x must be (N, ..., C) with at least 2 dims", true)
  T.raises(function() rn.group_norm(x, 2, rn.ones({2})) end, "group_norm: gamma has shape (2), expected (4)", true)
end)
