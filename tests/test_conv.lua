-- test_conv.lua - conv2d and pooling (NHWC / HWIO): output shapes for
-- same/valid/stride/dilation/asymmetric padding (TF "same" semantics), the
-- im2col+GEMM kernels against the naive reference rn._conv2d_ref on many
-- configurations (incl. batches larger than one column-buffer chunk),
-- finite-difference gradient checks of conv2d and the pools (contiguous and
-- not), pooling values against a Lua reference, determinism, and the errors.
local T = require "t"
local rn = require "rn"
local gradcheck = require "gradcheck"

local function f64(shape) return rn.randn(shape, {dtype = "float64"}) end
local function maxdiff(a, b) return (a - b):abs():max():item() end
local function shape_str(t) return table.concat(t:size(), ",") end

-- runs fn, then restores the conv implementation ("auto", the suite's) and
-- the thread count whatever happens, and re-raises fn's error
local function restoring(fn)
  local nt = rn.get_num_threads()
  local ok, err = pcall(fn)
  rn.cpu.set_conv_impl("auto")
  rn.set_num_threads(nt)
  if not ok then error(err, 0) end
end

-- the options of a conv/pool configuration, for failure messages
local function opts_str(o)
  local parts = {}
  for _, k in ipairs({"stride", "dilation", "padding"}) do
    local v = o[k]
    if v ~= nil then
      parts[#parts + 1] = k .. " " .. (type(v) == "table" and "{" .. table.concat(v, ",") .. "}" or tostring(v))
    end
  end
  return table.concat(parts, ", ")
end

-- a tensor of distinct values (a shuffled arange, scaled), so max has no ties
local function distinct(shape, seed)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local v = {}
  for i = 1, n do v[i] = i end
  local rng = seed or 1
  for i = n, 2, -1 do
    rng = (rng * 1103515245 + 12345) % 2147483648
    local j = rng % i + 1
    v[i], v[j] = v[j], v[i]
  end
  for i = 1, n do v[i] = (v[i] - n / 2) * 0.01 end
  return rn.tensor(v, {dtype = "float64"}):reshape(shape)
end

-- ---- shapes ------------------------------------------------------------------

T.test("conv2d: output shapes for same/valid/stride/dilation/explicit padding", function()
  local x = rn.randn({2, 32, 32, 3})
  local w = rn.randn({3, 3, 3, 16})
  local cases = {
    {{padding = "same"}, {2, 32, 32, 16}},
    {{padding = "valid"}, {2, 30, 30, 16}},
    {{}, {2, 30, 30, 16}},                               -- default is valid, stride 1
    {{stride = 2, padding = "same"}, {2, 16, 16, 16}},
    {{stride = 2, padding = "valid"}, {2, 15, 15, 16}},
    {{stride = {1, 2}, padding = "same"}, {2, 32, 16, 16}},
    {{stride = 3, padding = "same"}, {2, 11, 11, 16}},   -- ceil(32/3)
    {{dilation = 2, padding = "valid"}, {2, 28, 28, 16}},
    {{dilation = 2, padding = "same"}, {2, 32, 32, 16}},
    {{dilation = {2, 3}, padding = "valid"}, {2, 28, 26, 16}},
    {{padding = 1}, {2, 32, 32, 16}},
    {{padding = {2, 0}}, {2, 34, 30, 16}},
    {{padding = {0, 1, 2, 3}}, {2, 31, 35, 16}},
    {{padding = {0, 1, 2, 3}, stride = 2}, {2, 16, 18, 16}},
  }
  for _, c in ipairs(cases) do
    local y = rn.conv2d(x, w, nil, c[1])
    T.eq(y:size(), c[2])
  end
  -- odd sizes, 1x1 and non-square kernels
  T.eq(rn.conv2d(rn.randn({1, 7, 5, 2}), rn.randn({1, 1, 2, 3}), nil, {stride = 2}):size(), {1, 4, 3, 3})
  T.eq(rn.conv2d(rn.randn({1, 7, 5, 2}), rn.randn({2, 3, 2, 3}), nil, {padding = "same", stride = 2}):size(),
    {1, 4, 3, 3})
  T.eq(rn.conv2d(rn.randn({1, 7, 5, 2}), rn.randn({7, 5, 2, 1})):size(), {1, 1, 1, 1})
end)

T.test("conv2d: TF same padding, 3x3 stride 2 on 32x32 pads 0 top and 1 bottom", function()
  local x, w = f64({1, 32, 32, 3}), f64({3, 3, 3, 4})
  local y = rn.conv2d(x, w, nil, {stride = 2, padding = "same"})
  T.eq(y:size(), {1, 16, 16, 4})
  local explicit = rn.conv2d(x, w, nil, {stride = 2, padding = {0, 1, 0, 1}})
  T.near(maxdiff(y, explicit), 0, 1e-12, 0, "same == pads {top 0, bottom 1, left 0, right 1}")
  local sym = rn.conv2d(x, w, nil, {stride = 2, padding = {1, 0, 1, 0}})
  T.truthy(maxdiff(y, sym) > 1e-3, "same is not pads {1,0,1,0} (the PyTorch-style split)")
  -- stride 1: symmetric; even kernel: extra cell at the bottom/right
  T.near(maxdiff(rn.conv2d(x, w, nil, {padding = "same"}), rn.conv2d(x, w, nil, {padding = 1})), 0, 1e-12)
  local w4 = f64({4, 2, 3, 2})
  T.near(maxdiff(rn.conv2d(x, w4, nil, {padding = "same"}),
    rn.conv2d(x, w4, nil, {padding = {1, 2, 0, 1}})), 0, 1e-12)
  -- dilation 2 with a 3x3 kernel acts like a 5x5 one: pads 2 each side at stride 1
  T.near(maxdiff(rn.conv2d(x, w, nil, {padding = "same", dilation = 2}),
    rn.conv2d(x, w, nil, {padding = 2, dilation = 2})), 0, 1e-12)
  -- the input is already a multiple of stride with k=1: no padding
  local w1 = f64({1, 1, 3, 2})
  T.near(maxdiff(rn.conv2d(x, w1, nil, {padding = "same", stride = 2}),
    rn.conv2d(x, w1, nil, {stride = 2})), 0, 0)
end)

-- ---- fast kernel vs reference --------------------------------------------------

T.test("conv2d: im2col/GEMM kernel matches the naive reference (float64, many configs)", function()
  rn.manual_seed(7)
  local configs = {
    -- {N,H,W,Cin}, {KH,KW,Cout}, opts, bias
    {{2, 5, 5, 1}, {1, 1, 1}, {}, false},
    {{3, 6, 7, 4}, {1, 1, 5}, {}, true},                         -- 1x1 fast path
    {{2, 6, 7, 4}, {1, 1, 5}, {stride = 2}, true},               -- 1x1 strided (im2col)
    {{2, 6, 7, 4}, {1, 1, 5}, {padding = 1}, true},              -- 1x1 padded (im2col)
    {{2, 8, 8, 3}, {3, 3, 4}, {padding = "same"}, true},
    {{2, 8, 8, 3}, {3, 3, 4}, {padding = "valid"}, false},
    {{2, 9, 7, 3}, {3, 3, 6}, {padding = "same", stride = 2}, true},
    {{1, 11, 13, 2}, {3, 3, 17}, {padding = "same", stride = {2, 3}}, true},
    {{2, 10, 9, 5}, {3, 3, 2}, {dilation = 2, padding = "same"}, true},
    {{2, 10, 9, 5}, {3, 2, 2}, {dilation = {2, 1}, padding = {0, 2, 1, 3}}, true},
    {{1, 5, 5, 17}, {5, 5, 1}, {padding = "same"}, false},
    {{3, 7, 7, 16}, {3, 3, 16}, {padding = "same", stride = 2}, true},
    {{2, 4, 4, 2}, {4, 4, 3}, {padding = "valid"}, true},        -- kernel == input
    {{2, 6, 6, 3}, {2, 2, 3}, {stride = 2}, true},
    {{1, 13, 11, 7}, {7, 7, 9}, {padding = "same", stride = 2}, true},
    {{2, 3, 3, 2}, {3, 3, 3}, {padding = {3, 3, 3, 3}}, true},  -- windows partly all padding
  }
  math.randomseed(7) -- the configurations below are the same on every run
  for i = 1, 12 do -- random odd configurations
    local cin, cout = math.random(1, 17), math.random(1, 17)
    local kh, kw = math.random(1, 4), math.random(1, 4)
    local st = {math.random(1, 3), math.random(1, 3)}
    local dil = {math.random(1, 2), math.random(1, 2)}
    local pad = (i % 3 == 0) and "same" or {math.random(0, 2), math.random(0, 2), math.random(0, 2), math.random(0, 2)}
    configs[#configs + 1] = {{math.random(1, 3), math.random(9, 14), math.random(9, 14), cin},
      {kh, kw, cout}, {stride = st, dilation = dil, padding = pad}, i % 2 == 0}
  end
  for i, c in ipairs(configs) do
    local xs, ks = c[1], c[2]
    local x = f64(xs)
    local w = f64({ks[1], ks[2], xs[4], ks[3]})
    local b = c[4] and f64({ks[3]}) or nil
    local y = rn.conv2d(x, w, b, c[3])
    local r = rn._conv2d_ref(x, w, b, c[3])
    local msg = "config " .. i .. " x " .. shape_str(x) .. " w " .. shape_str(w) .. " " .. opts_str(c[3])
    T.eq(y:size(), r:size(), msg .. " shape")
    T.near(maxdiff(y, r), 0, 1e-11, 0, msg)
  end
end)

T.test("conv2d: float32 kernels (oneDNN and im2col) match the reference within float32 rounding", function()
  rn.manual_seed(8)
  local x, w, b = rn.randn({2, 9, 8, 6}), rn.randn({3, 3, 6, 5}), rn.randn({5})
  restoring(function()
    for _, impl in ipairs({"auto", "im2col"}) do
      rn.cpu.set_conv_impl(impl)
      for _, o in ipairs({{padding = "same"}, {stride = 2, padding = "same"}, {}, {dilation = 2, padding = 1}}) do
        local y = rn.conv2d(x, w, b, o)
        T.eq(y.dtype, "float32")
        local r = rn._conv2d_ref(x:double(), w:double(), b:double(), o)
        T.near(y, r, 1e-4, 1e-4, impl .. " " .. opts_str(o))
      end
    end
  end)
end)

T.test("conv2d: batches larger than one column chunk (fwd and both grads)", function()
  -- float64, K = 3*3*17 = 153: one 40-wide output line is 49 KB of columns, so
  -- the 512 KiB chunks hold 10 lines and 16 chunks cover the 160 lines
  rn.manual_seed(11)
  local N = 4
  local x = f64({N, 40, 40, 17})
  local w = f64({3, 3, 17, 5})
  local b = f64({5})
  local y = rn.conv2d(x, w, b, {padding = "same"})
  local r = rn._conv2d_ref(x, w, b, {padding = "same"})
  T.near(maxdiff(y, r), 0, 1e-10, 0, "forward")
  -- gradients of the whole batch == image by image (each image fits one chunk)
  x:requires_grad_(); w:requires_grad_(); b:requires_grad_()
  local gy = f64(y:size())
  rn.conv2d(x, w, b, {padding = "same"}):backward(gy)
  local gw_sum, gb_sum
  for i = 1, N do
    local xi = x:detach():narrow(1, i, 1):clone():requires_grad_()
    local wi = w:detach():clone():requires_grad_()
    local bi = b:detach():clone():requires_grad_()
    rn.conv2d(xi, wi, bi, {padding = "same"}):backward(gy:narrow(1, i, 1):contiguous())
    T.near(maxdiff(x.grad:narrow(1, i, 1), xi.grad), 0, 1e-10, 0, "gx image " .. i)
    gw_sum = gw_sum and (gw_sum + wi.grad) or wi.grad
    gb_sum = gb_sum and (gb_sum + bi.grad) or bi.grad
  end
  T.near(maxdiff(w.grad, gw_sum), 0, 1e-8, 0, "gw")
  T.near(maxdiff(b.grad, gb_sum), 0, 1e-9, 0, "gb")
end)

T.test("conv2d: im2col results do not depend on the thread count", function()
  -- the im2col kernels' property (deterministic mode uses them); oneDNN's
  -- filter gradient may change with the thread count (test_cpu_fast.lua)
  rn.manual_seed(9)
  rn.cpu.set_conv_impl("im2col")
  local nt = rn.get_num_threads()
  local x, w, b = rn.randn({4, 16, 16, 8}), rn.randn({3, 3, 8, 8}), rn.randn({8})
  restoring(function()
  local function run()
    local xx, ww, bb = x:clone():requires_grad_(), w:clone():requires_grad_(), b:clone():requires_grad_()
    local y = rn.conv2d(xx, ww, bb, {padding = "same", stride = 2})
    y:backward(rn.ones(y:size()))
    return y, xx.grad, ww.grad, bb.grad
  end
  rn.set_num_threads(1)
  local a = {run()}
  rn.set_num_threads(math.max(2, nt))
  local c = {run()}
  local d = {run()}
  rn.set_num_threads(nt)
  for i = 1, 4 do -- bitwise: chunking never depends on the thread count
    T.eq(maxdiff(c[i], d[i]), 0, "repeat run, output " .. i)
    T.eq(maxdiff(a[i], c[i]), 0, "1 vs many threads, output " .. i)
  end
  end)
end)

T.test("conv2d: call forms, method form, non-contiguous inputs", function()
  local x, w, b = f64({2, 6, 6, 3}), f64({3, 3, 3, 4}), f64({4})
  local y1 = rn.conv2d(x, w, b, {padding = "same"})
  T.near(maxdiff(x:conv2d(w, b, {padding = "same"}), y1), 0, 0)
  T.near(maxdiff(rn.conv2d(x, w, {padding = "same"}), rn.conv2d(x, w, nil, {padding = "same"})), 0, 0)
  T.near(maxdiff(rn.conv2d(x, w), rn.conv2d(x, w, nil, {padding = "valid"})), 0, 0)
  -- NCHW-stored input viewed as NHWC, OIHW weight viewed as HWIO
  local xn = x:permute(1, 4, 2, 3):contiguous():permute(1, 3, 4, 2)
  local wn = w:permute(4, 3, 1, 2):contiguous():permute(3, 4, 2, 1)
  T.truthy(not xn:is_contiguous() and not wn:is_contiguous())
  T.near(maxdiff(rn.conv2d(xn, wn, b, {padding = "same"}), y1), 0, 1e-12)
end)

-- ---- gradient checks -------------------------------------------------------------

T.test("gradcheck: conv2d w.r.t. x, w and b on several configurations", function()
  rn.manual_seed(3)
  local configs = {
    {{2, 5, 5, 3}, {3, 3, 3, 2}, {padding = "same"}},
    {{1, 6, 7, 2}, {3, 3, 2, 3}, {padding = "same", stride = 2}},   -- asymmetric same
    {{2, 5, 6, 2}, {2, 3, 2, 2}, {padding = {0, 2, 1, 0}, stride = {2, 1}}},
    {{1, 7, 7, 2}, {3, 3, 2, 2}, {dilation = 2, padding = "same"}},
    {{2, 4, 4, 3}, {1, 1, 3, 2}, {}},                                  -- 1x1 fast path
    {{1, 5, 5, 2}, {1, 1, 2, 3}, {stride = 2, padding = 1}},
    {{1, 4, 4, 1}, {4, 4, 1, 1}, {}},
  }
  for _, c in ipairs(configs) do
    local x, w, b = f64(c[1]), f64(c[2]), f64({c[2][4]})
    gradcheck(function(xx, ww, bb) return rn.conv2d(xx, ww, bb, c[3]) end, {x, w, b})
    local x2, w2 = f64(c[1]), f64(c[2])
    gradcheck(function(xx, ww) return rn.conv2d(xx, ww, nil, c[3]) end, {x2, w2})
  end
end)

T.test("gradcheck: conv2d with non-contiguous inputs and partial requires_grad", function()
  -- x: permuted NCHW storage; w: permuted OIHW storage; b: a strided narrow
  local x = f64({2, 3, 5, 6}):permute(1, 3, 4, 2)      -- (2,5,6,3)
  local w = f64({2, 3, 3, 3}):permute(3, 4, 2, 1)      -- (3,3,3,2)
  local b = f64({2, 4}):narrow(2, 2, 1):reshape({2})
  T.truthy(not x:is_contiguous() and not w:is_contiguous())
  gradcheck(function(xx, ww, bb) return rn.conv2d(xx, ww, bb, {padding = "same", stride = 2}) end, {x, w, b})
  local xs = f64({2, 7, 5, 2}):narrow(2, 2, 5)         -- (2,5,5,2), narrowed H
  gradcheck(function(xx, ww) return rn.conv2d(xx, ww, nil, {padding = {1, 0, 0, 1}}) end, {xs, f64({2, 2, 2, 3})})
  -- only some inputs require grad: the others get none
  local x3, w3, b3 = f64({1, 4, 4, 2}), f64({3, 3, 2, 2}), f64({2})
  gradcheck(function(xx, ww, bb) return rn.conv2d(xx, ww, bb, {padding = "same"}) end, {x3, w3, b3}, {wrt = {1}})
  T.truthy(w3.grad == nil and b3.grad == nil)
  local x4, w4, b4 = f64({1, 4, 4, 2}), f64({3, 3, 2, 2}), f64({2})
  gradcheck(function(xx, ww, bb) return rn.conv2d(xx, ww, bb, {padding = "same"}) end, {x4, w4, b4}, {wrt = {3}})
  T.truthy(x4.grad == nil and w4.grad == nil)
  gradcheck(function(xx, ww, bb) return rn.conv2d(xx, ww, bb, {stride = 2}) end,
    {f64({1, 5, 5, 2}), f64({3, 3, 2, 2}), f64({2})}, {wrt = {2}})
end)

T.test("gradcheck: max_pool2d and avg_pool2d (no ties), contiguous and not", function()
  local cases = {
    {{2, 4, 4, 3}, 2, {}},
    {{1, 5, 5, 2}, 3, {stride = 2, padding = "same"}},
    {{1, 6, 5, 2}, {3, 2}, {stride = {2, 1}, padding = {1, 0, 0, 1}}},
    {{2, 5, 5, 1}, 3, {stride = 1, padding = 1}},       -- overlapping windows
    {{1, 7, 6, 2}, 2, {stride = 3}},                    -- gaps between windows
  }
  for i, c in ipairs(cases) do
    local x = distinct(c[1], i)
    gradcheck(function(t) return rn.max_pool2d(t, c[2], c[3]) end, {x})
    gradcheck(function(t) return rn.avg_pool2d(t, c[2], c[3]) end, {f64(c[1])})
    local o = {count_include_pad = true}
    for k, v in pairs(c[3]) do o[k] = v end
    gradcheck(function(t) return rn.avg_pool2d(t, c[2], o) end, {f64(c[1])})
  end
  -- non-contiguous: permuted and narrowed
  local xp = distinct({2, 3, 5, 4}, 9):permute(1, 3, 4, 2)    -- (2,5,4,3)
  T.truthy(not xp:is_contiguous())
  gradcheck(function(t) return rn.max_pool2d(t, 2, {padding = "same"}) end, {xp})
  local xa = f64({2, 3, 5, 4}):permute(1, 3, 4, 2)
  gradcheck(function(t) return rn.avg_pool2d(t, 3, {stride = 2, padding = "same"}) end, {xa})
  local xn = distinct({1, 6, 6, 4}, 5):narrow(4, 2, 2)
  gradcheck(function(t) return t:max_pool2d(3, {stride = 2}) end, {xn})
  gradcheck(function(t) return rn.global_avg_pool2d(t) end, {f64({2, 3, 4, 5})})
  gradcheck(function(t) return t:global_avg_pool2d() end, {f64({2, 3, 5, 4}):permute(1, 3, 4, 2)})
end)

-- ---- pooling values --------------------------------------------------------------

-- naive Lua pooling on a float64 tensor, resolved explicit pads {t,b,l,r}
local function pool_ref(x, max, kh, kw, sh, sw, pads, cip)
  local xt, s = x:totable(), x:size()
  local N, H, W, C = s[1], s[2], s[3], s[4]
  local OH = (H + pads[1] + pads[2] - kh) // sh + 1
  local OW = (W + pads[3] + pads[4] - kw) // sw + 1
  local out = {}
  for n = 1, N do
    out[n] = {}
    for oh = 1, OH do
      out[n][oh] = {}
      for ow = 1, OW do
        local row = {}
        for c = 1, C do
          local acc, cnt = max and -math.huge or 0, 0
          for i = 0, kh - 1 do
            for j = 0, kw - 1 do
              local ih, iw = (oh - 1) * sh - pads[1] + i + 1, (ow - 1) * sw - pads[3] + j + 1
              if ih >= 1 and ih <= H and iw >= 1 and iw <= W then
                local v = xt[n][ih][iw][c]
                if max then acc = math.max(acc, v) else acc = acc + v end
                cnt = cnt + 1
              end
            end
          end
          if not max then acc = acc / (cip and kh * kw or cnt) end
          row[c] = acc
        end
        out[n][oh][ow] = row
      end
    end
  end
  return rn.tensor(out, {dtype = "float64"})
end

local function same_pads(n, k, s)
  local out = (n + s - 1) // s
  local total = math.max((out - 1) * s + k - n, 0)
  return total // 2, total - total // 2
end

T.test("pooling: values against a Lua reference (max, avg, count_include_pad)", function()
  local x = rn.arange(16, {dtype = "float64"}):reshape({1, 4, 4, 1})
  T.eq(rn.max_pool2d(x, 2):reshape({4}):totable(), {5, 7, 13, 15})
  T.eq(rn.avg_pool2d(x, 2):reshape({4}):totable(), {2.5, 4.5, 10.5, 12.5})
  -- 3x3 stride 1 same: the corner averages its 4 real cells, or /9 with count_include_pad
  T.near(rn.avg_pool2d(x, 3, {stride = 1, padding = "same"}):narrow(2, 1, 1):narrow(3, 1, 1):item(), 2.5, 1e-12)
  T.near(rn.avg_pool2d(x, 3, {stride = 1, padding = "same", count_include_pad = true})
    :narrow(2, 1, 1):narrow(3, 1, 1):item(), 10 / 9, 1e-12)
  -- padded cells never win a max, even when all real values are negative
  local neg = -(x + 1)
  T.eq(rn.max_pool2d(neg, 3, {stride = 1, padding = "same"}):narrow(2, 1, 1):narrow(3, 1, 1):item(), -1)
  rn.manual_seed(5)
  math.randomseed(5) -- the configurations below are the same on every run
  for i = 1, 20 do
    local H, W = math.random(3, 9), math.random(3, 9)
    local kh, kw = math.random(1, 3), math.random(1, 3)
    local sh, sw = math.random(1, 3), math.random(1, 3)
    local xx = f64({math.random(1, 2), H, W, math.random(1, 4)})
    local opts, pads = {stride = {sh, sw}}, nil
    if i % 2 == 0 then
      opts.padding = "same"
      local t, b = same_pads(H, kh, sh)
      local l, r = same_pads(W, kw, sw)
      pads = {t, b, l, r}
    else
      pads = {math.random(0, kh - 1), math.random(0, kh - 1), math.random(0, kw - 1), math.random(0, kw - 1)}
      opts.padding = pads
    end
    local msg = string.format("case %d: x %s k %dx%d s %dx%d pads {%s}", i, shape_str(xx), kh, kw, sh, sw,
      table.concat(pads, ","))
    T.near(rn.max_pool2d(xx, {kh, kw}, opts), pool_ref(xx, true, kh, kw, sh, sw, pads), 0, 0, msg)
    T.near(rn.avg_pool2d(xx, {kh, kw}, opts), pool_ref(xx, false, kh, kw, sh, sw, pads), 1e-12, 1e-12, msg)
    -- float32 gives the same within rounding
    T.near(rn.max_pool2d(xx:float(), {kh, kw}, opts), rn.max_pool2d(xx, {kh, kw}, opts), 1e-6, 1e-6, msg)
    opts.count_include_pad = true
    T.near(rn.avg_pool2d(xx, {kh, kw}, opts), pool_ref(xx, false, kh, kw, sh, sw, pads, true), 1e-12, 1e-12, msg)
  end
end)

T.test("pooling: max backward routes to the first max of each window", function()
  local x = rn.tensor({{{{1}, {3}}, {{3}, {2}}}}, {dtype = "float64", requires_grad = true}) -- (1,2,2,1)
  rn.max_pool2d(x, 2):sum():backward()
  T.eq(x.grad:reshape({4}):totable(), {0, 1, 0, 0})
  -- overlapping windows accumulate
  local z = rn.tensor({{{{0}, {9}, {0}}}}, {dtype = "float64", requires_grad = true})  -- (1,1,3,1)
  rn.max_pool2d(z, {1, 2}, {stride = 1}):sum():backward()
  T.eq(z.grad:reshape({3}):totable(), {0, 2, 0})
  T.eq(rn.global_avg_pool2d(rn.ones({2, 3, 4, 5})):size(), {2, 5})
  T.near(rn.global_avg_pool2d(rn.arange(12, {dtype = "float64"}):reshape({1, 2, 3, 2})):totable(), {{5, 6}}, 1e-12)
end)

-- ---- errors ----------------------------------------------------------------------

T.test("errors: conv2d checks name the op, the shapes and the valid range", function()
  local x, w = rn.zeros({8, 32, 32, 3}), rn.zeros({3, 3, 16, 32})
  T.raises(function() return rn.conv2d(x, w) end,
    "conv2d: input (8,32,32,3) has 3 channels but weight (3,3,16,32) expects 16", true)
  T.raises(function() return rn.conv2d(rn.zeros({32, 32, 3}), rn.zeros({3, 3, 3, 4})) end,
    "conv2d: input %(32,32,3%) must be 4%-d %(N,H,W,C%)")
  T.raises(function() return rn.conv2d(rn.zeros({1, 8, 8, 3}), rn.zeros({3, 3, 3})) end,
    "conv2d: weight %(3,3,3%) must be 4%-d %(KH,KW,Cin,Cout%)")
  local x3, w3 = rn.zeros({1, 8, 8, 3}), rn.zeros({3, 3, 3, 4})
  T.raises(function() return rn.conv2d(x3, w3, rn.zeros({5})) end,
    "conv2d: bias %(5%) must have shape %(4%)")
  T.raises(function() return rn.conv2d(x3, w3, rn.zeros({1, 4})) end, "conv2d: bias %(1,4%)")
  T.raises(function() return rn.conv2d(x3, w3:double()) end,
    "conv2d: dtypes differ %(input float32, weight float64%)")
  T.raises(function() return rn.conv2d(x3, w3, rn.zeros({4}, {dtype = "float64"})) end,
    "conv2d: dtypes differ .*bias float64")
  T.raises(function() return rn.conv2d(x3:int(), w3:int()) end, "conv2d: dtype int32 is not a float type")
  T.raises(function() return rn.conv2d(x3, w3, nil, {stride = 0}) end, "conv2d: stride %(0,0%) must be >= 1")
  T.raises(function() return rn.conv2d(x3, w3, nil, {stride = {1, -2}}) end, "conv2d: stride %(1,%-2%) must be >= 1")
  T.raises(function() return rn.conv2d(x3, w3, nil, {dilation = 0}) end, "conv2d: dilation %(0,0%) must be >= 1")
  T.raises(function() return rn.conv2d(x3, w3, nil, {padding = -1}) end,
    "conv2d: padding %(top %-1, bottom %-1, left %-1, right %-1%) must be >= 0")
  T.raises(function() return rn.conv2d(rn.zeros({1, 2, 2, 3}), w3, nil, {padding = "valid"}) end,
    "conv2d: input %(1,2,2,3%) padded to 2x2 is smaller than the 3x3 %(dilated%) kernel")
  T.raises(function() return rn.conv2d(rn.zeros({1, 4, 4, 3}), w3, nil, {dilation = 2}) end,
    "smaller than the 5x5 %(dilated%) kernel")
  T.raises(function() return rn.conv2d(x3, w3, nil, {strides = 2}) end,
    "conv2d: unknown option 'strides' %(valid: stride, padding, dilation, groups%)")
  T.raises(function() return rn.conv2d(x3, w3, nil, {padding = "full"}) end, "conv2d: padding 'full' is not valid")
  T.raises(function() return rn.conv2d(x3, w3, nil, {padding = {1, 2, 3}}) end,
    "conv2d: option 'padding' must be an integer or a list of 2 or 4 integers, got a list of 3")
  T.raises(function() return rn.conv2d(x3, w3, nil, {stride = 1.5}) end,
    "conv2d: option 'stride' must be an integer, got number")
  T.raises(function() return rn.conv2d(x3, w3, nil, {stride = {1, 2, 3}}) end,
    "conv2d: option 'stride' must be an integer or a list of 2 integers")
  T.raises(function() return rn.conv2d(x3, w3, nil, 5) end, "conv2d: options must be a table, got number")
  T.raises(function() return rn.conv2d({1, 2}, w3) end, "conv2d: argument 1 must be a tensor, got table")
  T.raises(function() return rn.conv2d(x3, "w") end, "conv2d: argument 2 must be a tensor, got string")
  T.raises(function() return rn.conv2d(x3, w3, 3) end, "conv2d: argument 3 must be a tensor, got number")
  T.raises(function() return rn.conv2d(x3, w3, {stride = 2}, {}) end, "argument 4 must be absent")
end)

T.test("errors: pooling checks", function()
  local x = rn.zeros({1, 4, 4, 2})
  T.raises(function() return rn.max_pool2d(rn.zeros({4, 4, 2}), 2) end,
    "max_pool2d: input %(4,4,2%) must be 4%-d %(N,H,W,C%)")
  T.raises(function() return rn.avg_pool2d(x, 0) end, "avg_pool2d: kernel size %(0,0%) must be >= 1")
  T.raises(function() return rn.max_pool2d(x, 2, {stride = 0}) end, "max_pool2d: stride %(0,0%) must be >= 1")
  T.raises(function() return rn.max_pool2d(x, 5) end,
    "max_pool2d: input %(1,4,4,2%) padded to 4x4 is smaller than the 5x5 kernel")
  T.raises(function() return rn.max_pool2d(x, 2, {padding = 2}) end,
    "max_pool2d: padding %(top 2, bottom 2, left 2, right 2%) must be in 0..1")
  T.raises(function() return rn.avg_pool2d(x, 2, {count_include_pads = true}) end,
    "avg_pool2d: unknown option 'count_include_pads'")
  T.raises(function() return rn.max_pool2d(x, 2, {count_include_pad = true}) end,
    "max_pool2d: unknown option 'count_include_pad' %(valid: stride, padding%)")
  T.raises(function() return rn.avg_pool2d(x, 2, {count_include_pad = 1}) end,
    "option 'count_include_pad' must be a boolean")
  T.raises(function() return rn.max_pool2d(x) end, "max_pool2d: argument 2 %(kernel size%)")
  T.raises(function() return rn.max_pool2d(x, "2") end, "max_pool2d: kernel size must be an integer, got string")
  T.raises(function() return rn.max_pool2d(x:long(), 2) end, "max_pool2d: dtype int64 is not a float type")
  T.raises(function() return rn.max_pool2d(5, 2) end, "max_pool2d: argument 1 must be a tensor, got number")
  T.raises(function() return rn.global_avg_pool2d(rn.zeros({2, 3})) end,
    "global_avg_pool2d: input %(2,3%) must be 4%-d")
  T.raises(function() return rn.global_avg_pool2d(nil) end, "global_avg_pool2d: argument 1 must be a tensor")
end)
