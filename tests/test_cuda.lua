-- test_cuda.lua - the CUDA backend. On every host: the build's CUDA facts,
-- rn.cuda.is_available() with its reason, clear errors (no crash) for CUDA
-- tensors where there is no device, and the support query. With a device:
-- CPU-vs-GPU parity of every filled CUDA slot on random inputs (contiguous,
-- permuted, narrowed, broadcast; forward and backward, within the per-op
-- tolerances of tests/lib/cuda_parity.lua): elementwise, reductions, losses, gemm, conv2d
-- (cuDNN), pooling, batch norm (with running statistics), a tiny Model
-- trained on the device against the CPU, bfloat16 math (mixed_bfloat16:
-- conv2d forward and gradients against the CPU in float32 within 1.6e-2 of
-- the largest value, float32 math again afterwards, a small residual net
-- trained 20 steps), the allocator's statistics, the out-of-memory path,
-- model:compare across devices and predict with the inference fusions.
-- Without a device every GPU test skips with the reason.
--
-- RN_CUDA_TEST_ON_CPU=1 runs the parity tests with "cpu" as the second
-- device: a check of the tests themselves on a machine without a GPU.
-- RN_TEST_LIGHT=1 (sanitizers) uses smaller inputs and skips the OOM test.
local T = require "t"
local rn = require "rn"
local core = require "rn.core"

-- the parity harness (tests/lib/cuda_parity.lua): the device under test,
-- the per-op tolerance rows (TOL) and parity()
local P = require "cuda_parity"
local ON_CPU, LIGHT, DEV, AVAIL, WHY = P.ON_CPU, P.LIGHT, P.DEV, P.AVAIL, P.WHY
local use_tol, need_gpu, need_real_gpu, to_dev = P.use_tol, P.need_gpu, P.need_real_gpu, P.to_dev
local near, parity = P.near, P.parity

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

-- ---- on every host -----------------------------------------------------------

T.test("cuda: built with CUDA where nvcc and cuDNN headers exist", function()
  local home = os.getenv("CUDA_HOME") or "/usr/local/cuda"
  local nvcc = os.execute("command -v nvcc >/dev/null 2>&1") or exists(home .. "/bin/nvcc")
  local cudnn = exists(home .. "/include/cudnn.h") or exists("/usr/include/cudnn.h")
  if not (nvcc and cudnn) then
    if rn.built_with_cuda and os.getenv("RN_CARRIED_BUILD") == "1" then
      T.skip("no nvcc/cudnn.h here, and this binary was built on another machine (RN_CARRIED_BUILD=1)")
    end
    T.eq(rn.built_with_cuda, false, "no nvcc/cudnn.h: a CPU-only build")
    return
  end
  local bin = os.getenv("RNLUA_BIN")
  if bin and bin ~= "./rnlua" and bin ~= "rnlua" and not rn.built_with_cuda then
    T.skip("RNLUA_BIN=" .. bin .. " is a separate build (make test-asan builds with NOCUDA=1)")
  end
  T.eq(rn.built_with_cuda, true, "nvcc and cudnn.h exist, so the build includes CUDA")
end)

-- scripts/gpu_check.sh is the one prepared run for a lent GPU (about 15
-- minutes of device time, a minute or two of it to start the machine): it
-- must parse, run the three CUDA test files, stay within about 5 minutes,
-- and bundle the host libraries compressed (raw libdnnl + libopenblas pass
-- the 64 MiB carry limit).
T.test("cuda: scripts/gpu_check.sh parses, runs the CUDA tests, fits about 5 minutes", function()
  local f = io.open("scripts/gpu_check.sh")
  if not f then T.skip("scripts/gpu_check.sh not found (run from the repository root)") end
  local src = f:read("a")
  f:close()
  T.truthy(os.execute("bash -n scripts/gpu_check.sh"), "bash -n scripts/gpu_check.sh")
  for _, t in ipairs({ "tests/test_cuda.lua", "tests/test_determinism.lua",
                       "tests/test_cuda_data.lua" }) do
    T.truthy(src:find(t, 1, true), "gpu_check.sh runs " .. t)
  end
  local budget = tonumber(src:match("BUDGET=%${RN_GPU_BUDGET:%-(%d+)}"))
  T.truthy(budget and budget <= 330, "default budget about 5 minutes, got " .. tostring(budget))
  T.truthy(src:find("gzip", 1, true), "--bundle compresses the libraries")
  T.truthy(src:find("trap summary EXIT", 1, true), "the summary is printed last, on every exit")
end)

T.test("cuda: is_available answers, with a reason when it is false", function()
  if AVAIL then
    T.eq(WHY, nil, "no reason when available")
    return
  end
  T.truthy(type(WHY) == "string", "why_unavailable() is a string")
  if rn.built_with_cuda then
    -- "cuda: no CUDA device available (cudaGetDeviceCount: ...)" without a
    -- driver or GPU; "cuda: ... device N ..." for an unusable device
    T.truthy(WHY:find("^cuda: ") and WHY:find("device", 1, true), "reason: " .. WHY)
    if not exists("/dev/nvidiactl") then
      T.truthy(WHY:find("no CUDA device available (cudaGetDeviceCount: ", 1, true),
               "reason names the failed call: " .. WHY)
    end
  else
    T.truthy(WHY:find("without CUDA", 1, true), "reason: " .. WHY)
  end
  -- asked again: the same answer, at once
  T.eq(rn.cuda.is_available(), false)
  T.eq(rn.cuda.why_unavailable(), WHY)
end)

T.test("cuda: tensors on a host without a device raise a clear error", function()
  if AVAIL then T.skip("a CUDA device is present") end
  T.raises(function() return rn.zeros(3):cuda() end, "cuda")
  T.raises(function() return rn.zeros(3):to("cuda") end, "cuda")
  T.raises(function() return rn.zeros({2, 3}, {device = "cuda"}) end, "cuda")
  T.raises(function() return rn.randn({2}, {device = "cuda"}) end, "cuda")
  local err = T.raises(function() return rn.ones(2):cuda() end, "cuda")
  T.eq(err:find("not implemented", 1, true), nil, "not a missing-kernel error: " .. err)
  -- nothing broke on the CPU side
  T.eq((rn.ones(2) + 1):totable(), {2, 2})
end)

T.test("cuda: the support query without a device", function()
  if AVAIL then T.skip("a CUDA device is present") end
  T.eq(rn.backend_supports("cuda", "binary"), false)
  for _, slot in ipairs(rn.backend_slots()) do
    T.eq(rn.backend_supports("cuda", slot), false, slot)
  end
  T.eq(rn.backend_supports("cpu", "binary"), true)
end)

T.test("cuda: rn.core.cuda_* functions without a device", function()
  if not rn.built_with_cuda then T.skip("built without CUDA") end
  if AVAIL then T.skip("a CUDA device is present") end
  local s = core.cuda_memory_stats()
  for _, k in ipairs({"allocated", "reserved", "peak_allocated", "peak_reserved", "num_allocs",
                      "num_frees", "cache_hits", "cuda_mallocs", "oom_retries", "ooms"}) do
    T.eq(math.type(s[k]), "integer", k)
  end
  T.eq(s.allocated, 0)
  T.eq(s.device_free, nil, "no device numbers without a device")
  core.cuda_empty_cache() -- nothing to free: no error
  T.raises(core.cuda_device_name, "no CUDA device available")
  T.raises(core.cuda_synchronize, "no CUDA device available")
end)

-- ---- with a device: parity helpers --------------------------------------------

local function shape(n) return LIGHT and {3, 4, 5} or (n or {6, 7, 9}) end

-- views applied on both devices, so the kernels see these strides
local VIEWS = {
  {"contiguous", function(x) return x end},
  {"permuted", function(x) return x:permute(3, 1, 2) end},
  {"narrowed", function(x) return x:narrow(2, 2, x:size(2) - 2) end},
  {"broadcast", function(x) return x:narrow(1, 1, 1):expand(x:size()) end},
}

-- ---- with a device: elementwise -----------------------------------------------

