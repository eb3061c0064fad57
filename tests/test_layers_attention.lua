-- test_layers_attention.lua - the layers on the new ops: every Activation by
-- name against its formula, LayerNormalization and GroupNormalization
-- against the normalization written out, Embedding, and MultiHeadAttention
-- against attention written with matmul and softmax (self, cross, causal,
-- masked), Keras's weight names and shapes, float64 gradients, errors.
local T = require "t"
local rn = require "rn"
local L = rn.layers
local gradcheck = require "gradcheck"

local function f64(shape) return rn.randn(shape, { dtype = "float64" }) end

T.test("Activation by name: each against its formula (Keras 3's definitions)", function()
  local xs = { -3, -1.5, -0.2, 0, 0.4, 1, 2.5, 7 }
  local x = rn.tensor(xs, { dtype = "float64" })
  local function erf(v) return require("rn").erf(rn.tensor({ v }, { dtype = "float64" })):item() end
  local function sig(v) return 1 / (1 + math.exp(-v)) end
  local function sp(v) return math.log(1 + math.exp(v)) end
  local want = {
    gelu = function(v) return 0.5 * v * (1 + erf(v / math.sqrt(2))) end,
    relu6 = function(v) return math.min(math.max(v, 0), 6) end,
    silu = function(v) return v * sig(v) end,
    swish = function(v) return v * sig(v) end,
    hard_sigmoid = function(v) return math.min(math.max(v + 3, 0), 6) / 6 end,
    hard_swish = function(v) return v * math.min(math.max(v + 3, 0), 6) / 6 end,
    hard_silu = function(v) return v * math.min(math.max(v + 3, 0), 6) / 6 end,
    softplus = sp,
    leaky_relu = function(v) return v > 0 and v or 0.2 * v end,
    elu = function(v) return v > 0 and v or math.exp(v) - 1 end,
    selu = function(v) return 1.0507009873554805 * (v > 0 and v or 1.6732632423543772 * (math.exp(v) - 1)) end,
    softsign = function(v) return v / (1 + math.abs(v)) end,
    exponential = math.exp,
    mish = function(v) return v * math.tanh(sp(v)) end,
    relu = function(v) return math.max(v, 0) end,
    sigmoid = sig,
    tanh = math.tanh,
    linear = function(v) return v end,
  }
  for name, f in pairs(want) do
    local got = L.Activation(name)(x):totable()
    for i, v in ipairs(xs) do T.near(got[i], f(v), 1e-12, 1e-12, name .. "(" .. v .. ")") end
    -- and as a Dense activation
    local d = L.Dense(3, { activation = name:upper() })
    T.eq(d(rn.zeros({ 2, 4 })):size(), { 2, 3 }, name .. " in Dense")
  end
  -- ReLU(max_value = 6) is the native relu6; negative_slope the native leaky_relu
  T.near(L.ReLU({ max_value = 6 })(x), x:relu6(), 0, 0)
  T.near(L.ReLU({ negative_slope = 0.1, max_value = 2 })(x), rn.leaky_relu(x, 0.1):minimum(2), 0, 0)
end)

