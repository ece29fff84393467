"""The predictor CLI on tiny random Llamas: dynamic vs static, batching, dtypes, sampling, outputs."""
import json
import shutil

import numpy as np
import pytest
import torch
import transformers

from cli_helpers import GREEDY, PROMPTS, predict, write_jsonl
from paddlellm.predictor.io import DEMO_PROMPTS
from paddlellm.tokenizer import load_tokenizer


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "prompts.jsonl", [{"src": p} for p in PROMPTS])


@pytest.mark.parametrize("which", ["gqa", "mha_tied"])
def test_static_gives_the_dynamic_tokens(request, tmp_path, data_file, which):
    source, exported = (("tiny_llama", "exported") if which == "gqa" else ("tiny_llama_mha", "exported_mha"))
    dynamic = predict(request.getfixturevalue(source), tmp_path / "d.jsonl", "--mode", "dynamic",
                      "--data_file", data_file, "--batch_size", 2, *GREEDY)
    static = predict(request.getfixturevalue(exported), tmp_path / "s.jsonl", "--mode", "static",
                     "--inference_model", "--data_file", data_file, "--batch_size", 2, *GREEDY)
    assert [r["src"] for r in static] == PROMPTS
    assert [r["output_ids"] for r in static] == [r["output_ids"] for r in dynamic]
    assert all(len(r["output_ids"]) > 0 for r in static)


