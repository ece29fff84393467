"""--output_file: checked before the model loads, rows streamed to <output>.partial as they finish and
renamed into place at the end; a failed or killed run keeps the previous file and the finished rows."""
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import GREEDY, PROMPTS, fails, predict, write_jsonl
import paddlellm.predictor.main as predictor

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "prompts.jsonl", [{"src": p} for p in PROMPTS])


def test_unwritable_output_fails_before_loading(capsys, exported, monkeypatch):
    monkeypatch.setattr(predictor, "load_tokenizer", lambda *a: pytest.fail("loaded the model first"))
    message = fails(capsys, predictor.main, ["--model_name_or_path", exported, "--mode", "static",
                                             "--output_file", "/proc/paddlellm_results.jsonl"])
    assert message.startswith("error: --output_file /proc/paddlellm_results.jsonl cannot be written")


def test_a_failure_keeps_the_previous_file_and_the_finished_rows(capsys, exported, tmp_path, data_file, monkeypatch):
    flags = ["--mode", "static", "--data_file", data_file, "--batch_size", 1, *GREEDY]
    complete = predict(exported, tmp_path / "complete.jsonl", *flags)
    out = tmp_path / "out.jsonl"
    out.write_text("the previous results\n")
    original = predictor.LLM.stream

    def fail_after_two_results(self, *args):
        finished = 0
        for out in original(self, *args):
            yield out
            finished += out.finished
            if finished == 2:
                raise RuntimeError("out of memory")

    monkeypatch.setattr(predictor.LLM, "stream", fail_after_two_results)
    with pytest.raises(RuntimeError):
        predictor.main(["--model_name_or_path", str(exported), "--output_file", str(out), "--quiet", *map(str, flags)])
    partial = tmp_path / "out.jsonl.partial"
    assert capsys.readouterr().err == f"stopped: 2 of 4 results are saved in {partial}\n"
    assert out.read_text() == "the previous results\n"
    assert [json.loads(line) for line in partial.read_text().splitlines()] == complete[:2]


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_output_gets_the_umask_permissions_and_replaces_the_previous_one(exported, tmp_path, data_file, mask):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    old = os.umask(mask)
    try:
        rows = predict(exported, out, "--mode", "static", "--data_file", data_file, *GREEDY)
    finally:
        os.umask(old)
    assert [r["src"] for r in rows] == PROMPTS
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_a_killed_run_leaves_whole_lines_and_the_previous_file(exported, tmp_path):
    """Through the real script: SIGKILL once some rows are out."""
    texts = [f"prompt {i}: " + PROMPTS[i % 4] for i in range(400)]
    data = write_jsonl(tmp_path / "p.jsonl", [{"src": t} for t in texts])
    out = tmp_path / "out.jsonl"
    out.write_text("the previous results\n")
    partial = tmp_path / "out.jsonl.partial"
    proc = subprocess.Popen([sys.executable, str(ROOT / "llm/predict/predictor.py"), "--model_name_or_path", str(exported),
                             "--mode", "static", "--data_file", str(data), "--output_file", str(out), "--quiet",
                             "--max_length", "40", "--decode_strategy", "greedy_search", "--chat_template", "none"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (partial.exists() and partial.read_text().count("\n") >= 3) and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert out.read_text() == "the previous results\n"
    rows = [json.loads(line) for line in partial.read_bytes().decode().split("\n")[:-1]]
    assert partial.read_bytes().endswith(b"\n") or not partial.read_bytes()
    assert 3 <= len(rows) < len(texts)
    assert [r["src"] for r in rows] == texts[:len(rows)]