T.test("LayerNormalization and GroupNormalization: values, Keras's defaults, gradients", function()
  rn.manual_seed(51)
  local x = f64({ 2, 3, 8 })
  local ln = L.LayerNormalization()
  ln(x:float()) -- build
  ln:to("float64")
  rn.no_grad(function()
    ln.gamma:copy_(rn.arange(8, { dtype = "float64" }) * 0.1 + 1)
    ln.beta:copy_(rn.arange(8, { dtype = "float64" }) * -0.05)
  end)
  local m = x:mean(-1, true)
  local v = ((x - m) * (x - m)):mean(-1, true)
  local ref = (x - m) / (v + 1e-3):sqrt() * ln.gamma + ln.beta
  T.near(ln(x), ref, 1e-12, 1e-12, "layer norm, epsilon 1e-3")
  T.eq(ln.epsilon, 1e-3)
  -- group norm on (N,H,W,C): 8 channels in 4 groups of 2
  local g = L.GroupNormalization({ groups = 4, epsilon = 1e-5 })
  local xg = f64({ 2, 3, 3, 8 })
  g(xg:float())
  g:to("float64")
  local r = xg:reshape({ 2, 9, 4, 2 }):permute(1, 3, 2, 4):reshape({ 2, 4, 18 })
  local gm = r:mean(-1, true)
  local gv = ((r - gm) * (r - gm)):mean(-1, true)
  local gn = ((r - gm) / (gv + 1e-5):sqrt()):reshape({ 2, 4, 9, 2 }):permute(1, 3, 2, 4):reshape({ 2, 3, 3, 8 })
  T.near(g(xg), gn, 1e-12, 1e-12, "group norm (gamma 1, beta 0)")
  T.eq(#g:weights(), 2)
  for _, layer in ipairs({ ln, g }) do
    local inp = layer == ln and x or xg
    local ins = { inp }
    for _, p in ipairs(layer:parameters()) do ins[#ins + 1] = p end
    local ok, err = pcall(gradcheck, function(a) return layer(a) end, ins)
    assert(ok, layer.class_name .. ": " .. tostring(err))
  end
  T.raises(function() L.GroupNormalization({ groups = 3 })(L.Input({ 4, 4, 8 })) end,
    "the 8 channels are not divisible by groups 3")
  T.raises(function() L.LayerNormalization({ epsilon = 0 }) end, "epsilon must be a number > 0")
end)

T.test("Embedding: rows by id, any id shape, Keras's weight, range errors", function()
  local e = L.Embedding(5, 3)
  e(rn.zeros({ 1 }):long())
  T.eq(e.embeddings:size(), { 5, 3 })
  T.truthy(e.embeddings:abs():max():item() <= 0.05, "Keras's uniform(-0.05, 0.05)")
  rn.no_grad(function() e.embeddings:copy_(rn.arange(15):reshape({ 5, 3 })) end)
  local ids = rn.tensor({ { 4, 0 }, { 2, 2 } }):long()
  T.eq(e(ids):totable(), { { { 12, 13, 14 }, { 0, 1, 2 } }, { { 6, 7, 8 }, { 6, 7, 8 } } })
  T.eq(e(L.Input({ 7 })).shape, { -1, 7, 3 })
  T.raises(function() e(rn.tensor({ 5 }):long()) end, "5")
  -- the gradient of a repeated id accumulates
  local w = e.embeddings
  e(ids):sum():backward()
  T.eq(w.grad:totable(), { { 1, 1, 1 }, { 0, 0, 0 }, { 2, 2, 2 }, { 0, 0, 0 }, { 1, 1, 1 } })
end)

-- attention written out: softmax(q k^T * scale + mask) v per head
local function mha_ref(m, q, v, k, mask, causal)
  local H, dk = m.num_heads, m.key_dim
  local function proj(x, w, b)
    local y = rn.matmul(x, w:reshape({ w:size(1), -1 }))
    if b then y = y + b:reshape({ -1 }) end
    return y:reshape({ x:size(1), x:size(2), H, -1 }):permute(1, 3, 2, 4)
  end
  local Q, K, V = proj(q, m.wq, m.bq), proj(k, m.wk, m.bk), proj(v, m.wv, m.bv)
  local s = rn.matmul(Q, K:transpose(-1, -2)) * (1 / math.sqrt(dk))
  local tq, tk = q:size(2), k:size(2)
  if causal then
    local c = {}
    for i = 1, tq do c[i] = {} for j = 1, tk do c[i][j] = j > i and -1e9 or 0 end end
    s = s + rn.tensor(c, { dtype = s.dtype })
  end
  if mask then s = s + (mask:unsqueeze(2):to(s.dtype) - 1) * 1e9 end
  local a = rn.matmul(rn.softmax(s, -1), V)
  local o = a:permute(1, 3, 2, 4):reshape({ q:size(1), tq, -1 })
  return rn.matmul(o, m.wo:reshape({ -1, m.out_dim })) + m.bo
end

T.test("MultiHeadAttention: self, cross, causal and masked attention against the written-out form", function()
  rn.manual_seed(52)
  local q, v = f64({ 2, 5, 12 }), f64({ 2, 7, 10 })
  local self_att = L.MultiHeadAttention(3, 4)
  self_att(q:float())
  self_att:to("float64")
  T.near(self_att(q), mha_ref(self_att, q, q, q), 1e-10, 1e-10, "self-attention")
  local cross = L.MultiHeadAttention(2, 6, { value_dim = 5, output_shape = 9 })
  cross({ q:float(), v:float() })
  cross:to("float64")
  T.eq(cross({ q, v }):size(), { 2, 5, 9 })
  T.near(cross({ q, v }), mha_ref(cross, q, v, v), 1e-10, 1e-10, "cross-attention")
  local mask = rn.ones({ 2, 5, 7 })
  mask:narrow(3, 6, 2):fill_(0)                                 -- the last two keys are padding
  T.near(cross({ q, v, v, mask }), mha_ref(cross, q, v, v, mask), 1e-10, 1e-10, "padding mask")
  local causal = L.MultiHeadAttention(3, 4, { causal = true })
  causal(q:float())
  causal:to("float64")
  T.near(causal(q), mha_ref(causal, q, q, q, nil, true), 1e-10, 1e-10, "causal")
  -- Keras's weights and count: 3 * (D*H*k + H*k) + H*k*D + D
  local names = {}
  for _, w in ipairs(self_att:weights()) do names[#names + 1] = w.kind .. table.concat(w.tensor:size(), "x") end
  T.eq(names, { "query/kernel12x3x4", "query/bias3x4", "key/kernel12x3x4", "key/bias3x4", "value/kernel12x3x4",
    "value/bias3x4", "attention_output/kernel3x4x12", "attention_output/bias12" })
  T.eq(self_att:count_params(), 3 * (12 * 12 + 12) + 12 * 12 + 12)
  -- float64 gradients of the input and every weight
  local ins = { f64({ 1, 4, 12 }) }
  for _, p in ipairs(causal:parameters()) do ins[#ins + 1] = p end
  local ok, err = pcall(gradcheck, function(a) return causal(a) end, ins)
  assert(ok, "MultiHeadAttention: " .. tostring(err))
  T.raises(function() L.MultiHeadAttention(2, 4, { dropout = 0.1 }) end, "attention dropout is not supported")
  T.raises(function() self_att(rn.zeros({ 2, 5, 11 })) end, "do not match the features the layer was built for")
end)

T.test("a Vision Transformer: timm's vit_tiny_patch16_224 count, and a small one trains", function()
  local A = dofile("scripts/architectures.lua")
  -- timm.create_model("vit_tiny_patch16_224"): sum(p.numel()) = 5,717,416
  local s = A.vit():summary({ print = false })
  T.eq(s:match("Total params: ([%d,]+)"), "5,717,416")
  rn.manual_seed(53)
  local m = A.vit{ input_shape = { 16, 16, 1 }, classes = 4, patch = 4, dim = 32, depth = 2, heads = 2, mlp = 64 }
  local x = rn.randn({ 32, 16, 16, 1 })
  -- a learnable target: the class is the quadrant with the largest mean
  local q = {}
  for i, t in ipairs({ { 1, 1 }, { 1, 9 }, { 9, 1 }, { 9, 9 } }) do
    q[i] = x:narrow(2, t[1], 8):narrow(3, t[2], 8):mean({ 2, 3, 4 }):reshape({ 32, 1 })
  end
  local y = rn.concat(q, 2):argmax(2)
  local loss = rn.losses.sparse_categorical_crossentropy{ from_logits = true }
  m:compile({ optimizer = rn.optim.Adam{ lr = 3e-3 }, loss = loss })
  local function probe() return rn.no_grad(function() return loss(m(x), y):item() end) end
  local before = probe()
  for _ = 1, 30 do m:train_step(x, y) end
  local after = probe()
  T.truthy(after < before * 0.7, string.format("loss %.4f -> %.4f", before, after))
end)
