"""Weight quantization at export (no calibration data): what each --quant_type stores for a projection [K, N].

weight_only_int8: per output column, symmetric: scale = max |w| / 127, q = round(w / scale) in [-127, 127]
(int8), W ~ q * scale. Activations stay float32: the kernels widen q and apply the scales to their sums.
"""
import numpy as np

from paddlellm.errors import UserError

QUANT_TYPES = ("weight_only_int8",)


def check_quant_type(quant_type):
    """None (no quantization) or one of QUANT_TYPES; else a UserError."""
    if quant_type is not None and quant_type not in QUANT_TYPES:
        raise UserError(f"--quant_type {quant_type} is not supported (choose one of: {', '.join(QUANT_TYPES)})")
    return quant_type


def quantize_int8(weight):
    """[K, N] float -> (q [K, N] int8, scale [N] float32), per column: q * scale ~ weight. An all-zero column
    gets scale 1 (q 0)."""
    w = np.asarray(weight, np.float32)
    scale = np.abs(w).max(axis=0) / 127.0 if w.shape[0] else np.zeros(w.shape[1], np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale
