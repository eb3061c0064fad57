-- mutants.lua - tests of the tests (`make test-mutants`): runs test files
-- against a core with a planted bug switched on, one bug at a time, and
-- requires each bug to make some file fail. Run by the mutant build:
--   build-mutants/rnlua tests/mutants.lua [name ...]
-- C mutants live in the core behind RN_MUTANT("name") (core/mutant.h; only
-- compiled with -DRN_MUTANTS) and are switched on by the environment
-- variable RN_MUTANT=name. Lua mutants are a one-line patch applied to a copy
-- of lua/ next to a copy of the binary (build-mutants/lua-mutants/<name>/),
-- so lua/ itself never carries them. A stale patch (its line no longer in the
-- file) is reported as an error, not skipped.
-- First the files are run once with no mutant (they must pass), then each
-- mutant's files in order until one fails. Prints a table (mutant,
-- caught/SURVIVED, by which file and test) and exits 1 if any survives or
-- cannot be run. Logs: build-mutants/logs/<name>.log. Add a mutant with
-- each bug fixed: the planted line where the bug was, and a row here naming
-- the test file that now catches it (first) and the time it costs.
local BIN = os.getenv("RNLUA_BIN") or "build-mutants/rnlua"
local DIR = "build-mutants"

local GRAD64 = "tests/test_gradcheck64.lua"
local VALUES = "tests/test_layer_values.lua"

local MUTANTS = {
  { name = "grad_accum", what = "a non-leaf's gradient overwritten instead of added (autograd.c)",
    files = { GRAD64 } },
  { name = "same_pad_side", what = "'same' padding's odd cell at the top/left (ops/conv.c)",
    files = { "tests/test_conv_torch.lua", VALUES } },
  { name = "conv_stride_order", what = "conv (stride_h, stride_w) swapped (ops/conv.c)",
    files = { "tests/test_conv_torch.lua", VALUES } },
  { name = "bn_eps_infer", what = "BN inference with eps 1e-5, not the layer's (ops/norm.c)",
    files = { VALUES } },
  { name = "bn_momentum", what = "BN running stats updated with 1-momentum (ops/norm.c)",
    files = { VALUES } },
  { name = "loss_mean", what = "mean cross-entropy gradient not divided by N (ops/loss.c)",
    files = { GRAD64 } },
  { name = "broadcast_grad", what = "broadcast input's gradient averaged, not summed (ops/elementwise.c)",
    files = { GRAD64 } },
  { name = "pool_window", what = "pooling window one row short (cpu/pool.c)",
    files = { VALUES } },
  { name = "permute_inverse", what = "permute's backward applies perm, not its inverse (tensor.c)",
    files = { GRAD64 } },
  { name = "adam_bias_correction", what = "Adam step without the first moment's bias correction (optim.lua and core/optim_math.h, the multi-tensor step)",
    lua = { file = "rn/optim.lua", old = "p:add_(st.exp_avg / denom, -lr / bc1)",
            new = "p:add_(st.exp_avg / denom, -lr)" },
    files = { "tests/test_optim.lua" } },
}

local function sh(cmd) -- true when the command exits 0
  local ok, how, code = os.execute(cmd)
  return ok == true and how == "exit" and code == 0
end

local function read(path)
  local f = assert(io.open(path, "rb")); local s = f:read("a"); f:close(); return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb")); f:write(s); f:close()
end

-- the binary to run a mutant with: BIN, or a copy next to a patched lua/
local function binary_for(m)
  if not m.lua then return BIN end
  local d = DIR .. "/lua-mutants/" .. m.name
  assert(sh(string.format("rm -rf '%s' && mkdir -p '%s' && cp '%s' '%s/rnlua' && cp -r lua '%s/lua'",
    d, d, BIN, d, d)), "cannot prepare " .. d)
  local path = d .. "/lua/" .. m.lua.file
  local src = read(path)
  local i, j = src:find(m.lua.old, 1, true)
  if not i then return nil, "stale patch: '" .. m.lua.old .. "' not in lua/" .. m.lua.file end
  write(path, src:sub(1, i - 1) .. m.lua.new .. src:sub(j + 1))
  return d .. "/rnlua"
end

local function first_fail(log)
  local s = read(log)
  return s:match("FAIL [^\n]*") or (s:match("[^\n]*\n?$") or ""):sub(1, 100)
end

local only = {}
for _, a in ipairs(arg) do only[a] = true end
local chosen = {}
for _, m in ipairs(MUTANTS) do
  if next(only) == nil or only[m.name] then chosen[#chosen + 1] = m end
end
assert(#chosen > 0, "no mutant named " .. table.concat(arg, ", "))
sh("mkdir -p " .. DIR .. "/logs")
local clock = require("rn")._clock
local t0 = clock()

-- baseline: every file involved passes with no mutant on
local seen, files = {}, {}
for _, m in ipairs(chosen) do
  for _, f in ipairs(m.files) do
    if not seen[f] then seen[f] = true; files[#files + 1] = f end
  end
end
io.write("mutants: baseline (no mutant): ", table.concat(files, " "), "\n"); io.flush()
local blog = DIR .. "/logs/baseline.log"
if not sh(string.format("env -u RN_MUTANT %s tests/run.lua %s > %s 2>&1", BIN, table.concat(files, " "), blog)) then
  io.write("mutants: the files fail with no mutant on (", first_fail(blog), "); see ", blog, "\n")
  os.exit(1)
end

local rows, bad = {}, 0
for _, m in ipairs(chosen) do
  local tm = clock()
  local bin, why = binary_for(m)
  local status, by = "ERROR", why or ""
  if bin then
    status, by = "SURVIVED", "-"
    local log = DIR .. "/logs/" .. m.name .. ".log"
    for _, f in ipairs(m.files) do
      if not sh(string.format("RN_MUTANT=%s %s tests/run.lua %s > %s 2>&1", m.name, bin, f, log)) then
        status, by = "caught", f .. ": " .. first_fail(log):gsub("^FAIL [^:]*: ", "")
        break
      end
    end
  end
  if status ~= "caught" then bad = bad + 1 end
  rows[#rows + 1] = string.format("%-22s %-9s %5.1fs  %s", m.name, status, clock() - tm, by:sub(1, 110))
  io.write(rows[#rows], "\n"); io.flush()
end

io.write("\nmutant                 result      time  caught by (file: first failing test)\n")
for _, r in ipairs(rows) do io.write(r, "\n") end
io.write(string.format("%d mutants, %d caught, %d not caught; %.0f s\n", #chosen, #chosen - bad, bad,
  clock() - t0))
os.exit(bad == 0 and 0 or 1)
