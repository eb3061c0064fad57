-- architectures.lua - today's vision architectures written with the public
-- layer API, each the way its reference reads (doc/architectures.md):
--   mobilenet_v2{input_shape, classes, alpha}       Keras's MobileNetV2
--   resnext{input_shape, classes, depth, groups, width_per_group}
--                                                   torchvision's ResNeXt (32x4d)
--   se_resnet{input_shape, classes, blocks, widths} ResNet with squeeze-and-excitation
--   densenet{input_shape, classes, blocks, growth}  Keras's DenseNet (BC: bottleneck + compression 0.5)
--   unet{input_shape, classes}                      the Keras example's U-Net-like segmenter
--   vit{input_shape, classes, patch, dim, depth, heads, mlp}  a Vision Transformer
-- Loaded with `local A = dofile("scripts/architectures.lua")`; run as a script
-- (`rnlua scripts/architectures.lua NAME`) it prints NAME's summary.
local rn = require "rn"
local L = rn.layers

local A = {}

local function conv_bn(x, filters, k, o)
  o = o or {}
  x = L.Conv2D(filters, k, { strides = o.strides or 1, padding = o.padding or "same", use_bias = false,
    groups = o.groups })(x)
  x = L.BatchNormalization({ epsilon = o.epsilon or 1e-3, momentum = o.momentum or 0.99 })(x)
  if o.act ~= false then x = (o.act or L.ReLU())(x) end
  return x
end

-- ---- MobileNetV2 (Keras applications: keras/src/applications/mobilenet_v2.py) ----------

