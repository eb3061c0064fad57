-- test_core_torch.lua - elementwise, reduction and view ops against PyTorch
-- results committed in tests/fixtures/core_fixtures.lua (gen_core.py):
-- float32 forward atol 1e-5 rtol 1e-4, gradients atol 1e-4 rtol 1e-3.
local T = require "t"
local rn = require "rn"

local function tensor(f)
  return rn.tensor(f.data):reshape(f.shape)
end

local fixtures = assert(loadfile("tests/fixtures/core_fixtures.lua", "t", {}))()

for _, c in ipairs(fixtures) do
  T.test("pytorch fixture: " .. c.name, function()
    local xs = {}
    for i, f in ipairs(c.inputs) do xs[i] = tensor(f):requires_grad_() end
    local fn = assert(load("local rn, a, b = ...; " .. c.lua, c.name, "t", {}))
    local y = fn(rn, xs[1], xs[2])
    T.near(y, tensor(c.y), 1e-5, 1e-4, "forward")
    y:backward(tensor(c.gy))
    for i, g in ipairs(c.grads) do T.near(xs[i].grad, tensor(g), 1e-4, 1e-3, "grad " .. i) end
  end)
end