T.test("cuda: device facts", function()
  need_real_gpu("device facts")
  local name = core.cuda_device_name()
  T.truthy(type(name) == "string" and #name > 0, "device name")
  T.eq(rn.backend_supports("cuda", "binary"), true)
  for _, slot in ipairs({"alloc", "free", "to_host", "from_host", "copy", "fill", "unary",
                         "unary_backward", "binary", "axpy", "reduce", "argmax", "softmax",
                         "softmax_backward", "cross_entropy", "gemm", "conv2d_fwd",
                         "conv2d_bwd_data", "conv2d_bwd_filter", "pool2d_fwd", "pool2d_bwd",
                         "bn_fwd_train", "bn_fwd_infer", "bn_bwd"}) do
    T.eq(rn.backend_supports("cuda", slot), true, slot)
  end
  core.cuda_synchronize()
end)

T.test("cuda: host <-> device round trip of every dtype", function()
  need_gpu()
  local vals = {{0, 1, -2, 3.5}, {255, 7, 0, 1}}
  for _, dt in ipairs({"float32", "float64", "int32", "int64", "uint8", "bfloat16", "float16"}) do
    local x = rn.tensor(vals, {dtype = dt})
    local y = to_dev(x)
    T.eq(y.device, DEV, dt)
    T.eq(y.dtype, dt, dt)
    T.eq(y:cpu():totable(), x:totable(), dt)
  end
  local e = to_dev(rn.zeros({0, 3}))
  T.eq(e:size(), {0, 3}, "empty tensor")
  T.eq(e:cpu():numel(), 0)
end)

T.test("cuda: copy and cast over strided views", function()
  need_gpu()
  local dts = {"float32", "float64", "int32", "int64", "uint8", "bfloat16", "float16"}
  local base = rn.randn(shape()) * 100
  for _, v in ipairs(VIEWS) do
    for _, from in ipairs(dts) do
      local x = base:to(from)
      for _, to in ipairs(dts) do
        local xc, xg = v[2](x), v[2](to_dev(x))
        local yc, yg = xc:to(to), xg:to(to)
        T.eq(yg.device, DEV)
        T.eq(yg:cpu():totable(), yc:totable(), v[1] .. " " .. from .. " -> " .. to)
      end
    end
    -- contiguous() / clone() of the view
    local xg = v[2](to_dev(base))
    T.eq(xg:contiguous():cpu():totable(), v[2](base):contiguous():totable(), v[1] .. " contiguous")
  end
  -- saturating integer stores, as on the CPU
  local s = rn.tensor({-3, 300, 1e12, -1e12, 0 / 0})
  for _, to in ipairs({"uint8", "int32", "int64"}) do
    T.eq(to_dev(s):to(to):cpu():totable(), s:to(to):totable(), "saturating " .. to)
  end
  -- copy_ with broadcast into a narrowed view
  local dc, dg = rn.zeros({4, 6}), to_dev(rn.zeros({4, 6}))
  local src = rn.randn({6})
  dc:narrow(1, 2, 2):copy_(src)
  dg:narrow(1, 2, 2):copy_(to_dev(src))
  T.eq(dg:cpu():totable(), dc:totable(), "copy_ broadcast into a view")
  -- copy_ across devices
  local h = rn.zeros({4, 6})
  h:copy_(dg)
  T.eq(h:totable(), dc:totable(), "copy_ device -> host")
end)

T.test("cuda: fill, zero_, full", function()
  need_gpu()
  for _, dt in ipairs({"float32", "float64", "int32", "int64", "uint8", "bfloat16", "float16"}) do
    local c = rn.zeros({5, 6}, {dtype = dt})
    local g = to_dev(c)
    c:narrow(2, 2, 3):fill_(2.5)
    g:narrow(2, 2, 3):fill_(2.5)
    T.eq(g:cpu():totable(), c:totable(), "fill_ " .. dt)
    c:zero_()
    g:zero_()
    T.eq(g:cpu():totable(), c:totable(), "zero_ " .. dt)
  end
  if not ON_CPU then
    local f = rn.full({3, 4}, -1.5, {device = "cuda"})
    T.eq(f.device, "cuda")
    T.eq(f:cpu():totable(), rn.full({3, 4}, -1.5):totable(), "full on the device")
    -- made and filled on the device: no host tensor of that size (a 1 GiB
    -- zeros used to be built on the host and copied, 0.7 s on the H100)
    for _, mk in ipairs({ function(n) return rn.zeros({n}, {device = "cuda"}) end,
                          function(n) return rn.ones({n}, {device = "cuda", dtype = "int32"}) end,
                          function(n) return rn.empty({n}, {device = "cuda"}) end }) do
      local z = mk(1 << 28)
      T.eq(z.device, "cuda")
      T.eq(z:narrow(1, (1 << 28) - 1, 2):cpu():totable(), mk(2):cpu():totable())
    end
  end
end)

T.test("cuda: tostring of a huge device tensor copies only what it shows", function()
  need_gpu()
  if ON_CPU then T.skip("the CPU stand-in backend has no device memory to spare") end
  -- 2^40 elements (4 TiB as a copy): the whole copy would be out of memory
  local big = rn.full({1}, 7, {device = "cuda"}):expand({1 << 40})
  T.eq(tostring(big), "rn.Tensor (1099511627776) float32 cuda\n[7., 7., 7., ..., 7., 7., 7.]")
  local x = rn.arange(0, 5000):reshape({5, 10, 100}):transpose(1, 3)
  T.eq(tostring(x:cuda()), (tostring(x):gsub(" cpu\n", " cuda\n", 1)))
end)

T.test("cuda: unary ops forward and backward", function()
  need_gpu()
  use_tol("elementwise")
  local ops = {
    {"neg"}, {"exp"}, {"log", true}, {"sqrt", true}, {"relu"}, {"abs"}, {"tanh"}, {"sigmoid"},
    {"erf"}, {"gelu"}, {"gelu_tanh"}, {"silu"}, {"hard_sigmoid"}, {"hard_swish"}, {"relu6"},
    {"softplus"}, {"leaky_relu", false, {0.15}}, {"elu", false, {0.8}}, {"clip", false, {-0.5, 1.25}},
  }
  for _, o in ipairs(ops) do
    local p = o[3] or {}
    -- spread over the kinks of relu6, hard_sigmoid and hard_swish (-3, 0, 3, 6)
    local x = o[2] and rn.rand(shape(), {low = 0.5, high = 2}) or rn.randn(shape()) * 3
    for _, v in ipairs(VIEWS) do
      parity(o[1] .. " " .. v[1], function(a)
        local t = v[2](a)
        return t[o[1]](t, table.unpack(p))
      end, {x}, {grad = true})
    end
    local x64 = x:double()
    parity(o[1] .. " float64", function(a) return a[o[1]](a, table.unpack(p)) end, {x64}, {grad = true})
  end
  -- integer dtypes take neg, abs, relu, relu6, clip
  local i = rn.tensor({{-3, 0, 5}, {7, -8, 2}}, {dtype = "int32"})
  for _, op in ipairs({"neg", "abs", "relu", "relu6"}) do
    T.eq(to_dev(i)[op](to_dev(i)):cpu():totable(), i[op](i):totable(), op .. " int32")
  end
  T.eq(to_dev(i):clip(-1, 4):cpu():totable(), i:clip(-1, 4):totable(), "clip int32")
  local u = rn.tensor({0, 3, 255}, {dtype = "uint8"})
  T.eq(to_dev(u):neg():cpu():totable(), u:neg():totable(), "neg uint8 saturates")
end)

T.test("cuda: binary ops with broadcasting, forward and backward", function()
  need_gpu()
  use_tol("elementwise")
  local n = LIGHT and 5 or 9
  local cases = {
    {"same shape", {n, 7}, {n, 7}},
    {"row broadcast", {n, 7}, {7}},
    {"column broadcast", {n, 1}, {1, 7}},
    {"3-d broadcast", {3, 1, 7}, {n, 1}},
  }
  local ops = {"add", "sub", "mul", "div", "pow", "maximum", "minimum"}
  for _, c in ipairs(cases) do
    for _, op in ipairs(ops) do
      local a, b = rn.randn(c[2]), rn.randn(c[3])
      if op == "pow" then a = rn.rand(c[2], {low = 0.5, high = 2}) end
      if op == "div" then b = rn.rand(c[3], {low = 0.5, high = 2}) end
      parity(op .. " " .. c[1], function(x, y) return rn[op](x, y) end, {a, b}, {grad = true})
    end
  end
  -- non-contiguous operands
  local a, b = rn.randn({7, 5, 3}), rn.randn({3, 7, 5})
  parity("mul permuted", function(x, y) return x:permute(3, 1, 2) * y end, {a, b}, {grad = true})
  parity("add narrowed", function(x, y)
    return x:narrow(1, 2, 4) + y:narrow(2, 2, 4):permute(2, 3, 1)
  end, {a, b}, {grad = true})
  -- scalars and float64
  parity("scalar ops", function(x) return (x * 3 - 1) / 2 + x ^ 2 end, {rn.randn({4, 6})},
         {grad = true})
  parity("float64 mul", function(x, y) return x * y end,
         {rn.randn({5, 6}, {dtype = "float64"}), rn.randn({6}, {dtype = "float64"})}, {grad = true})
  -- comparisons (float and int64 results, e.g. accuracy)
  local x, y = rn.randn({6, 5}), rn.randn({5})
  for _, op in ipairs({"eq", "ne", "lt", "le", "gt", "ge"}) do
    parity(op, function(p, q) return rn[op](p, q) end, {x, y})
    parity(op .. " self", function(p) return rn[op](p, p) end, {x})
  end
  local p = rn.tensor({1, 2, 3, 4, 5, 6}, {dtype = "int64"})
  local q = rn.tensor({1, 0, 3, 0, 5, 0}, {dtype = "int64"})
  T.eq(rn.eq(to_dev(p), to_dev(q)):sum():item(), 3, "int64 accuracy count")
  -- integer division truncates; a zero divisor gives 0
  local i = rn.tensor({7, -7, 5, 9}, {dtype = "int32"})
  local j = rn.tensor({2, 2, 0, -4}, {dtype = "int32"})
  T.eq((to_dev(i) / to_dev(j)):cpu():totable(), (i / j):totable(), "int32 division")
  -- mixed devices are refused with the op's name
  if not ON_CPU then
    T.raises(function() return rn.ones(2) + rn.ones(2):cuda() end, "different devices")
  end
end)

T.test("cuda: axpy (add_) and scale (mul_)", function()
  need_gpu()
  use_tol("elementwise")
  local yc, x = rn.randn({5, 6}), rn.randn({6})
  local yg = to_dev(yc)
  yc:add_(x, 0.5)
  yg:add_(to_dev(x), 0.5)
  near(yg, yc, "add_ broadcast")
  yc:add_(2)
  yg:add_(2)
  near(yg, yc, "add_ scalar")
  yc:mul_(-3)
  yg:mul_(-3)
  near(yg, yc, "mul_")
  -- into a strided view
  local zc = rn.randn({6, 5})
  local zg = to_dev(zc)
  zc:t():add_(rn.ones({5, 6}))
  zg:t():add_(to_dev(rn.ones({5, 6})))
  near(zg, zc, "add_ into a transposed view")
  local i = rn.tensor({1, 2, 3}, {dtype = "int64"})
  local ig = to_dev(i)
  i:add_(rn.tensor({10, 20, 30}, {dtype = "int64"}))
  ig:add_(to_dev(rn.tensor({10, 20, 30}, {dtype = "int64"})))
  T.eq(ig:cpu():totable(), i:totable(), "add_ int64")
end)

-- ---- with a device: reductions ------------------------------------------------

T.test("cuda: sum/mean/max/min over dims, forward and backward", function()
  need_gpu()
  use_tol("reduce")
  local dimsets = {{}, {1}, {2}, {3}, {1, 3}, {2, 3}, {-1}}
  for _, op in ipairs({"sum", "mean", "max", "min"}) do
    for _, v in ipairs(VIEWS) do
      if v[1] ~= "broadcast" or op == "sum" or op == "mean" then -- ties break max/min grads
        for _, ds in ipairs(dimsets) do
          for _, keep in ipairs({false, true}) do
            local x = rn.randn(shape())
            local label = string.format("%s %s dims {%s} keepdim=%s", op, v[1],
                                        table.concat(ds, ","), tostring(keep))
            parity(label, function(a)
              local t = v[2](a)
              if #ds == 0 then return t[op](t) end
              return t[op](t, ds, keep)
            end, {x}, {grad = true})
          end
        end
      end
    end
  end
  -- both kernels: few outputs with long reductions, many outputs with short ones
  local big = LIGHT and {40, 300} or {64, 4096}
  for _, d in ipairs({1, 2}) do
    for _, op in ipairs({"sum", "mean", "max", "min"}) do
      parity(op .. " long dim " .. d, function(a) return a[op](a, d) end, {rn.randn(big)})
      parity(op .. " long dim " .. d .. " float64", function(a) return a[op](a, d) end,
             {rn.randn(big, {dtype = "float64"})})
    end
  end
  parity("sum of everything, large", function(a) return a:sum() end,
         {rn.randn(LIGHT and {1000} or {1 << 20})}, {tol = "long_sum"})
  parity("sum over N,H,W of NHWC (bias gradient)", function(a) return a:sum({1, 2, 3}) end,
         {rn.randn(LIGHT and {2, 4, 4, 8} or {16, 16, 16, 64})}, {tol = "long_sum"})
  -- integer sums give int64; NaN propagates through max/min
  local i = rn.tensor({{1, 2, 3}, {4, 5, 6}}, {dtype = "int32"})
  local s = to_dev(i):sum(1)
  T.eq(s.dtype, "int64")
  T.eq(s:cpu():totable(), {5, 7, 9})
  local nanx = rn.tensor({{1, 0 / 0, 3}, {4, 5, 6}})
  local m = to_dev(nanx):max(2):cpu():totable()
  T.truthy(m[1] ~= m[1] and m[2] == 6, "max with NaN")
  local mn = to_dev(nanx):min():item()
  T.truthy(mn ~= mn, "min of everything with NaN")
  -- empty reductions
  local e = to_dev(rn.zeros({0, 3}))
  T.eq(e:sum(1):cpu():totable(), {0, 0, 0}, "sum over an empty dim")
  T.raises(function() return e:max(1) end, "empty")
end)

T.test("cuda: argmax", function()
  need_gpu()
  local x = rn.randn({7, 13, 5})
  for _, d in ipairs({1, 2, 3, -1}) do
    for _, keep in ipairs({false, true}) do
      local yc = x:argmax(d, keep)
      local yg = to_dev(x):argmax(d, keep)
      T.eq(yg.dtype, "int64")
      T.eq(yg:cpu():totable(), yc:totable(), "argmax dim " .. d)
      T.eq(to_dev(x):permute(3, 1, 2):argmax(d):cpu():totable(),
           x:permute(3, 1, 2):argmax(d):totable(), "argmax permuted dim " .. d)
    end
  end
  local t = rn.tensor({{1, 5, 5, 2}, {0 / 0, 1, 9, 0}, {3, 3, 3, 3}})
  T.eq(to_dev(t):argmax(2):cpu():totable(), t:argmax(2):totable(), "ties and NaN")
  T.eq(to_dev(t):argmax(2):cpu():totable(), {1, 0, 0})
  local i = rn.tensor({{3, 9, 1}, {4, 4, 8}}, {dtype = "int64"})
  T.eq(to_dev(i):argmax(2):cpu():totable(), {1, 2}, "int64 argmax")
end)

-- ---- with a device: softmax and losses ------------------------------------------

T.test("cuda: softmax and log_softmax, forward and backward", function()
  need_gpu()
  use_tol("softmax")
  if not rn.softmax then T.skip("rn.softmax is not bound yet") end
  local sizes = LIGHT and {{4, 10}} or {{4, 10}, {33, 1000}, {3, 5, 7}, {2, 1}}
  for _, sz in ipairs(sizes) do
    for _, fname in ipairs({"softmax", "log_softmax"}) do
      local x = rn.randn(sz) * 3
      parity(fname .. " last dim", function(a) return rn[fname](a) end, {x}, {grad = true})
      parity(fname .. " dim 1", function(a) return rn[fname](a, 1) end, {x}, {grad = true})
      parity(fname .. " float64", function(a) return rn[fname](a) end, {x:double()}, {grad = true})
    end
  end
  -- large logits stay finite (max-shifted)
  local big = rn.tensor({{1000, 0, -1000}})
  local s = rn.softmax(to_dev(big)):cpu():totable()
  T.near(s[1], {1, 0, 0}, 1e-6, 0)
end)

T.test("cuda: cross_entropy forward and backward, labels checked on the device", function()
  need_gpu()
  use_tol("loss")
  if not rn.cross_entropy then T.skip("rn.cross_entropy is not bound yet") end
  local N, C = LIGHT and 6 or 64, 10
  for _, ldt in ipairs({"int64", "int32", "uint8"}) do
    local labels = (rn.rand({N}) * C):to(ldt)
    for _, sm in ipairs({0, 0.1}) do
      for _, red in ipairs({"mean", "sum", "none"}) do
        local x = rn.randn({N, C}) * 2
        local opts = {label_smoothing = sm, reduction = red}
        parity(string.format("cross_entropy %s smoothing=%g %s", ldt, sm, red),
               function(a, l) return rn.cross_entropy(a, l, opts) end, {x, labels}, {grad = true})
      end
    end
  end
  parity("cross_entropy float64", function(a, l) return rn.cross_entropy(a, l) end,
         {rn.randn({N, C}, {dtype = "float64"}), (rn.rand({N}) * C):long()}, {grad = true})
  parity("cross_entropy of a non-contiguous logits view",
         function(a, l) return rn.cross_entropy(a:t(), l) end,
         {rn.randn({C, N}), (rn.rand({N}) * C):long()}, {grad = true})
  -- a bad label: the CPU's message, with the first bad position (from 1)
  local x = to_dev(rn.randn({5, 10}))
  local bad = to_dev(rn.tensor({1, 2, 10, 3, -1}, {dtype = "int64"}))
  local err = T.raises(function() return rn.cross_entropy(x, bad) end,
                       "cross_entropy: label 10 at position 3 outside 0..9", true)
  T.truthy(err, "raised")
  local bad8 = to_dev(rn.tensor({1, 200}, {dtype = "uint8"}))
  T.raises(function() return rn.cross_entropy(to_dev(rn.randn({2, 10})), bad8) end,
           "label 200 at position 2 outside 0..9", true)
  -- the device is fine afterwards
  local good = rn.tensor({1, 2, 3, 4, 5}, {dtype = "int64"})
  T.near(rn.cross_entropy(x, to_dev(good)):item(), rn.cross_entropy(x:cpu(), good):item(), 1e-4,
         1e-4)
end)

-- ---- with a device: gemm ----------------------------------------------------------

T.test("cuda: matmul and linear through cuBLAS, forward and backward", function()
  need_gpu()
  use_tol("gemm")
  if not rn.matmul then T.skip("rn.matmul is not bound yet") end
  local cases = {
    {"2-d", {5, 7}, {7, 3}},
    {"vector @ matrix", {7}, {7, 3}},
    {"matrix @ vector", {5, 7}, {7}},
    {"batched @ 2-d", {2, 5, 7}, {7, 3}},
    {"batched @ batched", {2, 5, 7}, {2, 7, 3}},
    {"4-d @ 4-d (strided-batched gemm)", {2, 3, 5, 7}, {2, 3, 7, 4}},
    {"4-d @ shared 2-d", {2, 3, 5, 7}, {7, 4}},
    {"partly broadcast batches", {2, 1, 5, 7}, {3, 7, 4}},
    {"outer product of batches", {1, 3, 5, 7}, {2, 1, 7, 4}},
    {"large", LIGHT and {33, 65} or {257, 513}, LIGHT and {65, 17} or {513, 129}},
  }
  for _, c in ipairs(cases) do
    parity("matmul " .. c[1], function(a, b) return rn.matmul(a, b) end,
           {rn.randn(c[2]), rn.randn(c[3])}, {grad = true, tol = "gemm_long_k"})
  end
  parity("matmul attention-style permuted views", function(q, k)
    return rn.matmul(q:permute(1, 3, 2, 4), k:permute(1, 3, 4, 2))
  end, {rn.randn({2, 9, 3, 8}), rn.randn({2, 11, 3, 8})}, {grad = true})
  parity("matmul transposed operands", function(a, b) return rn.matmul(a:t(), b:t()) end,
         {rn.randn({7, 5}), rn.randn({3, 7})}, {grad = true})
  parity("matmul float64", function(a, b) return rn.matmul(a, b) end,
         {rn.randn({6, 4}, {dtype = "float64"}), rn.randn({4, 5}, {dtype = "float64"})},
         {grad = true})
  parity("matmul K = 0", function(a, b) return rn.matmul(a, b) end,
         {rn.randn({3, 0}), rn.randn({0, 4})})
  if rn.linear then
    parity("linear", function(x, w, b) return rn.linear(x, w, b) end,
           {rn.randn({8, 16}), rn.randn({16, 4}), rn.randn({4})}, {grad = true})
  end
end)

-- ---- with a device: a small training step -------------------------------------------

T.test("cuda: an MLP training step matches the CPU", function()
  need_gpu()
  use_tol("gemm")
  if not (rn.linear and rn.cross_entropy) then T.skip("rn.linear/cross_entropy not bound yet") end
  local x, l = rn.randn({32, 20}), (rn.rand({32}) * 5):long()
  local w1, b1, w2, b2 = rn.randn({20, 16}) * 0.3, rn.zeros({16}), rn.randn({16, 5}) * 0.3,
                         rn.zeros({5})
  parity("mlp", function(xx, ll, a, b, c, d)
    local h = rn.linear(xx, a, b):relu()
    return rn.cross_entropy(rn.linear(h, c, d), ll, {label_smoothing = 0.1})
  end, {x, l, w1, b1, w2, b2}, {grad = true})
end)

-- ---- with a device: convolution (cuDNN), pooling, batch norm -----------------------

T.test("cuda: conv2d through cuDNN, forward and backward (x, w, b)", function()
  need_gpu()
  use_tol("conv")
  if not rn.conv2d then T.skip("rn.conv2d is not bound yet") end
  local N = LIGHT and 1 or 2
  -- {label, x shape (N,H,W,Cin), w shape (KH,KW,Cin,Cout), options, bias?}
  local cases = {
    {"3x3 same", {N, 7, 9, 3}, {3, 3, 3, 5}, {padding = "same"}, true},
    {"3x3 valid, no bias", {N, 7, 9, 3}, {3, 3, 3, 5}, {padding = "valid"}, false},
    {"3x3 stride 2 same (asymmetric pads)", {N, 8, 8, 3}, {3, 3, 3, 4},
     {padding = "same", stride = 2}, true},
    {"3x3 stride 2 same, odd size (symmetric pads)", {N, 7, 9, 2}, {3, 3, 2, 4},
     {padding = "same", stride = 2}, true},
    {"explicit asymmetric pads {1,2,0,1}", {N, 6, 7, 3}, {3, 3, 3, 2},
     {padding = {1, 2, 0, 1}}, true},
    {"4x4 same (pads 1 top, 2 bottom)", {N, 6, 6, 2}, {4, 4, 2, 3}, {padding = "same"}, false},
    {"dilation 2 same", {N, 9, 9, 3}, {3, 3, 3, 4}, {padding = "same", dilation = 2}, true},
    {"dilation {2,1}, stride {1,2}", {N, 9, 10, 2}, {3, 3, 2, 3},
     {padding = 1, dilation = {2, 1}, stride = {1, 2}}, true},
    {"1x1", {N, 5, 6, 8}, {1, 1, 8, 4}, {}, true},
    {"1x1 stride 2 (shortcut)", {N, 6, 6, 4}, {1, 1, 4, 8}, {stride = 2}, false},
    {"5x3 rectangular, padding {2,1}", {N, 8, 7, 3}, {5, 3, 3, 2}, {padding = {2, 1}}, true},
    {"16 -> 32 channels (ResNet stage)", {N, 8, 8, 16}, {3, 3, 16, 32},
     {padding = "same", stride = 2}, false},
  }
  for _, c in ipairs(cases) do
    local x, w = rn.randn(c[2]), rn.randn(c[3]) * 0.3
    local b = c[5] and rn.randn({c[3][4]}) or nil
    local opts = c[4]
    if b then
      parity("conv2d " .. c[1], function(xx, ww, bb) return rn.conv2d(xx, ww, bb, opts) end,
             {x, w, b}, {grad = true})
    else
      parity("conv2d " .. c[1], function(xx, ww) return rn.conv2d(xx, ww, nil, opts) end,
             {x, w}, {grad = true})
    end
  end
  -- non-contiguous inputs: x stored NCHW and permuted to NHWC, w transposed
  local xs = rn.randn({N, 3, 7, 8})
  local ws = rn.randn({5, 3, 3, 3}) * 0.3 -- (Cout, KH, KW, Cin)
  parity("conv2d of permuted x and w", function(xx, ww, bb)
    return rn.conv2d(xx:permute(1, 3, 4, 2), ww:permute(2, 3, 4, 1), bb,
                     {padding = "same", stride = 2})
  end, {xs, ws, rn.randn({5})}, {grad = true})
  parity("conv2d of a narrowed x", function(xx, ww)
    return rn.conv2d(xx:narrow(2, 2, 5), ww, nil, {padding = "same"})
  end, {rn.randn({N, 7, 6, 3}), rn.randn({3, 3, 3, 4}) * 0.3}, {grad = true})
  -- float64
  parity("conv2d float64 same stride 2", function(xx, ww, bb)
    return rn.conv2d(xx, ww, bb, {padding = "same", stride = 2})
  end, {rn.randn({N, 7, 8, 3}, {dtype = "float64"}), rn.randn({3, 3, 3, 4}, {dtype = "float64"}),
        rn.randn({4}, {dtype = "float64"})}, {grad = true})
  -- float16 tensors convolve through float32 copies (core/cuda/bf16.c), as on the CPU
  local xh, wh = rn.randn({1, 4, 4, 2}):to("float16"), (rn.randn({3, 3, 2, 2}) * 0.3):to("float16")
  local yh = rn.conv2d(to_dev(xh), to_dev(wh), nil, {padding = "same"})
  T.eq(yh.dtype, "float16", "float16 conv2d on " .. DEV .. ": dtype")
  near(yh:cpu():float(), rn.conv2d(xh:float(), wh:float(), nil, {padding = "same"}), "float16 conv2d", 1e-2)
  -- a batch of one image with many rows, and the same shape again (cached algorithm)
  for i = 1, 2 do
    parity("conv2d 32x32, call " .. i, function(xx, ww)
      return rn.conv2d(xx, ww, nil, {padding = "same"})
    end, {rn.randn({1, 32, 32, 3}), rn.randn({3, 3, 3, 16}) * 0.3}, {grad = true})
  end
end)

T.test("cuda: max and average pooling, forward and backward", function()
  need_gpu()
  use_tol("pool")
  if not rn.max_pool2d then T.skip("rn.max_pool2d is not bound yet") end
  local N = LIGHT and 1 or 2
  local cases = {
    {"2x2 stride 2", {N, 8, 8, 3}, 2, {}},
    {"3x3 stride 2 same (asymmetric)", {N, 8, 9, 4}, 3, {stride = 2, padding = "same"}},
    {"3x3 stride 1 padding 1 (overlapping)", {N, 6, 7, 2}, 3, {stride = 1, padding = 1}},
    {"{2,3} stride {1,2} pads {1,0,0,2}", {N, 7, 7, 3}, {2, 3},
     {stride = {1, 2}, padding = {1, 0, 0, 2}}},
    {"2x2 stride 2 same, odd size", {N, 7, 5, 3}, 2, {padding = "same"}},
  }
  for _, c in ipairs(cases) do
    local x = rn.randn(c[2])
    parity("max_pool2d " .. c[1], function(a) return rn.max_pool2d(a, c[3], c[4]) end, {x},
           {grad = true})
    parity("avg_pool2d " .. c[1], function(a) return rn.avg_pool2d(a, c[3], c[4]) end, {x},
           {grad = true})
    local o = {count_include_pad = true}
    for k, v in pairs(c[4]) do o[k] = v end
    parity("avg_pool2d count_include_pad " .. c[1], function(a) return rn.avg_pool2d(a, c[3], o) end,
           {x}, {grad = true})
  end
  -- non-contiguous input, float64
  parity("max_pool2d of a permuted x", function(a)
    return rn.max_pool2d(a:permute(1, 3, 4, 2), 3, {stride = 2, padding = "same"})
  end, {rn.randn({N, 3, 9, 8})}, {grad = true})
  parity("avg_pool2d float64", function(a) return rn.avg_pool2d(a, 3, {stride = 2, padding = 1}) end,
         {rn.randn({N, 7, 7, 2}, {dtype = "float64"})}, {grad = true})
  -- ties: max backward routes to the first maximum of each window, as the CPU
  local t = rn.ones({1, 4, 4, 2})
  parity("max_pool2d ties", function(a) return rn.max_pool2d(a, 3, {stride = 1}) end, {t},
         {grad = true})
  local gc = to_dev(t):detach():requires_grad_()
  rn.max_pool2d(gc, 2):sum():backward()
  local first = rn.zeros({1, 4, 4, 2})
  for _, ij in ipairs({{1, 1}, {1, 3}, {3, 1}, {3, 3}}) do
    first:narrow(2, ij[1], 1):narrow(3, ij[2], 1):fill_(1)
  end
  T.eq(gc.grad:cpu():totable(), first:totable(), "ties: the first cell of each window")
end)

T.test("cuda: batch_norm training, running statistics, backward", function()
  need_gpu()
  use_tol("batch_norm")
  if not rn.batch_norm then T.skip("rn.batch_norm is not bound yet") end
  local sizes = LIGHT and {{2, 3, 3, 4}} or {{2, 5, 6, 4}, {8, 16, 16, 8}, {37, 5}, {1, 3}}
  for _, sz in ipairs(sizes) do
    for _, dt in ipairs({"float32", "float64"}) do
      local C = sz[#sz]
      local x = rn.randn(sz, {dtype = dt}) * 2 + 0.5
      local g, b = rn.randn({C}, {dtype = dt}), rn.randn({C}, {dtype = dt})
      local rm0, rv0 = rn.randn({C}, {dtype = dt}), rn.rand({C}, {dtype = dt}) + 0.5
      for _, unbiased in ipairs({false, true}) do -- Keras' biased moving variance, PyTorch's unbiased
        local stats = {{rm0:clone(), rv0:clone()}, {to_dev(rm0), to_dev(rv0)}}
        local calls = 0
        local label = string.format("batch_norm train %s %s unbiased=%s", table.concat(sz, "x"), dt,
          tostring(unbiased))
        parity(label, function(xx, gg, bb)
          calls = calls + 1
          local s = stats[calls]
          return rn.batch_norm(xx, gg, bb, s[1], s[2], {momentum = 0.9, eps = 1e-3, unbiased = unbiased})
        end, {x, g, b}, {grad = true})
        T.eq(stats[2][1].device, DEV)
        near(stats[2][1], stats[1][1], label .. ": running_mean")
        near(stats[2][2], stats[1][2], label .. ": running_var")
      end
    end
  end
  -- the rule itself on the device: var (C) of a 4-row x, biased by default
  local xr = rn.tensor({{1, 10}, {2, 20}, {3, 30}, {6, 0}})
  local rvb, rvu = to_dev(rn.ones({2})), to_dev(rn.ones({2}))
  rn.batch_norm(to_dev(xr), nil, nil, nil, rvb)
  rn.batch_norm(to_dev(xr), nil, nil, nil, rvu, {unbiased = true})
  near(rvb, rn.tensor({0.99 + 0.01 * 3.5, 0.99 + 0.01 * 125}), "running_var: biased (Keras)")
  near(rvu, rn.tensor({0.99 + 0.01 * 14 / 3, 0.99 + 0.01 * 500 / 3}), "running_var: unbiased = true")
  -- without gamma/beta/running stats; a permuted x; a large mean in float32
  parity("batch_norm train, no parameters", function(xx) return rn.batch_norm(xx) end,
         {rn.randn({4, 3, 3, 5})}, {grad = true})
  parity("batch_norm train of a permuted x", function(xx, gg)
    return rn.batch_norm(xx:permute(1, 3, 4, 2), gg, nil)
  end, {rn.randn({3, 6, 4, 5}), rn.randn({6})}, {grad = true})
  parity("batch_norm float32 with a large mean", function(xx) return rn.batch_norm(xx) end,
         {rn.randn({64, 6}) * 0.01 + 1000}, {tol = "default"}) -- ulp(1000) / std 0.01: ~6e-3
  -- Keras default momentum (0.99) on the device
  local rm, rv = to_dev(rn.zeros({3})), to_dev(rn.ones({3}))
  local x = rn.randn({10, 3})
  rn.batch_norm(to_dev(x), nil, nil, rm, rv)
  local m = x:mean(1)
  near(rm, m * 0.01, "running_mean after one step of momentum 0.99")
end)

T.test("cuda: batch_norm inference, forward and backward", function()
  need_gpu()
  use_tol("batch_norm")
  if not rn.batch_norm then T.skip("rn.batch_norm is not bound yet") end
  for _, dt in ipairs({"float32", "float64"}) do
    local C = 6
    local rm, rv = rn.randn({C}, {dtype = dt}), rn.rand({C}, {dtype = dt}) + 0.5
    local rmg, rvg = to_dev(rm), to_dev(rv)
    local calls = 0
    parity("batch_norm inference " .. dt, function(xx, gg, bb)
      calls = calls + 1
      if calls == 1 then return rn.batch_norm(xx, gg, bb, rm, rv, {training = false}) end
      return rn.batch_norm(xx, gg, bb, rmg, rvg, {training = false})
    end, {rn.randn({3, 4, 5, C}, {dtype = dt}), rn.randn({C}, {dtype = dt}),
          rn.randn({C}, {dtype = dt})}, {grad = true})
    near(rmg, rm, "inference leaves running_mean alone")
    near(rvg, rv, "inference leaves running_var alone")
  end
end)

T.test("cuda: layer_norm and group_norm, forward and backward", function()
  need_gpu()
  use_tol("batch_norm")
  local big = LIGHT and {2, 5, 5, 16} or {4, 17, 13, 64}
  for _, dt in ipairs({"float32", "float64"}) do
    local o = {dtype = dt}
    parity("layer_norm " .. dt, function(x, g, b) return rn.layer_norm(x, g, b) end,
           {rn.randn(big, o), rn.randn({big[4]}, o), rn.randn({big[4]}, o)}, {grad = true})
    parity("layer_norm 2 dims " .. dt, function(x, g, b) return rn.layer_norm(x, g, b) end,
           {rn.randn({6, 5, 33}, o) * 3 + 1, rn.randn({5, 33}, o), rn.randn({5, 33}, o)}, {grad = true})
    parity("layer_norm no affine " .. dt, function(x) return rn.layer_norm(x:permute(2, 1, 3)) end,
           {rn.randn({7, 3, 9}, o)}, {grad = true})
    for _, G in ipairs({1, 8, big[4]}) do
      parity("group_norm " .. G .. " groups " .. dt, function(x, g, b) return rn.group_norm(x, G, g, b) end,
             {rn.randn(big, o), rn.randn({big[4]}, o), rn.randn({big[4]}, o)}, {grad = true})
    end
  end
end)

T.test("cuda: embedding forward and the deterministic scatter-add backward", function()
  need_gpu()
  use_tol("loss")
  math.randomseed(17)
  local n = LIGHT and 200 or 5000
  local idx = {}
  for k = 1, n do idx[k] = math.random(0, 63) end
  for _, it in ipairs({"int64", "int32"}) do
    local I = rn.tensor(idx, {dtype = it}):reshape({n // 100 > 0 and 100 or n, -1})
    for _, dt in ipairs({"float32", "float64"}) do
      parity("embedding " .. it .. " " .. dt, function(w) return rn.embedding(w.device == "cpu" and I or to_dev(I), w) end,
             {rn.randn({64, 48}, {dtype = dt})}, {grad = true})
    end
  end
  T.raises(function() rn.embedding(to_dev(rn.tensor({64}, {dtype = "int64"})), to_dev(rn.ones({64, 2}))) end,
    "embedding: index 64 is out of range for a table of 64 rows (valid: 0..63)", true)
end)

T.test("cuda: fused scaled_dot_product_attention, forward and backward", function()
  need_gpu()
  use_tol("reduce")
  local Tn = LIGHT and 17 or 257 -- long enough that the kernel walks many keys
  math.randomseed(18)
  local m = {}
  for j = 1, Tn do m[j] = (j == 1 or math.random() < 0.8) and 1 or 0 end
  local pad = rn.tensor(m, {dtype = "uint8"}):reshape({1, 1, 1, Tn})
  for _, dt in ipairs({"float32", "float64"}) do
    local o = {dtype = dt}
    for _, c in ipairs({{"plain", {}}, {"causal", {causal = true}}, {"padding mask", {mask = pad}},
                        {"both", {mask = pad, causal = true, scale = 0.2}}}) do
      parity("attention " .. c[1] .. " " .. dt, function(q, k, v)
        local opts = {causal = c[2].causal, scale = c[2].scale}
        if c[2].mask then opts.mask = q.device == "cpu" and c[2].mask or to_dev(c[2].mask) end
        return rn.scaled_dot_product_attention(q, k, v, opts)
      end, {rn.randn({2, 2, Tn, 64}, o), rn.randn({2, 2, Tn, 64}, o), rn.randn({2, 2, Tn, 32}, o)},
      {grad = true})
    end
  end
  if not ON_CPU then -- the CUDA kernel's head-dim limit is a clear error
    T.raises(function()
      local q = to_dev(rn.randn({1, 2, 300}))
      rn.scaled_dot_product_attention(q, q, q)
    end, "head dims D = 300, Dv = 300; at most 256 on cuda", true)
  end
end)

T.test("cuda: pad and resize, forward and backward", function()
  need_gpu()
  use_tol("pool")
  local im = LIGHT and {2, 5, 6, 3} or {4, 33, 29, 16}
  for _, dt in ipairs({"float32", "float64"}) do
    local o = {dtype = dt}
    for _, mode in ipairs({"constant", "reflect", "replicate"}) do
      parity("pad " .. mode .. " " .. dt, function(x)
        return rn.pad(x, {{0, 0}, {2, 3}, {4, 1}, {1, 0}}, {mode = mode, value = mode == "constant" and 0.25 or nil})
      end, {rn.randn(im, o)}, {grad = true})
    end
    parity("pad permuted " .. dt, function(x) return rn.pad(x:permute(1, 3, 2, 4), {{1, 1}, {0, 2}, {3, 0}, {0, 0}}) end,
           {rn.randn(im, o)}, {grad = true})
    for _, c in ipairs({{"nearest", 2}, {"bilinear", 2}}) do
      parity("upsample " .. c[1] .. " " .. dt, function(x) return rn.upsample(x, c[2], {method = c[1]}) end,
             {rn.randn(im, o)}, {grad = true})
    end
    for _, size in ipairs({{7, 45}, {im[2] // 3, im[3] // 2}}) do
      parity("resize bilinear " .. size[1] .. "x" .. size[2] .. " " .. dt,
             function(x) return rn.resize(x, size, {method = "bilinear"}) end, {rn.randn(im, o)}, {grad = true})
      parity("resize nearest " .. size[1] .. "x" .. size[2] .. " " .. dt,
             function(x) return rn.resize(x, size) end, {rn.randn(im, o)}, {grad = true})
    end
  end
  local i = rn.tensor({{1, -2}, {3, 4}}, {dtype = "int32"})
  T.eq(rn.pad(to_dev(i), {{1, 0}, {0, 1}}, {value = 7}):cpu():totable(),
       rn.pad(i, {{1, 0}, {0, 1}}, {value = 7}):totable(), "pad int32")
end)

T.test("cuda: a tiny Conv2D/BatchNormalization/Dense Model trains on the device like on the CPU",
       function()
  need_gpu()
  local L = rn.layers
  if not (L and rn.Model and rn.optim) then T.skip("rn.layers / rn.Model not available") end
  local function make()
    rn.manual_seed(7)
    local inp = L.Input({8, 8, 3})
    local h = L.Conv2D(6, 3, {padding = "same"})(inp)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.Conv2D(8, 3, {strides = 2, padding = "same"})(h)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.GlobalAveragePooling2D()(h)
    return rn.Model(inp, L.Dense(4, {activation = "softmax"})(h))
  end
  local mc, mg = make(), make()
  mg:to(DEV)
  for _, m in ipairs({mc, mg}) do
    m:compile({optimizer = rn.optim.SGD(m:parameters(), {lr = 0.05, momentum = 0.9}),
               loss = "sparse_categorical_crossentropy"})
  end
  rn.manual_seed(3)
  local x, y
  for step = 1, 4 do
    x, y = rn.randn({16, 8, 8, 3}), (rn.rand({16}) * 4):long()
    local lc = mc:train_step(x, y).loss
    local lg = mg:train_step(to_dev(x), to_dev(y)).loss
    T.truthy(lc == lc, "finite CPU loss")
    T.near(lg, lc, 1e-3, 1e-3, "loss at step " .. step)
  end
  -- the weights and running statistics moved alike; inference agrees
  local wc, wg = mc:weights(), mg:weights()
  T.eq(#wg, #wc)
  for i = 1, #wc do
    T.eq(wg[i].tensor.device, DEV, wg[i].name)
    near(wg[i].tensor, wc[i].tensor, "weight " .. wc[i].name, "model")
  end
  near(mg:predict(to_dev(x)), mc:predict(x), "predict after training", "model")
end)

-- ---- with a device: bfloat16 math (mixed_bfloat16) ------------------------------------
-- Under the mixed_bfloat16 policy cuDNN convolves bf16 copies of the float32
-- operands with float32 accumulation (core/cuda/cudnn.c); every tensor stays
-- float32. Compared with the CPU in float32 math: the largest difference
-- within 1.6e-2 of the reference's largest magnitude (bf16 keeps 8 bits).
-- The policy is set only around the device work and restored to float32
-- even when that work fails.

local BF16_RTOL = 1.6e-2

-- Skips without a device (or, with RN_CUDA_TEST_ON_CPU, without a CPU whose
-- oneDNN has bf16 kernels: the policy setter refuses it there).
local function need_bf16()
  need_gpu()
  if not (rn.mixed_precision and rn.mixed_precision.set_global_policy) then
    T.skip("rn.mixed_precision is not in this build")
  end
  local ok, err = pcall(rn.mixed_precision.set_global_policy, "mixed_bfloat16")
  rn.mixed_precision.set_global_policy("float32")
  if not ok then T.skip("mixed_bfloat16 refused here: " .. tostring(err)) end
end

-- fn(...) under mixed_bfloat16; float32 is restored even when fn raises (the
-- error is raised again after the restore, skips included).
local function with_bf16(fn, ...)
  rn.mixed_precision.set_global_policy("mixed_bfloat16")
  local res = table.pack(pcall(fn, ...))
  rn.mixed_precision.set_global_policy("float32")
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

local relerr = P.relerr

-- conv2d on dev with leaves made from x, w, b (view(x, w) applied first when
-- given: non-contiguous operands), backward of gy: {y, dx, dw, db}
local function conv_on(dev, x, w, b, o, gy, view)
  local xx = x:to(dev):detach():requires_grad_()
  local ww = w:to(dev):detach():requires_grad_()
  local bb = b and b:to(dev):detach():requires_grad_()
  local xv, wv = xx, ww
  if view then xv, wv = view(xx, ww) end
  local y = rn.conv2d(xv, wv, bb, o)
  y:backward(gy:to(dev))
  return {y, xx.grad, ww.grad, bb and bb.grad}
end

local N_BF = LIGHT and 1 or 2
-- {label, x shape, w shape, options, bias?, view}: x as stored (a view makes
-- it (N,H,W,Cin) and w (KH,KW,Cin,Cout))
local BF16_CASES = {
  {"3x3 same, 16 -> 32", {N_BF, 8, 8, 16}, {3, 3, 16, 32}, {padding = "same"}, true},
  {"3x3 stride 2 same (asymmetric pads), 3 -> 5", {N_BF, 8, 8, 3}, {3, 3, 3, 5},
   {padding = "same", stride = 2}, true},
  {"3x3 stride 2 same, odd size, 16 -> 32", {N_BF, 9, 9, 16}, {3, 3, 16, 32},
   {padding = "same", stride = 2}, false},
  {"1x1 stride 2 shortcut, 16 -> 32", {N_BF, 8, 8, 16}, {1, 1, 16, 32}, {stride = 2}, false},
  {"pads {1,2}, 5 -> 7 channels", {N_BF, 7, 9, 5}, {3, 3, 5, 7}, {padding = {1, 2}}, true},
  {"first layer 32x32, 3 -> 16", {N_BF, 32, 32, 3}, {3, 3, 3, 16}, {padding = "same"}, true},
  {"dilation 2, 12 -> 6", {N_BF, 10, 10, 12}, {3, 3, 12, 6}, {padding = "same", dilation = 2},
   true},
  {"permuted x (NCHW storage) and w, stride 2, 6 -> 10", {N_BF, 6, 9, 8}, {10, 3, 3, 6},
   {padding = "same", stride = 2}, true,
   function(x, w) return x:permute(1, 3, 4, 2), w:permute(2, 3, 4, 1) end},
  {"narrowed x, 12 -> 8", {N_BF, 8, 11, 12}, {3, 3, 12, 8}, {padding = "same"}, false,
   function(x, w) return x:narrow(3, 2, 8), w end},
}

T.test("cuda: conv2d under mixed_bfloat16 matches the CPU in float32 (bf16 tolerance)", function()
  need_bf16()
  if not rn.conv2d then T.skip("rn.conv2d is not bound yet") end
  rn.manual_seed(21)
  local names = {"output", "input gradient", "weight gradient", "bias gradient"}
  for _, c in ipairs(BF16_CASES) do
    local x, w = rn.randn(c[2]), rn.randn(c[3]) * 0.3
    local opts, view = c[4], c[6]
    local b
    if c[5] then b = rn.randn({view and c[3][1] or c[3][4]}) end
    -- the output's shape, from a CPU forward of the same views
    local xv, wv = x, w
    if view then xv, wv = view(x, w) end
    local gy = rn.randn(rn.conv2d(xv, wv, b, opts):size())
    local ref = conv_on("cpu", x, w, b, opts, gy, view) -- float32 math
    local got = with_bf16(conv_on, DEV, x, w, b, opts, gy, view)
    T.eq(rn.mixed_precision.global_policy(), "float32", "policy restored")
    for k = 1, 4 do
      if ref[k] then
        local what = string.format("conv2d bf16 %s: %s", c[1], names[k])
        T.truthy(got[k], what .. " exists")
        T.eq(got[k].device, DEV, what .. " device")
        T.eq(got[k].dtype, "float32", what .. " stays float32")
        local e = relerr(got[k], ref[k])
        T.truthy(e <= BF16_RTOL, string.format("%s: max error %.3g of the largest |value| "
                                               .. "(limit %g)", what, e, BF16_RTOL))
      end
    end
    if c[2][4] >= 16 and not view then
      -- bf16 rounding of the inputs shows; float32 math would stay near 1e-6
      local e = relerr(got[1], ref[1])
      T.truthy(e > 1e-4, string.format("conv2d bf16 %s: error %.3g is that of bf16 math", c[1], e))
    end
  end
end)

T.test("cuda: conv2d under float32 after mixed_bfloat16 is float32 math again", function()
  need_bf16()
  if not rn.conv2d then T.skip("rn.conv2d is not bound yet") end
  rn.manual_seed(22)
  -- the same shapes run first under bf16 (their cached plans must not leak
  -- into float32: the algorithm cache is keyed by the policy)
  for _, i in ipairs({1, 3, 8}) do
    local c = BF16_CASES[i]
    local x, w = rn.randn(c[2]), rn.randn(c[3]) * 0.3
    local opts, view = c[4], c[6]
    local b
    if c[5] then b = rn.randn({view and c[3][1] or c[3][4]}) end
    local xv, wv = x, w
    if view then xv, wv = view(x, w) end
    local gy = rn.randn(rn.conv2d(xv, wv, b, opts):size())
    with_bf16(conv_on, DEV, x, w, b, opts, gy, view)
    local ref = conv_on("cpu", x, w, b, opts, gy, view)
    local got = conv_on(DEV, x, w, b, opts, gy, view)
    for k = 1, 4 do
      if ref[k] then near(got[k], ref[k], "float32 again, " .. c[1] .. ", result " .. k) end
    end
  end
  -- a failure inside the bf16 region still restores float32
  local ok = pcall(with_bf16, function() error("inside the bf16 region") end)
  T.eq(ok, false)
  T.eq(rn.mixed_precision.global_policy(), "float32")
end)

T.test("cuda: a small seed-like conv net trains 20 steps under mixed_bfloat16, the loss falls",
       function()
  need_bf16()
  local L = rn.layers
  if not (L and rn.Model and rn.optim and L.Add) then
    T.skip("rn.layers / rn.Model not available")
  end
  local chunk = loadfile("scripts/resnet_cifar.lua")
  if not chunk then T.skip("scripts/resnet_cifar.lua not found (run from the repository root)") end
  local residual_block = chunk().residual_block
  -- the seed's stem, two of its pre-activation residual blocks (one
  -- strided, with the conv shortcut) and its head, on 8x8x3 images
  rn.manual_seed(31)
  local inp = L.Input({8, 8, 3})
  local h = L.Conv2D(8, 3, {padding = "same"})(inp)
  h = residual_block(h, 8, 1)
  h = residual_block(h, 16, 2)
  h = L.BatchNormalization()(h)
  h = L.ReLU()(h)
  h = L.GlobalAveragePooling2D()(h)
  local m = rn.Model(inp, L.Dense(3, {activation = "softmax"})(h))
  m:to(DEV)
  m:compile({optimizer = rn.optim.SGD(m:parameters(), {lr = 0.05, momentum = 0.9}),
             loss = "sparse_categorical_crossentropy"})
  -- a learnable batch: class c lifts channel c of every pixel by 1.5
  local B = 32
  local lab, offs = {}, {}
  for i = 1, B do
    lab[i] = (i - 1) % 3
    local o = {0, 0, 0}
    o[lab[i] + 1] = 1.5
    offs[i] = {{o}}
  end
  local x = to_dev(rn.randn({B, 8, 8, 3}) + rn.tensor(offs))
  local y = to_dev(rn.tensor(lab, {dtype = "int64"}))
  local losses = with_bf16(function()
    local ls = {}
    for step = 1, 20 do ls[step] = m:train_step(x, y).loss end
    return ls
  end)
  T.eq(rn.mixed_precision.global_policy(), "float32", "policy restored")
  for step, l in ipairs(losses) do
    T.truthy(l == l and l < math.huge, "finite loss at step " .. step .. ": " .. tostring(l))
  end
  T.truthy(losses[20] < 0.6 * losses[1], string.format("loss falls: step 1 %.4f, step 20 %.4f",
                                                      losses[1], losses[20]))
  for _, wt in ipairs(m:weights()) do
    T.eq(wt.tensor.device, DEV, wt.name)
    T.eq(wt.tensor.dtype, "float32", wt.name .. " stays float32 (master weights)")
  end
end)

-- ---- with a device: the allocator ------------------------------------------------------

T.test("cuda: allocator statistics and the cache", function()
  need_real_gpu("allocator statistics")
  core.cuda_synchronize()
  local s0 = core.cuda_memory_stats()
  do
    for _ = 1, 5 do
      local t = rn.zeros({1000, 1000}):cuda() -- 4 MB each, the same size class
      t = nil
      collectgarbage()
    end
  end
  local s1 = core.cuda_memory_stats()
  T.truthy(s1.num_allocs >= s0.num_allocs + 5, "allocations counted")
  T.truthy(s1.cache_hits >= s0.cache_hits + 4, "the same size is reused from the cache")
  T.truthy(s1.allocated <= s1.reserved, "allocated <= reserved")
  T.truthy(s1.peak_allocated >= s1.allocated, "peak >= allocated")
  T.truthy(s1.peak_reserved >= s1.reserved, "peak reserved >= reserved")
  T.truthy(s1.device_total > 0 and s1.device_free <= s1.device_total, "device numbers")
  core.cuda_empty_cache()
  local s2 = core.cuda_memory_stats()
  T.eq(s2.reserved, s2.allocated, "after empty_cache only live blocks stay reserved")
  T.eq(s2.cached_blocks, 0)
end)

T.test("cuda: out of memory is a catchable error; memory comes back", function()
  need_real_gpu("out of memory")
  if LIGHT then T.skip("RN_TEST_LIGHT: the out-of-memory test is skipped") end
  -- RN_TEST_VERBOSE: each phase's wall time on stderr
  local t0, verbose = rn._clock(), os.getenv("RN_TEST_VERBOSE")
  local function phase(what)
    if verbose then
      core.cuda_synchronize() -- the time of the queued work too
      io.stderr:write(string.format("  oom: %-44s %7.2f s\n", what, rn._clock() - t0))
    end
  end
  collectgarbage()
  core.cuda_empty_cache()
  local keep = rn.randn({1000})
  local kg = keep:cuda()
  local one = rn.zeros({1}, {device = "cuda"})
  local s0 = core.cuda_memory_stats()
  -- more than the whole device: made on the device (expand + contiguous), so
  -- the host never holds it
  local n = math.floor(s0.device_total / 4) + (1 << 28)
  phase("set up")
  local err = T.raises(function() return one:expand({n}):contiguous() end, "out of memory")
  phase("over the device: refused")
  T.truthy(err:find("free %d+ of %d+"), "free/total in the message: " .. err)
  local s1 = core.cuda_memory_stats()
  T.truthy(s1.oom_retries >= s0.oom_retries + 1, "retried once")
  T.truthy(s1.ooms >= s0.ooms + 1, "failure counted")
  T.truthy(s1.allocated <= s1.reserved, "stats sane after an OOM")
  near(kg, keep, "earlier tensors intact")
  -- the garbage-collection retry: a block only Lua garbage holds is freed by
  -- the allocator's out-of-memory hook and reused
  local big = math.floor(s1.device_free * 0.6 / 4)
  collectgarbage("stop") -- `a` below stays uncollected until the allocator's hook runs
  do
    local a = one:expand({big}):contiguous()
    phase(string.format("%.1f GB allocated and filled", big * 4 / 1e9))
    T.eq(a.device, "cuda")
    a = nil -- garbage, not yet collected
  end
  local ok, b = pcall(function() return one:expand({big}):contiguous() end) -- needs a's memory
  collectgarbage("restart")
  phase("the second block, after the collection")
  T.truthy(ok, "allocated after the collection freed the first block: " .. tostring(b))
  T.eq(b:size(1), big)
  local s2 = core.cuda_memory_stats()
  T.truthy(s2.oom_retries >= s1.oom_retries + 1, "this allocation went through the retry")
  b = nil
  collectgarbage()
  phase("collected")
  core.cuda_empty_cache()
  local s3 = core.cuda_memory_stats()
  phase("cache emptied")
  T.eq(s3.reserved, s3.allocated)
  near(kg, keep, "earlier tensors still intact")
end)

T.test("cuda: model:compare against the CPU, layer by layer, the model left as it was", function()
  need_gpu()
  if ON_CPU then T.skip("compares two devices") end
  local L = require "rn.layers"
  rn.manual_seed(5)
  local inp = L.Input({ 8, 8, 3 })
  local h = L.Conv2D(8, 3, { padding = "same" })(inp)
  h = L.BatchNormalization()(h)
  h = L.ReLU()(h)
  h = L.Add()({ h, L.Conv2D(8, 1)(inp) })
  local m = rn.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(h)))
  m:compile{ optimizer = rn.optim.SGD{ lr = 0.05 }, loss = "sparse_categorical_crossentropy" }
  local x, y = rn.randn({ 6, 8, 8, 3 }), rn.tensor({ 0, 1, 2, 0, 1, 2 }):long()
  local objs = {}
  for _, w in ipairs(m:weights()) do objs[w.name] = w.tensor end
  local r = m:compare(x, y, { print = false }) -- default: against cuda
  T.truthy(r.b:find("^cuda/"), r.b)
  for _, v in ipairs(r.rows) do
    if v.out_rel then T.truthy(v.out_rel < 1e-4, v.name .. " output rel " .. v.out_rel) end
    if v.grad_rel then T.truthy(v.grad_rel < 1e-3, v.name .. " gradient rel " .. v.grad_rel) end
  end
  for _, w in ipairs(m:weights()) do
    T.eq(w.tensor.device, "cpu")
    T.truthy(rawequal(w.tensor, objs[w.name]), w.name .. ": the same tensor object")
  end
  local k0 = m:weights()[1].tensor:clone()
  m:train_step(x, y)
  T.truthy((m:weights()[1].tensor - k0):abs():max():item() > 0, "the optimizer still trains the model")
  -- and from the device side
  m:to("cuda")
  local r2 = m:compare(x:cuda(), y:cuda(), { print = false })
  T.truthy(r2.b:find("^cpu/"), r2.b)
  T.truthy(r2.worst_rel < 1e-3, "worst rel " .. r2.worst_rel)
  T.eq(m:weights()[1].tensor.device, "cuda")
end)

T.test("cuda: predict with the inference fusions (BN folded, add in place) matches the CPU", function()
  need_gpu()
  if ON_CPU then T.skip("compares two devices") end
  local R = loadfile("scripts/resnet_cifar.lua")()
  rn.manual_seed(6)
  local m = R.create_resnet({ 16, 16, 3 })
  rn.no_grad(function() -- BN statistics away from 0/1, so a wrong fold shows
    for _, l in ipairs(m.layers) do
      if l.moving_mean then
        local c = l.moving_mean:size(1)
        l.moving_mean:copy_(rn.randn({ c }) * 0.3)
        l.moving_variance:copy_(rn.rand({ c }) + 0.5)
        l.beta:copy_(rn.randn({ c }) * 0.2)
      end
    end
  end)
  local x = rn.randn({ 8, 16, 16, 3 })
  local cpu = m:predict(x)
  m:to("cuda")
  local xc = x:cuda()
  local x0 = xc:clone()
  local fused = m:predict(xc)
  m.fusion = false
  local plain = m:predict(xc)
  m.fusion = nil
  T.eq(fused.device, "cuda")
  -- softmax outputs after 43 layers; cuDNN may pick other algorithms per
  -- call: about the 1e-3 of the other model-level parity tests
  T.near(fused:cpu(), plain:cpu(), 1e-4, 1e-3, "fused vs unfused on the device")
  T.near(fused:cpu(), cpu, 5e-4, 5e-3, "device vs CPU")
  T.truthy((cpu - cpu:mean()):abs():max():item() > 1e-3, "outputs are not all equal")
  T.eq((xc - x0):abs():max():item(), 0, "the input is not written")
end)
