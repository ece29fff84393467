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

BACKENDS = ("cpu", "hip", "npu")


def _matmul_tolerance(case):
    # float32 sums of k products against float64: ~sqrt(k) roundings of ~eps * (sum of |terms| ~ k)
    return 1e-5, 1e-7 * case["k"] ** 1.5 + 1e-6


# (rtol, atol) per kind of op, as a function of the case. Why these numbers: SPEC.md, per op.
TOLERANCE = {
    "exact": lambda case: (0.0, 0.0),             # copies, index ops
    "elementwise": lambda case: (1e-6, 1e-6),     # a few float32 roundings; rotary can cancel (atol)
    "reduction": lambda case: (2e-6, 1e-6),       # float32 sums of squares and rsqrt
    "matmul": _matmul_tolerance,
    "attention": lambda case: (0.0, 2e-5),        # float32 softmax and sums over the cached tokens
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
CACHE_DTYPES = ("float32", "bfloat16")


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
    return dict(q=_randn(rng, tokens, kvh * case["group"], d), key=_randn(rng, tokens, kvh, d),
                value=_randn(rng, tokens, kvh, d), key_cache=_randn(rng, num_blocks, kvh, bs, d, dtype=dtype),
                value_cache=_randn(rng, num_blocks, kvh, bs, d, dtype=dtype),
                block_tables=paddle.to_tensor(tables),
                seq_lens_this_time=paddle.to_tensor(np.array([n for _, n in seqs], np.int32)),
                seq_lens_decoder=paddle.to_tensor(np.array([past for past, _ in seqs], np.int32)))


def _make_write_cache_kv(case, rng):
    b = paged_batch(case, rng)
    return [b[n] for n in ("key", "value", "key_cache", "value_cache", "block_tables", "seq_lens_this_time",
                           "seq_lens_decoder")], []


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
LINEAR_CASES = _with_dtypes(tuple(dict(m=m, k=k, n=n) for m, k, n in LINEAR_SHAPES), "w", WEIGHT_DTYPES)
LINEAR_BENCH = tuple(dict(m=m, k=576, n=n, w="float32") for m in (1, 12, 64) for n in (960, 49152))


def _make_linear(case, rng):
    from paddlellm import ops

    w = _randn(rng, case["k"], case["n"], dtype=case["w"])
    return [_randn(rng, case["m"], case["k"]), ops.pack_linear_weight(w)], [case["n"]]


def _make_linear_swiglu(case, rng):
    from paddlellm import ops

    w = _randn(rng, case["k"], 2 * case["n"], scale=case["k"] ** -0.5, dtype=case["w"])  # unit-scale gate/up
    return [_randn(rng, case["m"], case["k"]), ops.pack_swiglu_weight(w)], [case["n"]]


def _make_packed_embedding(case, rng):
    from paddlellm import ops

    ids = rng.randint(0, case["n"], case["t"]).astype(np.int64)
    ids[: min(2, case["t"])] = [0, case["n"] - 1][: min(2, case["t"])]  # both ends of the vocabulary
    w = _randn(rng, case["k"], case["n"], dtype=case["w"])
    return [paddle.to_tensor(ids), ops.pack_linear_weight(w)], [case["n"]]


def _plain_linear(x, packed, n):
    blocks, k, width = packed.shape
    w = packed.astype("float32").transpose([1, 0, 2]).reshape([k, blocks * width])[:, :n]
    return lambda: paddle.matmul(x, w)


def _plain_linear_swiglu(x, packed, n):
    blocks, k, width = packed.shape
    gate, up = (packed[i::2].transpose([1, 0, 2]).reshape([k, -1])[:, :n] for i in (0, 1))
    w = paddle.concat([gate, up], axis=1).astype("float32")
    return lambda: paddle.nn.functional.swiglu(paddle.matmul(x, w))


def _plain_embedding(ids, packed, n):
    blocks, k, width = packed.shape
    table = packed.astype("float32").transpose([1, 0, 2]).reshape([k, blocks * width])[:, :n].t().contiguous()
    return lambda: paddle.nn.functional.embedding(ids, table)


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


def _plain_rms_norm(x, weight, eps):
    from paddlellm.models.llama.model import rms_norm

    return lambda: rms_norm(x, weight, eps)


def _plain_fused_add_rms_norm(x, residual, weight, eps):
    from paddlellm.models.llama.model import rms_norm

    return lambda: (rms_norm(x + residual, weight, eps), x + residual)


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
    from paddlellm.models.llama.model import rope

    def run():  # model.py's plain path: cos/sin of the positions, rope on q and k together
        freqs = positions.astype("float32").unsqueeze(-1) * inv_freq
        cos = paddle.cos(paddle.concat([freqs, freqs], axis=-1)).unsqueeze(-2)
        sin = paddle.sin(freqs)
        sin_signed = paddle.concat([-sin, sin], axis=-1).unsqueeze(-2)
        return paddle.split(rope(paddle.concat([q, k], axis=1), cos, sin_signed), [q.shape[1], k.shape[1]], axis=1)
    return run


SWIGLU_SHAPES = tuple((rows, 2 * f) for rows in (0, 1, 5, 13, 100) for f in (1, 7, 64, 576, 1536)) + (
    (1, 1, 3072), (2, 13, 128), (3, 0, 14))
SWIGLU_CASES = tuple(dict(x=s) for s in SWIGLU_SHAPES)
SWIGLU_BENCH = tuple(dict(x=(m, 3072)) for m in (1, 12, 64))


def _make_swiglu(case, rng):
    return [_randn(rng, *case["x"], scale=3.0)], []


def _plain_swiglu(x):
    return lambda: paddle.nn.functional.swiglu(x)


# ---------------------------------------------------------------- the table

PAGED_IO = ("block_tables", "seq_lens_this_time", "seq_lens_decoder")
OPS = (
    OpSpec("write_cache_kv", "exact", "write this step's K/V rows into their cache blocks",
           ("key", "value", "key_cache", "value_cache") + PAGED_IO, (), ("key_cache_out", "value_cache_out"),
           _make_write_cache_kv, _with_dtypes(PAGED_CASES, "cache", CACHE_DTYPES),
           inplace=("key_cache", "value_cache"),
           bench_cases=(dict(seqs="decode_batch_12", kv=3, group=3, d=64, bs=64, cache="float32"),)),
    OpSpec("block_attention", "attention", "causal GQA attention of a packed batch over the block tables",
           ("q", "key_cache", "value_cache") + PAGED_IO, (), ("out",),
           _make_block_attention, _with_dtypes(PAGED_CASES, "cache", CACHE_DTYPES), isa_kernels=True,
           bench_cases=(dict(seqs="decode_batch_12", kv=3, group=3, d=64, bs=64, cache="float32"),
                        dict(seqs="prompt_chunk_64", kv=3, group=3, d=64, bs=64, cache="float32"))),
    OpSpec("linear", "matmul", "x @ W, W packed in 32-column blocks", ("x", "weight"), ("n",), ("out",),
           _make_linear, LINEAR_CASES, isa_kernels=True, plain=_plain_linear, bench_cases=LINEAR_BENCH),
    OpSpec("linear_swiglu", "matmul", "silu(x @ W_gate) * (x @ W_up), gate/up blocks interleaved",
           ("x", "weight"), ("n",), ("out",), _make_linear_swiglu, LINEAR_CASES, isa_kernels=True,
           plain=_plain_linear_swiglu, bench_cases=tuple(dict(m=m, k=576, n=1536, w="float32") for m in (1, 12, 64))),
    OpSpec("packed_embedding", "exact", "rows of W^T from the packed W (a tied embedding)", ("ids", "weight"),
           ("n",), ("out",), _make_packed_embedding,
           _with_dtypes((dict(t=1, k=7, n=70), dict(t=6, k=576, n=1000), dict(t=0, k=5, n=33)), "w", WEIGHT_DTYPES),
           plain=_plain_embedding, bench_cases=(dict(t=64, k=576, n=49152, w="float32"),)),
    OpSpec("rms_norm", "reduction", "RMSNorm over the last axis, times the weight", ("x", "weight"), ("epsilon",),
           ("out",), _make_rms_norm, NORM_CASES, plain=_plain_rms_norm,
           bench_cases=NORM_BENCH),
    OpSpec("fused_add_rms_norm", "reduction", "residual add, then RMSNorm: (normed, sum)",
           ("x", "residual", "weight"), ("epsilon",), ("out", "residual_out"), _make_fused_add_rms_norm, NORM_CASES,
           plain=_plain_fused_add_rms_norm, bench_cases=NORM_BENCH),
    OpSpec("rotary_embedding", "elementwise", "rotary embedding of q and k from positions and inv_freq",
           ("q", "k", "positions", "inv_freq"), ("interleaved",), ("q_out", "k_out"), _make_rotary_embedding,
           ROPE_CASES, inplace=("q", "k"), plain=_plain_rotary_embedding,
           bench_cases=ROPE_BENCH),
    OpSpec("swiglu", "elementwise", "silu(first half) * second half", ("x",), (), ("out",), _make_swiglu,
           SWIGLU_CASES, plain=_plain_swiglu, bench_cases=SWIGLU_BENCH),
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
