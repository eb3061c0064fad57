-- resnet_cifar.lua - the seed article's ResNet (3 stages x 7 pre-activation
-- residual blocks, 16/32/64 channels, 3x3 conv shortcuts; 686,474 params)
-- written as the Keras original reads, and its training on CIFAR-10, or on
-- Fashion-MNIST (28x28x1 padded to 32x32) where no CIFAR-10 is found.
--
--   ./rnlua scripts/resnet_cifar.lua --help
--   ./rnlua scripts/resnet_cifar.lua --data ~/cifar-10-binary.tar.gz --epochs 30
--   ./rnlua scripts/resnet_cifar.lua --epochs 2 --save run.ckpt     (then --resume run.ckpt)
--
-- Loaded from another script (arg[0] not this file) it only returns
-- {residual_block =, create_resnet =}.
local rn = require "rn"

local layers, regularizers = rn.layers, rn.regularizers

-- Residual block: (BN -> ReLU -> conv) x 2, plus the shortcut
local function residual_block(inputs, ch, strides)
  -- main path
  local x = layers.BatchNormalization()(inputs)
  x = layers.ReLU()(x)
  x = layers.Conv2D(ch, 3, {strides = strides, padding = "same",
                            kernel_regularizer = regularizers.l2(1e-4)})(x)
  x = layers.BatchNormalization()(x)
  x = layers.ReLU()(x)
  x = layers.Conv2D(ch, 3, {padding = "same", kernel_regularizer = regularizers.l2(1e-4)})(x)

  -- shortcut path
  local s
  if inputs.shape[-1] ~= ch or strides > 1 then
    s = layers.Conv2D(ch, 3, {strides = strides, padding = "same",
                              kernel_regularizer = regularizers.l2(1e-4)})(inputs)
  else
    s = inputs
  end

  -- add
  x = layers.Add()({x, s})
  return x
end

-- The ResNet; input_shape defaults to the seed's (32, 32, 3)
local function create_resnet(input_shape)
  local inputs = layers.Input(input_shape or {32, 32, 3})
  local x = layers.Conv2D(16, 3, {padding = "same"})(inputs)
  for _, ch in ipairs({16, 32, 64}) do
    for i = 0, 6 do
      local strides = i == 0 and 2 or 1
      if ch == 16 then
        strides = 1
      end
      x = residual_block(x, ch, strides)
    end
  end
  x = layers.BatchNormalization()(x)
  x = layers.ReLU()(x)
  x = layers.GlobalAveragePooling2D()(x)
  x = layers.Dense(10, {activation = "softmax"})(x)

  return rn.Model(inputs, x)
end

if not (arg and arg[0] and arg[0]:match("resnet_cifar%.lua$")) then
  return { residual_block = residual_block, create_resnet = create_resnet }
end

-- ---- the training setup ---------------------------------------------------------

local USAGE = [[
usage: rnlua scripts/resnet_cifar.lua [options]
  --data PATH          CIFAR-10: cifar-10-binary.tar.gz or its extracted folder
                       (default: looks in ./data, ./, ~/data, ~/datasets);
                       with --dataset fashion-mnist: the folder of its four
                       IDX files (default /usr/share/datasets/fashion-mnist)
  --dataset NAME       cifar10 | fashion-mnist (default: cifar10 when found,
                       else fashion-mnist from /usr/share/datasets/fashion-mnist)
  --epochs N           epochs to train (default 1)
  --batch-size B       default 128
  --lr LR              peak learning rate of SGD momentum 0.9 (default 0.1),
                       1 epoch of linear warmup, then cosine decay to 0
  --device DEV         auto | cpu | cuda (default auto: cuda where a GPU and
                       cuDNN load, else cpu; the first line says which and why)
  --device-data on|off on cuda: upload the data set to the GPU once
                       and augment each batch there (default on; same batches
                       as the CPU pipeline, bit for bit)
  --threads T          CPU threads (default: all cores)
  --precision P        float32 | mixed_bfloat16 (Keras's policy: float32
                       variables, bf16 activations and layer math on the CPU;
                       bf16 math in the convolutions on a GPU; needs
                       AVX512-BF16/AMX or a GPU)
  --seed S             seeds weights, shuffling and augmentation (default 1)
  --train-limit N      use only the first N training images (default all)
  --test-limit N       evaluate on the first N test images (default all)
  --steps-per-epoch N  cap the steps of each epoch
  --time-budget S      fit the job into about S seconds on this machine: a
                       few timed steps measure the training and inference
                       speed first, then the training images per epoch and
                       the test images are cut (never raised) to fit; the
                       plan is printed (make run uses 150); a cut job
                       also recalibrates the BN statistics before each
                       validation (see --bn-recalibrate)
  --bn-recalibrate N   before each validation, set every BatchNormalization's
                       moving statistics to the average over N training
                       batches (for short runs: momentum 0.99 leaves them
                       near their initial values); 0 turns it off
  --save PATH          training state after each epoch (atomic; resumable)
  --resume PATH        continue a run saved with --save (same options)
  --log PATH           per-epoch log (.csv, or JSON lines otherwise)
  --plot PATH          PNG of the training curves, redrawn each epoch
  --summary            print the model summary with FLOPs and exit
  --help               this text
]]

