"""The op set as one table: what each op takes and returns, how close it must come to its reference, the
shapes it is checked on and which backends implement it. SPEC.md explains the semantics in prose; the
tests (tests/ops/test_spec.py), `python -m paddlellm.ops --check` and `--bench` read this table.

An op `NAME` is the custom op `paddlellm_NAME`, called as `paddlellm.ops.NAME(*inputs, *attrs)`; its reference
is `paddlellm.ops.reference.NAME_ref` with the same arguments. `make(case, rng)` builds one case's
arguments; inputs listed in `inplace` are written by the op (their new contents are outputs too).
"""
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import numpy as np
import paddle

from paddlellm.ops.spec_generation import (ARGMAX_CASES, GENERATION_BACKENDS, PENALTY_CASES, STOP_CASES, TOP_P_BENCH,
                                           TOP_P_CASES, make_argmax, make_stop_flags, make_token_penalty,
                                           make_top_p_sampling, plain_argmax, plain_stop_flags, plain_token_penalty,
                                           plain_top_p_sampling)

BACKENDS = ("cpu", "hip", "npu")


def _matmul_tolerance(case):
    # float32 sums of k products against float64: ~sqrt(k) roundings of ~eps * (sum of |terms| ~ k)
    return 1e-5, 1e-7 * case["k"] ** 1.5 + 1e-6


def _layer_tolerance(case):
    # the steps below chained on unit-scale values (measured ~2e-6). With int4 (a8w8) weights each projection
    # quantizes its input to int8 per block of 32 (per row): a float32 ulp of difference upstream (the reference
    # rounds each step on its own) can move one activation to the next step, xs = max|x| / 127 ~ 0.03, times a
    # column of |w| ~ k^-0.5: a few 1e-3 where it happens (measured 1.8e-3, NMSE 2e-9)
    return (1e-5, 5e-3) if str(case.get("w", "")).startswith(("int4", "a8w8")) else (1e-5, 1e-5)


# (rtol, atol) per kind of op, as a function of the case. Why these numbers: SPEC.md, per op.
TOLERANCE = {
    "exact": lambda case: (0.0, 0.0),             # copies, index ops
    "elementwise": lambda case: (1e-6, 1e-6),     # a few float32 roundings; rotary can cancel (atol)
    "reduction": lambda case: (2e-6, 1e-6),       # float32 sums of squares and rsqrt
    "matmul": _matmul_tolerance,
    "attention": lambda case: (0.0, 2e-5),        # float32 softmax and sums over the cached tokens
    "layer": _layer_tolerance,
}


@dataclass(frozen=True)
class OpSpec:
    name: str
    kind: str  # a key of TOLERANCE
    summary: str
    inputs: Tuple[str, ...]
    attrs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    make: Callable  # (case dict, np.random.RandomState) -> (inputs list, attrs list)
    cases: Tuple[dict, ...]
    inplace: Tuple[str, ...] = ()  # inputs the op writes
    isa_kernels: bool = False  # compiled per ISA (scalar / avx2 / avx512): checked on each the CPU runs
    backends: Tuple[str, ...] = ("cpu",)
    plain: Optional[Callable] = None  # (inputs, attrs) -> a call of the plain-Paddle ops it replaces (same outputs)
    bench_cases: Tuple[dict, ...] = field(default_factory=tuple)  # SmolLM2-sized shapes for --bench

    def tolerance(self, case):
        return TOLERANCE[self.kind](case)


def _randn(rng, *shape, scale=1.0, dtype="float32"):
    return paddle.to_tensor((rng.randn(*shape) * scale).astype("float32")).astype(dtype)


# ---------------------------------------------------------------- the paged-cache ops

