"""The paged KV pool's bookkeeping: which blocks each request holds, and which hold a reusable prefix.

Plain Python, no Paddle (the KV tensors themselves belong to the engine): every policy here is tested
without a model. The pool has `num_blocks` blocks of `block_size` token slots, ids 0..num_blocks-1; block id
b is row b of every layer's cache tensor `[num_blocks, num_kv_heads, block_size, head_dim]`. A request's
block table lists its blocks in token order: token i of the request lives in slot i % block_size of block
`block_table[i // block_size]`.

Automatic prefix caching (vLLM v1's scheme), when `enable_prefix_caching` is on:
- A full block whose tokens are computed gets a hash of its tokens chained with the previous block's
  hash, so equal tokens after different prefixes hash differently; the hash maps to the block.
- A new request takes the longest run of cached blocks that match its tokens from the start
  (`find_cached_prefix`), always leaving at least one token to compute, because the step must produce
  logits for the last token. Shared blocks are reference-counted.
- A block whose count drops to 0 returns to the free queue but keeps its hash: a later request can still
  reuse it. Allocation takes blocks from the front of the queue and drops the hash of the one it takes.
  Freed cached blocks go to the back (evicted last, least recently used first); freed blocks without a
  hash go to the front (nothing in them is worth keeping).

The scheduler is this class's one user; it calls, per request:
    blocks = find_cached_prefix(token_ids)                 # at admission (an empty list when caching is off)
    allocate(request_id, num_tokens, cached_prefix=blocks) # admission: cover num_tokens token slots
    allocate(request_id, num_tokens)                       # growth, each step; False = not enough free blocks
    cache_full_blocks(request_id, token_ids, num_computed) # after a step has computed tokens
    free(request_id)                                       # finish or preemption
"""
import hashlib
from array import array
from collections import OrderedDict

from paddlellm.errors import UserError


def hash_block(parent_hash: bytes, token_ids) -> bytes:
    """The identity of a full block: its tokens and, through the parent's hash, every token before it."""
    return hashlib.sha256(parent_hash + array("q", token_ids).tobytes()).digest()


def kv_cache_bytes_per_block(*, num_layers: int, num_kv_heads: int, head_dim: int, block_size: int,
                             dtype_bytes: int) -> int:
    """Bytes one block takes over all layers: a K and a V row of block_size tokens per layer."""
    return 2 * num_layers * num_kv_heads * block_size * head_dim * dtype_bytes


def num_blocks_for_memory(memory_bytes: int, *, num_layers: int, num_kv_heads: int, head_dim: int,
                          block_size: int, dtype_bytes: int, max_model_len: int) -> int:
    """How many blocks a KV budget of memory_bytes holds; it must hold at least one max_model_len request."""
    per_block = kv_cache_bytes_per_block(num_layers=num_layers, num_kv_heads=num_kv_heads, head_dim=head_dim,
                                         block_size=block_size, dtype_bytes=dtype_bytes)
    num_blocks = memory_bytes // per_block
    needed = -(-max_model_len // block_size)
    if num_blocks < needed:
        raise UserError(f"a KV cache of {memory_bytes / 2**30:.3g} GB holds {num_blocks} blocks of {block_size} "
                        f"tokens, but one request of {max_model_len} tokens needs {needed} (raise "
                        f"--kv_cache_memory_gb to at least {needed * per_block / 2**30:.3g}, or lower "
                        "--src_length/--max_length)")
    return num_blocks


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise UserError(f"the KV pool needs at least one block of at least one token, got {num_blocks} "
                            f"blocks of {block_size} (raise --num_blocks or --block_size)")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._ref_counts = [0] * num_blocks
        self._block_hashes: list = [None] * num_blocks  # the hash a cached block is registered under
        self._cached: dict[bytes, int] = {}  # hash -> block id
        self._free = OrderedDict.fromkeys(range(num_blocks))  # the free queue: front is taken first
        self._tables: dict = {}  # request id -> block ids in token order
        self._request_hashes: dict = {}  # request id -> hashes of its full computed blocks, in order

    @property
    def num_free_blocks(self) -> int:
        """Blocks allocation can take, cached ones with no user included."""
        return len(self._free)

    def free_queue(self) -> list[int]:
        """The free blocks in the order allocation takes them."""
        return list(self._free)

    def block_table(self, request_id) -> list[int]:
        return list(self._tables.get(request_id, ()))

    def ref_count(self, block_id: int) -> int:
        return self._ref_counts[block_id]

    def is_cached(self, block_id: int) -> bool:
        return self._block_hashes[block_id] is not None

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def find_cached_prefix(self, token_ids) -> list[int]:
        """The cached blocks holding the longest prefix of token_ids, leaving at least its last token."""
        if not self.enable_prefix_caching:
            return []
        blocks, parent = [], b""
        for start in range(0, len(token_ids) - self.block_size, self.block_size):  # never the last token
            parent = hash_block(parent, token_ids[start:start + self.block_size])
            block = self._cached.get(parent)
            if block is None:
                break
            blocks.append(block)
        return blocks

    def allocate(self, request_id, num_tokens: int, cached_prefix=()) -> bool:
        """Make the request's table cover num_tokens token slots; False (nothing changed) if too few are free.

        cached_prefix (from find_cached_prefix, at admission only) becomes the start of the table."""
        table = self._tables.get(request_id, [])
        assert not (cached_prefix and table), "a cached prefix is taken only at admission"
        num_new = max(0, self.blocks_needed(num_tokens) - len(table) - len(cached_prefix))
        num_revived = sum(1 for block in cached_prefix if self._ref_counts[block] == 0)
        if num_new + num_revived > len(self._free):
            return False
        for block in cached_prefix:
            if self._ref_counts[block] == 0:
                del self._free[block]
            self._ref_counts[block] += 1
        table = table + list(cached_prefix)
        for _ in range(num_new):
            block, _ = self._free.popitem(last=False)
            if self._block_hashes[block] is not None:  # evicted: its content is about to be overwritten
                del self._cached[self._block_hashes[block]]
                self._block_hashes[block] = None
            self._ref_counts[block] = 1
            table.append(block)
        self._tables[request_id] = table
        return True

    def cache_full_blocks(self, request_id, token_ids, num_computed_tokens: int) -> None:
        """Register the request's full blocks whose tokens are all computed, so later requests can reuse them.

        Only computed blocks: a block hashed before the step writes it could be read by another request
        in that same step before its K/V exist."""
        if not self.enable_prefix_caching:
            return
        table = self._tables[request_id]
        hashes = self._request_hashes.setdefault(request_id, [])
        for index in range(len(hashes), num_computed_tokens // self.block_size):
            start = index * self.block_size
            block_hash = hash_block(hashes[-1] if hashes else b"", token_ids[start:start + self.block_size])
            hashes.append(block_hash)
            block = table[index]
            # A block taken from the cache is registered already; a recomputed copy of a cached block
            # stays unregistered (one block per hash) and is freed as a plain block.
            if self._block_hashes[block] is None and block_hash not in self._cached:
                self._cached[block_hash] = block
                self._block_hashes[block] = block_hash

    def free(self, request_id) -> None:
        """Release the request's blocks; a block returns to the free queue when its last user leaves."""
        self._request_hashes.pop(request_id, None)
        # Last block first: of one request's cached blocks, the tail (least shared) is evicted first.
        for block in reversed(self._tables.pop(request_id, [])):
            self._ref_counts[block] -= 1
            if self._ref_counts[block] == 0:
                self._free[block] = None
                if self._block_hashes[block] is None:
                    self._free.move_to_end(block, last=False)
