-- test_matmul_batched.lua - rn.matmul over any leading (batch) dims with
-- broadcasting: every pattern against a per-matrix loop of 2-D products, the
-- gradients of broadcast operands (summed over the batch), float64
-- finite-difference gradients, transposed and partly broadcast views, and
-- the errors. PyTorch values: test_ops_torch.lua.
local T = require "t"
local rn = require "rn"
local gradcheck = require "gradcheck"

local F64 = {dtype = "float64"}

-- the batch index (1-based, in the broadcast batch shape) -> the operand's matrix
local function pick(t, idx, nbd)
  local m = t
  local tb = t:dim() - 2
  for d = 1, nbd do
    local td = d - (nbd - tb)
    if td >= 1 then
      local k = m:size(1) == 1 and 1 or idx[d]
      m = m:select(1, k)
    end
  end
  return m
end

-- the broadcast batch shape of a and b, and a visitor over its indices
local function batch(a, b)
  local nbd = math.max(a:dim(), b:dim()) - 2
  local bs, total = {}, 1
  for d = 1, nbd do
    local da, db = d - (nbd - (a:dim() - 2)), d - (nbd - (b:dim() - 2))
    bs[d] = math.max(da >= 1 and a:size(da) or 1, db >= 1 and b:size(db) or 1)
    total = total * bs[d]
  end
  return nbd, bs, function(fn)
    for k = 0, total - 1 do
      local idx, r = {}, k
      for d = nbd, 1, -1 do idx[d] = r % bs[d] + 1; r = r // bs[d] end
      fn(idx)
    end
  end
end

