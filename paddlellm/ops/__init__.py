"""Custom ops for the block (paged) KV cache: the Python API over the CPU kernels in csrc/cpu.

Each op's contract is in SPEC.md and its pure-Paddle reference in reference.py. The library is built
on first use (see build.py) and registered by the first call here. A process that only runs an exported
program holding these ops needs `load_library()` before `paddle.inference.create_predictor`.

    key_cache, value_cache = write_cache_kv(key, value, key_cache, value_cache,
                                            block_tables, seq_lens_this_time, seq_lens_decoder)
    out = block_attention(q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder)
"""
from paddle import _C_ops
from paddle.jit.marker import unified

from paddlellm.ops.build import cpu_isa, load_library, num_threads, register_ops, supported_isas

__all__ = ["write_cache_kv", "block_attention", "load_library", "register_ops", "cpu_isa", "supported_isas",
           "num_threads"]


@unified
def write_cache_kv(key, value, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder):
    """Writes this step's K/V rows into their cache blocks, in place (op paddlellm_write_cache_kv).
    Returns (key_cache_out, value_cache_out), which alias key_cache and value_cache."""
    register_ops()
    outs = _C_ops._run_custom_op("paddlellm_write_cache_kv", key, value, key_cache, value_cache,
                                 block_tables, seq_lens_this_time, seq_lens_decoder)
    return outs[0], outs[1]


@unified
def block_attention(q, key_cache, value_cache, block_tables, seq_lens_this_time, seq_lens_decoder):
    """Causal GQA attention of a packed batch over the paged cache (op paddlellm_block_attention):
    q [T, num_heads, head_dim] float32 -> out [T, num_heads, head_dim] float32."""
    register_ops()
    outs = _C_ops._run_custom_op("paddlellm_block_attention", q, key_cache, value_cache, block_tables,
                                 seq_lens_this_time, seq_lens_decoder)
    return outs[0]
