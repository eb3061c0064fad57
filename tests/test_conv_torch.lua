-- test_conv_torch.lua - conv2d, max/avg pooling and global average pooling
-- against PyTorch: tests/fixtures/conv_fixtures.lua (written by
-- tests/fixtures/gen_conv.py) holds inputs, outputs and gradients in NHWC/HWIO.
-- Forward runs in float32, backward with the stored output gradient gy.
local T = require "t"
local rn = require "rn"

local FIXTURES = "tests/fixtures/conv_fixtures.lua"

local function load_fixtures()
  local chunk, err = loadfile(FIXTURES, "t", {})
  if not chunk then error("cannot load " .. FIXTURES .. ": " .. tostring(err)) end
  return chunk()
end

local function tensor(f, grad)
  local t = rn.tensor(f.data, {dtype = "float32"}):reshape(f.shape)
  if grad then t:requires_grad_() end
  return t
end

local cases = load_fixtures()

T.test("torch fixtures: the file loads and covers every op", function()
  local ops = {}
  for _, c in ipairs(cases) do ops[c.op] = (ops[c.op] or 0) + 1 end
  T.truthy((ops.conv2d or 0) >= 8, "conv2d cases")
  local grouped = 0
  for _, c in ipairs(cases) do
    if c.op == "conv2d" and c.opts.groups and c.opts.groups > 1 then grouped = grouped + 1 end
  end
  T.truthy(grouped >= 3, "grouped and depthwise conv2d cases: " .. grouped)
  T.truthy((ops.max_pool2d or 0) >= 2 and (ops.avg_pool2d or 0) >= 2, "pool cases")
  T.truthy((ops.global_avg_pool2d or 0) >= 1, "global pool case")
end)

-- every float32 case on both CPU convolution paths: oneDNN and im2col
for _, impl in ipairs({"auto", "im2col"}) do
for _, c in ipairs(cases) do
  T.test("torch (" .. impl .. "): " .. c.name, function()
    rn.cpu.set_conv_impl(impl)
    local x = tensor(c.x, true)
    local w = c.w and tensor(c.w, true)
    local b = c.b and tensor(c.b, true)
    local y
    if c.op == "conv2d" then y = rn.conv2d(x, w, b, c.opts)
    elseif c.op == "max_pool2d" then y = rn.max_pool2d(x, c.k, c.opts)
    elseif c.op == "avg_pool2d" then y = rn.avg_pool2d(x, c.k, c.opts)
    elseif c.op == "global_avg_pool2d" then y = rn.global_avg_pool2d(x)
    else error("unknown op " .. tostring(c.op)) end
    T.eq(y.dtype, "float32")
    T.near(y, tensor(c.y), 1e-5, 1e-4, "forward")
    y:backward(tensor(c.gy))
    T.near(x.grad, tensor(c.gx), 1e-4, 1e-3, "grad x")
    if w then T.near(w.grad, tensor(c.gw), 1e-4, 1e-3, "grad w") end
    if b then T.near(b.grad, tensor(c.gb), 1e-4, 1e-3, "grad b") end
    rn.cpu.set_conv_impl("auto")
  end)
end
end
