-- bench_wino.lua - rnlua's own Winograd (set_conv_impl "winograd") against
-- oneDNN ("onednn") on the seed ResNet's 3x3 stride-1 shapes, forward and
-- backward-data, alternating A/B with the median of --reps: ms per call and
-- the effective GFLOP/s (direct-equivalent: 2*N*OH*OW*Cin*Cout*9 per call)
-- against the FMA peak given by --peak (GFLOP/s, all cores; printed as a
-- fraction when given). Run it capped too: ONEDNN_MAX_CPU_ISA=AVX2.
--   ./rnlua scripts/bench_wino.lua [--batch 128] [--reps 7] [--peak GFLOPS]
local rn = require "rn"
local batch, reps, peak = 128, 7, nil
local i = 1
while arg and arg[i] do
  local k, v = arg[i], arg[i + 1]
  if k == "--batch" then batch = tonumber(v)
  elseif k == "--reps" then reps = tonumber(v)
  elseif k == "--peak" then peak = tonumber(v)
  else error("bench_wino: unknown option " .. k) end
  i = i + 2
end
rn.manual_seed(1)
local shapes = { -- H, W, Cin, Cout
  { 32, 32, 3, 16 }, { 32, 32, 16, 16 }, { 16, 16, 32, 32 }, { 8, 8, 64, 64 },
}
local f = rn.cpu.features()
print(string.format("bench_wino: %s, isa %s%s, %d threads, batch %d, median of %d (A/B alternating)",
  f.model, f.isa, f.isa_cap and (" (cap " .. f.isa_cap .. ")") or "", rn.get_num_threads(), batch, reps))
print(string.format("%-22s %-8s %9s %9s %8s %8s %s", "shape (H,W,Cin->Cout)", "dir", "ours ms",
  "oneDNN ms", "ours GF", "oDNN GF", "kernels (ours | oneDNN)"))
local function med(t) table.sort(t); return t[(#t + 1) // 2] end
for _, s in ipairs(shapes) do
  local H, W, C, O = table.unpack(s)
  local x = rn.randn({ batch, H, W, C })
  local w = rn.randn({ 3, 3, C, O })
  local gy = rn.randn({ batch, H, W, O })
  local xg = x:detach():requires_grad_()
  local function fwd() return rn.conv2d(x, w, nil, { padding = "same" }) end
  local function bwd() rn.conv2d(xg, w, nil, { padding = "same" }):backward(gy); xg.grad = nil end
  local flop = 2 * batch * H * W * C * O * 9
  for _, d in ipairs({ { "fwd", fwd, "forward" }, { "bwd_data", bwd, "backward_data" } }) do
    local ts, names = { winograd = {}, onednn = {} }, {}
    for _, impl in ipairs({ "winograd", "onednn" }) do rn.cpu.set_conv_impl(impl); d[2](); d[2]() end
    for _ = 1, reps do
      for _, impl in ipairs({ "winograd", "onednn" }) do
        rn.cpu.set_conv_impl(impl)
        local t0 = rn._clock(); d[2](); local t1 = rn._clock()
        if d[1] == "bwd_data" then -- the backward alone: minus a forward
          local t2 = rn._clock(); fwd(); t1 = t1 - (rn._clock() - t2)
        end
        ts[impl][#ts[impl] + 1] = t1 - t0
        names[impl] = rn.cpu.conv_kernels()[d[3]]
      end
    end
    local a, b = med(ts.winograd), med(ts.onednn)
    local ga, gb = flop / a / 1e9, flop / b / 1e9
    print(string.format("%-22s %-8s %9.3f %9.3f %8.1f %8.1f %s | %s%s", string.format("%dx%d %d->%d", H, W, C, O),
      d[1], a * 1e3, b * 1e3, ga, gb, names.winograd, names.onednn,
      peak and string.format("  (%.0f%% | %.0f%% of peak)", 100 * ga / peak, 100 * gb / peak) or ""))
  end
end
rn.cpu.set_conv_impl("auto")
