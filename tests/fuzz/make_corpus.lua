-- make_corpus.lua - writes the seed corpora of the fuzz targets into
-- tests/fuzz/corpus/<target>/ with rnlua's own writers (checkpoints,
-- safetensors) and by hand (IDX, CIFAR-10 records, ustar archives via the
-- tar and gzip programs). Run from the repository root:
--   ./rnlua tests/fuzz/make_corpus.lua
-- The seeds are committed; rerun only when a format changes.
local core = require("rn.core")
local root = "tests/fuzz/corpus"

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "command failed: " .. cmd)
end

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

for _, d in ipairs({"ckpt", "safetensors", "idx", "cifar", "tensor"}) do
  sh("rm -rf " .. root .. "/" .. d .. " && mkdir -p " .. root .. "/" .. d)
end
local tmp = os.tmpname()

-- ---- checkpoints and safetensors ------------------------------------------
local sets = {
  one = {w = core.tensor({{1, 2, 3}, {4, 5, 6}})},
  dtypes = {
    a = core.tensor({1.5, -2, 0}, {dtype = "float64"}),
    b = core.tensor({{1, 2}, {3, 255}}, {dtype = "uint8"}),
    c = core.tensor({-7, 9}, {dtype = "int32"}),
    d = core.tensor({1, 2, 3, 4}, {dtype = "int64"}),
    e = core.tensor({0.5, 1.5}, {dtype = "bfloat16"}),
    f = core.tensor({0.25, -4}, {dtype = "float16"}),
  },
  scalar = {s = core.tensor(3.25), z = core.zeros({0, 3})},
  empty = {},
  layer = {["layer1.weight"] = core.ones({4, 3}), ["layer1.bias"] = core.zeros({4}),
           ["bn.running_mean"] = core.full({4}, 0.5)},
}
for name, set in pairs(sets) do
  core.save_checkpoint(root .. "/ckpt/" .. name, set, '{"step":12,"epoch":1}')
  core.save_checkpoint(root .. "/ckpt/" .. name .. "_l0", set, "", {level = 0})
  core.save_checkpoint(root .. "/ckpt/" .. name .. "_l9", set, "meta", {level = 9})
  core.save_safetensors(root .. "/safetensors/" .. name, set)
  core.save_safetensors(root .. "/safetensors/" .. name .. "_meta", set,
                        {format = "pt", step = 3})
end

