-- progress.lua - a Keras-like progress bar for training and evaluation.
-- On a terminal it redraws one line in place:
--   Epoch 3/10
--   120/391 [=======>.............] - ETA: 1:02 - loss: 0.5123 - accuracy: 0.8123 - 850 img/s
-- When output is not a terminal (a log file, CI) it prints a plain line at a
-- steady interval while the epoch runs (every 30 s by default: interval=,
-- or RN_PROGRESS_INTERVAL seconds; 0 turns them off), so a long epoch is
-- never silent in a log:
--   Epoch 3/10 - step 120/391 - 0:35 - ETA: 1:19 - loss: 0.5123 - accuracy: 0.8123 - 850 img/s
-- and one clean line when it ends:
--   Epoch 3/10 - 391/391 - 46s - loss: 0.5123 - accuracy: 0.8123 - val_loss: ... - 850 img/s
local rn = require "rn.core"

local Progress = {}
Progress.__index = Progress

local function fmt_time(s)
  s = math.max(0, math.floor(s + 0.5))
  if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  return string.format("%d:%02d", s // 60, s % 60)
end

local function fmt_values(values, order)
  local parts = {}
  for _, k in ipairs(order) do
    local v = values[k]
    if v ~= nil then parts[#parts + 1] = string.format("%s: %.4f", k, v) end
  end
  return table.concat(parts, " - ")
end

local function default_interval()
  local v = tonumber(os.getenv("RN_PROGRESS_INTERVAL") or "")
  return (v and v >= 0) and v or 30
end

--- Progress.new{total=steps, title="Epoch 1/10", out=io.stdout, tty=auto, width=30,
---   interval=30 (seconds between the lines of a non-terminal; 0: none)}
function Progress.new(o)
  local self = setmetatable({}, Progress)
  self.total = o.total
  self.title = o.title
  self.out = o.out or io.stdout
  if o.tty == nil then self.tty = (self.out == io.stdout) and rn._isatty(1) else self.tty = o.tty end
  self.interval = o.interval or default_interval()
  self.width = o.width or 30
  self.t0 = rn._clock()
  self.last_draw = -1
  self.order = {}
  self.samples = 0
  if self.tty and self.title then self.out:write(self.title, "\n") end
  return self
end

local function remember_order(self, values)
  local seen = {}
  for _, k in ipairs(self.order) do seen[k] = true end
  local keys = {}
  for k in pairs(values) do if not seen[k] then keys[#keys + 1] = k end end
  table.sort(keys, function(a, b)
    -- training values before validation ones; in each, loss first
    local va, vb = a:match("^val_") and 1 or 0, b:match("^val_") and 1 or 0
    if va ~= vb then return va < vb end
    local ba, bb = a:gsub("^val_", ""), b:gsub("^val_", "")
    if (ba == "loss") ~= (bb == "loss") then return ba == "loss" end
    return a < b
  end)
  for _, k in ipairs(keys) do self.order[#self.order + 1] = k end
end

--- :update(step, values, samples_done): values are running averages.
function Progress:update(step, values, samples)
  self.samples = samples or self.samples
  remember_order(self, values)
  if not self.tty then
    if self.interval <= 0 or step >= self.total then return end
    local now = rn._clock()
    local since = self.last_draw < 0 and self.t0 or self.last_draw
    if now - since < self.interval then return end
    self.last_draw = now
    local elapsed = now - self.t0
    local eta = step > 0 and elapsed / step * (self.total - step) or 0
    self.out:write(string.format("%sstep %d/%d - %s - ETA: %s - %s - %.0f img/s\n",
      self.title and (self.title .. " - ") or "", step, self.total, fmt_time(elapsed), fmt_time(eta),
      fmt_values(values, self.order), elapsed > 0 and self.samples / elapsed or 0))
    self.out:flush()
    return
  end
  local now = rn._clock()
  if step < self.total and now - self.last_draw < 0.1 then return end -- at most 10 redraws/s
  self.last_draw = now
  local elapsed = now - self.t0
  local frac = self.total > 0 and step / self.total or 1
  local filled = math.floor(self.width * frac)
  local bar = string.rep("=", math.max(filled - 1, 0)) .. (filled > 0 and (frac < 1 and ">" or "=") or "")
  bar = bar .. string.rep(".", self.width - #bar)
  local digits = #tostring(self.total)
  local eta = step > 0 and elapsed / step * (self.total - step) or 0
  local speed = elapsed > 0 and self.samples / elapsed or 0
  local line = string.format("%" .. digits .. "d/%d [%s] - %s %s - %s - %.0f img/s", step, self.total,
    bar, step < self.total and "ETA:" or "", step < self.total and fmt_time(eta) or fmt_time(elapsed),
    fmt_values(values, self.order), speed)
  self.out:write("\r", line, "\027[K")
  self.out:flush()
end

--- :finish(values): ends the epoch's line (values may include val_*).
function Progress:finish(values)
  remember_order(self, values)
  local elapsed = rn._clock() - self.t0
  local speed = elapsed > 0 and self.samples / elapsed or 0
  local tail = string.format("%s - %.0f img/s", fmt_values(values, self.order), speed)
  if self.tty then
    self.out:write("\r", string.format("%d/%d - %s - %s", self.total, self.total, fmt_time(elapsed), tail), "\027[K\n")
  else
    self.out:write(string.format("%s%d/%d - %s - %s\n", self.title and (self.title .. " - ") or "",
      self.total, self.total, fmt_time(elapsed), tail))
  end
  self.out:flush()
  return elapsed
end

return Progress
