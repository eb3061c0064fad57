-- bench_cpu.lua - rnlua's CPU figures, the rnlua half of `make bench`
-- (scripts/bench_cpu.sh runs it next to scripts/bench_cpu_torch.py with the
-- same threads and repetitions and prints the comparison table):
--   - one 3x3 conv forward+backward (--no-conv skips it);
--   - the seed ResNet (scripts/resnet_cifar.lua's create_resnet, 686,474
--     params; synthetic 32x32x3 data, SGD lr 0.01 momentum 0.9, sparse
--     categorical cross-entropy, L2 1e-4 on the kernels as in the seed):
--       fp32-train  batch 128 and 512
--       bf16-train  batch 128, under rn.mixed_precision "mixed_bfloat16";
--                   only where the CPU has AVX512-BF16 or AMX-BF16, else a
--                   visible skip line (also when the policy API is missing)
--       fp32-infer  batch 128, model:predict (no gradients, inference mode)
--   - with --profile, model:profile(x, y, {steps = 3}) (fp32) at each of the
--     --batches, then one line per layer type comparing them per image.
-- Each figure: --warmup untimed steps (default 2), then --reps timed steps
-- (default 5), each timed alone; the median step time gives images/s.
-- Per figure, a machine-readable line
--   RESULT rnlua <mode> <batch> <images_per_s>
--
--   ./rnlua scripts/bench_cpu.lua [--threads N] [--reps 5] [--warmup 2]
--        [--modes fp32-train,bf16-train,fp32-infer] [--batches 128,512]
--        [--profile] [--no-conv]
-- --threads defaults to the number of online CPUs (nproc).
local rn = require "rn"

local USAGE = [[
usage: rnlua scripts/bench_cpu.lua [options]
  --threads N      threads (default: nproc)
  --reps N         timed steps per figure, 1..1000 (default 5); the median is reported
  --warmup N       untimed steps before them, 0..1000 (default 2)
  --modes LIST     among fp32-train,bf16-train,fp32-infer (default: all three)
  --batches LIST   training batch sizes for fp32-train (default 128,512);
                   bf16-train and fp32-infer use the first
  --profile        also print model:profile(x, y, {steps = 3}) at each batch size
  --no-conv        skip the single-conv figure]]

local function nproc()
  local p = io.popen("nproc 2>/dev/null")
  local n = p and tonumber(p:read("l") or "")
  if p then p:close() end
  return math.tointeger(n) or 2
end

local function int_arg(name, v, lo, hi)
  local n = math.tointeger(tonumber(v or ""))
  if not n or n < lo or n > hi then
    io.stderr:write(string.format("bench_cpu.lua: %s must be an integer in %d..%d, got %s\n%s\n",
      name, lo, hi, tostring(v), USAGE))
    os.exit(2)
  end
  return n
end

