"""Sampling: the candidates and probabilities equal HF transformers' logits processors; each prompt draws
from its own stream, so what it gets does not depend on --batch_size or on the other prompts."""
import numpy as np
import pytest
import torch
import transformers
from transformers.generation.logits_process import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from cli_helpers import PROMPTS, predict, write_jsonl
from paddlellm.predictor.sampling import SamplingParams, candidates
from paddlellm.tokenizer import load_tokenizer

SAMPLE = ["--decode_strategy", "sampling", "--temperature", 1.3, "--top_k", 40, "--top_p", 0.9,
          "--repetition_penalty", 1.2, "--max_length", 10, "--chat_template", "none"]


def hf_processors(params: SamplingParams):
    """HF's processors in generate()'s order: repetition penalty, temperature, top-k, top-p."""
    processors = [RepetitionPenaltyLogitsProcessor(params.repetition_penalty), TemperatureLogitsWarper(params.temperature)]
    if params.top_k:
        processors.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        processors.append(TopPLogitsWarper(params.top_p))
    return LogitsProcessorList(processors)


def hf_distribution(logits, seen, params):
    """{token id: probability} that HF samples from."""
    scores = hf_processors(params)(torch.tensor([seen]), torch.tensor(logits, dtype=torch.float32)[None].clone())
    probs = torch.softmax(scores, dim=-1)[0].numpy()
    return {int(i): probs[i] for i in np.flatnonzero(probs)}


@pytest.mark.parametrize("top_k, top_p, temperature, penalty", [
    (0, 1.0, 1.0, 1.0), (5, 1.0, 1.0, 1.0), (0, 0.5, 1.0, 1.0), (0, 0.9, 0.7, 1.3),
    (20, 0.8, 1.5, 1.1), (1, 0.3, 2.0, 1.0), (300, 0.99, 0.5, 2.0),
])
def test_candidates_equal_hf_processors(top_k, top_p, temperature, penalty):
    rng = np.random.default_rng(0)
    params = SamplingParams("sampling", top_k, top_p, temperature, penalty)
    for _ in range(20):
        logits = rng.normal(0, 3, size=320).astype(np.float32)
        seen = rng.integers(0, 320, size=12).tolist()
        ids, probs = candidates(logits, seen, params)
        expected = hf_distribution(logits, seen, params)
        assert sorted(ids.tolist()) == sorted(expected)
        np.testing.assert_allclose(probs, [expected[i] for i in ids], rtol=1e-4, atol=1e-7)
        assert np.all(np.diff(probs) <= 0)  # most probable first


def reference_tokens(hf, prompt_ids, params, index, new_tokens, eos):
    """The documented rule on HF's model and processors: prompt `index` draws from
    np.random.default_rng([seed, index]) one choice per token over the candidates, most probable first."""
    rng, ids, out = np.random.default_rng([params.seed, index]), list(prompt_ids), []
    for _ in range(new_tokens):
        with torch.no_grad():
            logits = hf(torch.tensor([ids])).logits[0, -1].numpy()
        dist = hf_distribution(logits, ids, params)
        order = sorted(dist, key=lambda i: -dist[i])
        probs = np.array([dist[i] for i in order], dtype=np.float64)
        token = order[rng.choice(len(order), p=probs / probs.sum())]
        if token in eos:
            break
        out.append(token)
        ids.append(token)
    return out


def test_sampled_tokens_follow_the_rule(tiny_llama, exported, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [{"src": p} for p in PROMPTS])
    rows = predict(exported, tmp_path / "s.jsonl", "--mode", "static", "--data_file", data, "--batch_size", 3, *SAMPLE, "--seed", 5)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(tiny_llama)
    params = SamplingParams("sampling", top_k=40, top_p=0.9, temperature=1.3, repetition_penalty=1.2, seed=5)
    for index, row in enumerate(rows):
        expected = reference_tokens(hf, tokenizer.encode(row["src"]), params, index, 10, set(tokenizer.eos_token_ids))
        assert row["output_ids"] == expected


def test_sampled_output_does_not_depend_on_batching_or_the_other_prompts(exported, tmp_path):
    texts = [f"{p} {i}" for i, p in enumerate(PROMPTS + PROMPTS[:3])]
    data = write_jsonl(tmp_path / "p.jsonl", [{"src": t} for t in texts])
    runs = {size: predict(exported, tmp_path / f"{size}.jsonl", "--mode", "static", "--data_file", data,
                          "--batch_size", size, *SAMPLE) for size in (1, 3, 7)}
    outputs = {size: [r["output_ids"] for r in rows] for size, rows in runs.items()}
    assert outputs[1] == outputs[3] == outputs[7]
    assert len({tuple(o) for o in outputs[1]}) == len(texts)
    # the same prompts at the same places, other prompts around them: the same samples at those places
    mixed = [t if i % 2 == 0 else f"something else entirely {i}" for i, t in enumerate(texts)]
    data = write_jsonl(tmp_path / "m.jsonl", [{"src": t} for t in mixed])
    rows = predict(exported, tmp_path / "m.jsonl.out", "--mode", "static", "--data_file", data, "--batch_size", 3, *SAMPLE)
    assert [r["output_ids"] for r in rows][::2] == outputs[1][::2]
