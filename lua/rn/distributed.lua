-- rn.distributed: data-parallel training across processes (doc/distributed.md),
-- over the C core's collectives (core/dist/: MPI for CPU tensors and
-- bootstrap, NCCL for CUDA tensors; each with rnlua's own timeout).
--
--   mpirun -np 4 ./rnlua train.lua          (or srun -n 4 ./rnlua train.lua)
--   local dist = rn.distributed.init{}      -- backend "mpi" | "nccl" | nil (auto)
--   model:fit(loader, {epochs = 10, distributed = true})
--
-- Collectives: allreduce(t, "sum"|"mean"|"max"|"min") and broadcast(t, root)
-- work in place and return t; all_gather(t) returns (W, ...t's shape). Each
-- checks dtype and shape across ranks first (the same error on every rank),
-- and gives up after the timeout naming the collective and step.
--
-- DataParallel(model [, opts]) is the wrapper for a hand-written loop
-- (fit{distributed = true} uses it): it checks that every rank holds the
-- same parameter names and shapes, broadcasts rank 0's weights (BN
-- statistics included) and optimizer state, and its train_step(x, y) takes
-- this rank's shard of a global batch and steps exactly as one process on
-- the global batch would: the loss seed is scaled by n_rank / n_global, and
-- the gradients are summed in fixed-order buckets fired from grad-ready
-- hooks during backward (core/dist/reducer.c).
local rn = require "rn"
local core = require "rn.core"

local M = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 3) end

local function need(who)
  if not core.dist_initialized() then
    error(string.format("%s: rn.distributed is not initialized (call rn.distributed.init{} first)", who), 3)
  end
end

--- init{backend = "mpi" | "nccl" | nil (auto), timeout = 600 (seconds)}:
--- joins the job started by mpirun/srun (a single process without a launcher is a
--- world of 1 without MPI: backend "self", or "nccl" when asked for).
function M.init(o)
  o = o or {}
  if type(o) ~= "table" then fail("distributed.init: expected an options table, got %s", type(o)) end
  for k in pairs(o) do
    if k ~= "backend" and k ~= "timeout" then
      fail("distributed.init: unknown option '%s' (valid: backend, timeout)", tostring(k))
    end
  end
  if o.backend ~= nil and o.backend ~= "mpi" and o.backend ~= "nccl" then
    fail("distributed.init: backend must be \"mpi\", \"nccl\" or nil (auto), got %s", tostring(o.backend))
  end
  if o.timeout ~= nil and (type(o.timeout) ~= "number" or not (o.timeout > 0)) then
    fail("distributed.init: timeout must be a number of seconds > 0, got %s", tostring(o.timeout))
  end
  core.dist_init(o.backend, o.timeout)
  return M
end

function M.is_initialized() return core.dist_initialized() end
function M.is_available() return core.dist_compiled() end
--- launcher_size(): the world size mpirun/srun announce in the environment
--- (1 when not started by a launcher), and the variable that said it.
function M.launcher_size() return core.dist_launcher_size() end
function M.rank() need("distributed.rank"); return (core.dist_info()) end
function M.world_size() need("distributed.world_size"); local _, w = core.dist_info(); return w end
function M.local_rank() need("distributed.local_rank"); local _, _, l = core.dist_info(); return l end
function M.local_size() need("distributed.local_size"); local _, _, _, s = core.dist_info(); return s end
function M.backend() need("distributed.backend"); local _, _, _, _, b = core.dist_info(); return b end
function M.set_timeout(s) core.dist_set_timeout(s) end
function M.barrier() core.dist_barrier() end
function M.finalize() core.dist_finalize() end
--- seconds spent in collectives since init
function M.comm_seconds() return core.dist_comm_seconds() end

--- allreduce(t [, op = "sum"]): op "sum", "mean", "max" or "min"; in place.
function M.allreduce(t, op)
  op = op or "sum"
  if op ~= "sum" and op ~= "mean" and op ~= "max" and op ~= "min" then
    fail("distributed.allreduce: op must be \"sum\", \"mean\", \"max\" or \"min\", got %s", tostring(op))
  end
  core.dist_allreduce(t, op == "mean" and "sum" or op, "allreduce")
  if op == "mean" then rn.no_grad(function() t:mul_(1 / M.world_size()) end) end
  return t
