"""The KV pool's bookkeeping with exact block ids: allocation, growth, free, prefix caching, LRU eviction."""
import subprocess
import sys

import pytest

from paddlellm.errors import UserError
from paddlellm.predictor.block_manager import (BlockManager, hash_block, kv_cache_bytes_per_block,
                                               num_blocks_for_memory)


def test_scheduler_and_block_manager_import_no_paddle():
    code = ("import sys, paddlellm.predictor.block_manager, paddlellm.predictor.scheduler\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'numpy')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_allocation_takes_blocks_from_the_front_and_grows_across_block_boundaries():
    manager = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    assert manager.allocate("a", 4)
    assert manager.allocate("b", 3)
    assert manager.block_table("a") == [0] and manager.block_table("b") == [1]
    assert manager.allocate("a", 4)  # still inside block 0: nothing new
    assert manager.block_table("a") == [0]
    assert manager.allocate("a", 5)  # token 4 starts a block
    assert manager.allocate("b", 9)
    assert manager.block_table("a") == [0, 2] and manager.block_table("b") == [1, 3, 4]
    assert [manager.ref_count(block) for block in range(8)] == [1, 1, 1, 1, 1, 0, 0, 0]
    assert manager.num_free_blocks == 3 and manager.free_queue() == [5, 6, 7]


def test_allocation_that_does_not_fit_changes_nothing():
    manager = BlockManager(num_blocks=4, block_size=4, enable_prefix_caching=False)
    assert manager.allocate("a", 12)
    assert not manager.allocate("b", 5)
    assert not manager.allocate("a", 17)
    assert manager.block_table("a") == [0, 1, 2] and manager.block_table("b") == []
    assert manager.free_queue() == [3]


def test_freed_blocks_without_a_hash_are_reused_first_in_table_order():
    manager = BlockManager(num_blocks=6, block_size=4, enable_prefix_caching=False)
    manager.allocate("a", 8)
    manager.allocate("b", 8)
    manager.free("a")
    assert manager.block_table("a") == [] and manager.ref_count(0) == 0 and manager.ref_count(1) == 0
    assert manager.free_queue() == [0, 1, 4, 5]
    manager.allocate("c", 12)
    assert manager.block_table("c") == [0, 1, 4]


def test_block_hash_depends_on_the_whole_prefix():
    block = [5, 6, 7, 8]
    assert hash_block(b"", block) == hash_block(b"", list(block))
    assert hash_block(b"", block) != hash_block(hash_block(b"", [1, 2, 3, 4]), block)
    assert hash_block(hash_block(b"", [1, 2, 3, 4]), block) != hash_block(hash_block(b"", [1, 2, 3, 9]), block)


def test_only_full_computed_blocks_are_cached():
    manager = BlockManager(num_blocks=8, block_size=4)
    tokens = list(range(100, 110))  # 2 full blocks and 2 tokens
    manager.allocate("a", 10)
    manager.cache_full_blocks("a", tokens, 6)
    assert [manager.is_cached(block) for block in (0, 1, 2)] == [True, False, False]
    manager.cache_full_blocks("a", tokens, 10)
    assert [manager.is_cached(block) for block in (0, 1, 2)] == [True, True, False]
    assert manager.find_cached_prefix(tokens) == [0, 1]
    assert manager.find_cached_prefix(tokens[:4] + [0] + tokens[5:]) == [0]
    assert manager.find_cached_prefix([1] + tokens[1:]) == []


def test_a_cached_prefix_always_leaves_one_token_to_compute():
    manager = BlockManager(num_blocks=8, block_size=4)
    tokens = list(range(100, 112))
    manager.allocate("a", 12)
    manager.cache_full_blocks("a", tokens, 12)
    assert manager.find_cached_prefix(tokens) == [0, 1]  # all 3 blocks match, but the last token must run
    assert manager.find_cached_prefix(tokens + [7]) == [0, 1, 2]
    assert manager.find_cached_prefix(tokens[:5]) == [0]
    assert manager.find_cached_prefix(tokens[:4]) == []
    assert manager.find_cached_prefix([]) == []


def test_shared_blocks_are_reference_counted_and_stay_cached_at_zero():
    manager = BlockManager(num_blocks=8, block_size=4)
    prompt = list(range(100, 109))
    manager.allocate("a", 9)
    manager.cache_full_blocks("a", prompt, 9)
    cached = manager.find_cached_prefix(prompt)
    assert cached == [0, 1]
    assert manager.allocate("b", 9, cached_prefix=cached)
    assert manager.block_table("b") == [0, 1, 3]
    assert [manager.ref_count(block) for block in (0, 1, 2, 3)] == [2, 2, 1, 1]
    manager.free("a")
    assert [manager.ref_count(block) for block in (0, 1, 2, 3)] == [1, 1, 0, 1]
    manager.free("b")
    assert [manager.ref_count(block) for block in (0, 1, 2, 3)] == [0, 0, 0, 0]
    assert manager.is_cached(0) and manager.is_cached(1)
    # Unhashed blocks in front; cached ones at the back, the tail of a request before its head.
    assert manager.free_queue() == [3, 2, 4, 5, 6, 7, 1, 0]
    assert manager.allocate("c", 10, cached_prefix=manager.find_cached_prefix(prompt))
    assert manager.block_table("c") == [0, 1, 3]
    assert [manager.ref_count(block) for block in (0, 1, 3)] == [1, 1, 1]
    assert manager.free_queue() == [2, 4, 5, 6, 7]


def test_allocation_counts_revived_cached_blocks_against_the_free_ones():
    manager = BlockManager(num_blocks=3, block_size=4)
    manager.allocate("a", 8)
    manager.cache_full_blocks("a", list(range(8)), 8)
    manager.free("a")
    assert manager.free_queue() == [2, 1, 0]
    manager.allocate("x", 4)  # takes block 2
    cached = manager.find_cached_prefix(list(range(9)))
    assert cached == [0, 1]
    assert not manager.allocate("b", 9, cached_prefix=cached)  # needs 0, 1 and one more: only 0 and 1 are free
    assert manager.ref_count(0) == 0 and manager.free_queue() == [1, 0]


def test_cached_blocks_are_evicted_least_recently_used_first_when_allocation_takes_them():
    manager = BlockManager(num_blocks=6, block_size=4)
    first, second = list(range(100, 109)), list(range(200, 209))
    manager.allocate("a", 9)  # [0, 1, 2]
    manager.cache_full_blocks("a", first, 9)
    manager.free("a")
    manager.allocate("b", 9)  # [2, 3, 4]: block 2 held no hash
    manager.cache_full_blocks("b", second, 9)
    manager.free("b")
    assert manager.free_queue() == [4, 5, 1, 0, 3, 2]
    manager.allocate("c", 16)  # takes 4, 5, then evicts block 1 (first's tail) and 0
    assert manager.block_table("c") == [4, 5, 1, 0]
    assert not manager.is_cached(1) and not manager.is_cached(0)
    assert manager.find_cached_prefix(first) == []
    assert manager.find_cached_prefix(second) == [2, 3]


def test_a_recomputed_copy_of_a_cached_block_is_not_registered_twice():
    manager = BlockManager(num_blocks=6, block_size=4)
    tokens = list(range(100, 108))
    manager.allocate("a", 8)
    manager.allocate("b", 8)  # the same tokens computed side by side, neither cached yet
    manager.cache_full_blocks("a", tokens, 8)
    manager.cache_full_blocks("b", tokens, 8)
    assert [manager.is_cached(block) for block in (0, 1, 2, 3)] == [True, True, False, False]
    manager.free("b")
    assert manager.free_queue() == [2, 3, 4, 5]


def test_prefix_caching_off_finds_and_keeps_nothing():
    manager = BlockManager(num_blocks=4, block_size=4, enable_prefix_caching=False)
    tokens = list(range(9))
    manager.allocate("a", 9)
    manager.cache_full_blocks("a", tokens, 9)
    assert not manager.is_cached(0) and manager.find_cached_prefix(tokens) == []


def test_pool_size_from_a_memory_budget():
    shape = dict(num_layers=30, num_kv_heads=3, head_dim=64, block_size=64)
    assert kv_cache_bytes_per_block(**shape, dtype_bytes=4) == 2 * 30 * 3 * 64 * 64 * 4
    per_block = 2 * 30 * 3 * 64 * 64 * 4
    assert num_blocks_for_memory(10 * per_block + 5, **shape, dtype_bytes=4, max_model_len=640) == 10
    assert num_blocks_for_memory(10 * per_block, **shape, dtype_bytes=2, max_model_len=640) == 20
    with pytest.raises(UserError, match=r"holds 9 blocks of 64 tokens, but one request of 577 tokens needs 10 "
                                        r"\(raise --kv_cache_memory_gb"):
        num_blocks_for_memory(10 * per_block - 1, **shape, dtype_bytes=4, max_model_len=577)


def test_an_empty_pool_is_a_user_error():
    with pytest.raises(UserError, match="at least one block"):
        BlockManager(num_blocks=0, block_size=16)


def test_an_int8_cache_holds_about_four_times_a_float32_one_in_the_same_memory():
    """--kv_cache_memory_gb sizes the pool by the bytes of a block: an int8 row of head_dim 64 is 64 values and
    a 4-byte scale (68 bytes) where float32 takes 256, so 256 / 68 = 3.76x the blocks (twice what a 16-bit cache
    holds, and then some)."""
    from paddlellm.predictor.args import PredictorArgs
    from paddlellm.predictor.llm import fixed_pool_blocks
    from paddlellm.predictor.runners import BlockRunner

    args = PredictorArgs("unused", kv_cache_memory_gb=0.25, src_length=100, max_length=28)
    blocks = {dtype: fixed_pool_blocks(args, BlockRunner(30, 3, 64, 64, dtype)) for dtype in ("float32", "int8")}
    assert blocks == {"float32": 2 ** 28 // (2 * 30 * 3 * 64 * 64 * 4), "int8": 2 ** 28 // (2 * 30 * 3 * 64 * 68)}
    assert 3.7 < blocks["int8"] / blocks["float32"] < 3.8
