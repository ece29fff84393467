"""Choosing the next token from last-position logits: greedy, or sampling with temperature, top-k, top-p;
repetition penalty as in HF/PaddleNLP (logits of tokens already seen are divided, or multiplied if negative)."""
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

    @property
    def greedy(self):
        return self.decode_strategy == "greedy_search" or self.temperature == 0


class Sampler:
    def __init__(self, params: SamplingParams):
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, seen: list) -> np.ndarray:
        """logits [batch, vocab] float32; seen[b]: token ids of row b so far (prompt and output)."""
        p = self.params
        logits = np.array(logits, dtype=np.float32, copy=True)
        if p.repetition_penalty != 1.0:
            for row, tokens in zip(logits, seen):
                ids = np.unique(np.asarray(tokens, dtype=np.int64))
                values = row[ids]
                row[ids] = np.where(values < 0, values * p.repetition_penalty, values / p.repetition_penalty)
        if p.greedy:
            return logits.argmax(axis=-1)
        return np.array([self._sample_row(row / p.temperature) for row in logits], dtype=np.int64)

    def _sample_row(self, row):
        p = self.params
        candidates = np.arange(row.shape[0])
        if 0 < p.top_k < row.shape[0]:
            candidates = np.argpartition(-row, p.top_k - 1)[: p.top_k]
        order = candidates[np.argsort(-row[candidates], kind="stable")]
        probs = np.exp(row[order] - row[order[0]])
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)  # smallest prefix reaching top_p
            order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
        return order[self.rng.choice(len(order), p=probs)]
