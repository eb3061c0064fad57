-- rn.data: the data pipeline's Lua face, over the C loader (core/data/,
-- core/lua/l_data.c). See doc/data.md.
--
--   local data = require "rn.data"     -- also rn.data once rn/init.lua loads it
--   local train_idx, val_idx = data.split(images:size(1), 0.1, 42)
--   local loader = data.Loader(images, labels, {batch_size = 128, seed = 1,
--                                               indices = train_idx, cutout = 8})
--   for epoch = 1, 10 do
--     for x, y, i in loader:epoch(epoch) do   -- x (B,H,W,C) float32, y (B) int64
--       ...
--     end
--   end
--
-- images: uint8 (N,H,W,C), kept once in memory and shared by the worker
-- threads (never copied per epoch; do not modify it while an epoch runs);
-- labels: uint8, int32 or int64 (N).
--
-- Options (all optional), as for rn.data_loader:
--   batch_size=32  shuffle=true  seed=0  drop_last=false
--   mean={...} std={...}   per channel: x = (v/255 - mean[c]) / std[c]
--   pad_crop=4 (0 = off)  pad_mode="zeros"|"reflect"  flip=true  cutout=0
--   out_size={H,W}         zero-pad (or centre-crop) to this size first
--   workers=2 (0 = no threads)  prefetch=3 (batches prepared ahead)
--   indices=int64 tensor   0-based sample ids to serve (a split)
--   augment=true           false: out_size padding and normalization only
-- and here only:
--   dataset="cifar10"|"fashion_mnist"|"mnist"  picks mean/std where they are
--   not given; without it, 3-channel images get CIFAR-10's and 1-channel
--   images Fashion-MNIST's statistics, others mean 0 / std 1.
--   device="cpu"|"cuda"   "cuda": device-resident data (below)
--
-- Determinism: batch b of epoch e depends only on (seed, e, the data, the
-- options): the same for any number of workers, any prefetch, any machine.
--
-- Device-resident data (device = "cuda", or data.to_device(loader, "cuda"),
-- which model:fit does by itself for a model on cuda): the images (uint8),
-- labels and normalization table are uploaded to the GPU once, and each
-- batch is gathered and augmented there by one kernel (kernels/augment.cu)
-- with the same per-(seed, epoch, index) draws (core/data/rng.h), so its
-- batches equal the CPU loader's bit for bit, already on the device. Its
-- :epoch, :num_batches, :size, :batch_size, :sample_shape and :close are
-- those of the CPU loader, plus :batch(epoch, i); workers and prefetch do
-- not apply (the kernel runs on the device's stream).
local core = require "rn.core"

local data = {}

--- Per-channel statistics of the training sets (pixels scaled to 0..1).
data.stats = {
  cifar10 = { mean = { 0.4914, 0.4822, 0.4465 }, std = { 0.2470, 0.2435, 0.2616 } },
  fashion_mnist = { mean = { 0.2860 }, std = { 0.3530 } },
  mnist = { mean = { 0.1307 }, std = { 0.3081 } },
}
data.stats["fashion-mnist"] = data.stats.fashion_mnist

local function copy_list(t)
  local r = {}
  for i, v in ipairs(t) do r[i] = v end
  return r
end

-- What each in-memory CPU loader was made from (images, labels, resolved
-- options), so that data.to_device can upload the same data set; and the
-- device loader made from it, kept for the loader's life (uploaded once).
-- Weak keys: an entry goes with its loader.
local made_from = setmetatable({}, { __mode = "k" })

local function is_device_loader(v)
  return type(v) == "userdata" and tostring(v):match("^rn%.CudaDataLoader") ~= nil
end

-- The device loader of (images, labels, o), or an error at level `level`
-- saying why there is none here.
local function device_loader(images, labels, o, level)
  if not core.cuda_data_loader then
    error("Loader: device = 'cuda' (device-resident data) needs an rnlua built with CUDA; " ..
      "this one was built without it", level + 1)
  end
  local ok, why = core.cuda_is_available()
  if not ok then
    error("Loader: device = 'cuda' (device-resident data) needs a CUDA device: " .. tostring(why),
      level + 1)
  end
  return core.cuda_data_loader(images, labels, o)
end

--- data.Loader(images, labels [, opts]) -> rn.DataLoader with :epoch(e [, skip]),
--- :num_batches(), :size(), :batch_size(), :sample_shape(), :close();
--- with device = "cuda" an rn.CudaDataLoader with the same methods whose
--- batches are made on the GPU.
function data.Loader(images, labels, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("Loader: options must be a table, got " .. type(opts), 2)
  end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  local ds = o.dataset
  o.dataset = nil
  local device = o.device or "cpu"
  o.device = nil
  if device ~= "cpu" and device ~= "cuda" then
    error("Loader: device must be 'cpu' or 'cuda', got '" .. tostring(device) .. "'", 2)
  end
  local stats
  if ds ~= nil then
    stats = data.stats[ds]
    if not stats then
      error("Loader: unknown dataset '" .. tostring(ds) .. "' (valid: cifar10, fashion_mnist, mnist)", 2)
    end
  elseif core.is_tensor(images) and images.ndim == 4 then
    local c = images:size(4)
    stats = (c == 3 and data.stats.cifar10) or (c == 1 and data.stats.fashion_mnist) or nil
  end
  if stats then
    if o.mean == nil then o.mean = copy_list(stats.mean) end
    if o.std == nil then o.std = copy_list(stats.std) end
  end
  if device == "cuda" then
    local dl = device_loader(images, labels, o, 2) -- not a tail call: level 2 is our caller
    return dl
  end
  local loader = core.data_loader(images, labels, o)
  made_from[loader] = { images = images, labels = labels, opts = o }
  return loader
end

--- data.to_device(loader, device) -> a loader whose batches are on device:
--- for "cuda" and a loader made by data.Loader from tensors in memory, its
--- device-resident twin (same batches bit for bit; made and uploaded once
--- per loader, then reused); a device loader or "cpu" gives loader itself.
--- Otherwise nil and the reason.
function data.to_device(loader, device)
  if device == "cpu" or is_device_loader(loader) then return loader end
  if device ~= "cuda" then
    error("to_device: device must be 'cpu' or 'cuda', got '" .. tostring(device) .. "'", 2)
  end
  local from = made_from[loader]
  if not from then
    return nil, "not a loader made by rn.data.Loader from tensors in memory"
  end
  if not from.device_loader then
    from.device_loader = device_loader(from.images, from.labels, from.opts, 2)
  end
  return from.device_loader
end

--- data.is_device_loader(v) -> true for a loader made on the GPU.
data.is_device_loader = is_device_loader

--- data.split(n, val_fraction [, seed]) -> train_idx, val_idx: int64 tensors
--- of 0-based sample ids, disjoint, together 0..n-1, each sorted; val holds
--- floor(n*val_fraction + 0.5) ids chosen at random keyed on seed.
function data.split(n, val_fraction, seed)
  if math.type(n) ~= "integer" or n < 0 then
    error("split: n must be an integer >= 0, got " .. tostring(n), 2)
  end
  if type(val_fraction) ~= "number" or not (val_fraction >= 0 and val_fraction <= 1) then
    error("split: val_fraction " .. tostring(val_fraction) .. " outside 0..1", 2)
  end
  if seed ~= nil and math.type(seed) ~= "integer" then
    error("split: seed must be an integer, got " .. tostring(seed), 2)
  end
  return core.data_split(n, val_fraction, seed or 0)
end

return data