-- regressions (issue 16): a shape past the element cap behind a zero dim
-- names the file and entry; an empty tensor name is refused
local function st_file(hdr, data) return string.pack("<I8", #hdr) .. hdr .. (data or "") end
write(root .. "/safetensors/regress_shape_past_cap",
      st_file('{"zz":{"dtype":"F32","shape":[0,2097152,2097152],"data_offsets":[0,0]}}'))
write(root .. "/safetensors/regress_empty_name",
      st_file('{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', string.pack("<f", 1)))
do
  core.save_checkpoint(tmp, {zz = core.zeros({0, 2, 2})}, "")
  local b = read(tmp)
  local at = assert(b:find(string.pack("<i8i8i8", 0, 2, 2), 1, true))
  b = b:sub(1, at - 1) .. string.pack("<i8i8i8", 0, 1 << 21, 1 << 21) .. b:sub(at + 24)
  write(root .. "/ckpt/regress_shape_past_cap", b)
end

-- ---- IDX (plain and gzip) -------------------------------------------------
local function be32(v) return string.pack(">I4", v) end
local labels = be32(0x801) .. be32(6) .. string.char(0, 1, 2, 9, 3, 7)
local px = {}
for i = 1, 2 * 4 * 3 do px[i] = string.char((i * 37) % 256) end
local images = be32(0x803) .. be32(2) .. be32(4) .. be32(3) .. table.concat(px)
local empty_labels = be32(0x801) .. be32(0)
for name, bytes in pairs({labels = labels, images = images, empty = empty_labels}) do
  write(root .. "/idx/" .. name, bytes)
  write(tmp, bytes)
  sh("gzip -n -c " .. tmp .. " > " .. root .. "/idx/" .. name .. ".gz")
end

-- ---- CIFAR-10: first byte = mode (bit 0: .bin, bit 1: train split) --------
local function record(label)
  local t = {string.char(label)}
  for i = 1, 3072 do t[#t + 1] = string.char((i * 7 + label) % 256) end
  return table.concat(t)
end
write(root .. "/cifar/bin1", string.char(1) .. record(3))
write(root .. "/cifar/bin2", string.char(1) .. record(0) .. record(9))
local dir = tmp .. ".d"
sh("mkdir -p " .. dir .. "/cifar-10-batches-bin")
write(dir .. "/cifar-10-batches-bin/test_batch.bin", record(5))
for i = 1, 5 do write(dir .. "/cifar-10-batches-bin/data_batch_" .. i .. ".bin", record(i)) end
local tar = "tar --format=ustar --owner=0 --group=0 --numeric-owner --mtime=@0 -C " .. dir
sh(tar .. " -cf " .. tmp .. ".tar cifar-10-batches-bin/test_batch.bin")
write(root .. "/cifar/tar_test", string.char(0) .. read(tmp .. ".tar"))
sh("gzip -n -9 -c " .. tmp .. ".tar > " .. tmp .. ".tgz")
write(root .. "/cifar/tgz_test", string.char(0) .. read(tmp .. ".tgz"))
sh(tar .. " -cf " .. tmp .. ".tar cifar-10-batches-bin")
sh("gzip -n -9 -c " .. tmp .. ".tar > " .. tmp .. ".tgz")
write(root .. "/cifar/tgz_train", string.char(2) .. read(tmp .. ".tgz"))
-- regressions (issue 16): the gzip trailer must be verified even though the
-- wanted member comes first
local gzip_stored = dofile("tests/lib/gzip_stored.lua").encode
local function flip(s, i) return s:sub(1, i - 1) .. string.char(s:byte(i) ~ 1) .. s:sub(i + 1) end
sh(tar .. " -cf " .. tmp .. ".tar cifar-10-batches-bin/test_batch.bin")
local stored = gzip_stored(read(tmp .. ".tar"))
local px_at = stored:find(record(5):sub(200, 240), 1, true)
write(root .. "/cifar/regress_stored_flipped_pixel", string.char(0) .. flip(stored, px_at + 3))
write(root .. "/cifar/regress_stored_flipped_crc", string.char(0) .. flip(stored, #stored - 6))
write(root .. "/cifar/regress_stored_cut", string.char(0) .. stored:sub(1, #stored - 3))
sh("rm -rf " .. dir .. " " .. tmp .. ".tar " .. tmp .. ".tgz")
os.remove(tmp)

-- ---- tensor-from-table programs (see fuzz_tensor.c) -----------------------
local function prog(flags, ops) return string.char(flags, table.unpack(ops)) end
local f64 = string.pack("<d", 1.5)
local nan = string.pack("<d", 0 / 0)
local progs = {
  scalar_list = prog(0, {0, 2, 5, 2, 250, 1}),                         -- {5, -6}
  matrix = prog(16, {0, 0, 2, 1, 2, 2, 1, 0, 2, 3, 2, 4, 1, 1}),        -- {{1,2},{3,4}}
  f64 = prog(1, {0, 3, f64:byte(1, -1)}),
  nan = prog(24, {0, 3, nan:byte(1, -1)}),
  bools = prog(2, {0, 4, 12, 4, 1}),
  ragged = prog(0, {0, 0, 2, 1, 1, 0, 1, 1}),
  hole = prog(3, {0, 2, 1, 6, 2, 2, 1}),
  strings = prog(5, {0, 5, 13, 1}),
  extremes = prog(4, {0, 7, 15, 1}),
  empty = prog(6, {0, 1}),
  deep = prog(0, {0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1}),
}
for name, bytes in pairs(progs) do write(root .. "/tensor/" .. name, bytes) end
print("corpus written under " .. root)
