-- attention.lua (layers) - Embedding and MultiHeadAttention, with Keras's
-- weight names and shapes (so weights load from a Keras model by name):
--   Embedding: embeddings (input_dim, output_dim)
--   MultiHeadAttention: query/kernel (D, heads, key_dim), query/bias
--   (heads, key_dim), key/..., value/kernel (D, heads, value_dim),
--   value/bias, attention_output/kernel (heads, value_dim, D_out),
--   attention_output/bias (D_out).
-- Attention runs on the fused rn.scaled_dot_product_attention (no T x T
-- matrix kept for the backward); heads are a batch dim of the batched
-- matmul, not folded into the batch with copies.
local M = require "rn.layers.base"
local h = M._h
local rn, fail, numel = h.rn, h.fail, h.numel
local pos_int, get_init, get_reg = h.pos_int, h.get_init, h.get_reg
local Layer = M.Layer

-- ---- Embedding --------------------------------------------------------------------------

local Embedding = Layer:extend("Embedding")
M.Embedding = Embedding

--- Embedding(input_dim, output_dim, {embeddings_initializer="uniform"
--- (Keras's: uniform in [-0.05, 0.05]), embeddings_regularizer=, name=}):
--- integer ids 0..input_dim-1 of any shape -> (..., output_dim). Ids out of
--- range are an error naming them (rn.embedding).
function Embedding:init(input_dim, output_dim, opts)
  self.input_dim = pos_int(input_dim, "Embedding", "input_dim (argument 1)")
  self.output_dim = pos_int(output_dim, "Embedding", "output_dim (argument 2)")
  opts = self:_options(opts, { "embeddings_initializer", "embeddings_regularizer" })
  local init = opts.embeddings_initializer or "uniform"
  if init == "uniform" then init = rn.initializers.random_uniform() end
  self.embeddings_initializer = get_init(init, "Embedding")
  self.embeddings_regularizer = get_reg(opts.embeddings_regularizer, "Embedding")
end
function Embedding:build(_)
  self.embeddings = self:add_weight("embeddings", { self.input_dim, self.output_dim },
    { initializer = self.embeddings_initializer, regularizer = self.embeddings_regularizer })
end
function Embedding:compute_output_shape(s)
  local o = M.shape(s)
  o[#o + 1] = self.output_dim
  return o
end
function Embedding:call(ids)
  if ids.dtype ~= "int64" and ids.dtype ~= "int32" then ids = ids:long() end
  return rn.embedding(ids, self.embeddings)
end
function Embedding:flops() return 0, 0 end

-- ---- MultiHeadAttention -----------------------------------------------------------------

local MHA = Layer:extend("MultiHeadAttention")
M.MultiHeadAttention = MHA

--- MultiHeadAttention(num_heads, key_dim, {value_dim=key_dim, use_bias=true,
--- output_shape=nil (the query's last dim), causal=false,
--- kernel_initializer="glorot_uniform", bias_initializer="zeros",
--- kernel_regularizer=, bias_regularizer=, name=}): Keras's layer on inputs
--- (N, T, D). Called as mha(x) (self-attention), mha({query, value}) or
--- mha({query, value, key}); an attention mask (N, Tq, Tk) or broadcastable,
--- nonzero = attend, may follow as a 4th entry. causal = true is Keras's
--- use_causal_mask. (Keras takes the masks as call arguments; here the
--- causal flag is the layer's and the mask an input.)
function MHA:init(num_heads, key_dim, opts)
  self.num_heads = pos_int(num_heads, "MultiHeadAttention", "num_heads (argument 1)")
  self.key_dim = pos_int(key_dim, "MultiHeadAttention", "key_dim (argument 2)")
  opts = self:_options(opts, { "value_dim", "use_bias", "output_shape", "causal", "kernel_initializer",
    "bias_initializer", "kernel_regularizer", "bias_regularizer", "dropout" })
  self.value_dim = pos_int(opts.value_dim or key_dim, "MultiHeadAttention", "value_dim")
  if opts.output_shape ~= nil then self.output_dim = pos_int(opts.output_shape, "MultiHeadAttention", "output_shape") end
  if opts.dropout ~= nil and opts.dropout ~= 0 then
    fail("MultiHeadAttention: attention dropout is not supported (got %s; valid: 0); add a Dropout layer after",
      tostring(opts.dropout))
  end
  self.use_bias = opts.use_bias ~= false
  self.causal = opts.causal == true
  self.kernel_initializer = get_init(opts.kernel_initializer or "glorot_uniform", "MultiHeadAttention")
  self.bias_initializer = get_init(opts.bias_initializer or "zeros", "MultiHeadAttention")
  self.kernel_regularizer = get_reg(opts.kernel_regularizer, "MultiHeadAttention")
  self.bias_regularizer = get_reg(opts.bias_regularizer, "MultiHeadAttention")
end

-- query, value, key, mask (or nil) from the call's input
local function split(self, inputs, shapes)
  local list = (shapes and type(inputs[1]) == "table" and not inputs.is_symbolic) or
    (not shapes and type(inputs) == "table" and not rn.is_tensor(inputs) and not inputs.is_symbolic)
  if not list then return inputs, inputs, inputs, nil end
  if #inputs < 2 or #inputs > 4 then
    fail("%s: call it on x (self-attention) or {query, value[, key[, mask]]}, got a list of %d", self:who(), #inputs)
  end
  return inputs[1], inputs[2], inputs[3] or inputs[2], inputs[4]
end

function MHA:build(s)
  local q, v, k = split(self, s, true)
  for _, t in ipairs({ q, v, k }) do
    if #t ~= 3 then fail("%s: inputs must be (batch, time, features), got %s", self:who(), M.shape_str(t)) end
  end
  local H = self.num_heads
  local function dense(name, din, a, b)
    local kern = self:add_weight(name .. "/kernel", { din, a, b },
      { initializer = self.kernel_initializer, regularizer = self.kernel_regularizer })
    local bias = self.use_bias and self:add_weight(name .. "/bias", { a, b },
      { initializer = self.bias_initializer, regularizer = self.bias_regularizer }) or nil
    return kern, bias
  end
  self.dq, self.dk, self.dv = q[3], k[3], v[3]
  self.out_dim = self.output_dim or q[3]
  self.wq, self.bq = dense("query", q[3], H, self.key_dim)
  self.wk, self.bk = dense("key", k[3], H, self.key_dim)
  self.wv, self.bv = dense("value", v[3], H, self.value_dim)
  self.wo = self:add_weight("attention_output/kernel", { H, self.value_dim, self.out_dim },
    { initializer = self.kernel_initializer, regularizer = self.kernel_regularizer })
  if self.use_bias then
    self.bo = self:add_weight("attention_output/bias", { self.out_dim },
      { initializer = self.bias_initializer, regularizer = self.bias_regularizer })
  end
end

function MHA:compute_output_shape(s)
  local q, v, k = split(self, s, true)
  if #q ~= 3 or q[3] ~= self.dq or v[3] ~= self.dv or k[3] ~= self.dk then
    fail("%s: inputs %s, %s, %s do not match the features the layer was built for (%d, %d, %d)", self:who(),
      M.shape_str(q), M.shape_str(v), M.shape_str(k), self.dq, self.dv, self.dk)
  end
  return M.shape({ q[1], q[2], self.out_dim })
end

-- x (N,T,D) through a (D, H, d) kernel and (H, d) bias -> (N, H, T, d)
local function project(x, w, b)
  local n, t = x:size(1), x:size(2)
  local d, H, e = w:size(1), w:size(2), w:size(3)
  local y = rn.matmul(x, w:reshape({ d, H * e }))
  if b then y = y + b:reshape({ H * e }) end
  return y:reshape({ n, t, H, e }):permute(1, 3, 2, 4)
end

function MHA:call(inputs)
  local q, v, k, mask = split(self, inputs)
  local sh = { q:size(), v:size(), k:size() }
  self:compute_output_shape({ sh[1], sh[2], sh[3] })
  local Q, K, V = project(q, self.wq, self.bq), project(k, self.wk, self.bk), project(v, self.wv, self.bv)
  if mask and mask:dim() == 3 then mask = mask:unsqueeze(2) end -- (N,1,Tq,Tk): every head
  local a = rn.scaled_dot_product_attention(Q, K, V, { mask = mask, causal = self.causal })
  local n, t = q:size(1), q:size(2)
  local H, e = self.num_heads, self.value_dim
  local o = a:permute(1, 3, 2, 4):reshape({ n, t, H * e })
  local y = rn.matmul(o, self.wo:reshape({ H * e, self.out_dim }))
  if self.bo then y = y + self.bo end
  return y
end

function MHA:flops(s, o)
  local q = split(self, s, true)
  local T, H = q[2], self.num_heads
  local macs = T * (self.dq + self.dk) * H * self.key_dim + T * self.dv * H * self.value_dim
    + 2 * T * T * H * self.key_dim + T * H * self.value_dim * self.out_dim
  return 2 * macs, macs
end

return M
