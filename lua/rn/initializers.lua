-- initializers.lua - weight initializers as Keras defines them: each is a
-- function(shape, dtype) -> fresh tensor (no grad history). Fans follow
-- Keras: a kernel (kh, kw, cin, cout) has fan_in = kh*kw*cin and fan_out =
-- kh*kw*cout; a dense kernel (in, out) has fan_in = in, fan_out = out; a 1-d
-- shape (n) has fan_in = fan_out = n. The "normal" variants draw from a
-- normal truncated at 2 standard deviations, with Keras' correction factor
-- 0.87962566103423978 so that the truncated draw has the intended stddev.
--
--   local init = require "rn.initializers"
--   init.get("glorot_uniform")({3, 3, 16, 32})   -- a name, a function or nil
-- rn itself, looked up on first use: lua/rn/init.lua requires this module
-- while it is still loading, so `require "rn"` cannot run at load time.
local rn = setmetatable({}, { __index = function(t, k)
  local real = require "rn"
  setmetatable(t, { __index = real })
  return real[k]
end })

local M = {}

-- stddev of a standard normal truncated to [-2, 2]
local TRUNC_STD = 0.87962566103423978

--- fan_in, fan_out of a weight shape (Keras' _compute_fans).
function M.fans(shape)
  local n = #shape
  if n == 0 then return 1, 1 end
  if n == 1 then return shape[1], shape[1] end
  if n == 2 then return shape[1], shape[2] end
  local receptive = 1
  for i = 1, n - 2 do receptive = receptive * shape[i] end
  return receptive * shape[n - 1], receptive * shape[n]
end

local function opts_of(dtype) return { dtype = dtype or "float32" } end

-- a standard normal truncated at +-2: redraws the values outside until none are
local function truncated_normal(shape, dtype)
  return rn.no_grad(function()
    local x = rn.randn(shape, opts_of(dtype))
    for _ = 1, 100 do
      local bad = x:abs():gt(2)
      if bad:sum():item() == 0 then break end
      x = x * (1 - bad) + rn.randn(shape, opts_of(dtype)) * bad
    end
    return x:contiguous()
  end)
end

local function uniform(shape, dtype, limit)
  return rn.rand(shape, { dtype = dtype or "float32", low = -limit, high = limit })
end

-- Keras VarianceScaling: scale / fan (fan_in, fan_out or their mean)
local function variance_scaling(scale, mode, distribution)
  return function(shape, dtype)
    local fan_in, fan_out = M.fans(shape)
    local n = mode == "fan_in" and fan_in or mode == "fan_out" and fan_out
      or (fan_in + fan_out) / 2
    n = math.max(1, n)
    if distribution == "uniform" then
      return uniform(shape, dtype, math.sqrt(3 * scale / n))
    end
    local std = math.sqrt(scale / n) / TRUNC_STD
    return rn.no_grad(function() return (truncated_normal(shape, dtype) * std):contiguous() end)
  end
end

M.glorot_uniform = variance_scaling(1, "fan_avg", "uniform")   -- limit sqrt(6/(in+out))
M.glorot_normal = variance_scaling(1, "fan_avg", "normal")
M.he_uniform = variance_scaling(2, "fan_in", "uniform")        -- limit sqrt(6/in)
M.he_normal = variance_scaling(2, "fan_in", "normal")          -- std sqrt(2/in), truncated
M.lecun_uniform = variance_scaling(1, "fan_in", "uniform")
M.lecun_normal = variance_scaling(1, "fan_in", "normal")
M.xavier_uniform = M.glorot_uniform

function M.zeros(shape, dtype) return rn.zeros(shape, opts_of(dtype)) end
function M.ones(shape, dtype) return rn.ones(shape, opts_of(dtype)) end

--- constant(v): every element v.
function M.constant(v)
  if type(v) ~= "number" then error("initializers.constant: value must be a number, got " .. type(v), 2) end
  return function(shape, dtype) return rn.full(shape, v, opts_of(dtype)) end
end

--- random_normal{mean=0, stddev=0.05} and random_uniform{minval=-0.05, maxval=0.05} (Keras defaults).
function M.random_normal(o)
  o = o or {}
  return function(shape, dtype)
    return rn.randn(shape, { dtype = dtype or "float32", mean = o.mean or 0, std = o.stddev or 0.05 })
  end
end
function M.random_uniform(o)
  o = o or {}
  return function(shape, dtype)
    return rn.rand(shape, { dtype = dtype or "float32", low = o.minval or -0.05, high = o.maxval or 0.05 })
  end
end

--- truncated_normal{mean=0, stddev=0.05}: a normal truncated at 2 stddev
--- (Keras: the draw itself has that stddev before truncation).
function M.truncated_normal(o)
  o = o or {}
  local mean, std = o.mean or 0, o.stddev or 0.05
  return function(shape, dtype)
    return rn.no_grad(function() return (truncated_normal(shape, dtype) * std + mean):contiguous() end)
  end
end

--- variance_scaling{scale=1, mode="fan_in"|"fan_out"|"fan_avg",
--- distribution="truncated_normal"|"untruncated_normal"|"uniform"}: Keras's
--- VarianceScaling (the glorot/he/lecun initializers are instances of it).
function M.variance_scaling(o)
  o = o or {}
  local scale, mode, dist = o.scale or 1, o.mode or "fan_in", o.distribution or "truncated_normal"
  if type(scale) ~= "number" or scale <= 0 then
    error("initializers.variance_scaling: scale must be a number > 0, got " .. tostring(scale), 2)
  end
  if mode ~= "fan_in" and mode ~= "fan_out" and mode ~= "fan_avg" then
    error("initializers.variance_scaling: mode must be fan_in, fan_out or fan_avg, got " .. tostring(mode), 2)
  end
  if dist == "normal" then dist = "truncated_normal" end
  if dist == "untruncated_normal" then
    return function(shape, dtype)
      local fan_in, fan_out = M.fans(shape)
      local n = math.max(1, mode == "fan_in" and fan_in or mode == "fan_out" and fan_out or (fan_in + fan_out) / 2)
      return rn.randn(shape, { dtype = dtype or "float32", mean = 0, std = math.sqrt(scale / n) })
    end
  end
  if dist ~= "truncated_normal" and dist ~= "uniform" then
    error("initializers.variance_scaling: distribution must be truncated_normal, untruncated_normal or "
      .. "uniform, got " .. tostring(dist), 2)
  end
  return variance_scaling(scale, mode, dist == "uniform" and "uniform" or "normal")
end

--- orthogonal{gain=1}: Keras's Orthogonal: the rows (or columns) of the
--- (prod(shape[1..n-1]), shape[n]) matrix are orthonormal, from the QR
--- decomposition of a normal matrix with R's diagonal made positive, times
--- gain. Computed in float64 (modified Gram-Schmidt, twice).
function M.orthogonal(o)
  o = o or {}
  local gain = o.gain or 1
  return function(shape, dtype)
    return rn.no_grad(function()
      local cols = shape[#shape] or 1
      local rows = 1
      for i = 1, #shape - 1 do rows = rows * shape[i] end
      local r, c = rows, cols
      if rows < cols then r, c = cols, rows end -- orthonormal columns of the tall form
      local a = rn.randn({ r, c }, { dtype = "float64" })
      local q = {}
      for j = 1, c do
        local v = a:narrow(2, j, 1):contiguous()
        for _ = 1, 2 do
          for k = 1, j - 1 do v = v - q[k] * (q[k] * v):sum():item() end
        end
        local n = math.sqrt((v * v):sum():item())
        -- sign(diag(R)) is +1 here: v . a_j = n > 0
        q[j] = v / math.max(n, 1e-300)
      end
      local m = rn.concat(q, 2)
      if rows < cols then m = m:t() end
      return (m * gain):contiguous():to(dtype or "float32"):reshape(shape)
    end)
  end
end

local NAMES = { "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
  "lecun_normal", "xavier_uniform", "zeros", "ones", "random_normal", "random_uniform",
  "truncated_normal", "variance_scaling", "orthogonal" }
-- the names that take arguments, called with their defaults when named
local FACTORY = { random_normal = true, random_uniform = true, truncated_normal = true,
  variance_scaling = true, orthogonal = true }

--- lookup(spec): an initializer from a name, a function or a callable
--- table; nil and a message when spec is none of these.
function M.lookup(spec)
  if type(spec) == "function" then return spec end
  if type(spec) == "table" and getmetatable(spec) and getmetatable(spec).__call then return spec end
  if type(spec) == "string" then
    local key = spec:lower()
    for _, n in ipairs(NAMES) do
      if n == key then return FACTORY[n] and M[n]() or M[n] end
    end
    return nil, string.format("unknown initializer '%s' (known: %s, or a function(shape, dtype))",
      spec, table.concat(NAMES, ", "))
  end
  return nil, "an initializer must be a name or a function(shape, dtype), got " .. type(spec)
end

--- get(spec): as lookup, raising "initializers.get: ..." on a bad spec.
function M.get(spec)
  local f, msg = M.lookup(spec)
  if not f then error("initializers.get: " .. msg, 2) end
  return f
end

return M