# (tokens already cached, tokens this step) per sequence; (x, 0) is an idle slot
PAGED_CASES = (
    dict(seqs="one_token_empty_cache", kv=1, group=1, d=64, bs=16),
    dict(seqs="block_boundaries", kv=3, group=3, d=40, bs=16),
    dict(seqs="long_prefix_chunk", kv=1, group=8, d=72, bs=16),
    dict(seqs="mixed_decode_chunks_idle", kv=3, group=3, d=64, bs=16),
    dict(seqs="small_blocks", kv=2, group=1, d=40, bs=8),
    dict(seqs="smollm2_decode", kv=3, group=3, d=64, bs=64),
    dict(seqs="odd_block", kv=2, group=3, d=20, bs=5),
    dict(seqs="all_idle", kv=2, group=2, d=64, bs=16),
)
SEQUENCES = {
    "one_token_empty_cache": [(0, 1)],
    "block_boundaries": [(15, 2), (0, 16), (16, 1), (5, 27), (31, 1)],
    "long_prefix_chunk": [(150, 37)],
    "mixed_decode_chunks_idle": [(33, 1), (0, 0), (0, 20), (64, 1), (7, 0), (40, 9)],
    "small_blocks": [(3, 5), (0, 1), (8, 8)],
    "smollm2_decode": [(255, 1), (100, 1), (0, 1)],
    "odd_block": [(6, 9), (2, 1)],
    "all_idle": [(0, 0), (4, 0)],
    "decode_batch_12": [(160, 1)] * 12,
    "prompt_chunk_64": [(0, 64)],
}
CACHE_DTYPES = ("float32", "bfloat16", "int8")  # int8: rows of head_dim values and their scale (cache_row)