-- reference: loop over the broadcast batch of 2-D products; with g, also
-- the gradients (accumulated into each operand's own matrix)
local function ref_matmul(a, b, g)
  local nbd, bs, each = batch(a, b)
  local shape = {}
  for i = 1, nbd do shape[i] = bs[i] end
  shape[nbd + 1], shape[nbd + 2] = a:size(a:dim() - 1), b:size(b:dim())
  local out = rn.zeros(shape, {dtype = a.dtype})
  local ga, gb = rn.zeros(a:size(), {dtype = a.dtype}), rn.zeros(b:size(), {dtype = b.dtype})
  each(function(idx)
    local o = out
    for d = 1, nbd do o = o:select(1, idx[d]) end
    local am, bm = pick(a, idx, nbd), pick(b, idx, nbd)
    o:copy_(rn.matmul(am, bm))
    if g then
      local gm = g
      for d = 1, nbd do gm = gm:select(1, idx[d]) end
      pick(ga, idx, nbd):add_(rn.matmul(gm, bm:t()))
      pick(gb, idx, nbd):add_(rn.matmul(am:t(), gm))
    end
  end)
  return out, ga, gb
end

local CASES = {
  {{2, 3, 4, 5}, {2, 3, 5, 6}},   -- 4-D @ 4-D
  {{2, 3, 4, 5}, {3, 5, 6}},      -- broadcast over the first dim
  {{2, 1, 4, 5}, {3, 5, 6}},      -- both partly broadcast
  {{2, 3, 4, 5}, {5, 6}},         -- shared right operand
  {{4, 5}, {2, 3, 5, 6}},         -- shared left operand
  {{1, 3, 4, 5}, {2, 1, 5, 6}},   -- outer product of batches
  {{2, 2, 2, 3, 4}, {4, 2}},      -- 5-D
}

T.test("matmul: any leading dims with broadcasting equal a loop of 2-D products", function()
  rn.manual_seed(190)
  for _, c in ipairs(CASES) do
    local a, b = rn.randn(c[1], F64), rn.randn(c[2], F64)
    local y = rn.matmul(a, b)
    local want = ref_matmul(a, b)
    T.eq(y:size(), want:size(), "shape " .. table.concat(c[1], "x") .. " @ " .. table.concat(c[2], "x"))
    T.near(y, want, 1e-13, 1e-13, table.concat(c[1], "x") .. " @ " .. table.concat(c[2], "x"))
    T.near(rn.matmul(a:float(), b:float()):double(), want, 1e-5, 1e-5, "float32")
  end
  -- 1-D operands with batches
  local a, b = rn.randn({2, 3, 4, 5}, F64), rn.randn({5}, F64)
  T.near(rn.matmul(a, b), rn.matmul(a, b:reshape({5, 1})):reshape({2, 3, 4}), 1e-14, 0, "(...,M,K) @ (K)")
  local v = rn.randn({4}, F64)
  T.near(rn.matmul(v, a), rn.matmul(v:reshape({1, 4}), a):reshape({2, 3, 5}), 1e-14, 0, "(K) @ (...,K,N)")
end)

T.test("matmul: transposed, permuted and broadcast views as contiguous ones", function()
  rn.manual_seed(191)
  local q = rn.randn({2, 5, 3, 4}, F64)               -- (B,T,H,D)
  local k = rn.randn({2, 6, 3, 4}, F64)
  local qh, kh = q:permute(1, 3, 2, 4), k:permute(1, 3, 4, 2) -- (B,H,T,D) @ (B,H,D,S)
  T.near(rn.matmul(qh, kh), rn.matmul(qh:contiguous(), kh:contiguous()), 1e-14, 0, "attention-style views")
  local e = rn.randn({1, 3, 4, 5}, F64):expand({2, 3, 4, 5})
  local b = rn.randn({2, 3, 5, 2}, F64)
  T.near(rn.matmul(e, b), rn.matmul(e:contiguous(), b), 1e-14, 0, "expanded operand")
end)

T.test("matmul: gradients of broadcast operands are summed over the batch", function()
  rn.manual_seed(192)
  for _, c in ipairs(CASES) do
    local a, b = rn.randn(c[1], F64):requires_grad_(), rn.randn(c[2], F64):requires_grad_()
    local y = rn.matmul(a, b)
    local g = rn.randn(y:size(), F64)
    y:backward(g)
    local _, ga, gb = rn.no_grad(function() return ref_matmul(a:detach(), b:detach(), g) end)
    T.eq(a.grad:size(), c[1], "grad a shape")
    T.eq(b.grad:size(), c[2], "grad b shape")
    T.near(a.grad, ga, 1e-13, 1e-13, table.concat(c[1], "x") .. ": gradient of a")
    T.near(b.grad, gb, 1e-13, 1e-13, table.concat(c[2], "x") .. ": gradient of b")
  end
end)

-- matmul is linear in each input: a large step keeps rounding small
T.test("matmul: an expanded operand (stride-0 batch) gets each batch's gradient, summed by expand", function()
  rn.manual_seed(21)
  local a, b = rn.randn({1, 5, 7}), rn.randn({3, 7, 4})
  for _, side in ipairs({"a", "b"}) do
    local function grad_of(contig)
      local x = (side == "a" and a or b:narrow(1, 1, 1)):detach():requires_grad_()
      local e = x:expand(side == "a" and {3, 5, 7} or {3, 7, 4})
      if contig then e = e:contiguous() end
      local l = (side == "a" and rn.matmul(e, b) or rn.matmul(a:expand({3, 5, 7}), e))
      l = (l * rn.arange(0, l:numel()):reshape(l:size()):float()):sum()
      l:backward()
      return x.grad
    end
    local g, want = grad_of(false), grad_of(true)
    T.eq(g:size(), want:size(), side .. ": gradient shape")
    T.near(g, want, 1e-4, 1e-5, side .. ": the expanded view's gradient equals its contiguous copy's")
  end
end)

T.test("matmul batched: float64 gradients equal finite differences", function()
  rn.manual_seed(193)
  for _, c in ipairs({CASES[2], CASES[3], CASES[6], {{3, 4}, {2, 4, 3}}}) do
    local a, b = rn.randn(c[1], F64), rn.randn(c[2], F64)
    local ok, e = pcall(gradcheck, function(x, y) return rn.matmul(x, y) end, {a, b},
      {eps = 1e-2, atol = 1e-10, rtol = 1e-7})
    T.truthy(ok, table.concat(c[1], "x") .. " @ " .. table.concat(c[2], "x") .. ": " .. tostring(e))
  end
end)

T.test("matmul batched: errors name the shapes and the rule", function()
  T.raises(function() rn.matmul(rn.ones({2, 3, 4, 5}), rn.ones({3, 3, 5, 6})) end,
    "matmul: batch dims of (2,3,4,5) and (3,3,5,6) do not broadcast (batch dim 1: 2 vs 3)", true)
  T.raises(function() rn.matmul(rn.ones({2, 3, 4, 5}), rn.ones({2, 3, 4, 6})) end,
    "matmul: shapes (2,3,4,5) and (2,3,4,6) cannot be multiplied (5 != 4)", true)
  T.raises(function() rn.matmul(rn.ones({1, 1, 1, 1, 1, 1, 1, 2, 2}), rn.ones({2, 2})) end, "")
end)
