"""The generation ops (token_penalty, argmax, top_p_sampling, stop_flags) beyond the table's checks
(tests/ops/test_spec.py runs every case of paddlellm/ops/spec.py against the references and the plain ops):
the op set against predictor/sampling.py (penalized, candidates, Sampler with its per-request random stream),
ties, NaN and -inf, idle rows, threads, errors and an exported program.

top_p_sampling is exact on ids against the float64 reference wherever no cumulative probability is within 1e-6
of top_p or of the uniform (spec.py's cases are drawn so). sampling.py computes in float32, so against it the
tests stay away from its boundaries by twice the measured float32 - float64 gap of its cumulative probabilities
(its float32 cumsum over a 49152 vocabulary is off by up to ~1e-5), plus 1e-6.
"""
import re

import numpy as np
import paddle
import pytest

from paddlellm import ops
from paddlellm.ops.reference import sampling_candidates, sampling_ranked, top_p_sampling_ref, token_penalty_ref
from paddlellm.predictor.sampling import Sampler, SamplingParams, candidates, most_probable, penalized

VOCAB = 49152  # SmolLM2's


def t(a, dtype=None):
    return paddle.to_tensor(np.asarray(a, dtype=dtype))


def llm_logits(rng, rows, vocab=VOCAB):
    """Language-model-like rows: a Zipf-shaped prior over a shuffled vocabulary, noise, a few strong tokens."""
    out = np.empty((rows, vocab), np.float32)
    for r in range(rows):
        prior = -1.1 * np.log1p(rng.permutation(vocab))
        x = prior + rng.randn(vocab) * 1.5
        x[rng.choice(vocab, 3, replace=False)] += rng.uniform(2.0, 8.0, 3)
        out[r] = x + 12.0
    return out


def sample(logits, temperature, top_k, top_p, uniform):
    rows = len(logits)
    full = lambda v, dtype: t(np.broadcast_to(np.asarray(v, dtype), (rows,)).copy())
    return ops.top_p_sampling(t(logits), full(temperature, np.float32), full(top_k, np.int64),
                              full(top_p, np.float32), full(uniform, np.float32)).numpy()


def penalty_inputs(logits, seen, repetition=1.0, frequency=0.0, presence=0.0, min_len=0, cur_len=0, eos=()):
    """token_penalty's arguments for rows of logits and lists of seen ids (padded with -1)."""
    rows = len(logits)
    width = max([len(s) for s in seen] + [0])
    ids = -np.ones((rows, width), np.int64)
    for r, s in enumerate(seen):
        ids[r, :len(s)] = s
    per_row = lambda v, dtype: t(np.broadcast_to(np.asarray(v, dtype), (rows,)).copy())
    return [t(logits, np.float32), t(ids), per_row(repetition, np.float32), per_row(frequency, np.float32),
            per_row(presence, np.float32), per_row(min_len, np.int64), per_row(cur_len, np.int64),
            t(np.asarray(eos, np.int64))]


# ---------------------------------------------------------------- token_penalty


def test_repetition_penalty_is_sampling_penalized_bit_for_bit():
    rng = np.random.RandomState(0)
    logits = rng.randn(5, 1000).astype(np.float32) * 4
    logits[:, :2] = [0.0, -0.0]
    seen = [rng.randint(0, 1000, n).tolist() + [0, 1] for n in (0, 3, 50, 400, 1000)]
    for penalty in (1.0, 1.3, 0.7):
        got = ops.token_penalty(*penalty_inputs(logits, seen, repetition=penalty)).numpy()
        for r in range(5):
            want = penalized(logits[r], seen[r], penalty)
            assert got[r].tobytes() == want.tobytes()  # same bits, signed zeros included


