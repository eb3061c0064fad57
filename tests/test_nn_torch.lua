-- test_nn_torch.lua - the nn ops against PyTorch 1.13 reference values
-- (tests/fixtures/nn_fixtures.lua, made by tests/fixtures/gen_nn.py):
-- forward (atol 1e-5, rtol 1e-4), gradients after y:backward(gy)
-- (atol 1e-4, rtol 1e-3) and batch_norm's running statistics after one step.
-- float32 throughout, as generated.
local T = require "t"
local rn = require "rn"

local fixtures = dofile("tests/fixtures/nn_fixtures.lua")

local function tensor(f, dtype)
  local t = rn.tensor(f.data, { dtype = dtype or "float32" })
  return t:reshape(f.shape)
end

-- the op of a case applied to its input leaves
local run = {
  batch_norm = function(c, v)
    return rn.batch_norm(v.x, v.gamma, v.beta, v.running_mean, v.running_var,
      { training = c.training, momentum = c.momentum, eps = c.eps, unbiased = true }) -- PyTorch's rule
  end,
  softmax = function(c, v) return rn.softmax(v.x, c.dim) end,
  log_softmax = function(c, v) return rn.log_softmax(v.x, c.dim) end,
  cross_entropy = function(c, v)
    return rn.cross_entropy(v.logits, v.labels,
      { reduction = c.reduction, label_smoothing = c.label_smoothing })
  end,
  matmul = function(_, v) return rn.matmul(v.a, v.b) end,
  linear = function(_, v) return rn.linear(v.x, v.w, v.b) end,
  concat = function(c, v) return rn.concat({ v.a, v.b, v.c }, c.dim) end,
}

local buffers = { running_mean = true, running_var = true, labels = true }

for _, c in ipairs(fixtures) do
  T.test("torch reference: " .. c.name, function()
    local v = {}
    for k, f in pairs(c.inputs) do
      if k == "labels" then v[k] = tensor(f, "int64")
      else
        v[k] = tensor(f)
        if not buffers[k] then v[k]:requires_grad_() end
      end
    end
    local y = run[c.op](c, v)
    T.near(y, tensor(c.y), 1e-5, 1e-4, "forward")
    y:backward(tensor(c.gy))
    for k, g in pairs(c.grads) do
      T.truthy(v[k].grad, "no gradient for " .. k)
      T.near(v[k].grad, tensor(g), 1e-4, 1e-3, "gradient of " .. k)
    end
    for k, f in pairs(c.after or {}) do
      T.near(v[k], tensor(f), 1e-5, 1e-4, k .. " after the step")
    end
  end)
end
