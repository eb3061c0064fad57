-- test_graph.lua - issue 19's whole-step graphs (lua/rn/graph.lua) driven
-- through the CPU mock backend (the same stepper and capture guard as the
-- CUDA one; the mock's capture runs the step eagerly under the guard and a
-- replay runs it again over the static buffers): warm-up, one capture, then
-- replays whose losses and weights equal eager train_step's (SGD momentum
-- with an lr schedule, Adam; the optimizer reading {lr, step} from its
-- scalars tensor); the fallbacks, each with one message and eager results:
-- a host read (:item()) inside the step, a Dropout layer, a group the
-- one-launch optimizer does not take; a batch of other shapes runs eagerly
-- while the graph stays; fit with the mock equals fit without a graph; the
-- capture guard itself. On a GPU: fit with the CUDA graph against eager.
local T = require "t"
local rn = require "rn"
local optim = require "rn.optim"
local layers = require "rn.layers"
local graph = require "rn.graph"
local regularizers = require "rn.regularizers"
local model_mod = require "rn.model"

local function net(dropout)
  layers.reset_names()
  rn.manual_seed(21)
  local inp = layers.Input({ 6, 6, 2 })
  local x = layers.Conv2D(4, 3, { padding = "same", kernel_regularizer = regularizers.l2(1e-2) })(inp)
  x = layers.ReLU()(layers.BatchNormalization()(x))
  if dropout then x = layers.Dropout(0.2)(x) end
  x = layers.Flatten()(x)
  return model_mod.Model(inp, layers.Dense(3, { kernel_regularizer = regularizers.l2(0.1) })(x))
end

local function batches(n, bs)
  rn.manual_seed(8)
  local out = {}
  for i = 1, n do
    local b = bs and bs[i] or 8
    local y = {}
    for j = 1, b do y[j] = (i + j) % 3 end
    out[i] = { rn.randn({ b, 6, 6, 2 }), rn.tensor(y, { dtype = "int64" }) }
  end
  return out
end

-- 64 uint8 images (6,6,2), labels 0..2, batches of 16
local function image_loader()
  rn.manual_seed(4)
  local x = (rn.rand({ 64, 6, 6, 2 }) * 255):byte()
  local yl = {}
  for i = 1, 64 do yl[i] = i % 3 end
  return rn.data.Loader(x, rn.tensor(yl, { dtype = "int64" }),
    { batch_size = 16, seed = 1, augment = false, mean = { 0.5, 0.5 }, std = { 0.3, 0.3 }, workers = 1 })
end

local function sched(step) return 0.05 / (1 + 0.1 * step) end

local OPTS = {
  sgd = function() return optim.SGD{ lr = sched, momentum = 0.9 } end,
  adam = function() return optim.Adam{ lr = 0.01 } end,
}

-- n steps of eager train_step or of a mock stepper; the fused optimizer on
-- in both (the graph needs it; eager then equals it bit for bit)
local function run(mode, kind, data, o)
  o = o or {}
  local saved = optim.fused
  optim.fused = true
  local ok, res = pcall(function()
    local m = net(o.dropout)
    m:compile{ optimizer = (o.opt or OPTS[kind])(), loss = o.loss or "sparse_categorical_crossentropy",
      metrics = { "accuracy" } }
    local st = mode == "graph" and graph.Stepper(m, "mock", { quiet = true }) or nil
    local losses, accs = {}, {}
    for i, b in ipairs(data) do
      local logs = st and st:step(b[1], b[2]) or m:train_step(b[1], b[2])
      losses[i], accs[i] = logs.loss, logs.accuracy
    end
    if st then st:close() end
    local ps = {}
    for i, p in ipairs(m:parameters()) do ps[i] = p:clone() end
    return { losses = losses, accs = accs, params = ps, st = st, opt = m.optimizer, model = m }
  end)
  optim.fused = saved
  assert(ok, res)
  return res
end

local function same(a, b, what)
  for i = 1, #a.losses do
    T.eq(b.losses[i], a.losses[i], string.format("%s: step %d loss", what, i))
    T.eq(b.accs[i], a.accs[i], string.format("%s: step %d accuracy", what, i))
  end
  for i, p in ipairs(a.params) do T.near(b.params[i], p, 0, 0, what .. ": parameter " .. i) end
end

