"""Llama for inference: fused QKV and gate/up projections, GQA, RoPE, RMSNorm, SwiGLU, dense KV cache.

One entry point, `forward(input_ids, pad_lens, cache_offset, caches)`, runs one step for a batch:
a prefill (S prompt tokens, left-padded) or a decode (S = 1). Every sequence in the batch writes
its S new keys/values at the same cache slots [cache_offset, cache_offset + S); `pad_lens[b]` slots
at the front of row b are padding and are masked out. Returns the last position's logits and the
caches (updated in place; exported, the predictor's inplace pass keeps them in place too).
"""
import math

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from paddlellm import ops
from paddlellm.models.llama.config import LlamaConfig

MASKED = -1e30


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
    """Rotary inverse frequencies (float32), with linear or Llama-3 rope_scaling applied."""
    dim = config.head_dim
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    inv_freq = (1.0 / np.power(np.float32(config.rope_theta), exponents)).astype(np.float32)
    scaling = config.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":
        inv_freq = inv_freq / np.float32(scaling["factor"])
    elif kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
        old_len = scaling.get("original_max_position_embeddings", 8192)
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        inv_freq = np.where(medium, smoothed, scaled).astype(np.float32)
    return inv_freq


def cast(x, dtype):
    """astype that adds no op when the dtype already matches (dtypes are static when exporting)."""
    return x if dtype_name(x.dtype) == dtype_name(dtype) else x.astype(dtype)


def dtype_name(dtype):
    """'float32' for paddle.float32, a pir/static dtype, or the string itself."""
    return str(dtype).split(".")[-1]


def rms_norm(x, weight, eps):
    """RMSNorm computed in float32, returned in x's dtype (as HF does)."""
    xf = cast(x, "float32")
    xf = xf * paddle.rsqrt((xf * xf).mean(axis=-1, keepdim=True) + eps)  # Paddle's CPU pow is ~60x slower
    return cast(xf, x.dtype) * cast(weight, x.dtype)


def add_rms_norm(delta, h, weight, eps, cpu_ops):
    """The residual add h + delta (delta None: nothing to add) and the RMSNorm after it: (normed, new h)."""
    if cpu_ops:
        if delta is None:
            return ops.rms_norm(h, weight, eps), h
        return ops.fused_add_rms_norm(delta, h, weight, eps)
    h = h if delta is None else h + delta
    return rms_norm(h, weight, eps), h


def linear(x, weight, out_features):
    """x @ weight. A weight stored [in, out] runs as a matmul (widened first if kept narrower); one packed by
    use_cpu_ops ([out / 32, in, 32]) runs as the CPU op paddlellm_linear."""
    if len(weight.shape) == 3:
        return ops.linear(x, weight, out_features)
    return paddle.matmul(x, cast(weight, x.dtype))