local function die(msg)
  io.stderr:write("resnet_cifar: ", msg, "\n\n", USAGE)
  os.exit(2)
end

local opt = { epochs = 1, ["batch-size"] = 128, lr = 0.1, device = "auto", seed = 1 }
local numeric = { epochs = true, ["batch-size"] = true, lr = true, threads = true, seed = true,
  ["train-limit"] = true, ["test-limit"] = true, ["steps-per-epoch"] = true, ["time-budget"] = true,
  ["bn-recalibrate"] = true }
local strings = { data = true, dataset = true, device = true, save = true, resume = true,
  log = true, plot = true, ["device-data"] = true, precision = true }
local i = 1
while arg[i] do
  local key = arg[i]:match("^%-%-([%w-]+)$")
  if key == "help" then io.write(USAGE); os.exit(0)
  elseif key == "summary" then opt.summary = true
  elseif key and (numeric[key] or strings[key]) then
    local v = arg[i + 1]
    if v == nil then die("option --" .. key .. " needs a value") end
    if numeric[key] then
      v = tonumber(v)
      if v == nil or v < 0 or (v == 0 and key ~= "bn-recalibrate") or
        (key ~= "lr" and math.type(v) ~= "integer" and v ~= math.floor(v)) then
        die(string.format("--%s needs a positive %s, got '%s'", key, key == "lr" and "number" or "integer", arg[i + 1]))
      end
      if key ~= "lr" then v = math.tointeger(v) end
    end
    opt[key] = v
    i = i + 1
  else
    die("unknown argument '" .. arg[i] .. "'")
  end
  i = i + 1
end

-- Started by mpirun/srun with several processes (doc/distributed.md): the
-- same options, trained data-parallel across the ranks (each global batch
-- sharded); rank 0 alone prints and writes the log, plot and checkpoints.
local DIST = rn.distributed.is_available() and rn.distributed.launcher_size() > 1
if DIST then
  rn.distributed.init{}
  if opt["time-budget"] then die("--time-budget measures one process's speed; under mpirun give --train-limit instead") end
  if rn.distributed.rank() ~= 0 then print = function() end end
end
if opt.device ~= "auto" and opt.device ~= "cpu" and opt.device ~= "cuda" then
  die("--device must be auto, cpu or cuda, got '" .. opt.device .. "'")
end
if opt.device == "cuda" and not rn.cuda.is_available() then
  die("--device cuda: " .. tostring(rn.cuda.why_unavailable()))
end
-- the GPU when one is usable, as Keras places work; the first line of output says which and why
if opt.device == "auto" then
  local ok, why = rn.cuda.usable()
  opt.device = ok and "cuda" or "cpu"
  print(ok and string.format("device: cuda (auto: %s; --device cpu forces the CPU)", why)
    or string.format("device: cpu (auto: no usable GPU: %s)", tostring(why)))
else
  print(string.format("device: %s (--device %s)", opt.device, opt.device))
end
if opt.dataset and opt.dataset ~= "cifar10" and opt.dataset ~= "fashion-mnist" then
  die("--dataset must be cifar10 or fashion-mnist, got '" .. opt.dataset .. "'")
end
local dd = opt["device-data"]
if dd ~= nil and dd ~= "on" and dd ~= "off" then die("--device-data must be on or off, got '" .. dd .. "'") end
if dd == "on" and opt.device ~= "cuda" then die("--device-data on needs the cuda device; this run is on the cpu") end
local device_data = opt.device == "cuda" and dd ~= "off" -- the pipeline: device-resident or host batches
if opt.threads then rn.set_num_threads(opt.threads) end
if opt.precision then
  if opt.precision ~= "float32" and opt.precision ~= "mixed_bfloat16" then
    die("--precision must be float32 or mixed_bfloat16, got '" .. opt.precision .. "'")
  end
  local ok, err = pcall(rn.mixed_precision.set_global_policy, opt.precision)
  if not ok then die("--precision " .. opt.precision .. ": " .. tostring(err)) end
