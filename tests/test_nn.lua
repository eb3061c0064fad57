-- test_nn.lua - the nn ops: batch_norm (training/inference, running stats),
-- softmax/log_softmax, cross_entropy, matmul/linear, concat, dropout:
-- values against hand-computed results, float64 finite-difference gradient
-- checks, dropout statistics, and the error of each misuse.
local T = require "t"
local rn = require "rn"
local gradcheck = require "gradcheck"

local D = { dtype = "float64" }
local GC = { eps = 1e-6, atol = 1e-5, rtol = 1e-3 }

local function randn(shape) return rn.randn(shape, D) end

-- plain Lua matrix product of nested tables (the reference for matmul)
local function mm(a, b)
  local r = {}
  for i = 1, #a do
    r[i] = {}
    for j = 1, #b[1] do
      local s = 0
      for k = 1, #b do s = s + a[i][k] * b[k][j] end
      r[i][j] = s
    end
  end
  return r
end

-- ---- batch_norm ------------------------------------------------------------

T.test("batch_norm training: batch statistics, gamma/beta, running stats", function()
  local x = rn.tensor({ { 1, 2 }, { 3, 6 } }, D)
  local g, b = rn.tensor({ 2, 1 }, D), rn.tensor({ 0.5, -1 }, D)
  local rm, rv = rn.zeros({ 2 }, D), rn.ones({ 2 }, D)
  local y = rn.batch_norm(x, g, b, rm, rv, { momentum = 0.9 })
  -- channel 0: mean 2, var 1; channel 1: mean 4, var 4 (biased)
  local a0, a1 = 1 / math.sqrt(1 + 1e-3), 2 / math.sqrt(4 + 1e-3)
  T.near(y, rn.tensor({ { -2 * a0 + 0.5, -a1 - 1 }, { 2 * a0 + 0.5, a1 - 1 } }, D), 1e-12)
  -- running = 0.9*running + 0.1*batch, with the biased variance (1, 4) as Keras
  T.near(rm, rn.tensor({ 0.2, 0.4 }, D), 1e-12)
  T.near(rv, rn.tensor({ 0.9 + 0.1, 0.9 + 0.4 }, D), 1e-12)
  -- unbiased = true (PyTorch's BatchNorm): the unbiased variance (2, 8); y unchanged
  local rm2, rv2 = rn.zeros({ 2 }, D), rn.ones({ 2 }, D)
  T.near(rn.batch_norm(x, g, b, rm2, rv2, { momentum = 0.9, unbiased = true }), y, 0, 0)
  T.near(rm2, rm, 0, 0)
  T.near(rv2, rn.tensor({ 0.9 + 0.2, 0.9 + 0.8 }, D), 1e-12)
  T.raises(function() rn.batch_norm(x, nil, nil, nil, nil, { unbiased = 1 }) end, "unbiased")
  -- without gamma/beta, a custom eps
  local y2 = rn.batch_norm(x, nil, nil, nil, nil, { eps = 0.5 })
  local c0, c1 = 1 / math.sqrt(1.5), 2 / math.sqrt(4.5)
  T.near(y2, rn.tensor({ { -c0, -c1 }, { c0, c1 } }, D), 1e-12)
end)

T.test("batch_norm: Keras default momentum 0.99 and the float32 path", function()
  local x = rn.tensor({ { 1, 10 }, { 2, 20 }, { 3, 30 }, { 6, 0 } })
  local rm, rv = rn.ones({ 2 }), rn.ones({ 2 })
  local y = rn.batch_norm(x, nil, nil, rm, rv)
  -- ch0: mean 3, biased var 3.5, unbiased 14/3; ch1: mean 15, var 125, unbiased 500/3
  T.near(rm, rn.tensor({ 0.99 + 0.01 * 3, 0.99 + 0.01 * 15 }), 1e-6)
  T.near(rv, rn.tensor({ 0.99 + 0.01 * 3.5, 0.99 + 0.01 * 125 }), 1e-6)
  local rvu = rn.ones({ 2 })
  rn.batch_norm(x, nil, nil, nil, rvu, { unbiased = true })
  T.near(rvu, rn.tensor({ 0.99 + 0.01 * 14 / 3, 0.99 + 0.01 * 500 / 3 }), 1e-6)
  -- the fused BN+ReLU kernel takes the same rule
  local rvr, rvru = rn.ones({ 2 }), rn.ones({ 2 })
  rn.batch_norm(x, nil, nil, nil, rvr, { relu = true })
  rn.batch_norm(x, nil, nil, nil, rvru, { relu = true, unbiased = true })
  T.near(rvr, rv, 0, 0)
  T.near(rvru, rvu, 0, 0)
  T.near(y:select(2, 1), (rn.tensor({ 1, 2, 3, 6 }) - 3) / math.sqrt(3.5 + 1e-3), 1e-6)
  T.near(y:select(2, 2), (rn.tensor({ 10, 20, 30, 0 }) - 15) / math.sqrt(125 + 1e-3), 1e-6)
  -- one row: variance 0 (unbiased falls back to biased), y = beta
  local rv1 = rn.ones({ 2 })
  local y1 = rn.batch_norm(rn.tensor({ { 5, 7 } }), nil, rn.tensor({ 0.25, 0.5 }), nil, rv1,
    { momentum = 0.5 })
  T.near(y1, rn.tensor({ { 0.25, 0.5 } }), 1e-6)
  T.near(rv1, rn.tensor({ 0.5, 0.5 }), 1e-6)
end)

T.test("batch_norm: strided running stats are updated in place; thread count does not matter", function()
  local store = rn.zeros({ 2, 2 }, D)
  local rm = store:select(2, 2)           -- a column: (2) with stride 2
  T.eq(rm:is_contiguous(), false)
  rn.batch_norm(rn.tensor({ { 1, 2 }, { 3, 6 } }, D), nil, nil, rm, nil, { momentum = 0.5 })
  T.eq(store:totable(), { { 0, 1 }, { 0, 2 } })
  rn.manual_seed(12)
  local x = rn.randn({ 5000, 3 })
  local gy = rn.randn({ 5000, 3 })
  local function run()
    local xl = x:clone():requires_grad_()
    local y = rn.batch_norm(xl)
    y:backward(gy)
    return y:totable(), xl.grad:totable()
  end
  local n = rn.get_num_threads()
  rn.set_num_threads(1)
  local y1, g1 = run()
  rn.set_num_threads(2)
  local y2, g2 = run()
  rn.set_num_threads(n)
  T.eq(y1, y2, "forward"); T.eq(g1, g2, "backward")
end)

T.test("batch_norm float32 keeps precision with a large mean and many rows", function()
  rn.manual_seed(3)
  local x = rn.randn({ 4096, 5 }) + 1000
  local y = rn.batch_norm(x, nil, nil, nil, nil)
  local yd = rn.batch_norm(x:double(), nil, nil, nil, nil)
  T.near(y, yd:float(), 2e-3, 0)
  T.near(y:mean(1), rn.zeros({ 5 }), 1e-3)
end)

T.test("batch_norm inference: running statistics, x unchanged stats", function()
  local x = rn.tensor({ { 1, 2 }, { 3, 6 } }, D)
  local g, b = rn.tensor({ 2, 1 }, D), rn.tensor({ 0.5, -1 }, D)
  local rm, rv = rn.tensor({ 1, -1 }, D), rn.tensor({ 4, 0.25 }, D)
  local y = rn.batch_norm(x, g, b, rm, rv, { training = false })
  local k0, k1 = 2 / math.sqrt(4 + 1e-3), 1 / math.sqrt(0.25 + 1e-3)
  T.near(y, rn.tensor({ { 0 * k0 + 0.5, 3 * k1 - 1 }, { 2 * k0 + 0.5, 7 * k1 - 1 } }, D), 1e-12)
  T.eq(rm:totable(), { 1, -1 }, "inference leaves running stats alone")
  T.eq(rv:totable(), { 4, 0.25 })
end)

T.test("batch_norm gradcheck: training, 2-D and 4-D, with and without gamma/beta", function()
  rn.manual_seed(1)
  local x2, x4 = randn({ 5, 3 }), randn({ 2, 3, 2, 4 })
  gradcheck(function(x) return rn.batch_norm(x) end, { x2 }, GC)
  gradcheck(function(x, g, b) return rn.batch_norm(x, g, b) end,
    { x2, randn({ 3 }), randn({ 3 }) }, GC)
  local rm, rv = rn.zeros({ 4 }, D), rn.ones({ 4 }, D)
  gradcheck(function(x, g, b) return rn.batch_norm(x, g, b, rm, rv, { eps = 1e-2 }) end,
    { x4, randn({ 4 }), randn({ 4 }) }, GC)
  gradcheck(function(x, g) return rn.batch_norm(x, g, nil) end, { x4, randn({ 4 }) }, GC)
  gradcheck(function(x, b) return rn.batch_norm(x, nil, b) end, { x4, randn({ 4 }) }, GC)
  -- a non-contiguous x
  local base = randn({ 4, 3, 2, 2 })
  gradcheck(function(t) return rn.batch_norm(t:permute(4, 3, 2, 1)) end, { base }, GC)
end)

T.test("batch_norm gradcheck: inference, 2-D and 4-D", function()
  rn.manual_seed(2)
  local rm3, rv3 = randn({ 3 }), rn.rand({ 3 }, D) + 0.5
  local rm4, rv4 = randn({ 4 }), rn.rand({ 4 }, D) + 0.5
  local off = { training = false }
  gradcheck(function(x, g, b) return rn.batch_norm(x, g, b, rm3, rv3, off) end,
    { randn({ 5, 3 }), randn({ 3 }), randn({ 3 }) }, GC)
  gradcheck(function(x, g, b) return rn.batch_norm(x, g, b, rm4, rv4, off) end,
    { randn({ 2, 3, 2, 4 }), randn({ 4 }), randn({ 4 }) }, GC)
  gradcheck(function(x) return rn.batch_norm(x, nil, nil, rm4, rv4, off) end,
    { randn({ 2, 3, 2, 4 }) }, GC)
end)

T.test("batch_norm errors", function()
  local x = rn.randn({ 4, 3 })
  T.raises(function() rn.batch_norm(rn.randn({ 3 })) end, "at least 2 dims")
  T.raises(function() rn.batch_norm(x, rn.ones({ 4 })) end,
    "gamma has shape (4); it must be (3)", true)
  T.raises(function() rn.batch_norm(x, nil, rn.ones({ 3, 1 })) end, "beta has shape (3,1)", true)
  T.raises(function() rn.batch_norm(x, nil, nil, rn.ones({ 3 }, D)) end,
    "running_mean has dtype float64 but x has float32")
  T.raises(function() rn.batch_norm(rn.ones({ 4, 3 }, { dtype = "int64" })) end,
    "not a float type")
  T.raises(function() rn.batch_norm(x, nil, nil, nil, nil, { momentum = 1.5 }) end,
    "momentum 1.5 outside [0, 1]", true)
  T.raises(function() rn.batch_norm(x, nil, nil, nil, nil, { momentum = -0.1 }) end,
    "momentum -0.1 outside", true)
  T.raises(function() rn.batch_norm(x, nil, nil, nil, nil, { eps = 0 }) end, "eps 0 must be > 0")
  T.raises(function() rn.batch_norm(x, nil, nil, nil, nil, { training = false }) end,
    "needs running_mean and running_var")
  T.raises(function() rn.batch_norm(x, nil, nil, nil, nil, { epsilon = 1 }) end,
    "unknown option 'epsilon'")
  T.raises(function() rn.batch_norm(rn.zeros({ 0, 3 })) end, "at least one value per channel")
  T.raises(function() rn.batch_norm(x, 3) end, "argument 2 must be a tensor")
end)

-- ---- softmax / log_softmax -------------------------------------------------

T.test("softmax and log_softmax values, stable for large inputs", function()
  local e1, e2, e3 = math.exp(1), math.exp(2), math.exp(3)
  local s = e1 + e2 + e3
  local x = rn.tensor({ { 1, 2, 3 }, { 1001, 1002, 1003 } }, D)
  local p = { e1 / s, e2 / s, e3 / s }
  T.near(rn.softmax(x), rn.tensor({ p, p }, D), 1e-12)
  local l = { 1 - math.log(s), 2 - math.log(s), 3 - math.log(s) }
  T.near(x:log_softmax(), rn.tensor({ l, l }, D), 1e-12)
  T.near(rn.softmax(x:float()), rn.tensor({ p, p }), 1e-6)
  -- over dim 1 of a (2,3): columns
  local y = rn.softmax(rn.tensor({ { 0, 1, 2 }, { 0, 2, 4 } }, D), 1)
  local function col(a, b) return { math.exp(a) / (math.exp(a) + math.exp(b)), math.exp(b) / (math.exp(a) + math.exp(b)) } end
  local c1, c2, c3 = col(0, 0), col(1, 2), col(2, 4)
  T.near(y, rn.tensor({ { c1[1], c2[1], c3[1] }, { c1[2], c2[2], c3[2] } }, D), 1e-12)
  -- rows sum to one over any dim of a 3-D tensor
  local z = rn.randn({ 2, 3, 4 })
  for d = 1, 3 do T.near(rn.softmax(z, d):sum(d), rn.ones(z:size()):sum(d) / z:size(d), 1e-5) end
  T.near(rn.log_softmax(z, -2):exp(), rn.softmax(z, 2), 1e-6)
end)

T.test("softmax / log_softmax gradcheck over several dims", function()
  rn.manual_seed(4)
  local x = randn({ 2, 3, 4 })
  for _, d in ipairs({ 1, 2, 3, -1 }) do
    gradcheck(function(t) return rn.softmax(t, d) end, { x }, GC)
    gradcheck(function(t) return rn.log_softmax(t, d) end, { x }, GC)
  end
  gradcheck(function(t) return t:t():softmax() end, { randn({ 4, 3 }) }, GC)
  gradcheck(function(t) return rn.log_softmax(t) end, { randn({ 5 }) }, GC)
end)

T.test("softmax errors", function()
  T.raises(function() rn.softmax(rn.tensor(1)) end, "0-d")
  T.raises(function() rn.softmax(rn.randn({ 2, 3 }), 3) end, "dim 3 out of range 1..2")
  T.raises(function() rn.log_softmax(rn.ones({ 2 }, { dtype = "int32" })) end, "not a float type")
end)

-- ---- cross_entropy ---------------------------------------------------------

T.test("cross_entropy values: mean, sum, none, label smoothing, label dtypes", function()
  local x = rn.tensor({ { 1, 2, 3 }, { 1, 1, 1 } }, D)
  local lse0 = math.log(math.exp(1) + math.exp(2) + math.exp(3))
  local l0, l1 = lse0 - 3, math.log(3)
  for _, dt in ipairs({ "int64", "int32", "uint8" }) do
    local lab = rn.tensor({ 2, 0 }, { dtype = dt })
    T.near(rn.cross_entropy(x, lab, { reduction = "none" }), rn.tensor({ l0, l1 }, D), 1e-12, 0, dt)
  end
  local lab = rn.tensor({ 2, 0 }, { dtype = "int64" })
  T.near(rn.cross_entropy(x, lab):item(), (l0 + l1) / 2, 1e-12)
  T.near(rn.cross_entropy(x, lab, { reduction = "sum" }):item(), l0 + l1, 1e-12)
  -- smoothing s: lse - (1-s) x[label] - s/C sum x
  local s = 0.1
  local m0 = lse0 - 0.9 * 3 - s / 3 * 6
  local m1 = 1 + math.log(3) - 0.9 * 1 - s / 3 * 3
  T.near(rn.cross_entropy(x, lab, { label_smoothing = s, reduction = "none" }),
    rn.tensor({ m0, m1 }, D), 1e-12)
  -- stable for large logits, float32
  local big = rn.tensor({ { 1000, 0 } })
  T.near(rn.cross_entropy(big, rn.tensor({ 1 }, { dtype = "int64" })):item(), 1000, 1e-3)
  -- the gradient of the mean loss: (softmax - onehot) / N
  local xg = x:clone():requires_grad_()
  rn.cross_entropy(xg, lab):backward()
  local e = math.exp
  local p0 = { e(1) / e(lse0), e(2) / e(lse0), e(3) / e(lse0) }
  T.near(xg.grad, rn.tensor({ { p0[1] / 2, p0[2] / 2, (p0[3] - 1) / 2 },
    { (1 / 3 - 1) / 2, 1 / 6, 1 / 6 } }, D), 1e-12)
end)

T.test("cross_entropy gradcheck: mean/sum/none, smoothing 0 and 0.1", function()
  rn.manual_seed(5)
  local lab = rn.tensor({ 0, 3, 1, 3, 2 }, { dtype = "int64" })
  for _, red in ipairs({ "mean", "sum", "none" }) do
    for _, s in ipairs({ 0, 0.1 }) do
      gradcheck(function(x)
        return rn.cross_entropy(x, lab, { reduction = red, label_smoothing = s })
      end, { randn({ 5, 4 }) }, GC)
    end
  end
  -- a transposed (non-contiguous) logits view
  gradcheck(function(x) return rn.cross_entropy(x:t(), lab) end, { randn({ 4, 5 }) }, GC)
end)

T.test("cross_entropy errors", function()
  local x = rn.randn({ 4, 10 })
  local lab = rn.tensor({ 1, 2, 10, 3 }, { dtype = "int64" })
  T.raises(function() rn.cross_entropy(x, lab) end,
    "cross_entropy: label 10 at position 3 outside 0..9", true)
  T.raises(function() rn.cross_entropy(x, rn.tensor({ 0, -1, 0, 0 }, { dtype = "int32" })) end,
    "label -1 at position 2 outside 0..9", true)
  T.raises(function() rn.cross_entropy(rn.randn({ 4 }), lab) end, "must be 2-D (N,C)", true)
  T.raises(function() rn.cross_entropy(x, rn.tensor({ 1, 2 }, { dtype = "int64" })) end,
    "labels have shape (2); they must be (4)", true)
  T.raises(function() rn.cross_entropy(x, rn.tensor({ 1, 2, 3, 4 })) end, "not an integer type")
  T.raises(function() rn.cross_entropy(x:long(), lab) end, "not a float type")
  local ok = rn.tensor({ 1, 2, 3, 4 }, { dtype = "int64" })
  T.raises(function() rn.cross_entropy(x, ok, { label_smoothing = 1.5 }) end,
    "label_smoothing 1.5 outside [0, 1]", true)
  T.raises(function() rn.cross_entropy(x, ok, { reduction = "avg" }) end,
    "reduction 'avg' is not one of mean, sum, none")
  T.raises(function() rn.cross_entropy(x, ok, { smoothing = 0.1 }) end, "unknown option 'smoothing'")
  T.raises(function() rn.cross_entropy(x, ok:reshape(2, 2)) end, "labels have shape (2,2)", true)
end)

-- ---- matmul / linear -------------------------------------------------------

T.test("matmul values for every shape rule", function()
  local A = { { 1, 2, 3 }, { 4, 5, 6 } }          -- (2,3)
  local B = { { 1, 0, 2, 1 }, { -1, 3, 1, 0 }, { 2, 2, 0, -2 } } -- (3,4)
  local a, b = rn.tensor(A, D), rn.tensor(B, D)
  T.eq(rn.matmul(a, b):totable(), mm(A, B))
  T.eq(a:matmul(b):size(), { 2, 4 })
  -- vectors
  local v3 = rn.tensor({ 1, -1, 2 }, D)
  T.eq(rn.matmul(v3, b):totable(), mm({ { 1, -1, 2 } }, B)[1])     -- (3)@(3,4) -> (4)
  T.eq(rn.matmul(a, v3):totable(), { 1 - 2 + 6, 4 - 5 + 12 })      -- (2,3)@(3) -> (2)
  local dot = rn.matmul(v3, v3)
  T.eq(dot:dim(), 0); T.eq(dot:item(), 6)
  -- batched
  local a3 = rn.tensor({ A, { { 0, 1, 0 }, { 1, 0, 1 } } }, D)   -- (2,2,3)
  local r = rn.matmul(a3, b)                                     -- (2,2,3)@(3,4)
  T.eq(r:size(), { 2, 2, 4 })
  T.eq(r:totable(), { mm(A, B), mm({ { 0, 1, 0 }, { 1, 0, 1 } }, B) })
  local b3 = rn.tensor({ B, B }, D) * rn.tensor({ 1, 2 }, D):reshape(2, 1, 1)
  local r2 = rn.matmul(a3, b3)
  T.eq(r2:select(1, 2):totable(), rn.tensor(mm({ { 0, 1, 0 }, { 1, 0, 1 } }, B), D):mul(2):totable())
  T.eq(rn.matmul(a, b3):select(1, 2):totable(), rn.tensor(mm(A, B), D):mul(2):totable())
  T.eq(rn.matmul(a3, v3):totable(), { { 5, 11 }, { -1, 3 } })    -- (2,2,3)@(3) -> (2,2)
  T.eq(rn.matmul(a3:narrow(1, 1, 1), b3):size(), { 2, 2, 4 })    -- batch 1 broadcasts
  -- transposed and strided views give the same result as contiguous copies
  local at = rn.tensor(A, D):t()                                 -- (3,2), column-major
  T.eq(rn.matmul(at:t(), b):totable(), mm(A, B))
  T.eq(rn.matmul(b:t(), at):totable(), mm(rn.tensor(B, D):t():totable(), rn.tensor(A, D):t():totable()))
  local wide = rn.randn({ 2, 6 }, D)
  T.near(rn.matmul(wide:narrow(2, 2, 3), b), rn.matmul(wide:narrow(2, 2, 3):contiguous(), b), 1e-12)
  local odd = rn.randn({ 3, 3, 2 }, D):permute(3, 1, 2)          -- (2,3,3) strides (1,6,2): copied
  T.near(rn.matmul(odd, b), rn.matmul(odd:contiguous(), b), 1e-12)
  -- float32 and empty dims
  T.near(rn.matmul(a:float(), b:float()), rn.tensor(mm(A, B)), 1e-5)
  T.eq(rn.matmul(rn.zeros({ 2, 0 }), rn.zeros({ 0, 3 })):totable(), { { 0, 0, 0 }, { 0, 0, 0 } })
  T.eq(rn.matmul(rn.zeros({ 0, 2 }), rn.zeros({ 2, 3 })):size(), { 0, 3 })
end)

T.test("matmul gradcheck: every shape rule and non-contiguous inputs", function()
  rn.manual_seed(6)
  local cases = {
    { { 3, 4 }, { 4, 5 } }, { { 4 }, { 4, 5 } }, { { 3, 4 }, { 4 } }, { { 4 }, { 4 } },
    { { 2, 3, 4 }, { 2, 4, 5 } }, { { 2, 3, 4 }, { 4, 5 } }, { { 3, 4 }, { 2, 4, 5 } },
    { { 2, 3, 4 }, { 4 } }, { { 4 }, { 2, 4, 5 } }, { { 1, 3, 4 }, { 2, 4, 5 } },
    { { 2, 3, 4 }, { 1, 4, 5 } }, { { 2, 1, 4 }, { 4, 3 } },
  }
  for _, c in ipairs(cases) do
    gradcheck(function(a, b) return rn.matmul(a, b) end, { randn(c[1]), randn(c[2]) }, GC)
  end
  -- transposed views (go to gemm with the transpose flag)
  gradcheck(function(a, b) return rn.matmul(a:t(), b) end, { randn({ 4, 3 }), randn({ 4, 5 }) }, GC)
  gradcheck(function(a, b) return rn.matmul(a, b:t()) end, { randn({ 3, 4 }), randn({ 5, 4 }) }, GC)
  gradcheck(function(a, b) return rn.matmul(a:transpose(2, 3), b:transpose(2, 3)) end,
    { randn({ 2, 4, 3 }), randn({ 2, 5, 4 }) }, GC)
  -- a view neither row- nor column-major (copied), and a strided narrow
  gradcheck(function(a, b) return rn.matmul(a:permute(3, 1, 2), b) end,
    { randn({ 3, 4, 2 }), randn({ 2, 4, 5 }) }, GC)
  gradcheck(function(a, b) return rn.matmul(a:narrow(2, 2, 4), b) end,
    { randn({ 3, 6 }), randn({ 4, 2 }) }, GC)
end)

T.test("linear: values and gradcheck with and without bias", function()
  local x = rn.tensor({ { 1, 2 }, { 3, 4 } }, D)
  local w = rn.tensor({ { 1, 0, -1 }, { 2, 1, 0 } }, D) -- (in=2, out=3)
  local b = rn.tensor({ 0.5, -0.5, 1 }, D)
  T.eq(rn.linear(x, w, b):totable(), { { 5.5, 1.5, 0 }, { 11.5, 3.5, -2 } })
  T.eq(rn.linear(x, w):totable(), { { 5, 2, -1 }, { 11, 4, -3 } })
  T.eq(rn.linear(rn.tensor({ { x:totable() } }, D):reshape(1, 2, 2), w, b):size(), { 1, 2, 3 })
  rn.manual_seed(7)
  gradcheck(function(x_, w_, b_) return rn.linear(x_, w_, b_) end,
    { randn({ 4, 3 }), randn({ 3, 5 }), randn({ 5 }) }, GC)
  gradcheck(function(x_, w_) return x_:linear(w_) end, { randn({ 4, 3 }), randn({ 3, 5 }) }, GC)
  gradcheck(function(x_, w_, b_) return rn.linear(x_, w_, b_) end,
    { randn({ 2, 2, 3 }), randn({ 3, 2 }), randn({ 2 }) }, GC)
end)

T.test("matmul and linear errors", function()
  T.raises(function() rn.matmul(rn.ones({ 2, 3 }), rn.ones({ 4, 5 })) end,
    "matmul: shapes (2,3) and (4,5) cannot be multiplied (3 != 4)", true)
  T.raises(function() rn.matmul(rn.ones({ 3 }), rn.ones({ 4 })) end, "(3) and (4) cannot", true)
  T.raises(function() rn.matmul(rn.ones({ 2, 2, 3 }), rn.ones({ 3, 3, 4 })) end,
    "batch dims of (2,2,3) and (3,3,4) do not broadcast (batch dim 1: 2 vs 3)", true)
  T.eq(rn.matmul(rn.ones({ 1, 2, 2, 3 }), rn.ones({ 3, 4 })):size(), { 1, 2, 2, 4 }) -- batched: test_matmul_batched.lua
  T.raises(function() rn.matmul(rn.tensor(1), rn.ones({ 3, 4 })) end, "each operand needs at least 1 dim")
  T.raises(function() rn.matmul(rn.ones({ 2, 3 }), rn.ones({ 3, 4 }, D)) end,
    "dtypes differ (float32 and float64)", true)
  T.raises(function() rn.matmul(rn.ones({ 2, 3 }, { dtype = "int64" }), rn.ones({ 3, 4 }, { dtype = "int64" })) end,
    "not a float type")
  T.raises(function() rn.matmul(rn.ones({ 2, 3 }), 2) end, "argument 2 must be a tensor")
  T.raises(function() rn.linear(rn.ones({ 2, 3 }), rn.ones({ 4, 5 })) end, "last dim of x must equal")
  T.raises(function() rn.linear(rn.ones({ 2, 3 }), rn.ones({ 3 })) end, "w has shape (3); it must be 2-D", true)
  T.raises(function() rn.linear(rn.ones({ 2, 3 }), rn.ones({ 3, 5 }), rn.ones({ 4 })) end,
    "b has shape (4); it must be (5)", true)
end)

-- ---- concat ----------------------------------------------------------------

T.test("concat values along each dim", function()
  local a = rn.tensor({ { 1, 2 }, { 3, 4 } })
  local b = rn.tensor({ { 5, 6 } })
  T.eq(rn.concat({ a, b }):totable(), { { 1, 2 }, { 3, 4 }, { 5, 6 } })
  T.eq(rn.concat({ a, b:t() }, 2):totable(), { { 1, 2, 5 }, { 3, 4, 6 } })
  T.eq(rn.concat({ a, a, b:t() }, -1):totable(), { { 1, 2, 1, 2, 5 }, { 3, 4, 3, 4, 6 } })
  T.eq(rn.concat({ a }):totable(), a:totable())
  local x = rn.arange(24):reshape(2, 3, 4)
  local y = rn.concat({ x:narrow(3, 1, 1), x:narrow(3, 2, 3) }, 3)
  T.eq(y:totable(), x:totable())
  T.eq(rn.concat({ rn.zeros({ 2, 0 }), a }, 2):totable(), a:totable())
  T.eq(rn.concat({ rn.tensor({ 1, 2 }, { dtype = "int64" }), rn.tensor({ 3 }, { dtype = "int64" }) }):totable(),
    { 1, 2, 3 })
  T.eq(rn.concat({ x:permute(3, 2, 1), x:permute(3, 2, 1) }, 2):size(), { 4, 6, 2 })
end)

T.test("concat gradcheck along several dims", function()
  rn.manual_seed(8)
  for d = 1, 3 do
    local s1, s2, s3 = { 2, 3, 4 }, { 2, 3, 4 }, { 2, 3, 4 }
    s2[d] = 1; s3[d] = 2
    gradcheck(function(a, b, c) return rn.concat({ a, b, c }, d) end,
      { randn(s1), randn(s2), randn(s3) }, GC)
  end
  -- one input without grad, a non-contiguous one
  local fixed = randn({ 3, 2 })
  gradcheck(function(a) return rn.concat({ fixed, a:t() }, -1) end, { randn({ 4, 3 }) }, GC)
end)

T.test("concat errors", function()
  local a = rn.ones({ 2, 3 })
  T.raises(function() rn.concat({ a, 5 }) end, "element 2 of the list is a number, not a tensor")
  T.raises(function() rn.concat({ a, "x", a }, 2) end, "element 2 of the list is a string")
  T.raises(function() rn.concat({}) end, "list of tensors is empty")
  T.raises(function() rn.concat(a) end, "argument 1 must be a list of tensors")
  T.raises(function() rn.concat({ a, rn.ones({ 2, 4 }) }, 1) end,
    "tensor 2 has shape (2,4) and tensor 1 has (2,3); they must match except on dim 1", true)
  T.raises(function() rn.concat({ a, rn.ones({ 2, 3, 1 }) }, 1) end, "tensor 2 has shape (2,3,1)", true)
  T.raises(function() rn.concat({ a, rn.ones({ 2, 3 }, D) }) end,
    "tensor 2 has dtype float64 but tensor 1 has float32")
  T.raises(function() rn.concat({ a, a }, 3) end, "dim 3 out of range 1..2")
  T.raises(function() rn.concat({ rn.tensor(1), rn.tensor(2) }) end, "0-d")
  T.eq(a.concat, nil, "concat is not a tensor method")
end)

-- ---- dropout ---------------------------------------------------------------

T.test("dropout: fraction kept, scaling, eval identity, seeded repeat", function()
  rn.manual_seed(9)
  local x = rn.ones({ 100000 })
  local p = 0.3
  local y = rn.dropout(x, p)
  local kept = (y:ne(0)):float():mean():item()
  T.near(kept, 1 - p, 0.01)
  T.near(y:max():item(), 1 / (1 - p), 1e-6)
  T.near(y:sum():item() / y:ne(0):float():sum():item(), 1 / (1 - p), 1e-5, 0, "kept values")
  T.near(y:mean():item(), 1, 0.02, 0, "expectation preserved")
  local z = rn.randn({ 5, 4 })
  T.eq(rn.dropout(z, 0.5, { training = false }):totable(), z:totable())
  T.eq(z:dropout(0):totable(), z:totable())
  rn.manual_seed(10)
  local m1 = rn.dropout(z, 0.5):totable()
  rn.manual_seed(10)
  T.eq(rn.dropout(z, 0.5):totable(), m1, "same seed, same mask")
  T.eq(rn.dropout(x:double(), 0.5).dtype, "float64")
end)

T.test("dropout gradcheck with a fixed mask", function()
  rn.manual_seed(11)
  gradcheck(function(t)
    rn.manual_seed(123)
    return rn.dropout(t, 0.4)
  end, { randn({ 6, 5 }) }, GC)
  gradcheck(function(t) return rn.dropout(t, 0.4, { training = false }) end, { randn({ 3 }) }, GC)
end)

T.test("dropout errors", function()
  local x = rn.ones({ 3 })
  T.raises(function() rn.dropout(x, 1) end, "p = 1 outside [0, 1)", true)
  T.raises(function() rn.dropout(x, -0.5) end, "p = -0.5 outside", true)
  T.raises(function() rn.dropout(x, "a") end, "p must be a number")
  T.raises(function() rn.dropout(x:long(), 0.5) end, "not a float type")
  T.raises(function() rn.dropout(x, 0.5, { train = true }) end, "unknown option 'train'")
end)
