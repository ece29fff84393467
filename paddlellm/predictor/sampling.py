"""Choosing the next token from last-position logits: greedy, or sampling with temperature, top-k, top-p;
repetition penalty as in HF/PaddleNLP (logits of tokens already seen are divided, or multiplied if negative).

Each prompt samples from its own random stream, seeded by (--seed, the prompt's index in the input): what
a prompt gets does not depend on --batch_size or on the other prompts, and a finished prompt draws nothing.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class SamplingParams:
    decode_strategy: str = "greedy_search"  # or "sampling"
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0
    temperature: float = 1.0  # 0: greedy
    repetition_penalty: float = 1.0
    seed: int = 42
    max_tokens: int = 1024  # new tokens at most (the predictor's --max_length)
    ignore_eos: bool = False  # generate max_tokens whatever comes (benchmarks)

    @property
    def greedy(self):
        return self.decode_strategy == "greedy_search" or self.temperature == 0


def penalized(logits, seen, penalty):
    """float32 copy of one row of logits with the repetition penalty applied to the ids in `seen`."""
    logits = np.array(logits, dtype=np.float32, copy=True)
    if penalty != 1.0:
        ids = np.unique(np.asarray(seen, dtype=np.int64))
        values = logits[ids]
        logits[ids] = np.where(values < 0, values * penalty, values / penalty)
    return logits


def most_probable(row, k):
    """The k largest entries' ids of `row`, largest first (ties by id), without sorting the whole row."""
    ids = np.arange(row.shape[0]) if k >= row.shape[0] else np.argpartition(-row, k - 1)[:k]
    return ids[np.argsort(-row[ids], kind="stable")]


def candidates(logits, seen, params: SamplingParams):
    """The token ids sampling may pick, most probable first, and their probabilities (summing to 1).

    Only as many of the most probable tokens are sorted as top-k or top-p can keep: a vocabulary-wide
    sort per row would cost more than the model's decode step."""
    row = penalized(logits, seen, params.repetition_penalty) / np.float32(params.temperature)
    vocab = row.shape[0]
    if 0 < params.top_k < vocab:
        ids = most_probable(row, params.top_k)
        probs = np.exp(row[ids] - row[ids[0]])
        probs /= probs.sum()
    else:
        top = row.max()
        total = np.exp(row - top).sum()
        k = 64 if params.top_p < 1.0 else vocab
        while True:  # widen until the kept tokens reach top_p
            ids = most_probable(row, k)
            probs = np.exp(row[ids] - top) / total
            if k >= vocab or probs.sum() >= params.top_p:
                break
            k *= 8
    if params.top_p >= 1.0:
        probs /= probs.sum()
    else:
        keep = int(np.searchsorted(np.cumsum(probs), params.top_p) + 1)  # smallest prefix reaching top_p
        ids, probs = ids[:keep], probs[:keep] / probs[:keep].sum()
    return ids, probs


class Sampler:
    """The next-token rule for one prompt: its sampling parameters and its own random stream."""

    def __init__(self, params: SamplingParams, index=0):
        self.params = params
        self.rng = np.random.default_rng([params.seed, index])

    def __call__(self, logits, seen) -> int:
        """logits: this prompt's last-position logits [vocab]; seen: its token ids so far (prompt and output).
        Runs the generation ops (paddlellm_token_penalty, then paddlellm_argmax or paddlellm_top_p_sampling with
        one uniform from this prompt's stream): the choice `candidates` + `rng.choice` describe, without sorting
        the vocabulary."""
        import paddle

        from paddlellm import ops

        p = self.params
        row = paddle.to_tensor(np.asarray(logits, dtype=np.float32).reshape(1, -1))
        if p.repetition_penalty != 1.0:
            scalar = lambda value, dtype: paddle.to_tensor(np.array([value], dtype=dtype))
            no_penalty, zero = scalar(0.0, np.float32), scalar(0, np.int64)
            row = ops.token_penalty(row, paddle.to_tensor(np.asarray(seen, dtype=np.int64).reshape(1, -1)),
                                    scalar(p.repetition_penalty, np.float32), no_penalty, no_penalty, zero, zero,
                                    paddle.to_tensor(np.zeros(0, dtype=np.int64)))
        if p.greedy:
            return int(ops.argmax(row).numpy()[0])
        uniform = self.rng.random()  # what rng.choice(len(ids), p=probs) would draw
        token = ops.top_p_sampling(row, paddle.to_tensor(np.array([p.temperature], np.float32)),
                                   paddle.to_tensor(np.array([max(p.top_k, 0)], np.int64)),
                                   paddle.to_tensor(np.array([p.top_p], np.float32)),
                                   paddle.to_tensor(np.array([uniform], np.float32)))
        return int(token.numpy()[0])
