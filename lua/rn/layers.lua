-- layers.lua - the Keras-style layer library, `require "rn.layers"`: one
-- table gathering the family files of lua/rn/layers/ (base: the Layer class,
-- shapes, calling, Input; conv, core, norm, merge, pool, reshape: the
-- layers). A layer is a Lua object, callable on a symbolic tensor (from
-- layers.Input: records a node of the functional graph and infers the output
-- shape) or on real tensors (runs the op with eager autograd). Weights are
-- built lazily on the first call from the input shape. Arguments mirror
-- Keras: the main ones positional, the rest in a trailing options table;
-- unknown options raise an error naming the layer and the valid options.
--
--   local layers = require "rn.layers"
--   local x = layers.Input({32, 32, 3})
--   local y = layers.Conv2D(16, 3, {padding = "same"})(x)      -- (None, 32, 32, 16)
--
-- A layer name that does not exist (layers.Foo) raises an error naming it,
-- the nearest existing names, and the ways to write one: Layer:extend, Lambda.
-- Dims/axes are Lua dims: 1-based, negatives count from the end (-1 = last).
local M = require "rn.layers.base"
for _, family in ipairs({ "conv", "core", "norm", "merge", "pool", "reshape", "attention" }) do
  require("rn.layers." .. family)
end

-- the layer classes, for messages
local function class_names()
  local out = {}
  for k, v in pairs(M) do
    if type(v) == "table" and rawget(v, "class_name") == k and k ~= "Layer" then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end
M.class_names = class_names

setmetatable(M, { __index = function(_, k)
  -- only layer-like names (capitalised) raise; other lookups stay nil
  if type(k) ~= "string" or not k:match("^%u") then return nil end
  local names, near = class_names(), {}
  for _, n in ipairs(names) do
    if M._h.distance(n:lower(), k:lower()) <= math.max(2, #k // 4) then near[#near + 1] = n end
  end
  M._h.fail("rn.layers.%s: no such layer%s; write it as a subclass (rn.layers.Layer:extend(%q, " ..
    "{build =, call =})) or wrap a function in rn.layers.Lambda(fn). Layers: %s", k,
    #near > 0 and (" (did you mean " .. table.concat(near, ", ") .. "?)") or "", k, table.concat(names, ", "))
end })

return M