def test_frequency_presence_min_length_and_idle_rows():
    logits = np.array([[2.0, -2.0, 1.0, 0.5, 3.0]] * 4, np.float32)
    seen = [[0, 0, 1, 4, -1, 2], [3, 3, 3], [0, 1], [0]]  # row 0: the 2 after the -1 is not seen
    args = penalty_inputs(logits, seen, repetition=[2.0, 1.0, 1.0, 2.0], frequency=0.25, presence=0.5,
                          min_len=[3, 3, 0, 3], cur_len=[2, 3, 0, -1], eos=[4])
    got = ops.token_penalty(*args).numpy()
    np.testing.assert_array_equal(got[0], [2.0 / 2 - 2 * 0.25 - 0.5, -2.0 * 2 - 0.25 - 0.5, 1.0, 0.5, -1e10])
    np.testing.assert_array_equal(got[1], [2.0, -2.0, 1.0, 0.5 - 3 * 0.25 - 0.5, 3.0])  # length 3 = min: eos free
    np.testing.assert_array_equal(got[2], [2.0 - 0.75, -2.0 - 0.75, 1.0, 0.5, 3.0])
    np.testing.assert_array_equal(got[3], logits[3])  # cur_len < 0: an idle row, as it came
    assert got.tobytes() == token_penalty_ref(*args).numpy().tobytes()
    np.testing.assert_array_equal(args[0].numpy(), logits)  # not in place


def test_penalty_of_a_token_seen_many_times_rounds_once():
    """count * frequency and the presence are subtracted in float64 and rounded once to float32."""
    logits = np.full((1, 3), 1e-3, np.float32)
    args = penalty_inputs(logits, [[1] * 7], repetition=1.1, frequency=0.1, presence=1e-4)
    rep = np.float32(1e-3) / np.float32(1.1)
    want = np.float32(np.float64(rep) - 7 * np.float64(np.float32(0.1)) - np.float64(np.float32(1e-4)))
    assert ops.token_penalty(*args).numpy()[0, 1] == want


# ---------------------------------------------------------------- argmax


def test_argmax_ties_nan_and_minus_inf():
    x = np.array([[1, 3, 3, 2] * 9,  # ties: the lowest id, past the 16-wide blocks too
                  [-np.inf] * 36,
                  [0.0] * 20 + [-0.0] * 16,  # -0 == +0: id 0
                  [1, np.nan, 5, np.nan] * 9,  # the first NaN, as numpy
                  [-np.inf] * 35 + [-1e30]], np.float32)
    x[0, 33] = 7
    got = ops.argmax(t(x)).numpy()
    np.testing.assert_array_equal(got, np.argmax(x, axis=1))
    np.testing.assert_array_equal(got, [33, 0, 0, 1, 35])
    small = np.array([[2, 5, 5], [np.nan, 1, 9]], np.float32)
    np.testing.assert_array_equal(ops.argmax(t(small)).numpy(), [1, 0])


def test_argmax_is_the_greedy_sampler():
    rng = np.random.RandomState(3)
    logits = llm_logits(rng, 4)
    seen = [rng.randint(0, VOCAB, 30).tolist() for _ in range(4)]
    params = SamplingParams(decode_strategy="greedy_search", repetition_penalty=1.2)
    greedy = ops.argmax(ops.token_penalty(*penalty_inputs(logits, seen, repetition=1.2))).numpy()
    assert greedy.dtype == np.int64
    assert greedy.tolist() == [Sampler(params)(logits[r], seen[r]) for r in range(4)]


# ---------------------------------------------------------------- top_p_sampling


def _float32_cut(logits, seen, temperature, top_k, penalty):
    """sampling.candidates' float32 cumulative probabilities before the top-p cut, and the float64 ones."""
    row64 = penalized(logits, seen, penalty)
    row = row64 / np.float32(temperature)
    if 0 < top_k < len(row):
        ids = most_probable(row, top_k)
        probs = np.exp(row[ids] - row[ids[0]])
        probs /= probs.sum()
    else:
        ids = most_probable(row, len(row))
        probs = np.exp(row[ids] - row.max()) / np.exp(row - row.max()).sum()
    return np.cumsum(probs), np.cumsum(sampling_ranked(row64, np.float32(temperature), top_k)[1])


