-- rn: the rnlua package. `local rn = require "rn"` returns this table and
-- defines no globals. The C core (rn.core) supplies tensors and ops; this
-- file adds what is easier said in Lua (no_grad, helpers).
local core = require "rn.core"

local rn = {}
for k, v in pairs(core) do rn[k] = v end
-- Submodules below `require "rn"` themselves: hand them this table now
-- (they read its fields when called, after this file has finished).
package.loaded.rn = rn

--- Runs fn(...) with gradient recording off; restores the mode even if fn
--- raises. Returns fn's results.
-- Restores the grad mode before anything else can fail (no table is built).
local function finish(prev, ok, ...)
  core.set_grad_enabled(prev)
  if not ok then error((...), 0) end
  return ...
end

function rn.no_grad(fn, ...)
  if type(fn) ~= "function" then
    error("no_grad: expected a function, got " .. type(fn), 2)
  end
  return finish(core.set_grad_enabled(false), pcall(fn, ...))
end

--- rn.enable_grad(fn, ...): the opposite of no_grad.
function rn.enable_grad(fn, ...)
  if type(fn) ~= "function" then
    error("enable_grad: expected a function, got " .. type(fn), 2)
  end
  return finish(core.set_grad_enabled(true), pcall(fn, ...))
end

local function no_cuda(name)
  return function()
    error("rn.cuda." .. name .. ": this rnlua was built without CUDA", 2)
  end
end

rn.cuda = {
  is_available = function() return (core.cuda_is_available()) end,
  why_unavailable = function()
    local ok, why = core.cuda_is_available()
    return (not ok) and why or nil
  end,
  -- usable() -> true, "<device name>" when a device is there and cuDNN loads
  -- (tried on a 1x1 convolution), else false and the reason
  usable = function()
    local ok, why = core.cuda_is_available()
    if not ok then return false, why end
    local fine, err = pcall(function()
      local x = rn.zeros({ 1, 1, 1, 1 }):cuda()
      return rn.conv2d(x, x, nil, { padding = "same" })
    end)
    if not fine then return false, "a GPU is present but its convolutions (cuDNN) fail: " .. tostring(err) end
    return true, core.cuda_device_name()
  end,
  memory_stats = core.cuda_memory_stats or no_cuda("memory_stats"),
  empty_cache = core.cuda_empty_cache or no_cuda("empty_cache"),
  device_name = core.cuda_device_name or no_cuda("device_name"),
  synchronize = core.cuda_synchronize or no_cuda("synchronize"),
  -- set_conv_algo{fwd=, bwd_data=, bwd_filter=}, conv_algo(): cuDNN algorithm
  -- overrides, checked against deterministic mode (core/determinism.h)
  set_conv_algo = core.cuda_set_conv_algo or no_cuda("set_conv_algo"),
  conv_algo = core.cuda_conv_algo or no_cuda("conv_algo"),
}

