"""Custom ops: the Python API over one op set with kernels per device (csrc/cpu, csrc/hip, csrc/npu).

Each op's contract is in SPEC.md and its pure-Paddle reference in reference.py. A process uses one device's
library (use_device; the CPU's by default, built on first use, see build.py), registered by the first call
here. A process that only runs an exported program holding these ops needs `load_library()` before
`paddle.inference.create_predictor`.

    key_cache, value_cache = write_cache_kv(key, value, key_cache, value_cache,
                                            block_tables, seq_lens_this_time, seq_lens_decoder)
    out = block_attention(q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder)
    y = linear(x, pack_linear_weight(w), n=w.shape[1])   # x @ w
"""
import numpy as np
import paddle
from paddle import _C_ops, in_dynamic_mode
from paddle.jit.marker import unified

from paddlellm.ops.build import (cpu_isa, forget_pass_matches, has_avx_vnni, library_device, library_id, load_library,
                                 num_threads, pass_matches, register_ops, supported_isas, use_device)

__all__ = ["write_cache_kv", "block_attention", "linear", "pack_linear_weight", "linear_swiglu", "pack_swiglu_weight",
           "unpack_linear_weight", "weight_only_linear", "SCALE_ROWS", "is_a8w8", "cache_row", "quantize_cache_rows",
           "dequantize_cache_rows", "CACHE_SCALE_BYTES",
           "packed_embedding", "LINEAR_BLOCK", "rms_norm", "fused_add_rms_norm", "rotary_embedding", "swiglu",
           "packed_positions", "final_logits",
           "load_library", "register_ops", "use_device", "library_device", "library_id", "cpu_isa", "supported_isas",
           "has_avx_vnni", "num_threads", "ops_in_program", "describe_ops", "fused_decoder_layer", "forget_pass_matches", "pass_matches"]


@unified
def write_cache_kv(key, value, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder,
                   key_scale=None, value_scale=None):
    """Writes this step's K/V rows into their cache blocks, in place (op paddlellm_write_cache_kv); an int8 cache
    with `key_scale` and `value_scale` (float32 [num_kv_heads], --cachekv_int8_type static) quantizes each head's
    rows with its fixed scale (see quantize_cache_rows). Returns (key_cache_out, value_cache_out), which alias
    key_cache and value_cache."""
    register_ops()
    outs = _C_ops._run_custom_op("paddlellm_write_cache_kv", key, value, key_cache, value_cache,
                                 block_tables, seq_lens_this_time, seq_lens_decoder, key_scale, value_scale)
    return outs[0], outs[1]


@unified
def block_attention(q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder):
    """Causal GQA attention of a packed batch over the paged cache (op paddlellm_block_attention):
    q [T, num_heads, head_dim] float32 -> out [T, num_heads, head_dim] float32."""
    register_ops()
    outs = _C_ops._run_custom_op("paddlellm_block_attention", q, key_cache, value_cache, block_tables,
                                 seq_lens_this_time, seq_lens_decoder)
    return outs[0]


@unified
def fused_decoder_layer(h, delta, positions, inv_freq, key_cache, value_cache, block_tables, seq_lens_this_time,
                        seq_lens_decoder, input_norm, qkv_proj, o_proj, post_attention_norm, gate_up_proj, down_proj,
                        key_scale, value_scale, epsilon, num_heads, intermediate_size):
    """One Llama decoder layer over a packed batch (op paddlellm_fused_decoder_layer, CPU): the residual stream
    h + delta [tokens, hidden] float32 goes through the attention block and the MLP; in place, h becomes
    h + delta + attention output, delta the MLP output, and this step's K/V are written into the caches.
    Weights as the model stores them on the CPU (packed; gate/up by pack_swiglu_weight); key_scale and value_scale
    as write_cache_kv takes them (None: none). Returns (h, delta, key_cache, value_cache), aliasing the inputs."""
    register_ops()
    outs = _C_ops._run_custom_op("paddlellm_fused_decoder_layer", h, delta, positions, inv_freq, key_cache,
                                 value_cache, block_tables, seq_lens_this_time, seq_lens_decoder, input_norm, qkv_proj,
                                 o_proj, post_attention_norm, gate_up_proj, down_proj, key_scale, value_scale,
                                 float(epsilon), int(num_heads),
                                 int(intermediate_size))
    return outs[0], outs[1], outs[2], outs[3]