for _, kind in ipairs({ "sgd", "adam" }) do
  T.test("mock graph: warm-up, one capture, replays equal eager train_step (" .. kind .. ")", function()
    local data = batches(8)
    local a, b = run("eager", kind, data), run("graph", kind, data)
    same(a, b, kind)
    T.eq(b.st.eager_steps, graph.warmup)
    T.eq(b.st.captures, 1)
    T.eq(b.st.replays, 8 - graph.warmup - 1)
    T.eq(b.st.fallback, nil)
    T.eq(#b.st.messages, 0)
    T.eq(b.opt.iterations, 8)
    T.eq(b.opt:get_lr(), a.opt:get_lr(), "the schedule followed the replays")
    if kind == "adam" then
      for id, st in pairs(b.opt.state) do T.eq(st.step, 8, "Adam step of tensor " .. id) end
    end
    T.truthy(a.losses[8] < a.losses[1], "it trains")
  end)
end

T.test("mock graph: a host read in the step falls back to eager with one message", function()
  local data = batches(6)
  local ce = rn.losses.get("sparse_categorical_crossentropy")
  local peek = function(p, y) local l = ce(p, y); local _ = l:item(); return l end
  local a = run("eager", "sgd", data, { loss = peek })
  local b = run("graph", "sgd", data, { loss = peek })
  same(a, b, "host read")
  T.truthy(b.st.fallback:find(":item%(%) inside a captured step"), b.st.fallback)
  T.eq(#b.st.messages, 1)
  T.truthy(b.st.messages[1]:find("whole%-step graph off"), b.st.messages[1])
  T.eq(b.st.captures, 0)
  T.eq(b.st.eager_steps, 6)
  T.eq(b.opt.iterations, 6, "the aborted capture's counters were restored")
  T.eq(rn.capture_guard(nil), nil, "the guard is off after the abort")
end)

T.test("mock graph: a Dropout layer is not captured (one message, eager results)", function()
  local data = batches(5)
  local b = run("graph", "sgd", data, { dropout = true })
  T.truthy(b.st.fallback:find("Dropout"), b.st.fallback)
  T.eq(b.st.captures, 0)
  T.eq(b.st.eager_steps, 5)
end)

T.test("mock graph: an optimizer the one-launch step does not take falls back", function()
  local data = batches(5)
  local Custom = setmetatable({}, { __index = optim.SGD })
  local mk = function()
    local o = optim.SGD{ lr = 0.05, momentum = 0.9 }
    o._update = function(p, g, st, grp, lr) return optim.SGD._update(p, g, st, grp, lr) end
    return o
  end
  local a = run("eager", "sgd", data, { opt = mk })
  local b = run("graph", "sgd", data, { opt = mk })
  same(a, b, "custom update")
  T.truthy(b.st.fallback:find("cannot run as one multi%-tensor call"), b.st.fallback)
  T.eq(b.opt.iterations, 5)
  T.truthy(Custom) -- (a subclass table is enough to show the class check; the _update override is what it sees)
end)

T.test("mock graph: a batch of other shapes runs eagerly, said once; the graph stays", function()
  local sizes = { 8, 8, 8, 8, 5, 8, 8, 5 }
  local data = batches(8, sizes)
  local a, b = run("eager", "sgd", data), run("graph", "sgd", data)
  same(a, b, "shape change")
  T.eq(b.st.captures, 1)
  T.eq(b.st.replays, 3)
  T.eq(b.st.eager_steps, graph.warmup + 2)
  T.eq(#b.st.messages, 1)
  T.truthy(b.st.messages[1]:find("differs from the captured"), b.st.messages[1])
  T.eq(b.st.fallback, nil)
end)

T.test("fit with the mock graph equals fit without one (history)", function()
  local function fit(mock)
    local saved_m, saved_f = graph.mock, optim.fused
    graph.mock, optim.fused = mock, true
    local ok, h = pcall(function()
      local m = net()
      m:compile{ optimizer = optim.SGD{ lr = sched, momentum = 0.9 }, loss = "sparse_categorical_crossentropy",
        metrics = { "accuracy" } }
      local loader = image_loader()
      local hist = m:fit(loader, { epochs = 3, verbose = false })
      return { hist = hist, st = require("rn.fit")._last_stepper }
    end)
    graph.mock, optim.fused = saved_m, saved_f
    assert(ok, h)
    return h
  end
  local a, b = fit(false), fit(true)
  T.eq(a.st, nil)
  T.truthy(b.st ~= nil and b.st.captures == 1 and b.st.replays == 12 - graph.warmup - 1,
    "the mock stepper replayed")
  for e = 1, 3 do
    T.eq(b.hist[e].loss, a.hist[e].loss, "epoch " .. e .. " loss")
    T.eq(b.hist[e].accuracy, a.hist[e].accuracy, "epoch " .. e .. " accuracy")
  end
  T.eq(b.st.graph, nil, "closed at the end of fit")
end)

T.test("fit: cuda_graph must be a boolean; false or RN_CUDA_GRAPH=0 keep eager", function()
  local m = net()
  m:compile{ optimizer = optim.SGD{ lr = 0.1 }, loss = "sparse_categorical_crossentropy" }
  local loader = image_loader()
  T.raises(function() m:fit(loader, { epochs = 1, cuda_graph = 1, verbose = false }) end,
    "cuda_graph must be a boolean or nil, got number")
  T.eq(graph.wanted(false, "cuda"), nil)
  T.eq(graph.wanted(nil, "cuda"), os.getenv("RN_CUDA_GRAPH") == "0" and nil or "cuda")
  T.eq(graph.wanted(nil, "cpu"), nil)
end)

T.test("the capture guard refuses host reads and device copies, and only inside", function()
  local t = rn.ones({ 2 })
  T.eq(rn.capture_guard("mock"), nil)
  local ok1, e1 = pcall(function() return t:sum():item() end)
  local ok2, e2 = pcall(function() return t:totable() end)
  T.eq(rn.capture_guard(nil), "mock")
  T.eq(ok1, false)
  T.truthy(tostring(e1):find(":item%(%) inside a captured step %(mock graph capture%)"), tostring(e1))
  T.eq(ok2, false)
  T.truthy(tostring(e2):find(":totable%(%) inside a captured step"), tostring(e2))
  T.eq(t:sum():item(), 2)
  T.raises(function() rn.capture_guard("gpu") end, "kind must be")
end)

T.test("cuda: fit with the whole-step graph equals eager (SGD momentum, 3 epochs)", function()
  if not rn.cuda.is_available() then T.skip("no CUDA device") end
  local function fit(cg)
    local m = net()
    for _, w in ipairs(m:weights()) do rn.no_grad(function() w.tensor:copy_(w.tensor) end) end
    m:to("cuda")
    m:compile{ optimizer = optim.SGD{ lr = sched, momentum = 0.9 }, loss = "sparse_categorical_crossentropy",
      metrics = { "accuracy" } }
    local loader = image_loader()
    local hist = m:fit(loader, { epochs = 3, verbose = false, cuda_graph = cg, device_data = false })
    return hist, require("rn.fit")._last_stepper
  end
  local a = fit(false)
  local b, st = fit(nil)
  T.truthy(st and st.captures == 1, "captured: " .. tostring(st and st.fallback))
  for e = 1, 3 do
    T.truthy(math.abs(b[e].loss - a[e].loss) <= 1e-4 * math.abs(a[e].loss), "epoch " .. e .. " loss")
  end
end)

T.test("the KRSC filter cache's bookkeeping (core/dcache.h): hit, version, offset, variant, clear", function()
  rn._dcache_clear()
  local w = rn.randn({ 3, 3, 4, 8 })
  T.eq(rn._dcache_probe(w, 1), "miss")
  T.eq(rn._dcache_probe(w, 1), "hit", "same weight, same version")
  T.eq(rn._dcache_probe(w, 2), "miss", "another variant (layout, dtype, bf16 math)")
  T.eq(rn._dcache_probe(w, 1), "hit", "both variants kept")
  rn.no_grad(function() w:mul_(0.5) end) -- an in-place change: the optimizer's step does the same
  T.eq(rn._dcache_probe(w, 1), "miss", "a new version")
  T.eq(rn._dcache_probe(w, 1), "hit")
  local same_shape = rn.randn({ 3, 3, 4, 8 })
  T.eq(rn._dcache_probe(same_shape, 1), "miss", "another storage of the same shape")
  local big = rn.randn({ 2, 72 })
  T.eq(rn._dcache_probe(big[1], 1), "miss")
  T.eq(rn._dcache_probe(big[2], 1), "miss", "another offset in the same storage")
  T.eq(rn._dcache_probe(big[1], 1), "hit")
  rn.no_grad(function() big[2]:fill_(1) end) -- the storage's version moves for every view
  T.eq(rn._dcache_probe(big[1], 1), "miss")
  for i = 1, 300 do rn._dcache_probe(rn.zeros({ 1 }), 7) end -- more than the 256 slots
  T.eq(rn._dcache_probe(w, 1), "miss", "the least recently used went")
  rn._dcache_clear()
  T.eq(rn._dcache_probe(same_shape, 1), "miss", "cleared")
end)
