-- test_docs.lua - runs every ```lua block of the user docs (doc/*.md) so the
-- examples stay true. A block must run without error; its asserts are the
-- checks.
local T = require "t"

local docs = {}
local p = io.popen("ls doc/*.md 2>/dev/null")
for f in p:lines() do docs[#docs + 1] = f end
p:close()

for _, path in ipairs(docs) do
  local text = assert(io.open(path)):read("a")
  local n = 0
  for block in text:gmatch("```lua\n(.-)```") do
    n = n + 1
    local k = n
    T.test(path .. " example " .. k, function()
      local fn = assert(load(block, "=" .. path .. "#" .. k, "t"))
      fn()
    end)
  end
end
