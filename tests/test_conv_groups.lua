-- test_conv_groups.lua - grouped and depthwise convolutions (rn.conv2d's
-- groups option; w: (KH,KW,Cin/G,Cout)): against the naive reference on
-- every CPU path (oneDNN's grouped/depthwise kernels, im2col group by group),
-- float64 finite-difference gradients at float64 tolerances, the kernel the
-- runtime reports, and the errors. PyTorch fixtures for groups are in
-- test_conv_torch.lua (tests/fixtures/gen_conv.py).
local T = require "t"
local rn = require "rn"
local gradcheck = require "gradcheck"

local function maxdiff(a, b) return (a - b):abs():max():item() end

-- {x shape, w shape, opts}: grouped, depthwise (multiplier 1 and 2), 1x1
local configs = {
  { {2, 7, 6, 8}, {3, 3, 4, 6}, {padding = "same", groups = 2} },
  { {2, 8, 8, 16}, {3, 3, 1, 16}, {padding = "same", groups = 16} },
  { {1, 9, 7, 4}, {3, 3, 1, 8}, {padding = "same", stride = 2, groups = 4} },
  { {2, 9, 9, 6}, {3, 3, 2, 9}, {dilation = 2, padding = {1, 2}, groups = 3} },
  { {3, 5, 5, 12}, {1, 1, 3, 8}, {groups = 4} },
  { {2, 6, 6, 32}, {5, 5, 1, 32}, {padding = "same", groups = 32} },
}

local function describe(i, c)
  local o = {}
  for k, v in pairs(c[3]) do o[#o + 1] = k .. "=" .. (type(v) == "table" and table.concat(v, ",") or tostring(v)) end
  table.sort(o)
  return string.format("config %d (x %s, w %s, %s)", i, table.concat(c[1], "x"), table.concat(c[2], "x"),
    table.concat(o, " "))
end

-- y and the gradients of x, w, b for the output gradient gy, on the current impl
local function run(x, w, b, opts, gy)
  local xx, ww, bb = x:clone():requires_grad_(), w:clone():requires_grad_(), b:clone():requires_grad_()
  local y = rn.conv2d(xx, ww, bb, opts)
  y:backward(gy)
  return { y, xx.grad, ww.grad, bb.grad }
end

T.test("conv2d groups: forward equals the reference, every CPU path; gradients agree across paths", function()
  rn.manual_seed(21)
  local ok, err = pcall(function()
    for i, c in ipairs(configs) do
      local x, w, b = rn.randn(c[1]), rn.randn(c[2]), rn.randn({c[2][4]})
      local ref = rn._conv2d_ref(x:double(), w:double(), b:double(), c[3])
      local gy = rn.randn(ref:size())
      local base
      for _, impl in ipairs({"auto", "direct", "im2col"}) do
        rn.cpu.set_conv_impl(impl)
        local got = run(x, w, b, c[3], gy)
        local k = rn.cpu.conv_kernels()
        local what = describe(i, c) .. " on " .. impl .. " (" .. k.forward .. ")"
        T.near(got[1]:double(), ref, 1e-5, 1e-5, what .. ": forward")
        if impl == "im2col" then
          T.truthy(k.forward:find("^im2col") ~= nil, what .. ": im2col reported")
        else
          for _, d in ipairs({"forward", "backward_data", "backward_filter"}) do
            T.truthy(not k[d]:find("^im2col"), what .. ": oneDNN ran the grouped " .. d .. ": " .. k[d])
          end
        end
        if base then
          for j = 2, 4 do T.near(got[j], base[j], 1e-4, 1e-4, what .. ": gradient " .. j) end
        end
        base = base or got
      end
    end
  end)
  rn.cpu.set_conv_impl("auto")
  assert(ok, err)
end)

-- conv2d is linear in each input, so central differences have no truncation
-- error: a large step keeps the rounding error of the difference small
T.test("conv2d groups: float64 gradients equal finite differences (rtol 1e-7)", function()
  rn.manual_seed(22)
  for i, c in ipairs({ configs[1], configs[3], configs[4], configs[5] }) do
    local x = rn.randn(c[1], {dtype = "float64"})
    local w = rn.randn(c[2], {dtype = "float64"})
    local b = rn.randn({c[2][4]}, {dtype = "float64"})
    local ok, err = pcall(gradcheck, function(xx, ww, bb) return rn.conv2d(xx, ww, bb, c[3]) end,
      {x, w, b}, {eps = 1e-2, atol = 1e-10, rtol = 1e-7})
    assert(ok, describe(i, c) .. ": " .. tostring(err))
  end
end)

T.test("conv2d groups: a depthwise convolution is per-channel (values by hand)", function()
  -- 2 channels, 1x1 image padded "same" with a 3x3 kernel: only the centre tap counts
  local x = rn.tensor({{{{2, 3}}}})                    -- (1,1,1,2)
  local w = rn.zeros({3, 3, 1, 4})
  w[2][2][1]:copy_(rn.tensor({10, 20, 100, 200}))     -- multiplier 2: outputs c*2+m
  local y = rn.conv2d(x, w, nil, {padding = "same", groups = 2})
  T.eq(y:reshape({4}):totable(), {20, 40, 300, 600})
  -- groups = 1 mixes the channels instead (w (3,3,2,4) centre: ones)
  local w1 = rn.zeros({3, 3, 2, 4})
  w1[2][2]:fill_(1)
  T.eq(rn.conv2d(x, w1, nil, {padding = "same"}):reshape({4}):totable(), {5, 5, 5, 5})
end)

T.test("conv2d groups: the kernels that ran are oneDNN's depthwise ones where it has them", function()
  local isa = rn.cpu.features().isa
  if not (isa:find("avx2") or isa:find("avx512")) then
    T.skip("oneDNN's depthwise JIT kernels need AVX2 or more; the ISA here is " .. isa)
  end
  rn.cpu.conv_kernel_stats(true)
  local x = rn.randn({2, 8, 8, 32}):requires_grad_()
  local w = rn.randn({3, 3, 1, 32}):requires_grad_()
  rn.conv2d(x, w, nil, {padding = "same", groups = 32}):sum():backward()
  local k = rn.cpu.conv_kernels()
  T.truthy(k.forward:find("dw") and k.backward_data:find("dw") and k.backward_filter:find("dw"),
    string.format("depthwise kernels at ISA %s: %s | %s | %s", isa, k.forward, k.backward_data,
      k.backward_filter))
end)

T.test("conv2d groups: errors name the groups and the valid range", function()
  local x = rn.zeros({1, 4, 4, 6})
  T.raises(function() rn.conv2d(x, rn.zeros({3, 3, 2, 6}), nil, {groups = 4}) end,
    "conv2d: groups 4 must divide the input's 6 channels and the weight's 6 output channels")
  T.raises(function() rn.conv2d(x, rn.zeros({3, 3, 2, 5}), nil, {groups = 3}) end,
    "groups 3 must divide")
  T.raises(function() rn.conv2d(x, rn.zeros({3, 3, 3, 6}), nil, {groups = 3}) end,
    "conv2d: input %(1,4,4,6%) has 6 channels but weight %(3,3,3,6%) expects 9 %(Cin/groups")
  T.raises(function() rn.conv2d(x, rn.zeros({3, 3, 6, 6}), nil, {groups = 0}) end,
    "conv2d: option 'groups' must be >= 1, got 0")
  T.raises(function() rn.conv2d(x, rn.zeros({3, 3, 6, 6}), nil, {groups = 1.5}) end,
    "option 'groups' must be an integer")
end)

-- ---- conv2d_transpose -------------------------------------------------------------

-- the transposed convolution, by definition: each input pixel scatters
-- x[n,i,j,:] @ w[kh,kw,:,:]^T into y at (i*s - pt + kh*d, j*s - pl + kw*d)
local function convt_ref(x, w, s, d, pads, out)
  local N, H, W, Ci = table.unpack(x:size())
  local KH, KW, Co = w:size(1), w:size(2), w:size(3)
  local xt, wt = x:double():totable(), w:double():totable()
  local y = {}
  for n = 1, N do
    y[n] = {}
    for i = 1, out[1] do
      y[n][i] = {}
      for j = 1, out[2] do y[n][i][j] = {} for o = 1, Co do y[n][i][j][o] = 0 end end
    end
    for i = 0, H - 1 do for j = 0, W - 1 do
      for kh = 0, KH - 1 do for kw = 0, KW - 1 do
        local oi, oj = i * s[1] - pads[1] + kh * d[1], j * s[2] - pads[3] + kw * d[2]
        if oi >= 0 and oi < out[1] and oj >= 0 and oj < out[2] then
          for o = 1, Co do
            local acc = 0
            for c = 1, Ci do acc = acc + xt[n][i + 1][j + 1][c] * wt[kh + 1][kw + 1][o][c] end
            y[n][oi + 1][oj + 1][o] = y[n][oi + 1][oj + 1][o] + acc
          end
        end
      end end
    end end
  end
  return rn.tensor(y, {dtype = "float64"})
end

local tconfigs = {
  -- x, w (KH,KW,Cout,Cin), opts, output spatial size, pads (top,bottom,left,right) of the conv
  { {2, 3, 4, 3}, {3, 3, 5, 3}, {padding = "same", stride = 2}, {6, 8}, {0, 1, 0, 1} },
  { {1, 3, 3, 2}, {3, 3, 4, 2}, {padding = "valid", stride = 2}, {7, 7}, {0, 0, 0, 0} },
  { {1, 3, 3, 2}, {2, 2, 3, 2}, {padding = "valid", stride = 3}, {9, 9}, {0, 0, 0, 0} }, -- Keras: s > k
  { {2, 4, 3, 2}, {3, 3, 2, 2}, {padding = "valid", stride = 2, output_padding = 1}, {10, 8}, {0, 0, 0, 0} },
  { {1, 4, 4, 3}, {3, 2, 2, 3}, {padding = {1, 1, 0, 1}, stride = {2, 1}}, {7, 4}, {1, 1, 0, 1} },
  { {1, 3, 3, 2}, {3, 3, 2, 2}, {padding = "same", dilation = 2}, {3, 3}, {2, 2, 2, 2} },
  -- Keras: same with output_padding 1 pads k // 2 = 1 each side: (3-1)*2 + 3 - 2 + 1
  { {1, 3, 3, 2}, {3, 3, 2, 2}, {padding = "same", stride = 2, output_padding = 1}, {6, 6}, {1, 1, 1, 1} },
}

T.test("conv2d_transpose: output sizes and values equal the scatter definition, every CPU path", function()
  rn.manual_seed(23)
  local ok, err = pcall(function()
    for i, c in ipairs(tconfigs) do
      local x, w, b = rn.randn(c[1]), rn.randn(c[2]), rn.randn({c[2][3]})
      local o = c[3]
      local s = type(o.stride) == "table" and o.stride or {o.stride or 1, o.stride or 1}
      local d = {o.dilation or 1, o.dilation or 1}
      local ref = convt_ref(x, w, s, d, c[5], c[4]) + b:double()
      for _, impl in ipairs({"auto", "im2col"}) do
        rn.cpu.set_conv_impl(impl)
        local y = rn.conv2d_transpose(x, w, b, o)
        T.eq(y:size(), {c[1][1], c[4][1], c[4][2], c[2][3]}, "config " .. i .. " shape")
        T.near(y:double(), ref, 1e-5, 1e-5, "config " .. i .. " on " .. impl)
      end
    end
  end)
  rn.cpu.set_conv_impl("auto")
  assert(ok, err)
end)

T.test("conv2d_transpose: float64 gradients equal finite differences", function()
  rn.manual_seed(24)
  for i, c in ipairs(tconfigs) do
    local x = rn.randn(c[1], {dtype = "float64"})
    local w = rn.randn(c[2], {dtype = "float64"})
    local b = rn.randn({c[2][3]}, {dtype = "float64"})
    local ok, err = pcall(gradcheck, function(xx, ww, bb) return rn.conv2d_transpose(xx, ww, bb, c[3]) end,
      {x, w, b}, {eps = 1e-2, atol = 1e-10, rtol = 1e-7})
    assert(ok, "config " .. i .. ": " .. tostring(err))
  end
end)

T.test("conv2d_transpose: errors name the shapes and the valid range", function()
  local x = rn.zeros({1, 3, 3, 2})
  T.raises(function() rn.conv2d_transpose(x, rn.zeros({3, 3, 4, 5})) end,
    "conv2d_transpose: input %(1,3,3,2%) has 2 channels but weight %(3,3,4,5%) %(KH,KW,Cout,Cin%) expects 5")
  T.raises(function() rn.conv2d_transpose(x, rn.zeros({3, 3, 4, 2}), nil, {stride = 2, output_padding = 2}) end,
    "output_padding 2 must be >= 0 and smaller than the stride 2 or the dilation 1")
  T.raises(function() rn.conv2d_transpose(x, rn.zeros({3, 3, 4, 2}), nil, {groups = 2}) end,
    "unknown option 'groups'")
  T.raises(function() rn.conv2d_transpose(x, rn.zeros({3, 3, 4, 2}), rn.zeros({3})) end,
    "bias %(3%) must have shape %(4%)")
  T.raises(function() rn.conv2d_transpose(x, rn.zeros({1, 1, 4, 2}), nil, {padding = 5}) end,
    "gives an output size")
end)
