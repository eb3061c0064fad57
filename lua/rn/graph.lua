-- graph.lua - issue 19: whole-step graphs for fit on the GPU. A Stepper
-- runs model:train_step for the first `warmup` batches (eager: every cuDNN
-- plan, workspace and optimizer state made), then captures one whole step
-- (forward, loss, backward, optimizer) into a CUDA graph over static input
-- buffers and replays it for every later batch of the same shapes:
--
--   per replay: x, y copied into the static buffers (device to device);
--               opt:_graph_advance() writes {lr, step} of each parameter
--               group into its device scalars (the fused optimizer reads
--               them, core/optim_math.h) and keeps opt's counters; launch;
--               logs read from the static loss and prediction afterwards.
--
-- Falls back to eager, with one message (stderr, and stepper.fallback),
-- when anything forbids capture: a layer whose step is not capturable
-- (Dropout: its mask would be frozen in the graph), a parameter group the
-- one-launch optimizer does not take, a host read (:item(), printing, a
-- host copy: refused by core/capture.h's guard), any error of the capture
-- or instantiation. A batch whose shapes differ from the captured ones (the
-- last, short batch of an epoch) runs eagerly, said once. After a failed
-- capture nothing has run on the device: the step is run eagerly and the
-- optimizer's counters restored, so the results are those of eager.
--
-- Switches: fit{cuda_graph = false} or $RN_CUDA_GRAPH=0 (eager, the path
-- before issue 19); M.warmup (2). Backends: "cuda" (core/cuda/graph.c) and
-- "mock" (CPU, for tests: the capture runs the step eagerly under the same
-- guard, a replay runs it again; M.mock = true makes fit use it on the CPU).
local rn = setmetatable({}, { __index = function(t, k)
  local real = require "rn"
  setmetatable(t, { __index = real })
  return real[k]
end })

local M = { warmup = 2, mock = false }

local NOT_CAPTURABLE = { Dropout = "Dropout (its random mask would be frozen in the graph)" }

local function core() return require "rn.core" end

-- backend: begin(), finish(fn_result) -> graph, abort(), launch(graph), destroy(graph);
-- runs_on_capture: the capture itself executed the step (the mock)
local BACKENDS = {
  cuda = {
    begin = function() core().cuda_graph_begin() end,
    finish = function() return core().cuda_graph_end() end,
    abort = function() core().cuda_graph_abort() end,
    launch = function(g) g:launch() end,
    destroy = function(g) g:destroy() end,
  },
  mock = {
    runs_on_capture = true,
    begin = function() core().capture_guard("mock") end,
    finish = function(run) core().capture_guard(nil); return { run = run, launches = 0 } end,
    abort = function() core().capture_guard(nil) end,
    launch = function(g) g.launches = g.launches + 1; g.run() end,
    destroy = function() end,
  },
}
M.backends = BACKENDS

local function sig(t) return t.dtype .. ":" .. t.device .. ":" .. table.concat(t:size(), "x") end

local function say(self, msg)
  self.messages[#self.messages + 1] = msg
  if not self.quiet then io.stderr:write(msg, "\n") end
end

--- M.wanted(opt_value, device): the backend name fit uses, or nil (eager).
function M.wanted(v, dev)
  if v == false or os.getenv("RN_CUDA_GRAPH") == "0" then return nil end
  if dev == "cuda" then return "cuda" end
  if M.mock or v == "mock" then return "mock" end
  return nil
end

--- M.Stepper(model, backend_name, {warmup =, quiet =}) -> stepper with
--- :step(x, y) -> logs (as model:train_step) and :close().
function M.Stepper(model, backend, o)
  o = o or {}
  local self = { model = model, be = assert(BACKENDS[backend], "unknown graph backend"),
    backend = backend, warmup = math.max(1, o.warmup or M.warmup), quiet = o.quiet,
    state = "warmup", eager_steps = 0, replays = 0, captures = 0, messages = {} }
  for _, l in ipairs(model.layers or {}) do
    local why = NOT_CAPTURABLE[l.class_name or ""]
    if why then self.state, self.fallback = "eager", "the model has a " .. why end
  end
  return setmetatable(self, { __index = M })
end

function M:_off(reason)
  self.state, self.fallback = "eager", reason
  say(self, "fit: whole-step graph off (" .. reason .. "); every step runs eagerly")
end

-- the step with no host read: returns the reported loss (device) and pred
function M:_device_step(x, y)
  local model, opt = self.model, self.model.optimizer
  opt:zero_grad()
  local pred = model(x, { training = true })
  local loss = model.loss_fn(pred, y)
  local plan = model:_l2_plan()
  local total = loss
  if plan then
    total = rn.no_grad(function() return loss + rn.l2_penalty_multi(plan.tensors, plan.factors) end)
    opt._l2 = plan.by_tensor
  elseif model:_has_regularizers() then
    loss = loss + model:regularization_loss()
    total = loss
  end
  loss:backward()
  local ok, e = pcall(opt.step, opt)
  opt._l2 = nil
  if not ok then error(e, 0) end
  return total, pred
end

function M:_logs(total, pred, y)
  local logs = { loss = total:item() }
  rn.no_grad(function()
    for _, m in ipairs(self.model.metric_fns) do logs[m.name] = m.fn(pred, y) end
  end)
  return logs
end

function M:_capture(x, y)
  local model, opt = self.model, self.model.optimizer
  self.xs = rn.no_grad(function() return x:clone() end)
  self.ys = rn.no_grad(function() return y:clone() end)
  self.sig = sig(x) .. "|" .. sig(y)
  local saved = opt:_graph_save()
  opt:_graph_on()
  opt:_graph_advance()
  local be = self.be
  local out = {}
  local ok, err = pcall(function()
    be.begin()
    local ok2, e2 = pcall(function()
      local total, pred = self:_device_step(self.xs, self.ys)
      out.total, out.pred = total, pred
    end)
    if not ok2 then be.abort(); error(e2, 0) end
    out.graph = be.finish(function()
      local total, pred = self:_device_step(self.xs, self.ys)
      out.total, out.pred = total, pred
    end)
  end)
  if not ok then
    opt:_graph_off()
    opt:_graph_restore(saved)
    self.xs, self.ys = nil, nil
    self:_off("the capture failed: " .. tostring(err):gsub("^[^:]*:%d+: ", ""))
    return self:_eager(x, y)
  end
  self.graph, self.out, self.state = out.graph, out, "replay"
  self.captures = self.captures + 1
  if not be.runs_on_capture then be.launch(self.graph) end
  return self:_logs(out.total, out.pred, self.ys)
end

function M:_replay(x, y)
  local opt = self.model.optimizer
  rn.no_grad(function()
    self.xs:copy_(x)
    self.ys:copy_(y)
  end)
  opt:_graph_advance()
  self.be.launch(self.graph)
  self.replays = self.replays + 1
  return self:_logs(self.out.total, self.out.pred, self.ys)
end

function M:_eager(x, y)
  self.eager_steps = self.eager_steps + 1
  local opt = self.model.optimizer
  local on = opt._graph
  if on then opt:_graph_off() end
  local ok, logs = pcall(self.model.train_step, self.model, x, y)
  if on then opt:_graph_on() end
  if not ok then error(logs, 0) end
  return logs
end

--- stepper:step(x, y): one training step; the logs as model:train_step's.
function M:step(x, y)
  if self.state == "eager" then return self:_eager(x, y) end
  if self.state == "warmup" then
    local s = sig(x) .. "|" .. sig(y)
    if self.wsig and self.wsig ~= s then self.wcount = 0 end -- warm up on the shapes to capture
    self.wsig = s
    self.wcount = (self.wcount or 0) + 1
    if self.wcount <= self.warmup then return self:_eager(x, y) end
    return self:_capture(x, y)
  end
  if sig(x) .. "|" .. sig(y) ~= self.sig then
    if not self.said_shape then
      self.said_shape = true
      say(self, string.format("fit: a batch of shapes %s differs from the captured %s; such batches run eagerly",
        sig(x) .. "|" .. sig(y), self.sig))
    end
    return self:_eager(x, y)
  end
  return self:_replay(x, y)
end

--- stepper:close(): destroys the graph (its memory pool goes back).
function M:close()
  if self.graph then self.be.destroy(self.graph) end
  self.graph, self.out, self.xs, self.ys = nil, nil, nil, nil
  local opt = self.model.optimizer
  if opt and opt._graph then opt:_graph_off() end
end

return M
