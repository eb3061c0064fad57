-- test_cuda_data.lua - the device-resident data path (core/cuda/augment.c,
-- kernels/augment.cu, rn.data.Loader{device = "cuda"}, rn.data.to_device and
-- fit's device_data). On every host: asking for device data without a GPU
-- (or without CUDA in the build) is a clear Lua error, and device_data on a
-- CPU model is refused by name. With a device: every batch of several epochs
-- equals the CPU loader's bit for bit under each augmentation (pad-crop with
-- zeros and reflect, flip, cutout, out_size padding, index subsets, a kept
-- last partial batch, no shuffle, no augmentation), resuming mid-epoch
-- (skip) and :batch(e, i) agree, and fit on a cuda model with the device
-- path gives the same history as with host batches. GPU tests skip visibly.
local T = require "t"
local rn = require "rn"

local AVAIL = rn.cuda.is_available()
local WHY = rn.cuda.why_unavailable()

local function need_gpu()
  if not AVAIL then T.skip("no CUDA device: " .. tostring(WHY)) end
end

-- (n,h,w,c) uint8 images of a fixed pattern and (n) labels
local function dataset(n, h, w, c, seed)
  rn.manual_seed(seed or 1)
  local x = (rn.rand({ n, h, w, c }) * 255.99):byte()
  local y = (rn.rand({ n }) * 10):long()
  return x, y
end

-- The exact bits of a tensor, as a string.
local function bits(t)
  local flat = t:contiguous():reshape({ -1 }):cpu():totable()
  local fmt = (t.dtype == "float32" and "<f") or (t.dtype == "float64" and "<d") or "<j"
  local parts = {}
  for i, v in ipairs(flat) do parts[i] = string.pack(fmt, v) end
  return table.concat(parts)
end

-- ---- on every host -------------------------------------------------------------------------

T.test("device data without a GPU is a clear error", function()
  if AVAIL then T.skip("a CUDA device is present: the error path is not reachable") end
  local x, y = dataset(8, 6, 6, 3)
  local e = T.raises(function() rn.data.Loader(x, y, { batch_size = 4, device = "cuda" }) end,
    "device = 'cuda' (device-resident data) needs", true)
  T.truthy(e:find(rn.built_with_cuda and "a CUDA device" or "built with CUDA", 1, true), e)
  T.truthy(e:find("test_cuda_data.lua", 1, true), "the error points at the caller: " .. e)
  local cpu = rn.data.Loader(x, y, { batch_size = 4, workers = 0 })
  T.raises(function() rn.data.to_device(cpu, "cuda") end, "needs", true)
  T.raises(function() rn.data.Loader(x, y, { device = "tpu" }) end, "device must be 'cpu' or 'cuda'")
  cpu:close()
end)

T.test("device data: to_device of other loaders, and device_data on a CPU model", function()
  local x, y = dataset(8, 6, 6, 1)
  local cpu = rn.data.Loader(x, y, { batch_size = 4, workers = 0 })
  T.eq(rn.data.to_device(cpu, "cpu"), cpu, "cpu: the loader itself")
  local fake = { epoch = function() return function() end end, num_batches = function() return 0 end }
  local dl, why = rn.data.to_device(fake, "cuda")
  T.eq(dl, nil)
  T.truthy(why:find("not a loader made by rn.data.Loader", 1, true), why)
  T.eq(rn.data.is_device_loader(cpu), false)
  if not (rn.layers and rn.Model) then return end
  local L = rn.layers
  local inp = L.Input({ 6, 6, 1 })
  local m = rn.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(inp)))
  m:compile({ optimizer = rn.optim.SGD(m:parameters(), { lr = 0.01 }),
              loss = rn.losses.sparse_categorical_crossentropy({ from_logits = true }) })
  T.raises(function() m:fit(cpu, { epochs = 1, verbose = false, device_data = true }) end,
    "device_data = true needs the model on cuda (it is on cpu)", true)
  T.raises(function() m:fit(cpu, { epochs = 1, verbose = false, device_data = "yes" }) end,
    "device_data must be a boolean")
  cpu:close()
end)

-- ---- with a device ---------------------------------------------------------------------------

-- Every batch of epochs 1..3 (and 0) of the CPU loader and its device twin, bit for bit.
local function same_batches(x, y, opts, what)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.workers = 0
  local cpu = rn.data.Loader(x, y, o)
  local dev = rn.data.to_device(cpu, "cuda")
  T.truthy(rn.data.is_device_loader(dev), what .. ": a device loader")
  T.eq(rn.data.to_device(cpu, "cuda"), dev, what .. ": uploaded once, then reused")
  T.eq(dev:num_batches(), cpu:num_batches(), what .. ": batches")
  T.eq(dev:size(), cpu:size(), what .. ": size")
  T.eq(dev:batch_size(), cpu:batch_size(), what .. ": batch size")
  T.eq(table.concat(dev:sample_shape(), ","), table.concat(cpu:sample_shape(), ","), what)
  for _, epoch in ipairs({ 0, 1, 2, 3 }) do
    local got = {}
    for xd, yd, i in dev:epoch(epoch) do
      T.eq(xd.device, "cuda", what .. ": x on the device")
      T.eq(yd.device, "cuda", what .. ": y on the device")
      got[i] = { xd, yd }
    end
    local n = 0
    for xc, yc, i in cpu:epoch(epoch) do
      n = n + 1
      local xd, yd = got[i][1], got[i][2]
      T.eq(table.concat(xd:size(), ","), table.concat(xc:size(), ","), what .. ": shape")
      T.truthy(bits(xd) == bits(xc), string.format("%s: epoch %d batch %d: images differ", what, epoch, i))
      T.truthy(bits(yd) == bits(yc), string.format("%s: epoch %d batch %d: labels differ", what, epoch, i))
    end
    T.eq(n, cpu:num_batches(), what .. ": every batch compared")
  end
  return cpu, dev
