"""Continuous batching: which requests run in the next step, with how many tokens each (vLLM v1's scheduler).

Plain Python, no Paddle: the engine owns the model and the KV tensors; this module owns the order of work.
There are no prefill and decode phases. A request has `num_tokens` (prompt + outputs so far) and
`num_computed_tokens` (those whose K/V are in its blocks); every step spends a token budget
(`max_num_batched_tokens`) closing that gap: decode tokens first (running requests one token short), then
the rest of running requests' prompts, then waiting requests admitted in FIFO order while the budget, the
`max_num_seqs` cap and the free blocks allow. A prompt longer than the budget left is computed in chunks
over several steps (chunked prefill); a step samples a token for a request only when its chunk reaches
the request's last token.

When a running request needs a block and none is free, the youngest running request (the last admitted)
is preempted: its blocks are freed, its computed tokens reset to 0, and it goes to the front of the waiting
queue, to recompute its prompt and outputs so far when it is admitted again (with prefix caching, much
of that is found still cached). A request that must grow while it is itself the youngest preempts itself.
The oldest running request is never preempted for a younger one and makes progress every step (once the
budget covers the decode tokens scheduled before it: at most max_num_seqs - 1), preempted requests get
back in before newer ones, and no request is admitted in a step that preempted: nothing starves.

The engine's loop:
    scheduler = Scheduler(BlockManager(num_blocks, block_size), max_num_seqs=..., max_num_batched_tokens=...,
                          max_model_len=...)
    scheduler.add_request(Request("r0", prompt_ids, max_tokens=64, eos_token_ids=(2,)))  # any time
    while scheduler.has_unfinished_requests():
        plan = scheduler.schedule()              # a SchedulerOutput: one row of the packed batch per request
        logits = run_step(plan)                  # inputs from plan.input_ids, plan.seq_lens_this_time,
                                                 # plan.seq_lens_decoder, plan.block_tables()
        sampled = {item.request_id: sample(...) for item in plan.requests if item.sample}
        for request in scheduler.update(plan, sampled):  # finished requests, blocks already freed
            ...                                  # request.output_token_ids, request.finish_reason
Every `schedule()` is followed by its `update()` before the next `schedule()`. A stop token sampled is kept
as the last output token (the engine decides whether to show it). Sampling settings other than the limits
here (temperature, top_p, ...) stay with the engine, keyed by request id. Counters for the log:
`num_preemptions`, `prefix_cache_queries` and `prefix_cache_hits` (tokens looked up / found cached at
admission).
"""
import enum
import itertools
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

from paddlellm.errors import UserError
from paddlellm.predictor.block_manager import BlockManager


class RequestRejected(UserError, ValueError):
    """A request that could never run: too long for the model or for the whole KV pool, or malformed."""


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    PREEMPTED = "preempted"  # back in the waiting queue, to recompute what it had
    FINISHED = "finished"


class Request:
    """One generation: its tokens, its limits and its place in the schedule."""

    def __init__(self, request_id: Hashable, prompt_token_ids, max_tokens: int, eos_token_ids=(),
                 ignore_eos: bool = False):
        self.request_id = request_id
        self.all_token_ids = list(prompt_token_ids)  # the prompt, then every sampled token
        self.num_prompt_tokens = len(self.all_token_ids)
        self.max_tokens = max_tokens
        self.eos_token_ids = frozenset(eos_token_ids)
        self.ignore_eos = ignore_eos
        self.num_computed_tokens = 0  # tokens whose K/V are in the request's blocks
        self.status = RequestStatus.WAITING
        self.finish_reason = None  # "stop" (a stop token), "length" (max_tokens or max_model_len), "abort"
        self.arrival_index = -1  # set by Scheduler.add_request: the order requests came in
        self.num_preemptions = 0

    @property
    def prompt_token_ids(self) -> list[int]:
        return self.all_token_ids[:self.num_prompt_tokens]

    @property
    def output_token_ids(self) -> list[int]:
        return self.all_token_ids[self.num_prompt_tokens:]

    @property
    def num_tokens(self) -> int:
        return len(self.all_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.all_token_ids) - self.num_prompt_tokens

    def __repr__(self):
        return (f"Request({self.request_id!r}, {self.status.value}, computed {self.num_computed_tokens}"
                f"/{self.num_tokens}, outputs {self.num_output_tokens}/{self.max_tokens})")


