-- test_bf16.lua - bfloat16 as a full dtype on the CPU: every op, forward and
-- backward, on bf16 tensors against the same op in float32 on the same
-- (bf16-representable) values, rounded to bf16. A tolerance table gives the
-- allowed error per op, relative to the float32 result's largest magnitude:
-- the converting path (float32 kernel, one rounding) is within one bf16
-- rounding (2^-8 relative; 2^-7 allows the double-vs-float formulas of the
-- elementwise ops); oneDNN's native bf16 convolutions (where the capped ISA
-- has AVX512-BF16/AMX) accumulate in float32 in another order, so a little
-- more. The same tests run under ONEDNN_MAX_CPU_ISA=AVX2 (make test-isa),
-- where every op takes the converting path.
local T = require "t"
local rn = require "rn"

local ULP = 2 ^ -8
local TOL = { default = 2 * ULP, conv = 4 * ULP, reduce = 4 * ULP, matmul = 4 * ULP,
              norm = 4 * ULP, attention = 4 * ULP }

-- a float32 tensor of bf16-representable values
local function bvals(shape, scale)
  return (rn.randn(shape) * (scale or 1)):bfloat16():float()
end

local function maxabs(t) return t:float():abs():max():item() end

-- |got - want| <= tol * max|want| (+ a floor for all-zero results)
local function close(got, want, tol, what)
  T.eq(got.dtype, "bfloat16", what .. ": dtype")
  local g, w = got:float(), want:bfloat16():float()
  T.eq(g:size(), w:size(), what .. ": shape")
  local err = maxabs(g - w)
  local scale = math.max(maxabs(w), 1e-6)
  if not (err <= tol * scale) then
    error(string.format("%s: bf16 differs from float32 rounded by %.4g (scale %.4g, tol %.4g)",
      what, err, scale, tol * scale), 2)
  end
end

-- f(inputs...) in float32 and in bf16 (the same values), then the gradients
-- of sum(f * r) for the inputs marked in grads (r: fixed bf16 values)
local function check(what, f, ins, grads, tol)
  tol = tol or TOL.default
  local f32, b16 = {}, {}
  for i, t in ipairs(ins) do
    local isf = rn.is_tensor(t) and t.dtype == "float32"
    f32[i] = isf and t:clone() or t
    b16[i] = isf and t:bfloat16() or t
    if grads and grads[i] then f32[i]:requires_grad_(); b16[i]:requires_grad_() end
  end
  local yf, yb = f(table.unpack(f32)), f(table.unpack(b16))
  close(yb, yf, tol, what .. " forward")
  if not grads then return end
  local r = bvals(yf:size())
  local lf = (yf * r:to(yf.dtype)):sum()
  local lb = (yb * r:bfloat16()):sum()
  lf:backward()
  lb:backward()
  for i in pairs(grads) do
    T.truthy(b16[i].grad, what .. ": input " .. i .. " has a gradient")
    close(b16[i].grad, f32[i].grad, tol * 2, what .. " backward, input " .. i)
  end
end

local OPS = {
  {"relu", {}}, {"sigmoid", {}}, {"tanh", {}}, {"exp", {}}, {"erf", {}}, {"gelu", {}},
  {"gelu_tanh", {}}, {"silu", {}}, {"hard_sigmoid", {}}, {"hard_swish", {}}, {"relu6", {}},
  {"softplus", {}}, {"leaky_relu", {0.15}}, {"elu", {0.8}}, {"clip", {-1.25, 2.5}},
}

T.test("bf16: unary ops and activations, forward and backward", function()
  rn.manual_seed(1801)
  for _, o in ipairs(OPS) do
    check(o[1], function(x) return rn[o[1]](x, table.unpack(o[2])) end, {bvals({4, 37})}, {true})
  end
end)

