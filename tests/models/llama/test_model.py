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
from paddlellm.models.llama.model import LlamaForCausalLM, rope_inv_freq
from paddlellm.predictor.runners import DynamicBlockRunner
from paddlellm.predictor.scheduler import ScheduledRequest, SchedulerOutput

PROMPTS = [[5, 9, 33, 100, 7, 250, 3], [11, 12], [40, 41, 42, 43]]


def build(path, dtype="float32", cpu_ops=False):
    """HF's model and ours on its weights: on the portable ops (what every device runs) or the CPU's own."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    config = LlamaConfig.from_dict(json.loads((path / "config.json").read_text()))
    model = LlamaForCausalLM(config, dtype=dtype, compute_dtype="float32")
    assign_hf_weights(model, {k: v.numpy() for k, v in hf.state_dict().items()})
    if cpu_ops:
        model.use_cpu_ops()
    return hf, model.eval()


def run_steps(model, prompts, next_tokens, block_size=3):
    """All prompts in one step, then one decode step feeding next_tokens; both steps' logits. Blocks of 3
    tokens, so prompts and the decode token cross block boundaries."""
    runner = DynamicBlockRunner(model, 2, block_size=block_size)
    tables, first = [], 0
    for prompt in prompts:
        blocks = -(-(len(prompt) + 1) // block_size)
        tables.append(list(range(first, first + blocks)))
        first += blocks
    runner.allocate(first)
    prefill = runner.step(SchedulerOutput([ScheduledRequest(i, len(p), 0, p, t, True)
                                           for i, (p, t) in enumerate(zip(prompts, tables))]))
    decode = runner.step(SchedulerOutput([ScheduledRequest(i, 1, len(p), [n], t, True)
                                          for i, (p, n, t) in enumerate(zip(prompts, next_tokens, tables))]))
    return prefill, decode


def hf_last_logits(hf, ids):
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0, -1].numpy()


ROPE_SCALING = {
    "llama3_rope": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 16},
    "linear_rope": {"rope_type": "linear", "factor": 4.0},
}


@pytest.mark.parametrize("cpu_ops", [False, True], ids=["portable_ops", "cpu_ops"])
@pytest.mark.parametrize("variant", ["gqa", "mha_tied", "llama3_rope", "linear_rope"])
def test_prefill_and_decode_match_hf(tmp_path, variant, cpu_ops):
    path = make_tiny_llama(tmp_path, gqa=variant == "gqa", tie=variant == "mha_tied",
                           rope_scaling=ROPE_SCALING.get(variant))
    hf, model = build(path, cpu_ops=cpu_ops)
    nxt = [17, 200, 301]
    first, second = run_steps(model, PROMPTS, nxt)
    for b, prompt in enumerate(PROMPTS):
        np.testing.assert_allclose(first[b], hf_last_logits(hf, prompt), atol=1e-4, rtol=0)
        np.testing.assert_allclose(second[b], hf_last_logits(hf, prompt + [nxt[b]]), atol=1e-4, rtol=0)


def test_batching_does_not_change_results(tiny_llama):
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


def test_linear_rope_scaling_changes_the_logits(tmp_path):
    """The linear factor is applied (the test above would pass if both sides ignored it)."""
    plain = LlamaConfig.from_dict(json.loads((make_tiny_llama(tmp_path / "plain") / "config.json").read_text()))
    scaled = LlamaConfig.from_dict(json.loads((make_tiny_llama(tmp_path / "scaled", rope_scaling=ROPE_SCALING["linear_rope"])
                                               / "config.json").read_text()))
    np.testing.assert_allclose(rope_inv_freq(scaled), rope_inv_freq(plain) / 4.0, rtol=1e-6)


def hip_ops_installed():
    import importlib.util

    return importlib.util.find_spec("paddlellm_hip_ops") is not None


@pytest.mark.skipif(not paddle.is_compiled_with_cuda() or paddle.device.cuda.device_count() == 0
                    or not hip_ops_installed(),
                    reason="CPU Paddle has no float16/bfloat16 matmul: the narrow compute path runs on a GPU/DCU only, "
                           "with csrc/hip's library installed")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_narrow_compute_path_stays_close_to_float32(tiny_llama, dtype):
    """Weights, matmuls and cache in float16/bfloat16 (what --device gpu/dcu runs), against HF in float32."""
    from paddlellm.models.llama.loader import load_model

    paddle.set_device("gpu")
    try:
        hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
        first, _ = run_steps(load_model(tiny_llama, dtype=dtype, device="gpu"), PROMPTS, [1, 2, 3])
        for b, prompt in enumerate(PROMPTS):
            ref = hf_last_logits(hf, prompt)
            assert np.abs(first[b] - ref).max() < 0.05 * np.abs(ref).max()
    finally:
        paddle.set_device("cpu")


def test_quantize_per_token_is_what_the_a8w8_kernels_multiply():
    """a8w8's portable form (plain ops) and the kernels' activations (ops.quantize_activations, the references'
    model of them) round alike: per token and block of 32, xs = max |x| / 127; a zero block stays zero. Up to a
    float32 ulp (x * (1 / xs) there, x / xs here, each times xs) and a tie landing elsewhere, which random data
    does not hit."""
    from paddlellm import ops
    from paddlellm.models.llama.model import quantize_per_token

    x = np.random.RandomState(0).randn(5, 96).astype(np.float32) * np.float32(3)
    x[2, 32:64] = 0
    got = quantize_per_token(paddle.to_tensor(x)).numpy()
    want = ops.quantize_activations(x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert np.all(got[2, 32:64] == 0)
    steps = got.reshape(5, 3, 32) / (np.abs(x.reshape(5, 3, 32)).max(-1, keepdims=True) / 127 + 1e-30)
    assert np.abs(steps - np.round(steps)).max() < 1e-3 and np.abs(steps).max() <= 127 + 1e-3