local function make_divisible(v, divisor)
  local new_v = math.max(divisor, (v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v then new_v = new_v + divisor end
  return math.tointeger(new_v)
end

local function relu6() return L.ReLU({ max_value = 6 }) end

local function inverted_res_block(x, expansion, stride, alpha, filters, block_id)
  local in_channels = x.shape[4]
  local pointwise = make_divisible(math.floor(filters * alpha), 8)
  local inputs = x
  local bn = { epsilon = 1e-3, momentum = 0.999 }
  if block_id > 0 then -- expand
    x = L.Conv2D(expansion * in_channels, 1, { use_bias = false })(x)
    x = L.BatchNormalization(bn)(x)
    x = relu6()(x)
  end
  -- depthwise ("same" equals Keras's correct_pad + "valid" on even sizes)
  x = L.DepthwiseConv2D(3, { strides = stride, use_bias = false, padding = "same" })(x)
  x = L.BatchNormalization(bn)(x)
  x = relu6()(x)
  -- project
  x = L.Conv2D(pointwise, 1, { use_bias = false })(x)
  x = L.BatchNormalization(bn)(x)
  if in_channels == pointwise and stride == 1 then x = L.Add()({ inputs, x }) end
  return x
end

function A.mobilenet_v2(o)
  o = o or {}
  local alpha, classes = o.alpha or 1.0, o.classes or 1000
  local inputs = L.Input(o.input_shape or { 224, 224, 3 })
  local bn = { epsilon = 1e-3, momentum = 0.999 }
  local x = L.Conv2D(make_divisible(32 * alpha, 8), 3, { strides = 2, padding = "same", use_bias = false })(inputs)
  x = L.BatchNormalization(bn)(x)
  x = relu6()(x)
  -- (filters, stride, expansion) per block, as the paper's table 2
  local spec = { { 16, 1, 1 }, { 24, 2, 6 }, { 24, 1, 6 }, { 32, 2, 6 }, { 32, 1, 6 }, { 32, 1, 6 },
    { 64, 2, 6 }, { 64, 1, 6 }, { 64, 1, 6 }, { 64, 1, 6 }, { 96, 1, 6 }, { 96, 1, 6 }, { 96, 1, 6 },
    { 160, 2, 6 }, { 160, 1, 6 }, { 160, 1, 6 }, { 320, 1, 6 } }
  for id, s in ipairs(spec) do x = inverted_res_block(x, s[3], s[2], alpha, s[1], id - 1) end
  local last = alpha > 1.0 and make_divisible(1280 * alpha, 8) or 1280
  x = L.Conv2D(last, 1, { use_bias = false })(x)
  x = L.BatchNormalization(bn)(x)
  x = relu6()(x)
  x = L.GlobalAveragePooling2D()(x)
  x = L.Dense(classes, { activation = "softmax" })(x)
  return rn.Model(inputs, x)
end

-- ---- ResNeXt (torchvision.models.resnet: Bottleneck with groups) ------------------------

local function bottleneck(x, planes, stride, groups, width_per_group)
  local width = planes * width_per_group // 64 * groups
  local out_ch = planes * 4
  local identity = x
  local bn = { epsilon = 1e-5, momentum = 0.9 }
  local y = conv_bn(x, width, 1, bn)
  y = conv_bn(y, width, 3, { strides = stride, groups = groups, epsilon = 1e-5, momentum = 0.9 })
  y = conv_bn(y, out_ch, 1, { act = false, epsilon = 1e-5, momentum = 0.9 })
  if stride ~= 1 or x.shape[4] ~= out_ch then
    identity = conv_bn(x, out_ch, 1, { strides = stride, act = false, epsilon = 1e-5, momentum = 0.9 })
  end
  return L.ReLU()(L.Add()({ y, identity }))
end

function A.resnext(o)
  o = o or {}
  local layers_per_stage = o.blocks or { 3, 4, 6, 3 }
  local groups, wpg = o.groups or 32, o.width_per_group or 4
  local inputs = L.Input(o.input_shape or { 224, 224, 3 })
  local stem = o.stem or 64
  local x = conv_bn(inputs, stem, o.stem_kernel or 7, { strides = o.stem_stride or 2, epsilon = 1e-5, momentum = 0.9 })
  if o.stem_pool ~= false then x = L.MaxPooling2D(3, { strides = 2, padding = "same" })(x) end
  local planes = o.planes or { 64, 128, 256, 512 }
  for s, n in ipairs(layers_per_stage) do
    for b = 1, n do x = bottleneck(x, planes[s], (b == 1 and s > 1) and 2 or 1, groups, wpg) end
  end
  x = L.GlobalAveragePooling2D()(x)
  x = L.Dense(o.classes or 1000)(x) -- logits, as torchvision
  return rn.Model(inputs, x)
end

-- ---- SE-ResNet (Hu et al.: a squeeze-and-excitation gate on each basic block) ----------

local function se_gate(x, ratio)
  local c = x.shape[4]
  local s = L.GlobalAveragePooling2D()(x)
  s = L.Dense(math.max(1, c // ratio), { activation = "relu" })(s)
  s = L.Dense(c, { activation = "sigmoid" })(s)
  s = L.Reshape({ 1, 1, c })(s)
  return L.Multiply()({ x, s })
end

function A.se_resnet(o)
  o = o or {}
  local widths, blocks, ratio = o.widths or { 16, 32, 64 }, o.blocks or { 2, 2, 2 }, o.ratio or 8
  local inputs = L.Input(o.input_shape or { 32, 32, 3 })
  local x = conv_bn(inputs, widths[1], 3)
  for s, n in ipairs(blocks) do
    for b = 1, n do
      local stride = (b == 1 and s > 1) and 2 or 1
      local y = conv_bn(x, widths[s], 3, { strides = stride })
      y = conv_bn(y, widths[s], 3, { act = false })
      y = se_gate(y, ratio)
      local short = x
      if stride ~= 1 or x.shape[4] ~= widths[s] then short = conv_bn(x, widths[s], 1, { strides = stride, act = false }) end
      x = L.ReLU()(L.Add()({ y, short }))
    end
  end
  x = L.GlobalAveragePooling2D()(x)
  x = L.Dense(o.classes or 10, { activation = "softmax" })(x)
  return rn.Model(inputs, x)
end

-- ---- DenseNet (Keras applications: keras/src/applications/densenet.py) -----------------

local function dense_bn(x) return L.BatchNormalization({ epsilon = 1.001e-5 })(x) end

local function conv_block(x, growth)
  local y = L.ReLU()(dense_bn(x))
  y = L.Conv2D(4 * growth, 1, { use_bias = false })(y)
  y = L.ReLU()(dense_bn(y))
  y = L.Conv2D(growth, 3, { padding = "same", use_bias = false })(y)
  return L.Concatenate()({ x, y })
end

local function transition(x, reduction)
  x = L.ReLU()(dense_bn(x))
  x = L.Conv2D(math.floor(x.shape[4] * reduction), 1, { use_bias = false })(x)
  return L.AveragePooling2D(2, { strides = 2 })(x)
end

function A.densenet(o)
  o = o or {}
  local blocks, growth = o.blocks or { 6, 12, 24, 16 }, o.growth or 32
  local inputs = L.Input(o.input_shape or { 224, 224, 3 })
  local x = inputs
  if o.stem ~= "small" then
    x = L.ZeroPadding2D({ { 3, 3 }, { 3, 3 } })(x)
    x = L.Conv2D(64, 7, { strides = 2, use_bias = false })(x)
    x = L.ReLU()(dense_bn(x))
    x = L.ZeroPadding2D({ { 1, 1 }, { 1, 1 } })(x)
    x = L.MaxPooling2D(3, { strides = 2 })(x)
  else
    x = L.Conv2D(2 * growth, 3, { padding = "same", use_bias = false })(x)
  end
  for i, n in ipairs(blocks) do
    for _ = 1, n do x = conv_block(x, growth) end
    if i < #blocks then x = transition(x, 0.5) end
  end
  x = L.ReLU()(dense_bn(x))
  x = L.GlobalAveragePooling2D()(x)
  x = L.Dense(o.classes or 1000, { activation = "softmax" })(x)
  return rn.Model(inputs, x)
end

-- ---- U-Net-like segmenter (keras.io/examples/vision/oxford_pets_image_segmentation) -----

function A.unet(o)
  o = o or {}
  local inputs = L.Input(o.input_shape or { 160, 160, 3 })
  local down, up = o.down or { 64, 128, 256 }, o.up or { 256, 128, 64, 32 }
  local x = L.Conv2D(o.stem or 32, 3, { strides = 2, padding = "same" })(inputs)
  x = L.BatchNormalization()(x)
  x = L.Activation("relu")(x)
  local previous = x
  for _, f in ipairs(down) do
    x = L.Activation("relu")(x)
    x = L.SeparableConv2D(f, 3, { padding = "same" })(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.SeparableConv2D(f, 3, { padding = "same" })(x)
    x = L.BatchNormalization()(x)
    x = L.MaxPooling2D(3, { strides = 2, padding = "same" })(x)
    local residual = L.Conv2D(f, 1, { strides = 2, padding = "same" })(previous)
    x = L.Add()({ x, residual })
    previous = x
  end
  for _, f in ipairs(up) do
    x = L.Activation("relu")(x)
    x = L.Conv2DTranspose(f, 3, { padding = "same" })(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.Conv2DTranspose(f, 3, { padding = "same" })(x)
    x = L.BatchNormalization()(x)
    x = L.UpSampling2D(2)(x)
    local residual = L.UpSampling2D(2)(previous)
    residual = L.Conv2D(f, 1, { padding = "same" })(residual)
    x = L.Add()({ x, residual })
    previous = x
  end
  local outputs = L.Conv2D(o.classes or 3, 3, { activation = "softmax", padding = "same" })(x)
  return rn.Model(inputs, outputs)
end

-- ---- Vision Transformer (Dosovitskiy et al.; timm's vit_tiny_patch16_224 sizes) ---------

-- the learned class token, prepended to the patch sequence: (N,T,D) -> (N,T+1,D)
local ClassToken = L.Layer:extend("ClassToken")
function ClassToken:build(s) self.token = self:add_weight("cls", { 1, 1, s[3] }, { initializer = "zeros" }) end
function ClassToken:compute_output_shape(s) return L.shape({ s[1], s[2] + 1, s[3] }) end
function ClassToken:call(x)
  return rn.concat({ self.token:expand({ x:size(1), 1, x:size(3) }), x }, 2)
end

-- a learned position embedding added to the sequence (T, D)
local AddPosition = L.Layer:extend("AddPosition")
function AddPosition:build(s)
  self.pos = self:add_weight("pos_embedding", { s[2], s[3] }, { initializer = rn.initializers.truncated_normal{ stddev = 0.02 } })
end
function AddPosition:compute_output_shape(s) return L.shape(s) end
function AddPosition:call(x) return x + self.pos end

function A.vit(o)
  o = o or {}
  local dim, depth, heads, mlp = o.dim or 192, o.depth or 12, o.heads or 3, o.mlp or 768
  local patch = o.patch or 16
  local inputs = L.Input(o.input_shape or { 224, 224, 3 })
  local x = L.Conv2D(dim, patch, { strides = patch })(inputs)       -- patch embedding
  local n = x.shape[2] * x.shape[3]
  x = L.Reshape({ n, dim })(x)
  x = ClassToken()(x)
  x = AddPosition()(x)
  for _ = 1, depth do
    local y = L.LayerNormalization({ epsilon = 1e-6 })(x)
    y = L.MultiHeadAttention(heads, dim // heads)(y)
    x = L.Add()({ x, y })
    y = L.LayerNormalization({ epsilon = 1e-6 })(x)
    y = L.Dense(mlp, { activation = "gelu" })(y)
    y = L.Dense(dim)(y)
    x = L.Add()({ x, y })
  end
  x = L.LayerNormalization({ epsilon = 1e-6 })(x)
  x = L.Lambda(function(t) return t:select(2, 1) end)(x)         -- the class token
  x = L.Dense(o.classes or 1000)(x)                               -- logits, as timm
  return rn.Model(inputs, x)
end

if arg and arg[0] and arg[0]:match("architectures%.lua$") then
  local name = arg[1]
  if not A[name or ""] then
    local names = {}
    for k in pairs(A) do names[#names + 1] = k end
    table.sort(names)
    io.stderr:write("usage: rnlua scripts/architectures.lua NAME (" .. table.concat(names, ", ") .. ")\n")
    os.exit(2)
  end
  A[name]():summary()
end

return A
