-- bench_cpu.lua - rnlua's own CPU figures for doc/perf.md: one 3x3 conv
-- forward+backward, and the seed ResNet's training and inference
-- throughput (synthetic 32x32x3 data, SGD momentum, float32). Medians of
-- several timed repetitions after warm-up. The comparison with PyTorch in the
-- same run (`make bench`, CPU part) comes with the CPU-speed work.
--   ./rnlua scripts/bench_cpu.lua [--threads 2] [--reps 5]
local rn = require "rn"
local threads, reps = 2, 5
for i = 1, #arg, 2 do
  if arg[i] == "--threads" then threads = math.tointeger(tonumber(arg[i + 1]))
  elseif arg[i] == "--reps" then reps = math.tointeger(tonumber(arg[i + 1]))
  else error("usage: bench_cpu.lua [--threads N] [--reps N]") end
end
rn.set_num_threads(threads)
rn.manual_seed(0)

local function median(fn, n)
  fn() -- warm-up
  local ts = {}
  for i = 1, n do
    local t0 = rn._clock()
    fn()
    ts[i] = rn._clock() - t0
  end
  table.sort(ts)
  return ts[(n + 1) // 2]
end

local x = rn.randn({128, 32, 32, 16})
local w = rn.randn({3, 3, 16, 16}, {requires_grad = true})
local t = median(function()
  rn.conv2d(x, w, nil, {padding = "same"}):sum():backward()
end, reps * 4)
print(string.format("conv2d 3x3 16->16, (128,32,32,16), fwd+bwd: %.1f ms", t * 1000))

local R = loadfile("scripts/resnet_cifar.lua")()
local model = R.create_resnet({32, 32, 3})
model:compile{optimizer = rn.optim.SGD{lr = 0.01, momentum = 0.9},
              loss = rn.losses.sparse_categorical_crossentropy(), metrics = {"accuracy"}}
for _, b in ipairs({128, 512}) do
  local xb, yb = rn.randn({b, 32, 32, 3}), (rn.rand({b}) * 10):long():minimum(9)
  local s = median(function() model:train_step(xb, yb) end, b == 512 and math.max(3, reps // 2) or reps)
  print(string.format("seed ResNet training, batch %d: %.3f s/step, %.0f images/s, %.0f s per 50,000-image epoch",
    b, s, b / s, 50000 / b * s))
end
local xb = rn.randn({128, 32, 32, 3})
local s = median(function() model:predict(xb) end, reps)
print(string.format("seed ResNet inference, batch 128: %.0f images/s", 128 / s))
