-- profile_arch.lua - where an example architecture's training step goes, per
-- layer type (model:profile: host time per layer, and on the GPU the time
-- between CUDA events), at the shapes scripts/bench_arch.lua measures.
--   ./rnlua scripts/profile_arch.lua [--device cuda] [--batch 128] [--models mobilenet_v2,vit,seed]
--                                    [--precision fp32|bf16]
-- (seed: the seed ResNet of scripts/resnet_cifar.lua; bf16: the mixed_bfloat16 policy)
local rn = require "rn"
local A = dofile("scripts/architectures.lua")
local device, batch, only, precision = "cpu", 64, { mobilenet_v2 = true, vit = true }, "fp32"
local i = 1
while i <= #arg do
  local a, v = arg[i], arg[i + 1]
  if a == "--device" then device = v
  elseif a == "--batch" then batch = math.tointeger(tonumber(v))
  elseif a == "--models" then only = {} for m in v:gmatch("[^,]+") do only[m] = true end
  elseif a == "--precision" and (v == "fp32" or v == "bf16") then precision = v
  else io.stderr:write("profile_arch.lua: unknown option " .. tostring(a) .. "\n"); os.exit(2) end
  i = i + 2
end
if device == "cuda" and not rn.cuda.is_available() then
  io.stderr:write("profile_arch: no CUDA device: " .. tostring(rn.cuda.why_unavailable()) .. "\n")
  os.exit(1)
end
local MODELS = {
  { "mobilenet_v2", function() return A.mobilenet_v2{ input_shape = { 32, 32, 3 }, classes = 10 } end },
  { "vit", function() return A.vit{ input_shape = { 32, 32, 3 }, classes = 10, patch = 4, dim = 128, depth = 4,
    heads = 4, mlp = 256 } end, logits = true },
  { "seed", function() return assert(loadfile("scripts/resnet_cifar.lua"))().create_resnet() end },
}
if precision == "bf16" then rn.mixed_precision.set_global_policy("mixed_bfloat16") end
for _, m in ipairs(MODELS) do
  if only[m[1]] then
    rn.manual_seed(0)
    local model = m[2]()
    model:to(device)
    model:compile({ optimizer = rn.optim.Adam{ lr = 1e-3 },
      loss = rn.losses.sparse_categorical_crossentropy{ from_logits = m.logits == true } })
    local x = rn.randn({ batch, 32, 32, 3 }):to(device)
    local y = (rn.rand({ batch }) * 10):long():minimum(9):to(device)
    local res = model:profile(x, y, { steps = 3, warmup = 2, print = false })
    print(string.format("%s on %s (%s), batch %d: step %.2f ms%s", m[1], device, precision, batch, res.step_ms,
      res.gpu_step_ms and string.format(" (GPU span %.2f ms)", res.gpu_step_ms) or ""))
    print(string.format("  %-26s %5s %10s %10s %10s %10s %6s", "layer type", "count", "fwd ms", "bwd ms",
      "gpu fwd", "gpu bwd", "%"))
    for _, t in ipairs(res.by_type) do
      print(string.format("  %-26s %5d %10.3f %10.3f %10s %10s %5.1f%%", tostring(t.type), t.count, t.forward_ms,
        t.backward_ms, t.gpu_forward_ms and string.format("%.3f", t.gpu_forward_ms) or "-",
        t.gpu_backward_ms and string.format("%.3f", t.gpu_backward_ms) or "-", t.percent))
    end
    for _, k in ipairs({ "loss", "optimizer", "other" }) do
      local r = res[k]
      print(string.format("  %-26s %5s %10.3f %10.3f", k, "", r.forward_ms, r.backward_ms))
    end
  end
end
