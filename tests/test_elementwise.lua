-- test_elementwise.lua - unary, binary (broadcasting, scalars), comparisons
-- and reductions: values, finite-difference gradient checks in float64 on
-- several shapes and strides, and error inputs.
local T = require "t"
local rn = require "rn"
local gradcheck = require "gradcheck"

local function f64(...) return rn.randn({...}, {dtype = "float64"}) end
local function pos64(...) return rn.rand({...}, {dtype = "float64", low = 0.5, high = 2}) end
-- inputs away from 0 (relu/abs kinks)
local function nonzero64(...)
  local x = f64(...)
  return x + (x:gt(0):double() * 2 - 1) * 0.1
end

T.test("unary values", function()
  local x = rn.tensor({-2, -0.5, 0.5, 2}, {dtype = "float64"})
  T.near(x:neg(), rn.tensor({2, 0.5, -0.5, -2}, {dtype = "float64"}))
  T.near(x:relu(), rn.tensor({0, 0, 0.5, 2}, {dtype = "float64"}))
  T.near(x:abs(), rn.tensor({2, 0.5, 0.5, 2}, {dtype = "float64"}))
  T.near(x:exp():log(), x, 1e-12)
  T.near(x:abs():sqrt(), rn.tensor({math.sqrt(2), math.sqrt(0.5), math.sqrt(0.5), math.sqrt(2)}, {dtype = "float64"}), 1e-12)
  T.near(x:tanh(), rn.tensor({-0.9640275800758169, -0.46211715726000974, 0.46211715726000974,
    0.9640275800758169}, {dtype = "float64"}), 1e-15)
  local s = rn.tensor({-800, 0, 800}):sigmoid():totable()
  T.eq(s, {0, 0.5, 1}, "sigmoid saturates without NaN")
  T.near(rn.tensor({1, 2}):exp(), rn.tensor({math.exp(1), math.exp(2)}), 1e-6, 1e-6)
end)

T.test("binary values with broadcasting and scalars", function()
  local a = rn.tensor({{1, 2, 3}, {4, 5, 6}})
  local b = rn.tensor({10, 20, 30})
  T.eq((a + b):totable(), {{11, 22, 33}, {14, 25, 36}})
  T.eq((a - b):totable(), {{-9, -18, -27}, {-6, -15, -24}})
  T.eq((a * rn.tensor({{2}, {3}})):totable(), {{2, 4, 6}, {12, 15, 18}})
  T.eq((b / a):totable(), {{10, 10, 10}, {2.5, 4, 5}})
  T.eq((2 - a):totable(), {{1, 0, -1}, {-2, -3, -4}})
  T.eq((a ^ 2):totable(), {{1, 4, 9}, {16, 25, 36}})
  T.eq((2 ^ rn.tensor({1, 3})):totable(), {2, 8})
  T.eq((-a):totable()[1], {-1, -2, -3})
  T.eq(rn.maximum(a, 3.5):totable(), {{3.5, 3.5, 3.5}, {4, 5, 6}})
  T.eq(rn.minimum(a, b):totable(), {{1, 2, 3}, {4, 5, 6}})
  T.eq(a:gt(3):totable(), {{0, 0, 0}, {1, 1, 1}})
  T.eq(a:eq(rn.tensor({1, 5, 0})):totable(), {{1, 0, 0}, {0, 1, 0}})
  T.eq(a:le(2):sum():item(), 2)
  T.eq(rn.add(a, 1):totable()[1], {2, 3, 4})
  T.eq(rn.add(1, a):totable()[1], {2, 3, 4})
  -- integer arithmetic stays integer; division truncates
  local i = rn.tensor({7, -7}, {dtype = "int64"})
  T.eq((i / 2):totable(), {3, -3}); T.eq((i * 3):totable(), {21, -21})
  -- broadcast to a larger rank on both sides
  T.eq((rn.ones(2, 1, 3) + rn.ones(4, 1)):size(), {2, 4, 3})
end)

T.test("non-contiguous operands give the contiguous result", function()
  local a = f64(4, 5, 6)
  local p = a:permute(3, 1, 2)
  local q = f64(6, 4, 5)
  T.near(p + q, p:contiguous() + q, 0)
  T.near((p * q):exp(), (p:contiguous() * q):exp(), 0)
  local n = a:narrow(3, 2, 3)
  T.near(n:sum(1), n:contiguous():sum(1), 1e-12)
end)

T.test("reductions: sum, mean, max, min over dims with keepdim", function()
  local x = rn.tensor({{1, 5, 3}, {4, 2, 6}})
  T.eq(x:sum():item(), 21); T.eq(x:sum():dim(), 0)
  T.eq(x:sum(1):totable(), {5, 7, 9}); T.eq(x:sum(2):totable(), {9, 12})
  T.eq(x:sum(-1, true):size(), {2, 1})
  T.eq(x:sum({1, 2}, {keepdim = true}):size(), {1, 1})
  T.eq(x:mean(2):totable(), {3, 4})
  T.eq(x:max(2):totable(), {5, 6}); T.eq(x:min(1):totable(), {1, 2, 3})
  T.eq(x:max():item(), 6)
  T.eq(x:argmax(2):totable(), {1, 2}, "0-based class positions")
  T.eq(x:argmax(1):totable(), {1, 0, 1})
  T.eq(rn.tensor({1, 2}, {dtype = "int32"}):sum().dtype, "int64")
  T.truthy(rn.tensor({1, 0 / 0, 3}):max():item() ~= rn.tensor({1, 0 / 0, 3}):max():item(), "max propagates NaN")
  -- float32 sums accumulate in double: 1e6 ones sum exactly
  T.eq(rn.ones(1000000):sum():item(), 1000000)
end)

