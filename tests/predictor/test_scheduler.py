"""The scheduler without a model: exact rows and block ids per step, preemption, prefix sharing, a load test.

A fake block step stands in for the model: it writes every fed token into its KV slot through the block
table and samples a token computed from the slots it reads back, so a wrong table, a wrong shared block or
a wrong recompute changes the tokens."""
import weakref

import pytest

from paddlellm.errors import UserError
from paddlellm.predictor.block_manager import BlockManager
from paddlellm.predictor.scheduler import Request, RequestRejected, RequestStatus, Scheduler


def make_scheduler(num_blocks=16, block_size=4, max_num_seqs=8, max_num_batched_tokens=64, max_model_len=64,
                   prefix_caching=False):
    return Scheduler(BlockManager(num_blocks, block_size, prefix_caching), max_num_seqs=max_num_seqs,
                     max_num_batched_tokens=max_num_batched_tokens, max_model_len=max_model_len)


def next_token(context):
    return (7 * sum(context[-3:]) + len(context)) % 89 + 11


class FakeStep:
    def __init__(self, block_manager):
        self.block_manager = block_manager
        self.slots = {}  # (block id, slot) -> token: the KV pool

    def __call__(self, plan):
        size = self.block_manager.block_size
        for item in plan.requests:
            for offset, token in enumerate(item.token_ids):
                position = item.num_computed_tokens + offset
                block = item.block_table[position // size]
                assert self.block_manager.ref_count(block) == 1, "a step writes only to blocks its request owns alone"
                self.slots[block, position % size] = token
        sampled = {}
        for item in plan.requests:
            if item.sample:
                end = item.num_computed_tokens + item.num_tokens
                sampled[item.request_id] = next_token([self.slots[item.block_table[p // size], p % size]
                                                       for p in range(end)])
        return sampled


FAKE_STEPS = weakref.WeakKeyDictionary()  # scheduler -> its fake step (its KV pool lives across steps)


def step(scheduler, fake_step=None):
    """Plan a step, run it on the fake step, record it: (the plan, the requests it finished)."""
    plan = scheduler.schedule()
    fake_step = fake_step or FAKE_STEPS.setdefault(scheduler, FakeStep(scheduler.block_manager))
    return plan, scheduler.update(plan, fake_step(plan))


def rows(plan):
    return [(item.request_id, item.num_tokens, item.num_computed_tokens, item.block_table, item.sample)
            for item in plan.requests]


def generate_alone(prompt, max_tokens):
    scheduler = make_scheduler(num_blocks=64, max_model_len=256)
    scheduler.add_request(Request("alone", prompt, max_tokens))
    fake_step = FakeStep(scheduler.block_manager)
    while scheduler.has_unfinished_requests():
        _, finished = step(scheduler, fake_step)
    return finished[0].output_token_ids


def assert_pool_consistent(scheduler):
    manager = scheduler.block_manager
    tables = [manager.block_table(request.request_id) for request in scheduler.running]
    for block in range(manager.num_blocks):
        assert manager.ref_count(block) == sum(table.count(block) for table in tables)
    assert sorted(manager.free_queue()) == [b for b in range(manager.num_blocks) if manager.ref_count(b) == 0]
    assert all(manager.block_table(request.request_id) == [] for request in scheduler.waiting)


def test_admission_growth_and_free_with_exact_block_ids():
    scheduler = make_scheduler()
    scheduler.add_request(Request("r0", [1, 2, 3, 4, 5, 6], max_tokens=5))
    scheduler.add_request(Request("r1", [7, 8, 9], max_tokens=3))
    fake_step = FakeStep(scheduler.block_manager)
    plan, finished = step(scheduler, fake_step)
    assert rows(plan) == [("r0", 6, 0, [0, 1], True), ("r1", 3, 0, [2], True)]
    assert plan.requests[0].token_ids == [1, 2, 3, 4, 5, 6] and finished == []
    plan, _ = step(scheduler, fake_step)
    assert rows(plan) == [("r0", 1, 6, [0, 1], True), ("r1", 1, 3, [2], True)]
    plan, finished = step(scheduler, fake_step)  # r1's 5th token starts a block
    assert rows(plan) == [("r0", 1, 7, [0, 1], True), ("r1", 1, 4, [2, 3], True)]
    assert [(r.request_id, r.finish_reason, r.num_output_tokens) for r in finished] == [("r1", "length", 3)]
    assert finished[0].status is RequestStatus.FINISHED
    assert scheduler.block_manager.free_queue()[:2] == [2, 3]
    plan, _ = step(scheduler, fake_step)  # r0 grows into r1's freed block
    assert rows(plan) == [("r0", 1, 8, [0, 1, 2], True)]
    plan, finished = step(scheduler, fake_step)
    assert [(r.request_id, r.finish_reason, r.num_output_tokens) for r in finished] == [("r0", "length", 5)]
    assert scheduler.block_manager.num_free_blocks == 16 and not scheduler.has_unfinished_requests()
    assert finished[0].output_token_ids == generate_alone([1, 2, 3, 4, 5, 6], 5)


def test_a_stop_token_finishes_a_request_unless_it_ignores_eos():
    scheduler = make_scheduler()
    scheduler.add_request(Request("stops", [1, 2], max_tokens=4, eos_token_ids=(2, 9)))
    scheduler.add_request(Request("ignores", [1, 2], max_tokens=2, eos_token_ids=(2,), ignore_eos=True))
    finished = scheduler.update(scheduler.schedule(), {"stops": 2, "ignores": 2})
    assert [(r.request_id, r.finish_reason, r.output_token_ids) for r in finished] == [("stops", "stop", [2])]
    finished = scheduler.update(scheduler.schedule(), {"ignores": 2})
    assert [(r.request_id, r.finish_reason, r.output_token_ids) for r in finished] == [("ignores", "length", [2, 2])]
    assert scheduler.block_manager.num_free_blocks == 16


def test_chunked_prefill_with_a_16_token_budget():
    scheduler = make_scheduler(num_blocks=32, max_num_batched_tokens=16)
    prompt = list(range(1, 41))
    scheduler.add_request(Request("long", prompt, max_tokens=4))
    plan, _ = step(scheduler)
    assert rows(plan) == [("long", 16, 0, [0, 1, 2, 3], False)]
    assert plan.requests[0].token_ids == prompt[:16]
    plan = scheduler.schedule()
    assert FAKE_STEPS[scheduler](plan) == {} and scheduler.update(plan, {}) == []  # nothing to sample
    assert rows(plan) == [("long", 16, 16, list(range(8)), False)]
    scheduler.add_request(Request("short", [50, 51, 52, 53, 54], max_tokens=4))
    plan, _ = step(scheduler)  # the last 8 prompt tokens, and the new request fits in the 8 left
    assert rows(plan) == [("long", 8, 32, list(range(10)), True), ("short", 5, 0, [10, 11], True)]
    assert plan.requests[0].token_ids == prompt[32:] and plan.num_batched_tokens == 13
    scheduler.add_request(Request("chunked", list(range(60, 90)), max_tokens=1))
    plan, _ = step(scheduler)  # decode tokens first; the new prompt gets the 14 tokens left
    long_table = list(range(10)) + [12]  # its 41st token starts a block after short's
    assert rows(plan) == [("long", 1, 40, long_table, True), ("short", 1, 5, [10, 11], True),
                          ("chunked", 14, 0, [13, 14, 15, 16], False)]
    plan, _ = step(scheduler)
    assert rows(plan) == [("long", 1, 41, long_table, True), ("short", 1, 6, [10, 11], True),
                          ("chunked", 14, 14, [13, 14, 15, 16, 17, 18, 19], False)]


def test_decode_tokens_come_first_then_prompt_chunks_then_new_requests():
    scheduler = make_scheduler(num_blocks=32, max_num_batched_tokens=8)
    scheduler.add_request(Request("a", [1, 2], max_tokens=8))
    scheduler.add_request(Request("b", [3, 4, 5], max_tokens=8))
    fake_step = FakeStep(scheduler.block_manager)
    plan, _ = step(scheduler, fake_step)
    assert [(r[0], r[1]) for r in rows(plan)] == [("a", 2), ("b", 3)]
    scheduler.add_request(Request("c", list(range(10, 30)), max_tokens=8))
    plan, _ = step(scheduler, fake_step)
    assert [(r[0], r[1], r[2]) for r in rows(plan)] == [("a", 1, 2), ("b", 1, 3), ("c", 6, 0)]
    scheduler.add_request(Request("d", [6, 7], max_tokens=8))
    plan, _ = step(scheduler, fake_step)  # no budget left for d
    assert [(r[0], r[1], r[2]) for r in rows(plan)] == [("a", 1, 3), ("b", 1, 4), ("c", 6, 6)]
    plan, _ = step(scheduler, fake_step)
    assert [(r[0], r[1], r[2]) for r in rows(plan)] == [("a", 1, 4), ("b", 1, 5), ("c", 6, 12)]
    plan, _ = step(scheduler, fake_step)
    assert [(r[0], r[1], r[2], r[4]) for r in rows(plan)] == [("a", 1, 5, True), ("b", 1, 6, True),
                                                               ("c", 2, 18, True), ("d", 2, 0, True)]
    plan, _ = step(scheduler, fake_step)
    assert [(r[0], r[1]) for r in rows(plan)] == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]


def test_batch_size_caps_running_requests_and_a_waiting_one_enters_when_one_finishes():
    scheduler = make_scheduler(max_num_seqs=2)
    scheduler.add_request(Request("r0", [1, 2, 3], max_tokens=1))
    scheduler.add_request(Request("r1", [4, 5, 6], max_tokens=3))
    scheduler.add_request(Request("r2", [7, 8, 9], max_tokens=3))
    plan, finished = step(scheduler)
    assert rows(plan) == [("r0", 3, 0, [0], True), ("r1", 3, 0, [1], True)]
    assert [r.request_id for r in finished] == ["r0"] and scheduler.waiting[0].request_id == "r2"
    plan, _ = step(scheduler)
    assert rows(plan) == [("r1", 1, 3, [1], True), ("r2", 3, 0, [0], True)]


def test_a_waiting_request_enters_as_soon_as_blocks_free_up():
    scheduler = make_scheduler(num_blocks=4)
    scheduler.add_request(Request("r0", list(range(1, 9)), max_tokens=3))
    scheduler.add_request(Request("r1", list(range(11, 19)), max_tokens=1))
    scheduler.add_request(Request("r2", [21, 22, 23, 24], max_tokens=1))
    plan, finished = step(scheduler)
    assert rows(plan) == [("r0", 8, 0, [0, 1], True), ("r1", 8, 0, [2, 3], True)]
    assert [r.request_id for r in finished] == ["r1"] and scheduler.requests["r2"].status is RequestStatus.WAITING
    plan, _ = step(scheduler)
    assert rows(plan) == [("r0", 1, 8, [0, 1, 2], True), ("r2", 4, 0, [3], True)]


def test_a_waiting_request_that_does_not_fit_yet_is_not_overtaken_by_later_ones():
    scheduler = make_scheduler(num_blocks=4)
    scheduler.add_request(Request("r0", list(range(1, 9)), max_tokens=2))
    scheduler.add_request(Request("big", list(range(11, 23)), max_tokens=1))
    scheduler.add_request(Request("small", [30], max_tokens=1))
    plan, _ = step(scheduler)  # big needs 3 blocks, 2 are free: small, which fits, waits behind it
    assert rows(plan) == [("r0", 8, 0, [0, 1], True)]
    plan, finished = step(scheduler)
    assert rows(plan) == [("r0", 1, 8, [0, 1, 2], True)] and [r.request_id for r in finished] == ["r0"]
    plan, _ = step(scheduler)
    assert rows(plan) == [("big", 12, 0, [0, 1, 2], True), ("small", 1, 0, [3], True)]


def test_preemption_takes_the_youngest_and_puts_it_at_the_front_of_the_queue():
    scheduler = make_scheduler(num_blocks=6)
    for name, first in (("r0", 0), ("r1", 10), ("r2", 20)):
        scheduler.add_request(Request(name, list(range(first, first + 8)), max_tokens=8))
    scheduler.add_request(Request("r3", [30, 31, 32, 33], max_tokens=8))
    fake_step = FakeStep(scheduler.block_manager)
    plan, _ = step(scheduler, fake_step)
    assert rows(plan) == [("r0", 8, 0, [0, 1], True), ("r1", 8, 0, [2, 3], True), ("r2", 8, 0, [4, 5], True)]
    plan, _ = step(scheduler, fake_step)  # r0 and r1 each need a block: r2 goes
    assert rows(plan) == [("r0", 1, 8, [0, 1, 4], True), ("r1", 1, 8, [2, 3, 5], True)]
    assert plan.preempted_ids == ["r2"] and scheduler.num_preemptions == 1
    r2 = scheduler.requests["r2"]
    assert (r2.status, r2.num_computed_tokens, r2.num_output_tokens, r2.num_preemptions) == (
        RequestStatus.PREEMPTED, 0, 1, 1)
    assert [r.request_id for r in scheduler.waiting] == ["r2", "r3"]
    for computed in (9, 10, 11):
        plan, _ = step(scheduler, fake_step)
        assert rows(plan) == [("r0", 1, computed, [0, 1, 4], True), ("r1", 1, computed, [2, 3, 5], True)]
    plan, _ = step(scheduler, fake_step)  # r0 needs a 4th block: r1, now the youngest, goes
    assert rows(plan) == [("r0", 1, 12, [0, 1, 4, 2], True)] and plan.preempted_ids == ["r1"]
    assert [r.request_id for r in scheduler.waiting] == ["r1", "r2", "r3"]
    admitted = []
    while scheduler.has_unfinished_requests():
        plan, _ = step(scheduler, fake_step)
        admitted += [item.request_id for item in plan.requests if item.num_computed_tokens == 0]
        assert_pool_consistent(scheduler)
    assert admitted[:3] == ["r1", "r2", "r3"]


def test_a_request_that_is_itself_the_youngest_preempts_itself_then_recomputes_what_it_had():
    scheduler = make_scheduler(num_blocks=4)
    scheduler.add_request(Request("r0", [1, 2, 3, 4, 5, 6], max_tokens=3))
    scheduler.add_request(Request("r1", list(range(11, 19)), max_tokens=3))
    fake_step = FakeStep(scheduler.block_manager)
    plan, _ = step(scheduler, fake_step)
    assert rows(plan) == [("r0", 6, 0, [0, 1], True), ("r1", 8, 0, [2, 3], True)]
    plan, _ = step(scheduler, fake_step)  # r1's 9th token needs a block, and r1 is the youngest
    assert rows(plan) == [("r0", 1, 6, [0, 1], True)] and plan.preempted_ids == ["r1"]
    assert scheduler.block_manager.free_queue() == [2, 3]
    r1 = scheduler.requests["r1"]
    had = list(r1.all_token_ids)
    assert len(had) == 9 and r1.num_computed_tokens == 0
    plan, finished = step(scheduler, fake_step)  # r1 needs 3 blocks to recompute; 2 are free
    assert rows(plan) == [("r0", 1, 7, [0, 1], True)] and [r.request_id for r in finished] == ["r0"]
    plan, _ = step(scheduler, fake_step)
    resumed = plan.requests[0]
    assert rows(plan) == [("r1", 9, 0, [0, 1, 2], True)] and resumed.token_ids == had
    # The same row a new request with those tokens gets.
    fresh = make_scheduler(num_blocks=4)
    fresh.add_request(Request("r1", had, max_tokens=2))
    assert fresh.schedule().requests == [resumed]
    while scheduler.has_unfinished_requests():
        _, finished = step(scheduler, fake_step)
    assert finished[0].output_token_ids == generate_alone(list(range(11, 19)), 3)
    assert scheduler.block_manager.num_free_blocks == 4


def test_a_preempted_request_finds_its_own_blocks_still_cached():
    scheduler = make_scheduler(num_blocks=4, prefix_caching=True)
    scheduler.add_request(Request("r0", [1, 2, 3, 4, 5, 6], max_tokens=3))
    scheduler.add_request(Request("r1", list(range(11, 19)), max_tokens=3))
    fake_step = FakeStep(scheduler.block_manager)
    step(scheduler, fake_step)
    plan, _ = step(scheduler, fake_step)
    assert plan.preempted_ids == ["r1"]
    manager = scheduler.block_manager
    assert manager.free_queue() == [3, 2] and manager.is_cached(2) and manager.is_cached(3)
    step(scheduler, fake_step)  # r0 finishes with 8 tokens computed: its blocks are cached too
    assert manager.free_queue() == [3, 2, 1, 0]
    plan, _ = step(scheduler, fake_step)
    assert rows(plan) == [("r1", 1, 8, [2, 3, 1], True)]
    assert (scheduler.prefix_cache_queries, scheduler.prefix_cache_hits) == (6 + 8 + 9, 8)
    while scheduler.has_unfinished_requests():
        _, finished = step(scheduler, fake_step)
    assert finished[0].output_token_ids == generate_alone(list(range(11, 19)), 3)


def test_a_common_system_prompt_is_computed_once_and_its_blocks_are_reference_counted():
    scheduler = make_scheduler(num_blocks=16, prefix_caching=True)
    manager = scheduler.block_manager
    system = list(range(100, 108))  # two full blocks
    fake_step = FakeStep(manager)
    scheduler.add_request(Request("a", system + [1, 2, 3], max_tokens=2))
    plan, _ = step(scheduler, fake_step)
    assert rows(plan) == [("a", 11, 0, [0, 1, 2], True)]
    assert [manager.is_cached(b) for b in (0, 1, 2)] == [True, True, False]
    scheduler.add_request(Request("b", system + [4, 5], max_tokens=3))
    plan = scheduler.schedule()
    assert rows(plan) == [("a", 1, 11, [0, 1, 2], True), ("b", 2, 8, [0, 1, 3], True)]
    assert plan.requests[1].token_ids == [4, 5]
    assert [manager.ref_count(b) for b in (0, 1, 2, 3)] == [2, 2, 1, 1]
    finished = scheduler.update(plan, fake_step(plan))
    assert [r.request_id for r in finished] == ["a"]
    assert [manager.ref_count(b) for b in (0, 1, 2, 3)] == [1, 1, 0, 1]
    step(scheduler, fake_step)
    _, finished = step(scheduler, fake_step)
    assert [r.request_id for r in finished] == ["b"]
    assert [manager.ref_count(b) for b in (0, 1, 2, 3)] == [0, 0, 0, 0]
    assert all(manager.is_cached(b) for b in (0, 1, 2, 3)) and manager.num_free_blocks == 16
    assert manager.free_queue()[-4:] == [2, 3, 1, 0]
    scheduler.add_request(Request("c", system + [9], max_tokens=1))
    scheduler.add_request(Request("d", [7, 7, 7, 7] + system, max_tokens=1))  # the same blocks after another prefix
    plan = scheduler.schedule()
    assert rows(plan) == [("c", 1, 8, [0, 1, 4], True), ("d", 12, 0, [5, 6, 7], True)]
    assert [manager.ref_count(b) for b in (0, 1)] == [1, 1]
    assert (scheduler.prefix_cache_queries, scheduler.prefix_cache_hits) == (11 + 10 + 9 + 12, 16)
    scheduler.update(plan, fake_step(plan))
    assert manager.num_free_blocks == 16


def test_a_fully_cached_prompt_still_computes_its_last_token():
    scheduler = make_scheduler(prefix_caching=True)
    prompt = list(range(100, 108))
    scheduler.add_request(Request("a", prompt, max_tokens=1))
    plan, _ = step(scheduler)
    assert rows(plan) == [("a", 8, 0, [0, 1], True)]
    scheduler.add_request(Request("b", prompt, max_tokens=1))
    plan = scheduler.schedule()
    assert rows(plan) == [("b", 4, 4, [0, 2], True)]  # block 1 matches too, but token 7 must run
    assert plan.requests[0].token_ids == prompt[4:]


def load_requests():
    """64 prompts of 1 to 3 blocks, half after a common two-block system prompt, 1 to 9 new tokens each."""
    system = list(range(100, 108))
    requests = []
    for index in range(64):
        own = [(index * 13 + k) % 97 + 1 for k in range(1 + index % 12)]
        requests.append((system + own if index % 2 == 0 else own, 1 + index % 9))
    return requests


LOAD = load_requests()
ALONE = [generate_alone(prompt, max_tokens) for prompt, max_tokens in LOAD]


@pytest.mark.parametrize("prefix_caching", [False, True])
@pytest.mark.parametrize("budget", [16, 64])
def test_64_requests_through_a_pool_too_small_for_them_all_finish_as_they_would_alone(prefix_caching, budget):
    scheduler = make_scheduler(num_blocks=12, max_num_seqs=8, max_num_batched_tokens=budget,
                               prefix_caching=prefix_caching)
    for index, (prompt, max_tokens) in enumerate(LOAD):
        scheduler.add_request(Request(index, prompt, max_tokens))
    fake_step = FakeStep(scheduler.block_manager)
    results = {}
    for _ in range(1000):
        if not scheduler.has_unfinished_requests():
            break
        oldest = scheduler.running[0].request_id if scheduler.running else None
        plan = scheduler.schedule()
        ids = [item.request_id for item in plan.requests]
        assert plan.requests and len(ids) == len(set(ids)) <= 8 and plan.num_batched_tokens <= budget
        assert oldest is None or oldest in ids  # the oldest running request always makes progress
        assert_pool_consistent(scheduler)
        for request in scheduler.update(plan, fake_step(plan)):
            results[request.request_id] = request.output_token_ids
    assert [results.get(index) for index in range(64)] == ALONE
    assert all(len(ALONE[index]) == max_tokens for index, (_, max_tokens) in enumerate(LOAD))
    assert scheduler.num_preemptions > 0
    manager = scheduler.block_manager
    assert manager.num_free_blocks == 12 and all(manager.ref_count(b) == 0 for b in range(12))
    assert (scheduler.prefix_cache_hits > 0) == prefix_caching


def test_requests_that_could_never_run_are_rejected_when_added():
    scheduler = make_scheduler(num_blocks=4, max_model_len=32)
    with pytest.raises(RequestRejected, match=r"prompt \(30 tokens\) \+ max tokens 3 exceeds the model length 32 "
                                              r"\(lower --max_length to 2\)"):
        scheduler.add_request(Request("long", list(range(30)), max_tokens=3))
    with pytest.raises(RequestRejected, match=r"needs 5 KV blocks of 4 tokens, more than the pool's 4"):
        scheduler.add_request(Request("big", list(range(16)), max_tokens=2))
    scheduler.add_request(Request("fits", list(range(16)), max_tokens=1))  # its last token needs no slot
    with pytest.raises(RequestRejected, match="already queued"):
        scheduler.add_request(Request("fits", [1], max_tokens=1))
    with pytest.raises(RequestRejected, match="at least one token"):
        scheduler.add_request(Request("empty", [], max_tokens=1))
    with pytest.raises(RequestRejected, match="asks for 0 new tokens"):
        scheduler.add_request(Request("none", [1], max_tokens=0))
    assert issubclass(RequestRejected, UserError) and issubclass(RequestRejected, ValueError)
    assert [r.request_id for r in scheduler.waiting] == ["fits"]


def test_an_aborted_request_frees_its_blocks_and_its_pending_row_is_ignored():
    scheduler = make_scheduler(max_num_seqs=2)
    scheduler.add_request(Request("a", [1, 2, 3, 4, 5], max_tokens=4))
    scheduler.add_request(Request("b", [6, 7], max_tokens=4))
    scheduler.add_request(Request("w", [8], max_tokens=4))
    plan = scheduler.schedule()
    scheduler.abort_request("a")
    scheduler.abort_request("w")
    scheduler.abort_request("unknown")
    assert scheduler.update(plan, {"a": 1, "b": 1}) == []
    assert list(scheduler.requests) == ["b"] and not scheduler.waiting
    assert scheduler.block_manager.block_table("a") == [] and scheduler.block_manager.num_free_blocks == 15


def test_a_plan_packs_into_the_block_steps_inputs():
    scheduler = make_scheduler()
    scheduler.add_request(Request("a", [1, 2, 3, 4, 5], max_tokens=4))
    step(scheduler)
    scheduler.add_request(Request("b", [6, 7], max_tokens=4))
    plan = scheduler.schedule()
    assert plan.input_ids == [plan.requests[0].token_ids[0], 6, 7]
    assert plan.seq_lens_this_time == [1, 2] and plan.seq_lens_decoder == [5, 0]
    assert plan.block_tables() == [[0, 1], [2, -1]]
    assert plan.block_tables(width=4, pad=0) == [[0, 1, 0, 0], [2, 0, 0, 0]]


def test_settings_below_one_are_user_errors():
    with pytest.raises(UserError, match="--batch_size must be at least 1"):
        make_scheduler(max_num_seqs=0)
    with pytest.raises(UserError, match="--max_num_batched_tokens must be at least 1"):
        make_scheduler(max_num_batched_tokens=0)
