"""Llama for inference: fused QKV and gate/up projections, GQA, RoPE, RMSNorm, SwiGLU, a paged KV cache.

One entry point, `forward(input_ids, seq_lens_this_time, seq_lens_decoder, block_tables, caches)`, runs one
step over a packed batch (PaddleNLP's block-attention inputs): prompt chunks and decode tokens together,
K/V written into the paged caches in place. What export traces is the portable program: plain Paddle ops (matmuls,
RMSNorm, the residual adds, RoPE, Paddle's swiglu) around the op set's paged-cache ops, which every device's op
library has; the device's IR passes (paddlellm.ops.passes) put the op set's fused ops in place of the plain
subgraphs when the predictor starts (on the CPU: one fused op per layer over packed weights). In dynamic mode on
the CPU with float32 or bfloat16 weights the model runs on those CPU ops directly (use_cpu_ops). Activations
between ops are float32; the matmuls run in compute_dtype, the cache in device.kv_cache_dtype.
"""
import math

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from paddlellm import ops
from paddlellm.device import kv_cache_dtype
from paddlellm.models.llama.config import LlamaConfig

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
    """RMSNorm of float32 x in plain Paddle ops, as the portable program holds it (the passes put the op set's
    RMSNorm in its place, see paddlellm.ops.passes): x * rsqrt(mean(x * x) + eps) * weight."""
    return x * paddle.rsqrt((x * x).mean(axis=-1, keepdim=True) + eps) * cast(weight, "float32")


def add_rms_norm(delta, h, weight, eps, cpu_ops=False):
    """The residual add h + delta (delta None: nothing to add) and the RMSNorm after it: (normed, new h). With
    the CPU's own ops as ops (float32 or bfloat16 weights), else in plain Paddle ops."""
    if cpu_ops:
        if delta is None:
            return ops.rms_norm(h, weight, eps), h
        return ops.fused_add_rms_norm(delta, h, weight, eps)
    h = h if delta is None else h + delta
    return rms_norm(h, weight, eps), h


def packed_positions(input_ids, seq_lens_this_time, seq_lens_decoder):
    """(positions [T], last_rows [S]) of a packed batch in plain Paddle ops, as the portable program holds them
    (llama_fuse_get_padding_offset puts paddlellm_packed_positions in their place): row r of sequence s is at
    position seq_lens_decoder[s] + (r - the sequence's first row); s's last row is the prefix sum of the
    lengths minus 1."""
    ends = paddle.cumsum(seq_lens_this_time, dtype="int32")
    first_position = seq_lens_decoder - (ends - seq_lens_this_time)  # a sequence's position minus its row
    rows = paddle.arange(paddle.shape(input_ids)[0], dtype="int32")
    return rows + paddle.repeat_interleave(first_position, seq_lens_this_time), ends - 1


def rope(q, k, positions, inv_freq):
    """Rotate-half RoPE of q [T, Hq, D] and k [T, Hk, D] float32 in plain Paddle ops, as the portable program holds
    it (the rotary pass puts paddlellm_rotary_embedding in its place): token t's angles positions[t] * inv_freq
    in float32, x * cos + rotate_half(x) * sin with rotate_half(x) = [-x2, x1]."""
    freqs = positions.astype("float32").unsqueeze(-1) * inv_freq
    angles = paddle.tile(freqs, [1, 2]).unsqueeze(1)  # [freqs, freqs]
    cos, sin = paddle.cos(angles), paddle.sin(angles)

    def rotate(x):
        x1, x2 = paddle.split(x, 2, axis=-1)
        return x * cos + paddle.concat([-x2, x1], axis=-1) * sin

    return rotate(q), rotate(k)


