-- bench_dist.lua - data-parallel figures (doc/distributed.md), run by
-- `make bench-dist` under mpirun with 1, 2 and 4 ranks:
--   mpirun -np W ./rnlua scripts/bench_dist.lua [--steps 6] [--batch 64]
-- Rank 0 prints one line per figure: images/s of the seed ResNet trained
-- with DataParallel (global batch fixed, sharded across the W ranks), the
-- seconds per step spent in communication, the part of it left after
-- backward (not overlapped) with overlap on and off, and the allreduce time
-- of float32 buffers of growing size (the scaling with model size).
package.path = "lua/?.lua;" .. package.path
local rn = require "rn"
local d = rn.distributed
local steps, batch = 6, 64
for i = 1, #arg - 1 do
  if arg[i] == "--steps" then steps = tonumber(arg[i + 1]) end
  if arg[i] == "--batch" then batch = tonumber(arg[i + 1]) end
end
d.init{ timeout = 300 }
local rank, world = d.rank(), d.world_size()
local function say(...) if rank == 0 then print(string.format(...)); io.stdout:flush() end end
rn.manual_seed(1)
local create = dofile("scripts/resnet_cifar.lua").create_resnet
local imgs = (rn.rand({ batch * (steps + 1), 32, 32, 3 }) * 255):byte()
local labels = (rn.rand({ batch * (steps + 1) }) * 10):long()

local function run(overlap)
  rn.manual_seed(2)
  local model = create({ 32, 32, 3 })
  model:compile{ optimizer = rn.optim.SGD{ lr = 0.01, momentum = 0.9 }, loss = "sparse_categorical_crossentropy" }
  local loader = rn.data.Loader(imgs, labels, { batch_size = batch, seed = 1, workers = 1 })
  loader:shard(rank, world)
  local dp = d.DataParallel(model, { overlap = overlap })
  local t0, s0, n = nil, nil, 0
  for x, y in loader:epoch(1) do
    dp:train_step(x, y)
    n = n + 1
    if n == 1 then d.barrier(); t0, s0 = rn._clock(), dp:stats() end -- the first step warms up
  end
  d.barrier()
  local dt, s1 = rn._clock() - t0, dp:stats()
  local k = n - 1
  return (k * batch) / dt, (s1.comm_s - s0.comm_s) / k, (s1.wait_s - s0.wait_s) / k,
    (s1.backward_s - s0.backward_s) / k, s1.buckets, s1.bytes / s1.steps / 1e6
end

say("bench-dist: %d ranks, %d threads each, seed ResNet, global batch %d, %d timed steps, ISA %s",
  world, rn.get_num_threads(), batch, steps - 1, rn.cpu.features().isa or "")
local ips, comm, wait, bw, nb, mb = run(true)
local _, comm0, wait0 = run(false)
say("W=%d  %.1f images/s  grads %.2f MB in %d buckets  per step: forward+backward %.3f s, comm %.4f s, "
  .. "exposed after backward %.4f s (overlap on) vs %.4f s (off)", world, ips, mb, nb, bw, comm, wait, wait0)
for _, m in ipairs({ 0.25, 1, 4, 25 }) do
  local t = rn.zeros({ math.floor(m * 262144) })
  d.allreduce(t)
  d.barrier()
  local reps, t0 = 5, rn._clock()
  for _ = 1, reps do d.allreduce(t) end
  say("W=%d  allreduce %6.2f MB float32: %.2f ms", world, m, (rn._clock() - t0) / reps * 1e3)
end
