-- test_training_extras.lua - what new architectures need besides layers:
-- Keras's initializers with their arguments (random_normal, random_uniform,
-- truncated_normal, variance_scaling, orthogonal, constant), gradient
-- clipping on every optimizer (clipnorm, global_clipnorm, clipvalue),
-- binary_crossentropy (probabilities and logits) and a per-pixel
-- sparse_categorical_crossentropy with ignore_class. Values against the
-- formulas, written out here.
local T = require "t"
local rn = require "rn"
local I = rn.initializers
local L = rn.losses

local function eye(n, scale)
  local rows = {}
  for i = 1, n do rows[i] = {} for j = 1, n do rows[i][j] = i == j and (scale or 1) or 0 end end
  return rn.tensor(rows, { dtype = "float64" })
end

local function std(t) local d = t:double(); local m = d:mean():item(); return math.sqrt(((d - m) * (d - m)):mean():item()) end

T.test("initializers: Keras's argument forms and statistics", function()
  rn.manual_seed(41)
  local n = { 200, 100 }
  local t = I.random_normal{ mean = 1, stddev = 0.2 }(n)
  T.near(t:double():mean():item(), 1, 0.01)
  T.near(std(t), 0.2, 0.01)
  local u = I.random_uniform{ minval = -3, maxval = -1 }(n)
  T.truthy(u:min():item() >= -3 and u:max():item() <= -1)
  T.near(u:double():mean():item(), -2, 0.02)
  -- truncated_normal: stddev before truncation, cut at 2 stddev (actual std 0.8796 of it)
  local tn = I.truncated_normal{ mean = 0.5, stddev = 0.1 }(n)
  T.truthy(tn:min():item() >= 0.3 - 1e-6 and tn:max():item() <= 0.7 + 1e-6, "within 2 stddev")
  T.near(std(tn), 0.1 * 0.87962566103423978, 0.003)
  -- variance_scaling: uniform limit sqrt(3*scale/n), normal std sqrt(scale/n)
  local shape = { 3, 3, 16, 32 }                              -- fan_in 144, fan_out 288
  local vu = I.variance_scaling{ scale = 2, mode = "fan_out", distribution = "uniform" }(shape)
  T.truthy(vu:abs():max():item() <= math.sqrt(6 / 288) + 1e-7)
  T.near(vu:abs():max():item(), math.sqrt(6 / 288), 1e-3)
  local vn = I.variance_scaling{ scale = 1, mode = "fan_avg", distribution = "untruncated_normal" }({ 300, 100 })
  T.near(std(vn), math.sqrt(1 / 200), 0.002)
  local vt = I.variance_scaling{ scale = 1, mode = "fan_in" }({ 300, 100 })
  T.near(std(vt), math.sqrt(1 / 300), 0.002)
  T.truthy(vt:abs():max():item() <= 2 * math.sqrt(1 / 300) / 0.87962566103423978 + 1e-6)
  -- orthogonal: orthonormal columns (tall) or rows (wide), times gain
  local o = I.orthogonal{ gain = 3 }({ 2, 2, 3, 5 }):reshape({ 12, 5 }):double()
  T.near(o:t():matmul(o), eye(5, 9), 1e-5, 0, "tall: Q^T Q = gain^2 I")
  local w = I.orthogonal()({ 4, 9 }):double()
  T.near(w:matmul(w:t()), eye(4), 1e-5, 0, "wide: Q Q^T = I")
  T.eq(I.constant(2.5)({ 2, 2 }):totable(), { { 2.5, 2.5 }, { 2.5, 2.5 } })
  -- by name, with Keras's defaults; in a layer
  for _, name in ipairs({ "random_normal", "random_uniform", "truncated_normal", "variance_scaling", "orthogonal" }) do
    local f = I.get(name)
    T.eq(f({ 4, 3 }):size(), { 4, 3 }, name)
  end
  T.near(std(I.get("random_normal")({ 300, 100 })), 0.05, 0.002, 0, "random_normal's default stddev")
  local d = rn.layers.Dense(6, { kernel_initializer = I.orthogonal() })
  d(rn.zeros({ 1, 6 }))
  T.near(d.kernel:double():t():matmul(d.kernel:double()), eye(6), 1e-5)
  T.raises(function() I.variance_scaling{ mode = "fan_sideways" } end, "mode must be fan_in, fan_out or fan_avg")
  T.raises(function() I.get("he_normall") end, "unknown initializer 'he_normall'")
end)

