"""Weight quantization at export (no calibration data): what each --quant_type stores for a projection [K, N].

weight_only_int8: per output column (with --group_size, per column and group of that many rows, as llama.cpp's
Q8_0 per block of 32), symmetric: scale = max |w| / 127, q = round(w / scale) in [-127, 127] (int8), W ~ q * scale.
Activations stay float32: the kernels widen q and apply the scales (per column to their sums, per group to the
weights).
weight_only_int4: per output column and group of --group_size rows (along K), asymmetric, as llama.cpp's Q4_1
does it per block of 32: offset = min w, scale = (max w - min w) / 15, both rounded to float16 (as Q4_1 stores
d and m; the CPU kernels read them so), q = round((w - offset) / scale) in [0, 15] (4 bits); W ~ q * scale +
offset. The int4 kernels multiply int8 activations (per row and block of 32 values, as llama.cpp's Q8), the
offsets the float x.
a8w8: the weights as weight_only_int8 per column; the activations quantized to int8 on the fly, per token and block
of 32 values (xs = max |x| / 127 over the block, as the int4 kernels and llama.cpp's Q8_0 products do; no
calibration data), so the products are int8 dot products. One scale for the whole token measured +4.1% perplexity
on SmolLM2 (outliers in a few channels), blocks of 32 +0.7%.
"""
import numpy as np

from paddlellm.errors import UserError

QUANT_TYPES = ("weight_only_int8", "weight_only_int4", "a8w8")
DEFAULT_GROUP_SIZE = 32


CACHEKV_INT8_TYPES = ("dynamic", "static")


def check_cachekv_int8_type(kind, device="cpu"):
    """None (a float cache), "dynamic" (each token's K and V rows of each head stored as int8 with their own scale,
    max |x| / 127, computed as they are written: csrc/cpu/attention_kernel.h) or "static" (one scale per layer
    and head, calibrated at export: paddlellm.export.calibration); else a UserError."""
    if kind not in (None,) + CACHEKV_INT8_TYPES:
        raise UserError(f"--cachekv_int8_type {kind} is not supported (choose {' or '.join(CACHEKV_INT8_TYPES)})")
    if kind and device != "cpu":
        raise UserError(f"--cachekv_int8_type {kind}: the int8 KV cache has CPU kernels only, not the {device}'s "
                        "(export for --device cpu, or drop --cachekv_int8_type)")
    return kind


def group_size_for(quant_type, group_size):
    """The rows per scale a --quant_type stores with --group_size `group_size` (None: not given): int4 groups of 32 by
    default; int8 per column (None) unless given (as Q8_0's groups of 32); a8w8 per column only."""
    if quant_type == "weight_only_int4":
        return DEFAULT_GROUP_SIZE if group_size is None else group_size
    if group_size is not None and quant_type != "weight_only_int8":
        raise UserError(f"--group_size {group_size} applies to --quant_type weight_only_int4 or weight_only_int8 "
                        f"(rows per scale), not to {quant_type or 'an unquantized export'} (drop --group_size)")
    return group_size


def check_quant_type(quant_type):
    """None (no quantization) or one of QUANT_TYPES; else a UserError."""
    if quant_type is not None and quant_type not in QUANT_TYPES:
        raise UserError(f"--quant_type {quant_type} is not supported (choose one of: {', '.join(QUANT_TYPES)})")
    return quant_type


def quantize_int8(weight, group_size=None):
    """[K, N] float -> (q [K, N] int8, scale [N] float32), per column: q * scale ~ weight; with `group_size`, per
    column and group of that many rows, scale [K / group_size, N] (each repeated over its group's rows). An
    all-zero column (group) gets scale 1 (q 0)."""
    w = np.asarray(weight, np.float32)
    k, n = w.shape
    if group_size is not None:
        check_group_size(group_size, [k])
    groups = w.reshape(k // group_size if group_size else 1, group_size or k, n)
    scale = np.abs(groups).max(axis=1) / 127.0 if k else np.zeros((1, n), np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(groups / scale[:, None, :]), -127, 127).astype(np.int8).reshape(k, n)
    return q, scale if group_size else scale[0]


def check_group_size(group_size, input_sizes):
    """Groups of rows (int4, grouped int8): a multiple of 32 (the int4 kernels' activation blocks) dividing every
    projection's input size."""
    bad = sorted({k for k in input_sizes if k % max(group_size, 1)})
    if group_size < 32 or group_size % 32 or bad:
        raise UserError(f"--group_size {group_size}: groups must be a multiple of 32 dividing every "
                        f"projection's input size ({', '.join(map(str, sorted(set(input_sizes))))}) "
                        "(choose e.g. 32 or 64)")


def check_a8w8_sizes(input_sizes):
    """a8w8: every projection's input size a multiple of 32 (its activation blocks)."""
    bad = sorted({k for k in input_sizes if k % 32})
    if bad:
        raise UserError(f"--quant_type a8w8 quantizes activations in blocks of 32: the input sizes "
                        f"{', '.join(map(str, bad))} are not multiples of 32 (use weight_only_int8)")


def quantize_int4(weight, group_size=DEFAULT_GROUP_SIZE):
    """[K, N] float -> (q [K, N] int8 in [0, 15], scale [K / group_size, N], offset [K / group_size, N] float32 of
    float16 values): q * scale + offset ~ weight, scale and offset repeated over each group's rows. A constant group
    gets scale 1 (q 0)."""
    w = np.asarray(weight, np.float32)
    k, n = w.shape
    check_group_size(group_size, [k])
    groups = w.reshape(k // group_size, group_size, n)
    low = groups.min(axis=1).astype(np.float16).astype(np.float32)
    high = groups.max(axis=1)
    scale = np.where(high > low, (high - low) / 15.0, 1.0).astype(np.float16).astype(np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # a spread below float16's range
    q = np.clip(np.rint((groups - low[:, None, :]) / scale[:, None, :]), 0, 15).astype(np.int8)
    return q.reshape(k, n), scale, low
