"""The inference model against HF transformers on the same weights (tiny random Llamas)."""
import json

import numpy as np
import paddle
import pytest
import torch
import transformers

from tiny_models import make_tiny_llama
from paddlellm.models.llama.config import LlamaConfig
from paddlellm.models.llama.loader import assign_hf_weights
from paddlellm.models.llama.model import LlamaForCausalLM

PROMPTS = [[5, 9, 33, 100, 7, 250, 3], [11, 12], [40, 41, 42, 43]]


def build(path, dtype="float32"):
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    config = LlamaConfig.from_dict(json.loads((path / "config.json").read_text()))
    model = LlamaForCausalLM(config, dtype=dtype, compute_dtype="float32")
    assign_hf_weights(model, {k: v.numpy() for k, v in hf.state_dict().items()})
    return hf, model.eval()


def run_steps(model, prompts, next_tokens):
    """Prefill the left-padded batch, then one decode step feeding next_tokens; both logits."""
    longest = max(map(len, prompts))
    ids = np.array([[0] * (longest - len(p)) + p for p in prompts])
    pad = paddle.to_tensor([longest - len(p) for p in prompts], dtype="int64")
    caches = [paddle.zeros(model.cache_shape(len(prompts), longest + 3)) for _ in range(2 * model.config.num_hidden_layers)]
    with paddle.no_grad():
        first, caches = model(paddle.to_tensor(ids), pad, paddle.to_tensor([0], dtype="int64"), caches)
        second, _ = model(paddle.to_tensor(np.array(next_tokens)[:, None]), pad,
                          paddle.to_tensor([longest], dtype="int64"), caches)
    return first.numpy(), second.numpy()


def hf_last_logits(hf, ids):
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0, -1].numpy()


@pytest.mark.parametrize("variant", ["gqa", "mha_tied", "llama3_rope"])
def test_prefill_and_decode_match_hf(tmp_path, variant):
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16}
    path = make_tiny_llama(tmp_path, gqa=variant == "gqa", tie=variant == "mha_tied",
                           rope_scaling=rope if variant == "llama3_rope" else None)
    hf, model = build(path)
    nxt = [17, 200, 301]
    first, second = run_steps(model, PROMPTS, nxt)
    for b, prompt in enumerate(PROMPTS):
        np.testing.assert_allclose(first[b], hf_last_logits(hf, prompt), atol=1e-4, rtol=0)
        np.testing.assert_allclose(second[b], hf_last_logits(hf, prompt + [nxt[b]]), atol=1e-4, rtol=0)


def test_padding_does_not_change_results(tiny_llama):
    _, model = build(tiny_llama)
    batched, _ = run_steps(model, PROMPTS, [1, 2, 3])
    for b, prompt in enumerate(PROMPTS):
        alone, _ = run_steps(model, [prompt], [1])
        np.testing.assert_allclose(batched[b], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_narrow_weights_stay_close_to_float32(tiny_llama, dtype):
    hf, model = build(tiny_llama, dtype=dtype)
    assert model.layers[0].qkv_proj.dtype == getattr(paddle, dtype)
    first, _ = run_steps(model, PROMPTS, [1, 2, 3])
    for b, prompt in enumerate(PROMPTS):
        ref = hf_last_logits(hf, prompt)
        assert np.abs(first[b] - ref).max() < 0.05 * np.abs(ref).max()
