"""run_finetune: bad settings and data are refused before anything is written; SFT trains, resumes, exports."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cli_helpers import ROOT, SMOKE, fails, losses, run_recipe
from paddlellm.training.finetune import main

SFT_DEMO = ROOT / "llm" / "data" / "sft_demo"


def base_args(model, out, data=SFT_DEMO):
    return [SMOKE, "--device", "cpu", "--model_name_or_path", model, "--dataset_name_or_path", data,
            "--output_dir", out]


@pytest.fixture
def untouched_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    yield out
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("extra, words", [
    (["--learning_rat", "1e-4"], "unknown key 'learning_rat' (did you mean 'learning_rate'?)"),
    (["--max_steps", "many"], "'max_steps' must be int"),
    (["--lora", "maybe"], "'lora' must be bool"),
    (["--use_flash_attention", "true"], "'use_flash_attention' needs an accelerator"),
    (["--bf16", "true"], "'bf16' needs an accelerator"),
    (["--device", "npu"], "device npu is not present"),
    (["--zero_padding", "true"], "'zero_padding' is not supported"),
])
def test_bad_settings(capsys, tiny_llama, untouched_output, extra, words):
    assert words in fails(capsys, main, base_args(tiny_llama, untouched_output) + extra)


def test_missing_key_and_bad_config_file(capsys, tmp_path, tiny_llama, untouched_output):
    assert "missing key 'dataset_name_or_path'" in fails(
        capsys, main, [SMOKE, "--model_name_or_path", tiny_llama, "--output_dir", untouched_output, "--device", "cpu"])
    broken = tmp_path / "broken.json"
    broken.write_text('{"max_steps": 3,}')
    assert f"{broken}: not valid JSON" in fails(capsys, main, [broken])
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"model_name_or_path": str(tiny_llama), "max_steps": "ten"}))
    assert f"{wrong}: 'max_steps' must be int" in fails(capsys, main, [wrong])


def test_bad_data(capsys, tmp_path, tiny_llama, untouched_output):
    assert "is not a directory" in fails(capsys, main, base_args(tiny_llama, untouched_output, tmp_path / "nowhere"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.json").write_text('{"src": "a", "tgt": "b"}\n{"src": "a"}\n')
    message = fails(capsys, main, base_args(tiny_llama, untouched_output, data))
    assert f"{data / 'train.json'}:2" in message


def test_tiny_sft_through_the_recipe_then_export_and_predict(tmp_path, tiny_llama):
    out, inference = tmp_path / "out", tmp_path / "inference"
    env = {"DEVICE": "cpu", "MODEL": tiny_llama, "OUTPUT_DIR": out, "OVERRIDE_CONFIG": SMOKE, "WORK": tmp_path}
    proc = run_recipe("llama_npu_sft_N1C8.sh", env, 4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(losses(proc.stdout + proc.stderr)) == [1, 2, 3, 4]
    for name in ("config.json", "model.safetensors.index.json", "tokenizer.json", "checkpoint-4"):
        assert (out / name).exists(), name
    proc = run_recipe("export_npu.sh", {"DEVICE": "cpu", "WORK": tmp_path}, out, inference)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = tmp_path / "p.jsonl"
    data.write_text('{"src": "What is 2 plus 2?"}\n')
    proc = run_recipe("predict_npu.sh", {"WORK": tmp_path}, inference, "--data_file", data, "--max_length", 4,
                      "--output_file", tmp_path / "o.jsonl", "--decode_strategy", "greedy_search")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(json.loads((tmp_path / "o.jsonl").read_text())["output_ids"]) == 4


def test_resume_after_a_kill_continues_the_same_loss_curve(tmp_path, tiny_llama):
    steps = ["--max_steps", "24", "--save_steps", "3", "--logging_steps", "1", "--per_device_train_batch_size", "8"]
    script = [sys.executable, str(ROOT / "llm" / "run_finetune.py")]
    whole = subprocess.run(script + [str(a) for a in base_args(tiny_llama, tmp_path / "whole")] + steps,
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]
    reference = losses(whole.stdout + whole.stderr)

    out = tmp_path / "killed"
    argv = script + [str(a) for a in base_args(tiny_llama, out)] + steps
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    # scheduler.pdparams is the last file a checkpoint gets
    while not (out / "checkpoint-3" / "scheduler.pdparams").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    if first.poll() is None:
        os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not (out / "config.json").exists(), "the first run finished before it was killed"
    again = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = losses(again.stdout + again.stderr)
    assert resumed and min(resumed) > 3 and max(resumed) == 24
    for step, loss in resumed.items():
        assert loss == pytest.approx(reference[step], rel=1e-4, abs=1e-5), step
