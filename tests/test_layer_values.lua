-- test_layer_values.lua - layer outputs against references computed here in
-- plain Lua (loops over nested tables, float64): Conv2D with each of strides,
-- padding ("valid", "same" with an odd total, explicit (t,b,l,r)) and
-- dilation, on non-square inputs so that the two axes cannot be swapped
-- unnoticed; MaxPooling2D / AveragePooling2D (pool size, strides, padding,
-- count_include_pad); GlobalAveragePooling2D, Flatten, Reshape, Lambda, Add,
-- Concatenate; Dense with every activation; every Activation by name;
-- BatchNormalization's epsilon (training and inference) and momentum (moving
-- mean after several steps). Each option is also checked to change the value.
local T = require "t"
local rn = require "rn"
local layers = require "rn.layers"

local function tab(t) return t:double():totable() end
local function f64(shape) return rn.randn(shape, { dtype = "float64" }) end

-- TF "same": out = ceil(in/s); total = max((out-1)*s + (k-1)*d + 1 - in, 0),
-- the odd cell at the bottom/right
local function same_pads(n, k, s, d)
  local out = (n + s - 1) // s
  local total = math.max((out - 1) * s + (k - 1) * d + 1 - n, 0)
  return total // 2, total - total // 2
end

-- x [N][H][W][C], w [KH][KW][C][F], b [F] or nil; o = {sh, sw, dh, dw, pt, pb, pl, pr}
local function conv_ref(x, w, b, o)
  local N, H, W, C = #x, #x[1], #x[1][1], #x[1][1][1]
  local KH, KW, F = #w, #w[1], #w[1][1][1]
  local OH = (H + o.pt + o.pb - o.dh * (KH - 1) - 1) // o.sh + 1
  local OW = (W + o.pl + o.pr - o.dw * (KW - 1) - 1) // o.sw + 1
  local y = {}
  for n = 1, N do
    y[n] = {}
    for oh = 1, OH do
      y[n][oh] = {}
      for ow = 1, OW do
        local out = {}
        for f = 1, F do
          local s = b and b[f] or 0
          for kh = 1, KH do
            for kw = 1, KW do
              local ih = (oh - 1) * o.sh + (kh - 1) * o.dh - o.pt + 1
              local iw = (ow - 1) * o.sw + (kw - 1) * o.dw - o.pl + 1
              if ih >= 1 and ih <= H and iw >= 1 and iw <= W then
                for c = 1, C do s = s + x[n][ih][iw][c] * w[kh][kw][c][f] end
              end
            end
          end
          out[f] = s
        end
        y[n][oh][ow] = out
      end
    end
  end
  return y
end

-- o = {kh, kw, sh, sw, pt, pb, pl, pr, max, cip}
local function pool_ref(x, o)
  local N, H, W, C = #x, #x[1], #x[1][1], #x[1][1][1]
  local OH = (H + o.pt + o.pb - o.kh) // o.sh + 1
  local OW = (W + o.pl + o.pr - o.kw) // o.sw + 1
  local y = {}
  for n = 1, N do
    y[n] = {}
    for oh = 1, OH do
      y[n][oh] = {}
      for ow = 1, OW do
        local out = {}
        for c = 1, C do
          local best, sum, cnt = -math.huge, 0, 0
          for kh = 1, o.kh do
            for kw = 1, o.kw do
              local ih, iw = (oh - 1) * o.sh + kh - o.pt, (ow - 1) * o.sw + kw - o.pl
              if ih >= 1 and ih <= H and iw >= 1 and iw <= W then
                local v = x[n][ih][iw][c]
                best = math.max(best, v); sum = sum + v; cnt = cnt + 1
              end
            end
          end
          out[c] = o.max and best or sum / (o.cip and o.kh * o.kw or cnt)
        end
        y[n][oh][ow] = out
      end
    end
  end
  return y
end

local function pair(v) if type(v) == "table" then return v[1], v[2] end return v, v end

