"""Bad input to the predictor: one line `error: ...`, exit 2, no traceback, no output file."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import GREEDY, fails, predict, write_jsonl
from paddlellm.predictor.main import main

ROOT = Path(__file__).resolve().parents[2]


def expect_error(capsys, tmp_path, model_dir, *flags):
    out = tmp_path / "out.jsonl"
    message = fails(capsys, main, ["--model_name_or_path", model_dir, "--output_file", out, *flags])
    assert not out.exists() and not (tmp_path / "out.jsonl.partial").exists()
    return message


def test_missing_model_dir(capsys, tmp_path):
    assert "does not exist" in expect_error(capsys, tmp_path, tmp_path / "nope")


def test_incomplete_checkpoint(capsys, tmp_path, tiny_llama):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama, broken)
    (broken / "model.safetensors").unlink()
    assert str(broken) in expect_error(capsys, tmp_path, broken, "--mode", "dynamic", "--max_length", 4)


def test_corrupt_config(capsys, tmp_path, tiny_llama):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama, broken)
    (broken / "config.json").write_text('{"vocab_size": 320, ')
    assert "config.json" in expect_error(capsys, tmp_path, broken, "--mode", "dynamic")


def test_static_mode_needs_an_export(capsys, tmp_path, tiny_llama, exported):
    assert "paddlellm_manifest.json" in expect_error(capsys, tmp_path, tiny_llama, "--mode", "static")
    broken = tmp_path / "broken_export"
    shutil.copytree(exported, broken)
    (broken / "model.pdiparams").unlink()
    assert "model.pdiparams" in expect_error(capsys, tmp_path, broken, "--mode", "static")


def test_export_dir_in_dynamic_mode(capsys, tmp_path, exported):
    assert "--mode static" in expect_error(capsys, tmp_path, exported, "--mode", "dynamic")


def test_malformed_jsonl_line(capsys, tmp_path, exported):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"src": "fine"}\n{"src": "broken\n')
    assert f"{data}:2" in expect_error(capsys, tmp_path, exported, "--mode", "static", "--data_file", data)
    data.write_text('{"src": "fine"}\n{"prompt": "no src"}\n')
    assert f"{data}:2" in expect_error(capsys, tmp_path, exported, "--mode", "static", "--data_file", data)


def test_empty_prompt(capsys, tmp_path, exported):
    data = write_jsonl(tmp_path / "p.jsonl", [{"src": "ok"}, {"src": "   "}])
    assert "empty prompt" in expect_error(capsys, tmp_path, exported, "--mode", "static", "--data_file", data)


def test_prompt_longer_than_src_length(capsys, tmp_path, exported):
    data = write_jsonl(tmp_path / "p.jsonl", [{"src": "a fairly long prompt with many words in it " * 3}])
    message = expect_error(capsys, tmp_path, exported, "--mode", "static", "--data_file", data, "--src_length", 8)
    assert "--src_length 8" in message


@pytest.mark.parametrize("flags, words", [
    (["--max_length", "0"], "--max_length"),
    (["--dtype", "float64"], "unknown --dtype"),
    (["--device", "tpu"], "unknown --device"),
    (["--device", "npu"], "npu is not present"),
    (["--device", "gpu"], "gpu is not present"),
    (["--decode_strategy", "beam"], "--decode_strategy"),
    (["--top_p", "0"], "--top_p"),
    (["--dtype", "bfloat16"], "contradicts"),
    (["--quant_type", "weight_only_int8"], "--quant_type weight_only_int8 contradicts the export's quant_type None"),
    (["--cachekv_int8_type", "dynamic"], "--cachekv_int8_type dynamic contradicts the export's cachekv_int8_type None"),
    (["--block_attn", "false"], "the dense-cache step was removed"),
    (["--mode", "fast"], "--mode"),
    (["--batch_size", "x"], "--batch_size"),
])
def test_bad_flags(capsys, tmp_path, exported, flags, words):
    assert words in expect_error(capsys, tmp_path, exported, "--mode", "static", *flags)


def test_quantization_is_an_export_choice(capsys, tmp_path, exported):
    message = expect_error(capsys, tmp_path, exported, "--mode", "dynamic", "--quant_type", "weight_only_int8")
    assert "--quant_type is chosen at export (llm/predict/export_model.py --quant_type)" in message


def test_missing_output_dir(capsys, tmp_path, exported):
    message = fails(capsys, main, ["--model_name_or_path", exported, "--mode", "static",
                                   "--output_file", tmp_path / "no" / "out.jsonl"])
    assert "does not exist" in message


def test_script_prints_one_line_and_no_traceback(tmp_path, exported):
    """Through the real script in a fresh process, from another directory."""
    data = tmp_path / "bad.jsonl"
    data.write_text("not json\n")
    out = tmp_path / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(ROOT / "llm/predict/predictor.py"), "--model_name_or_path", str(exported),
                           "--mode", "static", "--data_file", str(data), "--output_file", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {data}:1: not valid JSON (Expecting value at column 1)"]
    assert not out.exists()


def test_output_file_is_whole_and_in_input_order(tmp_path, exported):
    from cli_helpers import predict

    prompts = [f"prompt number {i} " + "x" * (i * 3) for i in range(7)]
    data = write_jsonl(tmp_path / "p.jsonl", [{"src": p} for p in prompts])
    rows = predict(exported, tmp_path / "o.jsonl", "--mode", "static", "--data_file", data, "--batch_size", 3, *GREEDY)
    assert [r["src"] for r in rows] == prompts
    assert all(set(r) == {"src", "output", "output_ids"} for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl", "p.jsonl"]  # no .partial left
    json.dumps(rows)


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_prompt_plus_max_length_beyond_the_positions(capsys, tmp_path, request, mode):
    model = request.getfixturevalue("tiny_llama" if mode == "dynamic" else "exported")
    data = write_jsonl(tmp_path / "p.jsonl", [{"src": "short"}, {"src": "a little longer prompt"}])
    from paddlellm.tokenizer import load_tokenizer

    longest = len(load_tokenizer(model).encode("a little longer prompt"))
    message = expect_error(capsys, tmp_path, model, "--mode", mode, "--data_file", data, "--chat_template", "none",
                           "--max_length", 513 - longest)
    assert message == (f"error: prompt ({longest} tokens) + --max_length {513 - longest} exceeds the model's 512 "
                       f"positions (lower --max_length to {512 - longest})")
    predict(model, tmp_path / "fits.jsonl", "--mode", mode, "--data_file", data, "--chat_template", "none",
            "--max_length", 512 - longest, "--decode_strategy", "greedy_search")


def bigger_tokenizer(model_dir, destination):
    """A copy of `model_dir` whose tokenizer has more tokens than the model's 320."""
    from tiny_models import write_tokenizer

    shutil.copytree(model_dir, destination)
    tokenizer = write_tokenizer(destination, vocab_size=480)
    assert tokenizer.get_vocab_size() > 320
    return destination


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_tokenizer_that_does_not_match_the_model(capsys, tmp_path, request, mode):
    model = bigger_tokenizer(request.getfixturevalue("tiny_llama" if mode == "dynamic" else "exported"), tmp_path / "m")
    from paddlellm.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(model)
    text = "Once upon a time there was a tiny language model"
    ids = tokenizer.encode(text)
    data = write_jsonl(tmp_path / "p.jsonl", [{"src": "ok"}, {"src": text}])
    message = expect_error(capsys, tmp_path, model, "--mode", mode, "--data_file", data, "--chat_template", "none",
                           "--max_length", 4)
    assert message.startswith(f"error: prompt 2 has token id {max(ids)}, but the model's vocab_size is 320 "
                              f"(the tokenizer has {tokenizer.vocab_size} tokens")


