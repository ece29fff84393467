"""The generation loop over a step runner: one prefill step for a left-padded batch, then decode steps.

A runner has `new_caches(batch, length)` and `step(input_ids, pad_lens, cache_offset, caches) ->
(last-position logits as numpy [batch, vocab], caches)`; dynamic and static mode differ only there.
"""
import time
from dataclasses import dataclass, field
from typing import List

import numpy as np

from paddlellm.predictor.sampling import Sampler


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    decode_steps: int = 0
    batches: int = 0

    def add(self, other):
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Generated:
    token_ids: list = field(default_factory=list)
    finished_by_eos: bool = False


def generate_batch(runner, prompts, max_new_tokens, samplers: List[Sampler], eos_ids, pad_id):
    """Generate for each prompt (a list of token ids), choosing its tokens with its own sampler, until an
    EOS id or max_new_tokens.

    Returns ([Generated] in prompt order, GenerationStats). EOS itself is not part of token_ids.
    """
    pad_id = 0 if pad_id is None else pad_id  # padding is masked out: any valid id will do
    batch, longest = len(prompts), max(len(p) for p in prompts)
    pad_lens = np.array([longest - len(p) for p in prompts], dtype=np.int64)
    input_ids = np.array([[pad_id] * (longest - len(p)) + list(p) for p in prompts], dtype=np.int64)
    caches = runner.new_caches(batch, longest + max_new_tokens)
    results = [Generated() for _ in prompts]
    seen = [list(p) for p in prompts]
    eos = set(eos_ids)
    stats = GenerationStats(prompt_tokens=sum(len(p) for p in prompts), batches=1)

    start = time.perf_counter()
    logits, caches = runner.step(input_ids, pad_lens, 0, caches)
    stats.prefill_seconds = time.perf_counter() - start
    start = time.perf_counter()
    offset, active = longest, np.ones(batch, dtype=bool)
    for step in range(max_new_tokens):
        tokens = np.full(batch, pad_id, dtype=np.int64)
        for b in np.flatnonzero(active):
            token = samplers[b](logits[b], seen[b])
            tokens[b] = token
            if token in eos:
                active[b], results[b].finished_by_eos = False, True
                continue
            results[b].token_ids.append(token)
            seen[b].append(token)
        if not active.any() or step == max_new_tokens - 1:
            break
        feed = np.where(active, tokens, pad_id)[:, None]
        logits, caches = runner.step(feed, pad_lens, offset, caches)
        offset += 1
        stats.decode_steps += 1
    stats.decode_seconds = time.perf_counter() - start
    stats.generated_tokens = sum(len(r.token_ids) for r in results)
    return results, stats