T.test("Conv2D values against a loop reference: strides, padding, dilation (non-square)", function()
  rn.manual_seed(201)
  local x = f64({ 2, 6, 7, 2 })
  local cases = {
    { k = 3, opts = { strides = { 1, 2 }, padding = "same" } },
    { k = 3, opts = { strides = { 2, 1 }, padding = "same" } },
    { k = 3, opts = { strides = 2, padding = "same" } },       -- 6: total 1, 7: total 2
    { k = { 2, 3 }, opts = { strides = { 2, 3 } } },
    { k = 3, opts = { padding = { 0, 1, 2, 0 } } },
    { k = 2, opts = { padding = "same" } },                      -- total 1 on both axes
    { k = 3, opts = { dilation_rate = { 2, 1 }, padding = "same" } },
    { k = 3, opts = { dilation_rate = 2, strides = { 1, 2 } } },
  }
  local outs = {}
  for i, c in ipairs(cases) do
    local layer = layers.Conv2D(3, c.k, c.opts)
    rn.no_grad(function() layer(x:float()) end)
    layer:to("float64")
    rn.no_grad(function() layer.bias:copy_(f64({ 3 })) end)
    local kh, kw = pair(c.k)
    local sh, sw = pair(c.opts.strides or 1)
    local dh, dw = pair(c.opts.dilation_rate or 1)
    local o = { sh = sh, sw = sw, dh = dh, dw = dw, pt = 0, pb = 0, pl = 0, pr = 0 }
    local p = c.opts.padding
    if p == "same" then
      o.pt, o.pb = same_pads(6, kh, sh, dh)
      o.pl, o.pr = same_pads(7, kw, sw, dw)
    elseif type(p) == "table" then
      o.pt, o.pb, o.pl, o.pr = p[1], p[2], p[3], p[4]
    end
    local want = conv_ref(tab(x), tab(layer.kernel), tab(layer.bias), o)
    local msg = string.format("case %d (k %s, strides %s,%s, dilation %s,%s, pads t%d b%d l%d r%d)", i,
      tostring(kh) .. "x" .. tostring(kw), sh, sw, dh, dw, o.pt, o.pb, o.pl, o.pr)
    local y = layer(x)
    T.near(y, want, 1e-12, 1e-12, msg)
    outs[i] = y
  end
  -- strides (1,2) and (2,1) give different shapes: the axes are not interchangeable
  T.truthy(outs[1]:size()[2] ~= outs[2]:size()[2], "strides {1,2} vs {2,1} change the output")
end)

T.test("Conv2D with activation: each activation applied to the convolution", function()
  rn.manual_seed(202)
  local x = f64({ 1, 4, 5, 2 })
  local plain = layers.Conv2D(3, 3, { padding = "same" })
  rn.no_grad(function() plain(x:float()) end)
  plain:to("float64")
  local z = plain(x)
  for _, act in ipairs({ "relu", "tanh", "sigmoid", "linear" }) do
    local c = layers.Conv2D(3, 3, { padding = "same", activation = act })
    rn.no_grad(function() c(x:float()) end)
    c:to("float64")
    rn.no_grad(function() c.kernel:copy_(plain.kernel); c.bias:copy_(plain.bias) end)
    T.near(c(x), layers.activations[act](z), 1e-12, 1e-12, act)
  end
end)

T.test("MaxPooling2D / AveragePooling2D values: pool size, strides, padding, count_include_pad", function()
  rn.manual_seed(203)
  local x = f64({ 2, 5, 7, 3 })
  local cases = {
    { cls = "MaxPooling2D", size = 2 },
    { cls = "MaxPooling2D", size = { 3, 2 }, opts = { strides = { 1, 2 } } },
    { cls = "MaxPooling2D", size = 3, opts = { strides = 2, padding = "same" } },
    { cls = "AveragePooling2D", size = 2 },
    { cls = "AveragePooling2D", size = { 2, 3 }, opts = { strides = { 2, 1 }, padding = "same" } },
    { cls = "AveragePooling2D", size = 3, opts = { strides = 1, padding = "same" } },
  }
  for i, c in ipairs(cases) do
    local opts = c.opts or {}
    local y = layers[c.cls](c.size, opts)(x)
    local kh, kw = pair(c.size)
    local sh, sw = pair(opts.strides or c.size)
    local o = { kh = kh, kw = kw, sh = sh, sw = sw, pt = 0, pb = 0, pl = 0, pr = 0, max = c.cls == "MaxPooling2D" }
    if opts.padding == "same" then
      o.pt, o.pb = same_pads(5, kh, sh, 1)
      o.pl, o.pr = same_pads(7, kw, sw, 1)
    end
    T.near(y, pool_ref(tab(x), o), 1e-12, 1e-12, string.format("case %d %s size %dx%d strides %d,%d pads t%d b%d l%d r%d",
      i, c.cls, kh, kw, sh, sw, o.pt, o.pb, o.pl, o.pr))
  end
  -- count_include_pad divides by the whole window (the op; the layer follows Keras: real cells)
  local y = rn.avg_pool2d(x, 3, { stride = 2, padding = "same", count_include_pad = true })
  local pt, pb = same_pads(5, 3, 2, 1)
  local pl, pr = same_pads(7, 3, 2, 1)
  T.near(y, pool_ref(tab(x), { kh = 3, kw = 3, sh = 2, sw = 2, pt = pt, pb = pb, pl = pl, pr = pr, cip = true }),
    1e-12, 1e-12, "count_include_pad")
end)