--- rn.cpu: what the CPU has and how the CPU backend runs.
---   features()        {avx2=, avx512f=, avx512_bf16=, amx_bf16=, onednn=, ...}:
---                     what the code may use, i.e. the CPU's features limited by
---                     the ISA cap ONEDNN_MAX_CPU_ISA (e.g. AVX2); also isa
---                     (oneDNN's effective ISA, "avx2", "avx512_core_bf16", ...),
---                     isa_cap (the cap's value, nil when none), model (the
---                     CPU's name), blas_core (OpenBLAS's kernels) and hw (the
---                     CPU's own flags, before the cap)
---   conv_kernels()    the kernel each convolution direction ran last:
---                     {forward=, backward_data=, backward_filter=}, oneDNN's
---                     implementation name ("brg_conv_fwd:avx2",
---                     "jit_wino_4x3:avx512_core", ...) or "im2col+openblas (why)"
---   conv_kernel_stats([reset])  {{direction=, kernel=, calls=}, ...}: the
---                     kernels run since the last reset, in first-use order
---   conv_impl()       "auto", "onednn", "winograd", "onednn-direct" or
---                     "im2col" (what float32 convolutions use)
---   set_conv_impl(s)  "auto" (default: for 3x3 stride-1 convolutions with 16+
---                     channels in and out, rnlua's own Winograd F(4x4,3x3);
---                     oneDNN elsewhere; a fixed rule, so runs repeat bit for
---                     bit), "benchmark" (per shape, ours or oneDNN, whichever
---                     measured faster on the shape's first call, cached, as
---                     cudnn.benchmark), "onednn" (oneDNN where it has a kernel, with
---                     its Winograd for 3x3 stride-1 convolutions of 32+
---                     channels on AVX-512), "winograd" (ours wherever it
---                     applies: float32, 3x3, stride 1, groups 1, AVX2+FMA or
---                     AVX-512 under the ISA cap), "direct" (oneDNN's direct
---                     kernels only) or "im2col"
---   conv_choices()    {{direction=, shape=, ours_ms=, onednn_ms=, chosen=}, ...}:
---                     the measurements behind "benchmark"'s per-shape choices
---   memory_stats()    the CPU allocator's counters (bytes); empty_cache() gives
---                     cached blocks back and drops the oneDNN primitives
rn.cpu = {
  features = core._cpu_features,
  conv_kernels = core._conv_kernels,
  conv_kernel_stats = core._conv_kernel_stats,
  conv_impl = core._conv_impl,
  conv_choices = core._conv_choices,
  set_conv_impl = function(s)
    if s ~= "auto" and s ~= "im2col" and s ~= "direct" and s ~= "onednn" and s ~= "winograd" and s ~= "benchmark" then
      error(string.format("rn.cpu.set_conv_impl: '%s' is not one of auto, benchmark, onednn, winograd, direct, im2col",
        tostring(s)), 2)
    end
    core._set_conv_impl(s)
  end,
  memory_stats = core._cpu_memory_stats,
  empty_cache = core._cpu_empty_cache,
}
-- rn.cpu(x) is still x:cpu()
setmetatable(rn.cpu, { __call = function(_, x, ...) return core.cpu(x, ...) end })

--- rn.mixed_precision, as in Keras: set_global_policy("mixed_bfloat16")
--- makes layers on the CPU and the GPU compute in bfloat16 and pass bf16
--- activations (lua/rn/layers/base.lua); the variables (weights: the float32
--- master copy, BN statistics, optimizer state) stay float32, the losses
--- compute in float32 and gradients reach the optimizer in float32. With
--- $RN_CUDA_BF16_ACT=0 GPU tensors stay float32 and the convolutions compute
--- in bfloat16 over them (core/precision.c).
--- "float32" (the default) turns it off. On a
--- CPU without AVX512-BF16/AMX (and no GPU), or with the ISA capped below
--- them (ONEDNN_MAX_CPU_ISA), the setter raises an error naming what is missing.
local policies = { float32 = "float32", mixed_bfloat16 = "bfloat16" }
rn.mixed_precision = {
  set_global_policy = function(name)
    local math_dt = policies[name]
    if not math_dt then
      error(string.format("rn.mixed_precision.set_global_policy: '%s' is not one of float32, mixed_bfloat16",
        tostring(name)), 2)
    end
    local ok, err = pcall(core._set_math_precision, math_dt, not (core.cuda_is_available()))
    if not ok then error("rn.mixed_precision.set_global_policy: " .. tostring(err), 2) end
  end,
  global_policy = function()
    return core._math_precision() == "bfloat16" and "mixed_bfloat16" or "float32"
  end,
}

-- The Lua library. If one part fails to load, forget the half-built table so
-- that a later require does not return it.
local ok, err = pcall(function()
  rn.initializers = require "rn.initializers"
  rn.regularizers = require "rn.regularizers"
  rn.layers = require "rn.layers"
  rn.Model = require("rn.model").Model
  rn.Sequential = require("rn.model").Sequential
  rn.losses = require "rn.losses"
  rn.metrics = require "rn.metrics"
  rn.optim = require "rn.optim"
  rn.schedules = require "rn.schedules"
  rn.checkpoint = require "rn.checkpoint"
  rn.plot = require "rn.plot"
  rn.data = require "rn.data"
  rn.fit = require "rn.fit"
  rn.distributed = require "rn.distributed"
  rn.fit.install(rn.Model)
  require "rn.profile" -- model:profile
  require "rn.compare" -- model:compare
end)
if not ok then
  package.loaded.rn = nil
  error(err, 0)
end

return rn
