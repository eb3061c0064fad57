-- test_attention.lua - rn.scaled_dot_product_attention (fused: online
-- softmax, backward by recomputation): against softmax(q k^T * scale +
-- mask) v written with matmul and softmax, for padding masks, full masks,
-- causal, both, any leading dims and strided views; float64
-- finite-difference gradients of q, k and v; a query that attends to no key;
-- float32 against float64; and the errors. PyTorch values:
-- test_ops_torch.lua.
local T = require "t"
local rn = require "rn"
local gradcheck = require "gradcheck"

local F64 = {dtype = "float64"}

-- the unfused reference; mask: nonzero = attend
local function ref(q, k, v, o)
  o = o or {}
  local D = q:size(q:dim())
  local s = rn.matmul(q, k:transpose(-1, -2)) * (o.scale or 1 / math.sqrt(D))
  local Tq, Tk = q:size(q:dim() - 1), k:size(k:dim() - 1)
  local keep = rn.ones({Tq, Tk}, {dtype = q.dtype})
  if o.causal then
    local m = {}
    for i = 1, Tq do m[i] = {} for j = 1, Tk do m[i][j] = j <= i and 1 or 0 end end
    keep = rn.tensor(m, {dtype = q.dtype})
  end
  if o.mask then keep = keep * o.mask:ne(0):to(q.dtype) end
  s = s + (keep - 1) * 1e30
  return rn.matmul(rn.softmax(s, -1), v)
end

