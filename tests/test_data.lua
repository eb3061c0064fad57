-- test_data.lua - the data pipeline (core/data/, core/lua/l_data.c,
-- lua/rn/data.lua): determinism across worker counts, epochs as permutations
-- (checked against a pure-Lua copy of the documented hash), exact
-- normalization, pad-crop / flip / cutout / out_size against a pure-Lua
-- reference, last batches, abandoning epochs without hangs or thread leaks,
-- worker errors, bad options, splits, and a throughput measurement.
local T = require "t"
local rn = require "rn"
local data = require "rn.data"

local LIGHT = os.getenv("RN_TEST_LIGHT") ~= nil
local clock = rn._clock or os.clock

-- ---- helpers ---------------------------------------------------------------

-- uint8 (N,H,W,C) whose pixel (n,h,w,c) (0-based) is f(n,h,w,c) % 256
local function make_images(N, H, W, C, f)
  local t = {}
  for n = 0, N - 1 do
    local a = {}
    for h = 0, H - 1 do
      local b = {}
      for w = 0, W - 1 do
        local px = {}
        for c = 0, C - 1 do px[c + 1] = f(n, h, w, c) % 256 end
        b[w + 1] = px
      end
      a[h + 1] = b
    end
    t[n + 1] = a
  end
  return rn.tensor(t, { dtype = "uint8" })
end

local function pattern(n, h, w, c) return n * 37 + h * 11 + w * 5 + c * 71 + (h * w) % 7 end

local function ids(N) return rn.arange(N, { dtype = "int64" }) end

-- all batches of an epoch as tables {x = nested table, y = list}
local function collect(loader, epoch, skip)
  local out = {}
  for x, y, i in loader:epoch(epoch, skip) do
    out[#out + 1] = { x = x:totable(), y = y:totable(), i = i, shape = x:size() }
  end
  return out
end

local function f32(v) return (string.unpack("f", string.pack("f", v))) end

local function threads()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("Threads:%s*(%d+)"))
end

-- the documented hash (doc/data.md), in Lua integers (which wrap mod 2^64)
local G = 0x9e3779b97f4a7c15
local function mix(z)
  z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
  z = (z ~ (z >> 27)) * 0x94d049bb133111eb
  return z ~ (z >> 31)
end
local function key(seed, domain, epoch, index)
  return mix(mix(mix(seed ~ domain) + epoch * G) + index * G)
end
local function draw(k, j) return mix(k + (j + 1) * G) end
local function below(r, n) return ((r >> 32) * n) >> 32 end
local AUG, SHUF, SPLIT = 0x61756700, 0x73687566, 0x73706c74

local function ref_params(seed, epoch, index, pad, flip, oh, ow)
  local k = key(seed, AUG, epoch, index)
  return { dy = below(draw(k, 0), 2 * pad + 1), dx = below(draw(k, 1), 2 * pad + 1),
           flip = flip and (draw(k, 2) >> 63) == 1, cy = below(draw(k, 3), oh),
           cx = below(draw(k, 4), ow) }
end

local function ref_order(list, seed, epoch)
  local a = {}
  for i, v in ipairs(list) do a[i] = v end
  local k, n = key(seed, SHUF, epoch, 0), #a
  for i = n - 1, 1, -1 do
    local j = below(draw(k, n - 1 - i), i + 1)
    a[i + 1], a[j + 1] = a[j + 1], a[i + 1]
  end
  return a
end

local function tdiv(a, b) -- C's integer division (toward zero)
  local q = a // b
  if q < 0 and q * b ~= a then q = q + 1 end
  return q
end

