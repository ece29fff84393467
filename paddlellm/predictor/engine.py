"""The engine: many requests through the scheduler and a block-step runner, tokens out per request as they
come (continuous batching over a paged KV cache).

A block-step runner has `num_blocks`, `block_size`, and `step(plan) -> logits`: it runs one packed step for
a SchedulerOutput and returns float32 numpy logits [len(plan.requests), vocab], the last fed token's row
for each scheduled request, in plan order (see runners.py). The engine owns the order of work (through the
Scheduler), the sampling (one Sampler per request, so what a request gets does not depend on what runs
beside it) and the stop rules; the runner owns the model and the KV pool.
"""
import time
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence

from paddlellm.predictor.block_manager import BlockManager
from paddlellm.predictor.sampling import Sampler
from paddlellm.predictor.scheduler import Request, Scheduler


@dataclass
class Generation:
    """What one request has produced so far; `token_ids` never holds the stop token."""
    index: int  # the request's place in the input
    prompt_token_ids: List[int]
    token_ids: List[int] = field(default_factory=list)
    finished: bool = False
    finish_reason: Optional[str] = None  # "stop" (a stop token) or "length" (max tokens or the model's length)
    first_token_seconds: Optional[float] = None  # from the start of the run to the first token
    token_seconds: List[float] = field(default_factory=list)  # when each token came, from the start


@dataclass
class EngineStats:
    steps: int = 0
    prompt_tokens: int = 0  # prompt tokens computed (recomputation after a preemption included)
    decode_tokens: int = 0  # tokens fed that were generated ones (one per running request per step)
    seconds: float = 0.0
    preemptions: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    blocks_in_use: int = 0  # after the last run: every request's blocks are freed when it finishes
    step_log: List[tuple] = field(default_factory=list)  # per step: (seconds, prompt tokens, decode tokens)


class Engine:
    def __init__(self, runner, eos_token_ids, max_num_seqs, max_num_batched_tokens, max_model_len,
                 enable_prefix_caching=True):
        self.runner = runner
        self.eos_token_ids = tuple(eos_token_ids)
        self.scheduler_args = dict(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                                   max_model_len=max_model_len)
        self.enable_prefix_caching = enable_prefix_caching
        self.stats = EngineStats()
        self.last_generations: List[Generation] = []  # of the last finished run, in input order

    def stream(self, prompts: Sequence[Sequence[int]], params) -> Iterator[Generation]:
        """Run every prompt (token ids); yield a request's Generation each time it gets a token (or finishes).
        `params`: one SamplingParams for all, or one per prompt. Every request is checked before any runs."""
        params = list(params) if isinstance(params, (list, tuple)) else [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling parameters")
        blocks = BlockManager(self.runner.num_blocks, self.runner.block_size, self.enable_prefix_caching)
        scheduler = Scheduler(blocks, **self.scheduler_args)
        generations, samplers = {}, {}
        for index, prompt in enumerate(prompts):
            scheduler.add_request(Request(index, prompt, params[index].max_tokens, self.eos_token_ids,
                                          params[index].ignore_eos))
            generations[index] = Generation(index, list(prompt))
            samplers[index] = Sampler(params[index], index)
        started = time.perf_counter()
        while scheduler.has_unfinished_requests():
            plan = scheduler.schedule()
            step_started = time.perf_counter()
            logits = self.runner.step(plan)
            sampled, prompt_tokens, decode_tokens = {}, 0, 0
            for row, item in enumerate(plan.requests):
                request = scheduler.requests[item.request_id]
                start, end = item.num_computed_tokens, item.num_computed_tokens + item.num_tokens
                prompt_tokens += max(0, min(end, request.num_prompt_tokens) - start)
                decode_tokens += max(0, end - max(start, request.num_prompt_tokens))
                if item.sample:
                    sampled[item.request_id] = samplers[item.request_id](logits[row], request.all_token_ids)
            finished = {request.request_id: request.finish_reason for request in scheduler.update(plan, sampled)}
            self.stats.steps += 1
            self.stats.prompt_tokens += prompt_tokens
            self.stats.decode_tokens += decode_tokens
            self.stats.step_log.append((time.perf_counter() - step_started, prompt_tokens, decode_tokens))
            now = time.perf_counter() - started
            for index, token in sampled.items():
                generation = generations[index]
                if index in finished:
                    generation.finished, generation.finish_reason = True, finished[index]
                if generation.finish_reason != "stop":  # a stop token ends the output without being part of it
                    generation.token_ids.append(token)
                    generation.token_seconds.append(now)
                    if generation.first_token_seconds is None:
                        generation.first_token_seconds = now
                yield generation
        self.stats.seconds += time.perf_counter() - started
        self.stats.preemptions += scheduler.num_preemptions
        self.stats.prefix_cache_queries += scheduler.prefix_cache_queries
        self.stats.prefix_cache_hits += scheduler.prefix_cache_hits
        self.stats.blocks_in_use = blocks.num_blocks - blocks.num_free_blocks
        self.last_generations = [generations[index] for index in range(len(prompts))]

    def generate(self, prompts, params) -> List[Generation]:
        """Every prompt's finished Generation, in input order."""
        done = {}
        for generation in self.stream(prompts, params):
            if generation.finished:
                done[generation.index] = generation
        return [done[index] for index in range(len(prompts))]
