-- test_anomaly.lua - anomaly mode (rn.set_anomaly): a non-finite value made
-- by an op's forward raises an error naming the op and the Lua line of the
-- call; in backward, the node's op and its forward line. Values that were
-- already non-finite in the inputs, or made on purpose (rn.tensor), pass.
local T = require "t"
local rn = require "rn"

local function line() return debug.getinfo(2, "l").currentline end

-- runs fn with anomaly mode on, and turns it off whatever happens
local function anomaly(fn)
  local prev = rn.set_anomaly(true)
  local ok, err = pcall(fn)
  rn.set_anomaly(prev)
  if not ok then error(err, 0) end
end

T.test("off by default: non-finite results pass silently", function()
  T.eq(rn.is_anomaly_enabled(), false)
  local y = rn.log(rn.tensor({-1}))
  T.truthy(y:item() ~= y:item())
end)

T.test("set_anomaly returns the previous setting", function()
  T.eq(rn.set_anomaly(true), false)
  T.eq(rn.is_anomaly_enabled(), true)
  T.eq(rn.set_anomaly(false), true)
  T.eq(rn.is_anomaly_enabled(), false)
  T.raises(function() rn.set_anomaly(1) end, "boolean expected")
end)

T.test("log(-1) names the op and the line of the call", function()
  anomaly(function()
    local x = rn.tensor({-1, 2})
    local l
    local err = T.raises(function() l = line(); return rn.log(x) end, "anomaly: log produced nan at ")
    T.truthy(err:find("test_anomaly.lua:" .. l, 1, true), err)
    T.raises(function() return x:log() end, "anomaly: log produced nan")
  end)
end)

T.test("0/0 and inf-inf are caught; exp overflow is inf", function()
  anomaly(function()
    local z = rn.tensor({0, 1})
    T.raises(function() return z / z end, "anomaly: %w+ produced nan at .*test_anomaly.lua:%d+")
    local inf = rn.tensor({math.huge, 1})
    T.raises(function() return inf - inf end, "anomaly: %w+ produced nan")
    T.raises(function() return rn.exp(rn.tensor({1000})) end, "anomaly: exp produced inf")
  end)
end)

T.test("made on purpose or carried over: no error", function()
  anomaly(function()
    local inf = rn.tensor({math.huge, 0 / 0}) -- no tensor input: not checked
    local y = inf * 2                           -- inf and nan carried over
    T.eq(y:size(), {2})
    T.eq(rn.concat({inf, inf}):size(), {4})     -- tensors in a table argument count
    T.eq(rn.full({2}, 0 / 0):size(), {2})
    local x = rn.tensor({1, 2}, {requires_grad = true})
    local s = (x * x):sum()
    s:backward()
    T.eq(x.grad:totable(), {2, 4})
  end)
end)

T.test("backward names the node's op and its forward line", function()
  anomaly(function()
    local x = rn.tensor({0, 4}, {requires_grad = true})
    local l = line(); local y = rn.sqrt(x) -- forward fine; d/dx at 0 is inf
    local err = T.raises(function() y:sum():backward() end,
                         "anomaly: backward of sqrt %(forward at .*test_anomaly.lua:%d+%) produced inf")
    T.truthy(err:find("test_anomaly.lua:" .. l .. ")", 1, true), err)
  end)
end)

T.test("an op called inside the rn library names the user's line too", function()
  local layers = require "rn.layers"
  rn.manual_seed(1)
  anomaly(function()
    local d = layers.Dense(16)
    local x = rn.full({1, 64}, 3e38)
    local l
    local ok, err = pcall(function() l = line(); return d(x) end)
    if ok then T.skip("Dense did not overflow with this seed") end
    err = tostring(err)
    T.truthy(err:find("^anomaly: %w+ produced inf at "), err)
    T.truthy(err:find("test_anomaly.lua:" .. l .. " (in rn/layers/core.lua:", 1, true), err)
  end)
end)

T.test("off again: no checks", function()
  T.eq(rn.is_anomaly_enabled(), false)
  local z = rn.tensor({0})
  T.truthy(((z / z):item()) ~= 0)
end)