T.test("gradcheck: unary ops on several shapes and strides", function()
  for _, shape in ipairs({{5}, {3, 4}, {2, 3, 2}}) do
    local x = nonzero64(table.unpack(shape))
    local p = pos64(table.unpack(shape))
    gradcheck(function(t) return t:neg() end, {x})
    gradcheck(function(t) return t:exp() end, {x})
    gradcheck(function(t) return t:relu() end, {x})
    gradcheck(function(t) return t:abs() end, {x})
    gradcheck(function(t) return t:tanh() end, {x})
    gradcheck(function(t) return t:sigmoid() end, {x})
    gradcheck(function(t) return t:log() end, {p})
    gradcheck(function(t) return t:sqrt() end, {p})
  end
  local x = nonzero64(4, 3)
  gradcheck(function(t) return t:t():exp() end, {x})
  gradcheck(function(t) return t:narrow(1, 2, 2):relu() end, {x})
end)

T.test("gradcheck: binary ops with broadcasting and scalars", function()
  local cases = {{{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{3, 1}, {1, 4}}, {{2, 3, 4}, {3, 1}}, {{5}, {}}}
  for _, c in ipairs(cases) do
    local a, b = f64(table.unpack(c[1])), pos64(table.unpack(c[2]))
    gradcheck(function(x, y) return x + y end, {a, b})
    gradcheck(function(x, y) return x - y end, {a, b})
    gradcheck(function(x, y) return x * y end, {a, b})
    gradcheck(function(x, y) return x / y end, {a, b})
    gradcheck(function(x, y) return y:pow(x) end, {a, b})
    gradcheck(function(x, y) return rn.maximum(x, y) end, {a, b})
    gradcheck(function(x, y) return rn.minimum(x, y) end, {a, b})
  end
  local a = pos64(3, 4)
  gradcheck(function(x) return x ^ 3 end, {a})
  gradcheck(function(x) return 2 ^ x end, {a})
  gradcheck(function(x) return 1 / x - 3 end, {a})
  gradcheck(function(x) return x:permute(2, 1) * x:t() end, {a})
end)

T.test("gradcheck: reductions", function()
  local x = f64(3, 4, 5)
  gradcheck(function(t) return t:sum() end, {x})
  gradcheck(function(t) return t:sum(2) end, {x})
  gradcheck(function(t) return t:sum({1, 3}, true) end, {x})
  gradcheck(function(t) return t:mean(-1) end, {x})
  gradcheck(function(t) return t:mean() end, {x})
  gradcheck(function(t) return t:max(2) end, {x})
  gradcheck(function(t) return t:min({1, 2}) end, {x})
  gradcheck(function(t) return t:max() end, {x})
  gradcheck(function(t) return t:permute(3, 1, 2):sum(1) end, {x})
  -- max with a tie splits the gradient evenly
  local y = rn.tensor({1, 3, 3}, {requires_grad = true})
  y:max():backward()
  T.eq(y.grad:totable(), {0, 0.5, 0.5})
end)

T.test("errors: dtype mismatch, broadcasting, non-float math, bad dims", function()
  T.raises(function() return rn.ones(2) + rn.ones(2, {dtype = "float64"}) end,
    "add: dtypes differ %(float32 and float64%)")
  T.raises(function() return rn.ones(2, 3) * rn.ones(4) end,
    "mul: shapes %(2,3%) and %(4%) do not broadcast %(dim 2: 3 vs 4%)")
  T.raises(function() return rn.ones(2, {dtype = "int64"}):exp() end, "exp: dtype int64 is not a float type")
  T.raises(function() return rn.ones(2, {dtype = "int64"}):mean() end, "mean: dtype int64 is not a float type")
  T.raises(function() return rn.ones(2, 3):sum(3) end, "sum: dim 3 out of range 1..2")
  T.raises(function() return rn.ones(2, 3):sum({1, 1}) end, "sum: dim 1 given twice")
  T.raises(function() return rn.ones(2, 3):sum({}) end, "empty list of dims")
  T.raises(function() return rn.ones(2, 3):sum(1, {keep = true}) end, "unknown option 'keep'")
  T.raises(function() return rn.ones(2) + "a" end, "cannot combine userdata and string")
  T.raises(function() return rn.add({}, 1) end, "add: expected tensors or numbers")
  T.raises(function() return rn.exp(3) end, "exp: argument 1 must be a tensor, got number")
  T.raises(function() return rn.zeros(0):max() end, "reduction over an empty dim")
  T.raises(function() return rn.ones(2):argmax(2) end, "argmax: dim 2 out of range 1..1")
end)
