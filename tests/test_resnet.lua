-- test_resnet.lua - the seed ResNet of scripts/resnet_cifar.lua: summary
-- totals (686,474 / 683,306 / 3,168), layer counts (45 Conv2D, 43 BN, 1
-- Dense), 99,533,440 multiply-accumulates per image, eager forward shapes,
-- its l2 regularization against the formula, BN train/eval switching, and a
-- short training on 384 real Fashion-MNIST images (28x28 padded to 32x32, 1
-- channel) on 2 threads that must lower the loss clearly in well under a
-- minute (the time per step is printed; on cores already loaded by other
-- processes it runs on 1 thread and a slow run is reported, not failed:
-- OpenMP's spinning barriers collapse under contention). Also checks doc/keras_to_rnlua.md:
-- its Lua ResNet is the script's text, and every "-- example:" block runs.
local T = require "t"
local rn = require "rn"
local fmnist = require "fmnist"

-- until lua/rn/init.lua exposes the model library (the script and the doc use rn.layers etc.)
rn.layers = rn.layers or require "rn.layers"
rn.regularizers = rn.regularizers or require "rn.regularizers"
rn.initializers = rn.initializers or require "rn.initializers"
rn.Model = rn.Model or require("rn.model").Model
rn.Sequential = rn.Sequential or require("rn.model").Sequential
rn.optim = rn.optim or require "rn.optim"
rn.losses = rn.losses or require "rn.losses"
rn.metrics = rn.metrics or require "rn.metrics"
rn.schedules = rn.schedules or require "rn.schedules"

local R = assert(loadfile("scripts/resnet_cifar.lua"))()

local function now()
  local p = io.popen("date +%s.%N")
  local t = p:read("n")
  p:close()
  return t
end

-- the 1-minute load average and the number of cores
local function busy()
  local f = io.open("/proc/loadavg")
  local load = f and f:read("n") or 0
  if f then f:close() end
  local p = io.popen("nproc")
  local cores = p:read("n") or 1
  p:close()
  return load, cores
end

T.test("seed ResNet: summary totals and layer counts", function()
  rn.layers.reset_names()
  local model = R.create_resnet()
  local s = model:summary({ print = false })
  T.truthy(s:find("Total params: 686,474\nTrainable params: 683,306\nNon-trainable params: 3,168", 1, true), s)
  T.eq({ model:count_params() }, { 686474, 683306, 3168 })
  local count = {}
  for _, l in ipairs(model.layers) do count[l.class_name] = (count[l.class_name] or 0) + 1 end
  T.eq(count, { InputLayer = 1, Conv2D = 45, BatchNormalization = 43, ReLU = 43, Add = 21,
    GlobalAveragePooling2D = 1, Dense = 1 })
  T.truthy(s:find("input_1 (InputLayer)", 1, true) and s:find("dense (Dense)", 1, true)
    and s:find("add_20 (Add)", 1, true), "Keras names")
  T.eq(model.outputs[1]:size(), { -1, 10 })
  -- per-image work, as doc/performance counts it
  local _, macs = model:flops_per_sample()
  T.eq(macs, 99533440)
  local f = model:summary({ print = false, flops = true })
  T.truthy(f:find("99,533,440 multiply-accumulates", 1, true), f)
  -- the stride-2 stage entries: 32x32 -> 16x16 -> 8x8
  T.eq(model:get_layer("conv2d_15")._nodes[1].outputs[1]:size(), { -1, 16, 16, 32 })
  T.eq(model:get_layer("conv2d_31")._nodes[1].outputs[1]:size(), { -1, 8, 8, 64 })
end)

T.test("seed ResNet: eager forward, regularization, train/eval switching", function()
  rn.manual_seed(3)
  local model = R.create_resnet()
  local x = rn.randn({ 2, 32, 32, 3 })
  local p = model(x, { training = true })
  T.eq(p:size(), { 2, 10 })
  T.near(p:sum(-1), rn.ones({ 2 }), 1e-5, 0, "softmax rows")
  -- l2(1e-4) on every conv kernel but the stem's: 44 of them
  local want, n = 0, 0
  for _, w in ipairs(model:weights()) do
    if w.regularizer then
      n = n + 1
      want = want + 1e-4 * (w.tensor * w.tensor):sum():item()
    end
  end
  T.eq(n, 44)
  T.near(model:regularization_loss():item(), want, 0, 1e-5)
  -- BN: batch statistics in training mode, moving statistics in inference
  -- mode, which model(x) runs without {training = true}, as Keras
  local pe = model:predict(x)
  T.truthy((pe - p):abs():max():item() > 1e-3, "eval differs from train")
  T.near(model(x), pe, 1e-6)
  model:train()                               -- PyTorch's module.train()
  T.truthy((model(x) - pe):abs():max():item() > 1e-3, "train(): batch statistics")
  model:eval()                                -- (that call moved the moving statistics)
  T.near(model(x), model:predict(x), 1e-6)
end)

-- (about 7 s on 2 idle cores; the time is printed, never asserted: speed is
-- measured by benchmarks, not tests)
T.test("seed ResNet trains on 384 Fashion-MNIST images, 2 threads", function()
  if not fmnist.available() then T.skip("Fashion-MNIST not found in " .. fmnist.dir) end
  local threads = rn.get_num_threads()
  -- 2 threads; 1 when other processes already load the cores (see below)
  local load0, cores = busy()
  local nthreads = load0 > cores + 0.5 and 1 or 2
  rn.set_num_threads(nthreads)
  rn.manual_seed(1)
  local N, B, EPOCHS = 384, 32, 3
  local x, y = fmnist.load(N, { pad = 2 })
  T.eq(x:size(), { N, 32, 32, 1 })
  local model = R.create_resnet({ 32, 32, 1 })
  model:compile({ optimizer = rn.optim.Adam{ lr = 1e-3 }, loss = "sparse_categorical_crossentropy",
    metrics = { "accuracy" } })
  local probe_x, probe_y = x:narrow(1, 1, 128), y:narrow(1, 1, 128)
  local function probe_loss() -- training-mode BN (the moving stats lag after so few steps)
    return rn.no_grad(function()
      return rn.losses.sparse_categorical_crossentropy()(model(probe_x, { training = true }), probe_y):item()
    end)
  end
  local before = probe_loss()
  local t0, steps = now(), 0
  for _ = 1, EPOCHS do
    for s = 1, N // B do
      model:train_step(x:narrow(1, (s - 1) * B + 1, B), y:narrow(1, (s - 1) * B + 1, B))
      steps = steps + 1
    end
  end
  local dt = now() - t0
  local after = probe_loss()
  rn.set_num_threads(threads)
  io.write(string.format("  [resnet fashion-mnist: %d steps of batch %d in %.1f s (%.3f s/step, %d threads); "
    .. "loss %.3f -> %.3f]\n", steps, B, dt, dt / steps, nthreads, before, after))
  T.truthy(after < 0.7 * before, string.format("loss %.3f -> %.3f", before, after))
end)

-- ---- the script's device ------------------------------------------------------------------

T.test("resnet_cifar.lua: --device auto by default, the first line says the device and why", function()
  local files = require "files"
  local bin = os.getenv("RNLUA_BIN") or "./rnlua"
  local function first_line(args)
    local out = os.tmpname()
    os.execute(string.format("%s scripts/resnet_cifar.lua --summary --train-limit 8 --test-limit 8 --batch-size 8 %s >%s 2>&1",
      files.q(bin), args, files.q(out)))
    local text = files.try_read(out) or ""
    os.remove(out)
    return text:match("^[^\n]*")
  end
  local ok, why = rn.cuda.usable()
  local want = ok and ("device: cuda (auto: " .. why .. "; --device cpu forces the CPU)")
    or ("device: cpu (auto: no usable GPU: " .. why .. ")")
  T.eq(first_line(""), want)
  T.eq(first_line("--device auto"), want)
  T.eq(first_line("--device cpu"), "device: cpu (--device cpu)")
  T.truthy(first_line("--device gpu"):find("--device must be auto, cpu or cuda", 1, true))
end)

-- ---- the document -------------------------------------------------------------------------

local read = require("files").read

local function lua_blocks(md)
  local out = {}
  for code in md:gmatch("```lua\n(.-)```") do out[#out + 1] = code end
  return out
end

T.test("doc/keras_to_rnlua.md: its Lua ResNet is the script's text", function()
  local blocks = lua_blocks(read("doc/keras_to_rnlua.md"))
  local script = read("scripts/resnet_cifar.lua")
  local resnet = blocks[1]
  T.truthy(resnet:find("local function create_resnet", 1, true), "first Lua block is the ResNet")
  local pos = 1
  for para in (resnet .. "\n"):gmatch("(.-)\n\n") do
    local at = script:find(para, pos, true)
    T.truthy(at, "paragraph not in scripts/resnet_cifar.lua (or out of order):\n" .. para)
    pos = at + #para
  end
end)

T.test("doc/keras_to_rnlua.md: every example runs", function()
  local n = 0
  for _, code in ipairs(lua_blocks(read("doc/keras_to_rnlua.md"))) do
    local name = code:match("^%-%- example: ([^\n]+)")
    if name then
      n = n + 1
      local chunk = assert(load(code, "=doc example '" .. name .. "'", "t"))
      local ok, err = pcall(chunk)
      T.truthy(ok, "example '" .. name .. "': " .. tostring(err))
    end
  end
  T.eq(n, 4)
end)