def ops_in_program(program_path):
    """{op name: count} of the paddlellm ops an exported program (model.json) holds."""
    import re
    from collections import Counter

    text = open(program_path, encoding="utf-8", errors="replace").read()  # PIR JSON: ops as {"#": "3.paddlellm_..."}
    return dict(sorted(Counter(m.rstrip("_") for m in re.findall(r'"#":"\d+\.paddlellm_(\w+)"', text)).items()))


def describe_ops(counts):
    """One line saying which ops a model runs on and which kernels: 'linear x91, ... (CPU kernels, avx512)', or
    '... (npu kernels)' in a process that runs the npu's library."""
    if not counts:
        return "no paddlellm ops (plain Paddle ops only)"
    kernels = f"CPU kernels, {cpu_isa()}" if library_device() == "cpu" else f"{library_device()} kernels"
    return ", ".join(f"{name} x{n}" for name, n in counts.items()) + f" ({kernels})"


CACHE_SCALE_BYTES = 4  # an int8 cache row's float32 scale, after its head_dim values (csrc/cpu/attention_kernel.h)


def cache_row(head_dim, dtype):
    """Elements of one token's row of one head in a KV cache of `dtype`: head_dim, and for int8 its scale's 4
    bytes too (--cachekv_int8_type: x ~ q * scale per row)."""
    return head_dim + CACHE_SCALE_BYTES if str(dtype).split(".")[-1] == "int8" else head_dim


def quantize_cache_rows(x, scale=None):
    """x [..., head_dim] float32 -> [..., head_dim + 4] int8 rows as the CPU's write_cache_kv stores them: q =
    round(x / scale) (x * (1 / scale) in float32, to nearest even), the scale's bytes last. Dynamic (`scale`
    None): scale = max |x| / 127 per row. Static: `scale` (broadcast to x[..., :1], e.g. [heads, 1] for x [heads,
    head_dim]: --cachekv_int8_type static's per-head scales), q clipped to [-127, 127]."""
    x = np.asarray(x, np.float32)
    if scale is None:
        scale = np.abs(x).max(axis=-1, keepdims=True) / np.float32(127)
    else:
        scale = np.broadcast_to(np.asarray(scale, np.float32), x[..., :1].shape)
    inverse = np.divide(np.float32(1), scale, out=np.zeros_like(scale), where=scale > 0)
    q = np.clip(np.rint(x * inverse), -127, 127).astype(np.int8)
    return np.concatenate([q, np.ascontiguousarray(scale).view(np.int8)], axis=-1)


def dequantize_cache_rows(rows):
    """[..., head_dim + 4] int8 cache rows -> [..., head_dim] float32 values q * scale."""
    rows = np.ascontiguousarray(rows, np.int8)
    scale = np.ascontiguousarray(rows[..., -CACHE_SCALE_BYTES:]).view(np.float32)
    return rows[..., :-CACHE_SCALE_BYTES].astype(np.float32) * scale


LINEAR_BLOCK = 32  # output columns per packed weight block (kLinearBlock in csrc/cpu/linear_kernel.h)
SCALE_ROWS = 4  # an int8 block's 32 float32 column scales, as 4 rows of 32 bytes before its K rows (kScaleRows)


def is_a8w8(packed, k):
    """Whether a packed uint8 weight of input size k is an a8w8 one (4 + k rows) rather than int4 (fewer)."""
    return packed.dtype == paddle.uint8 and packed.shape[1] == SCALE_ROWS + k


