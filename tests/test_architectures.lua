-- test_architectures.lua - the example architectures of
-- scripts/architectures.lua, written with the public layer API: their
-- parameter counts equal the reference implementations' (each source named
-- below), and small variants train a few steps on Fashion-MNIST with a
-- falling loss.
local T = require "t"
local rn = require "rn"
local fmnist = require "fmnist"
local A = dofile("scripts/architectures.lua")

local function counts(m)
  local s = m:summary({ print = false })
  return s:match("Total params: ([%d,]+)"), s:match("Trainable params: ([%d,]+)")
end

T.test("architectures: parameter counts equal the references", function()
  rn.layers.reset_names()
  -- keras.applications.MobileNetV2() (224x224x3, 1000 classes): model.summary()
  -- "Total params: 3,538,984", trainable 3,504,872 (Keras counts BN moving stats)
  local total, trainable = counts(A.mobilenet_v2())
  T.eq({ total, trainable }, { "3,538,984", "3,504,872" }, "MobileNetV2")
  -- torchvision.models.resnext50_32x4d(): sum(p.numel() for p in parameters())
  -- = 25,028,904 (torchvision keeps BN moving stats as buffers: our trainable count)
  total, trainable = counts(A.resnext())
  T.eq(trainable, "25,028,904", "ResNeXt-50 32x4d")
  -- keras.applications.DenseNet121(): "Total params: 8,062,504"
  total = counts(A.densenet())
  T.eq(total, "8,062,504", "DenseNet-121")
  -- keras.io examples, "Image segmentation with a U-Net-like architecture"
  -- (img_size 160x160, 3 classes): "Total params: 2,058,979", trainable 2,055,203
  total, trainable = counts(A.unet())
  T.eq({ total, trainable }, { "2,058,979", "2,055,203" }, "U-Net")
  -- SE-ResNet (no published exact count for this small variant): the count
  -- from the layer shapes, written out: stem conv 3*3*3*16 + BN 4*16; per
  -- block two convs + 2 BN + SE (c -> c/8 -> c with biases) + 1x1 shortcut
  -- where the width or stride changes; Dense 64 -> 10
  local function se(c) return c * (c // 8) + c // 8 + (c // 8) * c + c end
  local function block(cin, c, short)
    return 9 * cin * c + 4 * c + 9 * c * c + 4 * c + se(c) + (short and (cin * c + 4 * c) or 0)
  end
  local want = 27 * 16 + 64 + block(16, 16) + block(16, 16) + block(16, 32, true) + block(32, 32)
    + block(32, 64, true) + block(64, 64) + 64 * 10 + 10
  total = counts(A.se_resnet())
  T.eq(total, (tostring(want):reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")), "SE-ResNet")
end)

-- small variants on 32x32x1 Fashion-MNIST: a few Adam steps lower the loss
local SMALL = {
  { "mobilenet_v2", function() return A.mobilenet_v2{ input_shape = { 32, 32, 1 }, classes = 10, alpha = 0.35 } end },
  { "resnext", logits = true, function()
    return A.resnext{ input_shape = { 32, 32, 1 }, classes = 10, blocks = { 1, 1 }, groups = 4, width_per_group = 4,
      planes = { 16, 32 }, stem = 16, stem_kernel = 3, stem_stride = 1, stem_pool = false }
  end },
  { "se_resnet", function() return A.se_resnet{ input_shape = { 32, 32, 1 }, blocks = { 1, 1, 1 } } end },
  { "densenet", function() return A.densenet{ input_shape = { 32, 32, 1 }, classes = 10, blocks = { 2, 2 }, growth = 8,
    stem = "small" } end },
}

for _, c in ipairs(SMALL) do
  T.test("architectures: a small " .. c[1] .. " trains on Fashion-MNIST (the loss falls)", function()
    if not fmnist.available() then T.skip("Fashion-MNIST not found in " .. fmnist.dir) end
    rn.manual_seed(5)
    local x, y = fmnist.load(64, { pad = 2 })
    local m = c[2]()
    -- ResNeXt ends in logits, as torchvision; the others in a softmax, as Keras
    local loss_fn = rn.losses.sparse_categorical_crossentropy{ from_logits = c.logits }
    m:compile({ optimizer = rn.optim.Adam{ lr = 3e-3 }, loss = loss_fn })
    local function probe() return rn.no_grad(function() return loss_fn(m(x, { training = true }), y):item() end) end
    local before = probe()
    for _ = 1, 8 do
      for s = 1, 4 do m:train_step(x:narrow(1, (s - 1) * 16 + 1, 16), y:narrow(1, (s - 1) * 16 + 1, 16)) end
    end
    local after = probe()
    T.truthy(after == after and after < before * 0.8, string.format("%s: loss %.4f -> %.4f", c[1], before, after))
  end)
end

T.test("architectures: the U-Net segments per pixel with an ignored class", function()
  rn.manual_seed(6)
  local m = A.unet{ input_shape = { 32, 32, 1 }, classes = 3, down = { 16, 32 }, up = { 32, 16, 8 }, stem = 8 }
  T.eq(m.outputs[1].shape, { -1, 32, 32, 3 })
  -- labels: 3 classes by intensity bands of a smooth image, border pixels ignored (255)
  local x = rn.rand({ 8, 32, 32, 1 })
  local lab = (x * 2.999):long():reshape({ 8, 32, 32 })        -- truncation: 0, 1 or 2
  lab:narrow(2, 1, 1):fill_(255)
  local loss = rn.losses.sparse_categorical_crossentropy{ ignore_class = 255 }
  m:compile({ optimizer = rn.optim.Adam{ lr = 3e-3 }, loss = loss })
  local function probe() return rn.no_grad(function() return loss(m(x, { training = true }), lab):item() end) end
  local before = probe()
  for _ = 1, 15 do m:train_step(x, lab) end
  local after = probe()
  T.truthy(after < before * 0.8, string.format("loss %.4f -> %.4f", before, after))
end)
