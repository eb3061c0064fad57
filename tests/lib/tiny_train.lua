-- tiny_train.lua - a small seeded training job shared by the reliability
-- tests (alloc_sweep.lua, test_soak.lua, test_determinism.lua): an MLP with
-- batch norm and dropout learning which half of an 8-vector is larger,
-- trained with Model:train_step and Adam, and saved with fit.save_weights.
local rn = require "rn"
local layers = require "rn.layers"
local optim = require "rn.optim"
local fit = require "rn.fit"

local M = {}

--- M.data(n, seed) -> x (n,8) float32, y (n) int64
function M.data(n, seed)
  rn.manual_seed(seed)
  local x = rn.randn({n, 8})
  local lab = {}
  local rows = x:totable()
  for i = 1, n do
    local a, b = 0, 0
    for j = 1, 4 do a = a + rows[i][j]; b = b + rows[i][j + 4] end
    lab[i] = a > b and 1 or 0
  end
  return x, rn.tensor(lab, {dtype = "int64"})
end

--- M.model(seed) -> a compiled Sequential
function M.model(seed)
  rn.manual_seed(seed)
  layers.reset_names()
  local m = rn.Sequential{layers.Input({8}), layers.Dense(16), layers.BatchNormalization(),
                          layers.ReLU(), layers.Dropout(0.1), layers.Dense(2)}
  m:compile{optimizer = optim.Adam{lr = 0.01},
            loss = rn.losses.sparse_categorical_crossentropy{from_logits = true}}
  return m
end

--- M.train(m, x, y, steps, batch) -> last loss: steps of train_step over
--- consecutive batches (wrapping around).
function M.train(m, x, y, steps, batch)
  batch = batch or 16
  local n = x:size(1)
  local loss
  for s = 1, steps do
    local at = ((s - 1) * batch) % (n - batch + 1) + 1
    loss = m:train_step(x:narrow(1, at, batch), y:narrow(1, at, batch)).loss
  end
  return loss
end

--- M.run(seed, steps, path): a whole job; saves the weights to path if given.
function M.run(seed, steps, path)
  local x, y = M.data(64, seed)
  local m = M.model(seed + 1)
  local loss = M.train(m, x, y, steps)
  if path then fit.save_weights(m, path) end
  return loss, m
end

return M
