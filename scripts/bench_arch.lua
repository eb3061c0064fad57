-- bench_arch.lua - one training step time per example architecture
-- (scripts/architectures.lua), the rnlua half of `make bench-arch`
-- (scripts/bench_arch_torch.py is the PyTorch peer, the same models at the
-- same sizes; scripts/bench_arch.sh prints both and the ratio). Models at
-- CIFAR size (32x32x3, 10 classes), Adam, synthetic data already on the
-- device; median of --reps steps after --warmup. Prints per model
--   RESULT rnlua <model> <batch> <images_per_s>
--   ./rnlua scripts/bench_arch.lua [--reps 5] [--warmup 2] [--batch 64] [--threads N] [--models a,b]
--                                  [--device cpu|cuda] [--precision fp32,bf16] [--budget SECONDS]
-- --device cuda (default cpu): the model moved with model:to("cuda"), each
--   step closed by a device synchronize before the clock is read; exits 1
--   when there is no device. The model field then names the mode,
--   <model>-<device>-<precision> (e.g. mobilenet_v2-cuda-fp32), as
--   bench_arch_torch.py --device cuda prints its peers; so does a CPU run
--   given --precision (the plain CPU run keeps <model>, for bench_arch.sh).
-- --precision: fp32 (strict float32, no TF32 unless RN_CUDA_TF32=1) and/or
--   bf16 (rn.mixed_precision "mixed_bfloat16", set around that run only and
--   float32 restored after; skipped with a line where the setter refuses,
--   e.g. a CPU without AVX512-BF16/AMX). A comma list runs each per model.
-- --budget SECONDS (0: none): the runs share it (each gets what is left over
--   the runs still to go); a run stops its warm-up and timed steps when its
--   share is spent (at least one timed step), and a run that would start
--   after the budget is spent is skipped with a line. One step is never cut.
local rn = require "rn"
local core = require "rn.core"
local A = dofile("scripts/architectures.lua")

local function die(msg, code)
  io.stderr:write("bench_arch.lua: ", msg, "\n")
  os.exit(code or 2)
end

