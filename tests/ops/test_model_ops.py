"""The model ops (rms_norm, fused_add_rms_norm, rotary_embedding, swiglu) beyond the table's checks
(tests/ops/test_spec.py runs every case of paddlellm/ops/spec.py against the references and the plain ops):
extreme values, rotary against model.py's own path with each rope scaling, in-place behaviour, threads,
errors and the exported program.

Tolerances (SPEC.md says why): rms_norm and fused_add_rms_norm 2e-6 relative per element (float32 sum of
squares and rsqrt vs float64); the residual sum exact; swiglu 1e-6 relative (a few float32 roundings and
the kernel's exp, within 1 ulp); rotary 1e-6 relative + 1e-6 absolute on unit-normal
inputs (float32 cos/sin within an ulp, and a*cos - b*sin can cancel, so an absolute part is needed).
"""
import re

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddlellm import ops
from paddlellm.models.llama import model as llama
from paddlellm.models.llama.config import LlamaConfig
from paddlellm.ops.reference import rms_norm_ref, rotary_embedding_ref, swiglu_ref
from paddlellm.ops.spec import BY_NAME

NORM_RTOL = 2e-6
SWIGLU_RTOL = 1e-6
ROPE_TOL = dict(rtol=1e-6, atol=1e-6)


def randn(rng, *shape, scale=1.0):
    return paddle.to_tensor((rng.randn(*shape) * scale).astype("float32"))


# x shapes [..., H]: every row count with every width, then 3-D ones (the leading dims are flattened)
# ---------------------------------------------------------------- rms_norm


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_rms_norm_scales_and_zero_rows(scale):
    """Tiny and large inputs stay within tolerance; an all-zero row gives zeros (rsqrt(eps) is finite)."""
    rng = np.random.RandomState(7)
    x = randn(rng, 9, 576, scale=scale)
    x[4] = 0.0
    weight = randn(rng, 576)
    out = ops.rms_norm(x, weight, 1e-6).numpy()
    np.testing.assert_allclose(out, rms_norm_ref(x, weight, 1e-6).numpy(), rtol=NORM_RTOL, atol=0)
    assert np.all(out[4] == 0)


def test_rms_norm_epsilon_is_used():
    x = paddle.full([2, 4], 0.01)
    w = paddle.ones([4])
    for eps in (1e-6, 1e-2):
        np.testing.assert_allclose(ops.rms_norm(x, w, eps).numpy(), rms_norm_ref(x, w, eps).numpy(), rtol=NORM_RTOL)
    assert not np.allclose(ops.rms_norm(x, w, 1e-6).numpy(), ops.rms_norm(x, w, 1e-2).numpy())


# ---------------------------------------------------------------- fused_add_rms_norm


def test_fused_add_rms_norm_sums_exactly_and_leaves_its_inputs():
    """residual_out is the float32 sum itself (test_spec.py checks the normed output); not in place."""
    rng = np.random.RandomState(100)
    x, residual, weight = randn(rng, 13, 576), randn(rng, 13, 576, scale=4.0), randn(rng, 576)
    x_before, residual_before = x.numpy().copy(), residual.numpy().copy()
    _, residual_out = ops.fused_add_rms_norm(x, residual, weight, 1e-6)
    assert np.array_equal(residual_out.numpy(), (x + residual).numpy())
    assert np.array_equal(x.numpy(), x_before) and np.array_equal(residual.numpy(), residual_before)


# ---------------------------------------------------------------- swiglu


def test_swiglu_extreme_gates():
    """|gate| up to 200: within tolerance where exp(-gate) is a normal float32 (|gate| <= 86); beyond, the
    kernel's exp saturates at e^86 / e^-86, so out = gate * up exactly for gate > 86 and |out| <= |gate * up|
    * e^-86 for gate < -86 (the float64 truth there is smaller still, and float32 glibc gives -0). NaN stays NaN."""
    gate = np.concatenate([np.linspace(-200, 200, 4001), [-86.5, -86, -85.9, 85.9, 86, 86.5, np.nan]]).astype("float32")
    up = np.random.RandomState(4).randn(gate.size).astype("float32")
    x = paddle.to_tensor(np.concatenate([gate, up])[None, :])
    out, ref = ops.swiglu(x).numpy()[0], swiglu_ref(x).numpy()[0]
    normal = np.abs(gate) <= 86
    np.testing.assert_allclose(out[normal], ref[normal], rtol=SWIGLU_RTOL, atol=0)
    high, low = gate > 86, gate < -86
    assert np.array_equal(out[high], (gate * up)[high])
    assert np.all(np.abs(out[low]) <= np.abs(gate * up)[low] * 4.5e-38)  # e^-86 = 4.47e-38
    assert np.isnan(out[-1])