def pack_linear_weight(weight, scale=None, offset=None, a8w8=False):
    """[K, N] -> [ceil(N / 32), K, 32], the layout `linear` reads: block b holds columns 32b..32b+31 row after
    row, zero-padded past N. Plain Paddle ops (pad, reshape, transpose), same dtype. Quantized weights (int8
    values q), as csrc/cpu/linear_kernel.h lays them out:
    - int8, `scale` [N] or [K / group, N] float32 (W = q * scale per column, or per column and group of rows;
      groups multiples of 32): each block is its groups in order, each its 32 scales (their float32 bytes as 4 rows
      of 32 int8) then its rows, [ceil(N / 32), 4 * K / group + K, 32] int8;
    - int4, `scale` and `offset` [K / group, N] (W = q * scale + offset, q in [0, 15], per column and group of
      rows; K and group multiples of 32; float16 values, stored as such): each block is its groups in order, each
      its 32 scales and 32 offsets then its group / 8 octets of rows: column c's 4 bytes, byte j holding rows
      8o + j and 8o + 4 + j in its low and high 4 bits, [ceil(N / 32), 4 * K / group + K / 2, 32] uint8;
    - a8w8 (`a8w8`, `scale` [N]: W = q * scale, met by int8 activations; K a multiple of 32): each block starts
      with its 32 columns' scales, then its K / 4 quads of rows: column c's 4 bytes its rows 4o .. 4o + 3, each
      q + 128, [ceil(N / 32), 4 + K, 32] uint8."""
    k, n = weight.shape
    padded = -(-n // LINEAR_BLOCK) * LINEAR_BLOCK
    if scale is None:
        if padded != n:
            weight = paddle.concat([weight, paddle.zeros([k, padded - n], dtype=weight.dtype)], axis=1)
        return weight.reshape([k, padded // LINEAR_BLOCK, LINEAR_BLOCK]).transpose([1, 0, 2]).contiguous()
    blocks = padded // LINEAR_BLOCK

    def by_block(rows, dtype=np.float32):  # [R, N] -> their bytes in dtype, [blocks, R * 32 * itemsize / 32, 32]
        full = np.zeros((len(rows), padded), dtype)
        full[:, :n] = rows
        as_bytes = full.reshape(len(rows), blocks, LINEAR_BLOCK).transpose(1, 0, 2).copy().view(np.uint8)
        return as_bytes.reshape(blocks, -1, LINEAR_BLOCK)

    q = np.zeros((k, padded), np.int8)
    q[:, :n] = weight.numpy() if isinstance(weight, paddle.Tensor) else weight
    values = q.reshape(k, blocks, LINEAR_BLOCK).transpose(1, 0, 2)  # [blocks, K, 32]
    if a8w8:
        header = by_block(np.asarray(scale, np.float32).reshape(1, n))
        biased = (values.astype(np.int16) + 128).astype(np.uint8)
        quads = biased.reshape(blocks, k // 4, 4, LINEAR_BLOCK).transpose(0, 1, 3, 2)  # [b, o, c, j]
        return paddle.to_tensor(np.concatenate([header, quads.reshape(blocks, k, LINEAR_BLOCK)], axis=1))
    def grouped(header, rows):  # [blocks, 4 G, 32] and [blocks, G * R, 32] -> each group's header, then its rows
        g = header.shape[1] // SCALE_ROWS
        return np.concatenate([header.reshape(blocks, g, SCALE_ROWS, LINEAR_BLOCK),
                               rows.reshape(blocks, g, -1, LINEAR_BLOCK)], axis=2).reshape(blocks, -1, LINEAR_BLOCK)

    if offset is None:
        header = by_block(np.asarray(scale, np.float32).reshape(-1, n))
        return paddle.to_tensor(grouped(header.view(np.int8), values))
    scale, offset = np.asarray(scale, np.float32), np.asarray(offset, np.float32)
    groups = np.stack([scale, offset], axis=1).reshape(2 * len(scale), n)  # per group: scales, offsets
    header = by_block(groups, np.float16)
    octets = values.astype(np.uint8).reshape(blocks, k // 8, 2, 4, LINEAR_BLOCK)  # [b, o, low/high, j, c]
    lanes = (octets[:, :, 0] | (octets[:, :, 1] << 4)).transpose(0, 1, 3, 2)  # [b, o, c, j]
    return paddle.to_tensor(grouped(header, lanes.reshape(blocks, k // 2, LINEAR_BLOCK)))


def quantize_activations(x):
    """x [..., K] float32 as the int4 and a8w8 kernels see it (csrc/cpu/linear_kernel.h): per row and block of 32
    values, xs = max |x| / 127 and xq = round(x / xs) in float32 arithmetic, as the kernel rounds: the float32
    values xq * xs, float64 [..., K]. For references and tests."""
    x = np.asarray(x, np.float32)
    blocks = x.reshape(*x.shape[:-1], x.shape[-1] // 32, 32)
    scale = np.abs(blocks).max(axis=-1, keepdims=True) / np.float32(127)
    inverse = np.divide(np.float32(1), scale, out=np.zeros_like(scale), where=scale > 0)
    return (np.rint(blocks * inverse).astype(np.float64) * scale.astype(np.float64)).reshape(x.shape)


def _unpack_groups(raw, int8, k, offsets):
    """A grouped int8 / int4 packed weight's [blocks, K, 32] float32 values from its groups (header, then rows)."""
    groups = 1 if k is None else (raw.shape[1] - (k if int8 else k // 2)) // SCALE_ROWS
    segments = raw.reshape(raw.shape[0], groups, -1, LINEAR_BLOCK)
    header = np.ascontiguousarray(segments[:, :, :SCALE_ROWS]).view(np.float32 if int8 else np.float16)
    header = header.astype(np.float32).reshape(raw.shape[0], groups, -1, LINEAR_BLOCK)  # int4: scales, offsets
    rows = segments[:, :, SCALE_ROWS:].reshape(raw.shape[0], -1, LINEAR_BLOCK)
    if int8:
        return rows.astype(np.float32) * np.repeat(header[:, :, 0], rows.shape[1] // groups, axis=1)
    lanes = rows.reshape(raw.shape[0], k // 8, LINEAR_BLOCK, 4)  # [b, o, c, j]
    q = np.stack([lanes & 15, lanes >> 4], axis=2).transpose(0, 1, 2, 4, 3)  # [b, o, low/high, j, c]
    values = q.reshape(raw.shape[0], k, LINEAR_BLOCK).astype(np.float32) * np.repeat(header[:, :, 0], k // groups,
                                                                                       axis=1)
    return values + np.repeat(header[:, :, 1], k // groups, axis=1) if offsets else values


def unpack_linear_weight(packed, n, k=None, offsets=True):
    """The [K, n] float32 numpy matrix a packed weight holds (quantized ones' scales applied; an int4, a8w8 or
    grouped int8 one needs its K, and with offsets=False an int4 one leaves its offsets out): for references and
    tests. With n = None, the [blocks, K, 32] blocks instead."""
    raw = packed.numpy()
    if k is not None and is_a8w8(packed, k):
        scales = np.ascontiguousarray(raw[:, :SCALE_ROWS]).view(np.float32).reshape(raw.shape[0], 1, LINEAR_BLOCK)
        quads = raw[:, SCALE_ROWS:].reshape(raw.shape[0], k // 4, LINEAR_BLOCK, 4).transpose(0, 1, 3, 2)
        values = (quads.reshape(raw.shape[0], k, LINEAR_BLOCK).astype(np.float32) - 128) * scales
    elif packed.dtype in (paddle.int8, paddle.uint8):
        values = _unpack_groups(raw, packed.dtype == paddle.int8, k, offsets)
    else:
        values = packed.astype("float32").numpy()
    if n is None:
        return values
    blocks, rows, width = values.shape
    return np.ascontiguousarray(values.transpose(1, 0, 2).reshape(rows, blocks * width)[:, :n])


@unified
def linear(x, weight, n):
    """x [..., K] float32 @ W [K, n], W given packed by pack_linear_weight (float32, bfloat16, or int8 / int4 with
    its scales; op paddlellm_linear, float32 accumulation) -> [..., n] float32."""
    register_ops()
    return _C_ops._run_custom_op("paddlellm_linear", x, weight, int(n))[0]


def weight_only_linear(x, weight, scale, offset=None):
    """x [..., K] float32 @ W [K, N] for a weight as the portable program stores it: int8 values [K, N], W = weight
    * scale (+ offset), scale and offset float32 [N] or [G, N] (each row for K / G weight rows) -> [..., N] float32
    (op paddlellm_weight_only_linear: what the device passes put in place of the dequantize-then-matmul form)."""
    register_ops()
    return _C_ops._run_custom_op("paddlellm_weight_only_linear", x, weight, scale, offset)[0]


def pack_swiglu_weight(weight, scale=None, offset=None, a8w8=False):
    """[K, 2F] (gate columns, then up columns) -> [2 * ceil(F / 32), K, 32], the layout `linear_swiglu` reads:
    the packed gate and up blocks interleaved, gate block j then up block j (quantized, with `scale` [2F], or
    `scale` and `offset` [K / group, 2F]: each half as pack_linear_weight packs it)."""
    f = weight.shape[1] // 2

    def half(a, i):
        return None if a is None else np.asarray(a)[..., i * f:(i + 1) * f]
    halves = [pack_linear_weight(weight[:, i * f:(i + 1) * f], half(scale, i), half(offset, i), a8w8) for i in (0, 1)]
    return paddle.stack(halves, axis=1).reshape([-1, halves[0].shape[1], LINEAR_BLOCK])


@unified
def linear_swiglu(x, weight, n):
    """silu(x @ W_gate) * (x @ W_up) -> [..., n] float32 for x [..., K] float32, the [K, n] gate and up weights
    packed together by pack_swiglu_weight (op paddlellm_linear_swiglu): swiglu(x @ [W_gate, W_up]) in one op."""
    register_ops()
    return _C_ops._run_custom_op("paddlellm_linear_swiglu", x, weight, int(n))[0]


@unified
def packed_embedding(ids, weight, n):
    """Rows of W^T [n, K] for the ids (int64, any shape) -> [..., K] float32, W [K, n] given packed as `linear`
    reads it (op paddlellm_packed_embedding): a tied embedding looked up in the packed lm_head."""
    register_ops()
    return _C_ops._run_custom_op("paddlellm_packed_embedding", ids, weight, int(n))[0]


@unified
def rms_norm(x, weight, epsilon):
    """RMSNorm of x [..., H] float32 over its last axis, times weight [H] (float32 or bfloat16), in float32
    (op paddlellm_rms_norm): x * rsqrt(mean(x * x, -1) + epsilon) * weight."""
    register_ops()
    outs = _C_ops._run_custom_op("paddlellm_rms_norm", x, weight, float(epsilon))
    return outs[0]


@unified
def fused_add_rms_norm(x, residual, weight, epsilon):
    """The residual add and the RMSNorm after it (op paddlellm_fused_add_rms_norm): residual_out = x + residual,
    out = rms_norm(residual_out, weight, epsilon). Returns (out, residual_out), both new tensors."""
    register_ops()
    outs = _C_ops._run_custom_op("paddlellm_fused_add_rms_norm", x, residual, weight, float(epsilon))
    return outs[0], outs[1]


@unified
def rotary_embedding(q, k, positions, inv_freq, interleaved=False):
    """Rotary position embedding of q [T, Hq, D] and k [T, Hk, D] float32, in place (op
    paddlellm_rotary_embedding): token t's angles are positions[t] (int32) * inv_freq [D/2] (scaling
    already folded in). Rotate-half pairs (i, i + D/2), or GPT-J pairs (2i, 2i + 1) when interleaved.
    Returns (q_out, k_out), which alias q and k. In dygraph q and k must be contiguous: Paddle hands a custom
    op a contiguous copy of a strided view, so the rotation would reach only the returned tensors (an error)."""
    register_ops()
    if in_dynamic_mode():
        for name, t in (("q", q), ("k", k)):
            if not t.is_contiguous():
                raise ValueError(f"paddlellm_rotary_embedding: {name} {list(t.shape)} is a non-contiguous view, which "
                                 f"the op cannot rotate in place (pass {name}.contiguous())")
    outs = _C_ops._run_custom_op("paddlellm_rotary_embedding", q, k, positions, inv_freq, bool(interleaved))
    return outs[0], outs[1]


@unified
def final_logits(h, delta, last_rows, norm_weight, lm_head, epsilon, n):
    """The step's end (op paddlellm_final_logits, CPU): each sequence's last row of the residual stream
    h + delta [T, H] float32 (rows last_rows [S] int32), RMSNorm with norm_weight, times the lm_head [H, n]
    packed by pack_linear_weight -> logits [S, n] float32."""
    register_ops()
    return _C_ops._run_custom_op("paddlellm_final_logits", h, delta, last_rows, norm_weight, lm_head, float(epsilon),
                                 int(n))[0]


@unified
def packed_positions(input_ids, seq_lens_this_time, seq_lens_decoder):
    """(positions [T], last_rows [S]) int32 of a packed batch (op paddlellm_packed_positions, CPU): row r of
    sequence s is at position seq_lens_decoder[s] + (r - s's first row); last_rows[s] is s's last row
    (the inclusive prefix sum of seq_lens_this_time minus 1). input_ids [T] gives T."""
    register_ops()
    outs = _C_ops._run_custom_op("paddlellm_packed_positions", input_ids, seq_lens_this_time, seq_lens_decoder)
    return outs[0], outs[1]


@unified
def swiglu(x):
    """silu(x[..., :F]) * x[..., F:] for x [..., 2F] float32 (op paddlellm_swiglu); equals
    paddle.nn.functional.swiglu(x) with one input."""
    register_ops()
    outs = _C_ops._run_custom_op("paddlellm_swiglu", x)
    return outs[0]


# ---------------------------------------------------------------- the generation helpers (csrc/cpu/generation_ops.cc, sampling_ops.cc)

__all__ += ["token_penalty", "argmax", "top_p_sampling", "stop_flags"]


@unified
def token_penalty(logits, pre_ids, penalty_scores, frequency_scores, presence_scores, min_len, cur_len, eos_token_id):
    """Penalized copy of logits [S, V] float32 (op paddlellm_token_penalty, PaddleNLP's
    set_preids_token_penalty_multi_scores): for each distinct id among a row's pre_ids [S, L] int64 (the row's
    ids end at its first negative entry), x -> (x * p if x < 0 else x / p) - count * frequency - presence with the
    row's penalty_scores p, frequency_scores, presence_scores [S] float32; the eos_token_id [E] int64 logits
    become -1e10 while cur_len < min_len ([S] int64). Rows with cur_len < 0 are copied unchanged."""
    register_ops()
    return _C_ops._run_custom_op("paddlellm_token_penalty", logits, pre_ids, penalty_scores, frequency_scores,
                                 presence_scores, min_len, cur_len, eos_token_id)[0]


@unified
def argmax(logits):
    """Greedy ids [S] int64 of logits [S, V] float32 (op paddlellm_argmax): the largest entry's id, the lowest
    on ties, the first NaN if a row holds one (numpy.argmax's rule)."""
    register_ops()
    return _C_ops._run_custom_op("paddlellm_argmax", logits)[0]


@unified
def top_p_sampling(logits, temperature, top_k, top_p, uniform):
    """Sampled ids [S] int64 (op paddlellm_top_p_sampling): per row, softmax(logits / temperature), the top_k most
    probable (0: all), then the smallest prefix whose probability reaches top_p, renormalized, and the id where
    the cumulative probability first exceeds `uniform` (the caller's draw in [0, 1)). temperature, top_p,
    uniform: [S] float32; top_k: [S] int64. Deterministic: the same inputs give the same ids."""
    register_ops()
    return _C_ops._run_custom_op("paddlellm_top_p_sampling", logits, temperature, top_k, top_p, uniform)[0]


@unified
def stop_flags(next_tokens, eos_token_id, cur_len, max_len, stop_flags):
    """New stop flags [S] bool (op paddlellm_stop_flags, the stop part of PaddleNLP's update_inputs_v2): a row is
    stopped if it already was, or next_tokens [S] int64 is one of eos_token_id [E] int64, or cur_len + 1 >= max_len
    ([S] int64: the length with this token reaches the limit)."""
    register_ops()
    return _C_ops._run_custom_op("paddlellm_stop_flags", next_tokens, eos_token_id, cur_len, max_len, stop_flags)[0]
