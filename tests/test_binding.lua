-- test_binding.lua - the Lua side of the core: module shape (no globals),
-- userdata metatable, ops as functions and methods, error positions,
-- <close>, garbage collection of tensor memory, the backend support query.
local T = require "t"
local rn = require "rn"

local BIN = os.getenv("RNLUA_BIN") or "./rnlua"

local function run(code)
  local f = os.tmpname()
  local h = io.open(f, "w"); h:write(code); h:close()
  local p = io.popen(BIN .. " " .. f .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  os.remove(f)
  return out, ok
end

T.test("require 'rn' returns a table and defines no globals", function()
  local out = run([[
    local before = {}
    for k in pairs(_G) do before[k] = true end
    local rn = require "rn"
    local x = rn.ones(2) + 1
    for k in pairs(_G) do if not before[k] then print("new global", k) end end
    print(type(rn), rawget(_G, "rn"))
  ]])
  T.eq(out, "table\tnil\n")
end)

T.test("tensors are rn.Tensor userdata with fields and metamethods", function()
  local x = rn.zeros(2, 3)
  T.eq(type(x), "userdata")
  T.eq(getmetatable(x).__name, "rn.Tensor")
  for _, m in ipairs({"__gc", "__close", "__index", "__tostring", "__len", "__add", "__sub",
                      "__mul", "__div", "__unm", "__pow", "__newindex"}) do
    T.truthy(getmetatable(x)[m], m)
  end
  T.eq(x.shape, {2, 3}); T.eq(x.ndim, 2); T.eq(x.dtype, "float32"); T.eq(x.device, "cpu")
  T.eq(x.requires_grad, false); T.eq(x.nosuchfield, nil)
  T.raises(function() x.dtype = "float64" end, "cannot set field 'dtype'")
  T.truthy(rn.is_tensor(x)); T.eq(rn.is_tensor({}), false)
end)

T.test("every op is a function rn.op and a method x:op", function()
  local x = rn.ones(2, 2)
  for _, name in ipairs({"add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "relu",
      "abs", "tanh", "sigmoid", "maximum", "minimum", "sum", "mean", "max", "min", "argmax",
      "reshape", "permute", "transpose", "narrow", "select", "contiguous", "clone", "detach",
      "item", "totable", "fill_", "copy_", "backward", "eq", "lt", "gt"}) do
    T.eq(type(rn[name]), "function", "rn." .. name)
    T.eq(type(x[name]), "function", "x:" .. name)
  end
  T.eq(rn.sum(x):item(), x:sum():item())
  T.eq(rn.reshape(x, 4):size(), {4})
end)

T.test("errors point at the caller's line", function()
  local err = T.raises(function() return rn.ones(2) + rn.ones(3) end, "do not broadcast")
  local line = debug.getinfo(1, "l").currentline - 1
  T.truthy(err:find("test_binding.lua:" .. line .. ":", 1, true), err)
  local out, ok = run("local rn = require 'rn'\n\nlocal y = rn.ones(2):sum(5)\n")
  T.eq(ok, nil); T.truthy(out:find(":3: sum: dim 5 out of range 1..1", 1, true), out)
  T.truthy(out:find("stack traceback", 1, true), "traceback printed")
end)

T.test("<close> frees a tensor at scope end; using it after is an error", function()
  local keep
  do
    local t <close> = rn.ones(1000)
    keep = t
    T.eq(t:numel(), 1000)
  end
  T.raises(function() return keep:numel() end, "closed tensor")
  T.truthy(tostring(keep):find("closed", 1, true))
end)

local function rss_mb()
  local f = io.open("/proc/self/statm")
  if not f then return nil end
  local _, res = f:read("n", "n")
  f:close()
  return res * 4096 / 2^20
end

T.test("tensor memory is reclaimed by the collector (C memory is reported to Lua)", function()
  if not rss_mb() then T.skip("no /proc/self/statm") end
  collectgarbage()
  local base = rss_mb()
  for _ = 1, 100 do
    local t = rn.ones(10 * 2^20) -- 40 MB each, 4 GB in all
    t = t + 1
  end
  local grown = rss_mb() - base
  T.truthy(grown < 1200, string.format("RSS grew by %.0f MB", grown))
end)

T.test("the CPU backend fills every kernel slot", function()
  for _, slot in ipairs(rn.backend_slots()) do
    T.truthy(rn.backend_supports("cpu", slot), "cpu lacks " .. slot)
  end
  T.eq(rn.backend_supports("cpu", "no_such_slot"), false)
end)

T.test("threads setting and its range", function()
  local n = rn.get_num_threads()
  T.truthy(n >= 1)
  rn.set_num_threads(1); T.eq(rn.get_num_threads(), 1)
  rn.set_num_threads(n)
  T.raises(function() rn.set_num_threads(0) end, "set_num_threads: 0 outside 1..1024")
end)

T.test("cuda on a host without a device is a clear error, and the CPU keeps working", function()
  if rn.cuda.is_available() then T.skip("a CUDA device is present") end
  T.eq(type(rn.cuda.why_unavailable()), "string")
  T.raises(function() return rn.ones(2):cuda() end, "cuda")
  T.raises(function() return rn.ones(2, {device = "cuda"}) end, "cuda")
  T.eq((rn.ones(2) + 1):totable(), {2, 2})
end)

-- tostring reads only the elements it shows: past 1000 elements, the first and
-- last 3 of each dim longer than 6, gathered corner by corner
T.test("tostring summarizes big tensors from their corners, over any view", function()
  local x = rn.arange(0, 2000):reshape({20, 100})
  local s = tostring(x)
  T.eq(s:match("^[^\n]*"), "rn.Tensor (20,100) float32 cpu")
  T.truthy(s:find("[[   0.,    1.,    2., ...,   97.,   98.,   99.],\n", 1, true), s)
  T.truthy(s:find(" ...,\n [1700., 1701., 1702., ..., 1797., 1798., 1799.],", 1, true), s)
  local last = "[1900., 1901., 1902., ..., 1997., 1998., 1999.]]"
  T.eq(s:sub(-#last), last)
  -- a transposed view: its corners, not the storage's
  local tv = tostring(rn.arange(0, 5000):reshape({5, 10, 100}):transpose(1, 3))
  T.truthy(tv:find("[[[   0., 1000., 2000., 3000., 4000.],", 1, true), tv)
  T.truthy(tv:find("[ 999., 1999., 2999., 3999., 4999.]]]", 1, true), tv)
  -- 2^40 elements of one stored float: printed without touching the rest
  local big = rn.full({1}, 7):expand({1 << 40})
  T.eq(tostring(big), "rn.Tensor (1099511627776) float32 cpu\n[7., 7., 7., ..., 7., 7., 7.]")
  -- small tensors and dims of 6 or less are whole
  T.eq(tostring(rn.arange(0, 6)), "rn.Tensor (6) float32 cpu\n[0., 1., 2., 3., 4., 5.]")
  local w = tostring(rn.arange(0, 1200):reshape({200, 6}))
  T.truthy(w:find("[[   0.,    1.,    2.,    3.,    4.,    5.],", 1, true), w)
end)
