-- test_plot.lua - PNG writing, the canvas, and rn.plot charts. Every PNG is
-- parsed back here: signature, chunk order, each chunk's CRC (a Lua CRC32),
-- IHDR fields; the IDAT stream is inflated by python3's zlib (skipped where
-- no python3 with zlib exists) and the rows' filter bytes and pixels checked.
local T = require "t"
local rn = require "rn"
local plot = require "rn.plot"

---------------------------------------------------------------------------
-- PNG reading helpers

local CRC = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  CRC[i] = c
end
local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = CRC[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

local files = require "files"
local read_all = files.read

-- Parses a PNG file: {w=, h=, depth=, ctype=, compression=, filter=, interlace=,
-- chunks={types...}, idat=string}; raises on any structural fault.
local function parse_png(path)
  local s = read_all(path)
  assert(s:sub(1, 8) == "\137PNG\r\n\26\n", "bad PNG signature")
  local pos, png = 9, {chunks = {}}
  local idat = {}
  while pos <= #s do
    local len, typ = string.unpack(">I4c4", s, pos)
    local data = s:sub(pos + 8, pos + 7 + len)
    assert(#data == len, "truncated chunk " .. typ)
    local crc = string.unpack(">I4", s, pos + 8 + len)
    assert(crc == crc32(typ .. data), "CRC mismatch in chunk " .. typ)
    png.chunks[#png.chunks + 1] = typ
    if typ == "IHDR" then
      png.w, png.h, png.depth, png.ctype, png.compression, png.filter, png.interlace =
        string.unpack(">I4I4BBBBB", data)
    elseif typ == "IDAT" then
      idat[#idat + 1] = data
    end
    pos = pos + 12 + len
  end
  assert(png.chunks[1] == "IHDR", "IHDR is not first")
  assert(png.chunks[#png.chunks] == "IEND", "IEND is not last")
  png.idat = table.concat(idat)
  return png
end

local have_py
local function inflate(z)
  if have_py == nil then
    local p = io.popen("python3 -c 'import zlib' 2>/dev/null && echo ok")
    have_py = p and p:read("a"):match("ok") ~= nil
    if p then p:close() end
  end
  if not have_py then T.skip("python3 with zlib not found: IDAT not inflated") end
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(z)
  f:close()
  local p = assert(io.popen("python3 -c \"import sys,zlib; sys.stdout.buffer.write(" ..
    "zlib.decompress(open(sys.argv[1],'rb').read()))\" " .. tmp, "r"))
  local raw = p:read("a")
  p:close()
  os.remove(tmp)
  return raw
end

-- The pixels of a parsed PNG as one RGB string (filter bytes checked and dropped).
local function pixels(png)
  local raw = inflate(png.idat)
  local row = 1 + png.w * 3
  T.eq(#raw, row * png.h, "inflated size")
  local rows = {}
  for y = 0, png.h - 1 do
    T.eq(raw:byte(y * row + 1), 0, "filter byte of row " .. y)
    rows[#rows + 1] = raw:sub(y * row + 2, (y + 1) * row)
  end
  return table.concat(rows)
end

local function px(rgb, w, x, y)
  local i = (y * w + x) * 3 + 1
  return {rgb:byte(i, i + 2)}
end

local function has_color(rgb, c)
  local pat = string.char(c[1], c[2], c[3])
  local i = 1
  while true do
    local j = rgb:find(pat, i, true)
    if not j then return false end
    if (j - 1) % 3 == 0 then return true end
    i = j + 1
  end
end

local tmpdir = files.tmpdir

local function ls(dir)
  local p = io.popen("ls -A '" .. dir .. "'")
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function rmdir(d) os.execute("rm -rf '" .. d .. "'") end

---------------------------------------------------------------------------
-- rn._png_write

T.test("png_write: a valid RGB8 PNG that round-trips", function()
  local w, h = 7, 5
  local bytes = {}
  for y = 0, h - 1 do
    for x = 0, w - 1 do
      bytes[#bytes + 1] = string.char((x * 37) % 256, (y * 51) % 256, (x * y * 13) % 256)
    end
  end
  local rgb = table.concat(bytes)
  local path = os.tmpname()
  rn._png_write(path, w, h, rgb)
  local png = parse_png(path)
  T.eq({png.w, png.h, png.depth, png.ctype, png.compression, png.filter, png.interlace},
    {7, 5, 8, 2, 0, 0, 0}, "IHDR")
  T.eq(png.chunks[2], "IDAT")
  T.truthy(pixels(png) == rgb, "pixels differ after the round trip")
  os.remove(path)
end)

T.test("png_write: replaces an existing file, leaves no temp file", function()
  local d = tmpdir()
  local path = d .. "/a.png"
  local f = assert(io.open(path, "w"))
  f:write("old")
  f:close()
  rn._png_write(path, 1, 1, "\255\0\0")
  T.eq(ls(d), {"a.png"})
  local png = parse_png(path)
  T.eq({png.w, png.h}, {1, 1})
  T.eq(pixels(png), "\255\0\0")
  rmdir(d)
end)

T.test("png_write: bad sizes name the valid range", function()
  for _, s in ipairs({{0, 1}, {1, 0}, {-3, 4}, {16385, 1}, {1, 16385}}) do
    T.raises(function() rn._png_write(os.tmpname(), s[1], s[2], "") end, "1..16384", true)
  end
  T.raises(function() rn._png_write("/tmp/x.png", 2, 2, "abc") end,
    "rgb has 3 bytes; a 2x2 RGB image needs 12", true)
  T.raises(function() rn._png_write("/tmp/x.png", 1.5, 2, "") end, "width must be an integer")
  T.raises(function() rn._png_write(nil, 1, 1, "abc") end, "path must be a string")
  T.raises(function() rn._png_write("", 1, 1, "abc") end, "path is empty")
  T.raises(function() rn._png_write("/tmp/x.png", 1, 1, 7) end, "rgb must be a string")
end)

T.test("png_write: an unwritable path is a clear error and leaves no temp file", function()
  local d = tmpdir()
  local path = d .. "/missing/sub/a.png"
  local err = T.raises(function() rn._png_write(path, 2, 2, ("\0"):rep(12)) end, path, true)
  T.truthy(err:find("No such file or directory", 1, true), err)
  -- a folder in the way
  os.execute("mkdir '" .. d .. "/dir.png'")
  T.raises(function() rn._png_write(d .. "/dir.png", 1, 1, "abc") end, "is a folder")
  T.eq(ls(d), {"dir.png"})
  -- a read-only folder (not for root, who may write anywhere)
  local p = io.popen("id -u")
  local root = p:read("l") == "0"
  p:close()
  if not root then
    os.execute("chmod 555 '" .. d .. "'")
    T.raises(function() rn._png_write(d .. "/a.png", 1, 1, "abc") end, "Permission denied")
    os.execute("chmod 755 '" .. d .. "'")
    T.eq(ls(d), {"dir.png"})
  end
  rmdir(d)
end)

---------------------------------------------------------------------------
-- rn._canvas

T.test("canvas: sizes, fill, get, pixels", function()
  local c = rn._canvas(4, 3)
  T.eq({c:size()}, {4, 3})
  T.eq({c:get(0, 0)}, {255, 255, 255}, "starts white")
  c:fill(10, 20, 30)
  T.eq({c:get(3, 2)}, {10, 20, 30})
  T.eq(c:pixels(), string.char(10, 20, 30):rep(12))
  T.raises(function() c:get(4, 0) end, "outside")
  T.truthy(tostring(c):find("4x3", 1, true))
  c:close()
  T.raises(function() c:fill(0, 0, 0) end, "closed")
  c:close() -- twice is fine
  for _, s in ipairs({{0, 5}, {5, -1}, {16385, 2}}) do
    T.raises(function() rn._canvas(s[1], s[2]) end, "outside the valid range 1..16384", true)
  end
  T.raises(function() rn._canvas(16384, 16384.5) end, "height must be an integer")
end)

T.test("canvas: argument checks", function()
  local c = rn._canvas(10, 10)
  T.raises(function() c:fill(256, 0, 0) end, "red must be an integer 0..255")
  T.raises(function() c:fill(0, -1, 0) end, "green must be an integer 0..255")
  T.raises(function() c:fill(0, 0, 1.5) end, "blue must be an integer 0..255")
  T.raises(function() c:line(0, 0, "a", 0, 1, 1, 1) end, "x1 must be a number")
  T.raises(function() c:line(0, 0, 1, 1, 1, 1, 1, 0) end, "thick")
  T.raises(function() c:text(0, 0, {}, 1, 1, 1) end, "text must be a string")
  T.raises(function() c:text(0, 0, "a", 1, 1, 1, 17) end, "scale 17 outside 1..16")
  T.raises(function() c:dot(0, 0, -1, 1, 1, 1) end, "radius")
  T.raises(function() c:save_png("") end, "path is empty")
  -- drawing off the canvas or with NaN is not an error
  c:line(-1e300, 5, 1e300, 5, 0, 0, 0, 3)
  c:line(0 / 0, 0, 5, 5, 0, 0, 0)
  c:rect(-100, -100, 1e9, 3, 0, 0, 0)
  c:text(1e12, -1e12, "far", 0, 0, 0)
  c:dot(1e300, 0, 2, 0, 0, 0)
  T.eq({c:get(5, 5)}, {0, 0, 0}, "the huge horizontal line crossed the canvas")
end)

T.test("canvas: lines, rects, dots, text land where asked", function()
  local c = rn._canvas(60, 40)
  c:fill(10, 20, 30)
  c:line(0, 5, 59, 5, 200, 0, 0, 1)
  T.eq({c:get(30, 5)}, {200, 0, 0}, "on the line")
  T.eq({c:get(30, 6)}, {10, 20, 30}, "next to a 1-px line")
  c:line(10, 10, 10, 30, 0, 200, 0, 2)        -- vertical, 2 thick: full at x=10
  T.eq({c:get(10, 20)}, {0, 200, 0})
  local r, g = c:get(12, 20)
  T.eq({r, g}, {10, 20}, "2-px line stays within a pixel and a half")
  c:line(20, 10, 40, 30, 0, 0, 250, 2)        -- diagonal: its centre pixels are full
  T.eq({c:get(30, 20)}, {0, 0, 250})
  c:rect(50, 30, 5, 5, 1, 2, 3, false)        -- outline
  T.eq({c:get(50, 30)}, {1, 2, 3})
  T.eq({c:get(52, 32)}, {10, 20, 30}, "outline is hollow")
  c:rect(50, 30, 5, 5, 1, 2, 3)               -- filled
  T.eq({c:get(52, 32)}, {1, 2, 3})
  c:dot(5, 35, 3, 9, 9, 9)
  T.eq({c:get(5, 35)}, {9, 9, 9})
  T.eq({c:get(5, 30)}, {10, 20, 30}, "dot of radius 3 does not reach 5 px")
  -- 'T' at scale 1 from (30, 32): its bar is the top row, x 30..34
  local wd = c:text(30, 32, "T", 255, 255, 0, 1)
  T.eq(wd, 5)
  T.eq({c:get(30, 32)}, {255, 255, 0})
  T.eq({c:get(32, 38)}, {255, 255, 0}, "stem")
  T.eq({c:get(31, 33)}, {10, 20, 30})
  T.eq(c:text_width("abc"), 34, "3 glyphs at scale 2: 3*12-2")
  T.eq(c:text_width("abc", 1), 17)
  T.eq(c:text(0, 0, "", 0, 0, 0), 0)
end)

T.test("canvas: save_png writes the canvas pixels exactly", function()
  local c = rn._canvas(120, 50)
  c:fill(250, 250, 245)
  c:line(5, 45, 115, 10, 31, 119, 180, 2)
  c:text(4, 4, "Title 0.5", 20, 20, 20, 2)
  local path = os.tmpname()
  T.eq(c:save_png(path), c, "returns the canvas")
  local png = parse_png(path)
  T.eq({png.w, png.h}, {120, 50})
  local rgb = pixels(png)
  T.truthy(rgb == c:pixels(), "file pixels differ from the canvas")
  T.eq(px(rgb, 120, 119, 49), {250, 250, 245}, "background")
  T.truthy(has_color(rgb, {31, 119, 180}), "line color")
  local text_px = 0
  for y = 4, 20 do
    for x = 4, 110 do
      if px(rgb, 120, x, y)[1] == 20 then text_px = text_px + 1 end
    end
  end
  T.truthy(text_px > 50, "text pixels in the title area: " .. text_px)
  os.remove(path)
end)

---------------------------------------------------------------------------
-- rn.plot

local function history(n)
  local h = {}
  for e = 1, n do
    h[e] = {epoch = e, loss = 2 * math.exp(-0.3 * e) + 0.1, accuracy = 1 - 0.8 * math.exp(-0.3 * e),
            val_loss = 2 * math.exp(-0.25 * e) + 0.3, val_accuracy = 0.9 - 0.8 * math.exp(-0.3 * e)}
  end
  return h
end

-- count of pixels darker than light gray in rows y0..y1
local function dark_in_rows(rgb, w, y0, y1)
  local n = 0
  for y = y0, y1 do
    for x = 0, w - 1 do
      local p = px(rgb, w, x, y)
      if p[1] + p[2] + p[3] < 300 then n = n + 1 end
    end
  end
  return n
end

T.test("training_curves: 10 epochs -> a plausible PNG with both series", function()
  local path = os.tmpname()
  local out, skipped = plot.training_curves(history(10), path)
  T.eq(out, path)
  T.eq(skipped, 0)
  local size = #read_all(path)
  T.truthy(size > 5000 and size < 400000, "file size " .. size)
  local png = parse_png(path)
  T.eq({png.w, png.h, png.ctype}, {1000, 420, 2})
  local rgb = pixels(png)
  T.eq(px(rgb, 1000, 0, 0), {255, 255, 255}, "background")
  T.eq(px(rgb, 1000, 999, 419), {255, 255, 255}, "background")
  T.truthy(has_color(rgb, plot.palette[1]), "train color")
  T.truthy(has_color(rgb, plot.palette[2]), "validation color")
  T.truthy(dark_in_rows(rgb, 1000, 8, 24) > 200, "title text")
  os.remove(path)
end)

T.test("training_curves: 1 epoch, missing val_*, constant series, options", function()
  local path = os.tmpname()
  plot.training_curves({{epoch = 1, loss = 0.7, accuracy = 0.5}}, path, {width = 500, height = 300})
  local png = parse_png(path)
  T.eq({png.w, png.h}, {500, 300})
  local rgb = pixels(png)
  T.truthy(has_color(rgb, plot.palette[1]), "the lone point is drawn")
  T.truthy(not has_color(rgb, plot.palette[2]), "no validation series")
  local h = {}
  for e = 1, 6 do h[e] = {loss = 1, accuracy = 0.25, val_loss = 1, val_accuracy = 0.25} end
  plot.training_curves(h, path, {title = "flat"})
  rgb = pixels(parse_png(path))
  T.truthy(has_color(rgb, plot.palette[2]), "constant validation drawn")
  -- no accuracy at all: the panel says so, nothing fails
  plot.training_curves({{loss = 3}, {loss = 2}}, path)
  os.remove(path)
end)

T.test("training_curves: NaN and inf are skipped and counted", function()
  local h = history(12)
  h[3].loss = 0 / 0
  h[4].val_loss = math.huge
  h[9].val_accuracy = -math.huge
  local path = os.tmpname()
  local _, skipped = plot.training_curves(h, path)
  T.eq(skipped, 3)
  local rgb = pixels(parse_png(path))
  -- the note turns the title red
  local red = 0
  for y = 8, 24 do
    for x = 0, 999 do
      local p = px(rgb, 1000, x, y)
      if p[1] > 150 and p[2] < 80 and p[3] < 80 then red = red + 1 end
    end
  end
  T.truthy(red > 100, "red title pixels: " .. red)
  -- all values NaN: still a chart
  local bad = {}
  for e = 1, 3 do bad[e] = {loss = 0 / 0, accuracy = 0 / 0} end
  local _, s2 = plot.training_curves(bad, path)
  T.eq(s2, 6)
  os.remove(path)
end)

T.test("training_curves: errors", function()
  local h = history(3)
  local d = tmpdir()
  T.raises(function() plot.training_curves({}, d .. "/a.png") end, "non%-empty list")
  T.raises(function() plot.training_curves({1, 2}, d .. "/a.png") end, "history%[1%] must be a table")
  T.raises(function() plot.training_curves({{loss = "x"}}, d .. "/a.png") end, "loss must be a number")
  T.raises(function() plot.training_curves(h, nil) end, "path must be")
  T.raises(function() plot.training_curves(h, d .. "/a.png", {colour = 1}) end, "unknown option 'colour'")
  for _, s in ipairs({{0, 420}, {-1, 420}, {1000, 16385}}) do
    T.raises(function() plot.training_curves(h, d .. "/a.png", {width = s[1], height = s[2]}) end,
      "outside the valid range 1..16384", true)
  end
  T.raises(function() plot.training_curves(h, d .. "/a.png", {width = 120, height = 80}) end,
    "too small")
  local path = d .. "/no/such/dir/curves.png"
  local err = T.raises(function() plot.training_curves(h, path) end, path, true)
  T.truthy(err:find("^plot%.training_curves: "), err)
  T.eq(ls(d), {}, "nothing left behind")
  rmdir(d)
end)

T.test("line_chart: the general form", function()
  local xs, ys = {}, {}
  for i = 1, 50 do xs[i], ys[i] = i / 10, math.sin(i / 10) end
  local path = os.tmpname()
  local _, skipped = plot.line_chart{
    series = {{name = "sin", xs = xs, ys = ys}, {name = "pts", ys = {0.1, 0 / 0, 0.3}, color = "#d62728"}},
    title = "demo", xlabel = "x", ylabel = "y", path = path, width = 400, height = 300}
  T.eq(skipped, 1)
  local png = parse_png(path)
  T.eq({png.w, png.h}, {400, 300})
  local rgb = pixels(png)
  T.truthy(has_color(rgb, plot.palette[1]), "default color")
  T.truthy(has_color(rgb, {0xd6, 0x27, 0x28}), "#rrggbb color")
  T.raises(function() plot.line_chart{path = path} end, "series must be a non%-empty list")
  T.raises(function() plot.line_chart{series = {{xs = {1}, ys = {1, 2}}}, path = path} end,
    "xs must be a list as long as ys")
  T.raises(function() plot.line_chart{series = {{ys = {1}, color = "red"}}, path = path} end,
    "#rrggbb")
  T.raises(function() plot.line_chart{series = {{ys = {1}, color = {1, 2, 300}}}, path = path} end,
    "0..255")
  T.raises(function() plot.line_chart{series = {{ys = {1}}}} end, "path must be")
  T.raises(function() plot.line_chart{series = {{ys = {1}}}, path = path, colour = 1} end,
    "unknown option")
  os.remove(path)
end)

T.test("plot axes: nice round ticks", function()
  local ax = plot._axis(0.13, 2.05, 5, false)
  T.eq(ax.labels, {"0.0", "0.5", "1.0", "1.5", "2.0", "2.5"})
  ax = plot._axis(1, 10, 5, true, true)
  T.eq(ax.labels, {"2", "4", "6", "8", "10"})
  T.eq({ax.min, ax.max}, {1, 10})
  ax = plot._axis(1, 1, 5, true, true)  -- one epoch
  T.eq(ax.labels, {"0", "1", "2"})
  ax = plot._axis(-0.3, 0.3, 4, false)
  T.eq(ax.labels, {"-0.4", "-0.2", "0.0", "0.2", "0.4"})
  ax = plot._axis(0.5, 0.5, 5, false)   -- constant
  T.truthy(ax.min < 0.5 and ax.max > 0.5)
  ax = plot._axis(0, 3e7, 5, false)
  T.eq(ax.labels[#ax.labels], "3e+07")
end)