def rope(x, cos, sin_signed):
    """Rotary embedding in HF's rotate-half layout: x*cos + rotate_half(x)*sin, where rotate_half(x)
    = [-x2, x1] equals roll(x, half) * [-1.., 1..]; that sign is folded into sin_signed."""
    return x * cos + paddle.roll(x, x.shape[-1] // 2, axis=-1) * sin_signed


class LlamaLayer(nn.Layer):
    def __init__(self, config: LlamaConfig, dtype):
        super().__init__()
        c = config
        self.config = c
        zeros = nn.initializer.Constant(0.0)
        qkv_out = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim

        def param(shape):
            return self.create_parameter(shape, dtype=dtype, default_initializer=zeros)

        self.input_layernorm = param([c.hidden_size])
        self.qkv_proj = param([c.hidden_size, qkv_out])
        self.o_proj = param([c.num_attention_heads * c.head_dim, c.hidden_size])
        self.post_attention_layernorm = param([c.hidden_size])
        self.gate_up_proj = param([c.hidden_size, 2 * c.intermediate_size])
        self.down_proj = param([c.intermediate_size, c.hidden_size])
        self.cpu_ops = False  # see LlamaForCausalLM.use_cpu_ops
        self.out_features = {"qkv_proj": qkv_out, "o_proj": c.hidden_size, "gate_up_proj": 2 * c.intermediate_size,
                             "down_proj": c.hidden_size}

    def project(self, x, name):
        return linear(x, getattr(self, name), self.out_features[name])

    def add_norm(self, delta, h, weight):
        return add_rms_norm(delta, h, weight, self.config.rms_norm_eps, self.cpu_ops)

    def mlp(self, x):
        if self.cpu_ops:
            hidden = ops.linear_swiglu(x, self.gate_up_proj, self.config.intermediate_size)
        else:
            hidden = F.swiglu(self.project(x, "gate_up_proj"))
        return self.project(hidden, "down_proj")

    def forward(self, h, delta, cos, sin_signed, bias, cache_start, cache_end, cache_k, cache_v):
        """One layer of the dense step on the residual stream h + delta; returns the new (h, delta)."""
        # Reshapes use 0 (keep this dim) and -1 so that no shape arithmetic enters the exported program.
        c = self.config
        nh, nkv, hd, group = c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.kv_group_size
        x, h = self.add_norm(delta, h, self.input_layernorm)
        qkv = self.project(x, "qkv_proj").reshape([0, 0, nh + 2 * nkv, hd])
        qk, v = paddle.split(qkv, [nh + nkv, nkv], axis=2)
        q, k = paddle.split(rope(qk, cos, sin_signed), [nh, nkv], axis=2)
        cache_k[:, :, cache_start:cache_end] = k.transpose([0, 2, 1, 3])
        cache_v[:, :, cache_start:cache_end] = v.transpose([0, 2, 1, 3])
        # Query heads sharing a KV head sit next to each other: fold them into the row axis so one
        # matmul per KV head serves the whole group, without repeating the cache.
        q = q.reshape([0, 0, nkv, group, hd]).transpose([0, 2, 3, 1, 4]).reshape([0, 0, -1, hd])
        scores = cast(paddle.matmul(q, cache_k, transpose_y=True), "float32") * (1.0 / math.sqrt(hd))
        probs = cast(F.softmax(scores + bias, axis=-1), q.dtype)
        attn = paddle.matmul(probs, cache_v).reshape([0, 0, group, -1, hd])
        attn = attn.transpose([0, 3, 1, 2, 4]).reshape([0, 0, nh * hd])
        x, h = self.add_norm(self.project(attn, "o_proj"), h, self.post_attention_layernorm)
        return h, self.mlp(x)

    def forward_block(self, h, delta, rotary, key_cache, value_cache, block_tables, seq_lens_this_time,
                      seq_lens_decoder):
        """One layer over a packed batch, residual stream h + delta [tokens, hidden]; K/V go into the paged
        cache in place. `rotary`: see LlamaForCausalLM.block_rotary. Returns the new (h, delta)."""
        c = self.config
        nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        if self.cpu_ops:  # the whole layer as one op; h and delta are updated in place
            h, delta, _, _ = ops.fused_decoder_layer(
                h, paddle.zeros_like(h) if delta is None else delta, *rotary, key_cache, value_cache, block_tables,
                seq_lens_this_time, seq_lens_decoder, self.input_layernorm, self.qkv_proj, self.o_proj,
                self.post_attention_layernorm, self.gate_up_proj, self.down_proj, c.rms_norm_eps, nh,
                c.intermediate_size)
            return h, delta
        x, h = self.add_norm(delta, h, self.input_layernorm)
        qkv = self.project(x, "qkv_proj").reshape([0, nh + 2 * nkv, hd])
        qk, v = paddle.split(qkv, [nh + nkv, nkv], axis=1)
        q, k = paddle.split(rope(qk, *rotary), [nh, nkv], axis=1)
        key_cache, value_cache = ops.write_cache_kv(k, v, key_cache, value_cache, block_tables, seq_lens_this_time,
                                                    seq_lens_decoder)
        attn = ops.block_attention(q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder)
        x, h = self.add_norm(self.project(attn.reshape([0, nh * hd]), "o_proj"), h, self.post_attention_layernorm)
        return h, self.mlp(x)


class LlamaForCausalLM(nn.Layer):
    def __init__(self, config: LlamaConfig, dtype="float32", compute_dtype="float32"):
        super().__init__()
        self.config = config
        self.compute_dtype = compute_dtype
        self.cpu_ops = False  # see use_cpu_ops
        zeros = nn.initializer.Constant(0.0)
        c = config
        self.embed_tokens = self.create_parameter([c.vocab_size, c.hidden_size], dtype=dtype, default_initializer=zeros)
        self.layers = nn.LayerList([LlamaLayer(c, dtype) for _ in range(c.num_hidden_layers)])
        self.norm = self.create_parameter([c.hidden_size], dtype=dtype, default_initializer=zeros)
        # Its own [hidden, vocab] copy even when tied (a transposed matmul on the embedding is slower), except
        # with the CPU ops, where a tied model keeps only the packed lm_head (see use_cpu_ops).
        self.lm_head = self.create_parameter([c.hidden_size, c.vocab_size], dtype=dtype, default_initializer=zeros)
        self.register_buffer("inv_freq", paddle.to_tensor(rope_inv_freq(c)), persistable=True)

    def use_cpu_ops(self):
        """Run on the CPU op set (paddlellm.ops): projections and lm_head stored packed for paddlellm_linear
        (see ops.pack_linear_weight) in place of [in, out], the gate/up projection packed for
        paddlellm_linear_swiglu. The block step then runs each layer as one op (paddlellm_fused_decoder_layer),
        the dense step as ~13 ops (RMSNorm with the residual add, linear, SwiGLU). The math is the plain ops'
        math; the CPU reads the weights ~2x faster packed. A tied embedding is looked up in the packed lm_head.
        Once only."""
        if self.cpu_ops:
            return self
        self.cpu_ops = True
        for layer in self.layers:
            layer.cpu_ops = True
        for owner, name in [(layer, n) for layer in self.layers for n in layer.out_features] + [(self, "lm_head")]:
            plain = getattr(owner, name)
            packed = ops.pack_swiglu_weight(plain) if name == "gate_up_proj" else ops.pack_linear_weight(plain)
            param = owner.create_parameter(packed.shape, dtype=packed.dtype)
            param.set_value(packed)
            setattr(owner, name, param)
        if self.config.tie_word_embeddings and self.embed_tokens is not None:
            self.embed_tokens = None  # looked up in the packed lm_head (ops.packed_embedding): one copy, not two
        return self

    def embed(self, input_ids):
        if self.embed_tokens is None:
            return ops.packed_embedding(input_ids, self.lm_head, self.config.vocab_size)
        return cast(F.embedding(input_ids, self.embed_tokens), self.compute_dtype)

    def cache_shape(self, batch, length):
        """Shape of each of the 2 * num_layers cache tensors (k0, v0, k1, v1, ...)."""
        return [batch, self.config.num_key_value_heads, length, self.config.head_dim]

    def block_cache_shape(self, num_blocks, block_size):
        """Shape of each of the 2 * num_layers paged cache tensors (k0, v0, k1, v1, ...)."""
        return [num_blocks, self.config.num_key_value_heads, block_size, self.config.head_dim]

    def forward_block(self, input_ids, seq_lens_this_time, seq_lens_decoder, block_tables, caches):
        """One step over a packed batch without padding: sequence s brings seq_lens_this_time[s] tokens
        (a prompt chunk or one decode token; rows in sequence order in input_ids [tokens]) at positions
        seq_lens_decoder[s] onwards, its K/V blocks listed in block_tables[s]. Writes the new K/V into the
        paged caches in place and returns the logits of each sequence's last token [sequences, vocab]."""
        ends = paddle.cumsum(seq_lens_this_time, dtype="int32")
        first_position = seq_lens_decoder - (ends - seq_lens_this_time)  # a sequence's position minus its row
        rows = paddle.arange(paddle.shape(input_ids)[0], dtype="int32")
        positions = rows + paddle.repeat_interleave(first_position, seq_lens_this_time)
        rotary = (positions, self.inv_freq) if self.cpu_ops else self.rotary(positions.astype("float32"))
        h, delta = self.embed(input_ids), None
        for i, layer in enumerate(self.layers):
            h, delta = layer.forward_block(h, delta, rotary, caches[2 * i], caches[2 * i + 1], block_tables,
                                           seq_lens_this_time, seq_lens_decoder)
        last_rows = ends - 1
        last, _ = add_rms_norm(paddle.gather(delta, last_rows), paddle.gather(h, last_rows), self.norm,
                               self.config.rms_norm_eps, self.cpu_ops)
        return cast(linear(last, self.lm_head, self.config.vocab_size), "float32")

    def rotary(self, positions):
        """cos and sign-folded sin (see rope) for float32 positions of any shape; a head axis is added."""
        freqs = positions.unsqueeze(-1) * self.inv_freq
        cos = cast(paddle.cos(paddle.concat([freqs, freqs], axis=-1)).unsqueeze(-2), self.compute_dtype)
        sin = paddle.sin(freqs)
        return cos, cast(paddle.concat([-sin, sin], axis=-1).unsqueeze(-2), self.compute_dtype)

    def forward(self, input_ids, pad_lens, cache_offset, caches):
        c = self.config
        cache_end = cache_offset + paddle.shape(input_ids)[1]
        query_slots = paddle.arange(cache_offset, cache_end, dtype="int64")
        key_slots = paddle.arange(paddle.shape(caches[0])[2], dtype="int64")
        allowed = (key_slots.unsqueeze(0) <= query_slots.unsqueeze(1)).unsqueeze(0)
        allowed = paddle.logical_and(allowed, (key_slots.unsqueeze(0) >= pad_lens.unsqueeze(1)).unsqueeze(1))
        bias = (allowed.astype("float32") - 1.0) * -MASKED  # 0 where allowed, MASKED elsewhere
        # [batch, 1, group * seq, cache_len]: the rows of every query head of a KV group (see LlamaLayer)
        bias = paddle.tile(bias.unsqueeze(1), [1, 1, c.kv_group_size, 1])

        positions = paddle.clip(query_slots.unsqueeze(0) - pad_lens.unsqueeze(1), min=0).astype("float32")
        cos, sin_signed = self.rotary(positions)

        h, delta = self.embed(input_ids), None
        for i, layer in enumerate(self.layers):
            h, delta = layer(h, delta, cos, sin_signed, bias, cache_offset, cache_end, caches[2 * i], caches[2 * i + 1])
        last, _ = add_rms_norm(delta[:, -1, :], h[:, -1, :], self.norm, c.rms_norm_eps, self.cpu_ops)
        logits = cast(linear(last, self.lm_head, self.config.vocab_size), "float32")
        return logits, caches
