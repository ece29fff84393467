"""Pure-Paddle (dygraph) references of the block-cache ops in SPEC.md: the tests' independent side.

Written plainly for clarity, not speed: a loop over sequences (and tokens), gathered blocks, a masked
softmax in float64. They take and return tensors of the shapes and dtypes the ops use.
"""
import math

import numpy as np
import paddle


def _token_slots(block_tables, seq_lens_this_time, seq_lens_decoder, block_size):
    """(row, block, slot) for every token of the packed batch, in row order."""
    tables = block_tables.numpy()
    this_time = seq_lens_this_time.numpy().reshape(-1)
    decoder = seq_lens_decoder.numpy().reshape(-1)
    slots, row = [], 0
    for s, n in enumerate(this_time):
        for i in range(int(n)):
            p = int(decoder[s]) + i
            slots.append((row, int(tables[s, p // block_size]), p % block_size))
            row += 1
    return slots


def write_cache_kv_ref(key, value, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder,
                       key_scale=None, value_scale=None):
    """Returns new (key_cache, value_cache) with token i of sequence s at position
    seq_lens_decoder[s] + i of its block table (an int8 cache: quantized per row, or with the per-head
    key_scale / value_scale when given, ops.quantize_cache_rows); the inputs are left unchanged."""
    from paddlellm.ops import quantize_cache_rows

    block_size = key_cache.shape[2]
    new_k, new_v = key_cache.clone(), value_cache.clone()
    head_scale = lambda s: None if s is None else s.numpy().reshape(-1, 1)  # noqa: E731
    for row, block, slot in _token_slots(block_tables, seq_lens_this_time, seq_lens_decoder, block_size):
        for new, x, scale in ((new_k, key[row], head_scale(key_scale)), (new_v, value[row], head_scale(value_scale))):
            if new.dtype == paddle.int8:
                new[block, :, slot, :] = paddle.to_tensor(quantize_cache_rows(x.numpy(), scale))
            else:
                new[block, :, slot, :] = x.astype(new.dtype)
    return new_k, new_v


def _sequence_kv(cache, table, length):
    """[num_kv_heads, length, head_dim] float64: positions 0..length-1 of one sequence."""
    from paddlellm.ops import dequantize_cache_rows

    num_blocks_used = -(-length // cache.shape[2])
    blocks = paddle.to_tensor(table[:num_blocks_used].astype("int64"))
    if cache.dtype == paddle.int8:
        cache = paddle.to_tensor(dequantize_cache_rows(cache.numpy()))
    gathered = paddle.gather(cache.astype("float32"), blocks).astype("float64")  # [nb, kvh, bs, d]
    kvh, d = cache.shape[1], cache.shape[3]
    return gathered.transpose([1, 0, 2, 3]).reshape([kvh, -1, d])[:, :length]


def block_attention_ref(q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder):
    """out[T, num_heads, head_dim] float32: query token i of sequence s (position p = seq_lens_decoder[s] + i)
    attends to positions 0..p of s, softmax(q.k / sqrt(head_dim)) . v, query head h on KV head
    h // (num_heads // num_kv_heads)."""
    num_tokens, num_heads, head_dim = q.shape
    group = num_heads // key_cache.shape[1]
    tables = block_tables.numpy()
    this_time = seq_lens_this_time.numpy().reshape(-1)
    decoder = seq_lens_decoder.numpy().reshape(-1)
    outs, row = [], 0
    for s, n in enumerate(this_time):
        n, past = int(n), int(decoder[s])
        if n == 0:
            continue
        length = past + n
        k = paddle.repeat_interleave(_sequence_kv(key_cache, tables[s], length), group, axis=0)  # [H, L, D]
        v = paddle.repeat_interleave(_sequence_kv(value_cache, tables[s], length), group, axis=0)
        qs = q[row:row + n].astype("float64").transpose([1, 0, 2])  # [H, n, D]
        scores = paddle.matmul(qs, k, transpose_y=True) / math.sqrt(head_dim)  # [H, n, L]
        allowed = np.arange(length)[None, :] <= (past + np.arange(n))[:, None]  # causal, [n, L]
        scores = paddle.where(paddle.to_tensor(allowed), scores, paddle.full_like(scores, -np.inf))
        probs = paddle.nn.functional.softmax(scores, axis=-1)
        outs.append(paddle.matmul(probs, v).transpose([1, 0, 2]))  # [n, H, D]
        row += n
    if not outs:
        return paddle.zeros([0, num_heads, head_dim], dtype="float32")
    return paddle.concat(outs).astype("float32")


def _unpack(packed, n, k):
    """[k, n] float64 from the blocks of pack_linear_weight (a quantized weight's scales applied)."""
    from paddlellm.ops import unpack_linear_weight

    return unpack_linear_weight(packed, n, k).astype(np.float64)


def _product(x, packed_weight, n):
    """x @ W in float64 as the linear ops compute it. Against an int4 weight (W = q * scale + offset) the q * scale
    part meets x quantized per row and block of 32 (ops.quantize_activations), the offsets the float x; an a8w8
    one meets x quantized so."""
    from paddlellm.ops import is_a8w8, quantize_activations, unpack_linear_weight

    k, xf = x.shape[-1], x.numpy().astype(np.float64)
    if is_a8w8(packed_weight, k):
        return quantize_activations(x.numpy()) @ _unpack(packed_weight, n, k)
    if packed_weight.dtype != paddle.uint8:
        return xf @ _unpack(packed_weight, n, k)
    scaled = unpack_linear_weight(packed_weight, n, k, offsets=False).astype(np.float64)
    return quantize_activations(x.numpy()) @ scaled + xf @ (_unpack(packed_weight, n, k) - scaled)


def linear_ref(x, packed_weight, n):
    """x @ W in float64 (returned as float32), W unpacked from [ceil(n / 32), K, 32] back to [K, n]."""
    return paddle.to_tensor(_product(x, packed_weight, n).astype(np.float32))


def weight_only_linear_ref(x, weight, scale, offset=None):
    """x @ (weight * scale + offset) in float64 (returned as float32), scale and offset [N] or [G, N], each row
    repeated over its K / G weight rows."""
    q = weight.numpy().astype(np.float64)

    def repeated(a):
        rows = a.numpy().astype(np.float64).reshape(-1, q.shape[1])
        return np.repeat(rows, q.shape[0] // rows.shape[0], axis=0)
    w = q * repeated(scale) + (repeated(offset) if offset is not None else 0.0)
    return paddle.to_tensor((x.numpy().astype(np.float64) @ w).astype(np.float32))


def packed_embedding_ref(ids, packed_weight, n):
    """Rows `ids` of W^T [n, K] (float32), W unpacked from [ceil(n / 32), K, 32]."""
    w = _unpack(packed_weight, n, packed_weight.shape[1])
    return paddle.to_tensor(w.T[ids.numpy()].astype(np.float32))


def linear_swiglu_ref(x, packed_weight, n):
    """silu(x @ W_gate) * (x @ W_up) in float64 (returned as float32), the gate blocks being the even and the up
    blocks the odd ones of the packed weight."""
    gate, up = _product(x, packed_weight[0::2], n), _product(x, packed_weight[1::2], n)
    return paddle.to_tensor((gate / (1 + np.exp(-gate)) * up).astype(np.float32))


# ---------------------------------------------------------------- model ops (rms_norm, rotary, swiglu)
# float64 throughout from the float32 inputs: the exact answer of each op's formula, which the float32
# kernels must approach within SPEC.md's tolerances.


def rms_norm_ref(x, weight, epsilon):
    """x * rsqrt(mean(x * x, -1) + epsilon) * weight over the last axis of x [..., H]; float32 out."""
    xd = x.astype("float64")
    w = weight.astype("float32").astype("float64")  # bfloat16 widens exactly
    eps = float(np.float32(epsilon))  # the op's attribute is a float32
    r = paddle.rsqrt((xd * xd).mean(axis=-1, keepdim=True) + eps)
    return (xd * r * w).astype("float32")


def fused_add_rms_norm_ref(x, residual, weight, epsilon):
    """(rms_norm(x + residual) * weight, x + residual), the sum rounded to float32 first."""
    residual_out = x + residual
    return rms_norm_ref(residual_out, weight, epsilon), residual_out


def rotary_embedding_ref(q, k, positions, inv_freq, interleaved=False):
    """Returns new (q, k) [T, H, D] float32 with rotary embedding applied; the inputs are left unchanged.
    Angles as the op forms them (float32 position * float32 inv_freq, rounded to float32), then cos, sin
    and the rotation in float64. Rotate-half pairs (i, i + D/2); GPT-J pairs (2i, 2i + 1) if interleaved."""
    angle = (positions.astype("float32").unsqueeze(-1) * inv_freq.astype("float32")).astype("float64")  # [T, D/2]
    cos, sin = paddle.cos(angle).unsqueeze(1), paddle.sin(angle).unsqueeze(1)  # [T, 1, D/2]

    def rotate(x):
        xd = x.astype("float64")
        if interleaved:
            a, b = xd[..., 0::2], xd[..., 1::2]
            return paddle.stack([a * cos - b * sin, b * cos + a * sin], axis=-1).reshape(x.shape).astype("float32")
        a, b = paddle.chunk(xd, 2, axis=-1)
        return paddle.concat([a * cos - b * sin, b * cos + a * sin], axis=-1).astype("float32")

    return rotate(q), rotate(k)


def final_logits_ref(h, delta, last_rows, norm_weight, lm_head, epsilon, n):
    """gather, gather, fused_add_rms_norm_ref, linear_ref: [S, n] float32."""
    normed, _ = fused_add_rms_norm_ref(paddle.gather(delta, last_rows), paddle.gather(h, last_rows), norm_weight,
                                       epsilon)
    return linear_ref(normed, lm_head, n)


def packed_positions_ref(input_ids, seq_lens_this_time, seq_lens_decoder):
    """Row by row: (positions [T], last_rows [S]) int32."""
    positions, last_rows, row = [], [], 0
    for n, cached in zip(seq_lens_this_time.numpy().tolist(), seq_lens_decoder.numpy().tolist()):
        positions += [cached + i for i in range(n)]
        row += n
        last_rows.append(row - 1)
    return (paddle.to_tensor(np.array(positions, np.int32).reshape([len(positions)])),
            paddle.to_tensor(np.array(last_rows, np.int32).reshape([len(last_rows)])))


def swiglu_ref(x):
    """silu(x[..., :F]) * x[..., F:] for x [..., 2F]; float32 out."""
    gate, up = paddle.chunk(x.astype("float64"), 2, axis=-1)
    return (gate * up / (1.0 + paddle.exp(-gate))).astype("float32")


def fused_decoder_layer_ref(h, delta, positions, inv_freq, key_cache, value_cache, block_tables, seq_lens_this_time,
                            seq_lens_decoder, input_norm, qkv_proj, o_proj, post_attention_norm, gate_up_proj, down_proj,
                            key_scale, value_scale, epsilon, num_heads, intermediate_size):
    """The layer from the other ops' references (each rounding its result to float32, as the op's steps do):
    returns new (h + delta + attention output, MLP output, key_cache, value_cache)."""
    tokens, hidden = h.shape
    kv_heads, head_dim = key_cache.shape[1], key_cache.shape[3]
    meta = (block_tables, seq_lens_this_time, seq_lens_decoder)
    x, h = fused_add_rms_norm_ref(delta, h, input_norm, epsilon)
    qkv = linear_ref(x, qkv_proj, (num_heads + 2 * kv_heads) * head_dim).reshape([tokens, -1, head_dim])
    q, k, v = paddle.split(qkv, [num_heads, kv_heads, kv_heads], axis=1)
    q, k = rotary_embedding_ref(q, k, positions, inv_freq)
    key_cache, value_cache = write_cache_kv_ref(k, v, key_cache, value_cache, *meta, key_scale, value_scale)
    attn = block_attention_ref(q, key_cache, value_cache, *meta).reshape([tokens, num_heads * head_dim])
    x, h = fused_add_rms_norm_ref(linear_ref(attn, o_proj, hidden), h, post_attention_norm, epsilon)
    mlp = linear_ref(linear_swiglu_ref(x, gate_up_proj, intermediate_size), down_proj, hidden)
    return h, mlp, key_cache, value_cache


# ---------------------------------------------------------------- generation ops (penalties, argmax, sampling, stop)
# numpy, row by row; float64 wherever there is arithmetic. top_p_sampling_ref is sampling.py's candidates() and
# numpy's Generator.choice(len(ids), p=probs) written as float64 math with the uniform given.


def _seen_ids(row):
    """A row of pre_ids up to its first negative entry."""
    negative = np.flatnonzero(row < 0)
    return row[: negative[0]] if len(negative) else row


def token_penalty_ref(logits, pre_ids, penalty_scores, frequency_scores, presence_scores, min_len, cur_len,
                      eos_token_id):
    """New logits: for each distinct seen id, rep = x * p if x < 0 else x / p (float32, as sampling.penalized),
    then float32(float64(rep) - count * frequency - presence); eos logits -1e10 while cur_len < min_len; rows
    with cur_len < 0 unchanged."""
    out = logits.numpy().copy()
    ids, alpha = pre_ids.numpy(), penalty_scores.numpy()
    beta, gamma = frequency_scores.numpy().astype(np.float64), presence_scores.numpy().astype(np.float64)
    low, cur, eos = min_len.numpy(), cur_len.numpy(), eos_token_id.numpy()
    for s in range(out.shape[0]):
        if cur[s] < 0:
            continue
        seen, counts = np.unique(_seen_ids(ids[s]), return_counts=True)
        v = out[s, seen]
        rep = np.where(v < 0, v * alpha[s], v / alpha[s])  # float32 arithmetic
        out[s, seen] = (rep.astype(np.float64) - counts * beta[s] - gamma[s]).astype(np.float32)
        if cur[s] < low[s]:
            out[s, eos] = np.float32(-1e10)
    return paddle.to_tensor(out)


def argmax_ref(logits):
    """numpy.argmax per row: the lowest id of the largest value; the first NaN if any."""
    return paddle.to_tensor(np.argmax(logits.numpy(), axis=1).astype(np.int64))


def sampling_ranked(row, temperature, top_k):
    """(ids, probs) before the top-p cut, float64: row / temperature ranked largest first (ties by id), the top_k
    of them renormalized when 0 < top_k < vocab, else the whole softmax (sampling.candidates' first half)."""
    row = np.asarray(row, dtype=np.float64) / np.float64(temperature)
    order = np.argsort(-row, kind="stable")
    if 0 < top_k < row.shape[0]:
        ids = order[:top_k]
        probs = np.exp(row[ids] - row[ids[0]])
        return ids, probs / probs.sum()
    top = row.max()
    return order, np.exp(row[order] - top) / np.exp(row - top).sum()


def sampling_candidates(row, temperature, top_k, top_p):
    """sampling.candidates in float64: the ids sampling may pick, most probable first, and their probabilities."""
    ids, probs = sampling_ranked(row, temperature, top_k)
    if top_p >= 1.0:
        return ids, probs / probs.sum()
    keep = min(int(np.searchsorted(np.cumsum(probs), np.float64(top_p)) + 1), len(ids))  # smallest prefix >= top_p
    return ids[:keep], probs[:keep] / probs[:keep].sum()


def inverse_cdf_index(probs, uniform):
    """The index numpy's Generator.choice(len(probs), p=probs) returns when its uniform draw is `uniform`."""
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    return min(int(np.searchsorted(cdf, np.float64(uniform), side="right")), len(probs) - 1)


def top_p_sampling_ref(logits, temperature, top_k, top_p, uniform):
    """ids [S] int64: per row, sampling_candidates, then inverse_cdf_index with the row's uniform."""
    x, t, k, p, u = (a.numpy() for a in (logits, temperature, top_k, top_p, uniform))
    out = np.zeros(x.shape[0], np.int64)
    for s in range(x.shape[0]):
        ids, probs = sampling_candidates(x[s], t[s], int(k[s]), p[s])
        out[s] = ids[inverse_cdf_index(probs, u[s])]
    return paddle.to_tensor(out)


def stop_flags_ref(next_tokens, eos_token_id, cur_len, max_len, stop_flags):
    """stop_flags | (next_tokens in eos_token_id) | (cur_len + 1 >= max_len)."""
    nxt = next_tokens.numpy()
    out = stop_flags.numpy() | np.isin(nxt, eos_token_id.numpy()) | (cur_len.numpy() + 1 >= max_len.numpy())
    return paddle.to_tensor(out.astype(bool))
