-- bench_gpu.lua - training throughput of the seed ResNet (scripts/resnet_cifar.lua,
-- 686,474 parameters) with rnlua on the GPU: synthetic CIFAR-sized batches
-- (32x32x3, 10 classes) already on the device, SGD momentum 0.9 and the
-- sparse categorical cross-entropy of the training script, `warmup` steps
-- (algorithm choice, allocator warm-up), then `steps` timed steps closed by a
-- device synchronize. Prints images/s and seconds per 50,000-image epoch per
-- batch size, and one machine-readable line per result:
--   RESULT rnlua <mode> <batch> <images/s>
-- which scripts/gpu_check.sh combines with scripts/bench_gpu_torch.py.
--
--   ./rnlua scripts/bench_gpu.lua [--batch-sizes 128,512] [--warmup 3] [--steps 20]
--                                 [--device cuda] [--budget SECONDS]
--
-- float32 math is strict (no TF32) unless RN_CUDA_TF32=1; cuDNN algorithms
-- come from its heuristics unless RN_CUDNN_FIND=1 (measured, as PyTorch's
-- cudnn.benchmark); the mode printed is "fp32" or "fp32-tf32", with "+find".
local rn = require "rn"
local core = require "rn.core"

local opt = { ["batch-sizes"] = "128,512", warmup = 3, steps = 20, device = "cuda", budget = 0 }
local i = 1
while arg[i] do
  local k = arg[i]:match("^%-%-([%w-]+)$")
  if not k or opt[k] == nil or arg[i + 1] == nil then
    io.stderr:write("usage: rnlua scripts/bench_gpu.lua [--batch-sizes 128,512] [--warmup N] "
      .. "[--steps N] [--device cuda|cpu] [--budget SECONDS]\n")
    os.exit(2)
  end
  opt[k] = type(opt[k]) == "number" and tonumber(arg[i + 1]) or arg[i + 1]
  i = i + 2
end
if opt.device == "cuda" and not rn.cuda.is_available() then
  io.stderr:write("bench_gpu: no CUDA device: ", tostring(rn.cuda.why_unavailable()), "\n")
  os.exit(1)
end
local sync = opt.device == "cuda" and core.cuda_synchronize or function() end

local chunk = assert(loadfile("scripts/resnet_cifar.lua"))
local create_resnet = chunk().create_resnet
local mode = (os.getenv("RN_CUDA_TF32") == "1" and "fp32-tf32" or "fp32")
  .. (os.getenv("RN_CUDNN_FIND") == "1" and "+find" or "")
local EPOCH = 50000
local t_start = rn._clock()

print(string.format("bench_gpu: seed ResNet, rnlua %s on %s%s, warmup %d, timed steps %d",
  mode, opt.device, opt.device == "cuda" and (" (" .. core.cuda_device_name() .. ")") or "",
  opt.warmup, opt.steps))
for bs in tostring(opt["batch-sizes"]):gmatch("%d+") do
  bs = math.tointeger(tonumber(bs))
  if opt.budget > 0 and rn._clock() - t_start > opt.budget * 0.6 then
    print(string.format("batch %d: skipped (budget of %ds nearly spent)", bs, opt.budget))
    break
  end
  rn.manual_seed(1)
  local model = create_resnet({ 32, 32, 3 })
  model:to(opt.device)
  model:compile({ optimizer = rn.optim.SGD(model:parameters(), { lr = 0.01, momentum = 0.9 }),
                  loss = "sparse_categorical_crossentropy" })
  local x = rn.randn({ bs, 32, 32, 3 }):to(opt.device)
  local y = (rn.rand({ bs }) * 10):long():to(opt.device)
  local t0 = rn._clock()
  local loss
  for _ = 1, opt.warmup do loss = model:train_step(x, y).loss end
  sync()
  local tw = rn._clock() - t0
  collectgarbage()
  t0 = rn._clock()
  for _ = 1, opt.steps do loss = model:train_step(x, y).loss end
  sync()
  local dt = rn._clock() - t0
  local ips = bs * opt.steps / dt
  print(string.format("rnlua %-9s batch %4d: %9.1f images/s  %7.2f s/epoch  (%.1f ms/step, "
    .. "warmup %.1f s, last loss %.4f)", mode, bs, ips, EPOCH / ips, 1000 * dt / opt.steps, tw, loss))
  print(string.format("RESULT rnlua %s %d %.3f", mode, bs, ips))
  io.stdout:flush()
  model, x, y = nil, nil, nil
  collectgarbage()
  collectgarbage()
end