@dataclass
class ScheduledRequest:
    """One request's part of a step: one row of the packed batch."""
    request_id: Hashable
    num_tokens: int  # tokens fed this step (PaddleNLP's seq_lens_this_time): 1 to decode, a chunk to prefill
    num_computed_tokens: int  # tokens cached before the step (seq_lens_decoder) = the first fed token's position
    token_ids: list[int]  # the tokens to feed: all_token_ids[num_computed_tokens:][:num_tokens]
    block_table: list[int]  # the request's blocks, covering num_computed_tokens + num_tokens slots
    sample: bool  # the chunk reaches the request's last token: sample the next one from its logits


@dataclass
class SchedulerOutput:
    """The plan of one step, rows in batch order: decode tokens, prompt continuations, newly admitted."""
    requests: list[ScheduledRequest]
    preempted_ids: list = field(default_factory=list)  # preempted while planning this step, youngest first

    @property
    def num_batched_tokens(self) -> int:
        return sum(item.num_tokens for item in self.requests)

    @property
    def input_ids(self) -> list[int]:
        return [token for item in self.requests for token in item.token_ids]

    @property
    def seq_lens_this_time(self) -> list[int]:
        return [item.num_tokens for item in self.requests]

    @property
    def seq_lens_decoder(self) -> list[int]:
        return [item.num_computed_tokens for item in self.requests]

    def block_tables(self, width: int = 0, pad: int = -1) -> list[list[int]]:
        """Every row's block table padded with `pad` to `width` (at least the longest table)."""
        width = max([width] + [len(item.block_table) for item in self.requests])
        return [item.block_table + [pad] * (width - len(item.block_table)) for item in self.requests]


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int,
                 max_model_len: int):
        for name, value in (("--batch_size", max_num_seqs), ("--max_num_batched_tokens", max_num_batched_tokens),
                            ("the model length", max_model_len)):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.waiting: deque[Request] = deque()  # FIFO; preempted requests go to the front
        self.running: list[Request] = []  # in admission order: the last is the youngest
        self.requests: dict[Hashable, Request] = {}  # every unfinished request by id
        self.num_preemptions = 0
        self.prefix_cache_queries = 0  # tokens of admitted requests looked up in the prefix cache
        self.prefix_cache_hits = 0  # of those, tokens found cached (not computed again)
        self._arrivals = itertools.count()

    def add_request(self, request: Request) -> None:
        """Queue a request; one that could never run (too long for the model or the pool) is RequestRejected."""
        name = f"request {request.request_id!r}"
        if request.request_id in self.requests:
            raise RequestRejected(f"{name} is already queued (give each request its own id)")
        if request.num_tokens == 0 or request.num_output_tokens:
            raise RequestRejected(f"{name} needs a prompt of at least one token and no outputs yet (give it text)")
        if request.max_tokens < 1:
            raise RequestRejected(f"{name} asks for {request.max_tokens} new tokens (ask for at least 1)")
        total = request.num_tokens + request.max_tokens
        if total > self.max_model_len:
            room = self.max_model_len - request.num_tokens
            fix = f"lower --max_length to {room}" if room >= 1 else "shorten the prompt"
            raise RequestRejected(f"{name}: prompt ({request.num_tokens} tokens) + max tokens "
                                  f"{request.max_tokens} exceeds the model length {self.max_model_len} ({fix})")
        # The last sampled token is never fed back, so it needs no slot.
        pool = self.block_manager
        needed = pool.blocks_needed(total - 1)
        if needed > pool.num_blocks:
            raise RequestRejected(f"{name} needs {needed} KV blocks of {pool.block_size} tokens, more than the "
                                  f"pool's {pool.num_blocks} (raise --num_blocks or --kv_cache_memory_gb, or "
                                  "lower --max_length)")
        request.arrival_index = next(self._arrivals)
        request.status = RequestStatus.WAITING
        self.requests[request.request_id] = request
        self.waiting.append(request)

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    def abort_request(self, request_id) -> None:
        """Drop an unfinished request (its client went away); its blocks are freed. Unknown ids are ignored."""
        request = self.requests.get(request_id)
        if request is None:
            return
        if request in self.waiting:
            self.waiting.remove(request)
        request.finish_reason = "abort"
        self._finish(request)

    def schedule(self) -> SchedulerOutput:
        """Plan the next step: running requests first (preempting the youngest when blocks run out), then
        waiting ones. Allocates every block the plan's rows write to."""
        budget = self.max_num_batched_tokens
        planned: dict[Hashable, int] = {}  # request id -> tokens this step, in batch order
        preempted: list[Hashable] = []
        gap = {request.request_id: request.num_tokens - request.num_computed_tokens for request in self.running}
        decoding = [request for request in self.running if gap[request.request_id] == 1]
        prefilling = [request for request in self.running if gap[request.request_id] > 1]
        for request in decoding + prefilling:
            if budget == 0:
                break
            if request.status is not RequestStatus.RUNNING:  # preempted for an older request this step
                continue
            num_new = min(gap[request.request_id], budget)
            while not self.block_manager.allocate(request.request_id, request.num_computed_tokens + num_new):
                victim = self._preempt_youngest()
                preempted.append(victim.request_id)
                budget += planned.pop(victim.request_id, 0)
                if victim is request:
                    break
            if request.status is RequestStatus.RUNNING:
                planned[request.request_id] = num_new
                budget -= num_new
        if not preempted:  # admitting now would only take blocks the preempted ones need back first
            self._admit_waiting(budget, planned)
        return SchedulerOutput([self._scheduled(request_id, num_new) for request_id, num_new in planned.items()],
                               preempted)

    def update(self, output: SchedulerOutput, sampled_token_ids: Mapping[Hashable, int]) -> list[Request]:
        """Record a step's results: advance computed tokens, append each sampled token (one per row with
        `sample`), finish requests at a stop token, max_tokens or max_model_len. Returns those finished."""
        finished = []
        for item in output.requests:
            request = self.requests.get(item.request_id)
            if request is None:  # aborted since the step was planned
                continue
            request.num_computed_tokens += item.num_tokens
            if item.sample:
                token = sampled_token_ids[item.request_id]
                request.all_token_ids.append(token)
                request.finish_reason = self._finish_reason(request, token)
            self.block_manager.cache_full_blocks(request.request_id, request.all_token_ids,
                                                 request.num_computed_tokens)
            if request.finish_reason is not None:
                self._finish(request)
                finished.append(request)
        return finished

    def _admit_waiting(self, budget: int, planned: dict) -> None:
        """Admit waiting requests in order while they fit; the first that does not fit stops the rest."""
        block_manager = self.block_manager
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            request = self.waiting[0]
            cached = block_manager.find_cached_prefix(request.all_token_ids)
            num_cached = len(cached) * block_manager.block_size
            num_new = min(request.num_tokens - num_cached, budget)
            if not block_manager.allocate(request.request_id, num_cached + num_new, cached_prefix=cached):
                break
            self.waiting.popleft()
            request.status = RequestStatus.RUNNING
            request.num_computed_tokens = num_cached
            self.running.append(request)
            if block_manager.enable_prefix_caching:
                self.prefix_cache_queries += request.num_tokens
                self.prefix_cache_hits += num_cached
            planned[request.request_id] = num_new
            budget -= num_new

    def _preempt_youngest(self) -> Request:
        victim = self.running.pop()
        self.block_manager.free(victim.request_id)
        victim.num_computed_tokens = 0
        victim.status = RequestStatus.PREEMPTED
        victim.num_preemptions += 1
        self.waiting.appendleft(victim)
        self.num_preemptions += 1
        return victim

    def _scheduled(self, request_id, num_new: int) -> ScheduledRequest:
        request = self.requests[request_id]
        start = request.num_computed_tokens
        return ScheduledRequest(request_id, num_new, start, request.all_token_ids[start:start + num_new],
                                self.block_manager.block_table(request_id), start + num_new == request.num_tokens)

    def _finish_reason(self, request: Request, token: int):
        if token in request.eos_token_ids and not request.ignore_eos:
            return "stop"
        if request.num_output_tokens >= request.max_tokens or request.num_tokens >= self.max_model_len:
            return "length"
        return None

    def _finish(self, request: Request) -> None:
        if request in self.running:
            self.running.remove(request)
        self.block_manager.free(request.request_id)
        request.status = RequestStatus.FINISHED
        del self.requests[request.request_id]
