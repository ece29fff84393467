"""Bad input to the predictor: one line `error: ...`, exit 2, no traceback, no output file."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import GREEDY, fails, write_jsonl
from paddlellm.predictor.main import main

ROOT = Path(__file__).resolve().parents[2]


def expect_error(capsys, tmp_path, model_dir, *flags):
    out = tmp_path / "out.jsonl"
    message = fails(capsys, main, ["--model_name_or_path", model_dir, "--output_file", out, *flags])
    assert not out.exists()
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
    (["--block_attn"], "contradicts"),
    (["--mode", "fast"], "--mode"),
    (["--batch_size", "x"], "--batch_size"),
])
def test_bad_flags(capsys, tmp_path, exported, flags, words):
    assert words in expect_error(capsys, tmp_path, exported, "--mode", "static", *flags)


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
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.jsonl")]
    json.dumps(rows)