-- The reference transform of sample n: a nested (OH,OW,C) table.
-- o: {H,W,C,oh,ow,pad,reflect,cutout,mean,std}; p: draws or nil (no augmentation)
local function ref_sample(f, n, o, p)
  local H, W, C = o.H, o.W, o.C
  local OH, OW = o.oh or H, o.ow or W
  local oy, ox = tdiv(OH - H, 2), tdiv(OW - W, 2)
  local pad = p and o.pad or 0
  local dy, dx = p and p.dy or 0, p and p.dx or 0
  local function src(v, size, off, len)
    if v < 0 or v >= size then
      if not o.reflect then return nil end
      v = v < 0 and -v or 2 * (size - 1) - v
    end
    local s = v - off
    if s >= 0 and s < len then return s end
    return nil
  end
  local out = {}
  for y = 0, OH - 1 do
    local row = {}
    for x = 0, OW - 1 do
      local xs = (p and p.flip) and (OW - 1 - x) or x
      local sy, sx = src(y + dy - pad, OH, oy, H), src(xs + dx - pad, OW, ox, W)
      local px = {}
      for c = 0, C - 1 do
        local v = (sy and sx) and (f(n, sy, sx, c) % 256) or 0
        px[c + 1] = f32((v / 255 - o.mean[c + 1]) / o.std[c + 1])
      end
      row[x + 1] = px
    end
    out[y + 1] = row
  end
  if p and (o.cutout or 0) > 0 then
    local y0, x0 = p.cy - o.cutout // 2, p.cx - o.cutout // 2
    for y = math.max(y0, 0), math.min(y0 + o.cutout, OH) - 1 do
      for x = math.max(x0, 0), math.min(x0 + o.cutout, OW) - 1 do
        for c = 1, C do out[y + 1][x + 1][c] = 0 end
      end
    end
  end
  return out
end

-- ---- determinism -----------------------------------------------------------

local function small_set()
  local N, H, W, C = 37, 6, 5, 3
  return make_images(N, H, W, C, pattern), ids(N), N
end

local AUG_OPTS = { batch_size = 8, seed = 7, pad_crop = 2, flip = true, cutout = 3,
                   mean = { 0.5, 0.4, 0.3 }, std = { 0.2, 0.25, 0.3 } }

local function with(base, extra)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

