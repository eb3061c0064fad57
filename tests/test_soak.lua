-- test_soak.lua - a bounded soak: thousands of training steps of a tiny model
-- (tests/lib/tiny_train.lua: Dense, batch norm, dropout, Adam) while the
-- resident set (/proc/self/statm) and the Lua heap are sampled after a full
-- collection. After warm-up, the least-squares slope over the samples from
-- the 25% to the 100% mark must be flat: projected growth over that window
-- under 4 MiB of RSS and 64 KiB of Lua heap. 10000 steps (2000 under
-- RN_TEST_LIGHT); RSS is not judged under ASan (its quarantine grows).
package.path = "tests/lib/?.lua;" .. package.path
local T = require "t"
local tt = require "tiny_train"

local function rss_bytes()
  local f = io.open("/proc/self/statm", "r")
  if not f then return nil end
  local _, res = f:read("n", "n")
  f:close()
  return res * 4096
end

local function slope(xs, ys) -- least squares
  local n, sx, sy, sxx, sxy = #xs, 0, 0, 0, 0
  for i = 1, n do
    sx, sy = sx + xs[i], sy + ys[i]
    sxx, sxy = sxx + xs[i] * xs[i], sxy + xs[i] * ys[i]
  end
  return (n * sxy - sx * sy) / (n * sxx - sx * sx)
end

T.test("memory stays flat over thousands of training steps", function()
  if not rss_bytes() then T.skip("no /proc/self/statm") end
  local steps = os.getenv("RN_TEST_LIGHT") and 2000 or 10000
  local x, y = tt.data(256, 7)
  local m = tt.model(8)
  local first = steps // 4
  local every = (steps - first) // 8
  local at, rss, heap = {}, {}, {}
  local t0 = os.clock()
  local done, loss0, loss = 0, nil, nil
  while done < steps do
    local k = done < first and first or every
    loss = tt.train(m, x, y, k, 32)
    loss0 = loss0 or loss
    done = done + k
    collectgarbage("collect")
    collectgarbage("collect")
    at[#at + 1], rss[#rss + 1], heap[#heap + 1] = done, rss_bytes(), collectgarbage("count") * 1024
  end
  local window = done - first
  local rss_growth = slope(at, rss) * window
  local heap_growth = slope(at, heap) * window
  local msg = string.format("%d steps in %.1fs; RSS %.1f -> %.1f MiB (trend %+.2f MiB), Lua heap %.0f -> %.0f KiB (trend %+.1f KiB)",
                            done, os.clock() - t0, rss[1] / 2^20, rss[#rss] / 2^20, rss_growth / 2^20,
                            heap[1] / 1024, heap[#heap] / 1024, heap_growth / 1024)
  if os.getenv("RN_TEST_VERBOSE") then print("  [soak: " .. msg .. "]") end
  T.truthy(loss == loss, "the loss is nan: " .. msg)
  T.truthy(heap_growth < 64 * 1024, "Lua heap grows: " .. msg)
  if not os.getenv("ASAN_OPTIONS") then
    T.truthy(rss_growth < 4 * 2^20, "RSS grows: " .. msg)
  end
end)