def clear_of(cum32, cum64, value):
    """Whether value is farther from every float64 cumulative probability than twice the float32 - float64 gap
    near it, plus 1e-6: then sampling.py's float32 rounding cannot move it across one."""
    n = min(len(cum32), len(cum64))
    at = int(np.searchsorted(cum64, value))
    lo, hi = max(0, at - 64), min(n, at + 64)
    gap = np.max(np.abs(cum32[lo:hi] - cum64[lo:hi])) if hi > lo else 0.0
    return float(np.min(np.abs(cum64 - value))) > 2 * gap + 1e-6


def float32_clear(logits, seen, temperature, top_k, top_p, uniform=None, penalty=1.0):
    """Whether top_p (and the uniform) are clear of sampling.py's float32 boundaries (clear_of)."""
    if top_p < 1.0 and not clear_of(*_float32_cut(logits, seen, temperature, top_k, penalty), top_p):
        return False
    if uniform is None:
        return True
    params = SamplingParams(decode_strategy="sampling", temperature=temperature, top_k=top_k, top_p=top_p,
                            repetition_penalty=penalty)
    probs32 = candidates(logits, seen, params)[1]
    probs64 = sampling_candidates(penalized(logits, seen, penalty), np.float32(temperature), top_k,
                                  np.float32(top_p))[1]
    return clear_of(np.cumsum(probs32) / probs32.sum(), np.cumsum(probs64) / probs64.sum(), uniform)


def _uniforms_between(cdf, margin):
    """A uniform inside each candidate's CDF interval, farther than margin from its ends (None where too narrow)."""
    out, lo = [], 0.0
    for hi in cdf:
        mid = np.float32((lo + hi) / 2)
        out.append(mid if hi - lo > 2 * margin + 1e-7 else None)
        lo = hi
    return out


SETTINGS = [  # temperature, top_k, top_p
    (1.0, 0, 0.9), (0.7, 0, 0.95), (1.3, 0, 0.5), (1.0, 50, 1.0), (0.8, 20, 0.8), (1.0, 0, 1.0),
    (0.6, 5, 0.3), (1.0, 1, 1.0), (1.5, 0, 0.6), (1.2, 0, 0.85), (1.5, 200, 0.9),
]


@pytest.mark.parametrize("temperature,top_k,top_p", SETTINGS)
def test_candidates_and_their_order_are_sampling_py_candidates(temperature, top_k, top_p):
    """A uniform in the middle of each candidate's CDF interval picks exactly that candidate: the op keeps the
    same tokens as sampling.candidates (float32) and the float64 reference, in the same order."""
    rng = np.random.RandomState(int(temperature * 100) + top_k)
    logits = llm_logits(rng, 1)[0]
    params = SamplingParams(decode_strategy="sampling", temperature=temperature, top_k=top_k, top_p=top_p)
    ids32, probs32 = candidates(logits, [], params)
    ids, probs = sampling_candidates(logits, np.float32(temperature), top_k, np.float32(top_p))
    assert float32_clear(logits, [], temperature, top_k, top_p), "choose another setting"
    assert set(ids32.tolist()) == set(ids.tolist())
    row32 = logits / np.float32(temperature)  # sampling.py's float32 row: it may tie what float64 tells apart
    assert np.all(row32[ids32[ids32 != ids]] == row32[ids[ids32 != ids]])  # only such ties are ordered otherwise
    shown = min(len(ids), 300)  # enough to cover the sorted head and the tail of a top-p set
    cdf = np.cumsum(probs) / np.sum(probs)
    cdf32 = np.cumsum(probs32) / np.sum(probs32)
    us = [u if u is not None and clear_of(cdf32, cdf, u) else None for u in _uniforms_between(cdf, 1e-6)]
    rows = [i for i in list(range(shown)) + list(range(max(shown, len(ids) - 50), len(ids))) if us[i] is not None]
    got = sample(np.repeat(logits[None], len(rows), axis=0), temperature, top_k, top_p, [us[i] for i in rows])
    np.testing.assert_array_equal(got, ids[rows])
    assert len(rows) >= min(len(ids), 5)


