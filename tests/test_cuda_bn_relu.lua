-- test_cuda_bn_relu.lua - issue 19's fused BN+ReLU on the GPU
-- (core/cuda/nn.c bn_relu_*: the ReLU folded into the affine pass, its
-- backward into the partials and affine passes, masked by the forward's
-- output): forward (training and inference) and the gradients of x, gamma
-- and beta against the CPU's fused kernels, float32 and float64, with
-- exact zeros in the ReLU's dead region. Skips without a device; the CPU
-- part checks the reference itself (fused = relu(batch_norm)) so the
-- comparison means something.
local T = require "t"
local rn = require "rn"

local function case(dev, dt, training)
  rn.manual_seed(31)
  local x = rn.randn({ 4, 5, 5, 24 }, { dtype = dt }):to(dev):requires_grad_()
  local g = (rn.rand({ 24 }, { dtype = dt }) + 0.5):to(dev):requires_grad_()
  local b = (rn.randn({ 24 }, { dtype = dt }) * 0.3):to(dev):requires_grad_()
  local rm, rv = rn.zeros({ 24 }, { dtype = dt }):to(dev), rn.ones({ 24 }, { dtype = dt }):to(dev)
  rn.manual_seed(32)
  local w = rn.randn({ 4, 5, 5, 24 }, { dtype = dt }):to(dev)
  local y = rn.batch_norm(x, g, b, rm, rv, { training = training, relu = true })
  ;(y * w):sum():backward()
  return { y = y:detach():to("cpu"), gx = x.grad and x.grad:to("cpu"), gg = g.grad and g.grad:to("cpu"),
    gb = b.grad and b.grad:to("cpu"), rm = rm:to("cpu"), rv = rv:to("cpu") }
end

T.test("cpu: fused batch_norm relu equals relu(batch_norm) (the reference of the GPU test)", function()
  local a = case("cpu", "float64", true)
  rn.manual_seed(31)
  local x = rn.randn({ 4, 5, 5, 24 }, { dtype = "float64" })
  local g = rn.rand({ 24 }, { dtype = "float64" }) + 0.5
  local b = rn.randn({ 24 }, { dtype = "float64" }) * 0.3
  local y = rn.batch_norm(x, g, b, rn.zeros({ 24 }, { dtype = "float64" }), rn.ones({ 24 }, { dtype = "float64" })):relu()
  T.near(a.y, y, 1e-12, 1e-12)
  T.truthy(a.y:eq(0):sum():item() > 100, "a dead region to mask")
end)

T.test("cuda: fused BN+ReLU forward and backward equal the CPU's (float32, float64)", function()
  if not rn.cuda.is_available() then T.skip("no CUDA device") end
  for _, dt in ipairs({ "float32", "float64" }) do
    local tol = dt == "float32" and 1e-5 or 1e-12
    for _, training in ipairs({ true, false }) do
      local c, gpu = case("cpu", dt, training), case("cuda", dt, training)
      local what = dt .. (training and " training" or " inference")
      T.near(gpu.y, c.y, tol, tol, what .. ": y")
      T.eq(gpu.y:eq(0):sum():item(), c.y:eq(0):sum():item(), what .. ": the same zeros")
      T.near(gpu.gx, c.gx, tol, tol, what .. ": grad x")
      if training then
        T.near(gpu.gg, c.gg, tol, tol, what .. ": grad gamma")
        T.near(gpu.gb, c.gb, tol, tol, what .. ": grad beta")
        T.near(gpu.rm, c.rm, tol, tol, what .. ": running mean")
        T.near(gpu.rv, c.rv, tol, tol, what .. ": running var")
      end
    end
  end
end)
