-- test_wino.lua - rnlua's own Winograd F(4x4,3x3) convolution (core/cpu/
-- wino.c): forward, fused epilogues and input gradient against the float64
-- reference, the filter-transform cache across in-place weight changes,
-- thread-count and batch independence (bitwise), the ISA choice under the
-- cap, deterministic mode, and "auto"'s per-shape choice and its report.
-- Error bound asserted: relative to the output's largest magnitude, 2e-5 for
-- unit-scale data (F(4x4,3x3) float32; measured ~1e-6 .. 5e-6 up to 64
-- channels, growing slowly with Cin). No timings are asserted.
local T = require "t"
local rn = require "rn"

local function maxdiff(a, b) return (a - b):abs():max():item() end
local function relerr(a, b) return maxdiff(a, b) / math.max(b:abs():max():item(), 1e-30) end

local function ours_name()
  local f = rn.cpu.features()
  if f.avx512f and f.fma then return "rn_wino_f4x3:avx512" end
  if f.avx2 and f.fma then return "rn_wino_f4x3:avx2" end
  return nil
end

local function need_ours()
  local n = ours_name()
  if not n then T.skip("no AVX2+FMA under the ISA cap: rnlua's Winograd does not run here") end
  return n
end

-- y, gx, gw for gy (x and w require grad), on the current conv impl
local function conv_all(x, w, b, o, gy)
  local xx, ww = x:clone():requires_grad_(), w:clone():requires_grad_()
  local y = rn.conv2d(xx, ww, b, o)
  y:backward(gy)
  return y, xx.grad, ww.grad
end

local configs = {
  -- N, H, W, Cin, Cout, padding: odd sizes (partial tiles), channel tails of
  -- both vector widths, explicit and asymmetric pads, the 3-channel stem
  { 2, 9, 7, 5, 3, "same" }, { 3, 8, 8, 16, 16, "same" }, { 2, 13, 11, 32, 40, "same" },
  { 1, 6, 6, 3, 17, 0 }, { 2, 10, 10, 64, 64, 1 }, { 2, 5, 5, 8, 24, 2 }, { 2, 7, 9, 5, 7, { 1, 2 } },
  { 1, 32, 32, 3, 16, "same" }, { 2, 4, 4, 33, 9, "same" }, { 1, 1, 1, 4, 4, 1 }, { 2, 11, 6, 128, 24, "same" },
}

T.test("winograd: forward and input gradient against the float64 reference", function()
  local name = need_ours()
  rn.manual_seed(24)
  local ok, err = pcall(function()
    for i, c in ipairs(configs) do
      local N, H, W, C, O, pad = table.unpack(c)
      local x, w, b = rn.randn({ N, H, W, C }), rn.randn({ 3, 3, C, O }), rn.randn({ O })
      local o = { padding = pad }
      rn.cpu.set_conv_impl("im2col")
      local y0 = rn.conv2d(x, w, b, o)
      local gy = rn.randn(y0:size())
      local ref = { conv_all(x:double(), w:double(), b:double(), o, gy:double()) }
      rn.cpu.set_conv_impl("winograd")
      local got = { conv_all(x, w, b, o, gy) }
      local k = rn.cpu.conv_kernels()
      local cfg = string.format("config %d (%s)", i, table.concat(c, ",", 1, 5))
      T.eq(k.forward, name, cfg .. ": forward ran ours")
      T.eq(k.backward_data, name, cfg .. ": input gradient ran ours")
      T.truthy(not k.backward_filter:find("rn_wino"), cfg .. ": the weight gradient is not ours")
      for j, what in ipairs({ "y", "gx", "gw" }) do
        local e = relerr(got[j]:double(), ref[j])
        T.truthy(e < 2e-5, string.format("%s, %s: relative error %.3g", cfg, what, e))
      end
      -- and it is a different computation from the direct ones (not a copy)
      rn.cpu.set_conv_impl("im2col")
      local d = maxdiff(rn.conv2d(x, w, b, o), got[1])
      T.truthy(C * O < 16 or d > 0, cfg .. ": Winograd's rounding differs from im2col's: " .. d)
    end
  end)
  rn.cpu.set_conv_impl("auto")
  assert(ok, err)
end)

T.test("winograd: fused epilogues (+residual, +relu) against the float64 reference", function()
  need_ours()
  rn.manual_seed(5)
  local ok, err = pcall(function()
    for _, c in ipairs({ { 2, 8, 8, 16, 16 }, { 1, 7, 5, 5, 11 } }) do
      local N, H, W, C, O = table.unpack(c)
      local x, w, b, acc = rn.randn({ N, H, W, C }), rn.randn({ 3, 3, C, O }), rn.randn({ O }), rn.randn({ N, H, W, O })
      local o = { padding = "same" }
      local ref = rn.conv2d(x:double(), w:double(), b:double(), o) + acc:double()
      for _, relu in ipairs({ false, true }) do
        rn.cpu.set_conv_impl("winograd")
        local y = require("rn.core")._conv2d_fused(x, w, b, o, relu, acc:clone())
        T.truthy(rn.cpu.conv_kernels().forward:find("rn_wino") ~= nil, "fused forward ran ours")
        local r = relu and ref:relu() or ref
        T.truthy(relerr(y:double(), r) < 2e-5, string.format("relu %s: %.3g", tostring(relu), relerr(y:double(), r)))
        local y2 = require("rn.core")._conv2d_fused(x, w, b, o, relu, nil)
        local r2 = rn.conv2d(x:double(), w:double(), b:double(), o)
        if relu then r2 = r2:relu() end
        T.truthy(relerr(y2:double(), r2) < 2e-5, "no residual, relu " .. tostring(relu))
      end
    end
  end)
  rn.cpu.set_conv_impl("auto")
  assert(ok, err)
end)