def hf_greedy(model_dir, texts, max_new_tokens=12, **generate_flags):
    """HF transformers' greedy tokens (EOS dropped) for each raw text, on the same weights."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(model_dir)
    expected = []
    for text in texts:
        ids = tokenizer.encode(text)
        with torch.no_grad():
            out = hf.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                              eos_token_id=tokenizer.eos_token_ids, pad_token_id=tokenizer.pad_token_id, **generate_flags)
        tokens = out[0, len(ids):].tolist()
        expected.append(tokens[: next((i for i, t in enumerate(tokens) if t in tokenizer.eos_token_ids), len(tokens))])
    return expected


def test_tokens_match_hf_generate(tiny_llama, tmp_path, data_file):
    rows = predict(tiny_llama, tmp_path / "d.jsonl", "--data_file", data_file, "--chat_template", "none", *GREEDY)
    expected = hf_greedy(tiny_llama, PROMPTS)
    tokenizer = load_tokenizer(tiny_llama)
    assert [r["output_ids"] for r in rows] == expected
    assert [r["output"] for r in rows] == [tokenizer.decode(e) for e in expected]


def test_batch_gives_the_one_by_one_tokens(exported, tmp_path, data_file):
    alone = predict(exported, tmp_path / "1.jsonl", "--mode", "static", "--data_file", data_file, "--batch_size", 1, *GREEDY)
    batched = predict(exported, tmp_path / "4.jsonl", "--mode", "static", "--data_file", data_file, "--batch_size", 4, *GREEDY)
    assert [r["output_ids"] for r in batched] == [r["output_ids"] for r in alone]


def test_bfloat16_dynamic_and_static_agree(tiny_llama, tmp_path, data_file):
    from paddlellm.export.exporter import export_model

    out = export_model(tiny_llama, tmp_path / "bf16", dtype="bfloat16")
    dynamic = predict(tiny_llama, tmp_path / "d.jsonl", "--dtype", "bfloat16", "--data_file", data_file, *GREEDY)
    static = predict(out, tmp_path / "s.jsonl", "--mode", "static", "--data_file", data_file, *GREEDY)
    assert [r["output_ids"] for r in static] == [r["output_ids"] for r in dynamic]
    assert (out / "model.pdiparams").stat().st_size < 0.6 * (tiny_llama / "model.safetensors").stat().st_size


def test_max_length_bounds_new_tokens(exported, tmp_path, data_file):
    rows = predict(exported, tmp_path / "o.jsonl", "--mode", "static", "--data_file", data_file,
                   "--decode_strategy", "greedy_search", "--max_length", 3)
    assert all(len(r["output_ids"]) <= 3 for r in rows)
    assert any(len(r["output_ids"]) == 3 for r in rows)


def test_sampling_is_seeded_and_temperature_zero_is_greedy(exported, tmp_path, data_file):
    base = ["--mode", "static", "--data_file", data_file, "--max_length", 12]
    sample = ["--decode_strategy", "sampling", "--top_p", 0.9, "--top_k", 50, "--temperature", 1.5]
    first = predict(exported, tmp_path / "a.jsonl", *base, *sample, "--seed", 7)
    again = predict(exported, tmp_path / "b.jsonl", *base, *sample, "--seed", 7)
    other = predict(exported, tmp_path / "c.jsonl", *base, *sample, "--seed", 8)
    assert [r["output_ids"] for r in first] == [r["output_ids"] for r in again]
    assert [r["output_ids"] for r in first] != [r["output_ids"] for r in other]
    greedy = predict(exported, tmp_path / "g.jsonl", *base, "--decode_strategy", "greedy_search")
    cold = predict(exported, tmp_path / "t.jsonl", *base, "--decode_strategy", "sampling", "--temperature", 0)
    top1 = predict(exported, tmp_path / "k.jsonl", *base, "--decode_strategy", "sampling", "--top_k", 1)
    assert [r["output_ids"] for r in cold] == [r["output_ids"] for r in greedy] == [r["output_ids"] for r in top1]


def test_repetition_penalty_gives_hf_tokens(tiny_llama, exported, tmp_path, data_file):
    base = ["--data_file", data_file, "--chat_template", "none", "--batch_size", 2, *GREEDY, "--repetition_penalty", 5.0]
    dynamic = predict(tiny_llama, tmp_path / "d.jsonl", *base)
    static = predict(exported, tmp_path / "s.jsonl", "--mode", "static", *base)
    expected = hf_greedy(tiny_llama, PROMPTS, repetition_penalty=5.0)
    assert [r["output_ids"] for r in dynamic] == [r["output_ids"] for r in static] == expected
    assert expected != hf_greedy(tiny_llama, PROMPTS)  # the penalty matters on these prompts


def test_chat_template_is_applied_unless_none(exported, tmp_path, data_file, monkeypatch):
    import paddlellm.predictor.main as predictor

    seen = []
    original = predictor.check_prompts_fit
    monkeypatch.setattr(predictor, "check_prompts_fit", lambda prompts, *a: seen.append(prompts) or original(prompts, *a))
    tokenizer = load_tokenizer(exported)
    base = ["--mode", "static", "--data_file", data_file, "--batch_size", 4, *GREEDY]
    predict(exported, tmp_path / "a.jsonl", *base)
    predict(exported, tmp_path / "b.jsonl", *base, "--chat_template", "none")
    templated = tokenizer.encode(f"<|im_start|>user\n{PROMPTS[0]}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    assert seen[0][0] == templated
    assert seen[1][0] == tokenizer.encode(PROMPTS[0])


def test_demo_prompts_without_data_file(exported, tmp_path, capsys):
    rows = predict(exported, tmp_path / "o.jsonl", "--mode", "static", "--batch_size", 4, *GREEDY)
    demo = write_jsonl(tmp_path / "demo.jsonl", [{"src": p} for p in DEMO_PROMPTS])
    same = predict(exported, tmp_path / "d.jsonl", "--mode", "static", "--data_file", demo, *GREEDY)
    assert [r["src"] for r in rows] == DEMO_PROMPTS
    assert rows == same
    assert "tok/s" in capsys.readouterr().out


def test_says_it_is_loading_and_which_ops_before_generating(exported, tmp_path, capsys):
    predict(exported, tmp_path / "o.jsonl", "--mode", "static", "--max_length", 2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"[predictor] loading {exported} (static mode, block attention)"
    ops_line = next(i for i, line in enumerate(lines) if line.startswith("[predictor] ops: "))
    assert all("IR pass" in line for line in lines[1:ops_line])  # the passes run, or their program is cached
    assert lines[ops_line].startswith("[predictor] ops: fused_add_rms_norm x1, fused_decoder_layer x")  # once
    assert lines[ops_line + 1] == "[predictor] generating for 4 prompt(s), up to 1 at a time"


def test_help_has_text_and_default_for_every_flag(capsys):
    from help_text import help_entries
    from paddlellm.predictor.main import main

    entries = help_entries(capsys, main)
    assert {"--batch_size", "--top_k", "--top_p", "--repetition_penalty", "--debug"} <= entries.keys()
    assert "(default: 0.7)" in entries["--top_p"] and "(default: 0.95)" in entries["--temperature"]
    assert "(default: sampling)" in entries["--decode_strategy"] and "(default: 1024)" in entries["--max_length"]


def test_null_num_key_value_heads_means_as_many_as_heads(tiny_llama_mha, tmp_path, data_file):
    """HF reads `"num_key_value_heads": null` as 'same as num_attention_heads' (no GQA)."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_llama_mha, copy)
    config = json.loads((copy / "config.json").read_text())
    assert config["num_key_value_heads"] == config["num_attention_heads"]
    (copy / "config.json").write_text(json.dumps({**config, "num_key_value_heads": None}))
    rows = predict(copy, tmp_path / "n.jsonl", "--data_file", data_file, *GREEDY)
    assert rows == predict(tiny_llama_mha, tmp_path / "o.jsonl", "--data_file", data_file, *GREEDY)


def test_logits_of_static_match_dynamic(tiny_llama, exported):
    from paddlellm.export.manifest import read_manifest
    from paddlellm.models.llama.loader import load_model
    from paddlellm.predictor.runners import DynamicBlockRunner, StaticBlockRunner, prompt_logits

    prompts = [[3, 4, 5, 6], [7, 8]]
    dynamic = prompt_logits(DynamicBlockRunner(load_model(tiny_llama), 2), prompts)
    static = prompt_logits(StaticBlockRunner(exported, read_manifest(exported), "cpu", 2), prompts)
    np.testing.assert_allclose(dynamic, static, atol=1e-5)