T.test("bf16: binary ops with broadcasting, forward and backward", function()
  rn.manual_seed(1802)
  local a, b = bvals({3, 5, 7}), bvals({5, 1})
  check("add", function(x, y) return x + y end, {a, b}, {true, true})
  check("sub", function(x, y) return x - y end, {a, b}, {true, true})
  check("mul", function(x, y) return x * y end, {a, b}, {true, true})
  check("div", function(x, y) return x / (y:abs() + 1) end, {a, b}, {true, true})
  check("maximum", function(x, y) return x:maximum(y) end, {a, b}, {true, true})
end)

T.test("bf16: reductions, softmax, log_softmax", function()
  rn.manual_seed(1803)
  local x = bvals({6, 50})
  check("sum", function(t) return t:sum(2) end, {x}, {true}, TOL.reduce)
  check("mean", function(t) return t:mean() end, {x}, {true}, TOL.reduce)
  check("max", function(t) return t:max(2) end, {x}, {true}, TOL.reduce)
  T.eq(x:bfloat16():argmax(2):totable(), x:argmax(2):totable(), "argmax")
  check("softmax", function(t) return rn.softmax(t) end, {x}, {true})
  check("log_softmax", function(t) return rn.log_softmax(t) end, {x}, {true})
end)

T.test("bf16: matmul, batched matmul and linear", function()
  rn.manual_seed(1804)
  check("matmul", rn.matmul, {bvals({17, 33}), bvals({33, 9})}, {true, true}, TOL.matmul)
  check("matmul transposed", function(a, b) return rn.matmul(a, b:t()) end,
    {bvals({17, 33}), bvals({9, 33})}, {true, true}, TOL.matmul)
  check("batched matmul", rn.matmul, {bvals({3, 5, 8}), bvals({3, 8, 4})}, {true, true},
    TOL.matmul)
  check("linear", rn.linear, {bvals({7, 12}), bvals({12, 5}), bvals({5})}, {true, true, true},
    TOL.matmul)
end)

T.test("bf16: conv2d (plain, strided, grouped, depthwise, bias) forward and backward", function()
  rn.manual_seed(1805)
  local cases = {
    {{2, 9, 9, 16}, {3, 3, 16, 32}, {padding = "same"}},
    {{2, 9, 9, 8}, {3, 3, 8, 16}, {stride = 2, padding = 1}},
    {{2, 8, 8, 16}, {1, 1, 16, 16}, {}},
    {{2, 8, 8, 16}, {3, 3, 4, 16}, {padding = "same", groups = 4}},
    {{1, 7, 7, 16}, {3, 3, 1, 16}, {padding = "same", groups = 16}},
  }
  for i, c in ipairs(cases) do
    check("conv2d case " .. i, function(x, w, b) return rn.conv2d(x, w, b, c[3]) end,
      {bvals(c[1]), bvals(c[2], 0.2), bvals({c[2][4]})}, {true, true, true}, TOL.conv)
  end
  check("conv2d_transpose", function(x, w) return rn.conv2d_transpose(x, w, nil,
    {stride = 2, padding = "same"}) end, {bvals({2, 5, 5, 8}), bvals({3, 3, 16, 8}, 0.2)},
    {true, true}, TOL.conv)
  -- the kernel that ran is a bf16 one where the ISA has bf16, else the converting path
  local x, w = bvals({2, 8, 8, 16}):bfloat16(), bvals({3, 3, 16, 16}):bfloat16()
  rn.conv2d(x, w, nil, {padding = "same"})
  local k = rn.cpu.conv_kernels().forward
  local f = rn.cpu.features()
  if f.avx512_bf16 or (f.amx_bf16 and f.amx_tile) then
    T.truthy(not k:find("im2col"), "a oneDNN bf16 kernel ran: " .. k)
  else
    T.truthy(k:find("im2col") or k:find("wino") or k:find("jit") or k:find("brg") or k:find("gemm"),
      "the converting path ran a float32 kernel: " .. k)
  end
end)