local VALID_MODES = { ["fp32-train"] = true, ["bf16-train"] = true, ["fp32-infer"] = true }
local threads, reps, warmup, profile, conv = nproc(), 5, 2, false, true
local modes, batches = { "fp32-train", "bf16-train", "fp32-infer" }, { 128, 512 }
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--threads" then threads = int_arg(a, arg[i + 1], 1, 4096); i = i + 2
  elseif a == "--reps" then reps = int_arg(a, arg[i + 1], 1, 1000); i = i + 2
  elseif a == "--warmup" then warmup = int_arg(a, arg[i + 1], 0, 1000); i = i + 2
  elseif a == "--modes" then
    modes = {}
    for m in tostring(arg[i + 1]):gmatch("[^,]+") do
      if not VALID_MODES[m] then
        io.stderr:write("bench_cpu.lua: unknown mode '" .. m .. "' (valid: fp32-train, bf16-train, fp32-infer)\n")
        os.exit(2)
      end
      modes[#modes + 1] = m
    end
    i = i + 2
  elseif a == "--batches" then
    batches = {}
    for b in tostring(arg[i + 1]):gmatch("[^,]+") do batches[#batches + 1] = int_arg("--batches", b, 1, 65536) end
    if #batches == 0 then int_arg("--batches", arg[i + 1], 1, 65536) end
    i = i + 2
  elseif a == "--profile" then profile = true; i = i + 1
  elseif a == "--no-conv" then conv = false; i = i + 1
  elseif a == "--help" or a == "-h" then print(USAGE); os.exit(0)
  else io.stderr:write("bench_cpu.lua: unknown option '" .. tostring(a) .. "'\n" .. USAGE .. "\n"); os.exit(2) end
end
local want = {}
for _, m in ipairs(modes) do want[m] = true end

rn.set_num_threads(threads)
rn.manual_seed(0)

-- ---- CPU features: rn.cpu.features() where the build has it, else /proc/cpuinfo ----
local function cpu_features()
  if type(rn.cpu) == "table" and type(rn.cpu.features) == "function" then
    local ok, f = pcall(rn.cpu.features)
    if ok and type(f) == "table" then return f, "rn.cpu.features()" end
  end
  local f = {}
  local h = io.open("/proc/cpuinfo", "r")
  if h then
    for line in h:lines() do
      local flags = line:match("^flags%s*:%s*(.*)$")
      if flags then
        for w in flags:gmatch("%S+") do f[w] = true end
        break
      end
    end
    h:close()
  end
  return f, "/proc/cpuinfo"
end
local feat, feat_src = cpu_features()
local function yn(k) return feat[k] and "yes" or "no" end
print(string.format("bench_cpu: rnlua %s, %d thread(s), %d warm-up + %d timed steps per figure (median); " ..
  "CPU features (%s, after any ISA cap): avx512f %s, avx512_bf16 %s, amx_bf16 %s", tostring(rn.version), threads,
  warmup, reps, feat_src, yn("avx512f"), yn("avx512_bf16"), yn("amx_bf16")))
-- the CPU and the ISA oneDNN runs at, printed beside every figure
local ISA = string.format("%s, oneDNN ISA %s%s", feat.model or "unknown CPU", feat.isa or "?",
  feat.isa_cap and (" (capped: ONEDNN_MAX_CPU_ISA=" .. feat.isa_cap .. ")") or "")
print(string.format("ISA rnlua %s cap=%s blas=%s model=%s", feat.isa or "?", feat.isa_cap or "none",
  feat.blas_core or "?", (feat.model or "unknown"):gsub("%s+", "_")))
io.stdout:flush()

-- the convolution kernels that ran since the last call, per direction
local function kernels_run()
  if not (rn.cpu and rn.cpu.conv_kernel_stats) then return "" end
  local by = {}
  for _, st in ipairs(rn.cpu.conv_kernel_stats(true)) do
    local d = st.direction:gsub("backward_", "bwd_"):gsub("forward", "fwd")
    by[d] = by[d] or {}
    by[d][#by[d] + 1] = st.kernel
  end
  local parts = {}
  for _, d in ipairs({ "fwd", "bwd_data", "bwd_filter" }) do
    if by[d] then parts[#parts + 1] = d .. " " .. table.concat(by[d], "+") end
  end
  return #parts > 0 and ("; conv kernels: " .. table.concat(parts, "; ")) or ""
end

-- median step time of fn: warm-up calls, then n calls each timed alone
local function median(fn, n, w)
  if rn.cpu and rn.cpu.conv_kernel_stats then rn.cpu.conv_kernel_stats(true) end
  for _ = 1, w do fn() end
  local ts = {}
  for k = 1, n do
    local t0 = rn._clock()
    fn()
    ts[k] = rn._clock() - t0
  end
  table.sort(ts)
  if n % 2 == 1 then return ts[(n + 1) // 2] end
  return (ts[n // 2] + ts[n // 2 + 1]) / 2
end

local function report(mode, b, s)
  print(string.format("seed ResNet %-10s batch %4d: %8.1f ms/step, %8.1f images/s, %6.1f s per 50,000-image epoch" ..
    "  [%s%s]", mode, b, s * 1000, b / s, 50000 / b * s, ISA, kernels_run()))
  print(string.format("RESULT rnlua %s %d %.3f", mode, b, b / s))
  io.stdout:flush()
end

if conv then
  local x = rn.randn({128, 32, 32, 16})
  local w = rn.randn({3, 3, 16, 16}, {requires_grad = true})
  local t = median(function()
    rn.conv2d(x, w, nil, {padding = "same"}):sum():backward()
  end, reps * 4, warmup)
  print(string.format("conv2d 3x3 16->16, (128,32,32,16), fwd+bwd: %.1f ms  [%s%s]", t * 1000, ISA, kernels_run()))
end

local R = loadfile("scripts/resnet_cifar.lua")()
local function new_model()
  local model = R.create_resnet({32, 32, 3})
  model:compile{optimizer = rn.optim.SGD{lr = 0.01, momentum = 0.9},
                loss = rn.losses.sparse_categorical_crossentropy(), metrics = {"accuracy"}}
  return model
end
local function data(b)
  return rn.randn({b, 32, 32, 3}), (rn.rand({b}) * 10):long():minimum(9)
end
local B1 = batches[1]

local model -- float32
if want["fp32-train"] or want["fp32-infer"] or profile then model = new_model() end

if want["fp32-train"] then
  for _, b in ipairs(batches) do
    local xb, yb = data(b)
    report("fp32-train", b, median(function() model:train_step(xb, yb) end, reps, warmup))
    xb, yb = nil, nil
    collectgarbage()
  end
end

if want["bf16-train"] then
  local mp = rn.mixed_precision
  local why
  if not (feat.avx512_bf16 or feat.amx_bf16) then
    why = "neither AVX512-BF16 nor AMX-BF16 at " .. ISA
  elseif type(mp) ~= "table" or type(mp.set_global_policy) ~= "function" then
    why = "rn.mixed_precision.set_global_policy is not in this build"
  end
  if why then
    print("bf16-train: skipped (" .. why .. ")")
  else
    local ok, err = pcall(mp.set_global_policy, "mixed_bfloat16")
    if not ok then
      print("bf16-train: skipped (" .. tostring(err) .. ")")
    else
      -- the model is built, compiled and trained under the policy; float32 after
      local built, m16 = pcall(new_model)
      if not built then
        print("bf16-train: skipped (" .. tostring(m16) .. ")")
      else
        local xb, yb = data(B1)
        local okr, s = pcall(median, function() m16:train_step(xb, yb) end, reps, warmup)
        if okr then report("bf16-train", B1, s)
        else print("bf16-train: failed (" .. tostring(s) .. ")") end
      end
      local ok2, err2 = pcall(mp.set_global_policy, "float32")
      if not ok2 then print("bench_cpu: warning: resetting the policy to float32 failed: " .. tostring(err2)) end
      m16 = nil
      collectgarbage()
    end
  end
  io.stdout:flush()
end

if want["fp32-infer"] then
  local xb = rn.randn({B1, 32, 32, 3})
  report("fp32-infer", B1, median(function() model:predict(xb) end, reps, warmup))
end

if profile then
  local profs = {}
  for _, b in ipairs(batches) do
    print(string.format("\nper-layer profile (model:profile, fp32, batch %d, 3 steps):", b))
    local xb, yb = data(b)
    profs[#profs + 1] = { b = b, p = model:profile(xb, yb, {steps = 3, warmup = 1}) }
    xb, yb = nil, nil
    collectgarbage()
  end
  if #profs > 1 then -- the same table per 128 images, batch sizes side by side
    local head = string.format("\n%-28s", "ms per 128 images")
    for _, q in ipairs(profs) do head = head .. string.format("  %9s", "batch " .. q.b) end
    print(head)
    local function per(q, ms) return ms / q.b * 128 end
    local types = {}
    for _, t in ipairs(profs[1].p.by_type) do types[#types + 1] = t.type end
    for _, ty in ipairs(types) do
      for _, dir in ipairs{ "forward_ms", "backward_ms" } do
        local line = string.format("%-28s", ty .. (dir == "forward_ms" and " fwd" or " bwd"))
        for _, q in ipairs(profs) do
          local v = 0
          for _, t in ipairs(q.p.by_type) do if t.type == ty then v = t[dir] end end
          line = line .. string.format("  %9.2f", per(q, v))
        end
        print(line)
      end
    end
    local line = string.format("%-28s", "loss+optimizer+other")
    for _, q in ipairs(profs) do
      line = line .. string.format("  %9.2f", per(q, q.p.loss.total_ms + q.p.optimizer.total_ms + q.p.other.total_ms))
    end
    print(line)
    line = string.format("%-28s", "step")
    for _, q in ipairs(profs) do line = line .. string.format("  %9.2f", per(q, q.p.step_ms)) end
    print(line)
  end
end
