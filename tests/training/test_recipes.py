"""The device recipes under llm/: their JSON configs resolve strictly, a missing device stops every script
at once with one error line and nothing written, and on the CPU (DEVICE=cpu, nothing else but MODEL) each
training recipe turns its accelerator settings off itself, says which in one line, picks its data as
documented and writes the files a user exports from. Missing-device runs: no model; CPU runs: a tiny model."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import losses, run_recipe
from paddlellm.training.config import resolve

ROOT = Path(__file__).resolve().parents[2]
LLM = ROOT / "llm"
CONFIGS = sorted([*(LLM / "dcu").rglob("*.json"), *(LLM / "config").rglob("*.json")])
SCRIPTS = sorted([*(LLM / "npu").rglob("*.sh"), *(LLM / "dcu").rglob("*.sh")])
# Scripts that run something; env.sh is only sourced by them.
RUNNABLE = [script for script in SCRIPTS if script.name != "env.sh"]
# Settings a developer's shell may hold that would change what the scripts do.
SCRUBBED = ("DEVICE", "MODEL", "DATA", "INPUT_DIR", "TOKENIZER", "OUTPUT_DIR", "LOG_DIR", "NPROC", "OVERRIDE_CONFIG",
            "LORA_BASE", "ASCEND_RT_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


def rel(path):
    return str(path.relative_to(LLM))


def default_device(script):
    """npu for llm/npu/..., dcu for llm/dcu/..."""
    return script.relative_to(LLM).parts[0]


def test_the_recipes_are_found():
    names = {rel(path) for path in CONFIGS + SCRIPTS}
    for expected in ("config/llama/cpu_smoke.json", "dcu/llama/sft_argument.json", "dcu/llama/lora_argument.json",
                     "dcu/llama/pretrain_pp8.json", "dcu/llama/run_sft.sh", "dcu/llama/run_lora.sh",
                     "dcu/llama/run_pretrain.sh", "npu/llama/llama_npu_sft_N1C8.sh", "npu/llama/predict_npu.sh"):
        assert expected in names


@pytest.mark.parametrize("path", CONFIGS, ids=rel)
def test_config_resolves_strictly(path):
    resolve([str(path)], required=())  # a UserError names an unknown key or a wrong type


def test_dcu_settings():
    def training(name):
        return resolve([str(LLM / "dcu" / "llama" / name)], required=())[1]

    for name in ("sft_argument.json", "lora_argument.json", "pretrain_pp8.json"):
        args = training(name)
        assert args["fp16"] is True and args["fp16_opt_level"] == "O2" and not args.get("bf16"), name
    pretrain = training("pretrain_pp8.json")
    assert pretrain["tensor_model_parallel_size"] == 1 and pretrain["pipeline_model_parallel_size"] == 8


def tree(directory):
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


@pytest.fixture(scope="module")
def missing_device_runs(tmp_path_factory):
    """Run every script with its default device on this machine (which has neither NPU nor DCU), all at
    once, each in its own empty working directory; {script: (returncode, stderr, files before, files after)}."""
    if _device_present():
        pytest.skip("an NPU or DCU is present: the missing-device path cannot be exercised here")
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env["PYTHON"] = sys.executable
    running = {}
    for script in RUNNABLE:
        work = tmp_path_factory.mktemp(script.stem)
        args = []
        if "predict" in script.name:
            # predict reads its device from the export's manifest: an export made for the default device
            (work / "inference").mkdir()
            (work / "inference" / "paddlellm_manifest.json").write_text(f'{{"device": "{default_device(script)}"}}\n')
            args = ["./inference"]
        before = tree(work)
        proc = subprocess.Popen(["bash", str(script), *args], cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        running[script] = (proc, work, before)
    results = {}
    for script, (proc, work, before) in running.items():
        _, stderr = proc.communicate(timeout=120)
        results[script] = (proc.returncode, stderr, before, tree(work))
    return results


def _device_present():
    import paddle

    return "npu" in paddle.device.get_all_custom_device_type() or paddle.is_compiled_with_rocm()


@pytest.mark.parametrize("script", RUNNABLE, ids=rel)
def test_missing_device_fails_at_once(missing_device_runs, script):
    returncode, stderr, before, after = missing_device_runs[script]
    lines = stderr.splitlines()
    assert returncode == 2, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: device {default_device(script)} is not present"), lines[0]
    assert after == before, "the script wrote into its working directory"


SMALL_MODEL_FILES = ["config.json", "model.safetensors.index.json", "tokenizer.json", "trainer_state.json"]
LORA_FILES = ["lora_config.json", "peft_model.safetensors.index.json", "tokenizer.json", "trainer_state.json"]


@pytest.fixture(scope="module")
def demo_prefix(tiny_llama, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("pre") / "demo"
    subprocess.run([sys.executable, str(LLM / "tools" / "preprocess_data.py"), "--input_path",
                    str(LLM / "data" / "pretrain_demo" / "corpus.jsonl"), "--output_prefix", str(prefix),
                    "--model_name_or_path", str(tiny_llama), "--append_eos"], check=True, capture_output=True)
    return prefix


# (script, arguments for 3 steps, words the CPU settings line must name, files the run must write)
CPU_RUNS = {
    "npu-sft": ("npu/llama/llama_npu_sft_N1C8.sh", ["3"], ["bf16 true -> false", "use_flash_attention true -> false",
                "tensor_parallel_degree 8 -> 1", "sequence_parallel true -> false", "gradient_accumulation_steps 64 -> 1"],
                SMALL_MODEL_FILES),
    "npu-lora": ("npu/llama/llama_npu_lora_N1C8.sh", ["3"], ["bf16 true -> false", "fuse_attention_qkv true -> false"],
                 LORA_FILES),
    "npu-ppt": ("npu/llama/llama_npu_ppt_N1C8.sh", ["3"], ["bf16 true -> false", "tensor_parallel_degree 4 -> 1",
                "max_seq_length 4096 -> 128"], SMALL_MODEL_FILES),
    "dcu-sft": ("dcu/llama/run_sft.sh", ["--max_steps", "3"], ["fp16 true -> false", "tensor_parallel_degree 8 -> 1"],
                SMALL_MODEL_FILES),
    "dcu-pretrain": ("dcu/llama/run_pretrain.sh", ["--max_steps", "3"], ["fp16 true -> false",
                     "pipeline_parallel_degree 8 -> 1"], SMALL_MODEL_FILES),
}


@pytest.mark.parametrize("name", CPU_RUNS)
def test_cpu_run_of_a_device_recipe(name, tiny_llama, demo_prefix, tmp_path):
    """DEVICE=cpu and MODEL (and the pretraining data) only: no OVERRIDE_CONFIG, no DATA. The recipe turns its
    accelerator settings off itself and names them in one line, runs one process, takes ./data when there is
    one (dcu-sft) and the demo set otherwise, and leaves a final model and no multi-GB checkpoints; the log
    has no colour codes, no settings dump, no repeated third-party warnings. Run again, it says it is done."""
    script, args, changed, files = CPU_RUNS[name]
    if name == "dcu-sft":  # PaddleNLP's layout: ./data in the working directory
        (tmp_path / "data").mkdir()
        for split in ("train.json", "dev.json"):
            (tmp_path / "data" / split).write_text((LLM / "data" / "sft_demo" / split).read_text())
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(DEVICE="cpu", MODEL=str(tiny_llama), OUTPUT_DIR=str(tmp_path / "out"), INPUT_DIR=str(demo_prefix),
               LOG_DIR=str(tmp_path / "logs"), WORK=str(tmp_path))
    proc = run_recipe(LLM / script, env, *args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    notes = [line for line in log.splitlines() if "cpu_smoke.json changes the settings before it" in line]
    assert len(notes) == 1 and all(words in notes[0] for words in changed), notes
    if "sft" in name or "lora" in name:
        expected = ("DATA is not set: using ./data" if name == "dcu-sft"
                    else "DATA is not set and there is no ./data: using the demo set")
        assert expected in proc.stdout
    assert sorted(losses(log)) == [1, 2, 3]
    assert not (tmp_path / "logs").exists(), "more than one process was launched"
    out = tmp_path / "out"
    assert all((out / f).is_file() for f in files), sorted(p.name for p in out.iterdir())
    assert not list(out.glob("checkpoint-*")), "the CPU settings save no intermediate checkpoints"
    assert "\x1b[" not in log and "[   DEBUG]" not in log and "Asynchronous saving" not in log

    weights = {p.name: p.read_bytes() for p in out.glob("*.safetensors")}
    again = run_recipe(LLM / script, env, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "this training has finished (global_step 3)" in again.stdout + again.stderr
    assert not losses(again.stdout + again.stderr)
    assert {p.name: p.read_bytes() for p in out.glob("*.safetensors")} == weights


def test_cpu_run_without_a_model_says_what_it_needs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(DEVICE="cpu", WORK=str(tmp_path))
    for script, data in (("llama_npu_sft_N1C8.sh", "DATA=DIR"), ("llama_npu_ppt_N1C8.sh", "INPUT_DIR=PREFIX")):
        proc = run_recipe(script, env)
        lines = proc.stderr.splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: MODEL 'meta-llama/Llama-2-13b' is not a local checkpoint directory")
        assert "MODEL=./output/quickstart/checkpoint" in lines[0] and data in lines[0]
    assert tree(tmp_path) == []
