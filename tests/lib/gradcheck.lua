-- gradcheck.lua - finite-difference gradient check, as torch.autograd.gradcheck:
-- gradcheck(fn, inputs, opts) compares the autograd gradient of
-- sum(fn(inputs...) * r) (r a fixed random projection) with central
-- differences, for every element of every float64 input that requires grad.
-- opts: eps=1e-6, atol=1e-7, rtol=1e-6, wrt = {indices} (default all float
-- inputs). The defaults fit float64: the central difference's error is
-- about eps^2 (truncation) plus 1e-16*|f|/eps (rounding), so a bug that
-- changes a gradient by one part in a million fails. Raises with the input,
-- element and both values on mismatch.
local rn = require "rn"

local function flat_index_to_nd(t, k)
  local idx, sizes = {}, t:size()
  for d = #sizes, 1, -1 do
    idx[d] = k % sizes[d] + 1
    k = k // sizes[d]
  end
  return idx
end

local function get(t, idx)
  if #idx == 0 then return t:item() end
  local v = t
  for d = 1, #idx - 1 do v = v:select(1, idx[d]) end
  return v[idx[#idx]]
end

local function set(t, idx, val)
  if #idx == 0 then t:fill_(val); return end
  local v = t
  for d = 1, #idx - 1 do v = v:select(1, idx[d]) end
  v[idx[#idx]] = val
end

return function(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-7, opts.rtol or 1e-6
  local wrt = opts.wrt
  if not wrt then
    wrt = {}
    for i, x in ipairs(inputs) do
      if rn.is_tensor(x) and x.dtype == "float64" then wrt[#wrt + 1] = i end
    end
  end
  for _, i in ipairs(wrt) do
    local x = inputs[i]
    assert(x.dtype == "float64", "gradcheck: input " .. i .. " must be float64")
    x.grad = nil
    if x.is_leaf then x.requires_grad = true end
  end
  -- analytic
  local y = fn(table.unpack(inputs))
  local r = rn.rand(y:size(), { dtype = "float64" }) + 0.5 -- fixed projection
  local loss = (y * r):sum()
  loss:backward()
  local function f()
    return rn.no_grad(function() return (fn(table.unpack(inputs)) * r):sum():item() end)
  end
  for _, i in ipairs(wrt) do
    local x = inputs[i]
    local g = x.grad
    for k = 0, x:numel() - 1 do
      local idx = flat_index_to_nd(x, k)
      local orig = get(x, idx)
      rn.no_grad(function() set(x, idx, orig + eps) end)
      local fp = f()
      rn.no_grad(function() set(x, idx, orig - eps) end)
      local fm = f()
      rn.no_grad(function() set(x, idx, orig) end)
      local num = (fp - fm) / (2 * eps)
      local ana = g and get(g, idx) or 0
      if math.abs(num - ana) > atol + rtol * math.abs(num) then
        error(string.format("gradcheck: input %d element {%s}: autograd %.10g, finite difference %.10g",
          i, table.concat(idx, ","), ana, num), 2)
      end
    end
  end
  return true
end