def quantize_per_token(x):
    """x [tokens, K] float32 as int8 activations (--quant_type a8w8), per token and block of 32 values, in plain
    Paddle ops: xs = max |x| / 127 over the block (at least 1e-30 / 127, so that zeros stay zero), round(x / xs) *
    xs. The CPU's linear passes take this form in front of an int8 weight for an a8w8 projection, whose kernel
    quantizes x itself (as llama.cpp's Q8_0 products do; one scale for the whole token measured +4.1% perplexity
    on SmolLM2, outside the 2% it is allowed)."""
    blocks = x.reshape([0, x.shape[-1] // 32, 32])
    xs = paddle.clip(paddle.max(paddle.abs(blocks), axis=-1, keepdim=True), min=1e-30) / 127.0
    return (paddle.round(blocks / xs) * xs).reshape([0, x.shape[-1]])


def linear(x, weight, out_features, compute_dtype, scale=None, offset=None, per_token=False):
    """x @ weight -> float32. A weight packed by use_cpu_ops ([out / 32, in, 32]) runs as the CPU op
    paddlellm_linear; one stored [in, out] as a matmul in compute_dtype, a quantized one (int8 values, see
    paddlellm.quantization) dequantized first: cast(weight) * scale with its column scales [out]
    (weight_only_int8; a8w8 with `per_token`: x quantized by quantize_per_token), cast(weight) * scale with its
    group scales [in / group, out] each repeated group times along in (grouped weight_only_int8), and + offset, its
    group offsets so repeated (weight_only_int4): the forms the CPU's linear passes pack as int8, a8w8 and int4
    weights."""
    if len(weight.shape) == 3:
        return ops.linear(x, weight, out_features)
    if per_token:
        x = quantize_per_token(x)
    if scale is not None and len(scale.shape) == 2:
        group = weight.shape[0] // scale.shape[0]
        weight = cast(weight, "float32") * paddle.repeat_interleave(scale, group, axis=0)
        if offset is not None:
            weight = weight + paddle.repeat_interleave(offset, group, axis=0)
    elif scale is not None:
        weight = cast(weight, "float32") * scale
    return cast(paddle.matmul(cast(x, compute_dtype), cast(weight, compute_dtype)), "float32")


def add_projection(layer, name, shape, dtype, quant_type=None, group_size=None):
    """Parameter `name` [in, out] of `layer`: in `dtype`, or quantized (int8 values) with float32 `name`_scale
    [out] (weight_only_int8, a8w8) or [in / group_size, out] (grouped weight_only_int8), or `name`_scale and
    `name`_offset [in / group_size, out] (weight_only_int4)."""
    zeros = nn.initializer.Constant(0.0)

    def param(param_shape, param_dtype):
        return layer.create_parameter(param_shape, dtype=param_dtype, default_initializer=zeros)
    int4 = quant_type == "weight_only_int4"
    setattr(layer, name, param(shape, "int8" if quant_type else dtype))
    setattr(layer, name + "_scale", param([shape[0] // group_size, shape[1]] if group_size else [shape[1]], "float32")
            if quant_type else None)
    setattr(layer, name + "_offset", param([shape[0] // group_size, shape[1]], "float32") if int4 else None)


class LlamaLayer(nn.Layer):
    def __init__(self, config: LlamaConfig, dtype, compute_dtype, quant_type=None, group_size=None):
        super().__init__()
        c = config
        self.config, self.compute_dtype = c, compute_dtype
        self.per_token = quant_type == "a8w8"
        zeros = nn.initializer.Constant(0.0)
        qkv_out = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim
        self.out_features = {"qkv_proj": qkv_out, "o_proj": c.hidden_size, "gate_up_proj": 2 * c.intermediate_size,
                             "down_proj": c.hidden_size}
        in_features = {"qkv_proj": c.hidden_size, "o_proj": c.num_attention_heads * c.head_dim,
                       "gate_up_proj": c.hidden_size, "down_proj": c.intermediate_size}
        self.input_layernorm = self.create_parameter([c.hidden_size], dtype=dtype, default_initializer=zeros)
        self.post_attention_layernorm = self.create_parameter([c.hidden_size], dtype=dtype, default_initializer=zeros)
        for name, out in self.out_features.items():
            add_projection(self, name, [in_features[name], out], dtype, quant_type, group_size)
        self.cpu_ops = False  # see LlamaForCausalLM.use_cpu_ops
        self.cache_k_scale = self.cache_v_scale = None  # see set_cache_scales

    def set_cache_scales(self, key_scale, value_scale):
        """A static int8 KV cache (--cachekv_int8_type static): this layer's K and V rows of head h are stored as
        round(x / scale[h]) (clipped to +-127), scales float32 [num_kv_heads] from calibration
        (paddlellm.export.calibration); parameters, so the exported program holds them."""
        for name, value in (("cache_k_scale", key_scale), ("cache_v_scale", value_scale)):
            param = self.create_parameter([len(value)], dtype="float32")
            param.set_value(paddle.to_tensor(np.asarray(value, np.float32)))
            param.stop_gradient = True
            setattr(self, name, param)

    def project(self, x, name):
        return linear(x, getattr(self, name), self.out_features[name], self.compute_dtype,
                      getattr(self, name + "_scale"), getattr(self, name + "_offset"), self.per_token)

    def forward(self, h, delta, positions, inv_freq, key_cache, value_cache, block_tables, seq_lens_this_time,
                seq_lens_decoder):
        """One layer over a packed batch, residual stream h + delta [tokens, hidden] (delta None before the
        first layer); K/V go into the paged cache in place. Returns the new (h, delta)."""
        c = self.config
        nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        if self.cpu_ops:  # the whole layer as one op; h and delta are updated in place
            h, delta, _, _ = ops.fused_decoder_layer(
                h, paddle.zeros_like(h) if delta is None else delta, positions, inv_freq, key_cache, value_cache,
                block_tables, seq_lens_this_time, seq_lens_decoder, self.input_layernorm, self.qkv_proj, self.o_proj,
                self.post_attention_layernorm, self.gate_up_proj, self.down_proj, self.cache_k_scale,
                self.cache_v_scale, c.rms_norm_eps, nh,
                c.intermediate_size)
            return h, delta
        x, h = add_rms_norm(delta, h, self.input_layernorm, c.rms_norm_eps)
        qkv = self.project(x, "qkv_proj").reshape([0, nh + 2 * nkv, hd])
        q, k, v = paddle.split(qkv, [nh, nkv, nkv], axis=1)
        q, k = rope(q, k, positions, inv_freq)
        key_cache, value_cache = ops.write_cache_kv(k, v, key_cache, value_cache, block_tables, seq_lens_this_time,
                                                    seq_lens_decoder, self.cache_k_scale, self.cache_v_scale)
        attn = ops.block_attention(q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder)
        x, h = add_rms_norm(self.project(attn.reshape([0, nh * hd]), "o_proj"), h, self.post_attention_layernorm,
                            c.rms_norm_eps)
        return h, self.project(F.swiglu(self.project(x, "gate_up_proj")), "down_proj")


class LlamaForCausalLM(nn.Layer):
    def __init__(self, config: LlamaConfig, dtype="float32", compute_dtype="float32", quant_type=None,
                 quant_lm_head=False, group_size=None):
        """`quant_type` (paddlellm.quantization; int4 and grouped int8 in groups of `group_size` rows): the layers' projections
        quantized; with `quant_lm_head` the lm_head too (the embedding stays in `dtype`)."""
        super().__init__()
        self.config = config
        self.compute_dtype = compute_dtype
        self.kv_cache_dtype = kv_cache_dtype(dtype, compute_dtype)  # what the dynamic runner's caches hold
        self.quant_type = quant_type
        self.cpu_ops = False  # see use_cpu_ops
        zeros = nn.initializer.Constant(0.0)
        c = config
        self.embed_tokens = self.create_parameter([c.vocab_size, c.hidden_size], dtype=dtype, default_initializer=zeros)
        self.layers = nn.LayerList([LlamaLayer(c, dtype, compute_dtype, quant_type, group_size)
                                    for _ in range(c.num_hidden_layers)])
        self.norm = self.create_parameter([c.hidden_size], dtype=dtype, default_initializer=zeros)
        # Its own [hidden, vocab] copy even when tied (a transposed matmul on the embedding is slower), except
        # with the CPU ops, where a tied model keeps only the packed lm_head (see use_cpu_ops).
        add_projection(self, "lm_head", [c.hidden_size, c.vocab_size], dtype, quant_type if quant_lm_head else None,
                       group_size)
        self.register_buffer("inv_freq", paddle.to_tensor(rope_inv_freq(c)), persistable=True)

    def use_cpu_ops(self):
        """Run on the CPU's own ops: projections and lm_head stored packed for paddlellm_linear (see
        ops.pack_linear_weight) in place of [in, out], the gate/up projection packed for
        paddlellm_linear_swiglu, each layer one paddlellm_fused_decoder_layer. The math is the portable
        path's; the CPU reads the weights ~2x faster packed. A tied embedding is looked up in the packed
        lm_head. Once only."""
        if self.cpu_ops:
            return self
        if self.quant_type is not None:
            raise ValueError("use_cpu_ops: a quantized model runs as an exported program (the CPU passes pack it)")
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
        return cast(F.embedding(input_ids, self.embed_tokens), "float32")

    def forward(self, input_ids, seq_lens_this_time, seq_lens_decoder, block_tables, caches):
        """One step over a packed batch without padding: sequence s brings seq_lens_this_time[s] tokens
        (a prompt chunk or one decode token; rows in sequence order in input_ids [tokens]) at positions
        seq_lens_decoder[s] onwards, its K/V blocks listed in block_tables[s]. Writes the new K/V into the
        paged caches in place and returns the logits of each sequence's last token [sequences, vocab]."""
        positions, last_rows = packed_positions(input_ids, seq_lens_this_time, seq_lens_decoder)
        h, delta = self.embed(input_ids), None
        for i, layer in enumerate(self.layers):
            h, delta = layer(h, delta, positions, self.inv_freq, caches[2 * i], caches[2 * i + 1], block_tables,
                             seq_lens_this_time, seq_lens_decoder)
        last, _ = add_rms_norm(paddle.gather(delta, last_rows), paddle.gather(h, last_rows), self.norm,
                               self.config.rms_norm_eps, self.cpu_ops)
        return linear(last, self.lm_head, self.config.vocab_size, self.compute_dtype, self.lm_head_scale,
                      self.lm_head_offset, self.quant_type == "a8w8" and self.lm_head_scale is not None)