def test_paddle_swiglu_with_one_input_gates_with_the_first_half():
    """What the op copies: on Paddle 3.3.1, F.swiglu(x) = silu(x[..., :F]) * x[..., F:] (not the halves swapped)."""
    x = randn(np.random.RandomState(3), 4, 20)
    a, b = paddle.chunk(x, 2, axis=-1)
    np.testing.assert_allclose(F.swiglu(x).numpy(), (F.silu(a) * b).numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(F.swiglu(x).numpy(), (F.silu(b) * a).numpy())


# ---------------------------------------------------------------- rotary_embedding


def inv_freq_of(head_dim, theta=10000.0, rope_scaling=None):
    config = LlamaConfig(vocab_size=8, hidden_size=head_dim, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, head_dim=head_dim, rope_theta=theta,
                         rope_scaling=rope_scaling)
    return paddle.to_tensor(llama.rope_inv_freq(config))


def paddle_rope(q, k, positions, inv_freq):
    """Rotate-half in plain Paddle ops (freqs = positions * inv_freq in float32, paddle.cos/sin): the spec's plain."""
    return BY_NAME["rotary_embedding"].plain(q, k, positions, inv_freq, False)()


def rope_batch(rng, tokens, heads, kv_heads, head_dim, max_position=8192):
    positions = rng.randint(0, max_position + 1, tokens).astype("int32")
    if tokens >= 2:
        positions[:2] = [0, max_position]
    return randn(rng, tokens, heads, head_dim), randn(rng, tokens, kv_heads, head_dim), paddle.to_tensor(positions)


@pytest.mark.parametrize("rope_scaling", [None, {"rope_type": "linear", "factor": 4.0},
                                          {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 1024}],
                         ids=["default", "linear", "llama3"])
@pytest.mark.parametrize("head_dim", [20, 64, 72])
def test_rotary_embedding_matches_plain_paddle(head_dim, rope_scaling):
    """Against the same rotation in plain Paddle ops (positions up to 8192; scaling folded into inv_freq)."""
    rng = np.random.RandomState(head_dim)
    q, k, positions = rope_batch(rng, 100, 9, 3, head_dim)
    inv_freq = inv_freq_of(head_dim, theta=500000.0 if rope_scaling else 10000.0, rope_scaling=rope_scaling)
    want_q, want_k = paddle_rope(q, k, positions, inv_freq)
    ops.rotary_embedding(q, k, positions, inv_freq)
    np.testing.assert_allclose(q.numpy(), want_q.numpy(), **ROPE_TOL)
    np.testing.assert_allclose(k.numpy(), want_k.numpy(), **ROPE_TOL)


def test_rotary_embedding_layouts_differ_and_position_zero_is_identity():
    rng = np.random.RandomState(5)
    q, k, _ = rope_batch(rng, 3, 2, 1, 8)
    positions = paddle.to_tensor(np.array([0, 3, 7], np.int32))
    inv_freq = inv_freq_of(8)
    q0, k0 = q.numpy().copy(), k.numpy().copy()
    a_q, _ = ops.rotary_embedding(q.clone(), k.clone(), positions, inv_freq, False)
    b_q, _ = ops.rotary_embedding(q.clone(), k.clone(), positions, inv_freq, True)
    assert np.array_equal(a_q.numpy()[0], q0[0]) and np.array_equal(b_q.numpy()[0], q0[0])  # cos 0 = 1, sin 0 = 0
    assert not np.allclose(a_q.numpy()[1:], b_q.numpy()[1:])
    # GPT-J pairs are rotate-half pairs after moving the even lanes first and the odd ones last
    perm = np.concatenate([np.arange(0, 8, 2), np.arange(1, 8, 2)])
    c_q, _ = ops.rotary_embedding(paddle.to_tensor(q0[..., perm]), paddle.to_tensor(k0[..., perm]), positions,
                                  inv_freq, False)
    assert np.array_equal(c_q.numpy(), b_q.numpy()[..., perm])


def test_rotary_embedding_is_in_place_in_dygraph():
    rng = np.random.RandomState(11)
    q, k, positions = rope_batch(rng, 13, 9, 3, 64)
    inv_freq = inv_freq_of(64)
    ref_q, ref_k = rotary_embedding_ref(q, k, positions, inv_freq)
    ptrs = q.data_ptr(), k.data_ptr()
    q_out, k_out = ops.rotary_embedding(q, k, positions, inv_freq)
    assert (q.data_ptr(), k.data_ptr()) == ptrs
    assert (q_out.data_ptr(), k_out.data_ptr()) == ptrs  # the outputs alias the inputs
    np.testing.assert_allclose(q.numpy(), ref_q.numpy(), **ROPE_TOL)  # the passed tensors themselves changed
    np.testing.assert_allclose(k.numpy(), ref_k.numpy(), **ROPE_TOL)


def test_rotary_embedding_refuses_a_strided_view():
    """Paddle gives a custom op a contiguous copy of a strided view: the view would silently stay unrotated."""
    rng = np.random.RandomState(12)
    qk = randn(rng, 5, 12, 64)
    q, k = qk[:, :9, :], qk[:, 9:, :]
    assert not q.is_contiguous()
    with pytest.raises(ValueError, match=r"q \[5, 9, 64\] is a non-contiguous view"):
        ops.rotary_embedding(q, k, paddle.arange(5, dtype="int32"), inv_freq_of(64))


# ---------------------------------------------------------------- threads, errors


@pytest.fixture
def two_threads():
    from paddle.base import core

    before = ops.num_threads()
    core.set_num_threads(2)
    assert ops.num_threads() == 2
    yield
    core.set_num_threads(before)


def test_two_threads_give_the_same_bits(two_threads):
    """Calls big enough to run on both threads (rows * width > 2^15) match the one-thread results exactly."""
    from paddle.base import core

    rng = np.random.RandomState(21)
    x, residual, weight = randn(rng, 300, 576), randn(rng, 300, 576), randn(rng, 576).astype("bfloat16")
    gate_up = randn(rng, 300, 2 * 576)
    q, k, positions = rope_batch(rng, 300, 9, 3, 64)
    inv_freq = inv_freq_of(64)

    def run_all():
        rq, rk = ops.rotary_embedding(q.clone(), k.clone(), positions, inv_freq)
        out, res = ops.fused_add_rms_norm(x, residual, weight, 1e-5)
        return [t.numpy() for t in (ops.rms_norm(x, weight, 1e-5), out, res, ops.swiglu(gate_up), rq, rk)]

    two = run_all()
    core.set_num_threads(1)
    one = run_all()
    for a, b in zip(one, two):
        assert np.array_equal(a, b)


def test_bad_inputs_are_clear_errors():
    rng = np.random.RandomState(0)
    x, w = randn(rng, 3, 64), randn(rng, 64)
    with pytest.raises(Exception, match=re.escape("paddlellm_rms_norm: weight must be [64] (x's last dim), got [63]")):
        ops.rms_norm(x, w[:63], 1e-6)
    with pytest.raises(Exception, match="paddlellm_rms_norm: x must be float32, got float64"):
        ops.rms_norm(x.astype("float64"), w, 1e-6)
    with pytest.raises(Exception, match="paddlellm_rms_norm: weight must be float32 or bfloat16, got float16"):
        ops.rms_norm(x, w.astype("float16"), 1e-6)
    with pytest.raises(Exception, match=re.escape("paddlellm_fused_add_rms_norm: residual must have x's shape [3, 64], "
                                                  "got [3, 32]")):
        ops.fused_add_rms_norm(x, x[:, :32].contiguous(), w, 1e-6)
    with pytest.raises(Exception, match=re.escape("paddlellm_swiglu: x must be [..., 2 * F] (an even last dim), "
                                                  "got [3, 63]")):
        ops.swiglu(x[:, :63].contiguous())
    q, k, positions = rope_batch(rng, 4, 4, 2, 20)
    with pytest.raises(Exception, match="paddlellm_rotary_embedding: positions must be int32, got int64"):
        ops.rotary_embedding(q, k, positions.astype("int64"), inv_freq_of(20))
    with pytest.raises(Exception, match=re.escape("paddlellm_rotary_embedding: inv_freq must be [10] (head_dim / 2), "
                                                  "got [32]")):
        ops.rotary_embedding(q, k, positions, inv_freq_of(64))
    with pytest.raises(Exception, match=re.escape("paddlellm_rotary_embedding: k [3, 2, 20] must match q [4, 4, 20] "
                                                  "in tokens and head_dim")):
        ops.rotary_embedding(q, k[:3].contiguous(), positions, inv_freq_of(20))
    with pytest.raises(Exception, match="paddlellm_rotary_embedding: head_dim must be even, got 7"):
        ops.rotary_embedding(randn(rng, 4, 1, 7), randn(rng, 4, 1, 7), positions, inv_freq_of(6))


# ---------------------------------------------------------------- exported program


class _Block(paddle.nn.Layer):
    """All four ops in one program: RoPE in place on the fed q/k, norm, residual add + norm, SwiGLU."""

    def __init__(self, hidden):
        super().__init__()
        self.w1 = self.create_parameter([hidden], dtype="float32")
        self.w2 = self.create_parameter([hidden], dtype="bfloat16")

    def forward(self, x, residual, q, k, positions, inv_freq):
        q, k = ops.rotary_embedding(q, k, positions, inv_freq)
        h = ops.rms_norm(x, self.w1, 1e-5)
        out, residual = ops.fused_add_rms_norm(h, residual, self.w2, 1e-6)
        return ops.swiglu(out), residual, q, k


def _block_inputs(seed, tokens=5, hidden=64, heads=4, kv_heads=2, head_dim=20):
    rng = np.random.RandomState(seed)
    q, k, positions = rope_batch(rng, tokens, heads, kv_heads, head_dim)
    return [randn(rng, tokens, hidden), randn(rng, tokens, hidden), q, k, positions, inv_freq_of(head_dim)]


def _predictor(path):
    import paddle.inference as pi

    ops.load_library()  # needed before create_predictor (a no-op here: tracing loaded it)
    config = pi.Config(str(path) + ".json", str(path) + ".pdiparams")
    config.disable_gpu()
    config.disable_mkldnn()
    config.enable_new_ir(True)
    config.enable_new_executor(True)
    config.disable_glog_info()
    config.set_cpu_math_library_num_threads(2)
    return pi.create_predictor(config)


def test_exported_program_runs_all_ops_and_rotates_the_fed_tensors_in_place(tmp_path):
    from paddle.static import InputSpec

    block = _Block(64)
    block.eval()  # the ops have no grad kernels: traced in training mode, to_static would try to build one
    block.w1.set_value(paddle.to_tensor(np.random.RandomState(1).randn(64).astype("float32")))
    block.w2.set_value(paddle.to_tensor(np.random.RandomState(2).randn(64).astype("float32")).astype("bfloat16"))
    spec = [InputSpec([None, 64], "float32", "x"), InputSpec([None, 64], "float32", "residual"),
            InputSpec([None, 4, 20], "float32", "q"), InputSpec([None, 2, 20], "float32", "k"),
            InputSpec([None], "int32", "positions"), InputSpec([10], "float32", "inv_freq")]
    paddle.jit.save(paddle.jit.to_static(block, input_spec=spec, full_graph=True), str(tmp_path / "block"))
    program = (tmp_path / "block.json").read_text()
    for name in ("paddlellm_rotary_embedding_", "paddlellm_rms_norm", "paddlellm_fused_add_rms_norm",
                 "paddlellm_swiglu"):
        assert name in program

    predictor = _predictor(tmp_path / "block")
    for seed, tokens in ((1, 5), (2, 13)):  # a second run with another token count (dynamic dims)
        feed = _block_inputs(seed, tokens=tokens)
        want = [t.numpy() for t in block(*[t.clone() for t in feed])]  # dygraph, on copies
        ptrs = feed[2].data_ptr(), feed[3].data_ptr()
        outs = predictor.run(feed)
        assert (feed[2].data_ptr(), feed[3].data_ptr()) == ptrs
        for got, expected in zip(outs, want):
            assert np.array_equal(got.numpy(), expected)
        assert np.array_equal(feed[2].numpy(), want[2]) and np.array_equal(feed[3].numpy(), want[3])  # fed q, k


class _RopeUnused(paddle.nn.Layer):
    def forward(self, q, k, positions, inv_freq):
        ops.rotary_embedding(q, k, positions, inv_freq)  # outputs dropped; q and k read afterwards
        return q * 1.0, k * 1.0, positions + 0, inv_freq * 1.0


def test_jit_save_prunes_an_in_place_op_whose_outputs_are_unused(tmp_path):
    """The pitfall SPEC.md warns of: in dygraph q and k would be rotated; the saved program drops the op, because
    only its outputs (not later reads of its inputs) count as uses."""
    from paddle.static import InputSpec

    spec = [InputSpec([None, 4, 20], "float32", "q"), InputSpec([None, 2, 20], "float32", "k"),
            InputSpec([None], "int32", "positions"), InputSpec([10], "float32", "inv_freq")]
    static = paddle.jit.to_static(_RopeUnused(), input_spec=spec, full_graph=True)
    traced = [op.name() for op in static.forward.concrete_program.main_program.global_block().ops]
    assert "custom_op.paddlellm_rotary_embedding_" in traced  # traced, then
    paddle.jit.save(static, str(tmp_path / "rope"))
    assert "paddlellm_rotary_embedding" not in (tmp_path / "rope.json").read_text()
