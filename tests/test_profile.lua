-- test_profile.lua - model:profile (lua/rn/profile.lua) and the reverse-pass
-- profiler under it (core/autograd.c, core/lua/l_profile.c): one row per
-- layer in graph order plus loss/optimizer/other, times > 0 where a layer
-- has parameters, rows that add up to the measured step, the scope id back
-- to 0 and the layers unwrapped afterwards (also after an error), errors for
-- a model without optimizer/loss and for bad options, and training under the
-- profiler bitwise equal to model:train_step. No timing is asserted beyond > 0.
local T = require "t"
local rn = require "rn"
local core = require "rn.core"
local layers = require "rn.layers"

local function small_model(seed)
  rn.manual_seed(seed or 11)
  local inp = layers.Input({ 8, 8, 3 })
  local h = layers.Conv2D(4, 3, { padding = "same" })(inp)
  h = layers.BatchNormalization()(h)
  h = layers.ReLU()(h)
  local s = layers.Conv2D(4, 1)(inp)
  h = layers.Add()({ h, s })
  h = layers.GlobalAveragePooling2D()(h)
  local out = layers.Dense(3)(h)
  return rn.Model(inp, out)
end

local function data()
  rn.manual_seed(3)
  return rn.randn({ 6, 8, 8, 3 }), (rn.rand({ 6 }) * 3):long():minimum(2)
end

local function compiled(seed)
  local m = small_model(seed)
  m:compile{ optimizer = rn.optim.SGD{ lr = 0.05, momentum = 0.9 },
    loss = rn.losses.sparse_categorical_crossentropy{ from_logits = true } }
  return m
end

