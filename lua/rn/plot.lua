-- rn.plot: PNG charts drawn by rnlua itself (no Python, no gnuplot), on the
-- C canvas of core/lua/l_plot.c.
--
--   plot.training_curves(history, path [, opts])   loss and accuracy per epoch
--   plot.line_chart{series = {...}, path = ..., title=, xlabel=, ylabel=}
--
-- Both return path and the number of non-finite values skipped. Pixel
-- coordinates are 0-based, (0, 0) the top-left pixel; text uses the canvas's
-- built-in 5x8 font at scale 2 (16 px tall).
local core = require "rn.core"

local plot = {}

-- Colors (matplotlib's tab10 for series).
plot.palette = {
  {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
  {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127},
}
local BG = {255, 255, 255}
local INK = {30, 30, 30}
local FRAME = {90, 90, 90}
local GRID = {228, 228, 228}
local NOTE = {170, 40, 40}

local S = 2             -- font scale
local CH = 8 * S        -- text height (glyph rows, no spacing)
local INSET = 10        -- data stay this far inside the frame
local MARKERS_MAX = 40  -- series with more points get no dot markers

local function tw(s) return #s == 0 and 0 or #s * 6 * S - S end

local function fail(op, msg) error("plot." .. op .. ": " .. msg, 0) end

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

-- A number from a number or a 0-d/1-element tensor; nil stays nil.
local function num(v, op, what)
  if v == nil or type(v) == "number" then return v end
  if core.is_tensor(v) then return v:item() end
  fail(op, what .. " must be a number, got " .. type(v))
end

local function color(c, i, op)
  if c == nil then return plot.palette[(i - 1) % #plot.palette + 1] end
  if type(c) == "string" then
    local r, g, b = c:match("^#(%x%x)(%x%x)(%x%x)$")
    if not r then fail(op, "color '" .. c .. "' is not #rrggbb") end
    return {tonumber(r, 16), tonumber(g, 16), tonumber(b, 16)}
  end
  if type(c) == "table" and #c == 3 then
    for k = 1, 3 do
      local v = c[k]
      if type(v) ~= "number" or v ~= math.floor(v) or v < 0 or v > 255 then
        fail(op, "color components must be integers 0..255, got " .. tostring(v))
      end
    end
    return {math.tointeger(c[1]), math.tointeger(c[2]), math.tointeger(c[3])}
  end
  fail(op, "color must be {r, g, b} or '#rrggbb', got " .. type(c))
end

---------------------------------------------------------------------------
-- Axes: nice round ticks.

-- Step from {1, 2, 2.5, 5} x 10^k near range/target (no 2.5 for integers).
local function nice_step(range, target, integer)
  local raw = range / target
  local mag = 10 ^ math.floor(math.log(raw, 10))
  local f = raw / mag
  local m -- the nearest (geometrically) of the nice mantissas
  local quarter = not (integer and mag < 10)
  if f < 1.414 then m = 1
  elseif f < (quarter and 2.236 or 3.162) then m = 2
  elseif quarter and f < 3.536 then m = 2.5
  elseif f < 7.071 then m = 5
  else m = 10 end
  local step = m * mag
  if integer and step < 1 then step = 1 end
  return step
end

-- Fewest decimals that show step exactly.
local function decimals(step)
  for d = 0, 12 do
    local s = step * 10 ^ d
    if math.abs(s - math.floor(s + 0.5)) < 1e-6 * s then return d end
  end
  return 12
end

local function label(v, d, sci)
  local s = sci and string.format("%.3g", v) or string.format("%." .. d .. "f", v)
  if s:match("^%-0%.?0*$") then s = s:sub(2) end
  return s
end

-- Axis over lo..hi: {min=, max=, ticks={}, labels={}}. The limits are
-- widened to tick multiples, or with tight kept at lo..hi (ticks then are the
-- multiples of the step inside).
local function axis(lo, hi, target, integer, tight)
  local span = math.max(math.abs(lo), math.abs(hi))
  if hi - lo <= 1e-12 * span then -- constant: open a window around it
    if integer then lo, hi = lo - 1, hi + 1
    else
      local d = span == 0 and 1 or span * 0.1
      lo, hi = lo - d, hi + d
    end
  end
  target = math.max(1.5, target)
  local step = nice_step(hi - lo, target, integer)
  local amin = math.floor(lo / step + 1e-9) * step
  local amax = math.ceil(hi / step - 1e-9) * step
  local n = (amax - amin) / step
  local ax = {min = amin, max = amax, ticks = {}, labels = {}}
  if not (finite(step) and finite(n) and n >= 1 and n <= 100) then
    -- extreme ranges: the two ends only
    ax.min, ax.max = lo, hi
    ax.ticks = {lo, hi}
    ax.labels = {label(lo, 0, true), label(hi, 0, true)}
    return ax
  end
  n = math.floor(n + 0.5)
  local d = decimals(step)
  local big = math.max(math.abs(amin), math.abs(amax))
  local sci = big >= 1e6 or d > 5
  if tight then ax.min, ax.max = lo, hi end
  for i = 0, n do
    local v = amin + i * step
    if v >= ax.min - 1e-9 * step and v <= ax.max + 1e-9 * step then
      ax.ticks[#ax.ticks + 1] = v
      ax.labels[#ax.labels + 1] = label(v, d, sci)
    end
  end
  return ax
end
plot._axis = axis -- for tests

---------------------------------------------------------------------------
-- One panel: frame, grid, ticks, series, legend, inside the box (px, py, pw, ph).

local function draw_panel(cv, px, py, pw, ph, spec)
  local series = spec.series
  -- finite points per series; runs split at non-finite values
  local xlo, xhi, ylo, yhi = math.huge, -math.huge, math.huge, -math.huge
  local skipped, npoints = 0, 0
  local integer_x = true
  for _, s in ipairs(series) do
    s.pts = {}
    for i = 1, #s.ys do
      local x, y = s.xs[i], s.ys[i]
      if finite(x) and finite(y) then
        s.pts[#s.pts + 1] = {x, y, i}
        xlo, xhi = math.min(xlo, x), math.max(xhi, x)
        ylo, yhi = math.min(ylo, y), math.max(yhi, y)
        if x ~= math.floor(x) then integer_x = false end
        npoints = npoints + 1
      elseif y ~= nil then
        skipped = skipped + 1
      end
    end
  end
  if npoints == 0 then
    ylo, yhi = 0, 1
    if spec.xrange then
      xlo, xhi = spec.xrange[1], spec.xrange[2]
      integer_x = xlo == math.floor(xlo) and xhi == math.floor(xhi)
    else
      xlo, xhi, integer_x = 0, 1, false
    end
  end

  -- vertical layout
  local top = py + 6
  if spec.title then top = top + CH + 10 end
  local bottom = py + ph - 6 - CH - 10 -- x tick labels under the frame
  if spec.xlabel then bottom = bottom - CH - 8 end
  local yax = axis(ylo, yhi, (bottom - top) / 55, false)
  -- horizontal layout (the y tick labels' width first)
  local lw = 0
  for _, l in ipairs(yax.labels) do lw = math.max(lw, tw(l)) end
  local left = px + 8 + lw + 10
  if spec.ylabel then left = left + CH + 10 end
  local right = px + pw - 16
  -- x ticks about 75 px apart, fewer while their labels would touch
  local xax
  local target = (right - left) / 75
  repeat
    xax = axis(xlo, xhi, target, integer_x, npoints > 0 or spec.xrange ~= nil)
    local px_per = (right - left - 2 * INSET) / (xax.max - xax.min)
    local crowded = false
    for i = 2, #xax.ticks do
      local gap = (xax.ticks[i] - xax.ticks[i - 1]) * px_per
      if gap < (tw(xax.labels[i]) + tw(xax.labels[i - 1])) / 2 + 24 then crowded = true end
    end
    target = target * 0.75
  until not crowded or target < 2
  right = right - math.floor(tw(xax.labels[#xax.labels]) / 2)
  if right - left < 20 or bottom - top < 20 then
    fail(spec.op, string.format("the image is too small for the chart (a panel got %dx%d "
      .. "pixels); use a larger width and height", pw, ph))
  end

  local function X(x)
    return left + INSET + (x - xax.min) / (xax.max - xax.min) * (right - left - 2 * INSET)
  end
  local function Y(y)
    return bottom - INSET - (y - yax.min) / (yax.max - yax.min) * (bottom - top - 2 * INSET)
  end

  -- titles and labels
  if spec.title then
    local t = spec.title
    cv:text(math.max(px + 4, math.floor((left + right - tw(t)) / 2)), py + 6, t,
      INK[1], INK[2], INK[3], S)
  end
  if spec.xlabel then
    cv:text(math.floor((left + right - tw(spec.xlabel)) / 2), py + ph - 6 - CH, spec.xlabel,
      INK[1], INK[2], INK[3], S)
  end
  if spec.ylabel then
    cv:text(px + 6, math.floor((top + bottom + tw(spec.ylabel)) / 2), spec.ylabel,
      INK[1], INK[2], INK[3], S, true)
  end

  -- grid, frame, ticks
  for i, v in ipairs(yax.ticks) do
    local y = math.floor(Y(v) + 0.5)
    cv:line(left + 1, y, right - 1, y, GRID[1], GRID[2], GRID[3], 1)
    cv:line(left - 5, y, left, y, FRAME[1], FRAME[2], FRAME[3], 1)
    local l = yax.labels[i]
    cv:text(left - 9 - tw(l), y - CH // 2, l, INK[1], INK[2], INK[3], S)
  end
  for i, v in ipairs(xax.ticks) do
    local x = math.floor(X(v) + 0.5)
    cv:line(x, top + 1, x, bottom - 1, GRID[1], GRID[2], GRID[3], 1)
    cv:line(x, bottom, x, bottom + 5, FRAME[1], FRAME[2], FRAME[3], 1)
    local l = xax.labels[i]
    cv:text(x - tw(l) // 2, bottom + 10, l, INK[1], INK[2], INK[3], S)
  end
  cv:rect(left, top, right - left + 1, bottom - top + 1, FRAME[1], FRAME[2], FRAME[3], false)

  if npoints == 0 then
    local t = spec.empty or "no data"
    cv:text(math.floor((left + right - tw(t)) / 2), math.floor((top + bottom - CH) / 2), t,
      FRAME[1], FRAME[2], FRAME[3], S)
  end

  -- series: lines between consecutive finite points, dots on few points or lone ones
  for _, s in ipairs(series) do
    local c, pts = s.color, s.pts
    local markers = #pts <= MARKERS_MAX
    for k, p in ipairs(pts) do
      local q = pts[k + 1]
      if q and q[3] == p[3] + 1 then
        cv:line(X(p[1]), Y(p[2]), X(q[1]), Y(q[2]), c[1], c[2], c[3], 2.2)
      end
    end
    for k, p in ipairs(pts) do
      local prev, nxt = pts[k - 1], pts[k + 1]
      local lone = not (prev and prev[3] == p[3] - 1) and not (nxt and nxt[3] == p[3] + 1)
      if markers or lone then cv:dot(X(p[1]), Y(p[2]), lone and 4 or 3, c[1], c[2], c[3]) end
    end
  end

  -- legend, in the inside corner that the data cross least
  local named = {}
  for _, s in ipairs(series) do
    if s.name then
      if #s.pts == 0 then s.name = s.name .. " (all NaN/inf)" end
      named[#named + 1] = s
    end
  end
  if #named > 0 and spec.legend ~= false then
    local nw = 0
    for _, s in ipairs(named) do nw = math.max(nw, tw(s.name)) end
    local rowh = CH + 8
    local bw, bh = 10 + 28 + 8 + nw + 10, 8 + #named * rowh
    local m = 8
    local rx = math.max(left + 1, right - m - bw) -- a too-wide legend spills right
    local cands = {
      {rx, top + m}, {rx, bottom - m - bh},
      {left + m, top + m}, {left + m, bottom - m - bh},
    }
    local best, bestn = cands[1], math.huge
    for _, cand in ipairs(cands) do
      local bx, by, n = cand[1], cand[2], 0
      for _, s in ipairs(series) do
        local pts = s.pts
        for k, p in ipairs(pts) do
          local x0, y0 = X(p[1]), Y(p[2])
          local q = pts[k + 1]
          local x1, y1 = x0, y0
          if q and q[3] == p[3] + 1 then x1, y1 = X(q[1]), Y(q[2]) end
          local steps = math.max(1, math.ceil(math.max(math.abs(x1 - x0), math.abs(y1 - y0)) / 3))
          for j = 0, steps do
            local x, y = x0 + (x1 - x0) * j / steps, y0 + (y1 - y0) * j / steps
            if x >= bx - 4 and x <= bx + bw + 4 and y >= by - 4 and y <= by + bh + 4 then
              n = n + 1
            end
          end
        end
      end
      if n < bestn then best, bestn = cand, n end
    end
    local bx, by = math.floor(best[1]), math.floor(best[2])
    cv:rect(bx, by, bw, bh, BG[1], BG[2], BG[3], true)
    cv:rect(bx, by, bw, bh, 200, 200, 200, false)
    for i, s in ipairs(named) do
      local c = s.color
      local cy = by + 4 + (i - 1) * rowh + rowh // 2
      cv:line(bx + 10, cy, bx + 38, cy, c[1], c[2], c[3], 2.2)
      if #s.pts <= MARKERS_MAX then cv:dot(bx + 24, cy, 3, c[1], c[2], c[3]) end
      cv:text(bx + 46, cy - CH // 2, s.name, INK[1], INK[2], INK[3], S)
    end
  end
  return skipped
end

---------------------------------------------------------------------------
-- Argument checks.

local function check_size(op, w, h)
  for _, v in ipairs({w, h}) do
    if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
      fail(op, "width and height must be integers, got " .. tostring(v))
    end
  end
  if w < 1 or w > 16384 or h < 1 or h > 16384 then
    fail(op, string.format("image size %sx%s outside the valid range 1..16384 (width and height)",
      tostring(w), tostring(h)))
  end
  return math.tointeger(w), math.tointeger(h)
end

local function check_path(op, path)
  if type(path) ~= "string" or path == "" then
    fail(op, "path must be a non-empty string, got " .. (path == "" and "''" or type(path)))
  end
end

local function check_opts(op, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(op, "options must be a table, got " .. type(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      fail(op, "unknown option '" .. tostring(k) .. "' (valid: " .. table.concat(names, ", ") .. ")")
    end
  end
  for _, k in ipairs({"title", "xlabel", "ylabel"}) do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      fail(op, "option '" .. k .. "' must be a string, got " .. type(opts[k]))
    end
  end
  return opts
end

local function skipped_note(n)
  if n == 0 then return "" end
  return string.format(" (%d non-finite value%s skipped)", n, n == 1 and "" or "s")
end

-- canvas:save_png, its error prefixed with op and stripped of a position.
local function save(cv, path, op)
  local ok, err = pcall(cv.save_png, cv, path)
  if not ok then fail(op, (tostring(err):gsub("^[^:\n]*:%d+: ", ""))) end
end

local function centered_title(cv, w, y, t, col)
  cv:text(math.max(4, (w - tw(t)) // 2), y, t, col[1], col[2], col[3], S)
end

---------------------------------------------------------------------------
-- Public API.

local LINE_OPTS = {series = true, path = true, title = true, xlabel = true, ylabel = true,
  width = true, height = true, legend = true}

--- plot.line_chart{series = {{name=, xs=, ys=, color=}, ...}, path=, title=, xlabel=,
--- ylabel=, width = 800, height = 500, legend = true} -> path, skipped
--- xs defaults to 1..#ys; color to the palette ({r,g,b} or "#rrggbb"); non-finite
--- values are skipped (the lines break there) and counted in the title.
function plot.line_chart(spec)
  local op = "line_chart"
  if type(spec) ~= "table" then fail(op, "expected a table {series=, path=, ...}, got " .. type(spec)) end
  check_opts(op, spec, LINE_OPTS)
  check_path(op, spec.path)
  local w, h = check_size(op, spec.width or 800, spec.height or 500)
  if type(spec.series) ~= "table" or #spec.series == 0 then
    fail(op, "series must be a non-empty list of {name=, xs=, ys=}")
  end
  local series = {}
  for i, s in ipairs(spec.series) do
    if type(s) ~= "table" or type(s.ys) ~= "table" then
      fail(op, "series " .. i .. " must be a table with a list ys")
    end
    if s.name ~= nil and type(s.name) ~= "string" then fail(op, "series " .. i .. ": name must be a string") end
    local xs, ys = {}, {}
    for k = 1, #s.ys do ys[k] = num(s.ys[k], op, "series " .. i .. " ys[" .. k .. "]") end
    if s.xs ~= nil then
      if type(s.xs) ~= "table" or #s.xs ~= #s.ys then
        fail(op, string.format("series %d: xs must be a list as long as ys (%d)", i, #s.ys))
      end
      for k = 1, #s.xs do xs[k] = num(s.xs[k], op, "series " .. i .. " xs[" .. k .. "]") end
    else
      for k = 1, #ys do xs[k] = k end
    end
    series[i] = {name = s.name, xs = xs, ys = ys, color = color(s.color, i, op)}
  end
  local cv <close> = core._canvas(w, h)
  -- the title carries the skipped count, known only after drawing: draw the
  -- panel without title, then write the title in its space
  local panel = {series = series, xlabel = spec.xlabel, ylabel = spec.ylabel,
    legend = spec.legend, op = op, title = ""}
  local skipped = draw_panel(cv, 0, 0, w, h, panel)
  local title = (spec.title or "") .. skipped_note(skipped)
  if title:sub(1, 1) == " " then title = title:sub(2) end
  centered_title(cv, w, 6, title, skipped > 0 and NOTE or INK)
  save(cv, spec.path, op)
  return spec.path, skipped
end

local CURVE_OPTS = {title = true, width = true, height = true}

--- plot.training_curves(history, path [, {title=, width=1000, height=420}]) -> path, skipped
--- history: a list of per-epoch tables {epoch=, loss=, accuracy=, val_loss=,
--- val_accuracy=} (val_* and accuracy may be missing; epoch defaults to the
--- position). Draws loss (left) and accuracy (right), train and validation.
function plot.training_curves(history, path, opts)
  local op = "training_curves"
  if type(history) ~= "table" or #history == 0 then
    fail(op, "history must be a non-empty list of per-epoch tables {epoch=, loss=, accuracy=, ...}")
  end
  check_path(op, path)
  opts = check_opts(op, opts, CURVE_OPTS)
  local w, h = check_size(op, opts.width or 1000, opts.height or 420)
  local cols = {epoch = {}, loss = {}, accuracy = {}, val_loss = {}, val_accuracy = {}}
  local has = {}
  for i, e in ipairs(history) do
    if type(e) ~= "table" then fail(op, "history[" .. i .. "] must be a table, got " .. type(e)) end
    for k, list in pairs(cols) do
      local v = num(e[k], op, "history[" .. i .. "]." .. k)
      if k == "epoch" then v = v or i end
      list[i] = v
      if v ~= nil then has[k] = true end
    end
  end
  local function pair(train, val)
    local s = {}
    if has[train] then
      s[#s + 1] = {name = "train", xs = cols.epoch, ys = cols[train], color = plot.palette[1]}
    end
    if has[val] then
      s[#s + 1] = {name = "validation", xs = cols.epoch, ys = cols[val], color = plot.palette[2]}
    end
    return s
  end
  local cv <close> = core._canvas(w, h)
  local head = CH + 16
  local half = w // 2
  local elo, ehi = math.huge, -math.huge
  for _, e in ipairs(cols.epoch) do
    if finite(e) then elo, ehi = math.min(elo, e), math.max(ehi, e) end
  end
  local xrange = elo <= ehi and {elo, ehi} or nil
  local skipped = draw_panel(cv, 0, head, half, h - head,
    {series = pair("loss", "val_loss"), title = "Loss", xlabel = "epoch", op = op,
     empty = "no loss recorded", xrange = xrange})
  skipped = skipped + draw_panel(cv, half, head, w - half, h - head,
    {series = pair("accuracy", "val_accuracy"), title = "Accuracy", xlabel = "epoch", op = op,
     empty = "no accuracy recorded", xrange = xrange})
  local n = #history
  local title = opts.title or string.format("Training curves (%d epoch%s)", n, n == 1 and "" or "s")
  centered_title(cv, w, 8, title .. skipped_note(skipped), skipped > 0 and NOTE or INK)
  save(cv, path, op)
  return path, skipped
end

return plot
