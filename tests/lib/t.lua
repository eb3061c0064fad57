-- t.lua - the test harness: T.test registers a test; tests/run.lua runs every
-- registered test and prints "N passed, N failed, N skipped".
local T = { tests = {}, current_file = "?" }

function T.test(name, fn)
  T.tests[#T.tests + 1] = { name = name, fn = fn, file = T.current_file }
end

local SKIP = setmetatable({}, { __tostring = function() return "skip" end })

function T.skip(msg)
  error({ [SKIP] = true, msg = msg }, 0)
end

function T.is_skip(err)
  return type(err) == "table" and err[SKIP] == true
end

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

local function show(v)
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do
      if i > 8 then parts[#parts + 1] = "..."; break end
      parts[#parts + 1] = show(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return tostring(v)
end

local function deep_eq(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

function T.eq(a, b, msg)
  if not deep_eq(a, b) then
    fail(string.format("%sexpected %s, got %s", msg and (msg .. ": ") or "", show(b), show(a)))
  end
end

function T.truthy(v, msg)
  if not v then fail(msg or "expected a true value") end
end

-- flattens a tensor or nested table to a list of numbers
local function flat(v, out)
  out = out or {}
  if type(v) == "number" then out[#out + 1] = v
  elseif type(v) == "table" then for _, x in ipairs(v) do flat(x, out) end
  else
    local rn = require "rn"
    if rn.is_tensor(v) then return flat(v:double():totable(), out) end
    error("near: cannot compare a " .. type(v), 3)
  end
  return out
end

--- T.near(actual, expected, atol, rtol, msg): elementwise |a-e| <= atol + rtol*|e|,
--- shapes must agree for tensors.
function T.near(a, b, atol, rtol, msg)
  atol, rtol = atol or 1e-6, rtol or 1e-5
  local rn = require "rn"
  if rn.is_tensor(a) and rn.is_tensor(b) then
    T.eq(a:size(), b:size(), (msg and msg .. ": " or "") .. "shape")
  end
  local fa, fb = flat(a), flat(b)
  if #fa ~= #fb then fail(string.format("%s%d values vs %d", msg and (msg .. ": ") or "", #fa, #fb)) end
  local worst, wi = -1, 0
  for i = 1, #fa do
    local d = math.abs(fa[i] - fb[i])
    local ok = d <= atol + rtol * math.abs(fb[i]) or (fa[i] ~= fa[i] and fb[i] ~= fb[i])
    if not ok and d > worst then worst, wi = d, i end
  end
  if wi > 0 then
    fail(string.format("%svalue %d: got %.9g, expected %.9g (diff %.3g > atol %g + rtol %g)",
      msg and (msg .. ": ") or "", wi, fa[wi], fb[wi], worst, atol, rtol))
  end
end

--- T.raises(fn, pattern): fn must raise an error whose message matches pattern
--- (a Lua pattern; use plain=true as 3rd arg for plain text).
function T.raises(fn, pattern, plain)
  local ok, err = pcall(fn)
  if ok then fail("expected an error matching '" .. pattern .. "', but none was raised") end
  err = tostring(err)
  if not err:find(pattern, 1, plain) then
    fail("error '" .. err .. "' does not match '" .. pattern .. "'")
  end
  return err
end

return T