local function qkv(lead, Tq, Tk, D, Dv, dt)
  local o = {dtype = dt or "float64"}
  local function sh(t, d) local s = {} for i, x in ipairs(lead) do s[i] = x end s[#s + 1] = t s[#s + 1] = d return s end
  return rn.randn(sh(Tq, D), o), rn.randn(sh(Tk, D), o), rn.randn(sh(Tk, Dv), o)
end

T.test("attention: equals softmax(q k^T * scale + mask) v for every mask form", function()
  rn.manual_seed(210)
  math.randomseed(210)
  local q, k, v = qkv({2, 3}, 5, 7, 8, 6)
  local pad = {}
  for b = 1, 2 do pad[b] = {{{}}} for j = 1, 7 do pad[b][1][1][j] = (j <= 4 + b) and 1 or 0 end end
  local padding = rn.tensor(pad, {dtype = "uint8"})           -- (B,1,1,Tk)
  local full = {}
  for i = 1, 5 do full[i] = {} for j = 1, 7 do full[i][j] = (math.random() < 0.7 or j == 1) and 1 or 0 end end
  local fullm = rn.tensor(full)                                -- (Tq,Tk) float 0/1
  local opts = {
    {}, {causal = true}, {mask = padding}, {mask = fullm}, {mask = padding, causal = true},
    {mask = fullm:ne(0)}, {scale = 0.3}, {mask = rn.tensor(full, {dtype = "int64"}):reshape({1, 1, 5, 7}):expand({2, 3, 5, 7})},
  }
  for n, o in ipairs(opts) do
    T.near(rn.scaled_dot_product_attention(q, k, v, o), ref(q, k, v, o), 1e-13, 1e-12, "case " .. n)
  end
  -- no leading dims, one leading dim, three
  for _, lead in ipairs({{}, {4}, {2, 2, 2}}) do
    local a, b, c = qkv(lead, 3, 4, 5, 2)
    T.near(rn.scaled_dot_product_attention(a, b, c, {causal = true}), ref(a, b, c, {causal = true}), 1e-13, 1e-12,
      #lead .. " leading dims")
  end
  -- heads as a permuted view (B,T,H,D) -> (B,H,T,D)
  local qq, kk, vv = rn.randn({2, 5, 3, 4}, F64), rn.randn({2, 6, 3, 4}, F64), rn.randn({2, 6, 3, 4}, F64)
  local pq, pk, pv = qq:permute(1, 3, 2, 4), kk:permute(1, 3, 2, 4), vv:permute(1, 3, 2, 4)
  T.near(rn.scaled_dot_product_attention(pq, pk, pv), ref(pq:contiguous(), pk:contiguous(), pv:contiguous()),
    1e-13, 1e-12, "permuted views")
end)

T.test("attention: float64 gradients of q, k, v equal finite differences", function()
  rn.manual_seed(211)
  local q, k, v = qkv({2}, 4, 5, 3, 2)
  local mask = rn.tensor({{{1, 1, 1, 0, 1}}, {{1, 0, 1, 1, 1}}}, {dtype = "uint8"})  -- (2,1,5)
  for _, o in ipairs({{}, {causal = true}, {mask = mask}, {mask = mask, causal = true, scale = 0.7}}) do
    local ok, e = pcall(gradcheck, function(a, b, c) return rn.scaled_dot_product_attention(a, b, c, o) end,
      {q, k, v}, {eps = 1e-6, atol = 1e-8, rtol = 1e-6})
    T.truthy(ok, tostring(e))
  end
end)

T.test("attention: a query that attends to no key gives 0 and passes no gradient", function()
  local q, k, v = qkv({}, 3, 4, 2, 2)
  local mask = rn.tensor({{1, 1, 0, 0}, {0, 0, 0, 0}, {0, 1, 1, 1}}, {dtype = "uint8"})
  q:requires_grad_(); k:requires_grad_(); v:requires_grad_()
  local y = rn.scaled_dot_product_attention(q, k, v, {mask = mask})
  T.eq(y:select(1, 2):totable(), {0, 0}, "masked row")
  T.near(y:narrow(1, 1, 1), ref(q:detach(), k:detach(), v:detach(), {mask = mask}):narrow(1, 1, 1), 1e-13, 1e-12, "row 1")
  y:sum():backward()
  T.eq(q.grad:select(1, 2):totable(), {0, 0}, "no gradient for the masked query")
  T.truthy(q.grad:abs():sum():item() > 0, "the other queries have one")
end)

T.test("attention: float32 follows float64; gradients too", function()
  rn.manual_seed(212)
  local q, k, v = qkv({2, 2}, 9, 11, 16, 8)
  local y64 = rn.scaled_dot_product_attention(q, k, v, {causal = true})
  local q32, k32, v32 = q:float():requires_grad_(), k:float():requires_grad_(), v:float():requires_grad_()
  local y32 = rn.scaled_dot_product_attention(q32, k32, v32, {causal = true})
  T.eq(y32.dtype, "float32")
  T.near(y32:double(), y64, 1e-5, 1e-5, "forward")
  y32:sum():backward()
  local qd, kd, vd = q:clone():requires_grad_(), k:clone():requires_grad_(), v:clone():requires_grad_()
  rn.scaled_dot_product_attention(qd, kd, vd, {causal = true}):sum():backward()
  T.near(q32.grad:double(), qd.grad, 1e-5, 1e-4, "dq")
  T.near(k32.grad:double(), kd.grad, 1e-5, 1e-4, "dk")
  T.near(v32.grad:double(), vd.grad, 1e-5, 1e-4, "dv")
end)

T.test("attention: errors name the shapes and the rule", function()
  local q, k, v = qkv({2}, 3, 4, 5, 6, "float32")
  local f = rn.scaled_dot_product_attention
  T.raises(function() f(q, k:narrow(3, 1, 4), v) end,
    "scaled_dot_product_attention: q (2,3,5), k (2,4,4), v (2,4,6) must be (...,Tq,D), (...,Tk,D), (...,Tk,Dv)", true)
  T.raises(function() f(q, k, v:narrow(2, 1, 3)) end, "must be (...,Tq,D), (...,Tk,D), (...,Tk,Dv) with the same leading dims", true)
  T.raises(function() f(q, k, v:double()) end, "q, k, v are float32, float32, float64", true)
  T.raises(function() f(q, k, v, {mask = rn.ones({3, 5})}) end,
    "scaled_dot_product_attention: mask (3,5) does not broadcast to the scores (...,Tq,Tk) = (2,3,4)", true)
  T.raises(function() f(q, k, v, {dropout = 0.1}) end, "dropout = 0.1 is not supported by the fused kernel", true)
  T.raises(function() f(q, k, v, {scale = -1}) end, "scale must be > 0", true)
  T.raises(function() f(q, k, v, {mask = 1}) end, "mask must be a tensor, got number", true)
  T.raises(function() f(q, k, v, {is_causal = true}) end, "is_causal")
end)
