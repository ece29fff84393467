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
    (["--intokens", "true"], "'intokens' is not supported by paddlellm's trainer (packing several examples"),
    (["--virtual_pp_degree", "2"], "'virtual_pp_degree' is not supported by paddlellm's trainer (interleaved"),
    (["--data_cache", "./cache"], "'data_cache' is not supported"),
])
def test_bad_settings(capsys, tiny_llama, untouched_output, extra, words):
    assert words in fails(capsys, main, base_args(tiny_llama, untouched_output) + extra)


def test_missing_key_and_bad_config_file(capsys, tmp_path, tiny_llama, untouched_output):
    assert "missing key 'dataset_name_or_path'" in fails(
        capsys, main, [SMOKE, "--model_name_or_path", tiny_llama, "--output_dir", untouched_output, "--device", "cpu"])
    broken = tmp_path / "broken.json"
    broken.write_text('{"max_steps": 3,}')
    assert f"{broken} is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 17" in fails(
        capsys, main, [broken])
    assert "missing.json does not exist (check the config file's path and JSON)" in fails(capsys, main, ["missing.json"])
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
    for name in ("config.json", "model.safetensors.index.json", "tokenizer.json", "trainer_state.json"):
        assert (out / name).exists(), name
    assert not list(out.glob("checkpoint-*")), "cpu_smoke.json saves no intermediate checkpoints"
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


def run_finetune(*argv):
    return subprocess.run([sys.executable, str(ROOT / "llm" / "run_finetune.py"), *map(str, argv)],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("lora", [False, True])
def test_a_minimal_json_config_trains_on_the_cpu(tmp_path, tiny_llama, lora):
    """A config a user writes by hand: no amp keys, no parallel keys (paddleformers' amp_master_grad default
    must not stop it); do_eval alone evaluates after training; the compatibility-only keys are named once."""
    config = {"model_name_or_path": str(tiny_llama), "dataset_name_or_path": str(SFT_DEMO),
              "output_dir": str(tmp_path / "out"), "max_steps": 3, "per_device_train_batch_size": 2,
              "learning_rate": 1e-4, "max_length": 160, "logging_steps": 1, "save_steps": 2, "eval_steps": 2,
              "do_eval": True, "device": "cpu"}
    if lora:
        config.update(lora=True, lora_rank=4, enable_linear_fused_grad_add=True, recompute_use_reentrant=True)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    proc = run_finetune(path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert sorted(losses(log)) == [1, 2, 3] and "eval_loss" in log
    assert (tmp_path / "out" / ("lora_config.json" if lora else "config.json")).is_file()
    compat = [line for line in log.splitlines() if "read for compatibility with PaddleNLP only" in line]
    assert len(compat) == (1 if lora else 0), compat
    if lora:
        assert compat[0].endswith("no effect here: enable_linear_fused_grad_add, recompute_use_reentrant")


@pytest.mark.parametrize("script", ["run_finetune.py", "run_pretrain.py"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_keys(script, flag):
    proc = subprocess.run([sys.executable, str(ROOT / "llm" / script), flag], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    text = proc.stdout
    assert text.startswith(f"usage: python llm/{script} CONFIG.json")
    for line in ("  --lora_rank (int, 8): LoRA rank", "  --max_seq_length (int, 1024): pretraining: tokens per",
                 "  --intokens (bool, false): not supported", "tensor_parallel_degree -> tensor_model_parallel_size",
                 "paddleformers/trainer/training_args.py", "help(TrainingArguments)"):
        assert line in text, line
    assert ("input_dir" if script == "run_pretrain.py" else "dataset_name_or_path") in text.split("Required:")[1].splitlines()[0]


def test_a_finished_run_is_finished(tmp_path, tiny_llama):
    """Run again, a finished command trains nothing (paddleformers would resume at max_steps and train one step
    past it), also when it stopped between its last checkpoint and its final save: then it saves the final model
    from that checkpoint."""
    out = tmp_path / "out"
    argv = [*base_args(tiny_llama, out), "--max_steps", 4, "--save_steps", 2]
    first = run_finetune(*argv)
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(losses(first.stdout + first.stderr)) == [1, 2, 3, 4]
    weights = (out / "model-00001-of-00001.safetensors").read_bytes()
    for lost in ([], ["trainer_state.json", "model-00001-of-00001.safetensors"]):
        for name in lost:
            (out / name).unlink()
        again = run_finetune(*argv)
        log = again.stdout + again.stderr
        assert again.returncode == 0, log[-3000:]
        assert f"{out}: this training has finished (global_step 4); nothing to train" in log
        assert not losses(log), "it trained again"
        assert (out / "model-00001-of-00001.safetensors").read_bytes() == weights
        assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4
    more = run_finetune(*argv[:-4], "--max_steps", 5, "--save_steps", 2)  # more steps: it trains on
    assert more.returncode == 0, more.stderr[-3000:]
    assert sorted(losses(more.stdout + more.stderr)) == [5]


def test_sequence_parallel_gets_the_sequence_length(tiny_llama):
    """paddleformers' Llama attention unflattens its [batch * length / tp, hidden] input with
    config.max_sequence_length under sequence parallelism, and the SFT collator pads every batch to max_length.
    (A sequence-parallel step needs a tensor-parallel group: paddleformers cannot train one on the CPU.)"""
    from types import SimpleNamespace

    from paddlellm.training.config import MODEL_DATA_KEYS
    from paddlellm.training.trainer import load_model

    settings = {k: d for k, (_, d, _) in MODEL_DATA_KEYS.items()} | {"model_name_or_path": str(tiny_llama)}
    args = SimpleNamespace(tensor_model_parallel_size=1, tensor_parallel_rank=0, sequence_parallel=True,
                           recompute_granularity=None, recompute_method=None, recompute_num_layers=None,
                           bf16=False, fp16=False, pipeline_model_parallel_size=1, device="cpu")
    assert load_model(settings, args, sequence_length=160).config.max_sequence_length == 160


def test_tensor_parallel_runs_default_to_flex_checkpoints():
    """paddleformers 1.2's unified checkpoint of a tensor-parallel Llama raises NotImplementedError at the
    first save_steps; a single process cannot resume flex checkpoints."""
    from paddlellm.training.trainer import default_checkpoint_format

    assert default_checkpoint_format({}) == "unified_checkpoint"
    assert default_checkpoint_format({"tensor_model_parallel_size": 1}) == "unified_checkpoint"
    assert default_checkpoint_format({"tensor_model_parallel_size": 8}) == "flex_checkpoint"
