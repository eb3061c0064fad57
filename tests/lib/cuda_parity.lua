-- cuda_parity.lua - the CPU-vs-GPU parity harness of tests/test_cuda.lua and
-- tests/test_cuda_ops2.lua: the device under test, the per-op tolerance
-- table, the skips without a device, and parity(), which runs a function on
-- CPU and device copies of the same inputs and compares outputs and
-- gradients.
--   local P = require "cuda_parity"
--   P.need_gpu(); P.use_tol("conv"); P.parity(name, fn, {x, w}, {grad = true})
-- Environment: RN_CUDA_TEST_ON_CPU=1 makes "cpu" the device under test (a
-- check of the tests themselves on a machine without a GPU); RN_TEST_LIGHT=1
-- (sanitizers) asks the tests for smaller inputs (P.LIGHT).
local T = require "t"
local rn = require "rn"

local P = {}
P.ON_CPU = os.getenv("RN_CUDA_TEST_ON_CPU") ~= nil
P.LIGHT = os.getenv("RN_TEST_LIGHT") ~= nil
P.DEV = P.ON_CPU and "cpu" or "cuda"
P.AVAIL = rn.cuda.is_available()
P.WHY = rn.cuda.why_unavailable()

-- CPU-vs-GPU parity tolerances, one row per op family: {atol, rtol} for
-- float32 and for float64 inputs. Elementwise ops and pooling differ only by
-- the device's libm (expf, tanhf, powf: a few ulp) and are held to ~100 ulp;
-- reductions, softmax, losses and batch norm sum in another order (error
-- grows with the reduced length); gemm and convolution use other
-- algorithms (cuBLAS/cuDNN's tiling, FFT or Winograd vs oneDNN's), with TF32
-- off. "long_sum" is a sum of ~1M float32 values; "model" a whole training
-- step or model. A test picks its row with use_tol(name) (need_gpu() resets
-- it to "default", the old 1e-3 everywhere); parity(..., {tol = x}) and
-- near(..., x) still accept a number for a one-off.
P.TOL = {
  --              float32 {atol, rtol}   float64 {atol, rtol}
  default     = { f32 = { 1e-3, 1e-3 }, f64 = { 1e-9, 1e-9 } },
  elementwise = { f32 = { 1e-6, 1e-5 }, f64 = { 1e-14, 1e-12 } },
  pool        = { f32 = { 1e-6, 1e-5 }, f64 = { 1e-14, 1e-12 } },
  reduce      = { f32 = { 1e-4, 1e-4 }, f64 = { 1e-12, 1e-10 } },
  long_sum    = { f32 = { 1e-2, 1e-2 }, f64 = { 1e-9, 1e-9 } },
  softmax     = { f32 = { 1e-6, 1e-4 }, f64 = { 1e-14, 1e-11 } },
  loss        = { f32 = { 1e-5, 1e-4 }, f64 = { 1e-12, 1e-10 } },
  gemm        = { f32 = { 1e-4, 1e-4 }, f64 = { 1e-11, 1e-10 } },
  gemm_long_k = { f32 = { 2e-3, 2e-3 }, f64 = { 1e-9, 1e-9 } }, -- K up to 513
  batch_norm  = { f32 = { 1e-4, 1e-4 }, f64 = { 1e-11, 1e-10 } },
  conv        = { f32 = { 1e-3, 1e-3 }, f64 = { 1e-9, 1e-9 } },
  model       = { f32 = { 2e-3, 2e-3 }, f64 = { 1e-9, 1e-9 } },
}
local TOL = P.TOL
local KIND = "default"

function P.use_tol(kind)
  assert(TOL[kind], "no tolerance row " .. tostring(kind))
  KIND = kind
end

-- skips the test without a device (never with RN_CUDA_TEST_ON_CPU); resets
-- the tolerance row to "default"
function P.need_gpu()
  KIND = "default"
  if P.ON_CPU then return end
  if not P.AVAIL then T.skip("no CUDA device: " .. tostring(P.WHY)) end
end

function P.need_real_gpu(what)
  if P.ON_CPU then T.skip(what .. ": needs a real device (RN_CUDA_TEST_ON_CPU)") end
  P.need_gpu()
end

function P.to_dev(x) return x:to(P.DEV) end

-- compares within tol: a number (atol = rtol), a row name of TOL, or nil
-- (the row the test chose with use_tol)
function P.near(got, want, msg, tol)
  if type(tol) == "number" then T.near(got, want, tol, tol, msg); return end
  local row = TOL[tol or KIND]
  local t = want.dtype == "float64" and row.f64 or row.f32
  T.near(got, want, t[1], t[2], string.format("%s [tolerance %s]", msg, tol or KIND))
end
local near, to_dev = P.near, P.to_dev

-- Runs fn on CPU leaves and on device leaves made from the same values and
-- compares the outputs; with grad, also the gradients of sum(y * w) for a
-- random w with respect to every float input.
function P.parity(name, fn, inputs, opts)
  opts = opts or {}
  local ci, gi = {}, {}
  for i, x in ipairs(inputs) do
    ci[i] = x:detach():clone()
    gi[i] = to_dev(x):detach()
    if opts.grad and (x.dtype == "float32" or x.dtype == "float64") then
      ci[i]:requires_grad_()
      gi[i]:requires_grad_()
    end
  end
  local yc = fn(table.unpack(ci))
  local yg = fn(table.unpack(gi))
  T.eq(yg.device, P.DEV, name .. ": output device")
  T.eq(yg.dtype, yc.dtype, name .. ": output dtype")
  near(yg, yc, name, opts.tol)
  if not opts.grad then return end
  local w = rn.randn(yc:size(), {dtype = yc.dtype})
  local lc, lg = (yc * w):sum(), (yg * to_dev(w)):sum()
  lc:backward()
  lg:backward()
  for i = 1, #inputs do
    if ci[i].requires_grad then
      T.truthy(gi[i].grad, name .. ": input " .. i .. " has a gradient")
      T.eq(gi[i].grad.device, P.DEV, name .. ": gradient device")
      near(gi[i].grad, ci[i].grad, name .. ": gradient of input " .. i, opts.tol)
    end
  end
end

-- max |got - want| / max |want| (got moved to the CPU, both compared in float32)
function P.relerr(got, want)
  local w = want:float()
  local d = (got:cpu():float() - w):abs():max():item()
  return d / math.max(w:abs():max():item(), 1e-30)
end

return P
