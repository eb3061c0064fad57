-- test_ops_torch.lua - the ops of issue 17 against PyTorch:
-- tests/fixtures/ops_fixtures.lua (written by tests/fixtures/gen_ops.py)
-- holds float64 inputs, outputs and the gradients of sum(y * gy). Each case
-- runs in float64 (held to 1e-12) and in float32 (held to float32's
-- rounding: 1e-5 relative), forward and backward.
local T = require "t"
local rn = require "rn"

local FIXTURES = "tests/fixtures/ops_fixtures.lua"
local chunk, err = loadfile(FIXTURES, "t", {})
if not chunk then error("cannot load " .. FIXTURES .. ": " .. tostring(err)) end
local cases = chunk()

local function tensor(f, dtype)
  if f.int then return rn.tensor(f.data, {dtype = "int64"}):reshape(f.shape) end
  return rn.tensor(f.data, {dtype = dtype}):reshape(f.shape)
end

-- op name -> function(args, inputs...) -> y
local RUN = {
  unary = function(a, x) return rn[a.fn](x, table.unpack(a.params)) end,
  layer_norm = function(a, x, g, b) return rn.layer_norm(x, g, b, {eps = a.eps, dims = a.dims}) end,
  sdpa = function(a, q, k, v)
    local m = a.mask and rn.tensor(a.mask.data, {dtype = "uint8"}):reshape(a.mask.shape) or nil
    return rn.scaled_dot_product_attention(q, k, v, {mask = m, causal = a.causal, scale = a.scale})
  end,
  pad = function(a, x) return rn.pad(x, a.pads, {mode = a.mode, value = a.value}) end,
  resize = function(a, x) return rn.resize(x, a.size, {method = a.method}) end,
  embedding = function(_, i, w) return rn.embedding(i, w) end,
  matmul = function(_, a, b) return rn.matmul(a, b) end,
  group_norm = function(a, x, g, b) return rn.group_norm(x, a.groups, g, b, {eps = a.eps}) end,
}

T.test("torch ops fixtures: the file loads and covers every op", function()
  local ops = {}
  for _, c in ipairs(cases) do ops[c.op] = (ops[c.op] or 0) + 1 end
  T.truthy((ops.unary or 0) >= 11, "activation cases")
  T.truthy((ops.matmul or 0) >= 4, "batched matmul cases")
  T.truthy((ops.embedding or 0) >= 1, "embedding case")
  T.truthy((ops.sdpa or 0) >= 3, "attention cases")
  T.truthy((ops.pad or 0) >= 3 and (ops.resize or 0) >= 3, "pad and resize cases")
  T.truthy((ops.layer_norm or 0) >= 3 and (ops.group_norm or 0) >= 3, "norm cases")
  for op in pairs(ops) do T.truthy(RUN[op], "a runner for " .. op) end
end)

for _, dtype in ipairs({"float64", "float32"}) do
  local tol = dtype == "float64" and 1e-12 or 1e-5
  for _, c in ipairs(cases) do
    T.test("torch ops (" .. dtype .. "): " .. c.name, function()
      local ins = {}
      for i, f in ipairs(c.inputs) do
        ins[i] = tensor(f, dtype)
        if c.grads[i] then ins[i]:requires_grad_() end
      end
      local y = RUN[c.op](c.args, table.unpack(ins))
      T.eq(y:size(), c.y.shape, "output shape")
      T.near(y:double(), tensor(c.y, "float64"), tol, tol, c.name .. ": forward")
      y:backward(tensor(c.gy, dtype))
      for i, g in ipairs(c.grads) do
        if g then
          T.truthy(ins[i].grad, c.name .. ": input " .. i .. " has a gradient")
          T.near(ins[i].grad:double(), tensor(g, "float64"), tol, tol, c.name .. ": gradient " .. i)
        end
      end
    end)
  end
end
