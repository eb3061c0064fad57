-- equiv.lua - a worker for tests/test_distributed.lua, run alone or under
-- mpirun: trains a small model a few steps and writes its weights (one
-- process: OUT; rank r of a job: OUT.r) for the test to compare.
--   rnlua tests/dist/equiv.lua CASE OUT [N]
-- CASE: conv   small conv net (no BN), SGD momentum, global batch 8, 5 steps
--              (N samples, default 40: N=37 makes an uneven last batch of 5)
--       syncbn the conv net with BatchNormalization (one process) or
--              SyncBatchNormalization (a job), 3 steps
--       loop   hand-written loop with DataParallel over a model with a
--              shared weight (one leaf in two nodes) and an unused one
--       fault_error | fault_hang   rank 1 errors | sleeps past the timeout at step 2
-- RN_TEST_DIST_SOLO=1 joins rn.distributed without a launcher (a world of one,
-- no MPI); RN_TEST_DIST_BACKEND=nccl with RN_TEST_DIST_DEVICE=cuda trains on
-- the GPU with the gradients summed over NCCL (scripts/gpu_check.sh).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local rn = require "rn"
-- runs are compared bit for bit across processes: the default "auto" picks
-- the convolution kernels by a fixed rule, so both sides run the same ones
-- (only "benchmark" times them, which two processes may resolve differently)
local L = rn.layers
local case, out, nsamp = arg[1], arg[2], tonumber(arg[3] or "40")
local dist = rn.distributed
local job = dist.is_available() and (os.getenv("OMPI_COMM_WORLD_SIZE") or os.getenv("PMI_SIZE")
  or os.getenv("RN_TEST_DIST_SOLO")) ~= nil
local device = os.getenv("RN_TEST_DIST_DEVICE") or "cpu"
if job then
  dist.init{ timeout = tonumber(os.getenv("RN_TEST_DIST_TIMEOUT") or "60"), backend = os.getenv("RN_TEST_DIST_BACKEND") }
  io.stderr:write(string.format("equiv: rank %d of %d, backend %s, device %s\n", dist.rank(), dist.world_size(),
    dist.backend(), device))
end
local rank = job and dist.rank() or 0
rn.set_num_threads(1)
rn.manual_seed(7)
math.randomseed(7)

-- data: N random 8x8x3 images, 4 classes
local imgs = (rn.rand({ nsamp, 8, 8, 3 }) * 255):byte()
local labels = (rn.rand({ nsamp }) * 4):long()

local function save(model_weights)
  local t = {}
  for _, w in ipairs(model_weights) do t[w.name] = w.tensor:cpu() end
  rn.checkpoint.save(job and (out .. "." .. rank) or out, { tensors = t })
end

local function conv_model(bn)
  rn.manual_seed(11)
  local x = L.Input({ 8, 8, 3 })
  local h = L.Conv2D(6, 3, { padding = "same", name = "c1", use_bias = not bn })(x) -- (a bias before BN gets no gradient)
  if bn then h = (bn == "sync" and L.SyncBatchNormalization or L.BatchNormalization)({ name = "bn1" })(h) end
  h = L.ReLU()(h)
  h = L.Conv2D(8, 3, { strides = 2, padding = "same", name = "c2" })(h)
  h = L.ReLU()(h)
  h = L.GlobalAveragePooling2D()(h)
  local y = L.Dense(4, { name = "d" })(h)
  local m = rn.Model(x, y)
  m:compile{ optimizer = rn.optim.SGD{ lr = 0.1, momentum = 0.9 }, loss = "sparse_categorical_crossentropy",
    metrics = { "accuracy" } }
  if device ~= "cpu" then m:to(device) end
  return m
end

if case == "conv" or case == "syncbn" then
  local m = conv_model(case == "syncbn" and (job and "sync" or "plain") or nil)
  local loader = rn.data.Loader(imgs, labels, { batch_size = 8, seed = 3, workers = 0 })
  local steps = case == "conv" and 5 or 3
  local h = m:fit(loader, { epochs = 1, steps_per_epoch = steps, verbose = false, distributed = job or nil })
  save(m:weights())
  if rank == 0 then print(string.format("loss %.6f", h[1].loss)) end
elseif case == "loop" then
  rn.manual_seed(5)
  local W1 = rn.randn({ 12, 4 }, { requires_grad = true })
  local Wu = rn.randn({ 12, 4 }, { requires_grad = true })
  local model = setmetatable({}, { __call = function(_, x)
    local f = x:reshape({ x:size(1), -1 }):narrow(2, 1, 12)
    return f:matmul(W1) + f:matmul(W1):tanh() -- W1 shared by two nodes; Wu unused
  end })
  model.parameters = function() return { W1, Wu } end
  model.weights = function() return { { name = "w1", tensor = W1, trainable = true }, { name = "wu", tensor = Wu, trainable = true } } end
  model.optimizer = rn.optim.SGD({ W1, Wu }, { lr = 0.05, momentum = 0.9 })
  model.loss_fn = function(p, y) return rn.cross_entropy(p, y) end
  model.metric_fns = {}
  local loader = rn.data.Loader(imgs, labels, { batch_size = 8, seed = 3, workers = 0, augment = false })
  local dp
  if job then loader:shard(dist.rank(), dist.world_size()); dp = dist.DataParallel(model) end
  for x, y in loader:epoch(1) do
    if dp then dp:train_step(x, y)
    else
      model.optimizer:zero_grad()
      model.loss_fn(model(x), y):backward()
      model.optimizer:step()
    end
  end
  assert(Wu.grad == nil, "the unused weight got a gradient")
  save(model.weights())
elseif case == "fault_error" or case == "fault_hang" then
  local m = conv_model()
  local loader = rn.data.Loader(imgs, labels, { batch_size = 8, seed = 3, workers = 0 })
  m:fit(loader, { epochs = 1, verbose = false, distributed = true, callbacks = { {
    on_batch_end = function(step)
      if step == 2 and rank == 1 then
        if case == "fault_error" then error("injected failure on purpose") end
        os.execute("sleep 30")
      end
    end } } })
else
  error("equiv.lua: unknown case " .. tostring(case))
end
