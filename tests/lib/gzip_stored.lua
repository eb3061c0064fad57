-- gzip_stored.lua - gzip of a string in stored (level-0) deflate blocks, so
-- that its bytes appear as they are (tests flip a pixel or the CRC of an
-- archive and expect the readers to notice), and the CRC-32 it ends with.
--   local gz = require "gzip_stored"
--   gz.encode(s) -> gzip bytes; gz.crc32(s) -> integer
local M = {}

local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1) == 1 and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[i] = c
end

function M.crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

function M.encode(s)
  local out, i = {"\31\139\8\0\0\0\0\0\0\255"}, 1
  repeat
    local chunk = s:sub(i, i + 65534)
    i = i + #chunk
    out[#out + 1] = string.pack("<BI2I2", i > #s and 1 or 0, #chunk, (~#chunk) & 0xFFFF) .. chunk
  until i > #s
  out[#out + 1] = string.pack("<I4I4", M.crc32(s), #s & 0xFFFFFFFF)
  return table.concat(out)
end

return M