end

T.test("device data: batches equal the CPU loader's bit for bit, several epochs", function()
  need_gpu()
  local x, y = dataset(37, 8, 8, 3, 2)
  same_batches(x, y, { batch_size = 8, seed = 5 }, "defaults (pad 4, flip)")
  same_batches(x, y, { batch_size = 8, seed = 6, pad_crop = 2, pad_mode = "reflect", cutout = 3,
    mean = { 0.5, 0.4, 0.3 }, std = { 0.2, 0.3, 0.25 } }, "reflect + cutout + stats")
  same_batches(x, y, { batch_size = 10, seed = 7, drop_last = true, flip = false }, "drop_last, no flip")
  same_batches(x, y, { batch_size = 16, shuffle = false, augment = false }, "no shuffle, no augment")
  local idx = rn.tensor({ 3, 0, 36, 7, 7, 20 }, { dtype = "int64" })
  same_batches(x, y, { batch_size = 4, seed = 9, indices = idx, cutout = 8 }, "indices")
  local g, gy = dataset(21, 28, 28, 1, 3)
  same_batches(g, gy, { batch_size = 6, seed = 11, out_size = { 32, 32 }, pad_crop = 4,
    dataset = "fashion_mnist" }, "28x28x1 padded to 32x32")
  local c5, c5y = dataset(9, 5, 7, 5, 4)
  same_batches(c5, c5y, { batch_size = 4, seed = 13, pad_crop = 1, out_size = { 4, 6 } },
    "5 channels, centre-cropped to 4x6")
end)

T.test("device data: skip and batch(e, i) agree with the epoch's batches", function()
  need_gpu()
  local x, y = dataset(30, 6, 6, 3, 8)
  local cpu = rn.data.Loader(x, y, { batch_size = 7, seed = 3, workers = 0 })
  local dev = rn.data.Loader(x, y, { batch_size = 7, seed = 3, device = "cuda" })
  local all = {}
  for xd, _, i in dev:epoch(2) do all[i] = bits(xd) end
  local first
  for xd, _, i in dev:epoch(2, 3) do
    first = first or i
    T.truthy(bits(xd) == all[i], "resumed batch " .. i)
  end
  T.eq(first, 4, "skip 3: the first batch is number 4")
  for i = 1, dev:num_batches() do
    local xb = dev:batch(2, i)
    T.truthy(bits(xb) == all[i], "batch(2, " .. i .. ")")
  end
  for xc, _, i in cpu:epoch(2) do T.truthy(bits(xc) == all[i], "CPU batch " .. i) end
  T.raises(function() dev:batch(2, dev:num_batches() + 1) end, "outside 1..")
  T.raises(function() dev:epoch(-1) end, "negative")
  T.truthy(tostring(dev):find("rn.CudaDataLoader", 1, true), tostring(dev))
  dev:close()
  T.raises(function() dev:num_batches() end, "closed")
end)

T.test("device data: fit on a cuda model gives the host pipeline's history", function()
  need_gpu()
  if not (rn.layers and rn.Model and rn.optim) then T.skip("rn.layers / rn.Model not available") end
  local L = rn.layers
  local x, y = dataset(48, 8, 8, 3, 12)
  local function run(device_data)
    rn.manual_seed(4)
    if L.reset_names then L.reset_names() end
    local inp = L.Input({ 8, 8, 3 })
    local h = L.ReLU()(L.BatchNormalization()(L.Conv2D(6, 3, { padding = "same" })(inp)))
    local m = rn.Model(inp, L.Dense(10, { activation = "softmax" })(L.GlobalAveragePooling2D()(h)))
    m:to("cuda")
    m:compile({ optimizer = rn.optim.SGD(m:parameters(), { lr = 0.05, momentum = 0.9 }),
                loss = "sparse_categorical_crossentropy", metrics = { "accuracy" } })
    local train = rn.data.Loader(x, y, { batch_size = 16, seed = 2, workers = 0 })
    local test = rn.data.Loader(x, y, { batch_size = 16, augment = false, shuffle = false, workers = 0 })
    local prev = rn.set_deterministic and rn.set_deterministic(true)
    local ok, h = pcall(m.fit, m, train, { epochs = 2, validation = test, verbose = false,
      device_data = device_data })
    if rn.set_deterministic then rn.set_deterministic(prev) end
    if not ok then error(h, 0) end
    return h
  end
  local a, b = run(true), run(false)
  for e = 1, 2 do
    for _, k in ipairs({ "loss", "accuracy", "val_loss", "val_accuracy" }) do
      T.eq(a[e][k], b[e][k], string.format("epoch %d %s: device data vs host batches", e, k))
    end
  end
end)