def test_the_same_ids_as_the_sampler_with_the_same_random_stream():
    """Sampler (repetition penalty, candidates, rng.choice) against token_penalty + top_p_sampling with the uniform
    drawn from the same per-request generator (Generator.choice with p draws one uniform per pick)."""
    rng = np.random.RandomState(11)
    draws, compared = 0, 0
    for index, (temperature, top_k, top_p) in enumerate(SETTINGS * 2):
        params = SamplingParams(decode_strategy="sampling", temperature=temperature, top_k=top_k, top_p=top_p,
                                repetition_penalty=1.15, seed=5)
        sampler, stream = Sampler(params, index), np.random.default_rng([params.seed, index])
        seen = rng.randint(0, VOCAB, 40).tolist()
        for _ in range(3):
            logits = llm_logits(rng, 1)[0]
            u = stream.random()
            want = sampler(logits, seen)
            draws += 1
            if not float32_clear(logits, seen, temperature, top_k, top_p, u, 1.15):
                continue
            penalized_logits = ops.token_penalty(*penalty_inputs(logits[None], [seen], repetition=1.15))
            got = ops.top_p_sampling(penalized_logits, t([temperature], np.float32), t([top_k], np.int64),
                                     t([top_p], np.float32), t([u], np.float32)).numpy()
            row32 = penalized(logits, seen, 1.15) / np.float32(temperature)  # float32 ties may swap two ids
            assert got[0] == want or row32[got[0]] == row32[want], (index, temperature, top_k, top_p, u)
            compared += 1
    assert compared >= 0.8 * draws


def test_sampled_frequencies_follow_the_probabilities():
    """Stratified uniforms over [0, 1) reproduce the candidates' probabilities (to 1 / draws)."""
    rng = np.random.RandomState(2)
    logits = rng.randn(40).astype(np.float32) * 2
    draws = 4000
    us = (np.arange(draws) + 0.5) / draws
    got = sample(np.repeat(logits[None], draws, axis=0), 0.8, 0, 0.9, us)
    ids, probs = sampling_candidates(logits, np.float32(0.8), 0, np.float32(0.9))
    counts = np.array([(got == i).sum() for i in ids])
    assert counts.sum() == draws  # nothing outside the candidates
    np.testing.assert_allclose(counts / draws, probs, atol=1.5 / draws)


def test_ties_and_masked_tokens():
    x = np.array([[1.0, 3.0, 3.0, 3.0, 2.0, -np.inf, 3.0]], np.float32)
    # top_k = 2 among four equal logits keeps the two lowest ids, each with probability 1/2
    assert sample(np.repeat(x, 2, axis=0), 1.0, 2, 1.0, [0.25, 0.75]).tolist() == [1, 2]
    # greedy rows: top_k = 1 is the argmax whatever the uniform
    assert sample(np.repeat(x, 3, axis=0), 0.5, 1, 0.2, [0.0, 0.5, 0.999]).tolist() == [1, 1, 1]
    # the whole row: -inf never comes out, the last uniform lands on the least probable finite token
    us = np.linspace(0, 1, 200, endpoint=False)
    got = sample(np.repeat(x, 200, axis=0), 1.0, 0, 1.0, us)
    assert 5 not in got and set(got) == {0, 1, 2, 3, 4, 6} and got[-1] == 0
    # top_p 0 keeps the top token only; top_p above 1 keeps all
    assert sample(np.repeat(x, 2, axis=0), 1.0, 0, 0.0, [0.1, 0.9]).tolist() == [1, 1]
    np.testing.assert_array_equal(sample(np.repeat(x, 200, axis=0), 1.0, 0, 1.5, us), got)
    one = np.zeros((3, 1), np.float32)  # a vocabulary of one
    assert sample(one, 1.0, 0, 0.5, [0.0, 0.3, 0.99]).tolist() == [0, 0, 0]


