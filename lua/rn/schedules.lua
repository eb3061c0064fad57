-- schedules.lua - learning-rate schedules: each is a function(step) -> lr,
-- where step counts the optimizer steps done so far (0 for the first step).
-- Pass one as an optimizer's lr. They compose: any argument that takes a
-- schedule also takes a number (a constant), and warmup/sequence/scale wrap
-- other schedules.
--
--   step(lr0, step_size, gamma=0.1)      lr0 * gamma^floor(step/step_size)
--   multistep(lr0, milestones, gamma=0.1) lr0 * gamma^(milestones reached); at
--                                          step m the decayed value applies
--   piecewise(boundaries, values)        values[i+1] from step boundaries[i] on
--                                          (Keras' PiecewiseConstantDecay switches
--                                          one step later: step > boundary)
--   exponential(lr0, decay_steps, rate, {staircase=false})  lr0 * rate^(step/decay_steps)
--   cosine(lr0, decay_steps, {alpha=0})  Keras CosineDecay: lr0*((1-alpha)*c + alpha),
--                                          c = (1+cos(pi*min(step,T)/T))/2
--   linear(lr0, lr1, steps)              from lr0 to lr1 over steps, then lr1
--   warmup(base, warmup_steps, {start=0}) linear from start to base(0): step t <
--                                          W gives start + (base(0)-start)*(t+1)/W;
--                                          then base(t - W)
--   sequence{{s1, n1}, {s2, n2}, ..., {sk}}  s1 for n1 steps, then s2 (its own
--                                          step counted from 0), ...
--   scale(s, factor)                     factor * s(step)
--   constant(lr)
--
-- The ResNet recipe (lr 0.1, /10 at 32k and 48k iterations):
--   schedules.multistep(0.1, {32000, 48000})
local M = {}

local function as_fn(s, who)
  if type(s) == "number" then return function() return s end end
  if type(s) == "function" then return s end
  if type(s) == "table" and getmetatable(s) and getmetatable(s).__call then
    return function(t) return s(t) end
  end
  error(string.format("schedules.%s: expected a number or a schedule function(step), got %s", who, type(s)), 3)
end

local function num(v, who, what, min)
  if type(v) ~= "number" or v ~= v or (min and v < min) then
    error(string.format("schedules.%s: %s must be a number%s, got %s", who, what,
      min and (" >= " .. min) or "", tostring(v)), 3)
  end
  return v
end

local function pos_int(v, who, what)
  if math.type(v) ~= "integer" or v < 1 then
    error(string.format("schedules.%s: %s must be an integer >= 1, got %s", who, what, tostring(v)), 3)
  end
  return v
end

function M.constant(lr)
  num(lr, "constant", "lr", 0)
  return function() return lr end
end

function M.step(lr0, step_size, gamma)
  num(lr0, "step", "lr0", 0)
  pos_int(step_size, "step", "step_size")
  gamma = num(gamma or 0.1, "step", "gamma", 0)
  return function(t) return lr0 * gamma ^ (t // step_size) end
end

function M.multistep(lr0, milestones, gamma)
  num(lr0, "multistep", "lr0", 0)
  if type(milestones) ~= "table" then error("schedules.multistep: milestones must be a list of steps", 2) end
  gamma = num(gamma or 0.1, "multistep", "gamma", 0)
  return function(t)
    local k = 0
    for _, m in ipairs(milestones) do if t >= m then k = k + 1 end end
    return lr0 * gamma ^ k
  end
end

function M.piecewise(boundaries, values)
  if type(boundaries) ~= "table" or type(values) ~= "table" or #values ~= #boundaries + 1 then
    error("schedules.piecewise: needs boundaries (n steps) and values (n+1 lrs)", 2)
  end
  for i = 2, #boundaries do
    if boundaries[i] <= boundaries[i - 1] then error("schedules.piecewise: boundaries must increase", 2) end
  end
  return function(t)
    local v = values[1]
    for i, b in ipairs(boundaries) do if t >= b then v = values[i + 1] end end
    return v
  end
end

function M.exponential(lr0, decay_steps, rate, opts)
  num(lr0, "exponential", "lr0", 0)
  pos_int(decay_steps, "exponential", "decay_steps")
  num(rate, "exponential", "rate", 0)
  local stair = opts and opts.staircase
  return function(t)
    local e = t / decay_steps
    if stair then e = math.floor(e) end
    return lr0 * rate ^ e
  end
end

function M.cosine(lr0, decay_steps, opts)
  num(lr0, "cosine", "lr0", 0)
  pos_int(decay_steps, "cosine", "decay_steps")
  local alpha = num((opts and opts.alpha) or 0, "cosine", "alpha", 0)
  return function(t)
    local s = math.min(t, decay_steps)
    local c = 0.5 * (1 + math.cos(math.pi * s / decay_steps))
    return lr0 * ((1 - alpha) * c + alpha)
  end
end

function M.linear(lr0, lr1, steps)
  num(lr0, "linear", "lr0", 0)
  num(lr1, "linear", "lr1", 0)
  pos_int(steps, "linear", "steps")
  return function(t)
    if t >= steps then return lr1 end
    return lr0 + (lr1 - lr0) * t / steps
  end
end

function M.warmup(base, warmup_steps, opts)
  local f = as_fn(base, "warmup")
  pos_int(warmup_steps, "warmup", "warmup_steps")
  local start = num((opts and opts.start) or 0, "warmup", "start", 0)
  return function(t)
    if t < warmup_steps then
      local target = f(0)
      return start + (target - start) * (t + 1) / warmup_steps
    end
    return f(t - warmup_steps)
  end
end

function M.sequence(parts)
  if type(parts) ~= "table" or #parts == 0 then error("schedules.sequence: expects a list of {schedule, steps}", 2) end
  local fs, ends, acc = {}, {}, 0
  for i, p in ipairs(parts) do
    if type(p) ~= "table" then error("schedules.sequence: element " .. i .. " must be {schedule, steps}", 2) end
    fs[i] = as_fn(p[1], "sequence")
    if i < #parts then
      acc = acc + pos_int(p[2], "sequence", "steps of element " .. i)
    else
      acc = math.huge
    end
    ends[i] = acc
  end
  return function(t)
    local start = 0
    for i, e in ipairs(ends) do
      if t < e then return fs[i](t - start) end
      start = e
    end
  end
end

function M.scale(s, factor)
  local f = as_fn(s, "scale")
  num(factor, "scale", "factor")
  return function(t) return factor * f(t) end
end

return M