T.test("same seed gives identical batches; any worker count and prefetch give the same bytes", function()
  local imgs, labels = small_set()
  local ref = collect(rn.data_loader(imgs, labels, with(AUG_OPTS, { workers = 1 })), 3)
  T.eq(#ref, 5)
  for _, o in ipairs({ { workers = 1 }, { workers = 4 }, { workers = 0 }, { workers = 3, prefetch = 1 },
                       { workers = 4, prefetch = 8 }, { workers = 2, prefetch = 2 } }) do
    local got = collect(rn.data_loader(imgs, labels, with(AUG_OPTS, o)), 3)
    T.eq(got, ref, "workers " .. o.workers .. " prefetch " .. tostring(o.prefetch))
  end
  -- and the same loader again, after another epoch in between
  local l = rn.data_loader(imgs, labels, with(AUG_OPTS, { workers = 4 }))
  collect(l, 9)
  T.eq(collect(l, 3), ref)
end)

T.test("a different epoch or seed changes the order and the augmentation", function()
  local imgs, labels, N = small_set()
  local l = rn.data_loader(imgs, labels, with(AUG_OPTS, { batch_size = N, workers = 2 }))
  local e1, e2 = collect(l, 1)[1], collect(l, 2)[1]
  T.truthy(table.concat(e1.y, ",") ~= table.concat(e2.y, ","), "order differs between epochs")
  -- the same sample, found in both epochs, is augmented differently in at least one of them
  local pos1, pos2 = {}, {}
  for i, v in ipairs(e1.y) do pos1[v] = i end
  for i, v in ipairs(e2.y) do pos2[v] = i end
  local differ = 0
  for id = 0, N - 1 do
    local a, b = e1.x[pos1[id]], e2.x[pos2[id]]
    local same = true
    for y = 1, #a do for x = 1, #a[1] do for c = 1, 3 do
      if a[y][x][c] ~= b[y][x][c] then same = false end
    end end end
    if not same then differ = differ + 1 end
  end
  T.truthy(differ > N // 2, "most samples are augmented differently in epoch 2 (" .. differ .. ")")
  local other = rn.data_loader(imgs, labels, with(AUG_OPTS, { batch_size = N, seed = 8 }))
  T.truthy(table.concat(collect(other, 1)[1].y, ",") ~= table.concat(e1.y, ","), "seed changes the order")
end)

T.test("each epoch is a permutation, equal to the documented shuffle", function()
  local N = 101
  local imgs = make_images(N, 2, 2, 1, pattern)
  local l = rn.data_loader(imgs, ids(N), { batch_size = 10, seed = 12345, pad_crop = 0, workers = 3 })
  local all = {}
  for i = 0, N - 1 do all[i + 1] = i end
  for _, e in ipairs({ 0, 1, 2, 77 }) do
    local seen, order = {}, {}
    for _, b in ipairs(collect(l, e)) do
      for _, v in ipairs(b.y) do
        T.truthy(not seen[v], "sample " .. v .. " twice in epoch " .. e)
        seen[v] = true
        order[#order + 1] = v
      end
    end
    T.eq(#order, N)
    T.eq(order, ref_order(all, 12345, e), "epoch " .. e .. " order")
  end
  -- shuffle = false keeps the given order
  local plain = rn.data_loader(imgs, ids(N), { batch_size = 50, shuffle = false, pad_crop = 0 })
  local order = {}
  for _, b in ipairs(collect(plain, 4)) do for _, v in ipairs(b.y) do order[#order + 1] = v end end
  T.eq(order, all)
end)

T.test("sample draws equal the documented hash", function()
  for _, c in ipairs({ { 0, 0, 0 }, { 1, 1, 1 }, { 42, 3, 49999 }, { -5, 7, 12 }, { 1 << 40, 100, 3 } }) do
    local seed, e, i = c[1], c[2], c[3]
    local got = rn._data_sample_params(seed, e, i, { pad_crop = 4, flip = true, out_size = { 32, 30 } })
    T.eq(got, ref_params(seed, e, i, 4, true, 32, 30), "seed " .. seed)
    local noflip = rn._data_sample_params(seed, e, i, { pad_crop = 4, flip = false })
    T.eq(noflip.flip, false)
    T.eq(noflip.dx, got.dx, "turning flip off leaves the crop alone")
    T.eq(noflip.cy, nil)
  end
  -- draws spread over their whole range
  local seen = {}
  for i = 0, 199 do seen[rn._data_sample_params(0, 1, i, { pad_crop = 2 }).dx] = true end
  T.eq(seen, { [0] = true, [1] = true, [2] = true, [3] = true, [4] = true })
end)

-- ---- values ------------------------------------------------------------------

T.test("normalization is (v/255 - mean[c]) / std[c] in float32, exactly", function()
  local N, H, W, C = 3, 4, 5, 3
  local f = function(n, h, w, c) return (n * 97 + h * 31 + w * 13 + c * 101) * 7 end
  local imgs = make_images(N, H, W, C, f)
  local o = { H = H, W = W, C = C, mean = { 0.4914, 0.4822, 0.4465 }, std = { 0.2470, 0.2435, 0.2616 } }
  local l = rn.data_loader(imgs, ids(N), { batch_size = N, shuffle = false, augment = false,
                                           mean = o.mean, std = o.std })
  local b = collect(l, 1)[1]
  T.eq(b.shape, { N, H, W, C })
  for n = 0, N - 1 do T.eq(b.x[n + 1], ref_sample(f, n, o, nil), "sample " .. n) end
  -- one value by hand: sample 0, pixel (0,0), channel 0 holds 0; channel 1 holds 101*7 % 256 = 195
  T.eq(b.x[1][1][1][1], f32((0 / 255 - 0.4914) / 0.2470))
  T.eq(b.x[1][1][1][2], f32((195 / 255 - 0.4822) / 0.2435))
  -- without mean/std: v/255
  local raw = collect(rn.data_loader(imgs, ids(N), { batch_size = 1, shuffle = false, augment = false }), 1)
  T.eq(raw[1].x[1][1][1][2], f32(195 / 255))
  T.eq(raw[2].y, { 1 })
end)

local function check_aug(opts, o, N, f, epoch, seed)
  local imgs = make_images(N, o.H, o.W, o.C, f)
  local lo = with(opts, { batch_size = N, shuffle = false, seed = seed, mean = o.mean, std = o.std })
  local b = collect(rn.data_loader(imgs, ids(N), lo), epoch)[1]
  local flips = 0
  for n = 0, N - 1 do
    local p = rn._data_sample_params(seed, epoch, n, { pad_crop = opts.pad_crop or 4,
      flip = opts.flip ~= false, out_size = { o.oh or o.H, o.ow or o.W } })
    if p.flip then flips = flips + 1 end
    T.eq(b.x[n + 1], ref_sample(f, n, o, p), "sample " .. n)
  end
  return flips
end

T.test("pad-crop (zeros), flip and cutout match the Lua reference", function()
  local o = { H = 5, W = 6, C = 2, pad = 2, cutout = 3, mean = { 0.5, 0.25 }, std = { 0.5, 0.125 } }
  local flips = check_aug({ pad_crop = 2, cutout = 3, flip = true, workers = 2 }, o, 12, pattern, 4, 99)
  T.truthy(flips > 0 and flips < 12, "some samples flipped, some not (" .. flips .. ")")
  -- even cutout size, cutout at borders, one channel
  check_aug({ pad_crop = 1, cutout = 4, workers = 1 },
    { H = 4, W = 4, C = 1, pad = 1, cutout = 4, mean = { 0.1 }, std = { 0.3 } }, 10, pattern, 2, 5)
end)

T.test("pad-crop with reflect padding matches the Lua reference", function()
  local o = { H = 5, W = 4, C = 3, pad = 3, reflect = true, mean = { 0, 0, 0 }, std = { 1, 1, 1 } }
  check_aug({ pad_crop = 3, pad_mode = "reflect", workers = 3 }, o, 16, pattern, 1, 3)
  -- with flip off, the identity crop (dx = dy = pad) reproduces the image
  local imgs = make_images(1, 3, 3, 1, pattern)
  local found = false
  for e = 0, 200 do
    local p = rn._data_sample_params(0, e, 0, { pad_crop = 1 })
    if p.dx == 1 and p.dy == 1 then
      local b = collect(rn.data_loader(imgs, ids(1), { batch_size = 1, pad_crop = 1,
        pad_mode = "reflect", flip = false }), e)[1]
      T.eq(b.x[1], ref_sample(pattern, 0, { H = 3, W = 3, C = 1, mean = { 0 }, std = { 1 } }, nil))
      found = true
      break
    end
  end
  T.truthy(found)
end)

T.test("out_size pads 28x28x1 to 32x32x1 with zeros (Fashion-MNIST), then augments", function()
  local N = 3
  local f = function(n, h, w) return 1 + n + h * 3 + w * 7 end -- never 0 inside the image
  local imgs = make_images(N, 28, 28, 1, f)
  local mean, std = { 0.2860 }, { 0.3530 }
  local b = collect(rn.data_loader(imgs, ids(N), { batch_size = N, shuffle = false, augment = false,
    out_size = { 32, 32 }, mean = mean, std = std }), 1)[1]
  T.eq(b.shape, { N, 32, 32, 1 })
  local zero = f32((0 - 0.2860) / 0.3530)
  for n = 1, N do
    for y = 1, 32 do for x = 1, 32 do
      local inside = y >= 3 and y <= 30 and x >= 3 and x <= 30
      local v = b.x[n][y][x][1]
      if inside then T.eq(v, f32((f(n - 1, y - 3, x - 3) % 256 / 255 - 0.2860) / 0.3530))
      else T.eq(v, zero, "border pixel " .. y .. "," .. x) end
    end end
  end
  -- with augmentation on the padded canvas (and odd padding 5 -> 8, centre crop 6 -> 4)
  check_aug({ out_size = { 8, 4 }, pad_crop = 2, cutout = 2 },
    { H = 5, W = 6, C = 1, oh = 8, ow = 4, pad = 2, cutout = 2, mean = mean, std = std }, 9, pattern, 3, 1)
  check_aug({ out_size = { 7, 9 }, pad_crop = 3, pad_mode = "reflect" },
    { H = 4, W = 4, C = 2, oh = 7, ow = 9, pad = 3, reflect = true, mean = { 0, 0 }, std = { 1, 1 } },
    6, pattern, 2, 11)
end)

-- ---- batches -------------------------------------------------------------------

T.test("the last partial batch is kept, or dropped with drop_last", function()
  local N = 10
  local imgs = make_images(N, 2, 2, 1, pattern)
  local kept = rn.data_loader(imgs, ids(N), { batch_size = 4, pad_crop = 0 })
  T.eq(kept:num_batches(), 3); T.eq(kept:size(), 10); T.eq(kept:batch_size(), 4)
  local sizes = {}
  for x, y, i in kept:epoch(1) do
    sizes[i] = x:size(1)
    T.eq(y:size(), { x:size(1) }); T.eq(y.dtype, "int64"); T.eq(x.dtype, "float32")
  end
  T.eq(sizes, { 4, 4, 2 })
  local dropped = rn.data_loader(imgs, ids(N), { batch_size = 4, drop_last = true, pad_crop = 0 })
  T.eq(dropped:num_batches(), 2)
  local n = 0
  for x in dropped:epoch(1) do n = n + 1; T.eq(x:size(1), 4) end
  T.eq(n, 2)
  local exact = rn.data_loader(imgs, ids(N), { batch_size = 5, drop_last = true, pad_crop = 0 })
  T.eq(exact:num_batches(), 2)
  T.eq(kept:sample_shape(), { 2, 2, 1 })
end)

T.test("labels of any integer dtype come out as int64; batches are new tensors", function()
  local N = 6
  local imgs = make_images(N, 2, 2, 1, pattern)
  for _, dt in ipairs({ "uint8", "int32", "int64" }) do
    local lab = rn.tensor({ 5, 4, 3, 2, 1, 0 }, { dtype = dt })
    local b = collect(rn.data_loader(imgs, lab, { batch_size = 6, shuffle = false, pad_crop = 0 }), 1)[1]
    T.eq(b.y, { 5, 4, 3, 2, 1, 0 }, dt)
  end
  local l = rn.data_loader(imgs, ids(N), { batch_size = 2, pad_crop = 0 })
  local kept = {}
  for x in l:epoch(1) do kept[#kept + 1] = x end
  l:close()
  collectgarbage()
  T.eq(#kept, 3)
  for i, x in ipairs(kept) do
    T.eq(x:size(), { 2, 2, 2, 1 })
    for j = 1, i - 1 do T.truthy(rawequal(x, kept[j]) == false) end
  end
  kept[1]:fill_(0) -- they are ours to change
  T.truthy(kept[2]:sum():item() ~= 0)
end)

T.test("indices serve a subset; skip resumes mid-epoch with the same batches", function()
  local N = 20
  local imgs = make_images(N, 3, 3, 1, pattern)
  local sub = rn.tensor({ 19, 3, 5, 7, 0, 11, 12 }, { dtype = "int64" })
  local l = rn.data_loader(imgs, ids(N), { indices = sub, batch_size = 3, seed = 4, pad_crop = 1 })
  T.eq(l:size(), 7); T.eq(l:num_batches(), 3)
  local got = {}
  for _, b in ipairs(collect(l, 2)) do for _, v in ipairs(b.y) do got[#got + 1] = v end end
  T.eq(got, ref_order({ 19, 3, 5, 7, 0, 11, 12 }, 4, 2))
  -- a sample's augmentation is keyed on its id, not its position: same pixels as in a full loader
  local full = rn.data_loader(imgs, ids(N), { batch_size = N, seed = 4, pad_crop = 1 })
  local fb = collect(full, 2)[1]
  local fpos = {}
  for i, v in ipairs(fb.y) do fpos[v] = i end
  for _, b in ipairs(collect(l, 2)) do
    for i, v in ipairs(b.y) do T.eq(b.x[i], fb.x[fpos[v]], "sample " .. v) end
  end
  -- skip
  local whole = collect(l, 5)
  local rest = collect(l, 5, 1)
  T.eq(#rest, 2)
  T.eq(rest[1].i, 2)
  T.eq(rest[1].x, whole[2].x); T.eq(rest[2].y, whole[3].y)
  T.eq(#collect(l, 5, 3), 0)
  -- a non-contiguous image tensor gives the same batches as its contiguous copy
  local nc = imgs:transpose(2, 3)
  T.eq(nc:is_contiguous(), false)
  local a = collect(rn.data_loader(nc, ids(N), { batch_size = 5, seed = 1, pad_crop = 1 }), 1)
  local b = collect(rn.data_loader(nc:contiguous(), ids(N), { batch_size = 5, seed = 1, pad_crop = 1 }), 1)
  T.eq(a, b)
end)

-- ---- lifetime and threads -------------------------------------------------------

T.test("abandoning epochs (break, error, new epoch, close, gc) never hangs or leaks threads", function()
  local imgs, labels = make_images(64, 8, 8, 3, pattern), ids(64)
  do -- warm up anything that starts threads once (e.g. an OpenMP pool)
    local l = rn.data_loader(imgs, labels, { batch_size = 4, workers = 2 })
    for _ in l:epoch(0) do end
    l:close()
  end
  collectgarbage()
  local before = threads()
  if before then -- the count sees the workers of a running epoch
    local l = rn.data_loader(imgs, labels, { batch_size = 4, workers = 3 })
    for _ in l:epoch(0) do T.eq(threads(), before + 3); break end
    l:close()
    T.eq(threads(), before)
  end
  local t0 = clock()
  local rounds = LIGHT and 50 or 200
  for r = 1, rounds do
    local l = rn.data_loader(imgs, labels, { batch_size = 4, workers = 1 + r % 4, prefetch = 1 + r % 3 })
    for x, y, i in l:epoch(r) do
      if i == 1 + r % 5 then break end
    end
    if r % 3 == 0 then l:close() end
    l = nil
    if r % 2 == 0 then collectgarbage() end
  end
  collectgarbage(); collectgarbage()
  local elapsed = clock() - t0
  if before then T.eq(threads(), before, "threads after " .. rounds .. " abandoned epochs") end
  T.truthy(elapsed < 60, "abandoned epochs took " .. elapsed .. " s")

  local l = rn.data_loader(imgs, labels, { batch_size = 4, workers = 3 })
  -- an error inside the loop body closes the epoch
  T.raises(function() for _ in l:epoch(1) do error("boom") end end, "boom")
  -- a newer epoch replaces an older iterator
  local it = l:epoch(1)
  T.truthy(it())
  local it2 = l:epoch(2)
  T.raises(function() it() end, "this epoch is over")
  local n = 0
  while it2() do n = n + 1 end
  T.eq(n, 16)
  T.eq(it2(), nil, "a finished epoch keeps returning nil")
  -- closing the loader under a live iterator
  local it3 = l:epoch(3)
  it3()
  l:close()
  T.raises(function() it3() end, "loader is closed")
  T.raises(function() l:num_batches() end, "loader is closed")
  T.raises(function() l:epoch(1) end, "loader is closed")
  l:close() -- twice is fine
  T.eq(tostring(l), "rn.DataLoader (closed)")
  -- <close> on the loader itself
  do
    local l2 <close> = rn.data_loader(imgs, labels, { batch_size = 8 })
    T.truthy(l2:epoch(1)())
  end
end)

T.test("a worker's error reaches the consumer at that batch and ends the epoch", function()
  local imgs, labels = make_images(20, 4, 4, 1, pattern), ids(20)
  for _, w in ipairs({ 0, 1, 3 }) do
    local l = rn.data_loader(imgs, labels, { batch_size = 4, workers = w, _fail_batch = 3, pad_crop = 1 })
    local it = l:epoch(1)
    T.truthy(it()); T.truthy(it())
    T.raises(function() it() end, "batch 3 of epoch 1 failed in a worker")
    T.raises(function() it() end, "this epoch is over")
    T.raises(function() for _ in l:epoch(2) do end end, "batch 3 of epoch 2 failed")
    local n = 0
    for _, _, i in l:epoch(3) do n = i; if i == 2 then break end end -- usable again
    T.eq(n, 2)
  end
end)

-- ---- errors ---------------------------------------------------------------------

T.test("bad arguments and options give errors naming the option and its range", function()
  local imgs, labels = make_images(6, 8, 8, 3, pattern), ids(6)
  local function bad(opts, pat, im, lab)
    T.raises(function() rn.data_loader(im or imgs, lab or labels, opts) end, pat, true)
  end
  bad({ batch_size = 0 }, "data_loader: batch_size 0 outside 1..6")
  bad({ batch_size = 7 }, "batch_size 7 outside 1..6")
  T.eq(rn.data_loader(imgs, labels):batch_size(), 6) -- the default 32, capped at N
  bad({}, "data_loader: images must be uint8 (N,H,W,C), got float32 (2,3)", rn.zeros(2, 3))
  bad({}, "images must be uint8 (N,H,W,C), got uint8 (6,8,8)", rn.zeros({ 6, 8, 8 }, { dtype = "uint8" }))
  bad({}, "argument 1 must be a tensor, got table", {})
  bad({}, "labels must be uint8, int32 or int64 (N), got float32 (6)", nil, rn.zeros(6))
  bad({}, "labels length 5 must equal N = 6", nil, ids(5))
  bad({}, "labels[2] = -1 is negative", nil, rn.tensor({ 0, -1, 0, 0, 0, 0 }, { dtype = "int32" }))
  bad({ mean = { 0.5 } }, "mean has 1 values; it needs one per channel (C = 3)")
  bad({ std = { 1, 1, 1, 1 } }, "std has 4 values; it needs one per channel (C = 3)")
  bad({ std = { 1, 0, 1 } }, "std[2] = 0 must be a finite number > 0")
  bad({ mean = { 0, 0 / 0, 0 } }, "mean[2] = ")
  bad({ mean = 0.5 }, "option 'mean' must be a table of numbers")
  bad({ mean = { 0, "x", 0 } }, "mean[2] must be a number, got string")
  bad({ pad_crop = 8 }, "pad_crop 8 outside 0..7")
  bad({ pad_crop = -1 }, "pad_crop -1 outside 0..7")
  bad({ pad_crop = 1 << 40 }, "pad_crop 1099511627776 is out of range")
  bad({ pad_mode = "wrap" }, "pad_mode 'wrap' unknown (valid: zeros, reflect)")
  bad({ cutout = 9 }, "cutout 9 outside 0..8")
  bad({ out_size = 32 }, "option 'out_size' must be a table {H, W}")
  bad({ out_size = { 0, 8 } }, "out_size[1] = 0 outside 1..32768")
  bad({ out_size = { 4, 4 } }, "pad_crop 4 outside 0..3") -- the default pad_crop on a 4x4 output
  bad({ workers = 65 }, "workers 65 outside 0..64")
  bad({ workers = -1 }, "workers -1 outside 0..64")
  bad({ prefetch = 0 }, "prefetch 0 outside 1..64")
  bad({ indices = rn.tensor({ 0, 6 }, { dtype = "int64" }) }, "indices[2] = 6 outside 0..5")
  bad({ indices = rn.tensor({ -1 }, { dtype = "int32" }) }, "indices[1] = -1 outside 0..5")
  bad({ indices = { 1, 2 } }, "option 'indices' must be an integer tensor of sample ids, got table")
  bad({ indices = rn.zeros(2) }, "indices must be uint8, int32 or int64 (M), got float32 (2)")
  bad({ indices = rn.zeros({ 0 }, { dtype = "int64" }) }, "indices is empty")
  bad({ batchsize = 2 }, "unknown option 'batchsize'")
  bad({ shuffle = "yes" }, "option 'shuffle' must be a boolean")
  bad({ batch_size = 2.5 }, "option 'batch_size' must be an integer")
  bad("x", "options must be a table")
  -- augment = false skips the augmentation ranges (they are unused)
  T.eq(rn.data_loader(imgs, labels, { augment = false, out_size = { 4, 4 } }):sample_shape(), { 4, 4, 3 })
  local l = rn.data_loader(imgs, labels, { batch_size = 2 })
  T.raises(function() l:epoch(-1) end, "epoch -1 is negative", true)
  T.raises(function() l:epoch(1, 4) end, "skip 4 outside 0..3")
  T.raises(function() rn._data_sample_params(0, 0, 0, { pad = 1 }) end, "unknown option 'pad'")
  T.raises(function() data.Loader(imgs, labels, { dataset = "imagenet" }) end, "unknown dataset 'imagenet'")
  T.raises(function() data.split(10, 1.5) end, "val_fraction 1.5 outside 0..1")
  T.raises(function() data.split(-1, 0.5) end, "n must be an integer >= 0")
  T.raises(function() rn.data_split(10, -0.5) end, "fraction %-0.5 outside 0..1")
end)

-- ---- split and the Lua layer -----------------------------------------------------

T.test("split: sizes, disjoint, covering, sorted, keyed on the seed", function()
  for _, c in ipairs({ { 100, 0.1 }, { 50000, 0.1 }, { 7, 0.5 }, { 10, 0 }, { 10, 1 }, { 0, 0.3 } }) do
    local n, frac = c[1], c[2]
    local tr, va = data.split(n, frac, 42)
    local nv = math.floor(n * frac + 0.5)
    T.eq(va:size(), { nv }); T.eq(tr:size(), { n - nv }); T.eq(tr.dtype, "int64")
    local seen, prev = {}, -1
    for _, list in ipairs({ tr:totable(), va:totable() }) do
      prev = -1
      for _, v in ipairs(list) do
        T.truthy(v > prev, "sorted"); prev = v
        T.truthy(not seen[v], "disjoint"); seen[v] = true
      end
    end
    local count = 0
    for _ in pairs(seen) do count = count + 1 end
    T.eq(count, n)
  end
  local _, a = data.split(1000, 0.1, 1)
  local _, b = data.split(1000, 0.1, 1)
  local _, c = data.split(1000, 0.1, 2)
  T.eq(a:totable(), b:totable())
  T.truthy(table.concat(a:totable(), ",") ~= table.concat(c:totable(), ","))
  -- the documented choice: val = the first nval ids of the shuffle keyed on (seed, "splt")
  local all = {}
  for i = 0, 99 do all[i + 1] = i end
  local k, p = key(5, SPLIT, 0, 0), all
  for i = 99, 1, -1 do
    local j = below(draw(k, 99 - i), i + 1)
    p[i + 1], p[j + 1] = p[j + 1], p[i + 1]
  end
  local want = {}
  for i = 1, 20 do want[i] = p[i] end
  table.sort(want)
  local _, v = data.split(100, 0.2, 5)
  T.eq(v:totable(), want)
  -- a split feeds two loaders
  local imgs = make_images(30, 2, 2, 3, pattern)
  local tri, vai = data.split(30, 0.2, 9)
  local tl = data.Loader(imgs, ids(30), { indices = tri, batch_size = 8, pad_crop = 1 })
  local vl = data.Loader(imgs, ids(30), { indices = vai, batch_size = 4, augment = false, shuffle = false })
  T.eq(tl:size(), 24); T.eq(vl:size(), 6)
  local got = {}
  for _, y in vl:epoch(1) do for _, v in ipairs(y:totable()) do got[#got + 1] = v end end
  T.eq(got, vai:totable())
end)

T.test("data.Loader picks CIFAR-10 or Fashion-MNIST statistics by default", function()
  local rgb = make_images(2, 2, 2, 3, function() return 255 end)
  local b = collect(data.Loader(rgb, ids(2), { batch_size = 2, augment = false }), 1)[1]
  T.eq(b.x[1][1][1], { f32((1 - 0.4914) / 0.2470), f32((1 - 0.4822) / 0.2435), f32((1 - 0.4465) / 0.2616) })
  local gray = make_images(2, 28, 28, 1, function() return 0 end)
  local g = collect(data.Loader(gray, ids(2), { batch_size = 1, out_size = { 32, 32 } }), 1)[1]
  T.eq(g.shape, { 1, 32, 32, 1 })
  T.eq(g.x[1][1][1][1], f32((0 - 0.2860) / 0.3530))
  local m = collect(data.Loader(gray, ids(2), { batch_size = 1, dataset = "mnist", augment = false }), 1)[1]
  T.eq(m.x[1][1][1][1], f32((0 - 0.1307) / 0.3081))
  local own = collect(data.Loader(gray, ids(2), { batch_size = 1, mean = { 0 }, std = { 1 }, augment = false }), 1)[1]
  T.eq(own.x[1][1][1][1], 0)
  T.truthy(tostring(data.Loader(rgb, ids(2), { batch_size = 1, pad_crop = 1 })):find("2 samples", 1, true))
end)

-- ---- throughput -------------------------------------------------------------------

T.test("throughput: 50000 32x32x3 images, full augmentation, 2 workers (reported)", function()
  local N = LIGHT and 5000 or 50000
  local one = (rn.rand({ 1, 32, 32, 3 }) * 255):byte()
  local imgs = one:expand(N, 32, 32, 3):contiguous()
  local labels = rn.zeros({ N }, { dtype = "int64" })
  local l = data.Loader(imgs, labels, { batch_size = 128, seed = 1, pad_crop = 4, flip = true,
                                        cutout = 8, workers = 2, prefetch = 4 })
  local t0, n = clock(), 0
  for x in l:epoch(1) do n = n + x:size(1) end
  local dt = clock() - t0
  T.eq(n, N)
  io.write(string.format("     data pipeline: %d images (32x32x3, pad-crop 4, flip, cutout 8, batch 128) " ..
    "in %.3f s with 2 workers: %.0f images/s\n", N, dt, N / dt))
  l:close()
end)
