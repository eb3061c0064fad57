-- fmnist.lua - a small pure-Lua reader of Fashion-MNIST (gzip IDX files
-- from Debian's dataset-fashion-mnist), for tests only; the runtime's own
-- C reader comes with the data pipeline. Decompresses with `gzip -dc`
-- through io.popen and reads just the first n records.
--
--   local fmnist = require "fmnist"
--   if not fmnist.available() then T.skip(...) end
--   local x, y = fmnist.load(256, {split = "train", pad = 2})
--   -- x: (n, 32, 32, 1) float32 in [0, 1] (28x28 zero-padded by 2); y: (n) int64 in 0..9
local rn = require "rn"

local M = {}

M.dir = "/usr/share/datasets/fashion-mnist"

local function path(split, kind)
  local prefix = split == "test" and "t10k" or "train"
  return string.format("%s/%s-%s-idx%d-ubyte.gz", M.dir, prefix, kind, kind == "images" and 3 or 1)
end

function M.available()
  local f = io.open(path("train", "images"), "rb")
  if f then f:close() end
  return f ~= nil
end

local function be32(s, i)
  local a, b, c, d = s:byte(i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- the header and the first `count` bytes of payload of one gzip IDX file
local function read_idx(file, dims, count)
  local p = assert(io.popen("gzip -dc '" .. file .. "'", "r"))
  local head = p:read(4 + 4 * dims)
  if not head or #head < 4 + 4 * dims then p:close(); error("fmnist: cannot read " .. file) end
  local magic = be32(head, 1)
  if magic ~= 0x800 + dims then p:close(); error(string.format("fmnist: %s: bad magic 0x%x", file, magic)) end
  local shape = {}
  for d = 1, dims do shape[d] = be32(head, 1 + 4 * d) end
  local data = p:read(count)
  p:close()
  if not data or #data < count then error("fmnist: " .. file .. " is shorter than expected") end
  return shape, data
end

--- load(n, {split = "train"|"test", pad = 0}): the first n images and labels.
function M.load(n, opts)
  opts = opts or {}
  local split, pad = opts.split or "train", opts.pad or 0
  local shape, img = read_idx(path(split, "images"), 3, n * 784)
  assert(shape[2] == 28 and shape[3] == 28 and n <= shape[1], "fmnist: unexpected image file shape")
  local _, lab = read_idx(path(split, "labels"), 1, n)
  local pix = {}
  for i = 1, n * 784 do pix[i] = img:byte(i) end
  local labels = {}
  for i = 1, n do labels[i] = lab:byte(i) end
  local x = rn.tensor(pix, { dtype = "uint8" }):float():reshape(n, 28, 28, 1) / 255
  if pad > 0 then
    local s = 28 + 2 * pad
    local big = rn.zeros({ n, s, s, 1 })
    big:narrow(2, pad + 1, 28):narrow(3, pad + 1, 28):copy_(x)
    x = big
  end
  return x, rn.tensor(labels, { dtype = "int64" })
end

return M
