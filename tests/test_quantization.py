"""paddlellm/quantization.py: what --quant_type stores."""
import numpy as np
import pytest

from paddlellm.errors import UserError
from paddlellm.quantization import check_group_size, check_quant_type, group_size_for, quantize_int4, quantize_int8


def test_int8_per_column_reconstructs_within_half_a_step():
    rng = np.random.RandomState(0)
    w = rng.randn(96, 40).astype(np.float32) * np.linspace(0.01, 3, 40, dtype=np.float32)  # columns of every scale
    w[:, 7] = 0.0
    q, scale = quantize_int8(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (40,)
    assert q.min() >= -127 and q.max() <= 127  # symmetric: -128 never used
    assert scale[7] == 1.0 and not q[:, 7].any()  # an all-zero column: scale 1, codes 0
    # each column's largest magnitude maps to +-127 exactly; rounding to nearest: error at most half a step
    assert (np.abs(q).max(axis=0)[np.arange(40) != 7] == 127).all()
    assert (np.abs(q * scale - w) <= scale / 2 * (1 + 1e-6)).all()


def test_int8_per_group_scales_each_group_on_its_own():
    """With a group size each column's groups of rows get their own scale: a group of small weights keeps its
    precision next to a group of large ones (one scale a column would round it to a few steps)."""
    rng = np.random.RandomState(2)
    w = rng.randn(64, 8).astype(np.float32)
    w[:32] *= 1e-3
    q, scale = quantize_int8(w, 32)
    assert q.dtype == np.int8 and scale.shape == (2, 8)
    step = np.repeat(scale, 32, axis=0)
    assert (np.abs(q).reshape(2, 32, 8).max(axis=1) == 127).all() and (np.abs(q * step - w) <= step / 2 * 1.000001).all()
    np.testing.assert_allclose(scale[0] / scale[1], np.abs(w[:32]).max(0) / np.abs(w[32:]).max(0), rtol=1e-6)


def test_group_size_for_each_quant_type():
    assert group_size_for("weight_only_int4", None) == 32 and group_size_for("weight_only_int4", 64) == 64
    assert group_size_for("weight_only_int8", None) is None and group_size_for("weight_only_int8", 32) == 32
    assert group_size_for("a8w8", None) is None and group_size_for(None, None) is None
    for quant_type in ("a8w8", None):
        with pytest.raises(UserError, match="--group_size 32 applies to --quant_type weight_only_int4 or "):
            group_size_for(quant_type, 32)


def test_int4_per_group_keeps_each_groups_ends_and_rounds_within_half_a_step():
    """Scale and offset are float16 values (as Q4_1's d and m, and the kernels' blocks hold them), so each weight
    is within half a step plus their float16 rounding (2^-11 relative: of the offset, and of the scale times up
    to 15 steps), the group's ends included."""
    rng = np.random.RandomState(1)
    w = rng.randn(64, 24).astype(np.float32)
    w[32:, 5] = 0.25  # a constant group: scale 1, q 0, the value in the offset
    q, scale, offset = quantize_int4(w, 32)
    assert q.dtype == np.int8 and scale.shape == offset.shape == (2, 24) and q.min() >= 0 and q.max() <= 15
    for stored in (scale, offset):
        np.testing.assert_array_equal(stored.astype(np.float16).astype(np.float32), stored)
    step, low = np.repeat(scale, 32, axis=0), np.repeat(offset, 32, axis=0)
    rebuilt = q * step + low
    assert (np.abs(rebuilt - w) <= step / 2 + (np.abs(low) + 15 * step) * 2.0 ** -11 + 1e-6).all()
    groups = w.reshape(2, 32, 24)
    np.testing.assert_allclose(offset, groups.min(axis=1), rtol=2.0 ** -11)  # each group's smallest value (q = 0)
    assert scale[1, 5] == 1.0 and not q[32:, 5].any() and offset[1, 5] == np.float32(0.25)


def test_int4_groups_must_be_multiples_of_32_dividing_every_input_size():
    check_group_size(32, [576, 1536])
    for size in (16, 0, 100, 128):  # 128 does not divide 576
        with pytest.raises(UserError, match=f"--group_size {size}: groups must be a multiple of 32 dividing"):
            check_group_size(size, [576, 1536])


def test_unknown_quant_type_is_a_user_error():
    assert check_quant_type(None) is None and check_quant_type("weight_only_int8") == "weight_only_int8"
    with pytest.raises(UserError, match="--quant_type a8w4 is not supported"):
        check_quant_type("a8w4")


def test_a8w8_needs_input_sizes_in_blocks_of_32():
    from paddlellm.quantization import check_a8w8_sizes

    check_a8w8_sizes([576, 1536])
    with pytest.raises(UserError, match="input sizes 40 are not multiples of 32 \\(use weight_only_int8\\)"):
        check_a8w8_sizes([64, 40])
