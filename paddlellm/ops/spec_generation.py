"""The generation ops' part of the op table (spec.py): token_penalty, argmax, top_p_sampling and stop_flags, their
cases, case builders and plain-Paddle forms (csrc/cpu/generation_ops.cc, sampling_ops.cc)."""
import numpy as np
import paddle

# Every library has them (the predictor samples on the host in every process): the CPU's host kernels, the HIP
# library's GPU kernels (csrc/hip/generation.hip) beside those host kernels, the npu library's host kernels
# (npu tensors are copied over and back).
GENERATION_BACKENDS = ("cpu", "hip", "npu")

# Rows and vocabularies: one row, odd row counts, a vocabulary of 1, small odd ones and SmolLM2's 49152.
GEN_SHAPES = ((1, 1), (5, 7), (7, 33), (13, 49152))
# pre_ids of l entries (0: none yet) and e eos ids
PENALTY_CASES = tuple(dict(s=s, v=v, l=l, e=e) for s, v in GEN_SHAPES + ((0, 7),) for l, e in ((0, 1), (9, 3), (64, 1)))
MARGIN = 1e-6  # top_p_sampling cases: no cumulative probability within this of top_p or of the uniform


def _gen_logits(rng, rows, vocab, style="llm"):
    """float32 [rows, vocab]: 'llm' unit-ish normal scores with a few strong tokens per row (a peaked, long-tailed
    softmax, as a language model's); 'ties' small integers (many exactly equal logits); 'masked' llm with about a
    third of each row at -inf (never all of it)."""
    if style == "ties":
        return rng.randint(-3, 4, (rows, vocab)).astype(np.float32)
    x = rng.randn(rows, vocab) * 2.0
    for r in range(rows):
        strong = rng.choice(vocab, max(1, vocab // 400), replace=False)
        x[r, strong] += rng.uniform(3.0, 10.0, len(strong))
    x = x.astype(np.float32)
    if style == "masked":
        mask = rng.rand(rows, vocab) < 0.35
        mask[np.arange(rows), x.argmax(axis=1)] = False
        x[mask] = -np.inf
    return x


def make_token_penalty(case, rng):
    rows, vocab, width = case["s"], case["v"], case["l"]
    logits = _gen_logits(rng, rows, vocab)
    if vocab > 2 and rows:
        logits[:, :2] = [0.0, -0.0]  # zero logits: divided or multiplied, they stay (signed) zeros
    pool = rng.choice(vocab, min(vocab, 12), replace=False)  # a small pool of ids, so some repeat
    ids = np.where(rng.rand(rows, width) < 0.5, rng.choice(pool, (rows, width)), rng.randint(0, vocab, (rows, width)))
    for r in range(rows):
        ids[r, rng.randint(0, width + 1):] = -1  # padding
    if rows and width > 2:
        ids[0, width // 2] = -1  # an id after a -1 is not seen (a row's ids end at its first negative entry)
        ids[0, width // 2 + 1:] = rng.randint(0, vocab, width - width // 2 - 1)
    pick = lambda values: np.array(values, np.float32)[rng.randint(0, len(values), rows)]
    eos = rng.choice(vocab, min(vocab, case["e"]), replace=False).astype(np.int64)
    cur = rng.randint(-1, 6, rows).astype(np.int64)  # -1: an idle row, copied unchanged
    low = rng.randint(0, 5, rows).astype(np.int64)
    return [paddle.to_tensor(logits), paddle.to_tensor(ids.astype(np.int64)),
            paddle.to_tensor(pick([1.0, 1.2, 0.85, 2.0])), paddle.to_tensor(pick([0.0, 0.1, 0.5])),
            paddle.to_tensor(pick([0.0, 0.3, 1.0])), paddle.to_tensor(low), paddle.to_tensor(cur),
            paddle.to_tensor(eos)], []


def plain_token_penalty(logits, pre_ids, penalty, frequency, presence, min_len, cur_len, eos):
    def run():  # counts by put_along_axis, the penalty by where; float64 for the subtractions as the op does them
        rows, vocab = logits.shape
        valid = paddle.cumprod((pre_ids >= 0).astype("int64"), dim=1) > 0
        ids = paddle.where(valid, pre_ids, paddle.full_like(pre_ids, vocab))  # ignored ids count in an extra column
        counts = paddle.put_along_axis(paddle.zeros([rows, vocab + 1], "float64"), ids,
                                       paddle.ones(ids.shape, "float64"), 1, "add")[:, :vocab]
        p = penalty.unsqueeze(1)
        rep = paddle.where(logits < 0, logits * p, logits / p)
        penalized = (rep.astype("float64") - counts * frequency.astype("float64").unsqueeze(1)
                     - presence.astype("float64").unsqueeze(1)).astype("float32")
        active = (cur_len >= 0).unsqueeze(1)
        out = paddle.where((counts > 0) & active, penalized, logits)
        is_eos = (paddle.arange(vocab, dtype="int64").unsqueeze(1) == eos.unsqueeze(0)).any(axis=1)
        ban = ((cur_len >= 0) & (cur_len < min_len)).unsqueeze(1) & is_eos.unsqueeze(0)
        return paddle.where(ban, paddle.full_like(out, -1e10), out)
    return run


ARGMAX_CASES = tuple(dict(s=s, v=v, logits=style) for s, v in GEN_SHAPES + ((0, 7), (7, 16), (5, 23), (1, 49152))
                     for style in ("llm", "ties", "masked"))


def make_argmax(case, rng):
    logits = _gen_logits(rng, case["s"], case["v"], case["logits"])
    if case["logits"] == "masked" and case["s"] > 1:
        logits[1] = -np.inf  # a row of -inf only: id 0
    return [paddle.to_tensor(logits)], []


def plain_argmax(logits):
    return lambda: paddle.argmax(logits, axis=-1)


# top_p_sampling: per-row settings by mode. 'mixed' draws each row's settings from all of them (greedy rows
# top_k = 1, top_k past the kernel's heap (256) and at or above the vocabulary, top_p 0 and above 1).
TOP_P_MODES = ("topp", "topk", "both", "full", "mixed")
TOP_P_CASES = (tuple(dict(s=s, v=v, mode=m, logits="llm") for s, v in GEN_SHAPES for m in TOP_P_MODES)
               + tuple(dict(s=s, v=v, mode="mixed", logits=style) for s, v in ((5, 7), (7, 33), (13, 49152))
                       for style in ("ties", "masked"))
               + (dict(s=0, v=7, mode="mixed", logits="llm"), dict(s=1, v=49152, mode="topp", logits="llm")))
TOP_P_BENCH = tuple(dict(s=s, v=49152, mode=m, logits="llm") for s in (1, 12) for m in ("topp", "topk", "full"))


def _row_settings(mode, vocab, rng):
    if mode == "mixed":
        mode = ("topp", "topk", "both", "full", "greedy", "wide", "bigk")[rng.randint(7)]
    temperature = float(rng.choice([1.0, 0.7, 1.3, 0.25]))
    if mode == "topp":
        return temperature, 0, None
    if mode == "topk":
        return temperature, int(rng.randint(1, 50)), 1.0
    if mode == "both":
        return temperature, int(rng.randint(1, 60)), None
    if mode == "greedy":
        return temperature, 1, float(rng.choice([1.0, 0.5]))
    if mode == "wide":  # top_k at or past the vocabulary (off), top_p 0 (the top token) or above 1 (all)
        return temperature, int(vocab + rng.randint(0, 3)), float(rng.choice([0.0, 1.5]))
    if mode == "bigk":  # more than the kernel keeps in a heap (past the vocabulary for the small ones)
        return temperature, int(rng.randint(257, max(258, vocab))), (None if rng.rand() < 0.5 else 1.0)
    return temperature, 0, 1.0  # full


def _away_from(values, x, margin=MARGIN):
    return len(values) == 0 or float(np.min(np.abs(values - np.float64(x)))) > margin


def make_top_p_sampling(case, rng):
    """Settings per row by the case's mode; top_p and the uniform drawn (float32) until no cumulative probability
    of the reference's is within MARGIN of them, so that the op's float rounding cannot change the pick."""
    from paddlellm.ops.reference import inverse_cdf_index, sampling_candidates, sampling_ranked

    rows, vocab = case["s"], case["v"]
    logits = _gen_logits(rng, rows, vocab, case["logits"])
    temperature, top_k, top_p, uniform = (np.zeros(rows, t) for t in (np.float32, np.int64, np.float32, np.float32))
    for r in range(rows):
        t, k, p = _row_settings(case["mode"], vocab, rng)
        cumulative = np.cumsum(sampling_ranked(logits[r], np.float32(t), k)[1])
        for _ in range(1000):
            if p is not None and (p >= 1.0 or _away_from(cumulative, np.float32(p))):
                break
            p = float(rng.uniform(0.3, 0.97))
        else:
            raise AssertionError(f"no top_p away from the cumulative probabilities in {case}")
        _, probs = sampling_candidates(logits[r], np.float32(t), k, np.float32(p))
        cdf = np.cumsum(probs) / np.sum(probs)
        for _ in range(1000):
            u = np.float32(rng.rand())
            if u < 1.0 and _away_from(cdf[:-1], u):
                break
        else:
            raise AssertionError(f"no uniform away from the cumulative probabilities in {case}")
        assert inverse_cdf_index(probs, u) < len(probs)
        temperature[r], top_k[r], top_p[r], uniform[r] = t, k, p, u
    return [paddle.to_tensor(a) for a in (logits, temperature, top_k, top_p, uniform)], []


def plain_top_p_sampling(logits, temperature, top_k, top_p, uniform):
    def run():  # a stable descending sort of every row, then masks, cumsums and a count (float64)
        rows, vocab = logits.shape
        x = logits.astype("float64") / temperature.astype("float64").unsqueeze(1)
        order = paddle.argsort(x, axis=1, descending=True, stable=True)
        ranked = paddle.take_along_axis(x, order, axis=1)
        rank = paddle.arange(vocab, dtype="int64").unsqueeze(0)
        k = paddle.where((top_k > 0) & (top_k < vocab), top_k, paddle.full_like(top_k, vocab)).unsqueeze(1)
        w = paddle.where(rank < k, paddle.exp(ranked - ranked[:, :1]), paddle.zeros_like(ranked))
        probs = w / w.sum(axis=1, keepdim=True)
        before = paddle.concat([paddle.zeros([rows, 1], "float64"), paddle.cumsum(probs, axis=1)[:, :-1]], axis=1)
        p = top_p.astype("float64").unsqueeze(1)
        kept = paddle.where((rank == 0) | (before < p) | (p >= 1.0), probs, paddle.zeros_like(probs))
        cdf = paddle.cumsum(kept, axis=1)
        cdf = cdf / cdf[:, -1:]
        at = (cdf <= uniform.astype("float64").unsqueeze(1)).astype("int64").sum(axis=1, keepdim=True)
        return paddle.take_along_axis(order, paddle.minimum(at, paddle.full_like(at, vocab - 1)), axis=1).squeeze(1)
    return run


STOP_CASES = tuple(dict(s=s, e=e) for s in (0, 1, 5, 7, 13) for e in (0, 1, 3))


def make_stop_flags(case, rng):
    rows = case["s"]
    max_len = rng.randint(1, 20, rows)
    cur = np.maximum(max_len - rng.randint(0, 4, rows), 0)  # some reach max_len - 1 (stop), some not
    return [paddle.to_tensor(rng.randint(0, 8, rows).astype(np.int64)),
            paddle.to_tensor(rng.choice(8, case["e"], replace=False).astype(np.int64)),
            paddle.to_tensor(cur.astype(np.int64)), paddle.to_tensor(max_len.astype(np.int64)),
            paddle.to_tensor(rng.rand(rows) < 0.3)], []


def plain_stop_flags(next_tokens, eos, cur_len, max_len, stop):
    return lambda: stop | (next_tokens.unsqueeze(1) == eos.unsqueeze(0)).any(axis=1) | (cur_len + 1 >= max_len)