T.test("bf16: pooling", function()
  rn.manual_seed(1806)
  local x = bvals({2, 8, 8, 6})
  check("max_pool2d", function(t) return rn.max_pool2d(t, 2) end, {x}, {true})
  check("avg_pool2d", function(t) return rn.avg_pool2d(t, 3, {stride = 2, padding = 1}) end, {x},
    {true})
  check("global_avg_pool2d", rn.global_avg_pool2d, {x}, {true}, TOL.reduce)
end)

T.test("bf16: batch_norm with float32 statistics and parameters", function()
  rn.manual_seed(1807)
  local C = 6
  local x = (bvals({4, 5, 5, C}, 2) + 1):bfloat16():float()
  for _, relu in ipairs({false, true}) do
    local g, b = (bvals({C}) + 1):bfloat16():float(), bvals({C})
    local rm1, rv1 = rn.zeros({C}), rn.ones({C})
    local rm2, rv2 = rn.zeros({C}), rn.ones({C})
    local xb = x:bfloat16():requires_grad_()
    local xf = x:clone():requires_grad_()
    local gb, bb = g:clone():requires_grad_(), b:clone():requires_grad_()
    local gf, bf = g:clone():requires_grad_(), b:clone():requires_grad_()
    local yb = rn.batch_norm(xb, gb, bb, rm1, rv1, {relu = relu})
    local yf = rn.batch_norm(xf, gf, bf, rm2, rv2, {relu = relu})
    close(yb, yf, TOL.norm, "batch_norm relu=" .. tostring(relu))
    -- statistics stay float32 and match float32's (same input values)
    T.eq(rm1.dtype, "float32")
    T.near(rm1, rm2, 1e-6, 1e-5, "running_mean")
    T.near(rv1, rv2, 1e-6, 1e-5, "running_var")
    local r = bvals(yf:size())
    local lb, lf = (yb * r:bfloat16()):sum(), (yf * r):sum()
    lb:backward()
    lf:backward()
    close(xb.grad, xf.grad, 2 * TOL.norm, "batch_norm dx")
    T.eq(gb.grad.dtype, "float32", "gamma's gradient is float32")
    T.near(gb.grad, gf.grad, 0.05 * maxabs(gf.grad), 0, "batch_norm dgamma")
    T.near(bb.grad, bf.grad, 0.05 * maxabs(bf.grad), 0, "batch_norm dbeta")
    -- inference form
    check("batch_norm inference", function(t, gg, bt)
      return rn.batch_norm(t, gg, bt, rm2, rv2, {training = false, relu = relu})
    end, {x, g, b}, {true}, TOL.norm)
  end
  T.raises(function() rn.batch_norm(x:bfloat16(), rn.ones({C}, {dtype = "float64"})) end,
    "valid: bfloat16 or float32")
end)

T.test("bf16: layer_norm, group_norm", function()
  rn.manual_seed(1808)
  local x = bvals({3, 4, 4, 8})
  check("layer_norm", function(t, g, b) return rn.layer_norm(t, g, b) end,
    {x, bvals({8}), bvals({8})}, {true, true, true}, TOL.norm)
  check("group_norm", function(t, g, b) return rn.group_norm(t, 2, g, b) end,
    {x, bvals({8}), bvals({8})}, {true, true, true}, TOL.norm)
end)