T.test("winograd: the cached filter transform follows in-place weight changes", function()
  need_ours()
  rn.manual_seed(7)
  local ok, err = pcall(function()
    rn.cpu.set_conv_impl("winograd")
    local x, w = rn.randn({ 2, 8, 8, 16 }), rn.randn({ 3, 3, 16, 16 })
    local o = { padding = "same" }
    local y1 = rn.conv2d(x, w, nil, o)
    local y1b = rn.conv2d(x, w, nil, o) -- a cache hit: the same bits
    T.eq(maxdiff(y1, y1b), 0, "hit")
    for step = 1, 3 do -- an optimizer-like in-place update each step
      w:add_(rn.randn({ 3, 3, 16, 16 }) * 0.5)
      local y = rn.conv2d(x, w, nil, o)
      local r = rn.conv2d(x:double(), w:double(), nil, o)
      T.truthy(relerr(y:double(), r) < 2e-5, "after in-place update " .. step .. ": " .. relerr(y:double(), r))
      -- the input gradient uses the updated weights too
      local xx = x:clone():requires_grad_()
      local gy = rn.randn(y:size())
      rn.conv2d(xx, w, nil, o):backward(gy)
      local xd = x:double():requires_grad_()
      rn.conv2d(xd, w:double(), nil, o):backward(gy:double())
      T.truthy(relerr(xx.grad:double(), xd.grad) < 2e-5, "input gradient after update " .. step)
    end
    -- fresh weights (perhaps at a reused address): never a stale transform
    for _ = 1, 3 do
      collectgarbage()
      local w2 = rn.randn({ 3, 3, 16, 16 })
      local y = rn.conv2d(x, w2, nil, o)
      T.truthy(relerr(y:double(), rn.conv2d(x:double(), w2:double(), nil, o)) < 2e-5, "fresh weights")
    end
    -- empty_cache drops the transforms; results stay the same bits
    local y2 = rn.conv2d(x, w, nil, o)
    rn.cpu.empty_cache()
    T.eq(maxdiff(rn.conv2d(x, w, nil, o), y2), 0, "recomputed transform")
  end)
  rn.cpu.set_conv_impl("auto")
  assert(ok, err)
end)

T.test("winograd: the same bits for any thread count and batch split", function()
  need_ours()
  rn.manual_seed(9)
  local threads = rn.get_num_threads()
  local ok, err = pcall(function()
    rn.cpu.set_conv_impl("winograd")
    local x, w, b = rn.randn({ 5, 12, 12, 24 }), rn.randn({ 3, 3, 24, 20 }), rn.randn({ 20 })
    local gy = rn.randn({ 5, 12, 12, 20 })
    local o = { padding = "same" }
    local a = { conv_all(x, w, b, o, gy) }
    rn.set_num_threads(1)
    local c = { conv_all(x, w, b, o, gy) }
    rn.set_num_threads(threads)
    T.eq(maxdiff(a[1], c[1]), 0, "forward, 1 thread vs " .. threads)
    T.eq(maxdiff(a[2], c[2]), 0, "input gradient, 1 thread vs " .. threads)
    -- the first two images alone: the same bits as within the batch of 5
    local y2 = rn.conv2d(x:narrow(1, 1, 2):contiguous(), w, b, o)
    T.eq(maxdiff(y2, a[1]:narrow(1, 1, 2)), 0, "batch of 2 vs 5")
  end)
  rn.set_num_threads(threads)
  rn.cpu.set_conv_impl("auto")
  assert(ok, err)
end)

T.test("winograd: never in deterministic mode, for groups, strides or float64", function()
  rn.manual_seed(2)
  local ok, err = pcall(function()
    rn.cpu.set_conv_impl("winograd")
    local x, w = rn.randn({ 2, 8, 8, 8 }), rn.randn({ 3, 3, 8, 8 })
    rn.set_deterministic(true)
    rn.conv2d(x, w, nil, { padding = "same" })
    rn.set_deterministic(false)
    T.truthy(rn.cpu.conv_kernels().forward:find("deterministic") ~= nil, "deterministic mode: " .. rn.cpu.conv_kernels().forward)
    rn.conv2d(x, w, nil, { padding = "same", stride = 2 })
    T.truthy(not rn.cpu.conv_kernels().forward:find("rn_wino"), "stride 2")
    rn.conv2d(x, rn.randn({ 3, 3, 4, 8 }), nil, { padding = "same", groups = 2 })
    T.truthy(not rn.cpu.conv_kernels().forward:find("rn_wino"), "groups 2")
    rn.conv2d(x:double(), w:double(), nil, { padding = "same" })
    T.truthy(not rn.cpu.conv_kernels().forward:find("rn_wino"), "float64")
    rn.conv2d(x, rn.randn({ 5, 5, 8, 8 }), nil, { padding = "same" })
    T.truthy(not rn.cpu.conv_kernels().forward:find("rn_wino"), "5x5")
  end)
  rn.set_deterministic(false)
  rn.cpu.set_conv_impl("auto")
  assert(ok, err)
end)

