"""paddlellm/quantization.py: what --quant_type stores."""
import numpy as np
import pytest

from paddlellm.errors import UserError
from paddlellm.quantization import check_quant_type, quantize_int8


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


def test_unknown_quant_type_is_a_user_error():
    assert check_quant_type(None) is None and check_quant_type("weight_only_int8") == "weight_only_int8"
    with pytest.raises(UserError, match="--quant_type a8w4 is not supported"):
        check_quant_type("a8w4")