def paged_batch(case, rng):
    """Random caches (garbage in every slot, so reading a wrong one shows), shuffled block ids, new K/V, q."""
    seqs = SEQUENCES[case["seqs"]] if isinstance(case["seqs"], str) else case["seqs"]  # a name, or the list
    bs, kvh, d = case["bs"], case["kv"], case["d"]
    blocks_needed = [-(-(past + n) // bs) for past, n in seqs]
    num_blocks = sum(blocks_needed) + 3
    ids = rng.permutation(num_blocks)
    tables = -np.ones((len(seqs), max(blocks_needed) + 1), np.int32)  # -1: unused entries
    start = 0
    for s, count in enumerate(blocks_needed):
        tables[s, :count] = ids[start:start + count]
        start += count
    tokens = sum(n for _, n in seqs)
    dtype = case.get("cache", "float32")

    def cache():  # int8: garbage rows quantized as written ones are (their scales are read for cached tokens)
        if dtype == "int8":
            from paddlellm.ops import quantize_cache_rows

            return paddle.to_tensor(quantize_cache_rows(rng.randn(num_blocks, kvh, bs, d).astype(np.float32)))
        return _randn(rng, num_blocks, kvh, bs, d, dtype=dtype)
    return dict(q=_randn(rng, tokens, kvh * case["group"], d), key=_randn(rng, tokens, kvh, d),
                value=_randn(rng, tokens, kvh, d), key_cache=cache(), value_cache=cache(),
                block_tables=paddle.to_tensor(tables),
                seq_lens_this_time=paddle.to_tensor(np.array([n for _, n in seqs], np.int32)),
                seq_lens_decoder=paddle.to_tensor(np.array([past for past, _ in seqs], np.int32)))


def _make_write_cache_kv(case, rng):
    b = paged_batch(case, rng)
    scales = [static_head_scales(b[n], rng) for n in ("key", "value")] if case.get("static") else [None, None]
    return [b[n] for n in ("key", "value", "key_cache", "value_cache", "block_tables", "seq_lens_this_time",
                           "seq_lens_decoder")] + scales, []


def static_head_scales(x, rng):
    """Per-head scales [num_kv_heads] for x [tokens, num_kv_heads, head_dim] as calibration could give them: the
    head's max |x| / 127 times 0.5 to 1.5, so that some heads' largest values lie beyond 127 steps (clipped)."""
    peak = np.abs(x.numpy()).max(axis=(0, 2)) if x.shape[0] else np.ones(x.shape[1], np.float32)
    return paddle.to_tensor((peak / 127 * rng.uniform(0.5, 1.5, peak.shape)).astype(np.float32))


def _make_block_attention(case, rng):
    from paddlellm.ops.reference import write_cache_kv_ref

    b = paged_batch(case, rng)
    meta = [b["block_tables"], b["seq_lens_this_time"], b["seq_lens_decoder"]]
    key_cache, value_cache = write_cache_kv_ref(b["key"], b["value"], b["key_cache"], b["value_cache"], *meta)
    return [b["q"], key_cache, value_cache, *meta], []


def _with_dtypes(cases, key, dtypes):
    return tuple(dict(c, **{key: t}) for c in cases for t in dtypes)


# ---------------------------------------------------------------- the packed linear ops

# (rows, K, N): one row (decode), rows around the AVX-512 tile of 12 and the AVX2 tile of 2, more rows than
# one work item (96), N that is and is not a multiple of the 32-column block, K of 1 and odd K.
LINEAR_SHAPES = ((1, 576, 960), (2, 7, 33), (5, 13, 1), (11, 64, 31), (12, 64, 64), (13, 1, 100), (25, 576, 192),
                 (100, 5, 65), (3, 3, 32))
WEIGHT_DTYPES = ("float32", "bfloat16")
PACKED_DTYPES = WEIGHT_DTYPES + ("int8",)  # int8: per-column scales in each block (--quant_type weight_only_int8)
# int4 (weight_only_int4) and grouped int8 (weight_only_int8 --group_size, Q8_0) in groups of 32 (the smallest), 64
# and 576 rows, on K that are multiples of 32: rows around the int4 tiles (AVX-512 VNNI 4, else 1) and the float
# ones, more than a work item, N past a block
LINEAR_INT4 = ((1, 576, 960, 64), (2, 32, 33, 32), (5, 64, 64, 32), (12, 576, 100, 576), (100, 96, 65, 32),
               (3, 32, 1, 32))
# a8w8 on K that are multiples of 32: rows around its tiles (AVX-512 VNNI 4, else 1), more than a work item, N
# past a block, SmolLM2's down_proj K
LINEAR_A8W8 = ((1, 576, 960), (2, 32, 33), (5, 64, 64), (17, 1536, 40), (100, 96, 65), (3, 32, 1))
LINEAR_CASES = (_with_dtypes(tuple(dict(m=m, k=k, n=n) for m, k, n in LINEAR_SHAPES), "w", PACKED_DTYPES)
                + tuple(dict(m=m, k=k, n=n, w=f"int{bits}_g{g}") for m, k, n, g in LINEAR_INT4 for bits in (4, 8))
                + tuple(dict(m=m, k=k, n=n, w="a8w8") for m, k, n in LINEAR_A8W8))
LINEAR_BENCH = tuple(dict(m=m, k=576, n=n, w=w) for w in ("float32", "int8", "int8_g32", "int4_g64", "a8w8")
                     for m in (1, 12, 64)
                     for n in (960, 49152))


def _packed_weight(rng, k, n, dtype, scale=1.0, swiglu=False):
    """A random [k, n] weight packed for the linear ops: float32 or bfloat16, or quantized as --quant_type stores
    it: "int8" per column (weight_only_int8), "int8_gG" and "int4_gG" in groups of G rows (weight_only_int8
    --group_size G, weight_only_int4), "a8w8" per column for int8 activations."""
    from paddlellm import ops
    from paddlellm.quantization import quantize_int4, quantize_int8

    pack = ops.pack_swiglu_weight if swiglu else ops.pack_linear_weight
    if dtype in WEIGHT_DTYPES:
        return pack(_randn(rng, k, n, scale=scale, dtype=dtype))
    w = rng.randn(k, n) * scale
    if dtype == "a8w8":
        q, scale = quantize_int8(w)
        return pack(paddle.to_tensor(q), scale, None, True)
    group = int(dtype.split("_g")[1]) if "_g" in dtype else None
    q, *scales = quantize_int8(w, group) if dtype.startswith("int8") else quantize_int4(w, group)
    return pack(paddle.to_tensor(q), *scales)


def _make_linear(case, rng):
    return [_randn(rng, case["m"], case["k"]), _packed_weight(rng, case["k"], case["n"], case["w"])], [case["n"]]


def _make_linear_swiglu(case, rng):  # unit-scale gate/up
    weight = _packed_weight(rng, case["k"], 2 * case["n"], case["w"], scale=case["k"] ** -0.5, swiglu=True)
    return [_randn(rng, case["m"], case["k"]), weight], [case["n"]]


def _make_packed_embedding(case, rng):
    from paddlellm import ops

    ids = rng.randint(0, case["n"], case["t"]).astype(np.int64)
    ids[: min(2, case["t"])] = [0, case["n"] - 1][: min(2, case["t"])]  # both ends of the vocabulary
    w = _randn(rng, case["k"], case["n"], dtype=case["w"])
    return [paddle.to_tensor(ids), ops.pack_linear_weight(w)], [case["n"]]


def _plain_input(x, packed):
    """The x the model's plain path multiplies: a8w8 quantizes it per row first."""
    from paddlellm import ops
    from paddlellm.models.llama.model import quantize_per_token

    return quantize_per_token(x) if ops.is_a8w8(packed, x.shape[-1]) else x


def _plain_linear(x, packed, n):
    from paddlellm import ops

    w = paddle.to_tensor(ops.unpack_linear_weight(packed, n, x.shape[-1]))
    return lambda: paddle.matmul(_plain_input(x, packed), w)


def _plain_linear_swiglu(x, packed, n):
    from paddlellm import ops

    w = paddle.to_tensor(np.concatenate([ops.unpack_linear_weight(packed[i::2], n, x.shape[-1]) for i in (0, 1)],
                                        axis=1))
    return lambda: paddle.nn.functional.swiglu(paddle.matmul(_plain_input(x, packed[0::2]), w))


def _plain_embedding(ids, packed, n):
    blocks, k, width = packed.shape
    table = packed.astype("float32").transpose([1, 0, 2]).reshape([k, blocks * width])[:, :n].t().contiguous()
    return lambda: paddle.nn.functional.embedding(ids, table)


# the portable program's quantized weights (weight_only_int8 / a8w8 per column, weight_only_int4 in groups of G rows
# with offsets), and grouped scales without offsets: one row, SmolLM2's shapes, N and K off any tile, no rows
WEIGHT_ONLY_CASES = tuple(dict(m=m, k=k, n=n, w=w) for m, k, n, w in (
    (1, 576, 960, "int8"), (12, 576, 192, "int8"), (7, 64, 31, "int8"), (3, 1, 100, "int8"), (0, 32, 8, "int8"),
    (1, 576, 960, "int4_g64"), (5, 64, 33, "int4_g32"), (25, 96, 70, "int4_g32"), (17, 1536, 40, "int4_g1536"),
    (12, 576, 192, "groups_18"), (4, 9, 65, "groups_3")))


def _make_weight_only_linear(case, rng):
    """x and a random weight quantized as paddlellm.quantization does it: "int8" per column, "int4_gG" in groups of
    G rows with offsets, "groups_G" int8 values with G rows of positive scales and no offsets."""
    from paddlellm.quantization import quantize_int4, quantize_int8

    k, n, kind = case["k"], case["n"], case["w"]
    w = rng.randn(k, n) * k ** -0.5
    if kind == "int8":
        q, scale, offset = *quantize_int8(w), None
    elif kind.startswith("int4"):
        q, scale, offset = quantize_int4(w, int(kind.split("_g")[1]))
    else:
        q = rng.randint(-127, 128, (k, n)).astype(np.int8)
        scale, offset = rng.uniform(0.5, 1.5, (int(kind.split("_")[1]), n)).astype(np.float32) / 127, None
    tensors = [paddle.to_tensor(a) if a is not None else None for a in (q, scale, offset)]
    return [_randn(rng, case["m"], k), *tensors], []


def _plain_weight_only_linear(x, weight, scale, offset):
    """model.linear's dequantize-then-matmul form (grouped scales without offsets: zero offsets)."""
    from paddlellm.models.llama.model import linear

    if offset is None and len(scale.shape) == 2:
        offset = paddle.zeros_like(scale)
    return lambda: linear(x, weight, weight.shape[1], "float32", scale, offset)


# ---------------------------------------------------------------- the model ops

# x [..., H]: row counts with widths, then 3-D ones (the leading dims are rows)
NORM_SHAPES = tuple((rows, h) for rows in (0, 1, 5, 13, 100) for h in (1, 7, 64, 576)) + (
    (576,), (1, 1, 576), (2, 13, 64), (3, 5, 7), (4, 0, 7))
NORM_CASES = _with_dtypes(tuple(dict(x=s) for s in NORM_SHAPES), "w", WEIGHT_DTYPES)
NORM_BENCH = tuple(dict(x=(m, 576), w="float32") for m in (1, 12, 64))


def _make_rms_norm(case, rng):
    return [_randn(rng, *case["x"], scale=3.0), _randn(rng, case["x"][-1], dtype=case["w"])], [1e-5]


def _make_fused_add_rms_norm(case, rng):
    x, weight = _randn(rng, *case["x"], scale=3.0), _randn(rng, case["x"][-1], dtype=case["w"])
    return [x, _randn(rng, *case["x"], scale=3.0), weight], [1e-5]


def _rms_norm_in_paddle(x, weight, eps):
    """RMSNorm as plain Paddle ops: float32 math, rsqrt of the mean square (Paddle's CPU pow is ~60x slower)."""
    return x * paddle.rsqrt((x * x).mean(axis=-1, keepdim=True) + eps) * weight.astype("float32")


def _plain_rms_norm(x, weight, eps):
    return lambda: _rms_norm_in_paddle(x, weight, eps)


def _plain_fused_add_rms_norm(x, residual, weight, eps):
    return lambda: (_rms_norm_in_paddle(x + residual, weight, eps), x + residual)


ROPE_SHAPES = tuple((t, hq, hk, d) for t in (0, 1, 5, 13, 100) for hq, hk, d in ((1, 1, 2), (9, 3, 64), (4, 1, 20),
                                                                                 (8, 2, 72)))
ROPE_CASES = tuple(dict(t=t, hq=hq, hk=hk, d=d, interleaved=i) for t, hq, hk, d in ROPE_SHAPES for i in (0, 1))
ROPE_BENCH = tuple(dict(t=t, hq=9, hk=3, d=64, interleaved=0) for t in (1, 12, 64))


def _make_rotary_embedding(case, rng, max_position=8192):
    from paddlellm.models.llama.config import LlamaConfig
    from paddlellm.models.llama.model import rope_inv_freq

    t, d = case["t"], case["d"]
    positions = rng.randint(0, max_position + 1, t).astype("int32")
    positions[: min(2, t)] = [0, max_position][: min(2, t)]
    config = LlamaConfig(vocab_size=8, hidden_size=d, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
                         num_key_value_heads=1, head_dim=d, rope_theta=10000.0)
    return ([_randn(rng, t, case["hq"], d), _randn(rng, t, case["hk"], d), paddle.to_tensor(positions),
             paddle.to_tensor(rope_inv_freq(config))], [bool(case["interleaved"])])


def _plain_rotary_embedding(q, k, positions, inv_freq, interleaved):
    def run():  # rotate-half as plain ops: x * cos + rotate_half(x) * sin, rotate_half(x) = roll(x, D/2) * [-1.., 1..]
        freqs = positions.astype("float32").unsqueeze(-1) * inv_freq
        cos = paddle.cos(paddle.concat([freqs, freqs], axis=-1)).unsqueeze(-2)
        sin = paddle.sin(freqs)
        sin_signed = paddle.concat([-sin, sin], axis=-1).unsqueeze(-2)
        x = paddle.concat([q, k], axis=1)
        rotated = x * cos + paddle.roll(x, x.shape[-1] // 2, axis=-1) * sin_signed
        return paddle.split(rotated, [q.shape[1], k.shape[1]], axis=1)
    return run


SWIGLU_SHAPES = tuple((rows, 2 * f) for rows in (0, 1, 5, 13, 100) for f in (1, 7, 64, 576, 1536)) + (
    (1, 1, 3072), (2, 13, 128), (3, 0, 14))
SWIGLU_CASES = tuple(dict(x=s) for s in SWIGLU_SHAPES)
SWIGLU_BENCH = tuple(dict(x=(m, 3072)) for m in (1, 12, 64))


def _make_swiglu(case, rng):
    return [_randn(rng, *case["x"], scale=3.0)], []


def _plain_swiglu(x):
    return lambda: paddle.nn.functional.swiglu(x)


# ---------------------------------------------------------------- the packed batch's positions

POSITION_CASES = tuple(dict(seqs=name) for name in ("one_token_empty_cache", "block_boundaries", "long_prefix_chunk",
                                                    "mixed_decode_chunks_idle", "all_idle", "decode_batch_12"))


def _make_packed_positions(case, rng):
    seqs = SEQUENCES[case["seqs"]]
    tokens = sum(n for _, n in seqs)
    return [paddle.to_tensor(rng.randint(0, 100, tokens).astype(np.int64)),
            paddle.to_tensor(np.array([n for _, n in seqs], np.int32)),
            paddle.to_tensor(np.array([past for past, _ in seqs], np.int32))], []


def _plain_packed_positions(input_ids, seq_lens_this_time, seq_lens_decoder):
    from paddlellm.models.llama.model import packed_positions

    return lambda: packed_positions(input_ids, seq_lens_this_time, seq_lens_decoder)


# ---------------------------------------------------------------- the fused decoder layer

LAYER_CASES = (
    dict(seqs="block_boundaries", kv=2, group=3, d=16, bs=16, hidden=64, f=96, w="float32"),
    dict(seqs="mixed_decode_chunks_idle", kv=2, group=3, d=16, bs=16, hidden=64, f=96, w="bfloat16"),
    dict(seqs="one_token_empty_cache", kv=1, group=1, d=20, bs=5, hidden=40, f=33, w="float32"),
    dict(seqs="all_idle", kv=2, group=2, d=16, bs=16, hidden=64, f=96, w="float32"),
    dict(seqs="smollm2_decode", kv=3, group=3, d=64, bs=64, hidden=576, f=1536, w="float32"),
    dict(seqs="small_blocks", kv=2, group=1, d=16, bs=8, hidden=32, f=64, w="float32", cache="bfloat16"),
    dict(seqs="mixed_decode_chunks_idle", kv=2, group=3, d=16, bs=16, hidden=64, f=96, w="int8"),
    dict(seqs="smollm2_decode", kv=3, group=3, d=64, bs=64, hidden=576, f=1536, w="int8"),
    dict(seqs="mixed_decode_chunks_idle", kv=2, group=3, d=16, bs=16, hidden=64, f=96, w="int8_g32"),
    dict(seqs="mixed_decode_chunks_idle", kv=2, group=3, d=16, bs=16, hidden=64, f=96, w="int4_g32"),
    dict(seqs="smollm2_decode", kv=3, group=3, d=64, bs=64, hidden=576, f=1536, w="int4_g64"),
    dict(seqs="mixed_decode_chunks_idle", kv=2, group=3, d=16, bs=16, hidden=64, f=96, w="a8w8"),
    dict(seqs="smollm2_decode", kv=3, group=3, d=64, bs=64, hidden=576, f=1536, w="a8w8"),
)
LAYER_BENCH = tuple(dict(seqs=s, kv=3, group=3, d=64, bs=64, hidden=576, f=1536, w="float32")
                    for s in ("decode_batch_12", "prompt_chunk_64"))


def _make_fused_decoder_layer(case, rng):
    from paddlellm.models.llama.config import LlamaConfig
    from paddlellm.models.llama.model import rope_inv_freq

    b = paged_batch(case, rng)
    hidden, f, d, heads, kv = case["hidden"], case["f"], case["d"], case["kv"] * case["group"], case["kv"]
    tokens = b["q"].shape[0]
    this_time, decoder = b["seq_lens_this_time"].numpy(), b["seq_lens_decoder"].numpy()
    positions = np.concatenate([np.arange(p, p + n) for p, n in zip(decoder, this_time)] + [np.zeros(0)])
    config = LlamaConfig(vocab_size=8, hidden_size=hidden, intermediate_size=f, num_hidden_layers=1,
                         num_attention_heads=heads, num_key_value_heads=kv, head_dim=d, rope_theta=10000.0)

    def weight(k, n, swiglu=False):  # unit-scale outputs for unit-scale inputs
        return _packed_weight(rng, k, n, case["w"], scale=k ** -0.5, swiglu=swiglu)

    norm_dtype = case["w"] if case["w"] in WEIGHT_DTYPES else "float32"  # quantized models keep float norms
    inputs = [_randn(rng, tokens, hidden), _randn(rng, tokens, hidden), paddle.to_tensor(positions.astype(np.int32)),
              paddle.to_tensor(rope_inv_freq(config)), b["key_cache"], b["value_cache"], b["block_tables"],
              b["seq_lens_this_time"], b["seq_lens_decoder"], _randn(rng, hidden, dtype=norm_dtype),
              weight(hidden, (heads + 2 * kv) * d), weight(heads * d, hidden), _randn(rng, hidden, dtype=norm_dtype),
              weight(hidden, 2 * f, swiglu=True), weight(f, hidden), None, None]
    return inputs, [1e-5, heads, f]


FINAL_LOGITS_CASES = (dict(t=1, s=1, hidden=64, n=70, w="float32"), dict(t=40, s=3, hidden=64, n=33, w="bfloat16"),
                      dict(t=12, s=12, hidden=96, n=320, w="float32"), dict(t=0, s=0, hidden=64, n=70, w="float32"),
                      dict(t=5, s=2, hidden=64, n=70, w="int8"), dict(t=5, s=2, hidden=64, n=70, w="int4_g32"),
                      dict(t=5, s=2, hidden=64, n=70, w="a8w8"))


def _make_final_logits(case, rng):
    t, s, hidden = case["t"], case["s"], case["hidden"]
    rows = np.sort(rng.choice(t, s, replace=False)).astype(np.int32) if s else np.zeros(0, np.int32)
    weight = _packed_weight(rng, hidden, case["n"], case["w"], scale=hidden ** -0.5)
    norm_dtype = case["w"] if case["w"] in WEIGHT_DTYPES else "float32"
    return ([_randn(rng, t, hidden), _randn(rng, t, hidden), paddle.to_tensor(rows),
             _randn(rng, hidden, dtype=norm_dtype), weight], [1e-5, case["n"]])


def _plain_final_logits(h, delta, last_rows, norm_weight, lm_head, epsilon, n):
    from paddlellm import ops

    def run():
        normed = _rms_norm_in_paddle(paddle.gather(delta, last_rows) + paddle.gather(h, last_rows), norm_weight,
                                     epsilon)
        return ops.linear(normed, lm_head, n)
    return run


# ---------------------------------------------------------------- the table

PAGED_IO = ("block_tables", "seq_lens_this_time", "seq_lens_decoder")
OPS = (
    OpSpec("write_cache_kv", "exact", "write this step's K/V rows into their cache blocks",
           ("key", "value", "key_cache", "value_cache") + PAGED_IO + ("key_scale", "value_scale"), (),
           ("key_cache_out", "value_cache_out"), _make_write_cache_kv,
           _with_dtypes(PAGED_CASES, "cache", CACHE_DTYPES) + tuple(dict(c, cache="int8", static=True)
                                                                   for c in PAGED_CASES),
           inplace=("key_cache", "value_cache"), backends=("cpu", "hip", "npu"),
           bench_cases=(dict(seqs="decode_batch_12", kv=3, group=3, d=64, bs=64, cache="float32"),)),
    OpSpec("block_attention", "attention", "causal GQA attention of a packed batch over the block tables",
           ("q", "key_cache", "value_cache") + PAGED_IO, (), ("out",),
           _make_block_attention, _with_dtypes(PAGED_CASES, "cache", CACHE_DTYPES), isa_kernels=True,
           backends=("cpu", "hip", "npu"),
           bench_cases=(dict(seqs="decode_batch_12", kv=3, group=3, d=64, bs=64, cache="float32"),
                        dict(seqs="prompt_chunk_64", kv=3, group=3, d=64, bs=64, cache="float32"))),
    OpSpec("linear", "matmul", "x @ W, W packed in 32-column blocks", ("x", "weight"), ("n",), ("out",),
           _make_linear, LINEAR_CASES, isa_kernels=True, plain=_plain_linear, bench_cases=LINEAR_BENCH),
    OpSpec("linear_swiglu", "matmul", "silu(x @ W_gate) * (x @ W_up), gate/up blocks interleaved",
           ("x", "weight"), ("n",), ("out",), _make_linear_swiglu, LINEAR_CASES, isa_kernels=True,
           plain=_plain_linear_swiglu, bench_cases=tuple(dict(m=m, k=576, n=1536, w="float32") for m in (1, 12, 64))),
    OpSpec("weight_only_linear", "matmul", "x @ (q * scale + offset), the quantized weight as the program stores it",
           ("x", "weight", "scale", "offset"), (), ("out",), _make_weight_only_linear, WEIGHT_ONLY_CASES,
           backends=("cpu", "hip", "npu"), plain=_plain_weight_only_linear,
           bench_cases=tuple(dict(m=m, k=576, n=960, w=w) for w in ("int8", "int4_g64") for m in (1, 12, 64))),
    OpSpec("packed_embedding", "exact", "rows of W^T from the packed W (a tied embedding)", ("ids", "weight"),
           ("n",), ("out",), _make_packed_embedding,
           _with_dtypes((dict(t=1, k=7, n=70), dict(t=6, k=576, n=1000), dict(t=0, k=5, n=33)), "w", WEIGHT_DTYPES),
           plain=_plain_embedding, bench_cases=(dict(t=64, k=576, n=49152, w="float32"),)),
    OpSpec("rms_norm", "reduction", "RMSNorm over the last axis, times the weight", ("x", "weight"), ("epsilon",),
           ("out",), _make_rms_norm, NORM_CASES, backends=("cpu", "hip", "npu"), plain=_plain_rms_norm,
           bench_cases=NORM_BENCH),
    OpSpec("fused_add_rms_norm", "reduction", "residual add, then RMSNorm: (normed, sum)",
           ("x", "residual", "weight"), ("epsilon",), ("out", "residual_out"), _make_fused_add_rms_norm, NORM_CASES,
           backends=("cpu", "hip", "npu"), plain=_plain_fused_add_rms_norm, bench_cases=NORM_BENCH),
    OpSpec("rotary_embedding", "elementwise", "rotary embedding of q and k from positions and inv_freq",
           ("q", "k", "positions", "inv_freq"), ("interleaved",), ("q_out", "k_out"), _make_rotary_embedding,
           ROPE_CASES, inplace=("q", "k"), backends=("cpu", "hip", "npu"), plain=_plain_rotary_embedding,
           bench_cases=ROPE_BENCH),
    OpSpec("fused_decoder_layer", "layer", "a whole decoder layer over a packed batch (h, delta, caches in place)",
           ("h", "delta", "positions", "inv_freq", "key_cache", "value_cache") + PAGED_IO
           + ("input_norm", "qkv_proj", "o_proj", "post_attention_norm", "gate_up_proj", "down_proj", "key_scale",
              "value_scale"),
           ("epsilon", "num_heads", "intermediate_size"), ("h_out", "delta_out", "key_cache_out", "value_cache_out"),
           _make_fused_decoder_layer, LAYER_CASES, inplace=("h", "delta", "key_cache", "value_cache"), isa_kernels=True,
           bench_cases=LAYER_BENCH),
    OpSpec("packed_positions", "exact", "each packed row's position in its sequence, each sequence's last row",
           ("input_ids", "seq_lens_this_time", "seq_lens_decoder"), (), ("positions", "last_rows"),
           _make_packed_positions, POSITION_CASES, plain=_plain_packed_positions,
           bench_cases=(dict(seqs="decode_batch_12"),)),
    OpSpec("final_logits", "layer", "each sequence's last row of h + delta, RMSNorm, the packed lm_head",
           ("h", "delta", "last_rows", "norm_weight", "lm_head"), ("epsilon", "n"), ("logits",), _make_final_logits,
           FINAL_LOGITS_CASES, isa_kernels=True, plain=_plain_final_logits,
           bench_cases=(dict(t=12, s=12, hidden=576, n=49152, w="float32"),)),
    OpSpec("swiglu", "elementwise", "silu(first half) * second half", ("x",), (), ("out",), _make_swiglu,
           SWIGLU_CASES, backends=("cpu", "hip", "npu"), plain=_plain_swiglu, bench_cases=SWIGLU_BENCH),
    OpSpec("token_penalty", "exact", "repetition / frequency / presence penalties, eos banned below min length",
           ("logits", "pre_ids", "penalty_scores", "frequency_scores", "presence_scores", "min_len", "cur_len",
            "eos_token_id"), (), ("out",), make_token_penalty,
           PENALTY_CASES,
           backends=GENERATION_BACKENDS, plain=plain_token_penalty,
           bench_cases=tuple(dict(s=s, v=49152, l=256, e=1) for s in (1, 12, 64))),
    OpSpec("argmax", "exact", "greedy ids: the largest logit per row, the lowest id on ties", ("logits",), (),
           ("ids",), make_argmax, ARGMAX_CASES, backends=GENERATION_BACKENDS, plain=plain_argmax,
           bench_cases=tuple(dict(s=s, v=49152, logits="llm") for s in (1, 12, 64))),
    OpSpec("top_p_sampling", "exact", "temperature, top-k, top-p, then the inverse-CDF pick of a given uniform",
           ("logits", "temperature", "top_k", "top_p", "uniform"), (), ("ids",), make_top_p_sampling, TOP_P_CASES,
           isa_kernels=True, backends=GENERATION_BACKENDS, plain=plain_top_p_sampling, bench_cases=TOP_P_BENCH),
    OpSpec("stop_flags", "exact", "a row stops at an eos id or at its max length",
           ("next_tokens", "eos_token_id", "cur_len", "max_len", "stop_flags"), (), ("stop_flags_out",),
           make_stop_flags, STOP_CASES, backends=GENERATION_BACKENDS, plain=plain_stop_flags,
           bench_cases=tuple(dict(s=s, e=1) for s in (12, 64))),
)
BY_NAME = {op.name: op for op in OPS}


def case_label(case):
    """A short id for a case: its values joined ('x5x576-wfloat32')."""
    parts = []
    for key, value in case.items():
        if isinstance(value, tuple):
            value = "x".join(map(str, value))
        parts.append(f"{key}{value}")
    return "-".join(parts)