local reps, warmup, batch, threads, only = 5, 2, 64, nil, nil
local device, budget, precisions, tagged = "cpu", 0, { "fp32" }, false
local i = 1
while i <= #arg do
  local a, v = arg[i], arg[i + 1]
  if v == nil then die("missing value for " .. tostring(a)) end
  if a == "--reps" then reps = math.tointeger(tonumber(v)) elseif a == "--warmup" then warmup = math.tointeger(tonumber(v))
  elseif a == "--batch" then batch = math.tointeger(tonumber(v)) elseif a == "--threads" then threads = math.tointeger(tonumber(v))
  elseif a == "--models" then only = {} for m in v:gmatch("[^,]+") do only[m] = true end
  elseif a == "--device" then
    if v ~= "cpu" and v ~= "cuda" then die("--device must be cpu or cuda, not '" .. v .. "'") end
    device = v
  elseif a == "--budget" then
    budget = tonumber(v)
    if not budget or budget < 0 then die("--budget must be a number of seconds >= 0, not '" .. v .. "'") end
  elseif a == "--precision" then
    precisions, tagged = {}, true
    for p in v:gmatch("[^,%s]+") do
      if p ~= "fp32" and p ~= "bf16" then die("--precision takes fp32 and/or bf16 (comma list), not '" .. p .. "'") end
      precisions[#precisions + 1] = p
    end
    if #precisions == 0 then die("--precision takes fp32 and/or bf16 (comma list)") end
  else die("unknown option " .. tostring(a)) end
  if not (reps and warmup and batch) or reps < 1 or warmup < 0 or batch < 1 or (threads and threads < 1) then
    die("bad value for " .. a)
  end
  i = i + 2
end
if device == "cuda" then
  if not rn.cuda.is_available() then
    die("--device cuda but no CUDA device: " .. tostring(rn.cuda.why_unavailable()), 1)
  end
  tagged = true
end
if threads then rn.set_num_threads(threads) end
-- the clock is read after the device has finished the step's work
local sync = device == "cuda" and core.cuda_synchronize or function() end

-- the same shapes as bench_arch_torch.py builds
local MODELS = {
  { "mobilenet_v2", function() return A.mobilenet_v2{ input_shape = { 32, 32, 3 }, classes = 10 } end },
  { "resnext", function()
    return A.resnext{ input_shape = { 32, 32, 3 }, classes = 10, blocks = { 1, 1, 1 }, groups = 8, width_per_group = 4,
      planes = { 32, 64, 128 }, stem = 32, stem_kernel = 3, stem_stride = 1, stem_pool = false }
  end, logits = true },
  { "densenet", function() return A.densenet{ input_shape = { 32, 32, 3 }, classes = 10, blocks = { 4, 4, 4 }, growth = 12,
    stem = "small" } end },
  { "vit", function() return A.vit{ input_shape = { 32, 32, 3 }, classes = 10, patch = 4, dim = 128, depth = 4, heads = 4,
    mlp = 256 } end, logits = true },
}
if only then
  local known = {}
  for _, m in ipairs(MODELS) do known[m[1]] = true end
  for m in pairs(only) do
    if not known[m] then die("unknown model '" .. m .. "' (mobilenet_v2, resnext, densenet, vit)") end
  end
end

local runs = {} -- {model entry, precision}, in order
for _, m in ipairs(MODELS) do
  if not only or only[m[1]] then
    for _, p in ipairs(precisions) do runs[#runs + 1] = { m, p } end
  end
end

local where
if device == "cuda" then
  where = "cuda (" .. tostring(core.cuda_device_name()) .. ", "
    .. (os.getenv("RN_CUDA_TF32") == "1" and "TF32 on" or "TF32 off")
    .. (os.getenv("RN_CUDNN_FIND") == "1" and ", cuDNN algorithms measured (RN_CUDNN_FIND=1)" or "") .. ")"
else
  local f = rn.cpu.features()
  where = string.format("cpu, %d thread(s), %s, oneDNN %s", rn.get_num_threads(), f.model, f.isa)
end
print(string.format("bench_arch: rnlua %s on %s, batch %d, %d warm-up + %d timed steps (median)%s",
  rn.version, where, batch, warmup, reps, budget > 0 and string.format(", budget %gs", budget) or ""))
io.stdout:flush()

local t_start = rn._clock()

-- one run: build, compile, move, warm up, time; until `deadline` (clock
-- value, or nil). Returns nothing; prints its lines.
local function run(m, name, deadline)
  local t0 = rn._clock()
  rn.manual_seed(0)
  local model = m[2]()
  model:to(device) -- before compile: the optimizer takes the moved weights
  model:compile({ optimizer = rn.optim.Adam{ lr = 1e-3 },
    loss = rn.losses.sparse_categorical_crossentropy{ from_logits = m.logits == true } })
  local x = rn.randn({ batch, 32, 32, 3 }):to(device)
  local y = (rn.rand({ batch }) * 10):long():minimum(9):to(device)
  local function spent() return deadline and rn._clock() >= deadline end
  local warm, logs = 0, nil
  while warm < warmup and not spent() do
    logs = model:train_step(x, y)
    warm = warm + 1
  end
  sync()
  local tw = rn._clock() - t0
  collectgarbage()
  local ts = {}
  repeat
    local s0 = rn._clock()
    logs = model:train_step(x, y)
    sync()
    ts[#ts + 1] = rn._clock() - s0
  until #ts >= reps or spent()
  local n, sum = #ts, 0
  for _, t in ipairs(ts) do sum = sum + t end
  table.sort(ts)
  local med = n % 2 == 1 and ts[(n + 1) // 2] or (ts[n // 2] + ts[n // 2 + 1]) / 2
  local loss = logs and logs.loss
  if rn.is_tensor(loss) then loss = loss:item() end
  local cut = (warm < warmup or n < reps) and string.format(", budget: %d warm-up, %d timed", warm, n) or ""
  print(string.format("%-22s batch %d: %8.2f ms/step (mean %.2f), %9.1f images/s  (setup+warm-up %.1f s, loss %s%s)",
    name, batch, med * 1000, sum / n * 1000, batch / med, tw, type(loss) == "number" and string.format("%.4f", loss) or "?", cut))
  print(string.format("RESULT rnlua %s %d %.3f", name, batch, batch / med))
  io.stdout:flush()
end

local mp = rn.mixed_precision
for k, r in ipairs(runs) do
  local m, prec = r[1], r[2]
  local name = tagged and string.format("%s-%s-%s", m[1], device, prec) or m[1]
  local deadline
  if budget > 0 then
    local left = budget - (rn._clock() - t_start)
    if left <= 0 then
      print(string.format("%-22s batch %d: skipped (budget of %gs spent)", name, batch, budget))
      io.stdout:flush()
      goto continue
    end
    deadline = rn._clock() + left / (#runs - k + 1)
  end
  do
    local ok, err = true, nil
    if prec == "bf16" then
      ok, err = pcall(mp.set_global_policy, "mixed_bfloat16")
      if not ok then
        print(string.format("%-22s batch %d: skipped (%s)", name, batch, tostring(err)))
        io.stdout:flush()
        goto continue
      end
    end
    ok, err = pcall(run, m, name, deadline)
    mp.set_global_policy("float32") -- restored even when the run failed
    if not ok then
      print(string.format("%-22s batch %d: failed: %s", name, batch, tostring(err)))
      io.stdout:flush()
    end
  end
  collectgarbage()
  collectgarbage()
  ::continue::
end
