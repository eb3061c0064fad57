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
  memory_stats = core.cuda_memory_stats or no_cuda("memory_stats"),
  empty_cache = core.cuda_empty_cache or no_cuda("empty_cache"),
  device_name = core.cuda_device_name or no_cuda("device_name"),
  synchronize = core.cuda_synchronize or no_cuda("synchronize"),
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
  rn.fit.install(rn.Model)
end)
if not ok then
  package.loaded.rn = nil
  error(err, 0)
end

return rn
