-- resnet_cifar.lua - the seed article's ResNet (3 stages x 7 pre-activation
-- residual blocks, 16/32/64 channels, 3x3 conv shortcuts; 686,474 params)
-- written as the Keras original reads, plus a training setup.
--
--   ./rnlua scripts/resnet_cifar.lua                 summary, then a short run
--   ./rnlua scripts/resnet_cifar.lua --summary       summary only (with FLOPs)
--   ./rnlua scripts/resnet_cifar.lua --steps 20 --batch 32 --threads 2
--
-- Training data: rn.data.cifar10 when the data pipeline provides it;
-- until then a synthetic learnable set (class k = images whose mean is
-- shifted by k), enough to see the loss go down. Loaded with loadfile from
-- another script (arg[0] not this file), it only returns
-- {residual_block =, create_resnet =}.
local rn = require "rn"
-- temporary, until lua/rn/init.lua exposes these:
rn.layers = rn.layers or require "rn.layers"
rn.regularizers = rn.regularizers or require "rn.regularizers"
rn.Model = rn.Model or require("rn.model").Model
rn.optim = rn.optim or require "rn.optim"
rn.losses = rn.losses or require "rn.losses"
rn.schedules = rn.schedules or require "rn.schedules"

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

local opt = { steps = 10, batch = 32, threads = 2, lr = 0.1, seed = 1, summary = false, data = "synthetic" }
local i = 1
while arg[i] do
  local a = arg[i]
  local key = a:match("^%-%-(.+)$")
  if a == "--summary" then
    opt.summary = true
  elseif key and key ~= "summary" and opt[key] ~= nil and arg[i + 1] then
    opt[key] = key == "data" and arg[i + 1] or tonumber(arg[i + 1])
    if opt[key] == nil then error("option " .. a .. " needs a number") end
    i = i + 1
  else
    io.stderr:write("usage: rnlua scripts/resnet_cifar.lua [--summary] [--steps N] [--batch B] "
      .. "[--threads T] [--lr LR] [--seed S] [--data synthetic|fashion-mnist|CIFAR-10 path]\n")
    os.exit(2)
  end
  i = i + 1
end
local batch = math.tointeger(opt.batch)

rn.set_num_threads(math.tointeger(opt.threads))
rn.manual_seed(math.tointeger(opt.seed))

-- data: batches of (B, 32, 32, C) float32 images and (B) int64 labels
local data = rn.data or (package.searchpath("rn.data", package.path) and require "rn.data")
local images, labels
if opt.data == "fashion-mnist" and rn.read_idx then
  local dir = "/usr/share/datasets/fashion-mnist"
  images = rn.read_idx(dir .. "/train-images-idx3-ubyte.gz")
  images = images:reshape(images:size(1), 28, 28, 1)
  labels = rn.read_idx(dir .. "/train-labels-idx1-ubyte.gz", {classes = 10})
elseif opt.data ~= "synthetic" and opt.data ~= "fashion-mnist" and rn.read_cifar10 then
  images, labels = rn.read_cifar10(opt.data)
end

local next_batch, channels
if images and data and data.Loader then
  channels = images:size(4)
  local loader = data.Loader(images, labels, {batch_size = batch, seed = math.tointeger(opt.seed),
                                              out_size = {32, 32}, drop_last = true})
  local epoch, iter = 0, nil
  next_batch = function()
    while true do
      if iter then
        local x, y = iter()
        if x then return x, y end
      end
      epoch = epoch + 1
      iter = loader:epoch(epoch)
    end
  end
  print(string.format("data: %s, %d images", opt.data, images:size(1)))
else
  -- synthetic: 10 classes, each image = noise + a class-dependent mean shift
  channels = 3
  next_batch = function()
    local y = (rn.rand({batch}) * 10):long():minimum(9)
    local shift = (y:float() / 9 - 0.5):reshape(batch, 1, 1, 1)
    return rn.randn({batch, 32, 32, 3}) * 0.5 + shift, y
  end
  print("data: synthetic (--data fashion-mnist or a CIFAR-10 path reads real images)")
end

local model = create_resnet({32, 32, channels})
model:summary({flops = opt.summary})
if opt.summary then return end

-- the paper's recipe: SGD momentum 0.9 (the l2(1e-4) regularizers play the
-- role of weight decay), lr 0.1, /10 at 32k and 48k iterations
local optimizer = rn.optim.SGD(model:parameters(), {
  lr = rn.schedules.multistep(opt.lr, {32000, 48000}), momentum = 0.9})
model:compile({optimizer = optimizer,
               loss = rn.losses.sparse_categorical_crossentropy(),
               metrics = {"accuracy"}})

local function now()
  local p = io.popen("date +%s.%N")
  local t = p:read("n")
  p:close()
  return t
end

for step = 1, math.tointeger(opt.steps) do
  local x, y = next_batch()
  local t0 = now()
  local logs = model:train_step(x, y)
  print(string.format("step %3d  loss %.4f  accuracy %.3f  lr %.3g  %.2f s",
    step, logs.loss, logs.accuracy, optimizer.param_groups[1].last_lr, now() - t0))
end