end

function M.broadcast(t, root) return core.dist_broadcast(t, root or 0, "broadcast") end
function M.all_gather(t) return core.dist_all_gather(t) end

--- Sums a list of numbers over ranks (one float64 allreduce).
function M.sum_numbers(list, what)
  if #list == 0 then return {} end
  local t = rn.tensor(list, { dtype = "float64" })
  core.dist_allreduce(t, "sum", what or "allreduce of the logs")
  return t:totable()
end

-- ---- DataParallel ---------------------------------------------------------------------

local function shape_str(t) return "(" .. table.concat(t:size(), ",") .. ")" end

-- The model's unique trainable tensors, and every weight (trainable or not).
local function model_params(model)
  local out, seen = {}, {}
  for _, p in ipairs(model:parameters()) do
    if not seen[p] then seen[p] = true; out[#out + 1] = p end
  end
  return out
end

local function check_same_layout(model)
  local ws, parts = model:weights(), {}
  for _, w in ipairs(ws) do parts[#parts + 1] = w.name .. shape_str(w.tensor) .. tostring(w.trainable) end
  core.dist_check_same(#ws, table.concat(parts, ";"), "DataParallel: the model's weights", "weights")
end

-- Broadcasts rank 0's optimizer state (iterations, per-parameter tensors).
local function broadcast_optimizer(opt)
  if not opt or not opt.state then return end
  local ids, parts = {}, {}
  for id in pairs(opt.state) do ids[#ids + 1] = id end
  table.sort(ids, function(a, b) return tostring(a) < tostring(b) end)
  local tensors, nums = {}, { opt.iterations or 0 }
  for _, id in ipairs(ids) do
    local keys = {}
    for k in pairs(opt.state[id]) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = opt.state[id][k]
      if rn.is_tensor(v) then
        tensors[#tensors + 1] = v
        parts[#parts + 1] = tostring(id) .. k .. shape_str(v)
      elseif type(v) == "number" then
        nums[#nums + 1] = v
        parts[#parts + 1] = tostring(id) .. k
      end
    end
  end
  core.dist_check_same(#tensors, table.concat(parts, ";"),
    "DataParallel: the optimizer state (resume or build every rank alike)", "state tensors")
  rn.no_grad(function()
    for _, t in ipairs(tensors) do core.dist_broadcast(t, 0, "broadcast of the optimizer state") end
  end)
  local nt = rn.tensor(nums, { dtype = "float64" })
  core.dist_broadcast(nt, 0, "broadcast of the optimizer state")
  local v, i = nt:totable(), 2
  opt.iterations = math.tointeger(v[1]) or v[1]
  for _, id in ipairs(ids) do
    local keys = {}
    for k in pairs(opt.state[id]) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      if type(opt.state[id][k]) == "number" then
        opt.state[id][k] = math.tointeger(v[i]) or v[i]
        i = i + 1
      end
    end
  end
end

local DP = {}
DP.__index = DP

--- DataParallel(model [, {bucket_mb = 25, first_bucket_mb = 1, overlap = true,
--- broadcast_buffers = true}]): see the header. Call on every rank, after
--- model:compile and any resume.
function M.DataParallel(model, o)
  o = o or {}
  for k in pairs(o) do
    if k ~= "bucket_mb" and k ~= "first_bucket_mb" and k ~= "overlap" and k ~= "broadcast_buffers" then
      fail("DataParallel: unknown option '%s' (valid: bucket_mb, first_bucket_mb, overlap, broadcast_buffers)", tostring(k))
    end
  end
  need("DataParallel")
  if not model.optimizer then fail("DataParallel: compile the model first (model:compile{optimizer =, loss =})") end
  local rank, world = core.dist_info()
  local self = setmetatable({ model = model, rank = rank, world = world, is_root = rank == 0, step = 0,
    broadcast_buffers = o.broadcast_buffers ~= false }, DP)
  self:sync_start()
  local params = model_params(model)
  local rev = {}
  for i = #params, 1, -1 do rev[#rev + 1] = params[i] end -- gradients become ready in reverse order
  self.reducer = core.dist_reducer(rev, o.first_bucket_mb or 1, o.bucket_mb or 25, o.overlap ~= false)
  self.buffers = {}
  for _, w in ipairs(model:weights()) do
    if not w.trainable and not (w.layer and w.layer.sync) then self.buffers[#self.buffers + 1] = w.tensor end
  end
  self.has_sync_bn = false
  for _, w in ipairs(model:weights()) do if w.layer and w.layer.sync then self.has_sync_bn = true end end
  return self
end

--- dp:sync_start(): verifies the layout and broadcasts rank 0's weights and
--- optimizer state (called by DataParallel; again after loading a state).
function DP:sync_start()
  check_same_layout(self.model)
  rn.no_grad(function()
    for _, w in ipairs(self.model:weights()) do core.dist_broadcast(w.tensor, 0, "broadcast of the weights") end
  end)
  broadcast_optimizer(self.model.optimizer)
end

-- rank 0's BN statistics (non-synchronized BN) to every rank, packed in one broadcast
function DP:sync_buffers()
  if not self.broadcast_buffers or #self.buffers == 0 or self.world == 1 then return end
  rn.no_grad(function()
    local flat = {}
    for i, t in ipairs(self.buffers) do flat[i] = t:reshape(-1) end
    local packed = rn.concat(flat, 1)
    core.dist_broadcast(packed, 0, "broadcast of the batch-norm statistics")
    local off = 0
    for _, t in ipairs(self.buffers) do
      local n = t:numel()
      t:copy_(packed:narrow(1, off + 1, n):reshape(t:size()))
      off = off + n
    end
  end)
end

local function has_regularizers(model)
  for _, w in ipairs(model:weights()) do if w.regularizer then return true end end
  return false
end

--- dp:train_step(x, y): this rank's shard (x, y may hold 0 samples: the rank
--- still joins every collective); returns the global batch's logs (the
--- same on every rank) and its sample count.
function DP:train_step(x, y)
  local model, opt = self.model, self.model.optimizer
  self.step = self.step + 1
  core.dist_set_step(self.step)
  local n = rn.is_tensor(y) and y:size(1) or 0
  local counts = core.dist_all_gather(rn.tensor({ n }, { dtype = "float64" })):reshape(-1):totable()
  local total, least = 0, math.huge
  for _, c in ipairs(counts) do total, least = total + c, math.min(least, c) end
  if total == 0 then error("DataParallel: the global batch is empty", 2) end
  if least == 0 and self.has_sync_bn then
    error(string.format("DataParallel: a rank got no samples in step %d (global batch %d < %d ranks), "
      .. "which synchronized batch norm cannot run; use drop_last or a larger last batch", self.step,
      math.tointeger(total), self.world), 2)
  end
  self:sync_buffers()
  opt:zero_grad()
  self.reducer:begin(self.step)
  local loss_v, metrics = 0, {}
  if n > 0 then
    local pred = model(x, { training = true })
    local loss = model.loss_fn(pred, y)
    if has_regularizers(model) then loss = loss + model:regularization_loss() end
    if n == total then loss:backward() else (loss * (n / total)):backward() end
    loss_v = loss:item()
    rn.no_grad(function()
      for _, m in ipairs(model.metric_fns or {}) do metrics[#metrics + 1] = { m.name, m.fn(pred, y) } end
    end)
  end
  self.reducer:finish()
  opt:step()
  -- global logs: sum of n * value over ranks / total; metric names from the ranks with data
  local names = {}
  for _, m in ipairs(model.metric_fns or {}) do names[#names + 1] = m.name end
  local vals = { loss_v * n }
  for i, name in ipairs(names) do vals[#vals + 1] = (metrics[i] and metrics[i][2] or 0) * n; assert(not metrics[i] or metrics[i][1] == name) end
  local sums = self.world > 1 and M.sum_numbers(vals, "allreduce of the step's logs") or vals
  local logs = { loss = sums[1] / total }
  for i, name in ipairs(names) do logs[name] = sums[i + 1] / total end
  return logs, math.tointeger(total) or total
end

--- dp:agree(flag): true on every rank when it is true on any (stop decisions).
function DP:agree(flag)
  if self.world == 1 then return flag and true or false end
  local t = rn.tensor({ flag and 1 or 0 }, { dtype = "int32" })
  core.dist_allreduce(t, "max", "allreduce of the stop flag")
  return t:item() > 0
end

--- dp:reduce_sums(sums, seen): per-key sums and the sample count over ranks
--- (evaluation's logs, identical on every rank afterwards).
function DP:reduce_sums(sums, seen)
  if self.world == 1 then return sums, seen end
  local keys = {}
  for k in pairs(sums) do keys[#keys + 1] = k end
  table.sort(keys)
  core.dist_check_same(#keys, table.concat(keys, ","), "evaluate: the logs' names", "names")
  local vals = { seen }
  for _, k in ipairs(keys) do vals[#vals + 1] = sums[k] end
  local r = M.sum_numbers(vals, "allreduce of the evaluation's logs")
  local out = {}
  for i, k in ipairs(keys) do out[k] = r[i + 1] end
  return out, r[1]
end

-- fit{distributed = true} (lua/rn/fit.lua): joins the job (init{} when the
-- script has not), shards the training and validation loaders' batches
-- across the ranks and wraps the model (after any resume: rank 0's state wins).
function M._fit_begin(model, loader, opts)
  if not core.dist_initialized() then M.init{} end
  local rank, world = core.dist_info()
  local function shard(l, what)
    if world == 1 then return end
    local ok, has = pcall(function() return l.shard ~= nil end)
    if not (ok and has) then
      error(string.format("fit: distributed = true needs %s made by rn.data.Loader (it shards each batch "
        .. "across ranks), or shard it yourself and drive rn.distributed.DataParallel", what), 3)
    end
    l:shard(rank, world)
  end
  shard(loader, "the training loader")
  if opts.validation then shard(opts.validation, "the validation loader") end
  local dp = M.DataParallel(model)
  dp.sharded = world > 1 and { loader, opts.validation } or {}
  return dp
end

function DP:unshard()
  for _, l in pairs(self.sharded or {}) do l:shard(0, 1) end
  self.sharded = {}
end

--- dp:stats(): {comm_s, wait_s, backward_s, steps, bytes, buckets} of the reducer.
function DP:stats() return self.reducer:stats() end

-- ---- SyncBatchNormalization -----------------------------------------------------------

local layers = rn.layers or require "rn.layers"
local BN = layers.BatchNormalization
local SyncBN = BN:extend("SyncBatchNormalization")

--- layers.SyncBatchNormalization(opts): BatchNormalization whose training
--- statistics are those of the global batch across all ranks (forward: the
--- per-channel sums and then the squared deviations are summed over ranks;
--- backward: their gradients too, through a differentiable allreduce). One
--- process, or not initialized: exactly BatchNormalization.
function SyncBN:init(opts)
  BN.init(self, opts)
  self.sync = true
end

function SyncBN:call(x, training)
  local on = (training and self.trainable) and true or false
  if not on or not core.dist_initialized() or select(2, core.dist_info()) == 1 then
    return BN.call(self, x, training)
  end
  if x:dim() < 2 or x:size(-1) ~= self.moving_mean:size(1) then self:compute_output_shape(x:size()) end
  local c = x:size(-1)
  local dims = {}
  for d = 1, x:dim() - 1 do dims[d] = d end
  local n_local = x:numel() / c
  local s = rn.concat({ x:sum(dims), rn.tensor({ n_local }, { dtype = x.dtype, device = x.device }) }, 1)
  local S = core.dist_allreduce_ad(s)
  local count = S:narrow(1, c + 1, 1):detach():item()
  local mean = S:narrow(1, 1, c) / count
  local d = x - mean
  local var = core.dist_allreduce_ad((d * d):sum(dims)) / count
  local y = d * (var + self.epsilon):sqrt():pow(-1)
  if self.gamma then y = y * self.gamma end
  if self.beta then y = y + self.beta end
  rn.no_grad(function()
    local m = self.momentum
    -- the biased global variance (Keras), or var * N/(N-1) with unbiased = true (PyTorch)
    local v = (self.unbiased and count > 1) and var:detach() * (count / (count - 1)) or var:detach()
    self.moving_mean:copy_(self.moving_mean * m + mean:detach() * (1 - m))
    self.moving_variance:copy_(self.moving_variance * m + v * (1 - m))
  end)
  if self._fuse_relu then y = y:relu() end
  return y
end

layers.SyncBatchNormalization = SyncBN
M.SyncBatchNormalization = SyncBN

return M