T.test("optimizers: clipnorm, global_clipnorm and clipvalue as Keras", function()
  local function step(opts, grads)
    local ps = {}
    for i, g in ipairs(grads) do
      ps[i] = rn.zeros({ #g }, { dtype = "float64", requires_grad = true })
      ps[i].grad = rn.tensor(g, { dtype = "float64" })
    end
    local o = { lr = 1 }
    for k, v in pairs(opts) do o[k] = v end
    rn.optim.SGD(ps, o):step()
    local out = {}
    for i, p in ipairs(ps) do out[i] = (-p):totable() end -- plain SGD at lr 1: the clipped gradient
    return out
  end
  local g = { { 3, 4 }, { 0, 12 } }                           -- norms 5 and 12; global 13
  T.near(step({ clipnorm = 6 }, g), { { 3, 4 }, { 0, 6 } }, 1e-12)
  T.near(step({ global_clipnorm = 6.5 }, g), { { 1.5, 2 }, { 0, 6 } }, 1e-12)
  T.near(step({ global_clipnorm = 20 }, g), { { 3, 4 }, { 0, 12 } }, 1e-12, 0, "under the limit: unchanged")
  T.near(step({ clipvalue = 3.5 }, g), { { 3, 3.5 }, { 0, 3.5 } }, 1e-12)
  T.near(step({ clipnorm = 6, clipvalue = 5 }, g), { { 3, 4 }, { 0, 5 } }, 1e-12, 0, "norm first, then value")
  -- the same on Adam: the update sees the clipped gradient
  local p = rn.zeros({ 2 }, { dtype = "float64", requires_grad = true })
  p.grad = rn.tensor({ 30, 40 }, { dtype = "float64" })
  local q = rn.zeros({ 2 }, { dtype = "float64", requires_grad = true })
  q.grad = rn.tensor({ 3, 4 }, { dtype = "float64" })
  rn.optim.Adam({ p }, { lr = 0.1, clipnorm = 5 }):step()
  rn.optim.Adam({ q }, { lr = 0.1 }):step()
  T.near(p, q, 1e-15)
  T.raises(function() rn.optim.SGD({ p }, { clipnorm = 1, global_clipnorm = 1 }) end,
    "set only one of clipnorm and global_clipnorm")
  T.raises(function() rn.optim.Adam({ p }, { clipvalue = -1 }) end, "clipvalue must be a number > 0")
  T.raises(function() rn.optim.SGD({ p }, { clip_norm = 1 }) end, "unknown option 'clip_norm'.*clipnorm")
end)

T.test("losses: binary_crossentropy (logits and probabilities) and ignore_class", function()
  local x = rn.tensor({ { -2, 0.5 }, { 3, -0.25 } }, { dtype = "float64" })
  local t = rn.tensor({ { 0, 1 }, { 1, 0.25 } }, { dtype = "float64" })
  local want, xs, ts = 0, x:totable(), t:totable()
  for i = 1, 2 do for j = 1, 2 do
    local p = 1 / (1 + math.exp(-xs[i][j]))
    want = want - (ts[i][j] * math.log(p) + (1 - ts[i][j]) * math.log(1 - p))
  end end
  want = want / 4
  T.near(L.binary_crossentropy{ from_logits = true }(x, t):item(), want, 1e-12)
  T.near(L.binary_crossentropy()(x:sigmoid(), t):item(), want, 1e-12)
  T.near(L.get("binary_crossentropy")(x:sigmoid(), t):item(), want, 1e-12)
  -- large logits stay finite
  local big = L.binary_crossentropy{ from_logits = true }(rn.tensor({ 1000, -1000 }), rn.tensor({ 0, 1 })):item()
  T.near(big, 1000, 1e-3)
  -- label smoothing 0.2: targets t*0.8 + 0.1
  local sm = L.binary_crossentropy{ from_logits = true, label_smoothing = 0.2 }(x, t):item()
  T.near(sm, L.binary_crossentropy{ from_logits = true }(x, t * 0.8 + 0.1):item(), 1e-12)
  -- a gradient check of the logits form
  local gradcheck = require "gradcheck"
  gradcheck(function(a) return L.binary_crossentropy{ from_logits = true }(a, t) end, { x:clone() })
  -- per-pixel cross-entropy with an ignored class: the mean over kept pixels only
  rn.manual_seed(42)
  local logits = rn.randn({ 2, 3, 3, 4 }, { dtype = "float64" })
  local labels = rn.tensor({ { { 0, 1, 255 }, { 2, 255, 3 }, { 1, 1, 1 } },
    { { 3, 3, 3 }, { 0, 0, 255 }, { 2, 2, 2 } } }):long()
  local lp = rn.log_softmax(logits, -1):totable()
  local lt, sum, n = labels:totable(), 0, 0
  for a = 1, 2 do for b = 1, 3 do for c = 1, 3 do
    if lt[a][b][c] ~= 255 then sum = sum - lp[a][b][c][lt[a][b][c] + 1]; n = n + 1 end
  end end end
  T.eq(n, 15)
  local loss = L.sparse_categorical_crossentropy{ from_logits = true, ignore_class = 255 }
  T.near(loss(logits, labels):item(), sum / n, 1e-12)
  gradcheck(function(a) return loss(a, labels) end, { logits })
  T.raises(function() L.sparse_categorical_crossentropy{ ignore_class = "void" } end,
    "ignore_class must be an integer class id")
end)