def test_a_large_top_k_past_the_finite_logits():
    """top_k above the heap's 256 and above the number of finite logits: the -inf ones kept are never picked."""
    rng = np.random.RandomState(8)
    x = rng.randn(1, 1000).astype(np.float32) * 2
    x[0, rng.choice(1000, 600, replace=False)] = -np.inf
    us = np.linspace(0, 1, 400, endpoint=False)
    for top_k, top_p in ((500, 1.0), (500, 0.97), (300, 1.0), (999, 0.5)):
        args = [t(np.repeat(x, 400, axis=0)), t(np.full(400, 1.1, np.float32)), t(np.full(400, top_k, np.int64)),
                t(np.full(400, top_p, np.float32)), t(us, np.float32)]
        got = ops.top_p_sampling(*args).numpy()
        assert np.isfinite(x[0, got]).all() and len(set(got)) > (100 if top_p == 1.0 else 5)
        np.testing.assert_array_equal(got, top_p_sampling_ref(*args).numpy())


def test_temperature_sharpens_and_flattens():
    rng = np.random.RandomState(4)
    logits = llm_logits(rng, 1, vocab=5000)[0]
    us = (np.arange(500) + 0.5) / 500
    cold = sample(np.repeat(logits[None], 500, axis=0), 0.05, 0, 1.0, us)
    hot = sample(np.repeat(logits[None], 500, axis=0), 3.0, 0, 1.0, us)
    assert len(set(cold)) <= 3 and len(set(hot)) > 100
    np.testing.assert_array_equal(cold, top_p_sampling_ref(*[t(a) for a in (
        np.repeat(logits[None], 500, axis=0), np.full(500, 0.05, np.float32), np.zeros(500, np.int64),
        np.ones(500, np.float32), us.astype(np.float32))]).numpy())


@pytest.fixture
def two_threads():
    from paddle.base import core

    before = ops.num_threads()
    core.set_num_threads(2)
    yield
    core.set_num_threads(before)


def test_threads_and_repeated_calls_give_the_same_ids(two_threads):
    from paddle.base import core

    rng = np.random.RandomState(9)
    rows = 16
    logits = llm_logits(rng, rows)
    settings = [SETTINGS[r % len(SETTINGS)] for r in range(rows)]
    args = [t(logits), t([s[0] for s in settings], np.float32), t([s[1] for s in settings], np.int64),
            t([s[2] for s in settings], np.float32), t(rng.rand(rows), np.float32)]
    seen = [rng.randint(0, VOCAB, 100).tolist() for _ in range(rows)]
    pen = penalty_inputs(logits, seen, repetition=1.2, frequency=0.1, presence=0.2, min_len=5, cur_len=3, eos=[7, 9])
    two = [ops.top_p_sampling(*args).numpy(), ops.argmax(args[0]).numpy(), ops.token_penalty(*pen).numpy()]
    assert np.array_equal(ops.top_p_sampling(*args).numpy(), two[0])
    core.set_num_threads(1)
    one = [ops.top_p_sampling(*args).numpy(), ops.argmax(args[0]).numpy(), ops.token_penalty(*pen).numpy()]
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes()


def test_every_isa_gives_the_same_ids():
    """The weights of a whole-vocabulary row are computed per ISA (PADDLELLM_CPU_ISA); same bits on each."""
    from paddlellm.ops.check import cpu_isa

    rng = np.random.RandomState(13)
    rows = 24
    logits = llm_logits(rng, rows)
    args = [t(logits), t(rng.choice([0.5, 1.0, 1.7], rows), np.float32),
            t(rng.choice([0, 0, 300, 5000], rows), np.int64), t(rng.choice([1.0, 0.9, 0.99, 0.5], rows), np.float32),
            t(rng.rand(rows), np.float32)]
    results = []
    for isa in ops.supported_isas():
        with cpu_isa(isa):
            results.append(ops.top_p_sampling(*args).numpy())
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    np.testing.assert_array_equal(results[0], top_p_sampling_ref(*args).numpy())


# ---------------------------------------------------------------- stop_flags