T.test("bf16: losses (cross_entropy, mse, binary cross-entropy)", function()
  rn.manual_seed(1809)
  local logits, labels = bvals({8, 10}), rn.tensor({0, 3, 9, 2, 2, 5, 7, 1}, {dtype = "int64"})
  check("cross_entropy", function(t) return rn.cross_entropy(t, labels) end, {logits}, {true})
  check("cross_entropy smoothing", function(t)
    return rn.cross_entropy(t, labels, {label_smoothing = 0.1, reduction = "none"})
  end, {logits}, {true})
  -- the rn.losses objects compute in float32 (Keras's mixed precision): a
  -- float32 loss of bf16 predictions, whose gradient is bf16 again
  local target = bvals({8, 10})
  T.eq(rn.losses.mse()(logits:bfloat16(), target:bfloat16()).dtype, "float32", "mse is float32")
  check("mse", function(t, u) return rn.losses.mse()(t, u):bfloat16() end, {logits, target},
    {true})
  check("binary_crossentropy", function(t, u)
    return rn.losses.binary_crossentropy({from_logits = true})(t, u):bfloat16()
  end, {logits, target:sigmoid():bfloat16():float()}, {true})
end)

T.test("bf16: attention, embedding, pad, resize, concat", function()
  rn.manual_seed(1810)
  check("attention", function(q, k, v) return rn.scaled_dot_product_attention(q, k, v) end,
    {bvals({2, 5, 8}), bvals({2, 7, 8}), bvals({2, 7, 4})}, {true, true, true}, TOL.attention)
  check("attention causal", function(q, k, v)
    return rn.scaled_dot_product_attention(q, k, v, {causal = true})
  end, {bvals({2, 5, 8}), bvals({2, 5, 8}), bvals({2, 5, 4})}, {true, true, true},
    TOL.attention)
  local idx = rn.tensor({{1, 3, 3}, {0, 4, 1}}, {dtype = "int64"})
  check("embedding", function(w) return rn.embedding(idx, w) end, {bvals({5, 6})}, {true})
  local x = bvals({2, 4, 5, 3})
  check("pad reflect", function(t) return rn.pad(t, {{0, 0}, {1, 2}, {2, 1}, {0, 0}},
    {mode = "reflect"}) end, {x}, {true})
  check("resize bilinear", function(t) return rn.resize(t, {7, 9}, {method = "bilinear"}) end,
    {x}, {true})
  check("upsample nearest", function(t) return rn.upsample(t, 2) end, {x}, {true})
  check("concat", function(a, b) return rn.concat({a, b}, 2) end, {x, bvals({2, 3, 5, 3})},
    {true, true})
end)

-- ---- the mixed_bfloat16 policy (Keras's) -----------------------------------------

local layers = require "rn.layers"
local optim = require "rn.optim"

local function has_bf16()
  local f = rn.cpu.features()
  return f.avx512_bf16 or (f.amx_bf16 and f.amx_tile)
end

local function cnn(seed)
  rn.manual_seed(seed)
  layers.reset_names()
  local m = rn.Sequential{layers.Input({8, 8, 3}), layers.Conv2D(16, 3, {padding = "same"}),
    layers.BatchNormalization(), layers.ReLU(), layers.MaxPooling2D(2),
    layers.Conv2D(16, 3, {padding = "same", use_bias = false}), layers.BatchNormalization(),
    layers.ReLU(), layers.GlobalAveragePooling2D(), layers.Dense(4)}
  m:compile{optimizer = optim.SGD{lr = 0.05, momentum = 0.9},
            loss = rn.losses.sparse_categorical_crossentropy{from_logits = true}}
  return m
end

local function with_policy(name, fn)
  rn.mixed_precision.set_global_policy(name)
  local ok, err = pcall(fn)
  rn.mixed_precision.set_global_policy("float32")
  if not ok then error(err, 0) end
end

T.test("mixed_bfloat16: bf16 activations between layers, float32 variables, loss and gradients", function()
  if not has_bf16() then T.skip("no AVX512-BF16/AMX at ISA " .. rn.cpu.features().isa .. ": the policy is refused") end
  rn.manual_seed(1811)
  local x = rn.randn({16, 8, 8, 3})
  local y = rn.tensor({0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3}, {dtype = "int64"})
  local ref, m = cnn(7), cnn(7)
  local loss32 = {}
  for s = 1, 5 do loss32[s] = ref:train_step(x, y).loss end
  with_policy("mixed_bfloat16", function()
    -- each layer's output is bf16; the weights stay float32 (the master copy)
    local h = x
    for i, l in ipairs(m.layers) do
      h = l(h)
      T.eq(h.dtype, "bfloat16", "layer " .. i .. " (" .. l.class_name .. ") output")
    end
    for _, p in ipairs(m:parameters()) do T.eq(p.dtype, "float32", "parameters stay float32") end
    local bn
    for _, l in ipairs(m.layers) do if l.class_name == "BatchNormalization" then bn = l end end
    T.eq(bn.moving_mean.dtype, "float32", "BN statistics stay float32")
    -- the convolution read and wrote bf16 with a oneDNN bf16 kernel: no conversion pass
    local k = rn.cpu.conv_kernels()
    T.truthy(not k.forward:find("im2col"), "bf16 conv kernel: " .. k.forward)
    -- a training step: the loss is float32, the optimizer gets float32 gradients
    local out = m(x)
    local loss = m.loss_fn(out, y)
    T.eq(loss.dtype, "float32", "the loss is float32")
    loss:backward()
    for _, p in ipairs(m:parameters()) do
      T.truthy(p.grad, "every parameter has a gradient")
      T.eq(p.grad.dtype, "float32", "weight gradients reach the optimizer in float32")
    end
    for _, q in ipairs(m:parameters()) do q:zero_grad() end
    -- training tracks float32's within bf16 rounding
    local l16
    for s = 1, 5 do
      l16 = m:train_step(x, y).loss
      T.truthy(math.abs(l16 - loss32[s]) < 0.05 * math.max(1, loss32[s]),
        string.format("step %d: bf16 loss %.5f vs float32 %.5f", s, l16, loss32[s]))
    end
    T.truthy(l16 < loss32[1], "the bf16 training decreased the loss")
    -- inference (the fused conv+BN path) computes in bf16 as well
    m:eval()
    local p = rn.no_grad(function() return m(x) end)
    ref:eval()
    local p32 = rn.no_grad(function() return ref(x) end)
    T.eq(p.dtype, "bfloat16")
    T.truthy(maxabs(p:float() - p32:float()) < 0.1 * math.max(1, maxabs(p32)), "inference near float32")
  end)
end)

T.test("bf16 checkpoints: safetensors BF16 and rn checkpoints load into either policy", function()
  local files = require "files"
  local m = cnn(11)
  local sd16 = {}
  for k, v in pairs(m:state_dict()) do sd16[k] = v:bfloat16() end
  local dir = files.tmpdir()
  local st = dir .. "/bf16.safetensors"
  rn.save_safetensors(st, sd16)
  local back = rn.load_safetensors(st)
  local f = io.open(st, "rb")
  local header = f:read(4096)
  f:close()
  T.truthy(header:find('"dtype":"BF16"', 1, true), "safetensors holds BF16 tensors")
  for k, v in pairs(sd16) do
    T.eq(back[k].dtype, "bfloat16", k)
    T.eq(maxabs(back[k]:float() - v:float()), 0, k .. " round trip")
  end
  -- rn's own checkpoint format keeps the dtype too
  local ck = dir .. "/bf16.rnck"
  rn.save_checkpoint(ck, sd16, "bf16")
  local cb = rn.load_checkpoint(ck)
  for k, v in pairs(sd16) do
    T.eq(cb[k].dtype, "bfloat16", "checkpoint: " .. k)
    T.eq(maxabs(cb[k]:float() - v:float()), 0, "checkpoint: " .. k .. " round trip")
  end
  local function loads_into(policy)
    local m2 = cnn(12)
    m2:load_state_dict(back)
    for k, v in pairs(m2:state_dict()) do
      T.eq(v.dtype, "float32", policy .. ": the model's variables stay float32: " .. k)
      T.eq(maxabs(v - sd16[k]:float()), 0, policy .. ": " .. k .. " loaded exactly")
    end
    return m2
  end
  loads_into("float32")
  if has_bf16() then with_policy("mixed_bfloat16", function() loads_into("mixed_bfloat16") end) end
  files.rmrf(dir)
end)