T.test("profile: one row per layer in graph order, then loss, optimizer, other", function()
  local m = compiled()
  local x, y = data()
  local p = m:profile(x, y, { steps = 2, print = false })
  local names = {}
  for _, node in ipairs(m._order) do
    local l = node.layer
    if names[#names] ~= l.name then names[#names + 1] = l.name end
  end
  T.eq(p.nlayers, 7, "non-input layers")
  T.eq(#p.rows, p.nlayers + 3, "rows")
  for i = 1, p.nlayers do
    T.eq(p.rows[i].name, names[i], "row " .. i)
    T.eq(p.rows[i].id, i, "scope id of row " .. i)
    T.truthy(p.rows[i].type, "type of row " .. i)
  end
  T.eq(p.rows[p.nlayers + 1].name, "loss")
  T.eq(p.rows[p.nlayers + 2].name, "optimizer")
  T.eq(p.rows[p.nlayers + 3].name, "other")
  T.truthy(p.loss == p.rows[p.nlayers + 1] and p.optimizer and p.other, "shortcuts")
  T.eq(p.steps, 2)
  for i = 1, p.nlayers do
    local r = p.rows[i]
    local l = m:get_layer(r.name)
    if l:count_params() > 0 then
      T.truthy(r.forward_ms > 0, r.name .. " forward > 0")
      T.truthy(r.backward_ms > 0, r.name .. " backward > 0")
    end
    T.truthy(r.forward_ms >= 0 and r.backward_ms >= 0, r.name .. " non-negative")
  end
  T.truthy(p.loss.forward_ms > 0 and p.loss.backward_ms > 0, "loss forward and backward > 0")
  T.truthy(p.optimizer.forward_ms > 0, "optimizer > 0")
  -- each Conv2D row names the kernel its forward ran, one that the runtime
  -- counted as run (rn.cpu.conv_kernel_stats); other rows name none
  local ran = {}
  for _, st in ipairs(rn.cpu.conv_kernel_stats()) do
    if st.direction == "forward" then ran[st.kernel] = true end
  end
  local convs = 0
  for i = 1, p.nlayers do
    local r = p.rows[i]
    if r.type == "Conv2D" then
      convs = convs + 1
      T.truthy(type(r.kernel) == "string" and ran[r.kernel], r.name .. ": kernel " .. tostring(r.kernel))
    else
      T.eq(r.kernel, nil, r.name .. " runs no convolution")
    end
  end
  T.eq(convs, 2, "Conv2D rows")
end)

T.test("profile: rows add up to the measured step", function()
  local m = compiled()
  local x, y = data()
  local p = m:profile(x, y, { steps = 3, print = false })
  T.truthy(p.step_ms > 0, "step > 0")
  local total, pct, fwd = 0, 0, 0
  for i, r in ipairs(p.rows) do
    T.truthy(r.percent >= 0, r.name .. " percent >= 0")
    T.near(r.total_ms, r.forward_ms + r.backward_ms, 1e-12, 1e-12, r.name .. " total")
    total, pct = total + r.total_ms, pct + r.percent
    if i <= p.nlayers + 1 then fwd = fwd + r.forward_ms end
  end
  T.near(total, p.step_ms, 1e-9, 1e-9, "sum of rows = step")
  T.near(pct, 100, 1e-9, 1e-9, "percentages")
  T.near(fwd, p.forward_ms, 1e-9, 1e-9, "forward = layers + loss")
  T.truthy(p.forward_ms + p.backward_ms <= p.step_ms * (1 + 1e-9), "forward + backward within the step")
  local bsum = 0
  for _, r in ipairs(p.rows) do bsum = bsum + r.backward_ms end
  T.near(bsum, p.backward_ms, 1e-9, 1e-9, "backward column = backward wall time")
end)

T.test("profile: by_type sums the layer rows per type, largest first", function()
  local m = compiled()
  local x, y = data()
  local p = m:profile(x, y, { steps = 2, print = false })
  local want = {}
  for i = 1, p.nlayers do
    local r = p.rows[i]
    local w = want[r.type] or { n = 0, f = 0, b = 0 }
    want[r.type] = w
    w.n, w.f, w.b = w.n + 1, w.f + r.forward_ms, w.b + r.backward_ms
  end
  local seen, count = {}, 0
  for i, t in ipairs(p.by_type) do
    local w = want[t.type]
    T.truthy(w and not seen[t.type], "type " .. tostring(t.type) .. " once")
    seen[t.type] = true
    T.eq(t.count, w.n, t.type .. " count")
    T.near(t.forward_ms, w.f, 1e-12, 1e-12, t.type .. " forward")
    T.near(t.backward_ms, w.b, 1e-12, 1e-12, t.type .. " backward")
    T.near(t.total_ms, w.f + w.b, 1e-12, 1e-12, t.type .. " total")
    T.near(t.percent, 100 * t.total_ms / p.step_ms, 1e-9, 1e-9, t.type .. " percent")
    if i > 1 then T.truthy(p.by_type[i - 1].total_ms >= t.total_ms, "sorted by total") end
    count = count + t.count
  end
  T.eq(count, p.nlayers, "every layer in one type")
  T.truthy(seen.Conv2D and want.Conv2D.n == 2, "two Conv2D layers summed")
end)

T.test("profile: prints the table", function()
  local m = compiled()
  local x, y = data()
  local lines = {}
  local old = print
  print = function(s) lines[#lines + 1] = tostring(s) end -- luacheck: ignore
  local ok, err = pcall(m.profile, m, x, y, { steps = 1 })
  print = old -- luacheck: ignore
  assert(ok, err)
  local text = table.concat(lines, "\n")
  T.truthy(text:find("Forward ms", 1, true) and text:find("Backward ms", 1, true)
    and text:find("% of step", 1, true), "header")
  T.truthy(text:find("conv2d", 1, true) and text:find("(Conv2D)", 1, true), "a layer row")
  T.truthy(text:find("\n loss ", 1, true) and text:find("\n optimizer ", 1, true)
    and text:find("\n other ", 1, true), "loss/optimizer/other rows")
  T.truthy(text:find("Layer type (count)", 1, true) and text:find("\n Conv2D (2) ", 1, true), "by-type rows")
  T.truthy(text:find("Kernel (forward)", 1, true) and text:find(rn.cpu.conv_kernels().forward, 1, true),
    "the conv rows name their kernel")
end)

T.test("profile: scope back to 0, layers unwrapped, profiler off (also after an error)", function()
  local m = compiled()
  local x, y = data()
  m:profile(x, y, { steps = 1, print = false })
  T.eq(core._profile_set_scope(0), 0, "scope after profile")
  for _, l in ipairs(m.layers) do T.eq(rawget(l, "_call_eager"), nil, l.name .. " unwrapped") end
  -- an error inside the step (labels of the wrong length)
  T.raises(function() m:profile(x, rn.zeros({ 2 }):long(), { steps = 1, print = false }) end, ".")
  T.eq(core._profile_set_scope(0), 0, "scope after an error")
  for _, l in ipairs(m.layers) do T.eq(rawget(l, "_call_eager"), nil, l.name .. " unwrapped after error") end
  core._profile_begin() -- would raise "already on" if the error had left it on
  core._profile_end()
end)

T.test("profile: the C scopes collect backward time per scope", function()
  core._profile_begin()
  T.raises(function() core._profile_begin() end, "already on", true)
  local w = rn.randn({ 64, 64 }, { requires_grad = true })
  T.eq(core._profile_set_scope(5), 0)
  local a = rn.matmul(w, w)
  T.eq(core._profile_set_scope(7), 5)
  local l = (a * a):sum()
  core._profile_set_scope(0)
  l:backward()
  local t = core._profile_end()
  T.truthy(t[5] and t[5] > 0, "scope 5 time")
  T.truthy(t[7] and t[7] > 0, "scope 7 time")
  T.eq(t[6], nil, "no time for unused scopes")
  T.eq(next(core._profile_end()), nil, "end again: empty")
  T.raises(function() core._profile_set_scope(-1) end, "outside 0..", true)
  T.raises(function() core._profile_set_scope(2 ^ 40 // 1) end, "outside 0..", true)
  T.eq(core._profile_set_scope(0), 0)
end)

T.test("profile: errors name the problem", function()
  local m = small_model()
  local x, y = data()
  T.raises(function() m:profile(x, y) end, "not compiled and opts lack optimizer= and loss=", true)
  T.raises(function() m:profile(x, y, { optimizer = "sgd" }) end, "opts lack loss=", true)
  T.raises(function() m:profile(x, y, { loss = "sparse_categorical_crossentropy" }) end, "opts lack optimizer=", true)
  T.raises(function() m:profile(x, y, { optimizer = 3, loss = "mse" }) end, "optimizer must be", true)
  T.raises(function() m:profile(x, y, { optimizer = "nope", loss = "mse" }) end, "nope", true)
  local c = compiled()
  T.raises(function() c:profile(x, y, { steps = 0 }) end, "steps must be an integer in 1..100000, got 0", true)
  T.raises(function() c:profile(x, y, { steps = 1.5 }) end, "steps must be an integer in 1..100000", true)
  T.raises(function() c:profile(x, y, { warmup = -1 }) end, "warmup must be an integer in 0..100000", true)
  T.raises(function() c:profile(x, y, { stpes = 2 }) end, "stpes", true)
  T.raises(function() c:profile("x", y) end, "x must be a tensor", true)
  T.eq(core._profile_set_scope(0), 0, "scope untouched by argument errors")
end)

T.test("profile: uncompiled model with optimizer= and loss= in opts", function()
  local m = small_model()
  local x, y = data()
  local p = m:profile(x, y, { steps = 1, print = false, optimizer = "sgd",
    loss = "sparse_categorical_crossentropy" })
  T.eq(#p.rows, p.nlayers + 3)
end)

local function flat_weights(m)
  local out = {}
  for _, w in ipairs(m:weights()) do out[#out + 1] = w.tensor:clone() end
  return out
end

T.test("profile: training under the profiler is bitwise the same as train_step", function()
  local x, y = data()
  local a, b = compiled(21), compiled(21)
  a:profile(x, y, { steps = 2, warmup = 1, print = false })
  for _ = 1, 3 do b:train_step(x, y) end
  local wa, wb = flat_weights(a), flat_weights(b)
  T.eq(#wa, #wb)
  for i = 1, #wa do
    T.eq((wa[i] - wb[i]):abs():max():item(), 0, "weight " .. i .. " bitwise")
  end
  -- and after profiling, steps stay identical
  local la, lb = a:train_step(x, y), b:train_step(x, y)
  T.eq(la.loss, lb.loss, "next loss")
  T.eq((a:predict(x) - b:predict(x)):abs():max():item(), 0, "predictions")
end)

T.test("profile: GPU event columns only on the GPU (issue 19); there they partition the step's span", function()
  local m = compiled()
  local x, y = data()
  local res = m:profile(x, y, { steps = 1, print = false })
  T.eq(res.gpu_step_ms, nil, "no GPU figures on the CPU")
  T.eq(res.rows[1].gpu_forward_ms, nil)
  if not rn.cuda.is_available() then T.skip("no CUDA device for the GPU part") end
  local mc = compiled()
  mc:to("cuda")
  local r = mc:profile(x:to("cuda"), y:to("cuda"), { steps = 2, warmup = 1, print = false })
  T.truthy(r.gpu_step_ms and r.gpu_step_ms > 0, "a device span")
  local sum = r.gpu_optimizer_ms
  for _, row in ipairs(r.rows) do
    if row.gpu_forward_ms then
      T.truthy(row.gpu_forward_ms >= 0 and row.gpu_backward_ms >= 0, row.name)
      sum = sum + row.gpu_forward_ms + row.gpu_backward_ms
    end
  end
  T.truthy(sum <= r.gpu_step_ms * (1 + 1e-6) + 1e-9, string.format("regions %.6f within the span %.6f", sum, r.gpu_step_ms))
  T.truthy(r.rows[1].gpu_forward_ms > 0, "the first conv has device time")
end)