def test_stop_flags():
    got = ops.stop_flags(t([5, 2, 9, 3, 3], np.int64), t([2, 9], np.int64), t([0, 0, 0, 8, 7], np.int64),
                         t([10, 10, 10, 9, 9], np.int64), t([False, False, False, False, True]))
    assert got.dtype == paddle.bool and got.numpy().tolist() == [False, True, True, True, True]
    none = ops.stop_flags(t([2], np.int64), t(np.zeros(0, np.int64)), t([0], np.int64), t([5], np.int64), t([False]))
    assert none.numpy().tolist() == [False]  # no eos ids: only the length stops a row


# ---------------------------------------------------------------- errors


def test_bad_inputs_are_clear_errors():
    x = np.zeros((2, 5), np.float32)
    good = penalty_inputs(x, [[1], [2]])
    bad = lambda i, v: good[:i] + [v] + good[i + 1:]
    with pytest.raises(Exception, match=re.escape("paddlellm_token_penalty: pre_ids[1, 1] = 5 is not below vocab 5")):
        ops.token_penalty(*bad(1, t([[1, -1], [2, 5]], np.int64)))
    with pytest.raises(Exception, match=re.escape("paddlellm_token_penalty: eos_token_id[0] = 5 is not in [0, 5)")):
        ops.token_penalty(*bad(7, t([5], np.int64)))
    with pytest.raises(Exception, match=re.escape("paddlellm_token_penalty: logits must be [rows, vocab] float32 with "
                                                  "vocab >= 1, got [2, 5] float64")):
        ops.token_penalty(*bad(0, t(x, np.float64)))
    with pytest.raises(Exception, match=re.escape("paddlellm_token_penalty: min_len must be [2] int64 (one per row), "
                                                  "got [2] int32")):
        ops.token_penalty(*bad(5, t([0, 0], np.int32)))
    with pytest.raises(Exception, match=re.escape("paddlellm_token_penalty: pre_ids must be [2, L] int64")):
        ops.token_penalty(*bad(1, t([[1]], np.int64)))
    with pytest.raises(Exception, match=re.escape("paddlellm_token_penalty: penalty_scores[1] must be > 0")):
        ops.token_penalty(*bad(2, t([1, 0], np.float32)))
    with pytest.raises(Exception, match=re.escape("paddlellm_argmax: logits must be [rows, vocab] float32 with vocab "
                                                  ">= 1, got [2, 0] float32")):
        ops.argmax(t(np.zeros((2, 0), np.float32)))
    with pytest.raises(Exception, match=re.escape("paddlellm_argmax: logits must be [rows, vocab] float32 with vocab "
                                                  ">= 1, got [5] float32")):
        ops.argmax(t(np.zeros(5, np.float32)))

    row = lambda v, dtype: t(np.asarray(v, dtype))
    args = [t(x), row([1, 1], np.float32), row([0, 0], np.int64), row([1, 1], np.float32), row([0.5, 0.5], np.float32)]
    change = lambda i, v: args[:i] + [v] + args[i + 1:]
    with pytest.raises(Exception, match=re.escape("paddlellm_top_p_sampling: temperature[1] must be > 0 and finite, "
                                                  "got 0 (greedy rows: top_k = 1)")):
        ops.top_p_sampling(*change(1, row([1, 0], np.float32)))
    with pytest.raises(Exception, match=re.escape("paddlellm_top_p_sampling: top_k[0] must be >= 0")):
        ops.top_p_sampling(*change(2, row([-1, 0], np.int64)))
    with pytest.raises(Exception, match=re.escape("paddlellm_top_p_sampling: uniform[0] must be in [0, 1), got 1")):
        ops.top_p_sampling(*change(4, row([1.0, 0.5], np.float32)))
    with pytest.raises(Exception, match=re.escape("paddlellm_top_p_sampling: top_p[1] is NaN")):
        ops.top_p_sampling(*change(3, row([1, np.nan], np.float32)))
    with pytest.raises(Exception, match=re.escape("paddlellm_top_p_sampling: top_k must be [2] int64 (one per row), "
                                                  "got [3] int64")):
        ops.top_p_sampling(*change(2, row([0, 0, 0], np.int64)))
    for poison in (np.nan, np.inf):
        y = x.copy()
        y[1, 3] = poison
        with pytest.raises(Exception, match=re.escape("paddlellm_top_p_sampling: logits row 1 holds NaN or +inf, or "
                                                      "no finite value")):
            ops.top_p_sampling(*change(0, t(y)))
    with pytest.raises(Exception, match="paddlellm_top_p_sampling: logits row 0 holds NaN or \\+inf, or no finite"):
        ops.top_p_sampling(*change(0, t(np.full((2, 5), -np.inf, np.float32))))

    flags = [row([1], np.int64), row([2], np.int64), row([0], np.int64), row([3], np.int64), t([False])]
    with pytest.raises(Exception, match=re.escape("paddlellm_stop_flags: stop_flags must be [1] bool (one per row), "
                                                  "got [1] int64")):
        ops.stop_flags(*flags[:4], row([0], np.int64))
    with pytest.raises(Exception, match=re.escape("paddlellm_stop_flags: eos_token_id must be [E] int64, got [1, 1]")):
        ops.stop_flags(flags[0], row([[2]], np.int64), *flags[2:])