T.test("GlobalAveragePooling2D, Flatten, Reshape, Lambda, Add, Concatenate: values", function()
  rn.manual_seed(204)
  local x = f64({ 2, 3, 4, 5 })
  local xt = tab(x)
  -- GAP: the mean over H, W per (n, c)
  local want = {}
  for n = 1, 2 do
    want[n] = {}
    for c = 1, 5 do
      local s = 0
      for h = 1, 3 do for w = 1, 4 do s = s + xt[n][h][w][c] end end
      want[n][c] = s / 12
    end
  end
  T.near(layers.GlobalAveragePooling2D()(x), want, 1e-13, 1e-13, "GAP")
  local kd = layers.GlobalAveragePooling2D({ keepdims = true })(x)
  T.eq(kd:size(), { 2, 1, 1, 5 })
  T.near(kd:reshape(2, 5), want, 1e-13, 1e-13, "GAP keepdims")
  -- Flatten: row-major over (H, W, C), as Keras on NHWC
  local flat = {}
  for n = 1, 2 do
    flat[n] = {}
    for h = 1, 3 do for w = 1, 4 do for c = 1, 5 do flat[n][#flat[n] + 1] = xt[n][h][w][c] end end end
  end
  T.near(layers.Flatten()(x), flat, 0, 0, "Flatten")
  -- Flatten of a non-contiguous input gives the values in logical order
  T.near(layers.Flatten()(x:permute(1, 3, 2, 4)):narrow(2, 1, 5), { xt[1][1][1], xt[2][1][1] }, 0, 0, "Flatten view")
  -- Reshape: the same row-major order into the target
  local r = layers.Reshape({ 6, -1 })(x)
  T.eq(r:size(), { 2, 6, 10 })
  for n = 1, 2 do
    for i = 1, 60 do
      local row, col = (i - 1) // 10 + 1, (i - 1) % 10 + 1
      T.eq(r[n][row][col], flat[n][i], "Reshape element " .. n .. "," .. i)
    end
  end
  -- Lambda
  T.near(layers.Lambda(function(t) return t * 2 + 1 end)(x), x * 2 + 1, 0, 0, "Lambda")
  -- Add of three, Concatenate: both parts, on the last and a middle axis
  local a, b, c = f64({ 2, 3 }), f64({ 2, 3 }), f64({ 2, 4 })
  local at, bt, ct = tab(a), tab(b), tab(c)
  local sum = {}
  for i = 1, 2 do sum[i] = {} for j = 1, 3 do sum[i][j] = at[i][j] + bt[i][j] + at[i][j] end end
  T.near(layers.Add()({ a, b, a }), sum, 1e-15, 1e-15, "Add")
  local cat = {}
  for i = 1, 2 do
    cat[i] = {}
    for j = 1, 3 do cat[i][j] = at[i][j] end
    for j = 1, 4 do cat[i][3 + j] = ct[i][j] end
  end
  T.near(layers.Concatenate()({ a, c }), cat, 0, 0, "Concatenate last axis")
  local p, q = f64({ 2, 1, 3 }), f64({ 2, 2, 3 })
  local m = layers.Concatenate(2)({ p, q })
  T.eq(m:size(), { 2, 3, 3 })
  T.near(m:narrow(2, 1, 1), p, 0, 0, "Concatenate axis 2, first part")
  T.near(m:narrow(2, 2, 2), q, 0, 0, "Concatenate axis 2, second part")
end)

-- reference activations on a list of numbers
local REF = {
  relu = function(v) local r = {} for i, x in ipairs(v) do r[i] = math.max(x, 0) end return r end,
  tanh = function(v) local r = {} for i, x in ipairs(v) do
    r[i] = (math.exp(x) - math.exp(-x)) / (math.exp(x) + math.exp(-x)) end return r end,
  sigmoid = function(v) local r = {} for i, x in ipairs(v) do r[i] = 1 / (1 + math.exp(-x)) end return r end,
  linear = function(v) local r = {} for i, x in ipairs(v) do r[i] = x end return r end,
  softmax = function(v)
    local s, r = 0, {}
    for _, x in ipairs(v) do s = s + math.exp(x) end
    for i, x in ipairs(v) do r[i] = math.exp(x) / s end
    return r
  end,
  log_softmax = function(v)
    local s, r = 0, {}
    for _, x in ipairs(v) do s = s + math.exp(x) end
    for i, x in ipairs(v) do r[i] = x - math.log(s) end
    return r
  end,
}
local ACTS = { "relu", "softmax", "log_softmax", "sigmoid", "tanh", "linear" }

local function rows(t, f) local r = {} for i, row in ipairs(t) do r[i] = f(row) end return r end

T.test("every Activation by name, and Dense with each activation, against formulas", function()
  rn.manual_seed(205)
  local x = rn.tensor({ { -3, -0.5, 0, 0.25, 2 }, { 1, 1, 1, -1, 4 } }, { dtype = "float64" })
  for _, name in ipairs(ACTS) do
    T.near(layers.Activation(name)(x), rows(tab(x), REF[name]), 1e-14, 1e-13, "Activation " .. name)
    T.near(layers.Activation(name:upper())(x), rows(tab(x), REF[name]), 1e-14, 1e-13, "Activation " .. name:upper())
  end
  local xin = f64({ 3, 4 })
  local xt = tab(xin)
  for _, name in ipairs(ACTS) do
    local d = layers.Dense(5, { activation = name })
    rn.no_grad(function() d(xin:float()) end)
    d:to("float64")
    rn.no_grad(function() d.bias:copy_(f64({ 5 })) end)
    local k, b = tab(d.kernel), tab(d.bias)
    local z = {}
    for i = 1, 3 do
      z[i] = {}
      for j = 1, 5 do
        local s = b[j]
        for q = 1, 4 do s = s + xt[i][q] * k[q][j] end
        z[i][j] = s
      end
    end
    T.near(d(xin), rows(z, REF[name]), 1e-13, 1e-12, "Dense activation " .. name)
  end
end)

T.test("BatchNormalization epsilon: inference and training outputs against the formula", function()
  rn.manual_seed(206)
  local x = f64({ 6, 3 })
  local xt = tab(x)
  for _, eps in ipairs({ 1e-3, 0.5 }) do
    local bn = layers.BatchNormalization({ epsilon = eps, momentum = 0.9 })
    rn.no_grad(function() bn(x:float(), { training = false }) end)
    bn:to("float64")
    local g, b, mm, mv = f64({ 3 }), f64({ 3 }), f64({ 3 }), f64({ 3 }):abs() + 0.1
    rn.no_grad(function()
      bn.gamma:copy_(g); bn.beta:copy_(b); bn.moving_mean:copy_(mm); bn.moving_variance:copy_(mv)
    end)
    local gt, bt, mt, vt = tab(g), tab(b), tab(mm), tab(mv)
    -- inference: (x - moving_mean) / sqrt(moving_var + eps) * gamma + beta
    local want = {}
    for i = 1, 6 do
      want[i] = {}
      for c = 1, 3 do want[i][c] = (xt[i][c] - mt[c]) / math.sqrt(vt[c] + eps) * gt[c] + bt[c] end
    end
    T.near(bn(x, { training = false }), want, 1e-12, 1e-12, "inference, epsilon " .. eps)
    -- training: the batch mean and biased batch variance
    for c = 1, 3 do
      local m, v = 0, 0
      for i = 1, 6 do m = m + xt[i][c] end
      m = m / 6
      for i = 1, 6 do v = v + (xt[i][c] - m) ^ 2 end
      v = v / 6
      for i = 1, 6 do want[i][c] = (xt[i][c] - m) / math.sqrt(v + eps) * gt[c] + bt[c] end
    end
    T.near(bn(x, { training = true }), want, 1e-12, 1e-12, "training, epsilon " .. eps)
  end
end)

T.test("BatchNormalization momentum: the moving mean after three steps", function()
  rn.manual_seed(207)
  for _, mom in ipairs({ 0.9, 0.5 }) do
    local bn = layers.BatchNormalization({ momentum = mom })
    local want = { 0, 0, 0, 0 }
    for _ = 1, 3 do
      local x = f64({ 5, 4 }) * 3 + 2
      if bn.built then bn(x, { training = true })
      else
        rn.no_grad(function() bn(x:float(), { training = false }) end)
        bn:to("float64")
        bn(x, { training = true })
      end
      local xt = tab(x)
      for c = 1, 4 do
        local m = 0
        for i = 1, 5 do m = m + xt[i][c] end
        want[c] = mom * want[c] + (1 - mom) * m / 5
      end
    end
    T.near(bn.moving_mean, want, 1e-12, 1e-12, "momentum " .. mom)
  end
end)
