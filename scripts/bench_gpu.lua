-- bench_gpu.lua - training throughput of the seed ResNet (scripts/resnet_cifar.lua,
-- 686,474 parameters) with rnlua on the GPU: synthetic CIFAR-sized batches
-- (32x32x3, 10 classes) already on the device, SGD momentum 0.9 and the
-- sparse categorical cross-entropy of the training script, `warmup` steps
-- (algorithm choice, allocator warm-up), then `steps` timed steps closed by a
-- device synchronize. Prints images/s and seconds per 50,000-image epoch per
-- batch size and mode, and one machine-readable line per result:
--   RESULT rnlua <mode> <batch> <images/s>
-- which scripts/gpu_check.sh combines with scripts/bench_gpu_torch.py.
--
--   ./rnlua scripts/bench_gpu.lua [--batch-sizes 128,512] [--warmup 3] [--steps 20]
--                                 [--device cuda] [--budget SECONDS] [--modes fp32,bf16]
--                                 [--profile B]
-- --profile B (B > 0) ends with model:profile at batch B in float32: the time
-- of each layer's forward and backward, the device synchronized around each.
--
-- Modes (each batch size runs them in the order given; fp32 first keeps it
-- the reference of gpu_check.sh's table):
--   fp32  float32 math: strict (no TF32) unless RN_CUDA_TF32=1, printed
--         "fp32" or "fp32-tf32";
--   bf16  the mixed_bfloat16 policy (rn.mixed_precision): bf16 activations
--         between layers, convolutions and gemm in bfloat16 with float32
--         accumulation, float32 variables (the peer of PyTorch's
--         eager-amp-cl; with RN_CUDA_BF16_ACT=0 every tensor stays float32
--         and only the convolutions compute in bf16); printed "bf16". The policy is set only
--         around that mode's runs and float32 restored after them.
-- cuDNN algorithms come from its heuristics unless RN_CUDNN_FIND=1
-- (measured, as PyTorch's cudnn.benchmark): "+find" is appended to the mode.
-- RN_FUSED_OPTIM=0 (per-tensor optimizer) or RN_CUDNN_DESC_CACHE=0 (cuDNN
-- descriptors per call), the paths before issue 19, append "+legacy".
-- --graph 1 (issue 19) runs the steps through the whole-step CUDA graph of
-- fit (lua/rn/graph.lua: 2 eager steps, a capture, then replays; the
-- warm-up should be >= 3 so that the timed steps are replays) and appends
-- "+graph"; a fallback to eager is printed. The switches RN_CUDNN_FILTER_CACHE=0,
-- RN_CUDA_BN_RELU=0 and RN_FUSED_L2=0 also append "+legacy".
local rn = require "rn"
local core = require "rn.core"

local opt = { ["batch-sizes"] = "128,512", warmup = 3, steps = 20, device = "cuda", budget = 0,
              modes = "fp32,bf16", profile = 0, graph = 0 }
local i = 1
while arg[i] do
  local k = arg[i]:match("^%-%-([%w-]+)$")
  if not k or opt[k] == nil or arg[i + 1] == nil then
    io.stderr:write("usage: rnlua scripts/bench_gpu.lua [--batch-sizes 128,512] [--warmup N] "
      .. "[--steps N] [--device cuda|cpu] [--budget SECONDS] [--modes fp32,bf16] [--profile B] [--graph 0|1]\n")
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
local find = os.getenv("RN_CUDNN_FIND") == "1" and "+find" or ""
-- issue 19's switches back to the earlier paths: "+legacy" marks such a run
if os.getenv("RN_FUSED_OPTIM") == "0" or os.getenv("RN_CUDNN_DESC_CACHE") == "0"
  or os.getenv("RN_CUDNN_FILTER_CACHE") == "0" or os.getenv("RN_CUDA_BN_RELU") == "0"
  or os.getenv("RN_FUSED_L2") == "0" then
  find = find .. "+legacy"
end
-- issue 18's: bf16 activations off on the GPU (float32 tensors, bf16 math in
-- the convolutions) or bf16 convolutions through float32 copies: "+f32act"
if os.getenv("RN_CUDA_BF16_ACT") == "0" or os.getenv("RN_CUDA_BF16_NATIVE") == "0" then find = find .. "+f32act" end
if os.getenv("RN_CUDNN_GRAPH") == "1" then find = find .. "+cudnngraph" end
if opt.graph == 1 then find = find .. "+graph" end
local modes = {} -- {name printed, policy}
for m in tostring(opt.modes):gmatch("[^,%s]+") do
  if m == "fp32" then
    modes[#modes + 1] = { (os.getenv("RN_CUDA_TF32") == "1" and "fp32-tf32" or "fp32") .. find,
                          "float32" }
  elseif m == "bf16" then
    modes[#modes + 1] = { "bf16" .. find, "mixed_bfloat16" }
  else
    io.stderr:write("bench_gpu: unknown mode '", m, "' (fp32, bf16)\n")
    os.exit(2)
  end
end
local EPOCH = 50000
local t_start = rn._clock()
local mp = rn.mixed_precision

local names = {}
for k, m in ipairs(modes) do names[k] = m[1] end
print(string.format("bench_gpu: seed ResNet, rnlua %s on %s%s, warmup %d, timed steps %d",
  table.concat(names, ", "), opt.device,
  opt.device == "cuda" and (" (" .. core.cuda_device_name() .. ")") or "", opt.warmup, opt.steps))

-- the seeded, compiled model on the device and a synthetic batch of bs
local function setup(bs)
  rn.manual_seed(1)
  local model = create_resnet({ 32, 32, 3 })
  model:to(opt.device)
  model:compile({ optimizer = rn.optim.SGD(model:parameters(), { lr = 0.01, momentum = 0.9 }),
                  loss = "sparse_categorical_crossentropy" })
  local x = rn.randn({ bs, 32, 32, 3 }):to(opt.device)
  local y = (rn.rand({ bs }) * 10):long():to(opt.device)
  return model, x, y
end

-- one timed run of batch size bs under the current policy
local function run(mode, bs)
  local model, x, y = setup(bs)
  local st = opt.graph == 1 and require("rn.graph").Stepper(model, opt.device == "cuda" and "cuda" or "mock") or nil
  local function step() return (st and st:step(x, y) or model:train_step(x, y)).loss end
  local t0 = rn._clock()
  local loss
  for _ = 1, opt.warmup do loss = step() end
  sync()
  local tw = rn._clock() - t0
  collectgarbage()
  t0 = rn._clock()
  for _ = 1, opt.steps do loss = step() end
  sync()
  if st then
    print(string.format("graph: %d captures, %d replays, %d eager steps%s", st.captures, st.replays,
      st.eager_steps, st.fallback and (" (fallback: " .. st.fallback .. ")") or ""))
    st:close()
  end
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

local stop = false
for bs in tostring(opt["batch-sizes"]):gmatch("%d+") do
  bs = math.tointeger(tonumber(bs))
  for _, m in ipairs(modes) do
    local mode, policy = m[1], m[2]
    if opt.budget > 0 and rn._clock() - t_start > opt.budget * 0.6 then
      print(string.format("rnlua %s batch %d: skipped (budget of %ds nearly spent)", mode, bs,
        opt.budget))
      stop = true
      break
    end
    if policy == "float32" then
      run(mode, bs)
    elseif not (mp and mp.set_global_policy) then
      print(string.format("rnlua %s batch %d: skipped (rn.mixed_precision is not in this build)",
        mode, bs))
    else
      local ok, err = pcall(mp.set_global_policy, policy) -- refused: a CPU without bf16
      if not ok then
        print(string.format("rnlua %s batch %d: skipped (%s)", mode, bs, tostring(err)))
      else
        ok, err = pcall(run, mode, bs)
        mp.set_global_policy("float32") -- restored even when the run failed
        if not ok then error(err, 0) end
      end
    end
  end
  if stop then break end
end

if opt.profile > 0 then
  local bs = math.tointeger(opt.profile)
  local model, x, y = setup(bs)
  print(string.format("\nper-layer profile (model:profile, float32, batch %d, 3 steps):", bs))
  model:profile(x, y, { steps = 3 })
end
