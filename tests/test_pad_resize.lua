-- test_pad_resize.lua - rn.pad (constant, reflect, replicate on any dims)
-- and rn.resize / rn.upsample (NHWC nearest and half-pixel bilinear):
-- values at known points, Keras's UpSampling2D (repeat), integer dtypes,
-- strided inputs, float64 finite-difference gradients (the ops are linear:
-- a large step), deterministic backward, and the errors. PyTorch values:
-- test_ops_torch.lua.
local T = require "t"
local rn = require "rn"
local gradcheck = require "gradcheck"

local F64 = {dtype = "float64"}

T.test("pad: constant, reflect, replicate values", function()
  local x = rn.tensor({{1, 2, 3}, {4, 5, 6}})
  T.eq(rn.pad(x, {{1, 0}, {0, 2}}):totable(), {{0, 0, 0, 0, 0}, {1, 2, 3, 0, 0}, {4, 5, 6, 0, 0}})
  T.eq(rn.pad(x, {{0, 0}, {1, 1}}, {value = 9}):totable(), {{9, 1, 2, 3, 9}, {9, 4, 5, 6, 9}})
  T.eq(rn.pad(x, {{0, 0}, {2, 2}}, {mode = "reflect"}):totable(), {{3, 2, 1, 2, 3, 2, 1}, {6, 5, 4, 5, 6, 5, 4}})
  T.eq(rn.pad(x, {{1, 1}, {0, 0}}, {mode = "reflect"}):totable(), {{4, 5, 6}, {1, 2, 3}, {4, 5, 6}, {1, 2, 3}})
  T.eq(rn.pad(x, {{2, 0}, {1, 2}}, {mode = "replicate"}):totable(),
    {{1, 1, 2, 3, 3, 3}, {1, 1, 2, 3, 3, 3}, {1, 1, 2, 3, 3, 3}, {4, 4, 5, 6, 6, 6}})
  T.eq(rn.pad(x, {{0, 0}, {0, 0}}):totable(), x:totable(), "no pads")
  -- integer dtypes keep their values and type
  local i = rn.tensor({{7, -8}}, {dtype = "int64"})
  local p = rn.pad(i, {{0, 1}, {1, 0}}, {value = 3})
  T.eq(p.dtype, "int64")
  T.eq(p:totable(), {{3, 7, -8}, {3, 3, 3}})
  -- a 4-d NHWC image padded on H and W only (Keras's ZeroPadding2D)
  local im = rn.ones({2, 3, 4, 5})
  local z = rn.pad(im, {{0, 0}, {1, 2}, {3, 4}, {0, 0}})
  T.eq(z:size(), {2, 6, 11, 5})
  T.eq(z:sum():item(), 2 * 3 * 4 * 5)
end)

T.test("resize: nearest repeats (UpSampling2D), bilinear uses half-pixel centres", function()
  local im = rn.tensor({1, 2, 3, 4}):reshape({1, 2, 2, 1})
  T.eq(rn.upsample(im, 2):reshape({4, 4}):totable(),
    {{1, 1, 2, 2}, {1, 1, 2, 2}, {3, 3, 4, 4}, {3, 3, 4, 4}})
  T.eq(rn.upsample(im, {1, 3}):reshape({2, 6}):totable(), {{1, 1, 1, 2, 2, 2}, {3, 3, 3, 4, 4, 4}})
  T.near(rn.upsample(im, 2, {method = "bilinear"}):reshape({4, 4}),
    {{1, 1.25, 1.75, 2}, {1.5, 1.75, 2.25, 2.5}, {2.5, 2.75, 3.25, 3.5}, {3, 3.25, 3.75, 4}}, 1e-6, 0)
  -- same size is the identity; downsampling by 2 with bilinear averages pairs
  rn.manual_seed(220)
  local x = rn.randn({2, 4, 6, 3}, F64)
  T.near(rn.resize(x, {4, 6}, {method = "bilinear"}), x, 0, 0, "identity")
  local d = rn.resize(x, {2, 3}, {method = "bilinear"})
  T.near(d:narrow(2, 1, 1):narrow(3, 1, 1),
    (x:narrow(2, 1, 2):narrow(3, 1, 2)):mean({2, 3}, true), 1e-14, 0, "2x2 average")
  -- integer images with nearest
  local u = rn.tensor({{{{1}, {2}}}}, {dtype = "uint8"})
  T.eq(rn.upsample(u, 2):reshape({2, 4}):totable(), {{1, 1, 2, 2}, {1, 1, 2, 2}})
end)

T.test("pad, resize: strided inputs as contiguous ones", function()
  rn.manual_seed(221)
  local x = rn.randn({3, 5, 4, 2}, F64):permute(1, 3, 2, 4) -- (3,4,5,2) strided
  T.near(rn.pad(x, {{0, 0}, {1, 2}, {2, 1}, {0, 0}}, {mode = "reflect"}),
    rn.pad(x:contiguous(), {{0, 0}, {1, 2}, {2, 1}, {0, 0}}, {mode = "reflect"}), 0, 0, "pad")
  T.near(rn.resize(x, {7, 3}, {method = "bilinear"}), rn.resize(x:contiguous(), {7, 3}, {method = "bilinear"}), 0, 0, "resize")
end)

T.test("pad, resize: float64 gradients equal finite differences", function()
  rn.manual_seed(222)
  local x = rn.randn({2, 3, 4}, F64)
  for _, mode in ipairs({"constant", "reflect", "replicate"}) do
    local ok, e = pcall(gradcheck, function(a) return rn.pad(a, {{1, 0}, {2, 2}, {3, 1}}, {mode = mode, value = mode == "constant" and 0.5 or nil}) end,
      {x}, {eps = 1e-2, atol = 1e-10, rtol = 1e-7})
    T.truthy(ok, mode .. ": " .. tostring(e))
  end
  local im = rn.randn({1, 3, 4, 2}, F64)
  for _, c in ipairs({{{7, 5}, "bilinear"}, {{2, 3}, "bilinear"}, {{6, 8}, "nearest"}, {{2, 7}, "nearest"}}) do
    local ok, e = pcall(gradcheck, function(a) return rn.resize(a, c[1], {method = c[2]}) end,
      {im}, {eps = 1e-2, atol = 1e-10, rtol = 1e-7})
    T.truthy(ok, c[2] .. " " .. table.concat(c[1], "x") .. ": " .. tostring(e))
  end
end)

T.test("pad, resize: the backward sums what each input fed", function()
  local x = rn.tensor({{1, 2, 3}}, F64):requires_grad_()
  rn.pad(x, {{0, 0}, {2, 2}}, {mode = "replicate"}):sum():backward()
  T.eq(x.grad:totable(), {{3, 1, 3}})
  x.grad = nil
  rn.pad(x, {{0, 0}, {2, 2}}, {mode = "reflect"}):sum():backward()
  T.eq(x.grad:totable(), {{2, 3, 2}})
  local im = rn.ones({1, 2, 2, 1}, F64):requires_grad_()
  rn.upsample(im, 3):sum():backward()
  T.eq(im.grad:reshape({4}):totable(), {9, 9, 9, 9})
end)

T.test("pad, resize: errors name the op and the rule", function()
  local x = rn.ones({2, 3})
  T.raises(function() rn.pad(x, {{1, 1}}) end, "pad: 1 pairs of pads for a 2-d x; give one {before, after} per dim", true)
  T.raises(function() rn.pad(x, {{0, 0}, {-1, 0}}) end, "pad: dim 2: pads (-1, 0) must be >= 0", true)
  T.raises(function() rn.pad(x, {{0, 0}, {3, 0}}, {mode = "reflect"}) end,
    "pad: reflect pads (3, 0) of dim 2 of (2,3) must be < its size 3", true)
  T.raises(function() rn.pad(x, {{0, 0}, {1, 0}}, {mode = "wrap"}) end, "pad: mode 'wrap' (valid: constant, reflect, replicate)", true)
  T.raises(function() rn.pad(x, {{0, 0}, {1, 0}}, {mode = "reflect", value = 2}) end, "value is for mode 'constant' only", true)
  T.raises(function() rn.pad(x, {{0, 0}, {1}}) end, "pad: pads[2] must be a pair {before, after}", true)
  T.raises(function() rn.resize(rn.ones({2, 3, 4}), {4, 4}) end, "resize: x must be (N,H,W,C), got (2,3,4)", true)
  T.raises(function() rn.resize(rn.ones({1, 2, 2, 1}), {0, 4}) end, "resize: output size (0, 4) must be 1..", true)
  T.raises(function() rn.resize(rn.ones({1, 2, 2, 1}), {4, 4}, {method = "cubic"}) end, "method 'cubic' (valid: nearest, bilinear)", true)
  T.raises(function() rn.upsample(rn.ones({1, 2, 2, 1}), 0) end, "upsample: factors (0, 0) must be 1..4096", true)
  T.raises(function() rn.resize(rn.ones({1, 2, 2, 1}, {dtype = "uint8"}), {4, 4}, {method = "bilinear"}) end,
    "resize: bilinear needs a float x, got uint8", true)
end)
