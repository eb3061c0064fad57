-- test_io.lua - the file formats (core/io, core/lua/l_io.c, lua/rn/checkpoint.lua):
-- IDX (plain and .gz) and CIFAR-10 (folder, .tar.gz) files written here in
-- their real formats, then a table of broken files, each with its own error
-- (truncations at many offsets, wrong magic and sizes, labels out of range, a
-- gzip bomb, unsafe and corrupt tar members); checkpoints: bitwise round trip,
-- every truncation and byte flip caught, crafted headers, atomic writes;
-- safetensors round trip, crafted headers, and files exchanged with PyTorch;
-- the real Fashion-MNIST when installed.
local T = require "t"
local rn = require "rn"
local ckpt = require "rn.checkpoint"

local BIN = os.getenv("RNLUA_BIN") or "./rnlua"

-- ---- helpers -----------------------------------------------------------------

local TMP
local function tmpdir()
  if not TMP then
    local p = io.popen("mktemp -d /tmp/rn_test_io.XXXXXX")
    TMP = p:read("l")
    p:close()
  end
  return TMP
end
local function tmp(name) return tmpdir() .. "/" .. name end

local files = require "files"
local write, read = files.write, files.read
local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "command failed: " .. cmd)
end
local function gzip(src, dst)
  sh("gzip -c -n '" .. src .. "' > '" .. dst .. "'")
  return dst
end
local function ls(dir)
  local p = io.popen("ls -A '" .. dir .. "'")
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

-- error message of f(), which must raise
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  T.truthy(not ok, "expected an error")
  return tostring(e)
end

local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1 ~= 0) and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[i] = c
end
local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