T.test("winograd: \"auto\" is a fixed rule (ours at 16+ channels), the same kernels every run", function()
  local name = need_ours()
  rn.manual_seed(8)
  local ok, err = pcall(function()
    rn.cpu.set_conv_impl("auto")
    rn.cpu.empty_cache()
    for _, c in ipairs({ { 16, 16, true }, { 32, 64, true }, { 3, 16, false }, { 16, 8, false } }) do
      local x, w = rn.randn({ 2, 8, 8, c[1] }), rn.randn({ 3, 3, c[1], c[2] })
      rn.conv2d(x, w, nil, { padding = "same" })
      local k = rn.cpu.conv_kernels().forward
      T.eq(k == name, c[3], string.format("%d -> %d channels ran %s", c[1], c[2], k))
    end
    T.eq(#rn.cpu.conv_choices(), 0, "auto measures nothing")
  end)
  rn.cpu.set_conv_impl("auto")
  assert(ok, err)
end)

T.test("winograd: \"benchmark\" measures ours against oneDNN once per shape and runs the choice", function()
  local name = need_ours()
  if not rn.cpu.features().onednn then T.skip("oneDNN unavailable") end
  rn.manual_seed(4)
  rn.cpu.set_conv_impl("benchmark")
  rn.cpu.empty_cache()
  T.eq(#rn.cpu.conv_choices(), 0, "empty_cache forgets the choices")
  local x, w = rn.randn({ 4, 12, 12, 16 }), rn.randn({ 3, 3, 16, 16 })
  local y = rn.conv2d(x, w, nil, { padding = "same" })
  local ch = rn.cpu.conv_choices()
  T.eq(#ch, 1, "one measured shape")
  T.eq(ch[1].direction, "forward")
  T.truthy(ch[1].ours_ms > 0 and ch[1].onednn_ms > 0, "both timed")
  local ran = rn.cpu.conv_kernels().forward
  T.eq(ran == name, ch[1].chosen == "ours", "the kernel that ran is the chosen one: " .. ran .. ", " .. ch[1].chosen)
  T.eq(ch[1].chosen == "ours", ch[1].ours_ms < ch[1].onednn_ms, "the faster one is chosen")
  local r = rn.conv2d(x:double(), w:double(), nil, { padding = "same" })
  T.truthy(relerr(y:double(), r) < 2e-5, "the measured call's result")
  rn.cpu.conv_kernel_stats(true)
  local y2 = rn.conv2d(x, w, nil, { padding = "same" })
  T.eq(#rn.cpu.conv_choices(), 1, "measured once")
  T.eq(maxdiff(y, y2), 0, "the same kernel the second time")
  local st = rn.cpu.conv_kernel_stats()
  T.eq(#st, 1, "one kernel noted")
  T.eq(st[1].calls, 1, "once (measurements are not counted)")
  T.eq(rn.cpu.conv_impl(), "benchmark")
  rn.cpu.set_conv_impl("onednn")
  rn.conv2d(x, w, nil, { padding = "same" })
  T.truthy(not rn.cpu.conv_kernels().forward:find("rn_wino"), "onednn never runs ours")
  rn.cpu.set_conv_impl("auto")
end)

T.test("winograd: follows the ISA cap (AVX2 kernel under AVX2, none under SSE4.1)", function()
  local hw = rn.cpu.features().hw
  if not (hw.avx2 and hw.fma) then T.skip("the CPU has no AVX2+FMA") end
  local bin = os.getenv("RNLUA_BIN") or "./rnlua"
  local code = [[local rn = require "rn"; rn.cpu.set_conv_impl("winograd")
    rn.conv2d(rn.randn({1, 8, 8, 8}), rn.randn({3, 3, 8, 8}), nil, {padding = "same"})
    print("kernel=" .. rn.cpu.conv_kernels().forward)]]
  for cap, want in pairs({ AVX2 = "rn_wino_f4x3:avx2", SSE41 = false }) do
    local p = assert(io.popen(string.format("ONEDNN_MAX_CPU_ISA=%s %s -e %q 2>&1", cap, bin, code)))
    local out = p:read("a")
    p:close()
    local k = out:match("kernel=([^\n]+)")
    T.truthy(k, cap .. ": " .. out)
    if want then T.eq(k, want, cap) else T.truthy(not k:find("rn_wino"), cap .. ": " .. k) end
  end
end)
