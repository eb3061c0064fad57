-- test_cuda_ops2.lua - CPU-vs-GPU parity of the CUDA kernels that
-- test_cuda.lua leaves out (issue #21), forward and the gradients of every
-- float input: grouped and depthwise conv2d, conv2d_transpose, resize and
-- upsample edge cases, attention at T = 1 and T = 65 with causal and
-- padding masks, broadcast batched matmul, every activation as a layer of a
-- tiny model, bfloat16 TENSORS on the device (each op against the same bf16
-- op on the CPU within 2e-2 of the largest value; an op that refuses bf16 on
-- cuda is listed as "bf16 on cuda refused: <op>: <message>", not failed),
-- and one training step of tiny MobileNetV2 and ViT models
-- (scripts/architectures.lua) against the CPU from the same weights.
-- Harness and tolerance rows: tests/lib/cuda_parity.lua. Without a device
-- every test skips with the reason; RN_CUDA_TEST_ON_CPU=1 runs them with
-- "cpu" as the device (a check of the tests themselves); RN_TEST_LIGHT=1
-- uses smaller inputs.
local T = require "t"
local rn = require "rn"
local P = require "cuda_parity"
local ON_CPU, LIGHT, DEV = P.ON_CPU, P.LIGHT, P.DEV
local need_gpu, use_tol, parity, near, to_dev, relerr =
  P.need_gpu, P.use_tol, P.parity, P.near, P.to_dev, P.relerr

local function dims(s) return table.concat(s, "x") end
-- "k=v k=v" of an options table, sorted (tensors shown by their shape)
local function optstr(o)
  local t = {}
  for k, v in pairs(o or {}) do
    if rn.is_tensor(v) then v = v.dtype .. " " .. dims(v:size())
    elseif type(v) == "table" then v = "{" .. table.concat(v, ",") .. "}" end
    t[#t + 1] = k .. "=" .. tostring(v)
  end
  table.sort(t)
  return table.concat(t, " ")
end

local N = LIGHT and 1 or 2

-- ---- grouped and depthwise conv2d ------------------------------------------------

-- {label, x (N,H,W,Cin), w (KH,KW,Cin/groups,Cout), options, bias?}
local GROUP_CASES = {
  {"depthwise x1, same", {N, 9, 9, 8}, {3, 3, 1, 8}, {padding = "same", groups = 8}, true},
  {"depthwise x2, same, no bias", {N, 9, 9, 8}, {3, 3, 1, 16}, {padding = "same", groups = 8}, false},
  {"depthwise x1, stride 2 same (asymmetric)", {N, 10, 9, 6}, {3, 3, 1, 6},
   {padding = "same", stride = 2, groups = 6}, true},
  {"depthwise x2, dilation 2 valid", {N, 11, 11, 4}, {3, 3, 1, 8},
   {padding = "valid", dilation = 2, groups = 4}, true},
  {"depthwise 5x5, stride 2 dilation 2 same", {N, 12, 12, 4}, {5, 5, 1, 4},
   {padding = "same", stride = 2, dilation = 2, groups = 4}, false},
  {"groups 2, same", {N, 8, 8, 8}, {3, 3, 4, 6}, {padding = "same", groups = 2}, true},
  {"groups 2, 1x1", {N, 6, 6, 8}, {1, 1, 4, 6}, {groups = 2}, false},
  {"groups 4, stride 2 valid", {N, 9, 9, 8}, {3, 3, 2, 12},
   {padding = "valid", stride = 2, groups = 4}, true},
  {"groups 4, dilation 2 same, no bias", {N, 10, 10, 16}, {3, 3, 4, 8},
   {padding = "same", dilation = 2, groups = 4}, false},
  {"groups 4, stride 2 same, 16 -> 32", {N, 8, 8, 16}, {3, 3, 4, 32},
   {padding = "same", stride = 2, groups = 4}, true},
}

T.test("cuda ops2: grouped and depthwise conv2d, forward and backward, float32 and float64", function()
  need_gpu()
  use_tol("conv")
  rn.manual_seed(2101)
  for _, c in ipairs(GROUP_CASES) do
    for _, dt in ipairs({"float32", "float64"}) do
      local o = {dtype = dt}
      local x, w = rn.randn(c[2], o), rn.randn(c[3], o) * 0.3
      local name = string.format("conv2d %s %s (x %s, w %s, %s)", c[1], dt, dims(c[2]), dims(c[3]),
                                 optstr(c[4]))
      if c[5] then
        parity(name, function(xx, ww, bb) return rn.conv2d(xx, ww, bb, c[4]) end,
               {x, w, rn.randn({c[3][4]}, o)}, {grad = true})
      else
        parity(name, function(xx, ww) return rn.conv2d(xx, ww, nil, c[4]) end, {x, w}, {grad = true})
      end
    end
  end
  -- a depthwise conv of a permuted (NCHW-stored) x: the kernels see strides
  parity("conv2d depthwise of a permuted x (x 2x8x7x9 NCHW)", function(xx, ww)
    return rn.conv2d(xx:permute(1, 3, 4, 2), ww, nil, {padding = "same", groups = 8})
  end, {rn.randn({N, 8, 7, 9}), rn.randn({3, 3, 1, 8}) * 0.3}, {grad = true})
end)

-- ---- conv2d_transpose ----------------------------------------------------------

-- {label, x (N,H,W,Cin), w (KH,KW,Cout,Cin), options, bias?}
local TCONV_CASES = {
  {"k2 s2 valid", {N, 5, 6, 8}, {2, 2, 4, 8}, {stride = 2}, true},
  {"k2 s2 valid, no bias", {N, 4, 4, 3}, {2, 2, 5, 3}, {stride = 2}, false},
  {"k3 s2 same", {N, 5, 5, 6}, {3, 3, 4, 6}, {stride = 2, padding = "same"}, true},
  {"k3 s2 same, output_padding 1", {N, 5, 6, 6}, {3, 3, 4, 6},
   {stride = 2, padding = "same", output_padding = 1}, true},
  {"k3 s2 same, output_padding {0,1}, no bias", {N, 5, 5, 4}, {3, 3, 3, 4},
   {stride = 2, padding = "same", output_padding = {0, 1}}, false},
  {"k4 s2 padding 1", {N, 4, 5, 4}, {4, 4, 3, 4}, {stride = 2, padding = 1}, true},
  {"k4 s2 same, no bias", {N, 4, 4, 8}, {4, 4, 8, 8}, {stride = 2, padding = "same"}, false},
  {"k3 s1 same dilation 2", {N, 6, 6, 4}, {3, 3, 5, 4}, {padding = "same", dilation = 2}, true},
}

T.test("cuda ops2: conv2d_transpose, forward and backward, float32 and float64", function()
  need_gpu()
  use_tol("conv")
  rn.manual_seed(2102)
  for _, c in ipairs(TCONV_CASES) do
    for _, dt in ipairs({"float32", "float64"}) do
      local o = {dtype = dt}
      local x, w = rn.randn(c[2], o), rn.randn(c[3], o) * 0.3
      local name = string.format("conv2d_transpose %s %s (x %s, w %s, %s)", c[1], dt, dims(c[2]),
                                 dims(c[3]), optstr(c[4]))
      if c[5] then
        parity(name, function(xx, ww, bb) return rn.conv2d_transpose(xx, ww, bb, c[4]) end,
               {x, w, rn.randn({c[3][3]}, o)}, {grad = true})
      else
        parity(name, function(xx, ww) return rn.conv2d_transpose(xx, ww, nil, c[4]) end, {x, w},
               {grad = true})
      end
    end
  end
  -- groups are not an option of conv2d_transpose: the same clear error on both devices
  for _, dev in ipairs({"cpu", DEV}) do
    T.raises(function()
      return rn.conv2d_transpose(rn.randn({1, 4, 4, 4}):to(dev), rn.randn({3, 3, 2, 4}):to(dev), nil,
                                 {stride = 2, groups = 2})
    end, "groups")
  end
end)

-- ---- resize and upsample ------------------------------------------------------------
-- test_cuda.lua covers pad (all modes), upsample x2 and two resize sizes;
-- here other factors, shapes, edges (1 pixel, 1 channel) and a view.

T.test("cuda ops2: upsample and resize (nearest, bilinear) edge cases, forward and backward", function()
  need_gpu()
  use_tol("pool")
  rn.manual_seed(2103)
  local im = LIGHT and {1, 5, 4, 3} or {2, 9, 7, 5}
  for _, dt in ipairs({"float32", "float64"}) do
    local o = {dtype = dt}
    for _, m in ipairs({"nearest", "bilinear"}) do
      for _, f in ipairs({3, {2, 3}, {1, 4}}) do
        local fs = type(f) == "table" and table.concat(f, "x") or tostring(f)
        parity(string.format("upsample %s factor %s %s (x %s)", m, fs, dt, dims(im)),
               function(x) return rn.upsample(x, f, {method = m}) end, {rn.randn(im, o)}, {grad = true})
      end
      for _, sz in ipairs({{1, 1}, {1, 13}, {im[2] * 2 + 1, im[3] - 2}, {im[2] - 1, im[3] * 3}}) do
        parity(string.format("resize %s to %dx%d %s (x %s)", m, sz[1], sz[2], dt, dims(im)),
               function(x) return rn.resize(x, sz, {method = m}) end, {rn.randn(im, o)}, {grad = true})
      end
      parity(string.format("resize %s of a 1x1 one-channel image to 5x6 %s", m, dt),
             function(x) return rn.resize(x, {5, 6}, {method = m}) end, {rn.randn({N, 1, 1, 1}, o)},
             {grad = true})
      parity(string.format("resize %s of a permuted x to 7x4 %s", m, dt),
             function(x) return rn.resize(x:permute(1, 3, 2, 4), {7, 4}, {method = m}) end,
             {rn.randn(im, o)}, {grad = true})
    end
    parity("pad reflect by L-1 then bilinear " .. dt, function(x)
      return rn.resize(rn.pad(x, {{0, 0}, {im[2] - 1, im[2] - 1}, {1, im[3] - 1}, {0, 0}},
                              {mode = "reflect"}), {im[2], im[3]}, {method = "bilinear"})
    end, {rn.randn(im, o)}, {grad = true})
  end
end)

-- ---- scaled_dot_product_attention -----------------------------------------------------
-- Masks: nonzero = attend (uint8, or any dtype: nonzero -> 1); no additive
-- (float bias) masks in the op. Key 1 is always visible, so no row is empty.

local function pad_mask(B, Tk, dt)
  local m = {}
  for b = 1, B do
    local keep = math.max(1, Tk - 3 * b + 2) -- a different length per batch entry
    local row = {}
    for j = 1, Tk do row[j] = j <= keep and 1 or 0 end
    m[b] = {{row}}
  end
  return rn.tensor(m, {dtype = dt}) -- (B, 1, 1, Tk)
end

T.test("cuda ops2: attention at T = 1 and T = 65, head dims 16 and 64, causal and padding masks", function()
  need_gpu()
  use_tol("reduce")
  rn.manual_seed(2104)
  math.randomseed(2104)
  local B, H = 2, 2
  for _, Tn in ipairs(LIGHT and {1, 9} or {1, 65}) do
    for _, D in ipairs({16, 64}) do
      for _, dt in ipairs({"float32", "float64"}) do
        local o = {dtype = dt}
        local full = {}
        for i = 1, B * H * Tn * Tn do full[i] = ((i - 1) % Tn == 0 or math.random() < 0.7) and 1 or 0 end
        local cases = {
          {"plain", {}},
          {"causal", {causal = true}},
          {"uint8 padding mask (B,1,1,T)", {mask = pad_mask(B, Tn, "uint8")}},
          {"float32 0/1 padding mask", {mask = pad_mask(B, Tn, "float32")}},
          {"padding mask + causal, scale 0.3", {mask = pad_mask(B, Tn, "uint8"), causal = true, scale = 0.3}},
          {"full uint8 mask (B,H,T,T)", {mask = rn.tensor(full, {dtype = "uint8"}):reshape({B, H, Tn, Tn})}},
        }
        for _, c in ipairs(cases) do
          local name = string.format("attention %s T=%d D=%d %s (q %s, %s)", c[1], Tn, D, dt,
                                     dims({B, H, Tn, D}), optstr(c[2]))
          parity(name, function(q, k, v)
            local opts = {causal = c[2].causal, scale = c[2].scale}
            if c[2].mask then opts.mask = q.device == "cpu" and c[2].mask or to_dev(c[2].mask) end
            return rn.scaled_dot_product_attention(q, k, v, opts)
          end, {rn.randn({B, H, Tn, D}, o), rn.randn({B, H, Tn, D}, o), rn.randn({B, H, Tn, D}, o)},
          {grad = true})
        end
      end
    end
  end
  -- 3-d (B, T, D) inputs, Tq ~= Tk with a padding mask over the keys
  parity("attention 3-d q (2x1x16), k/v (2x65x16), padding mask", function(q, k, v)
    local m = pad_mask(2, 65, "uint8"):reshape({2, 1, 65})
    return rn.scaled_dot_product_attention(q, k, v, {mask = q.device == "cpu" and m or to_dev(m)})
  end, {rn.randn({2, 1, 16}), rn.randn({2, 65, 16}), rn.randn({2, 65, 16})}, {grad = true})
end)

-- ---- batched matmul with broadcasting -----------------------------------------------

T.test("cuda ops2: batched matmul broadcasting over leading dims, forward and backward", function()
  need_gpu()
  use_tol("gemm")
  rn.manual_seed(2105)
  local cases = {
    {{2, 1, 5, 7}, {3, 7, 4}}, {{5, 7}, {2, 3, 7, 4}}, {{2, 3, 5, 7}, {1, 7, 4}},
    {{1, 5, 7}, {4, 7, 3}}, {{7}, {2, 7, 4}}, {{2, 3, 5, 7}, {7}}, {{3, 1, 1, 5, 7}, {2, 1, 7, 6}},
    {{2, 1, 33, 65}, {3, 65, 17}},
  }
  for _, c in ipairs(cases) do
    for _, dt in ipairs({"float32", "float64"}) do
      local o = {dtype = dt}
      parity(string.format("matmul %s @ %s %s", dims(c[1]), dims(c[2]), dt), rn.matmul,
             {rn.randn(c[1], o), rn.randn(c[2], o)}, {grad = true})
    end
  end
  parity("matmul broadcast of a transposed view (2x1x7x5)^T @ (3x7x4)", function(a, b)
    return rn.matmul(a:transpose(3, 4), b)
  end, {rn.randn({2, 1, 7, 5}), rn.randn({3, 7, 4})}, {grad = true})
end)

-- An operand that is an expanded view (stride-0 batch dims, shape the whole
-- batch) gets the per-batch gradient, as its contiguous copy does
-- (core/ops/matmul.c grad_for; the CPU's own test: test_matmul_batched.lua).
T.test("cuda ops2: matmul of an expanded (stride-0 batch) operand, gradient of the view", function()
  need_gpu()
  use_tol("gemm")
  rn.manual_seed(2110)
  local a, b = rn.randn({1, 5, 7}), rn.randn({3, 7, 4})
  local function grad_of(dev, contig)
    local x = a:to(dev):detach():requires_grad_()
    local e = x:expand({3, 5, 7})
    local l = rn.matmul(contig and e:contiguous() or e, b:to(dev)):sum()
    l:backward()
    return x.grad:cpu()
  end
  local e = (grad_of("cpu", false) - grad_of("cpu", true)):abs():max():item()
  T.truthy(e < 1e-4, string.format("CPU: matmul backward of an expanded operand (1x5x7 -> 3x5x7) @ 3x7x4 "
    .. "differs from its contiguous copy's by %.3g", e))
  near(grad_of(DEV, false), grad_of("cpu", true), "matmul expanded 1x5x7 -> 3x5x7 @ 3x7x4: gradient")
  parity("matmul of an expanded operand (1x5x7 expanded to 3x5x7) @ 3x7x4", function(x, y)
    return rn.matmul(x:expand({3, 5, 7}), y)
  end, {a, b}, {grad = true})
end)

-- ---- every activation as a layer of a tiny model -------------------------------------------

local L = rn.layers

-- copies every weight (trainable or not) of src into dst, by position
local function copy_weights(dst, src, what)
  local wd, ws = dst:weights(), src:weights()
  T.eq(#wd, #ws, what .. ": weight count")
  rn.no_grad(function()
    for i = 1, #ws do
      T.eq(wd[i].tensor:size(), ws[i].tensor:size(), what .. ": weight " .. ws[i].name)
      wd[i].tensor:copy_(ws[i].tensor)
    end
  end)
end

-- forward in training mode, loss, backward on the CPU model mc and the
-- device model mg (same weights); compares the output, loss, every gradient
-- and every non-trainable weight (BN statistics) within the row tol
local function step_parity(what, mc, mg, x, y, loss_fn, tol)
  local lc = loss_fn(mc(x, {training = true}), y)
  local pg = mg(to_dev(x), {training = true})
  T.eq(pg.device, DEV, what .. ": output device")
  local lg = loss_fn(pg, to_dev(y))
  lc:backward()
  lg:backward()
  near(lg:cpu(), lc, string.format("%s: loss (cpu %.6g)", what, lc:item()), tol)
  local wc, wg = mc:weights(), mg:weights()
  for i = 1, #wc do
    local nm = string.format("%s: %s %s", what, wc[i].name, dims(wc[i].tensor:size()))
    T.eq(wg[i].tensor.device, DEV, nm .. " device")
    if wc[i].trainable then
      T.truthy(wc[i].tensor.grad and wg[i].tensor.grad, nm .. ": has a gradient on both devices")
      near(wg[i].tensor.grad:cpu(), wc[i].tensor.grad, nm .. " gradient", tol)
    else
      near(wg[i].tensor:cpu(), wc[i].tensor, nm .. " (after the training forward)", tol)
    end
  end
end

T.test("cuda ops2: every activation as a layer of a tiny Dense model, one step against the CPU", function()
  need_gpu()
  rn.manual_seed(2106)
  local x, y = rn.randn({8, 12}) * 2, (rn.rand({8}) * 3):long()
  local names = {"relu", "sigmoid", "tanh", "gelu", "relu6", "silu", "swish", "hard_sigmoid",
                 "hard_swish", "hard_silu", "softplus", "leaky_relu", "elu", "selu", "softsign",
                 "exponential", "mish", "softmax", "log_softmax"}
  local loss_fn = rn.losses.sparse_categorical_crossentropy{from_logits = true}
  for _, a in ipairs(names) do
    local function make()
      local inp = L.Input({12})
      local h = L.Dense(16)(inp)
      h = L.Activation(a)(h)
      h = L.Dense(3, {activation = a == "exponential" and "tanh" or a})(h)
      return rn.Model(inp, L.Dense(3)(h))
    end
    local mc, mg = make(), make()
    copy_weights(mg, mc, a)
    mg:to(DEV)
    step_parity("activation layer " .. a, mc, mg, x, y, loss_fn, "model")
  end
end)

-- ---- bfloat16 tensors on the device ---------------------------------------------------
-- Each op on bf16 tensors on the device against the same bf16 op on the CPU:
-- max |gpu - cpu| <= 2e-2 * max |cpu|, output and gradients. An op the
-- device refuses with an error is listed ("bf16 on cuda refused: ...") and
-- not failed; with RN_CUDA_TEST_ON_CPU both sides are the CPU.

local BF_RTOL = 2e-2
local bf = {}

local function isfloat(t) return t.dtype == "bfloat16" or t.dtype == "float32" or t.dtype == "float64" end

local function refused(what, stage, err)
  err = tostring(err):gsub("\n.*", "")
  io.write(string.format("bf16 on cuda refused: %s%s: %s\n", what, stage, err))
  T.truthy(#err > 0, what .. ": the refusal has a message")
  bf.refused = (bf.refused or 0) + 1
end

local function bf_close(got, want, what)
  T.eq(got.device, DEV, what .. ": device")
  T.eq(got.dtype, want.dtype, what .. ": dtype")
  T.eq(got:size(), want:size(), what .. ": shape")
  local e = relerr(got, want)
  T.truthy(e <= BF_RTOL, string.format("%s: max error %.3g of the largest |value| %.4g (limit %g, %s)",
                                       what, e, want:float():abs():max():item(), BF_RTOL, dims(want:size())))
end

-- fn on CPU leaves and on device leaves (the same values); every float input
-- marked by grads gets a gradient of sum(y * r)
local function bf_parity_(what, fn, inputs, grads)
  local ci, gi = {}, {}
  for i, x in ipairs(inputs) do
    ci[i] = x:detach():clone()
    gi[i] = to_dev(x):detach()
    if grads ~= false and isfloat(x) then ci[i]:requires_grad_(); gi[i]:requires_grad_() end
  end
  local yc = fn(table.unpack(ci))
  local ok, yg = pcall(fn, table.unpack(gi))
  if not ok then return refused(what, "", yg) end
  bf_close(yg, yc, what .. " forward")
  if grads == false then return end
  local r = rn.randn(yc:size()):to(yc.dtype)
  local lc = (yc * r):sum()
  lc:backward()
  local okb, err = pcall(function() (yg * to_dev(r)):sum():backward() end)
  if not okb then return refused(what, " (backward)", err) end
  for i = 1, #inputs do
    if ci[i].requires_grad then
      T.truthy(gi[i].grad, what .. ": input " .. i .. " has a gradient")
      bf_close(gi[i].grad, ci[i].grad, string.format("%s gradient of input %d (%s %s)", what, i,
                                                     inputs[i].dtype, dims(inputs[i]:size())))
    end
  end
end

-- every op is checked even after a failure; bf_done() raises them all at once
local function bf_parity(what, fn, inputs, grads)
  bf.checked = (bf.checked or 0) + 1
  local ok, err = pcall(bf_parity_, what, fn, inputs, grads)
  if not ok then
    if T.is_skip(err) then error(err, 0) end
    bf.fails = bf.fails or {}
    bf.fails[#bf.fails + 1] = tostring(err)
  end
end

local function bf_done(what)
  io.write(string.format("bf16 on cuda, %s: %d ops checked, %d refused, %d failed\n", what,
                         bf.checked or 0, bf.refused or 0, bf.fails and #bf.fails or 0))
  local fails = bf.fails
  bf.checked, bf.refused, bf.fails = 0, 0, nil
  if fails then error(#fails .. " bf16 op(s) differ:\n  " .. table.concat(fails, "\n  "), 0) end
end

local function b(shape, scale) return (rn.randn(shape) * (scale or 1)):bfloat16() end

T.test("cuda ops2: bfloat16 tensors on the device match the bf16 CPU ops (elementwise, reductions, softmax)", function()
  need_gpu()
  rn.manual_seed(2107)
  for _, u in ipairs({{"relu"}, {"sigmoid"}, {"tanh"}, {"exp"}, {"erf"}, {"gelu"}, {"gelu_tanh"},
                      {"silu"}, {"hard_swish"}, {"relu6"}, {"softplus"}, {"neg"}, {"abs"},
                      {"leaky_relu", 0.15}, {"elu", 0.8}, {"clip", -1.25, 2.5}}) do
    bf_parity("bf16 " .. u[1], function(t) return t[u[1]](t, table.unpack(u, 2)) end, {b({5, 37}, 2)})
  end
  bf_parity("bf16 sqrt", function(t) return t:sqrt() end, {(rn.rand({5, 37}) + 0.5):bfloat16()})
  bf_parity("bf16 log", function(t) return t:log() end, {(rn.rand({5, 37}) + 0.5):bfloat16()})
  local a, c = b({3, 5, 7}), b({5, 1})
  for _, op in ipairs({"add", "sub", "mul", "maximum", "minimum"}) do
    bf_parity("bf16 " .. op .. " (3x5x7, 5x1)", rn[op], {a, c})
  end
  bf_parity("bf16 div (3x5x7, 5x1)", function(x, y) return x / (y:abs() + 1) end, {a, c})
  bf_parity("bf16 scalar ops", function(x) return (x * 3 - 1) / 2 + x ^ 2 end, {b({4, 6})})
  bf_parity("bf16 mul permuted view", function(x, y) return x:permute(3, 1, 2) * y end,
            {b({7, 5, 3}), b({3, 7, 5})})
  local x = b({6, 50})
  for _, r in ipairs({{"sum", 2}, {"mean", 1}, {"max", 2}, {"min", 1}}) do
    bf_parity("bf16 " .. r[1] .. " dim " .. r[2], function(t) return t[r[1]](t, r[2]) end, {x})
  end
  bf_parity("bf16 sum of everything (4096)", function(t) return t:sum() end, {b({64, 64})})
  bf_parity("bf16 argmax", function(t) return t:argmax(2) end, {x}, false)
  bf_parity("bf16 softmax", rn.softmax, {b({6, 50}, 3)})
  bf_parity("bf16 log_softmax dim 1", function(t) return rn.log_softmax(t, 1) end, {b({6, 50}, 3)})
  bf_parity("bf16 cast to float32 and back", function(t) return (t:float() * 2):bfloat16() end, {x})
  bf_done("elementwise, reductions, softmax")
end)

T.test("cuda ops2: bfloat16 tensors on the device match the bf16 CPU ops (matmul, conv, pooling, norms, losses)", function()
  need_gpu()
  rn.manual_seed(2108)
  bf_parity("bf16 matmul 17x33 @ 33x9", rn.matmul, {b({17, 33}), b({33, 9})})
  bf_parity("bf16 batched matmul 2x1x5x8 @ 3x8x4", rn.matmul, {b({2, 1, 5, 8}), b({3, 8, 4})})
  bf_parity("bf16 linear", rn.linear, {b({7, 12}), b({12, 5}), b({5})})
  local convs = {
    {"3x3 same 16 -> 32", {2, 9, 9, 16}, {3, 3, 16, 32}, {padding = "same"}},
    {"3x3 stride 2", {2, 9, 9, 8}, {3, 3, 8, 16}, {stride = 2, padding = 1}},
    {"grouped 4", {2, 8, 8, 16}, {3, 3, 4, 16}, {padding = "same", groups = 4}},
    {"depthwise", {1, 7, 7, 16}, {3, 3, 1, 16}, {padding = "same", groups = 16}},
  }
  for _, c in ipairs(convs) do
    bf_parity(string.format("bf16 conv2d %s (x %s, w %s)", c[1], dims(c[2]), dims(c[3])),
              function(xx, ww, bb) return rn.conv2d(xx, ww, bb, c[4]) end,
              {b(c[2]), b(c[3], 0.2), b({c[3][4]})})
  end
  bf_parity("bf16 conv2d_transpose k3 s2 same", function(xx, ww)
    return rn.conv2d_transpose(xx, ww, nil, {stride = 2, padding = "same"})
  end, {b({2, 5, 5, 8}), b({3, 3, 16, 8}, 0.2)})
  local im = b({2, 8, 8, 6})
  bf_parity("bf16 max_pool2d 2", function(t) return rn.max_pool2d(t, 2) end, {im})
  bf_parity("bf16 avg_pool2d 3 stride 2", function(t) return rn.avg_pool2d(t, 3, {stride = 2, padding = 1}) end, {im})
  bf_parity("bf16 global_avg_pool2d", rn.global_avg_pool2d, {im})
  -- batch_norm: bf16 x, float32 parameters and statistics (as on the CPU)
  local C = 6
  for _, training in ipairs({true, false}) do
    local stats = {{rn.zeros({C}), rn.ones({C})}, {to_dev(rn.zeros({C})), to_dev(rn.ones({C}))}}
    local calls = 0
    local what = "bf16 batch_norm training=" .. tostring(training)
    bf_parity(what, function(t, g, bb)
      calls = calls + 1
      local s = stats[calls]
      return rn.batch_norm(t, g, bb, s[1], s[2], {training = training})
    end, {(b({4, 5, 5, C}, 2) + 1):bfloat16(), rn.randn({C}) + 1, rn.randn({C})})
    if calls == 2 and training then
      T.near(stats[2][1]:cpu(), stats[1][1], 1e-2, 1e-2, what .. ": running_mean")
      T.near(stats[2][2]:cpu(), stats[1][2], 1e-2, 1e-2, what .. ": running_var")
    end
  end
  bf_parity("bf16 layer_norm", function(t, g, bb) return rn.layer_norm(t, g, bb) end, {b({3, 4, 4, 8}), b({8}), b({8})})
  bf_parity("bf16 group_norm 2 groups", function(t, g, bb) return rn.group_norm(t, 2, g, bb) end,
            {b({3, 4, 4, 8}), b({8}), b({8})})
  local labels = rn.tensor({0, 3, 9, 2, 2, 5, 7, 1}, {dtype = "int64"})
  bf_parity("bf16 cross_entropy", function(t, l) return rn.cross_entropy(t, l) end, {b({8, 10}), labels})
  bf_parity("bf16 cross_entropy smoothing 0.1 none", function(t, l)
    return rn.cross_entropy(t, l, {label_smoothing = 0.1, reduction = "none"})
  end, {b({8, 10}), labels})
  bf_parity("bf16 attention causal", function(q, k, v)
    return rn.scaled_dot_product_attention(q, k, v, {causal = true})
  end, {b({2, 2, 9, 16}), b({2, 2, 9, 16}), b({2, 2, 9, 16})})
  local idx = rn.tensor({{1, 3, 3}, {0, 4, 1}}, {dtype = "int64"})
  bf_parity("bf16 embedding", function(w, i) return rn.embedding(i, w) end, {b({5, 6}), idx})
  bf_parity("bf16 pad reflect", function(t)
    return rn.pad(t, {{0, 0}, {1, 2}, {2, 1}, {0, 0}}, {mode = "reflect"})
  end, {b({2, 4, 5, 3})})
  bf_parity("bf16 resize bilinear 7x9", function(t) return rn.resize(t, {7, 9}, {method = "bilinear"}) end,
            {b({2, 4, 5, 3})})
  bf_parity("bf16 concat", function(x, y) return rn.concat({x, y}, 2) end, {b({2, 4, 5, 3}), b({2, 3, 5, 3})})
  bf_done("matmul, conv, pooling, norms, losses")
end)

-- ---- tiny MobileNetV2 and ViT: one training step against the CPU ------------------------

local A = dofile("scripts/architectures.lua")

local MODELS = {
  {"MobileNetV2 (alpha 0.35, 48x48x3, batch 4)", false, {4, 48, 48, 3}, function()
    return A.mobilenet_v2{input_shape = {48, 48, 3}, classes = 5, alpha = 0.35}
  end},
  {"ViT (16x16x3, patch 4, dim 32, depth 2, 2 heads, batch 4)", true, {4, 16, 16, 3}, function()
    return A.vit{input_shape = {16, 16, 3}, classes = 5, patch = 4, dim = 32, depth = 2, heads = 2, mlp = 64}
  end},
}

for _, c in ipairs(MODELS) do
  T.test("cuda ops2: one training step of a tiny " .. c[1] .. " matches the CPU", function()
    need_gpu()
    rn.manual_seed(2109)
    local mc = c[4]()
    local mg = c[4]()
    copy_weights(mg, mc, c[1])
    mg:to(DEV)
    local x, y = rn.randn(c[3]), rn.tensor({0, 1, 2, 4}, {dtype = "int64"})
    local loss_fn = rn.losses.sparse_categorical_crossentropy{from_logits = c[2]}
    step_parity(c[1], mc, mg, x, y, loss_fn, "model")
    -- then an optimizer step on each: the weights move alike
    for _, m in ipairs({mc, mg}) do
      m:compile({optimizer = rn.optim.SGD(m:parameters(), {lr = 0.05, momentum = 0.9}), loss = loss_fn})
    end
    local lc = mc:train_step(x, y).loss
    local lg = mg:train_step(to_dev(x), to_dev(y)).loss
    T.near(lg, lc, 2e-3, 2e-3, c[1] .. ": train_step loss")
    local wc, wg = mc:weights(), mg:weights()
    for i = 1, #wc do
      near(wg[i].tensor:cpu(), wc[i].tensor, c[1] .. ": weight after the step " .. wc[i].name, "model")
    end
  end)
end