local function flat(t, out)
  out = out or {}
  if type(t) ~= "table" then out[#out + 1] = t; return out end
  for _, v in ipairs(t) do flat(v, out) end
  return out
end

-- ---- IDX -----------------------------------------------------------------------

local function idx_images(n, h, w, f)
  local parts = { string.pack(">I4I4I4I4", 0x803, n, h, w) }
  for i = 0, n - 1 do
    local row = {}
    for p = 0, h * w - 1 do row[#row + 1] = string.char(f(i, p)) end
    parts[#parts + 1] = table.concat(row)
  end
  return table.concat(parts)
end
local function idx_labels(labels)
  local s = { string.pack(">I4I4", 0x801, #labels) }
  for _, l in ipairs(labels) do s[#s + 1] = string.char(l) end
  return table.concat(s)
end
local function pix(i, p) return (i * 31 + p * 7) % 256 end

T.test("read_idx: images and labels, plain and gzip", function()
  local img = write(tmp("imgs-idx3-ubyte"), idx_images(5, 28, 28, pix))
  local lab = write(tmp("labels-idx1-ubyte"), idx_labels({ 3, 0, 9, 1, 7 }))
  for _, gz in ipairs({ false, true }) do
    local ip, lp = img, lab
    if gz then ip, lp = gzip(img, img .. ".gz"), gzip(lab, lab .. ".gz") end
    local x = rn.read_idx(ip)
    T.eq(x:size(), { 5, 28, 28 })
    T.eq(x.dtype, "uint8")
    local v = flat(x:totable())
    for k = 1, #v do
      local i, p = (k - 1) // 784, (k - 1) % 784
      if v[k] ~= pix(i, p) then error(string.format("pixel %d: %d ~= %d", k, v[k], pix(i, p))) end
    end
    local y = rn.read_idx(lp, { classes = 10 })
    T.eq(y:size(), { 5 })
    T.eq(y:totable(), { 3, 0, 9, 1, 7 })
  end
  -- zero records is a valid file
  T.eq(rn.read_idx(write(tmp("empty-idx1"), idx_labels({}))):size(), { 0 })
end)

T.test("read_idx: each broken file gives its own error", function()
  local good = idx_images(10, 28, 28, pix) -- 7856 bytes
  local cases = {
    { "wrong magic", string.pack(">I4", 0x12345678) .. good:sub(5), "bad magic 0x12345678" },
    { "float idx", string.pack(">I4", 0x0D03) .. good:sub(5), "bad magic 0x00000d03" },
    { "empty file", "", "truncated: 0 bytes, shorter than the 4%-byte IDX magic" },
    { "short header", good:sub(1, 10), "truncated: 10 bytes, shorter than the 16%-byte IDX images header" },
    { "truncated data", good:sub(1, 1200),
      "truncated: header says 10 images of 28x28 %(7856 bytes%) but the file has 1200 bytes" },
    { "trailing bytes", good .. "xyz", "3 trailing bytes: header says 10 images of 28x28" },
    { "zero-size images", string.pack(">I4I4I4I4", 0x803, 1, 0, 28), "sizes must be positive" },
    { "huge count", string.pack(">I4I4I4I4", 0x803, 0xFFFFFFFF, 0xFFFFFFFF, 28),
      "more than 2%^40 bytes" },
    { "labels out of range", idx_labels({ 1, 2, 3, 4, 12, 5 }), "label 12 at record 5 outside 0%.%.9",
      { classes = 10 } },
  }
  for _, c in ipairs(cases) do
    local p = write(tmp("bad-" .. c[1]:gsub(" ", "_")), c[2])
    local e = err_of(rn.read_idx, p, c[4])
    T.truthy(e:find(c[3]), c[1] .. ": error '" .. e .. "' lacks '" .. c[3] .. "'")
    T.truthy(e:find(p, 1, true), c[1] .. ": error does not name the file: " .. e)
  end
  -- gzip variants
  local plain = write(tmp("g-images"), good)
  local gz = read(gzip(plain, tmp("g-images.gz")))
  local short = gzip(write(tmp("g-short"), good:sub(1, 1200)), tmp("g-short.gz"))
  T.raises(function() rn.read_idx(short) end,
    "g%-short%.gz: truncated: header says 10 images of 28x28 %(7856 bytes%) but it decompresses to only 1200 bytes")
  local long = gzip(write(tmp("g-long"), good .. "\0"), tmp("g-long.gz"))
  T.raises(function() rn.read_idx(long) end, "g%-long%.gz: decompresses past 7856 bytes")
  local garbage = write(tmp("g-garbage.gz"), gz .. "garbage")
  T.raises(function() rn.read_idx(garbage) end, "trailing garbage after the gzip data")
  -- two gzip members are one stream, as gzip itself reads them
  local two = write(tmp("g-two.gz"), read(gzip(write(tmp("g-a"), good:sub(1, 100)), tmp("g-a.gz")))
    .. read(gzip(write(tmp("g-b"), good:sub(101)), tmp("g-b.gz"))))
  T.eq(rn.read_idx(two):size(), { 10, 28, 28 })
  -- a header claiming more than the compressed bytes could ever hold: no allocation
  local claim = gzip(write(tmp("g-claim"), string.pack(">I4I4I4I4", 0x803, 1000000, 28, 28)),
    tmp("g-claim.gz"))
  T.raises(function() rn.read_idx(claim) end, "cannot hold more than")
  -- every truncation of the .gz, and corrupted deflate bytes
  for cut = 0, #gz - 1, 3 do
    local p = write(tmp("g-cut.gz"), gz:sub(1, cut))
    local e = err_of(rn.read_idx, p)
    T.truthy(e:find("g%-cut%.gz: "), "cut " .. cut .. ": " .. e)
  end
  for _, at in ipairs({ 12, 40, #gz // 2, #gz - 6, #gz - 2 }) do
    local b = gz:sub(1, at - 1) .. string.char(gz:byte(at) ~ 0x55) .. gz:sub(at + 1)
    local e = err_of(rn.read_idx, write(tmp("g-flip.gz"), b))
    T.truthy(e:find("g%-flip%.gz"), "flip at " .. at .. ": " .. e)
  end
  -- every truncation of a plain labels file and of the image header
  local lab = idx_labels({ 1, 2, 3 })
  for cut = 0, #lab - 1 do
    local e = err_of(rn.read_idx, write(tmp("l-cut"), lab:sub(1, cut)))
    T.truthy(e:find("l%-cut: truncated"), e)
  end
  for cut = 0, 40 do
    local e = err_of(rn.read_idx, write(tmp("i-cut"), good:sub(1, cut)))
    T.truthy(e:find("i%-cut: truncated"), e)
  end
  T.raises(function() rn.read_idx(tmpdir()) end, "is a folder")
  T.raises(function() rn.read_idx(tmp("nope")) end, "nope: cannot open")
  T.raises(function() rn.read_idx(123) end, "read_idx: path must be a string")
  T.raises(function() rn.read_idx(plain, { clases = 10 }) end, "unknown option 'clases'")
end)

T.test("read_idx: a gzip bomb stops at the size the header implies", function()
  -- header: 10 images of 28x28 (7856 bytes), then 200 MB of zeros, gzipped (~200 KB)
  local bomb = tmp("bomb-idx3-ubyte.gz")
  sh("(printf '\\000\\000\\010\\003\\000\\000\\000\\012\\000\\000\\000\\034\\000\\000\\000\\034'; "
    .. "head -c 200000000 /dev/zero) | gzip -1 -n > '" .. bomb .. "'")
  local size = #read(bomb)
  T.truthy(size < 1000000, "bomb compressed to " .. size .. " bytes")
  -- read in a fresh process, whose peak RSS (VmHWM) then tells what was allocated
  local script = write(tmp("bomb.lua"), string.format([[
    local rn = require "rn"
    local t0 = os.clock()
    local ok, err = pcall(rn.read_idx, %q)
    local f = io.open("/proc/self/status")
    local hwm = f and f:read("a"):match("VmHWM:%%s*(%%d+)") or "0"
    io.write(string.format("%%s\n%%s\n%%.3f\n", tostring(err), hwm, os.clock() - t0))
  ]], bomb))
  local pr = io.popen("'" .. BIN .. "' '" .. script .. "' 2>&1")
  local err, hwm, dt = pr:read("l", "n", "n")
  pr:close()
  T.truthy(err and err:find("bomb%-idx3%-ubyte%.gz: decompresses past 7856 bytes"), tostring(err))
  T.truthy(dt and dt < 0.5, "stopping took " .. tostring(dt) .. " s: it should stop after a few KB")
  if hwm and hwm > 0 then
    T.truthy(hwm < 100000, string.format("peak RSS %d KB: the bomb was inflated into memory", hwm))
  end
end)

-- ---- CIFAR-10 --------------------------------------------------------------------

-- record r of a batch: label and pixel (c, p) with c = 0..2 (R, G, B plane), p = 0..1023
local function cifar_pix(batch, r, c, p) return (batch * 37 + r * 11 + c * 85 + p * 3) % 256 end
local function cifar_batch(batch, nrec, label_of)
  local recs = {}
  for r = 0, nrec - 1 do
    local b = { string.char(label_of and label_of(r) or (batch + r) % 10) }
    for c = 0, 2 do
      local plane = {}
      for p = 0, 1023 do plane[#plane + 1] = string.char(cifar_pix(batch, r, c, p)) end
      b[#b + 1] = table.concat(plane)
    end
    recs[#recs + 1] = table.concat(b)
  end
  return table.concat(recs)
end
local TRAIN_N = { 2, 1, 3, 1, 2 }

-- checks images (N,32,32,3) and labels against the batches in order
local function check_cifar(x, y, batches)
  local n = 0
  for _, b in ipairs(batches) do n = n + b[2] end
  T.eq(x:size(), { n, 32, 32, 3 })
  T.eq(y:size(), { n })
  T.eq(x.dtype, "uint8")
  local xv, yv = flat(x:totable()), y:totable()
  local k = 0
  for _, b in ipairs(batches) do
    for r = 0, b[2] - 1 do
      T.eq(yv[k + 1], (b[1] + r) % 10, "label")
      for p = 0, 1023 do
        for c = 0, 2 do
          local v = xv[k * 3072 + p * 3 + c + 1]
          if v ~= cifar_pix(b[1], r, c, p) then
            error(string.format("image %d pixel %d channel %d: %d ~= %d", k + 1, p, c, v,
              cifar_pix(b[1], r, c, p)))
          end
        end
      end
      k = k + 1
    end
  end
end
local function train_batches()
  local b = {}
  for i = 1, 5 do b[i] = { i, TRAIN_N[i] } end
  return b
end

-- a ustar header (512 bytes) with a valid checksum
local function tar_header(name, size, typeflag, opts)
  opts = opts or {}
  local function field(s, n) return s .. string.rep("\0", n - #s) end
  local sizef = opts.base256 and ("\x80" .. string.rep("\0", 11 - 8) .. string.pack(">I8", size))
    or string.format("%011o\0", size)
  local h = field(name, 100) .. "0000644\0" .. "0000000\0" .. "0000000\0" .. sizef
    .. "00000000000\0" .. "        " .. (typeflag or "0") .. field(opts.link or "", 100)
    .. "ustar\0" .. "00" .. field("root", 32) .. field("root", 32) .. "0000000\0" .. "0000000\0"
    .. field(opts.prefix or "", 155) .. string.rep("\0", 12)
  assert(#h == 512)
  local sum = opts.checksum
  if not sum then
    sum = 0
    for i = 1, 512 do sum = sum + h:byte(i) end
  end
  return h:sub(1, 148) .. string.format("%06o\0 ", sum) .. h:sub(157)
end
local function tar_member(name, data, typeflag, opts)
  local pad = (512 - #data % 512) % 512
  return tar_header(name, #data, typeflag, opts) .. data .. string.rep("\0", pad)
end
local function tar_end() return string.rep("\0", 1024) end

-- the archive: folder entry, members in scrambled order, extra members, a GNU
-- long name for data_batch_5 and a base-256 size for data_batch_2
local function cifar_tar(over)
  over = over or {}
  local d = "cifar-10-batches-bin/"
  local long = d .. string.rep("x", 120) .. "/data_batch_5.bin"
  local parts = {
    tar_header(d, 0, "5"),
    tar_member(d .. "batches.meta.txt", "airplane\nautomobile\n"),
    over[1] or tar_member(d .. "data_batch_1.bin", cifar_batch(1, TRAIN_N[1])),
    tar_member(d .. "data_batch_3.bin", cifar_batch(3, TRAIN_N[3])),
    tar_member(d .. "test_batch.bin", cifar_batch(6, 3)),
    tar_member(d .. "data_batch_4.bin", cifar_batch(4, TRAIN_N[4])),
    tar_member(d .. "readme.html", string.rep("<p>", 300)),
    tar_member(d .. "data_batch_2.bin", cifar_batch(2, TRAIN_N[2]), "0", { base256 = true }),
    tar_member("././@LongLink", long .. "\0", "L"),
    tar_member(string.sub(long, 1, 100), cifar_batch(5, TRAIN_N[5])),
    tar_end(),
  }
  return table.concat(parts)
end

T.test("read_cifar10: folder, parent folder, one .bin, .tar and .tar.gz agree", function()
  local root = tmp("cifar")
  sh("mkdir -p '" .. root .. "/cifar-10-batches-bin'")
  for i = 1, 5 do
    write(root .. "/cifar-10-batches-bin/data_batch_" .. i .. ".bin", cifar_batch(i, TRAIN_N[i]))
  end
  write(root .. "/cifar-10-batches-bin/test_batch.bin", cifar_batch(6, 3))
  local x, y = rn.read_cifar10(root)
  check_cifar(x, y, train_batches())
  x, y = rn.read_cifar10(root .. "/cifar-10-batches-bin", { split = "test" })
  check_cifar(x, y, { { 6, 3 } })
  x, y = rn.read_cifar10(root .. "/cifar-10-batches-bin/data_batch_3.bin")
  check_cifar(x, y, { { 3, TRAIN_N[3] } })
  local tar = write(tmp("cifar-10-binary.tar"), cifar_tar())
  local tgz = gzip(tar, tmp("cifar-10-binary.tar.gz"))
  for _, p in ipairs({ tar, tgz }) do
    x, y = rn.read_cifar10(p, { split = "train" })
    check_cifar(x, y, train_batches())
    x, y = rn.read_cifar10(p, { split = "test" })
    check_cifar(x, y, { { 6, 3 } })
  end
  T.eq(#ls(tmpdir() .. "/cifar"), 1, "reading an archive creates no files")
  T.raises(function() rn.read_cifar10(tgz, { split = "valid" }) end, "split 'valid' unknown")
end)

T.test("read_cifar10: each broken archive or folder gives its own error", function()
  local d = "cifar-10-batches-bin/"
  local b1 = cifar_batch(1, TRAIN_N[1])
  local cases = {
    { "dotdot", tar_member("../data_batch_1.bin", b1), "member '%.%./data_batch_1%.bin' has an unsafe path" },
    { "dotdot2", tar_member(d .. "../../data_batch_1.bin", b1), "has an unsafe path" },
    { "absolute", tar_member("/tmp/data_batch_1.bin", b1), "member '/tmp/data_batch_1%.bin' has an unsafe path" },
    { "checksum", tar_header(d .. "data_batch_1.bin", #b1, "0", { checksum = 1234 }) .. b1,
      "header at byte 1536: checksum mismatch %(stored 1234, computed" },
    { "partial", tar_member(d .. "data_batch_1.bin", b1 .. "12345"),
      "data_batch_1%.bin: is 6151 bytes, not a whole number of 3073%-byte records %(2 records and 5 bytes" },
    { "label", tar_member(d .. "data_batch_1.bin", cifar_batch(1, 3, function(r) return r == 1 and 10 or 0 end)),
      "data_batch_1%.bin: label 10 at record 2 outside 0%.%.9" },
    { "symlink", tar_member(d .. "data_batch_1.bin", "", "2", { link = "/etc/passwd" }),
      "member 'cifar%-10%-batches%-bin/data_batch_1%.bin' is not a regular file" },
    { "duplicate", tar_member(d .. "data_batch_1.bin", b1) .. tar_member("other/data_batch_1.bin", b1),
      "member data_batch_1%.bin appears twice" },
    { "missing", tar_member(d .. "data_batch_one.bin", b1), "no member named data_batch_1%.bin" },
    { "huge size", tar_header(d .. "data_batch_1.bin", 3073 * (1 << 30), "0", { base256 = true }),
      "more than the 1073741824%-byte limit" },
  }
  for _, c in ipairs(cases) do
    local tar = write(tmp("bad-" .. c[1] .. ".tar"), cifar_tar({ c[2] }))
    for _, p in ipairs({ tar, gzip(tar, tar .. ".gz") }) do
      local e = err_of(rn.read_cifar10, p)
      T.truthy(e:find(c[3]), c[1] .. ": error '" .. e .. "' lacks '" .. c[3] .. "'")
      T.truthy(e:find(p, 1, true), c[1] .. ": error does not name the archive: " .. e)
    end
  end
  T.eq(#ls(tmpdir() .. "/cifar"), 1, "no file was written by any archive")
  T.raises(function() rn.read_cifar10(write(tmp("notatar.tar.gz"), string.rep("x", 2000))) end,
    "checksum field is not a number %(not a tar archive%?%)")
  -- truncations of the .tar and the .tar.gz at many offsets
  local tar = cifar_tar()
  local tgz = read(gzip(write(tmp("t.tar"), tar), tmp("t.tar.gz")))
  local n = 0
  for cut = 1, #tar - 1100, 331 do -- (the last 1024 bytes are the end blocks)
    local e = err_of(rn.read_cifar10, write(tmp("cut.tar"), tar:sub(1, cut)))
    T.truthy(e:find("cut%.tar: "), e)
    n = n + 1
  end
  for cut = 0, #tgz - 1, 97 do
    local e = err_of(rn.read_cifar10, write(tmp("cut.tar.gz"), tgz:sub(1, cut)))
    T.truthy(e:find("cut%.tar%.gz"), e)
    n = n + 1
  end
  T.truthy(n > 100)
  -- folders
  local root = tmp("cifar-bad")
  sh("mkdir -p '" .. root .. "'")
  for i = 1, 5 do write(root .. "/data_batch_" .. i .. ".bin", cifar_batch(i, 1)) end
  write(root .. "/data_batch_4.bin", cifar_batch(4, 2) .. "x")
  T.raises(function() rn.read_cifar10(root) end,
    "data_batch_4%.bin: has 6147 bytes, not a whole number of 3073%-byte records %(2 records and 1 bytes")
  write(root .. "/data_batch_4.bin", cifar_batch(4, 3, function(r) return 250 + r end))
  T.raises(function() rn.read_cifar10(root) end, "data_batch_4%.bin: label 250 at record 1 outside 0%.%.9")
  T.raises(function() rn.read_cifar10(root, { split = "test" }) end, "no CIFAR%-10 batch test_batch%.bin here")
  T.raises(function() rn.read_cifar10(tmp("missing")) end, "missing: cannot open")
end)

-- ---- checkpoints -------------------------------------------------------------------

-- parses a checkpoint file in Lua (the layout of doc/checkpoint_format.md)
local function ck_parse(s)
  local magic, version, n, tlen, mlen, hcrc = string.unpack("<c8I4I4I8I8I4", s)
  local c = { version = version, entries = {}, meta = s:sub(41 + tlen, 40 + tlen + mlen) }
  local p = 41
  for i = 1, n do
    local e = {}
    local nl = string.unpack("<I2", s, p)
    e.name = s:sub(p + 2, p + 1 + nl)
    p = p + 2 + nl
    e.dtype, e.ndim = string.unpack("<I1I1", s, p)
    p = p + 2
    e.shape = {}
    for d = 1, e.ndim do e.shape[d] = string.unpack("<i8", s, p); p = p + 8 end
    e.offset, e.csize, e.rsize, e.crc, e.ccrc = string.unpack("<I8I8I8I4I4", s, p)
    p = p + 32
    e.payload = s:sub(e.offset + 1, e.offset + e.csize)
    c.entries[i] = e
  end
  assert(magic == "RNCKPT01" and p == 41 + tlen and hcrc)
  return c
end
-- builds a checkpoint from parsed parts; fields not given are computed
local function ck_build(c)
  local tab = {}
  for _, e in ipairs(c.entries) do
    local t = { string.pack("<s2I1I1", e.name, e.dtype, #e.shape) }
    for _, d in ipairs(e.shape) do t[#t + 1] = string.pack("<i8", d) end
    t[#t + 1] = "OFFSET"
    tab[#tab + 1] = t
  end
  local tlen = 0
  for _, t in ipairs(tab) do tlen = tlen + #table.concat(t) - 6 + 32 end
  local off = 40 + tlen + #c.meta
  for i, e in ipairs(c.entries) do
    tab[i][#tab[i]] = string.pack("<I8I8I8I4I4", e.offset or off, e.csize or #e.payload,
      e.rsize, e.crc, e.ccrc or crc32(e.payload))
    off = off + #e.payload
    tab[i] = table.concat(tab[i])
  end
  local tabs = table.concat(tab)
  local head = string.pack("<c8I4I4I8I8", "RNCKPT01", c.version or 1, c.n or #c.entries,
    c.tlen or #tabs, c.mlen or #c.meta)
  local hcrc = c.hcrc or crc32(head .. tabs .. c.meta)
  local payloads = {}
  for _, e in ipairs(c.entries) do payloads[#payloads + 1] = e.payload end
  return head .. string.pack("<I4I4", hcrc, c.reserved or 0) .. tabs .. c.meta
    .. table.concat(payloads) .. (c.trailing or "")
end

local function sample_tensors()
  rn.manual_seed(7)
  local m = rn.randn({ 5, 3 })
  return {
    f32 = rn.randn({ 4, 5 }),
    f64 = rn.randn({ 3, 2, 2 }, { dtype = "float64" }),
    u8 = rn.tensor({ 0, 1, 127, 128, 255 }, { dtype = "uint8" }),
    i32 = rn.tensor({ -2147483648, 2147483647, 0 }, { dtype = "int32" }),
    i64 = rn.tensor({ -(2 ^ 53), 2 ^ 53, -1, 0, 12345678901 }, { dtype = "int64" }),
    bf16 = rn.randn({ 7 }):bfloat16(),
    f16 = rn.randn({ 2, 3 }):half(),
    scalar = rn.tensor(3.25),
    empty = rn.zeros(0, 4),
    noncontig = m:t(), -- (3,5) view with strides (1,3)
    ["layer1.conv.weight"] = rn.rand({ 3, 3, 2, 4 }),
  }
end

local function same_tensors(a, b)
  local na, nb = 0, 0
  for k in pairs(a) do na = na + 1 end
  for k in pairs(b) do nb = nb + 1 end
  T.eq(nb, na, "tensor count")
  for k, t in pairs(a) do
    local u = b[k]
    T.truthy(u, "missing " .. k)
    T.eq(u.dtype, t.dtype, k .. " dtype")
    T.eq(u:size(), t:size(), k .. " shape")
    T.eq(u:double():totable(), t:double():totable(), k .. " values")
  end
end

T.test("checkpoint: bitwise round trip of every dtype, 0-d, empty, non-contiguous", function()
  local ts = sample_tensors()
  T.truthy(not ts.noncontig:is_contiguous())
  local p = tmp("a.ckpt")
  local meta = "epoch=3\nbytes=\0\1\255"
  rn.save_checkpoint(p, ts, meta)
  local back, m = rn.load_checkpoint(p)
  T.eq(m, meta)
  same_tensors(ts, back)
  -- saving what was loaded gives the same bytes: every bit came back
  local p2 = tmp("b.ckpt")
  rn.save_checkpoint(p2, back, m)
  T.eq(read(p2) == read(p), true, "re-saved checkpoint differs")
  -- and deterministic: the same tensors give the same file (entries sorted by name)
  rn.save_checkpoint(p2, ts, meta)
  T.eq(read(p2) == read(p), true, "two saves differ")
  local c = ck_parse(read(p))
  T.eq(c.entries[1].name, "bf16")
  for _, e in ipairs(c.entries) do
    local t = ts[e.name]
    T.eq(e.shape, t:size(), e.name)
  end
  -- levels and the gradient mode do not matter
  rn.save_checkpoint(p2, { w = rn.randn({ 50 }, { requires_grad = true }) }, "", { level = 0 })
  T.eq(rn.load_checkpoint(p2).w:size(), { 50 })
  T.eq(#ls(tmpdir()) > 0, true)
  for _, f in ipairs(ls(tmpdir())) do T.truthy(not f:find("%.tmp%."), "temp file left: " .. f) end
end)

T.test("checkpoint: every truncation and every byte flip is caught", function()
  rn.manual_seed(1)
  local p = tmp("small.ckpt")
  rn.save_checkpoint(p, { w = rn.randn({ 3, 4 }), b = rn.tensor({ 1, 2 }, { dtype = "int64" }) },
    "epoch=1")
  local s = read(p)
  local c = ck_parse(s)
  local payload_start = c.entries[1].offset
  T.truthy(#s < 400, "keep it small: " .. #s)
  local q = tmp("bad.ckpt")
  for cut = 0, #s - 1 do
    local e = err_of(rn.load_checkpoint, write(q, s:sub(1, cut)))
    T.truthy(e:find("bad%.ckpt: "), "cut " .. cut .. ": " .. e)
  end
  for i = 1, #s do
    for _, x in ipairs({ 0x01, 0x80, 0xFF }) do
      local b = s:sub(1, i - 1) .. string.char(s:byte(i) ~ x) .. s:sub(i + 1)
      local e = err_of(rn.load_checkpoint, write(q, b))
      T.truthy(e:find("bad%.ckpt: "), "flip " .. i .. ": " .. e)
      if i > payload_start then
        T.truthy(e:find("entry %d '[wb]': "), "payload flip " .. i .. " not caught by its entry: " .. e)
      end
    end
  end
  -- a stored raw CRC32 that does not match the (intact) data
  local good = ck_parse(s)
  good.entries[2].crc = good.entries[2].crc ~ 1
  T.raises(function() rn.load_checkpoint(write(q, ck_build(good))) end,
    "entry 2 'w': CRC32 mismatch")
  -- the Lua builder reproduces the file exactly (the documented layout)
  T.eq(ck_build(ck_parse(s)) == s, true)
end)

T.test("checkpoint: crafted headers are rejected before allocating", function()
  local p = tmp("base.ckpt")
  rn.save_checkpoint(p, { a = rn.ones(4), b = rn.zeros(2, 2) }, "m")
  local base = read(p)
  local function mod(f)
    local c = ck_parse(base)
    f(c)
    return ck_build(c)
  end
  local q = tmp("crafted.ckpt")
  local cases = {
    { "bad magic", "XXCKPT01" .. base:sub(9), "not an rnlua checkpoint %(bad magic" },
    { "version", mod(function(c) c.version = 2 end), "checkpoint version 2 not supported" },
    { "huge count", mod(function(c) c.n = 0xFFFFFFFF end), "header says 4294967295 entries; at most 100000" },
    { "count vs table", mod(function(c) c.n = 90000 end), "header says 90000 entries but the entry table has only" },
    { "table past file", mod(function(c) c.tlen = 1 << 40 end), "entry table and 1 bytes of metadata, but the file has" },
    { "meta past file", mod(function(c) c.mlen = 5000 end), "5000 bytes of metadata, but the file has" },
    { "reserved", mod(function(c) c.reserved = 1 end), "reserved header field is not zero" },
    { "duplicate", mod(function(c) c.entries[2].name = "a" end), "duplicate name 'a'" },
    { "unprintable", mod(function(c) c.entries[1].name = "a\nb" end), "entry 1: name of 3 bytes is not 1%.%.255 printable" },
    { "empty name", mod(function(c) c.entries[1].name = "" end), "entry 1: name of 0 bytes" },
    { "dtype", mod(function(c) c.entries[1].dtype = 9 end), "entry 1 'a': unknown dtype code 9" },
    { "ndim", mod(function(c) c.entries[1].shape = { 1, 1, 1, 1, 1, 1, 1, 1, 4 } end), "entry 1 'a': 9 dims; at most 8" },
    { "negative dim", mod(function(c) c.entries[2].shape = { -2, -2 } end), "entry 2 'b': size %-2 of dim 1 is negative" },
    { "overflow", mod(function(c) c.entries[2].shape = { 1 << 31, 1 << 31 } end), "entry 2 'b': shape %(2147483648,2147483648%) has more than 2%^40 elements" },
    { "overflow64", mod(function(c) c.entries[2].shape = { 1 << 62, 1 << 62 } end), "has more than 2%^40 elements" },
    { "raw size", mod(function(c) c.entries[2].shape = { 2, 3 } end), "entry 2 'b': raw size 16 bytes does not match shape %(2,3%) of float32 %(24 bytes%)" },
    { "huge raw", mod(function(c) c.entries[2].shape = { 1 << 20, 1 << 10 }; c.entries[2].rsize = 1 << 32 end),
      "entry 2 'b': compressed size %d+ is impossible for 4294967296 raw bytes" },
    { "offset outside", mod(function(c) c.entries[2].offset = 1 << 40 end), "entry 2 'b': payload at bytes 1099511627776%.%.%+%d+ lies outside the file" },
    { "offset overlap", mod(function(c) c.entries[2].offset = c.entries[1].offset end), "entry 2 'b': payload offset %d+, expected %d+" },
    { "csize outside", mod(function(c) c.entries[2].csize = 1 << 60 end), "entry 2 'b': payload at bytes .- lies outside the file" },
    { "trailing", mod(function(c) c.trailing = "junk" end), "4 trailing bytes after the last payload" },
    { "header crc", mod(function(c) c.hcrc = 12345 end), "header checksum mismatch" },
    { "too short", base:sub(1, 30), "truncated: 30 bytes, shorter than the 40%-byte header" },
    { "not a checkpoint", "hello world, this is not a checkpoint at all", "bad magic" },
  }
  for _, c in ipairs(cases) do
    local e = err_of(rn.load_checkpoint, write(q, c[2]))
    T.truthy(e:find(c[3]), c[1] .. ": error '" .. e .. "' lacks '" .. c[3] .. "'")
  end
  -- argument errors
  T.raises(function() rn.save_checkpoint(q, { 1 }) end, "tensor table keys must be strings")
  T.raises(function() rn.save_checkpoint(q, { a = 5 }) end, "value of 'a' must be a tensor, got number")
  T.raises(function() rn.save_checkpoint(q, { ["a\tb"] = rn.ones(1) }) end, "printable ASCII")
  T.raises(function() rn.save_checkpoint(q, {}, 5) end, "metadata must be a string")
  T.raises(function() rn.save_checkpoint(q, {}, "", { level = 12 }) end, "level 12 outside 0%.%.9")
  T.raises(function() rn.load_checkpoint(tmp("none.ckpt")) end, "none%.ckpt: cannot open")
end)

T.test("checkpoint: atomic writes keep the old file on failure and leave no temp file", function()
  local dir = tmp("atomic")
  sh("mkdir -p '" .. dir .. "'")
  local p = dir .. "/model.ckpt"
  rn.save_checkpoint(p, { w = rn.ones(3) }, "old")
  local old = read(p)
  -- a failure while writing: the file size limit makes write() fail (EFBIG)
  local script = write(tmp("big_save.lua"), string.format([[
    local rn = require "rn"
    rn.manual_seed(3)
    local ok, err = pcall(rn.save_checkpoint, %q, {w = rn.rand({300000})}, "new", {level = 0})
    io.write(ok and "saved" or err)
  ]], p))
  local pr = io.popen("sh -c \"trap '' XFSZ; ulimit -f 64; '" .. BIN .. "' '" .. script .. "'\" 2>&1")
  local out = pr:read("a")
  pr:close()
  T.truthy(out:find("model%.ckpt: write failed: .-%(the previous file, if any, is kept%)"), out)
  T.eq(read(p) == old, true, "the old checkpoint changed")
  T.eq(ls(dir), { "model.ckpt" }, "temp file left behind")
  -- the target is a folder; the folder does not exist
  sh("mkdir -p '" .. dir .. "/sub.ckpt'")
  T.raises(function() rn.save_checkpoint(dir .. "/sub.ckpt", { w = rn.ones(1) }) end,
    "sub%.ckpt: is a folder; cannot save over it")
  T.raises(function() rn.save_checkpoint(dir .. "/nodir/x.ckpt", { w = rn.ones(1) }) end,
    "x%.ckpt: cannot create the temp file .-/nodir/x%.ckpt%.tmp%.%d+: ")
  T.raises(function() rn.save_safetensors(dir .. "/nodir/x.safetensors", { w = rn.ones(1) }) end,
    "cannot create the temp file")
  -- a folder that is not writable (root writes anyway, so only checked for others)
  local pid = io.popen("id -u")
  local uid = pid:read("n")
  pid:close()
  if uid ~= 0 then
    sh("chmod 555 '" .. dir .. "'")
    local ok, e = pcall(rn.save_checkpoint, p, { w = rn.ones(1) })
    sh("chmod 755 '" .. dir .. "'")
    T.truthy(not ok and e:find("cannot create the temp file"), tostring(e))
    T.eq(read(p) == old, true)
  end
  -- a successful save replaces the file whole
  rn.save_checkpoint(p, { w = rn.zeros(3) }, "new")
  local t, m = rn.load_checkpoint(p)
  T.eq(m, "new")
  T.eq(t.w:totable(), { 0, 0, 0 })
  T.eq(#ls(dir), 2)
end)

T.test("rn.checkpoint: tensors and a metadata table, parsed without load()", function()
  local meta = {
    epoch = 3, step = 1200, lr = 0.1, momentum = 0.9, nesterov = true, name = "resnet \"20\"\n",
    rng = { 123456789012345, -1, math.maxinteger, math.mininteger },
    data = { order_seed = 42, position = 640 }, tiny = 5e-324, neg0 = -0.0, inf = math.huge,
    opt = { { lr = 0.1 }, { lr = 0.01, betas = { 0.9, 0.999 } } }, [7] = false, f = 2.0,
  }
  local p = tmp("lua.ckpt")
  ckpt.save(p, { tensors = { w = rn.ones(2, 2) }, meta = meta })
  local c = ckpt.load(p)
  T.eq(c.tensors.w:totable(), { { 1, 1 }, { 1, 1 } })
  T.eq(c.meta, meta)
  T.eq(math.type(c.meta.f), "float")
  T.eq(math.type(c.meta.epoch), "integer")
  T.eq(1 / c.meta.neg0, -math.huge)
  local nan = ckpt.decode(ckpt.encode({ x = 0 / 0 })).x
  T.truthy(nan ~= nan)
  T.raises(function() ckpt.save(p, { tensors = {}, meta = { f = print } }) end, "is a function")
  local cyc = {}
  cyc.self = cyc
  T.raises(function() ckpt.save(p, { meta = cyc }) end, "is a cycle")
  T.raises(function() ckpt.save(p, { tensor = {} }) end, "unknown field 'tensor'")
  -- the parser refuses anything but the data syntax: no code runs
  for _, bad in ipairs({ "rnmeta 1\n{[\"x\"]=os.exit(1)}", "rnmeta 1\nfunction() end",
    "rnmeta 1\n{[\"a\"]=1,[\"a\"]=2}", "rnmeta 1\n{[1]=1", "rnmeta 1\n\"abc", "{}", "rnmeta 1\n{}x",
    "rnmeta 1\n0x10", "rnmeta 1\n{[1.5]=1}" }) do
    T.raises(function() ckpt.decode(bad) end, "checkpoint meta: ")
  end
  -- a checkpoint whose metadata does not parse names the file
  rn.save_checkpoint(p, {}, "rnmeta 1\n{[\"x\"]=print}")
  T.raises(function() ckpt.load(p) end, "lua%.ckpt: checkpoint meta: bad token")
end)

-- ---- safetensors ---------------------------------------------------------------------

T.test("safetensors: round trip, header layout, metadata", function()
  local ts = sample_tensors()
  local p = tmp("w.safetensors")
  rn.save_safetensors(p, ts, { format = "pt", epoch = 3, ok = true })
  local back, meta = rn.load_safetensors(p)
  same_tensors(ts, back)
  T.eq(meta, { format = "pt", epoch = "3", ok = "true" })
  local s = read(p)
  local n = string.unpack("<I8", s)
  T.eq(n % 8, 0, "header padded to 8 bytes")
  T.eq(s:sub(9, 9), "{")
  T.truthy(s:sub(9, 8 + n):find('"f32":{"dtype":"F32","shape":%[4,5%],"data_offsets":%[%d+,%d+%]}'))
  T.truthy(s:sub(9, 8 + n):find('"scalar":{"dtype":"F32","shape":%[%],'))
  -- without metadata, with odd names
  rn.save_safetensors(p, { ["a \"quoted\"\\name\n"] = rn.ones(1), ["é"] = rn.zeros(2) })
  local b2, m2 = rn.load_safetensors(p)
  T.eq(m2, {})
  T.eq(b2["a \"quoted\"\\name\n"]:totable(), { 1 })
  T.eq(b2["é"]:totable(), { 0, 0 })
  T.raises(function() rn.save_safetensors(p, { __metadata__ = rn.ones(1) }) end, "not __metadata__")
  T.raises(function() rn.save_safetensors(p, { ["\255"] = rn.ones(1) }) end, "non%-empty UTF%-8")
  T.raises(function() rn.save_safetensors(p, {}, { k = {} }) end, "metadata 'k' must be a string")
end)

T.test("safetensors: crafted headers and truncations are rejected", function()
  local function st(header, data)
    return string.pack("<I8", #header) .. header .. (data or "")
  end
  local q = tmp("bad.safetensors")
  local f8 = string.rep("\0", 8)
  local cases = {
    { "header too long", string.pack("<I8", 200000000) .. "{}", "header length 200000000 exceeds the 100000000%-byte limit" },
    { "header past file", string.pack("<I8", 50) .. "{}", "truncated: header length 50 runs past the end of the file" },
    { "short", "abc", "truncated: 3 bytes, shorter than the 8%-byte header length" },
    { "not an object", st("[1]"), "header does not start with '{'" },
    { "trailing comma", st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},}', f8), "malformed JSON header: expected a string key" },
    { "unterminated", st('{"a":{"dtype":"F32"'), "malformed JSON header: unterminated object" },
    { "bad string", st('{"a\1":1}'), "control character in string" },
    { "bad escape", st('{"a\\q":1}'), "bad escape in string" },
    { "lone surrogate", st('{"\\ud800":1}'), "lone high surrogate" },
    { "bad utf8", st('{"\255":1}'), "not valid UTF%-8" },
    { "float", st('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', f8), "only integers are allowed here" },
    { "negative", st('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', f8), "negative number" },
    { "null", st('{"a":null}'), "true/false/null are not allowed" },
    { "deep", st(string.rep("[", 40) .. string.rep("]", 40)), "header does not start with" },
    { "deep2", st("{\"a\":" .. string.rep("[", 40) .. string.rep("]", 40) .. "}"), "nesting too deep" },
    { "after top", st('{} {}'), "data after the top%-level value" },
    { "huge int", st('{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}'), "integer too large" },
    { "duplicate", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f8),
      'duplicate key "a"' },
    { "unknown dtype", st('{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}', f8 .. f8), 'tensor \'a\': unknown dtype "F128"' },
    { "unsupported dtype", st('{"a":{"dtype":"BOOL","shape":[8],"data_offsets":[0,8]}}', f8), "tensor 'a': dtype BOOL is not supported" },
    { "size mismatch", st('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', f8),
      "tensor 'a': data_offsets %[0, 8%] hold 8 bytes but shape %(3%) of F32 needs 12" },
    { "gap", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f8), "tensor 'a': data_offsets %[4, 8%] leave a gap" },
    { "overlap", st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f8),
      "overlap the previous tensor" },
    { "past data", st('{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}', f8), "run past the 8 data bytes" },
    { "extra data", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f8), "4 bytes of data after the last tensor" },
    { "reversed", st('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', f8), "end before they begin" },
    { "unknown field", st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', f8), 'unknown field "x"' },
    { "missing field", st('{"a":{"dtype":"F32","data_offsets":[0,8]}}', f8), 'missing field "shape"' },
    { "shape overflow", st('{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}', f8), "more than 2%^40 elements" },
    { "nine dims", st('{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}', "\0"), "9 dims; at most 8" },
    { "metadata", st('{"__metadata__":{"a":1}}'), "__metadata__ value of \"a\" is not a string" },
    { "offsets", st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}}', "\0"), "data_offsets must be %[begin, end%]" },
  }
  for _, c in ipairs(cases) do
    local e = err_of(rn.load_safetensors, write(q, c[2]))
    T.truthy(e:find(c[3]), c[1] .. ": error '" .. e .. "' lacks '" .. c[3] .. "'")
    T.truthy(e:find("bad%.safetensors: "), c[1] .. ": " .. e)
  end
  -- every truncation of a small file
  local p = tmp("small.safetensors")
  rn.save_safetensors(p, { a = rn.ones(3), b = rn.tensor({ 1, 2 }, { dtype = "int64" }) }, { k = "v" })
  local s = read(p)
  for cut = 0, #s - 1 do
    local e = err_of(rn.load_safetensors, write(q, s:sub(1, cut)))
    T.truthy(e:find("bad%.safetensors: "), "cut " .. cut .. ": " .. e)
  end
  -- an empty file with only a header is fine
  T.eq(next((rn.load_safetensors(write(q, st("{}      "))))), nil)
end)

local PY = "/usr/bin/python3"
local function have_torch()
  local pr = io.popen(PY .. " -c 'import torch; print(torch.__version__)' 2>/dev/null")
  local v = pr and pr:read("a") or ""
  if pr then pr:close() end
  return v:match("%d") ~= nil
end

T.test("safetensors: files written by rnlua load in PyTorch, and back", function()
  if not have_torch() then T.skip(PY .. " has no torch (apt install python3-torch)") end
  local ts = sample_tensors()
  ts.empty = nil -- torch.frombuffer refuses empty buffers; covered above
  local p = tmp("torch.safetensors")
  rn.save_safetensors(p, ts, { source = "rnlua" })
  local py = write(tmp("check.py"), [==[
import json, struct, sys, torch
path, out = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
data = bytearray(raw[8 + n:])
DT = {"F32": torch.float32, "F64": torch.float64, "U8": torch.uint8, "I32": torch.int32,
      "I64": torch.int64, "BF16": torch.bfloat16, "F16": torch.float16}
res = {"__metadata__": hdr.pop("__metadata__", {})}
tensors = {}
for name, info in hdr.items():
    b, e = info["data_offsets"]
    t = torch.frombuffer(data[b:e], dtype=DT[info["dtype"]]).reshape(info["shape"])
    tensors[name] = t
    res[name] = {"dtype": info["dtype"], "shape": list(t.shape),
                 "values": [repr(v) for v in t.double().flatten().tolist()]}
print(json.dumps(res, sort_keys=True))
# write a file the other way: torch tensors, by hand, in the crate's layout
outs = {"x": tensors["f32"] * 2, "y": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "z": tensors["bf16"]}
hd, blobs, off = {"__metadata__": {"by": "torch"}}, [], 0
for k, t in outs.items():
    b = t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.contiguous().numpy().tobytes()
    hd[k] = {"dtype": {torch.float32: "F32", torch.int64: "I64", torch.bfloat16: "BF16"}[t.dtype],
             "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b); off += len(b)
h = json.dumps(hd).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(out, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
]==])
  local out = tmp("from_torch.safetensors")
  local pr = io.popen(PY .. " '" .. py .. "' '" .. p .. "' '" .. out .. "' 2>&1")
  local text = pr:read("a")
  pr:close()
  -- the torch side's values, compared one by one (repr of doubles is exact)
  local names = {}
  for k in pairs(ts) do names[#names + 1] = k end
  table.sort(names)
  T.truthy(text:find('"__metadata__": {"source": "rnlua"}', 1, true), text)
  for _, k in ipairs(names) do
    local vals = flat(ts[k]:double():totable())
    local blob = text:match('"' .. k:gsub("%p", "%%%0") .. '": (%b{})')
    T.truthy(blob, "torch did not see " .. k .. ": " .. text:sub(1, 300))
    local shape = {}
    for d in blob:match('"shape": (%b[])'):gmatch("%d+") do shape[#shape + 1] = tonumber(d) end
    T.eq(shape, ts[k]:size(), k .. " shape in torch")
    local i = 0
    for v in blob:match('"values": (%b[])'):gmatch('"([^"]+)"') do
      i = i + 1
      T.eq(tonumber(v), vals[i], k .. " value " .. i .. " in torch")
    end
    T.eq(i, #vals, k .. " value count in torch")
  end
  local back, meta = rn.load_safetensors(out)
  T.eq(meta, { by = "torch" })
  T.eq(flat(back.x:double():totable()), flat((ts.f32 * 2):double():totable()))
  T.eq(back.y:totable(), { { 0, 1, 2 }, { 3, 4, 5 } })
  T.eq(back.y.dtype, "int64")
  T.eq(back.z:double():totable(), ts.bf16:double():totable())
end)

-- ---- the real Fashion-MNIST ------------------------------------------------------------

T.test("read_idx: the real Fashion-MNIST (/usr/share/datasets/fashion-mnist)", function()
  local dir = "/usr/share/datasets/fashion-mnist"
  if not exists(dir .. "/train-images-idx3-ubyte.gz") then
    T.skip(dir .. " not installed (apt install dataset-fashion-mnist)")
  end
  local t0 = os.clock()
  local x = rn.read_idx(dir .. "/train-images-idx3-ubyte.gz")
  local y = rn.read_idx(dir .. "/train-labels-idx1-ubyte.gz", { classes = 10 })
  local dt = os.clock() - t0
  T.eq(x:size(), { 60000, 28, 28 })
  T.eq(y:size(), { 60000 })
  local counts = {}
  for _, l in ipairs(y:totable()) do counts[l] = (counts[l] or 0) + 1 end
  for c = 0, 9 do T.eq(counts[c], 6000, "class " .. c) end
  io.write(string.format("  [Fashion-MNIST train set read in %.2f s of CPU]\n", dt))
  local xt = rn.read_idx(dir .. "/t10k-images-idx3-ubyte.gz")
  T.eq(xt:size(), { 10000, 28, 28 })
  T.eq(rn.read_idx(dir .. "/t10k-labels-idx1-ubyte.gz", { classes = 10 }):size(), { 10000 })
  -- a label file does not pass for 9 classes
  T.raises(function() rn.read_idx(dir .. "/train-labels-idx1-ubyte.gz", { classes = 9 }) end,
    "train%-labels%-idx1%-ubyte%.gz: label 9 at record %d+ outside 0%.%.8")
end)

T.test("test_io cleanup", function()
  if TMP and TMP:match("^/tmp/rn_test_io%.") then sh("rm -rf '" .. TMP .. "'") end
end)
