-- bench_arch.lua - one training step time per example architecture
-- (scripts/architectures.lua) on the CPU, the rnlua half of `make
-- bench-arch` (scripts/bench_arch_torch.py is the PyTorch peer, the same
-- models at the same sizes; scripts/bench_arch.sh prints both and the
-- ratio). Models at CIFAR size (32x32x3, 10 classes), Adam, synthetic data;
-- median of --reps steps after --warmup. Prints per model
--   RESULT rnlua <model> <batch> <images_per_s>
--   ./rnlua scripts/bench_arch.lua [--reps 5] [--warmup 2] [--batch 64] [--threads N] [--models a,b]
local rn = require "rn"
local A = dofile("scripts/architectures.lua")

local reps, warmup, batch, threads, only = 5, 2, 64, nil, nil
local i = 1
while i <= #arg do
  local a, v = arg[i], arg[i + 1]
  if a == "--reps" then reps = math.tointeger(tonumber(v)) elseif a == "--warmup" then warmup = math.tointeger(tonumber(v))
  elseif a == "--batch" then batch = math.tointeger(tonumber(v)) elseif a == "--threads" then threads = math.tointeger(tonumber(v))
  elseif a == "--models" then only = {} for m in v:gmatch("[^,]+") do only[m] = true end
  else io.stderr:write("bench_arch.lua: unknown option " .. tostring(a) .. "\n"); os.exit(2) end
  if not (reps and warmup and batch) or reps < 1 or batch < 1 then io.stderr:write("bench_arch.lua: bad value for " .. a .. "\n"); os.exit(2) end
  i = i + 2
end
if threads then rn.set_num_threads(threads) end

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

local f = rn.cpu.features()
print(string.format("bench_arch: rnlua %s, %d thread(s), batch %d, %d warm-up + %d timed steps (median); %s, oneDNN %s",
  rn.version, rn.get_num_threads(), batch, warmup, reps, f.model, f.isa))
for _, m in ipairs(MODELS) do
  if not only or only[m[1]] then
    rn.manual_seed(0)
    local model = m[2]()
    model:compile({ optimizer = rn.optim.Adam{ lr = 1e-3 },
      loss = rn.losses.sparse_categorical_crossentropy{ from_logits = m.logits == true } })
    local x = rn.randn({ batch, 32, 32, 3 })
    local y = (rn.rand({ batch }) * 10):long():minimum(9)
    for _ = 1, warmup do model:train_step(x, y) end
    local ts = {}
    for k = 1, reps do
      local t0 = rn._clock()
      model:train_step(x, y)
      ts[k] = rn._clock() - t0
    end
    table.sort(ts)
    local med = reps % 2 == 1 and ts[(reps + 1) // 2] or (ts[reps // 2] + ts[reps // 2 + 1]) / 2
    print(string.format("%-14s batch %d: %8.1f ms/step, %8.1f images/s", m[1], batch, med * 1000, batch / med))
    print(string.format("RESULT rnlua %s %d %.3f", m[1], batch, batch / med))
    io.stdout:flush()
  end
end