# ---------------------------------------------------------------- exported program


class _Pick(paddle.nn.Layer):
    """Penalties, greedy and sampled ids, stop flags: one step's token choice as a program."""

    def forward(self, logits, pre_ids, penalty, frequency, presence, min_len, cur_len, eos, temperature, top_k, top_p,
                uniform, max_len, stop):
        scores = ops.token_penalty(logits, pre_ids, penalty, frequency, presence, min_len, cur_len, eos)
        sampled = ops.top_p_sampling(scores, temperature, top_k, top_p, uniform)
        greedy = ops.argmax(scores)
        return scores, greedy, sampled, ops.stop_flags(sampled, eos, cur_len, max_len, stop)


def test_exported_program_runs_the_generation_ops(tmp_path):
    import paddle.inference as pi
    from paddle.static import InputSpec

    names = ["logits", "pre_ids", "penalty", "frequency", "presence", "min_len", "cur_len", "eos", "temperature",
             "top_k", "top_p", "uniform", "max_len", "stop"]
    dtypes = ["float32", "int64", "float32", "float32", "float32", "int64", "int64", "int64", "float32", "int64",
              "float32", "float32", "int64", "bool"]
    shapes = [[None, None], [None, None], *[[None]] * 12]
    spec = [InputSpec(s, d, n) for s, d, n in zip(shapes, dtypes, names)]
    layer = _Pick()
    layer.eval()
    paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True), str(tmp_path / "pick"))
    program = (tmp_path / "pick.json").read_text()
    for name in ("token_penalty", "top_p_sampling", "argmax", "stop_flags"):
        assert f"paddlellm_{name}" in program

    ops.load_library()
    config = pi.Config(str(tmp_path / "pick.json"), str(tmp_path / "pick.pdiparams"))
    config.disable_gpu()
    config.disable_mkldnn()
    config.enable_new_ir(True)
    config.enable_new_executor(True)
    config.disable_glog_info()
    predictor = pi.create_predictor(config)
    rng = np.random.RandomState(5)
    for rows, vocab in ((3, 50), (6, 1000)):  # dynamic rows and vocabulary
        logits = llm_logits(rng, rows, vocab)
        feed = penalty_inputs(logits, [rng.randint(0, vocab, 8).tolist() for _ in range(rows)], repetition=1.3,
                              frequency=0.2, presence=0.1, min_len=2, cur_len=rng.randint(0, 4, rows), eos=[1, 2])
        feed += [t(np.full(rows, 0.8, np.float32)), t(rng.randint(0, 20, rows), np.int64),
                 t(np.full(rows, 0.9, np.float32)), t(rng.rand(rows), np.float32),
                 t(np.full(rows, 4, np.int64)), t(rng.rand(rows) < 0.3)]
        want = [x.numpy() for x in layer(*feed)]
        got = [x.numpy() for x in predictor.run(feed)]
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and np.array_equal(g, w)