@pytest.mark.parametrize("rope_scaling, words", [
    ("linear", "must be an object"),
    ({"rope_type": "linear"}, "needs 'factor'"),
    ({"type": "linear", "factor": "2"}, "'factor' must be a positive number"),
    ({"rope_type": "linear", "factor": 0}, "'factor' must be a positive number"),
    ({"rope_type": "yarn", "factor": 2.0}, "type 'yarn' is not supported"),
    ({"rope_type": "llama3", "factor": 8.0}, "needs 'low_freq_factor'"),
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0,
      "original_max_position_embeddings": 16}, "must be greater than"),
])
def test_malformed_rope_scaling(capsys, tmp_path, tiny_llama, rope_scaling, words):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama, broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "rope_scaling": rope_scaling}))
    message = expect_error(capsys, tmp_path, broken, "--max_length", 4)
    assert message.startswith(f"error: {broken}/config.json: rope_scaling") and words in message


def test_every_static_hint_is_a_command_that_works(capsys, tmp_path, tiny_llama, exported):
    """--dtype against a float32 export: the export it suggests runs. A program exported for an absent device:
    the export it suggests runs. --block_attn (PaddleNLP's flag) is accepted."""
    from paddlellm.export.main import main as export_main

    predict(exported, tmp_path / "ok.jsonl", "--mode", "static", "--block_attn", *GREEDY)
    message = expect_error(capsys, tmp_path, exported, "--mode", "static", "--dtype", "bfloat16")
    assert message.endswith("(drop --dtype, or export again with --dtype bfloat16)")

    assert export_main(["--model_name_or_path", str(tiny_llama), "--output_path", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    predict(tmp_path / "bf16", tmp_path / "ok.jsonl", "--mode", "static", "--dtype", "bfloat16", *GREEDY)
    assert export_main(["--model_name_or_path", str(tiny_llama), "--output_path", str(tmp_path / "gpu"), "--device", "gpu"]) == 0
    message = expect_error(capsys, tmp_path, tmp_path / "gpu", "--mode", "static")
    assert message.endswith("(run it where a gpu is, or export the checkpoint again with --device cpu)")
    predict(tmp_path / "gpu", tmp_path / "ok.jsonl", "--mode", "static", "--device", "cpu", *GREEDY)