end
rn.manual_seed(opt.seed)
local t_start = rn._clock()

-- ---- data ---------------------------------------------------------------------------

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

local function find_cifar()
  if opt.data then return opt.data, { opt.data } end
  local home = os.getenv("HOME") or "."
  local looked = {}
  for _, dir in ipairs({ "data", ".", home .. "/data", home .. "/datasets" }) do
    for _, name in ipairs({ "cifar-10-binary.tar.gz", "cifar-10-batches-bin/data_batch_1.bin" }) do
      local p = dir .. "/" .. name
      looked[#looked + 1] = p
      if exists(p) then return (p:gsub("/data_batch_1%.bin$", "")), looked end
    end
  end
  return nil, looked
end

local train_x, train_y, test_x, test_y, dataset
if opt.dataset ~= "fashion-mnist" then
  local path, looked = find_cifar()
  if path then
    train_x, train_y = rn.read_cifar10(path, { split = "train" })
    test_x, test_y = rn.read_cifar10(path, { split = "test" })
    dataset = "cifar10"
    print(string.format("data: CIFAR-10 from %s", path))
  elseif opt.dataset == "cifar10" then
    die("no CIFAR-10 found; looked at: " .. table.concat(looked, ", "))
  else
    print("data: no CIFAR-10 found (looked at " .. table.concat(looked, ", ") ..
      "); using Fashion-MNIST, 28x28x1 padded to 32x32")
  end
end
if not dataset then
  local dir = opt.dataset == "fashion-mnist" and opt.data or "/usr/share/datasets/fashion-mnist"
  if not exists(dir .. "/train-images-idx3-ubyte.gz") then
    die("no Fashion-MNIST in " .. dir .. " (wants train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, " ..
      "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; Debian: apt install dataset-fashion-mnist)")
  end
  local function idx(name) return rn.read_idx(dir .. "/" .. name, name:match("labels") and { classes = 10 } or nil) end
  train_x = idx("train-images-idx3-ubyte.gz"):unsqueeze(4)
  train_y = idx("train-labels-idx1-ubyte.gz")
  test_x = idx("t10k-images-idx3-ubyte.gz"):unsqueeze(4)
  test_y = idx("t10k-labels-idx1-ubyte.gz")
  dataset = "fashion_mnist"
end
-- --time-budget: measure this machine's speed on the real model and batch
-- (a throwaway copy: 1 untimed + 2 timed training steps, 1 timed predict
-- batch), then cut the images so that epochs x (train + validation) plus the
-- final confusion-matrix pass fit the budget. The random state is restored
-- afterwards, so a job that needs no cut is the same run as without it.
local function plan_budget(budget, n_train, n_test)
  local bs = opt["batch-size"]
  local ch = train_x:size(4)
  local m = create_resnet({ 32, 32, ch })
  if opt.device == "cuda" then m:to("cuda") end
  m:compile({ optimizer = rn.optim.SGD(m:parameters(), { lr = 0.01, momentum = 0.9 }),
              loss = rn.losses.sparse_categorical_crossentropy() })
  local x = rn.randn({ bs, 32, 32, ch }, { device = opt.device })
  local y = (rn.rand({ bs }) * 10):long():minimum(9):to(opt.device)
  local sync = opt.device == "cuda" and rn.cuda.synchronize or function() end
  m:train_step(x, y); sync()
  local t0 = rn._clock()
  for _ = 1, 2 do m:train_step(x, y) end
  sync()
  local train_ips = 2 * bs / (rn._clock() - t0)
  t0 = rn._clock()
  m:predict(x); sync()
  local infer_ips = bs / (rn._clock() - t0)
  local epochs = opt.epochs
  -- evaluation gets up to a fifth of the budget, training the rest (minus
  -- the model setup and the measurement itself, ~5% slack)
  local usable = budget * 0.95 - (rn._clock() - t_start)
  local test_n = math.min(n_test, math.floor(usable * 0.2 * infer_ips / (epochs + 1)))
  test_n = math.max(math.min(n_test, 1000), test_n)
  local left = usable - test_n * (epochs + 1) / infer_ips
  local train_n = math.min(n_train, math.floor(left * train_ips / epochs / bs) * bs)
  train_n = math.max(math.min(n_train, 8 * bs), train_n)
  local est = epochs * train_n / train_ips + (epochs + 1) * test_n / infer_ips + (rn._clock() - t_start)
  local f = rn.cpu.features()
  print(string.format("time budget %d s: measured %.0f img/s training, %.0f img/s inference (batch %d, %s%s); " ..
    "plan: %d epoch(s) of %d training images, %d test images, about %.0f s%s", budget, train_ips, infer_ips, bs,
    opt.device == "cuda" and "cuda" or (f.model .. ", oneDNN " .. f.isa), opt.device == "cuda" and "" or
    string.format(", %d threads", rn.get_num_threads()), epochs, train_n, test_n, est,
    (train_n < n_train or test_n < n_test) and string.format(" (cut from %d and %d to fit; " ..
      "drop --time-budget for the whole job)", n_train, n_test) or ""))
  io.stdout:flush()
  return train_n, test_n
end

if opt["time-budget"] and opt.resume then
  die("--time-budget plans from a measured speed, so a resumed run could plan other limits; " ..
    "resume with the --train-limit and --test-limit the first run printed instead")
end
if opt["time-budget"] then
  local rs = rn.get_rng_state()
  local tn, vn = plan_budget(opt["time-budget"], math.min(train_x:size(1), opt["train-limit"] or math.huge),
    math.min(test_x:size(1), opt["test-limit"] or math.huge))
  -- a cut job takes few steps: recalibrate the BN statistics (unless told)
  if opt["bn-recalibrate"] == nil and tn < math.min(train_x:size(1), opt["train-limit"] or math.huge) then
    opt["bn-recalibrate"] = 20
  end
  opt["train-limit"], opt["test-limit"] = tn, vn
  collectgarbage()
  rn.set_rng_state(rs)
  rn.layers.reset_names() -- the real model gets the names it has without the measurement
end

local function limit(x, y, n)
  if n and n < x:size(1) then return x:narrow(1, 1, n):contiguous(), y:narrow(1, 1, n):contiguous() end
  return x, y
end
train_x, train_y = limit(train_x, train_y, opt["train-limit"])
test_x, test_y = limit(test_x, test_y, opt["test-limit"])
local channels = train_x:size(4)
local bs = opt["batch-size"]
local train = rn.data.Loader(train_x, train_y, { batch_size = bs, seed = opt.seed, dataset = dataset,
  out_size = { 32, 32 }, pad_crop = 4, flip = dataset == "cifar10", drop_last = train_x:size(1) > bs })
local test = rn.data.Loader(test_x, test_y, { batch_size = bs, dataset = dataset, out_size = { 32, 32 },
  augment = false, shuffle = false })
print(string.format("train %d images, test %d, batch %d, %d threads, %s%s", train_x:size(1), test_x:size(1), bs,
  rn.get_num_threads(), rn.mixed_precision.global_policy(),
  device_data and ", data uploaded to cuda once and augmented there" or ""))

-- ---- model and training ---------------------------------------------------------------

local model = create_resnet({ 32, 32, channels })
if opt.summary then model:summary({ flops = true }); return end
model:summary()
if opt.device == "cuda" then model:to("cuda") end

-- SGD momentum 0.9 as in the ResNet paper (the l2(1e-4) regularizers play the
-- role of weight decay), warmup then cosine decay over the planned steps
local steps = train:num_batches()
if opt["steps-per-epoch"] then steps = math.min(steps, opt["steps-per-epoch"]) end
local total = math.max(steps * opt.epochs, 2)
local warm = math.max(1, math.min(steps, total // 2))
local schedule = rn.schedules.warmup(rn.schedules.cosine(opt.lr, math.max(1, total - warm)), warm)
model:compile({ optimizer = rn.optim.SGD(model:parameters(), { lr = schedule, momentum = 0.9 }),
                loss = rn.losses.sparse_categorical_crossentropy(),
                metrics = { "accuracy" } })

local t0 = rn._clock()
local callbacks = {}
if (opt["bn-recalibrate"] or 0) > 0 then
  callbacks[1] = rn.fit.callbacks.BNRecalibration{ loader = train, batches = opt["bn-recalibrate"] }
  print(string.format("BN statistics recalibrated from %d training batches before each validation",
    opt["bn-recalibrate"]))
end
local history = model:fit(train, { epochs = opt.epochs, validation = test, save = opt.save,
  resume = opt.resume, log = opt.log, plot = opt.plot, steps_per_epoch = opt["steps-per-epoch"],
  device_data = device_data, distributed = DIST or nil, callbacks = callbacks })
local last = history[#history]
local names = dataset == "cifar10"
  and { "plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck" }
  or { "tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot" }
print(model:confusion_matrix(test, 10):format(names))
print(string.format("done: %d epochs, test accuracy %.2f%%, %.0f s", #history,
  100 * (last and last.val_accuracy or 0 / 0), rn._clock() - t0))
