-- test_embedding.lua - rn.embedding(indices, weight): the rows it picks for
-- int32 and int64 indices of any shape, the scatter-add backward (duplicate
-- indices accumulate, deterministically), float64 finite differences, and
-- the errors (out-of-range index named with the valid range). PyTorch
-- values: test_ops_torch.lua.
local T = require "t"
local rn = require "rn"
local gradcheck = require "gradcheck"

local F64 = {dtype = "float64"}

T.test("embedding: picks rows for int32 and int64 indices of any shape", function()
  local w = rn.tensor({{1, 2}, {3, 4}, {5, 6}})
  for _, dt in ipairs({"int32", "int64"}) do
    local i = rn.tensor({{2, 0}, {1, 2}}, {dtype = dt})
    local y = rn.embedding(i, w)
    T.eq(y:size(), {2, 2, 2})
    T.eq(y:totable(), {{{5, 6}, {1, 2}}, {{3, 4}, {5, 6}}}, dt)
  end
  T.eq(rn.embedding(rn.tensor(1, {dtype = "int64"}), w):totable(), {3, 4}, "0-d index")
  T.eq(rn.embedding(rn.tensor({}, {dtype = "int64"}), w):size(), {0, 2}, "no index")
  -- strided indices and a transposed table
  local wt = rn.tensor({{1, 3, 5}, {2, 4, 6}}):t()
  local it = rn.tensor({{0, 1}, {2, 0}}, {dtype = "int64"}):t()
  T.eq(rn.embedding(it, wt):totable(), {{{1, 2}, {5, 6}}, {{3, 4}, {1, 2}}}, "views")
end)

T.test("embedding: the backward scatter-adds, duplicates accumulate", function()
  local w = rn.zeros({4, 3}, F64):requires_grad_()
  local i = rn.tensor({1, 3, 1, 1}, {dtype = "int64"})
  local g = rn.tensor({{1, 2, 3}, {10, 20, 30}, {100, 200, 300}, {1000, 2000, 3000}}, F64)
  rn.embedding(i, w):backward(g)
  T.eq(w.grad:totable(), {{0, 0, 0}, {1101, 2202, 3303}, {0, 0, 0}, {10, 20, 30}})
  -- the same bits every time (fixed order), and across a wide table
  rn.manual_seed(200)
  local W = rn.randn({50, 300}):requires_grad_()
  math.randomseed(200)
  local idx = {}
  for k = 1, 4000 do idx[k] = math.random(0, 49) end
  local I = rn.tensor(idx, {dtype = "int64"})
  local G = rn.randn({4000, 300})
  rn.embedding(I, W):backward(G)
  local first = W.grad:clone()
  W.grad = nil
  rn.embedding(I, W):backward(G)
  T.eq((W.grad - first):abs():max():item(), 0, "deterministic")
  local want = rn.zeros({50, 300}, F64)
  local it = I:totable()
  local G64 = G:double()
  for k = 1, #it do want:select(1, it[k] + 1):add_(G64:select(1, k)) end
  T.near(first:double(), want, 1e-3, 1e-5, "against a loop")
end)

-- the output is linear in weight: a large step keeps rounding small
T.test("embedding: float64 gradient equals finite differences", function()
  rn.manual_seed(201)
  local w = rn.randn({6, 4}, F64)
  local i = rn.tensor({{0, 5, 2}, {2, 2, 3}}, {dtype = "int32"})
  local ok, e = pcall(gradcheck, function(ww) return rn.embedding(i, ww) end, {w},
    {eps = 1e-2, atol = 1e-10, rtol = 1e-7})
  T.truthy(ok, tostring(e))
end)

T.test("embedding: errors name the index and the valid range", function()
  local w = rn.ones({5, 2})
  T.raises(function() rn.embedding(rn.tensor({1, 5}, {dtype = "int64"}), w) end,
    "embedding: index 5 is out of range for a table of 5 rows (valid: 0..4)", true)
  T.raises(function() rn.embedding(rn.tensor({-1, 2}, {dtype = "int32"}), w) end,
    "embedding: index -1 is out of range for a table of 5 rows (valid: 0..4)", true)
  T.raises(function() rn.embedding(rn.tensor({1, 2}), w) end,
    "embedding: indices are float32; int32 or int64 is needed", true)
  T.raises(function() rn.embedding(rn.tensor({1}, {dtype = "int64"}), rn.ones({5})) end,
    "embedding: weight must be a 2-D (V, D) float table, got (5) float32", true)
  T.raises(function() rn.embedding(rn.tensor({1}, {dtype = "int64"}), rn.ones({5, 2}, {dtype = "int64"})) end,
    "embedding: weight must be a 2-D (V, D) float table", true)
end)
