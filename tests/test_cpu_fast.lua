-- test_cpu_fast.lua - the CPU fast paths against their references: oneDNN
-- convolutions vs im2col and float64, bfloat16 math (mixed_bfloat16) vs
-- float32, fused BatchNormalization+ReLU vs the two ops (bitwise), the model
-- graph's fusion vs none (bitwise in training), the caching CPU allocator, and the
-- rn.cpu settings and their errors. No timings are asserted here.
local T = require "t"
local rn = require "rn"

local function maxdiff(a, b) return (a - b):abs():max():item() end
local function relerr(a, b) return maxdiff(a, b) / math.max(b:abs():max():item(), 1e-30) end

-- conv2d with grads of x, w (and b) for gy, on the current conv impl
local function conv_all(x, w, b, o, gy)
  local xx, ww = x:clone():requires_grad_(), w:clone():requires_grad_()
  local bb = b and b:clone():requires_grad_()
  local y = rn.conv2d(xx, ww, bb, o)
  y:backward(gy or rn.ones(y:size()))
  return y, xx.grad, ww.grad, bb and bb.grad
end

local configs = {
  {x = {2, 9, 8, 16}, w = {3, 3, 16, 16}, o = {padding = "same"}, bias = true},
  {x = {3, 8, 8, 16}, w = {3, 3, 16, 32}, o = {padding = "same", stride = 2}, bias = true},
  {x = {2, 7, 9, 5}, w = {3, 3, 5, 7}, o = {padding = {1, 2}}, bias = false},
  {x = {2, 10, 10, 8}, w = {3, 3, 8, 4}, o = {dilation = 2, padding = "same"}, bias = true},
  {x = {4, 6, 6, 32}, w = {1, 1, 32, 64}, o = {}, bias = true},
  {x = {1, 32, 32, 3}, w = {3, 3, 3, 16}, o = {padding = "same"}, bias = true},
  {x = {2, 5, 5, 3}, w = {5, 5, 3, 2}, o = {}, bias = false},
  -- Winograd under "onednn" (oneDNN's own; "auto" may pick ours) (3x3, stride 1, pad 1, 32+ channels in and out)
  {x = {2, 8, 8, 32}, w = {3, 3, 32, 32}, o = {padding = "same"}, bias = true, wino = true},
  {x = {3, 6, 7, 64}, w = {3, 3, 64, 32}, o = {padding = 1}, bias = false, wino = true},
  {x = {2, 9, 5, 32}, w = {3, 3, 32, 48}, o = {padding = "same"}, bias = true, wino = true},
  {x = {2, 8, 8, 64}, w = {3, 3, 64, 64}, o = {padding = "same"}, bias = true, wino = true},
}

-- oneDNN's ISA levels, lowest first (rn.cpu.features().isa names one)
local ISA_LEVELS = { "sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni",
  "avx512_core_bf16", "avx512_core_amx" }
local function isa_rank(name)
  for i, v in ipairs(ISA_LEVELS) do if v == name then return i end end
  return 0
end
local function isa_at_least(name) return isa_rank(rn.cpu.features().isa) >= isa_rank(name) end

-- whether a oneDNN implementation name ("brgconv:avx512_core", "jit:avx2",
-- "x64:gemm:jit", ...) names an ISA above the effective one
local function kernel_above_isa(kernel)
  local isa = kernel:match(":([%w_]+)$")
  if not isa or isa_rank(isa) == 0 then return false end
  local eff = rn.cpu.features().isa
  -- oneDNN's "avx2" JIT convolutions also serve AVX-only CPUs (its AVX2
  -- kernel family emulates FMA there) and keep the avx2 name
  if isa == "avx2" and eff == "avx" then return false end
  -- avx2_vnni sits beside avx512_core, not above it (oneDNN's bit sets)
  if isa == "avx2_vnni" then return not (eff == "avx2_vnni" or isa_rank(eff) >= isa_rank("avx512_core_vnni")) end
  return isa_rank(isa) > isa_rank(eff)
end

T.test("cpu: features table, conv impl setting and its errors", function()
  local f = rn.cpu.features()
  for _, k in ipairs({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "onednn"}) do
    T.eq(type(f[k]), "boolean", k)
    if k ~= "onednn" then T.eq(type(f.hw[k]), "boolean", "hw." .. k) end
  end
  T.truthy(f.onednn, "oneDNN is linked in and creates its CPU engine")
  T.truthy(isa_rank(f.isa) > 0, "oneDNN's effective ISA is a known level: " .. tostring(f.isa))
  T.eq(type(f.model), "string")
  T.eq(type(f.blas_core), "string")
  -- the flags the code may use are the CPU's, limited by the ISA
  for k, v in pairs(f.hw) do
    if v then T.truthy(f[k] ~= nil, k) else T.eq(f[k], false, k .. " is not claimed beyond the CPU") end
  end
  T.eq(f.avx2, f.hw.avx2 and isa_at_least("avx2"), "avx2 follows the ISA")
  T.eq(f.avx512f, f.hw.avx512f and isa_at_least("avx512_core"), "avx512f follows the ISA")
  T.eq(f.avx512_bf16, f.hw.avx512_bf16 and isa_at_least("avx512_core_bf16"), "avx512_bf16 follows the ISA")
  T.eq(f.amx_bf16, f.hw.amx_bf16 and isa_at_least("avx512_core_amx"), "amx_bf16 follows the ISA")
  local function env(n) local v = os.getenv(n); return v ~= "" and v or nil end
  T.eq(f.isa_cap, env("ONEDNN_MAX_CPU_ISA") or env("DNNL_MAX_CPU_ISA"), "isa_cap")
  T.eq(rn.cpu.conv_impl(), "auto")
  rn.cpu.set_conv_impl("im2col")
  T.eq(rn.cpu.conv_impl(), "im2col")
  rn.cpu.set_conv_impl("direct")
  T.eq(rn.cpu.conv_impl(), "onednn-direct")
  rn.cpu.set_conv_impl("onednn")
  T.eq(rn.cpu.conv_impl(), "onednn")
  rn.cpu.set_conv_impl("winograd")
  T.eq(rn.cpu.conv_impl(), "winograd")
  rn.cpu.set_conv_impl("auto")
  T.eq(rn.cpu.conv_impl(), "auto")
  T.raises(function() rn.cpu.set_conv_impl("fast") end,
    "'fast' is not one of auto, benchmark, onednn, winograd, direct, im2col", true)
  T.eq(rn.cpu.conv_impl(), "auto", "unchanged by the error")
end)

-- Runs code in a child rnlua under an ISA cap and returns its output.
local function capped(isa, code)
  local bin = os.getenv("RNLUA_BIN") or "./rnlua"
  local p = assert(io.popen(string.format("ONEDNN_MAX_CPU_ISA=%s %s -e %q 2>&1", isa, bin, code)))
  local out = p:read("a")
  p:close()
  return out
end

T.test("cpu: an ISA cap (ONEDNN_MAX_CPU_ISA) limits our features, oneDNN's kernels and the bf16 policy", function()
  local code = [[
    local rn = require "rn"
    local f = rn.cpu.features()
    local x = rn.randn({2, 8, 8, 32}):requires_grad_()
    local w = rn.randn({3, 3, 32, 32}):requires_grad_()
    rn.conv2d(x, w, nil, {padding = "same"}):sum():backward()
    local k = rn.cpu.conv_kernels()
    local ok, err = pcall(rn.mixed_precision.set_global_policy, "mixed_bfloat16")
    print(string.format("isa=%s cap=%s avx512f=%s avx512_bf16=%s amx_bf16=%s", f.isa,
      tostring(f.isa_cap), tostring(f.avx512f), tostring(f.avx512_bf16), tostring(f.amx_bf16)))
    print("kernels=" .. k.forward .. "|" .. k.backward_data .. "|" .. k.backward_filter)
    print("bf16=" .. tostring(ok) .. " " .. tostring(err))
  ]]
  for _, cap in ipairs({ "AVX2", "SSE41" }) do
    local out = capped(cap, code)
    local isa = out:match("isa=(%S+)")
    T.truthy(isa, cap .. ": " .. out)
    -- at most the cap (a CPU below it stays at its own level)
    T.truthy(isa_rank(isa) <= isa_rank(cap:lower()) and isa_rank(isa) > 0, cap .. ": isa " .. isa)
    T.truthy(out:find("cap=" .. cap, 1, true), cap .. ": the cap is reported: " .. out)
    T.truthy(out:find("avx512f=false avx512_bf16=false amx_bf16=false", 1, true), cap .. ": " .. out)
    local kernels = out:match("kernels=(%S+)")
    -- (oneDNN's Winograd is AVX-512 only; ours needs AVX2+FMA)
    T.truthy(kernels and not kernels:find("avx512") and not kernels:find("jit_wino") and
      (cap == "AVX2" or not kernels:find("wino")),
      cap .. ": no AVX-512 or Winograd kernel beyond the cap runs under it: " .. tostring(kernels))
    T.truthy(out:find("bf16=false", 1, true) and out:find("AVX512-BF16 or AMX-BF16", 1, true),
      cap .. ": the bf16 policy is refused, naming the instructions: " .. out)
    if rn.cpu.features().hw.avx512_bf16 then
      T.truthy(out:find("ISA cap", 1, true), cap .. ": the message says the cap is why: " .. out)
    end
  end
end)

T.test("conv2d: oneDNN (Winograd and direct) and im2col agree with the float64 reference, " ..
    "forward and both grads", function()
  rn.manual_seed(11)
  for i, c in ipairs(configs) do
    local x, w = rn.randn(c.x), rn.randn(c.w)
    local b = c.bias and rn.randn({c.w[4]}) or nil
    local y0 = rn.conv2d(x, w, b, c.o)
    local gy = rn.randn(y0:size())
    local ref = {conv_all(x:double(), w:double(), b and b:double(), c.o, gy:double())}
    local by = {}
    local ok, err = pcall(function()
      for _, impl in ipairs({"onednn", "direct", "im2col", "winograd"}) do
        rn.cpu.set_conv_impl(impl)
        local got = {conv_all(x, w, b, c.o, gy)}
        got.kernels = rn.cpu.conv_kernels()
        by[impl] = got
        for k = 1, 4 do
          if ref[k] then
            T.truthy(relerr(got[k]:double(), ref[k]) < 2e-5,
              string.format("config %d, %s, output %d: relative error %.3g", i, impl, k,
                relerr(got[k]:double(), ref[k])))
          end
        end
      end
    end)
    rn.cpu.set_conv_impl("auto")
    assert(ok, err)
    -- what ran under "onednn": Winograd where oneDNN reports it ran (forward
    -- and input gradient), the direct kernels elsewhere, never the weight
    -- gradient; the results must match the kernel the runtime reports
    local k = by.onednn.kernels
    local cfg = string.format("config %d (x %s, w %s)", i, table.concat(c.x, "x"), table.concat(c.w, "x"))
    for _, d in ipairs({ "forward", "backward_data", "backward_filter" }) do
      T.truthy(k[d] and not k[d]:find("im2col"), cfg .. ": oneDNN ran the " .. d .. ": " .. tostring(k[d]))
      T.truthy(not kernel_above_isa(k[d]), cfg .. ": " .. k[d] .. " is within the ISA " .. rn.cpu.features().isa)
      T.eq(by.direct.kernels[d]:find("wino") or false, false, cfg .. ": direct runs no Winograd (" .. d .. ")")
    end
    T.truthy(not k.backward_filter:find("wino"), cfg .. ": the weight gradient stays direct")
    local wf, wb = k.forward:find("wino") ~= nil, k.backward_data:find("wino") ~= nil
    T.eq(wb, wf, cfg .. ": Winograd runs both the forward and the input gradient, or neither")
    -- oneDNN 2.x has Winograd kernels for AVX-512 only: there every eligible
    -- configuration must take it (wino_ok), elsewhere none can
    T.eq(wf, c.wino == true and isa_at_least("avx512_core"),
      string.format("%s: Winograd ran (%s) where eligible (%s) at ISA %s", cfg, k.forward,
        tostring(c.wino == true), rn.cpu.features().isa))
    local d1, d2 = maxdiff(by.onednn[1], by.direct[1]), maxdiff(by.onednn[2], by.direct[2])
    if wf then
      T.truthy(d1 > 0 and d2 > 0, string.format("%s: Winograd (%s) differs from direct (%g, %g)", cfg, k.forward, d1, d2))
    else
      T.truthy(d1 == 0 and d2 == 0, string.format("%s: auto ran %s, the same as direct (%g, %g)", cfg, k.forward, d1, d2))
    end
    T.eq(maxdiff(by.onednn[3], by.direct[3]), 0, cfg .. ": weight gradient")
    T.truthy(by.im2col.kernels.forward:find("^im2col") ~= nil, cfg .. ": im2col ran " .. by.im2col.kernels.forward)
  end
end)

T.test("conv2d: oneDNN gives the same bits run to run (direct and Winograd)", function()
  rn.manual_seed(3)
  for _, C in ipairs({16, 32}) do
    local x, w, b = rn.randn({8, 16, 16, C}), rn.randn({3, 3, C, C}), rn.randn({C})
    local gy = rn.randn({8, 16, 16, C})
    local a = {conv_all(x, w, b, {padding = "same"}, gy)}
    local c = {conv_all(x, w, b, {padding = "same"}, gy)}
    for k = 1, 4 do T.eq(maxdiff(a[k], c[k]), 0, C .. " channels, output " .. k) end
  end
end)

T.test("mixed precision: policy round trip and errors", function()
  T.eq(rn.mixed_precision.global_policy(), "float32")
  T.raises(function() rn.mixed_precision.set_global_policy("mixed_float16") end,
    "'mixed_float16' is not one of float32, mixed_bfloat16", true)
  T.eq(rn.mixed_precision.global_policy(), "float32")
  local has = rn.cpu.features()
  if not (has.avx512_bf16 or has.amx_bf16) and not rn.cuda.is_available() then
    T.raises(function() rn.mixed_precision.set_global_policy("mixed_bfloat16") end,
      "needs the AVX512%-BF16 or AMX%-BF16 instructions")
    return
  end
  rn.mixed_precision.set_global_policy("mixed_bfloat16")
  T.eq(rn.mixed_precision.global_policy(), "mixed_bfloat16")
  rn.mixed_precision.set_global_policy("float32")
  T.eq(rn.mixed_precision.global_policy(), "float32")
end)

T.test("mixed precision: bfloat16 convolutions within bf16 tolerance of float32, tensors stay float32", function()
  local has = rn.cpu.features()
  if not (has.avx512_bf16 or has.amx_bf16) then
    T.skip("no AVX512-BF16 or AMX-BF16 at ISA " .. has.isa .. (has.isa_cap and " (capped by ONEDNN_MAX_CPU_ISA)" or ""))
  end
  rn.manual_seed(5)
  local bf16_kernels = {}
  for i, c in ipairs(configs) do
    local x, w = rn.randn(c.x), rn.randn(c.w)
    local b = c.bias and rn.randn({c.w[4]}) or nil
    local gy = rn.randn(rn.conv2d(x, w, b, c.o):size())
    local f = {conv_all(x, w, b, c.o, gy)}
    rn.mixed_precision.set_global_policy("mixed_bfloat16")
    local ok, err = pcall(function()
      local h = {conv_all(x, w, b, c.o, gy)}
      -- what ran: a oneDNN kernel reading bf16, or im2col in float32 (then
      -- the result is float32's, bit for bit: reported, never silent)
      local kern = rn.cpu.conv_kernels()
      for _, d in ipairs({ "forward", "backward_data", "backward_filter" }) do
        T.truthy(kern[d] ~= nil, "config " .. i .. ": a kernel is reported for " .. d)
      end
      if kern.forward:find("^im2col") then
        T.eq(maxdiff(h[1], f[1]), 0, "config " .. i .. ": im2col computes in float32")
      end
      bf16_kernels[kern.forward] = true
      for k = 1, 4 do
        if f[k] then
          T.eq(h[k].dtype, "float32", "dtype of output " .. k)
          local e = relerr(h[k], f[k])
          T.truthy(e < 1.6e-2, string.format("config %d output %d: relative error %.3g", i, k, e))
          if k == 1 and not kern.forward:find("^im2col") then
            T.truthy(e > 0, "config " .. i .. ": bf16 math should differ from float32 somewhere")
          end
        end
      end
    end)
    rn.mixed_precision.set_global_policy("float32")
    if not ok then error(err, 0) end
  end
  local names = {}
  for n in pairs(bf16_kernels) do names[#names + 1] = n end
  table.sort(names)
  T.truthy(#names > 0 and not (#names == 1 and names[1]:find("^im2col")),
    "bf16 math ran in oneDNN for some configuration: " .. table.concat(names, ", "))
  -- back to float32: the same bits as before
  local x, w = rn.randn({2, 8, 8, 16}), rn.randn({3, 3, 16, 16})
  local a = rn.conv2d(x, w, nil, {padding = "same"})
  rn.mixed_precision.set_global_policy("mixed_bfloat16")
  rn.mixed_precision.set_global_policy("float32")
  T.eq(maxdiff(rn.conv2d(x, w, nil, {padding = "same"}), a), 0)
end)

T.test("batch_norm relu=true: the same bits as batch_norm then relu (train, infer, f32, f64)", function()
  rn.manual_seed(7)
  for _, dt in ipairs({"float32", "float64"}) do
    for _, C in ipairs({16, 5}) do
      for _, training in ipairs({true, false}) do
        local x = rn.randn({4, 6, 6, C}, {dtype = dt})
        local g, b = rn.rand({C}, {dtype = dt}) + 0.5, rn.randn({C}, {dtype = dt})
        local gy = rn.randn({4, 6, 6, C}, {dtype = dt})
        local function run(fused)
          local xx, gg, bb = x:clone():requires_grad_(), g:clone():requires_grad_(), b:clone():requires_grad_()
          local rm, rv = rn.randn({C}, {dtype = dt}), rn.rand({C}, {dtype = dt}) + 0.5
          local o = {training = training}
          local y
          if fused then o.relu = true; y = rn.batch_norm(xx, gg, bb, rm, rv, o)
          else y = rn.batch_norm(xx, gg, bb, rm, rv, o):relu() end
          y:backward(gy)
          return {y, xx.grad, gg.grad, bb.grad, rm, rv}
        end
        rn.manual_seed(1); local a = run(false)
        rn.manual_seed(1); local f = run(true)
        for k = 1, 6 do
          T.eq(maxdiff(a[k], f[k]), 0, string.format("%s C=%d training=%s output %d", dt, C, tostring(training), k))
        end
        T.truthy(a[1]:min():item() == 0 and a[1]:max():item() > 0, "the relu clipped something")
      end
    end
  end
  T.raises(function() rn.batch_norm(rn.randn({2, 3}), nil, nil, nil, nil, {relu = 1}) end, "relu")
end)

T.test("batch_norm relu=true backward: the forward's mask (recomputed from x), also without beta, " ..
    "with a large mean, and after gamma/beta change in place", function()
  rn.manual_seed(17)
  for _, dt in ipairs({"float32", "float64"}) do
    for _, case in ipairs({"no beta", "large mean", "params changed"}) do
      local C = 24
      local x = rn.randn({8, 5, 5, C}, {dtype = dt})
      if case == "large mean" then x = x * 0.01 + 1000 end
      local g = rn.rand({C}, {dtype = dt}) - 0.3 -- some negative gammas
      local b = case ~= "no beta" and rn.randn({C}, {dtype = dt}) * 0.5 or nil
      local gy = rn.randn({8, 5, 5, C}, {dtype = dt})
      local function run(fused, change)
        local xx, gg = x:clone():requires_grad_(), g:clone():requires_grad_()
        local bb = b and b:clone():requires_grad_()
        local o = {training = true, relu = fused or nil}
        local y = rn.batch_norm(xx, gg, bb, nil, nil, o)
        if not fused then y = y:relu() end
        if change then -- between the forward and the backward
          rn.no_grad(function() gg:copy_(-gg); if bb then bb:copy_(bb + 5) end end)
        end
        y:backward(gy)
        return {y, xx.grad, gg.grad, bb and bb.grad}
      end
      local change = case == "params changed"
      local a, f = run(false, change), run(true, change)
      local what = dt .. " " .. case
      if change then -- the gradient at the forward's parameters
        local r = run(true, false)
        for k = 2, 4 do T.eq(maxdiff(f[k], r[k]), 0, what .. ": as if unchanged, output " .. k) end
      end
      T.truthy(a[1]:min():item() == 0 and a[1]:max():item() > 0, what .. ": the relu clipped something")
      for k = 1, b and 4 or 3 do
        T.eq(maxdiff(a[k], f[k]), 0, what .. ": output " .. k)
      end
    end
  end
end)

-- a small pre-activation net: BN->ReLU pairs, one BN output used twice, a
-- ReLU6 and a user subclass that must not be fused
local function small_model()
  local L = rn.layers
  local MyBN = L.BatchNormalization:extend("MyBN")
  function MyBN:call(x, training) return L.BatchNormalization.call(self, x, training) * 1 end
  local inp = L.Input({8, 8, 3})
  local x = L.Conv2D(8, 3, {padding = "same"})(inp)
  local h = L.BatchNormalization()(x)
  h = L.ReLU()(h)                                      -- fused
  h = L.Conv2D(8, 3, {padding = "same"})(h)
  local s = L.BatchNormalization()(h)                  -- used twice: not fused
  local r = L.ReLU()(s)
  h = L.Add()({r, s})
  h = L.BatchNormalization()(h)
  h = L.ReLU({max_value = 6})(h)                       -- ReLU6: not fused
  h = MyBN()(h)
  h = L.ReLU()(h)                                      -- subclass BN: not fused
  h = L.GlobalAveragePooling2D()(h)
  return rn.Model(inp, L.Dense(3)(h))
end

T.test("model fusion: only plain single-use BN->ReLU pairs fuse; training is bitwise that of no fusion", function()
  rn.manual_seed(21)
  local m = small_model()
  local n = 0
  for _ in pairs(m._fuse_bn) do n = n + 1 end
  T.eq(n, 1, "fused pairs")
  local x, y = rn.randn({4, 8, 8, 3}), rn.tensor({0, 1, 2, 1}):long()
  local function step(fusion)
    rn.manual_seed(21)
    local mm = small_model()
    mm.fusion = fusion
    mm:compile{optimizer = rn.optim.SGD{lr = 0.1, momentum = 0.9},
               loss = rn.losses.sparse_categorical_crossentropy({from_logits = true})}
    local l1 = mm:train_step(x, y)
    local l2 = mm:train_step(x, y)
    local out = mm:predict(x)
    return l1, l2, out, mm
  end
  local a1, a2, ao, am = step(false)
  local b1, b2, bo, bm = step(true)
  T.eq(b1, a1, "first loss")
  T.eq(b2, a2, "second loss")
  -- inference also folds conv->BN (tests/test_infer_fusion.lua): equal within rounding
  T.near(bo, ao, 1e-6, 1e-5, "inference outputs")
  local aw, bw = am:weights(), bm:weights()
  T.eq(#aw, #bw)
  T.truthy(#aw > 10, "weights listed")
  for i, w in ipairs(aw) do
    local v = bw[i]
    T.eq(maxdiff(w.tensor, v.tensor), 0, "weight " .. w.name)
  end
end)

T.test("cpu allocator: freed large blocks are reused, counted and released", function()
  collectgarbage()
  rn.cpu.empty_cache()
  local s0 = rn.cpu.memory_stats()
  for _, k in ipairs({"allocated", "reserved", "peak", "cached", "limit", "hits", "misses"}) do
    T.eq(math.type(s0[k]), "integer", k)
  end
  T.eq(s0.cached, 0, "empty_cache leaves nothing cached")
  if s0.limit == 0 then T.skip("the block cache is off in this build or by RN_CPU_CACHE_BYTES=0") end
  local t = rn.zeros({1024, 1024}) -- 4 MiB
  local s1 = rn.cpu.memory_stats()
  T.truthy(s1.allocated >= s0.allocated + 4 * 2^20, "allocated counts the block")
  t = nil
  collectgarbage()
  local s2 = rn.cpu.memory_stats()
  T.truthy(s2.cached >= 4 * 2^20, "the freed block is cached")
  local u = rn.zeros({1024, 1024})
  local s3 = rn.cpu.memory_stats()
  T.eq(s3.hits, s2.hits + 1, "the same size is served from the cache")
  T.eq(u:sum():item(), 0, "a reused block is still zero-filled by zeros()")
  u = nil
  collectgarbage()
  rn.cpu.empty_cache()
  T.eq(rn.cpu.memory_stats().cached, 0)
end)

T.test("cpu allocator: RN_CPU_CACHE_BYTES=0 turns the cache off", function()
  local bin = os.getenv("RNLUA_BIN") or "./rnlua"
  local p = io.popen("RN_CPU_CACHE_BYTES=0 " .. bin .. [[ -e 'local rn = require "rn"
    for i = 1, 3 do local t = rn.zeros({1024, 1024}); t = nil; collectgarbage() end
    local s = rn.cpu.memory_stats(); print(s.limit, s.hits, s.cached)' 2>&1]])
  local out = p:read("a")
  p:close()
  T.eq(out, "0\t0\t0\n")
end)

T.test("conv2d: oneDNN after thread-count changes and after empty_cache matches the reference", function()
  rn.manual_seed(9)
  local nt = rn.get_num_threads()
  local x, w, b = rn.randn({4, 12, 12, 16}), rn.randn({3, 3, 16, 32}), rn.randn({32})
  local gy = rn.randn({4, 6, 6, 32})
  local o = {padding = "same", stride = 2}
  local ref = {conv_all(x:double(), w:double(), b:double(), o, gy:double())}
  local ok, err = pcall(function()
    for _, n in ipairs({1, math.max(2, nt), 1, 3}) do
      rn.set_num_threads(n)
      if n == 3 then rn.cpu.empty_cache() end
      local got = {conv_all(x, w, b, o, gy)}
      for k = 1, 4 do
        local e = relerr(got[k]:double(), ref[k])
        T.truthy(e < 2e-5, string.format("%d threads, output %d: relative error %.3g", n, k, e))
      end
    end
  end)
  rn.set_num_threads(nt)
  if not ok then error(err, 0) end
end)
