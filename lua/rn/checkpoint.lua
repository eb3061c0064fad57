-- rn.checkpoint: checkpoints holding tensors plus a metadata table (epoch,
-- step, RNG state, optimizer hyperparameters, data position...). The tensors
-- go through rn.core.save_checkpoint (RNCKPT01, doc/checkpoint_format.md);
-- the metadata table is written as text in a small literal syntax and read
-- back by the parser below, never by load(): a checkpoint is data only.
--
--   local ckpt = require "rn.checkpoint"
--   ckpt.save(path, {tensors = {w = w}, meta = {epoch = 3, lr = 0.1}})
--   local c = ckpt.load(path)   -- c.tensors.w, c.meta.epoch
--
-- Metadata values: strings, numbers (integers stay integers, floats keep
-- every bit, inf and nan included), booleans and nested tables of those;
-- keys: strings or integers. Cycles, functions, userdata are refused.
local core = require "rn.core"

local M = {}
local HEADER = "rnmeta 1\n"
local MAX_DEPTH = 64

-- ---- encoding ---------------------------------------------------------------

local function enc_string(s)
  return '"' .. s:gsub('[%c"\\\128-\255]', function(c)
    return string.format("\\%03d", c:byte())
  end) .. '"'
end

local function enc_number(x)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  local s = string.format("%.17g", x)
  if not s:find("[%.eEn]") then s = s .. ".0" end -- stays a float when read back
  return s
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta == "number" end
  return a < b
end

local function encode(v, out, seen, depth, path)
  local t = type(v)
  if t == "string" then out[#out + 1] = enc_string(v)
  elseif t == "number" then out[#out + 1] = enc_number(v)
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "table" then
    if seen[v] then error("checkpoint meta: " .. path .. " is a cycle", 0) end
    if depth >= MAX_DEPTH then error("checkpoint meta: nesting deeper than " .. MAX_DEPTH, 0) end
    seen[v] = true
    local keys = {}
    for k in pairs(v) do
      if type(k) == "number" and math.type(k) ~= "integer" then
        error("checkpoint meta: " .. path .. " has a float key " .. tostring(k), 0)
      elseif type(k) ~= "number" and type(k) ~= "string" then
        error("checkpoint meta: " .. path .. " has a " .. type(k) .. " key", 0)
      end
      keys[#keys + 1] = k
    end
    table.sort(keys, key_order)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = "[" .. (type(k) == "string" and enc_string(k) or enc_number(k)) .. "]="
      encode(v[k], out, seen, depth + 1, path .. "[" .. tostring(k) .. "]")
    end
    out[#out + 1] = "}"
    seen[v] = nil
  else
    error("checkpoint meta: " .. path .. " is a " .. t .. " (only strings, numbers, booleans "
      .. "and tables are saved)", 0)
  end
end

--- Serializes a metadata table to the text stored in a checkpoint.
function M.encode(meta)
  local out = { HEADER }
  encode(meta == nil and {} or meta, out, {}, 0, "meta")
  return table.concat(out)
end

-- ---- decoding (a parser, not load()) ---------------------------------------

local function perr(pos, msg)
  error(string.format("checkpoint meta: %s at byte %d", msg, pos), 0)
end

local function dec_value(s, i, depth)
  local c = s:sub(i, i)
  if c == '"' then
    local j, parts = i + 1, {}
    while true do
      local a, b = s:find('["\\]', j)
      if not a then perr(i, "unterminated string") end
      parts[#parts + 1] = s:sub(j, a - 1)
      if s:sub(a, a) == '"' then return table.concat(parts), a + 1 end
      local d = s:match("^%d%d%d", a + 1)
      if not d or tonumber(d) > 255 then perr(a, "bad escape") end
      parts[#parts + 1] = string.char(tonumber(d))
      j = a + 4
    end
  elseif c == "{" then
    if depth >= MAX_DEPTH then perr(i, "nesting too deep") end
    local t, j = {}, i + 1
    if s:sub(j, j) == "}" then return t, j + 1 end
    while true do
      if s:sub(j, j) ~= "[" then perr(j, "expected '['") end
      local k
      k, j = dec_value(s, j + 1, depth + 1)
      if type(k) ~= "string" and math.type(k) ~= "integer" then perr(j, "bad key") end
      if s:sub(j, j + 1) ~= "]=" then perr(j, "expected ']='") end
      if t[k] ~= nil then perr(j, "duplicate key " .. tostring(k)) end
      t[k], j = dec_value(s, j + 2, depth + 1)
      local d = s:sub(j, j)
      if d == "}" then return t, j + 1 end
      if d ~= "," then perr(j, "expected ',' or '}'") end
      j = j + 1
    end
  else
    local tok = s:match("^[%w%.%+%-]+", i)
    if not tok then perr(i, "unexpected character") end
    local v
    if tok == "true" then v = true
    elseif tok == "false" then v = false
    elseif tok == "nan" then v = 0 / 0
    elseif tok == "inf" then v = math.huge
    elseif tok == "-inf" then v = -math.huge
    elseif tok:match("^%-?%d+$") then
      v = math.tointeger(tonumber(tok))
      if not v then perr(i, "integer out of range") end
    elseif tok:match("^%-?%d+%.%d*[eE]?[%+%-]?%d*$") or tok:match("^%-?%d+[eE][%+%-]?%d+$") then
      v = tonumber(tok) -- has a '.' or an exponent: a float (-0.0 kept)
    end
    if v == nil then perr(i, "bad token '" .. tok:sub(1, 20) .. "'") end
    return v, i + #tok
  end
end

--- Parses text written by encode back into a table.
function M.decode(text)
  if type(text) ~= "string" then error("checkpoint meta: expected a string", 2) end
  if text == "" then return {} end
  if text:sub(1, #HEADER) ~= HEADER then
    error("checkpoint meta: missing the '" .. HEADER:sub(1, -2) .. "' header", 2)
  end
  local v, j = dec_value(text, #HEADER + 1, 0)
  if j ~= #text + 1 then perr(j, "trailing characters") end
  return v
end

-- ---- files -------------------------------------------------------------------

--- ckpt.save(path, {tensors = {name = tensor}, meta = table}[, {level = 1}]):
--- written atomically (temp file, fsync, rename, fsync the folder).
function M.save(path, c, opts)
  if type(path) ~= "string" then error("checkpoint.save: path must be a string", 2) end
  if type(c) ~= "table" then error("checkpoint.save: expected {tensors = ..., meta = ...}", 2) end
  for k in pairs(c) do
    if k ~= "tensors" and k ~= "meta" then
      error("checkpoint.save: unknown field '" .. tostring(k) .. "' (valid: tensors, meta)", 2)
    end
  end
  local ok, text = pcall(M.encode, c.meta)
  if not ok then error(text, 2) end
  core.save_checkpoint(path, c.tensors or {}, text, opts)
end

--- ckpt.load(path) -> {tensors = {name = tensor}, meta = table}
function M.load(path)
  local tensors, text = core.load_checkpoint(path)
  local ok, meta = pcall(M.decode, text)
  if not ok then error(path .. ": " .. meta, 2) end
  return { tensors = tensors, meta = meta }
end

return M
