"""The device recipes under llm/: their JSON configs resolve strictly, their scripts parse, a missing
device stops every script at once with one error line and nothing written, and each folder's README
names every file in it. Fast: no model, no training; the scripts run side by side."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from paddlellm.training.config import resolve

ROOT = Path(__file__).resolve().parents[2]
LLM = ROOT / "llm"
CONFIGS = sorted([*(LLM / "dcu").rglob("*.json"), *(LLM / "config").rglob("*.json")])
SCRIPTS = sorted([*(LLM / "npu").rglob("*.sh"), *(LLM / "dcu").rglob("*.sh")])
RECIPE_DIRS = sorted({script.parent for script in SCRIPTS})
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


@pytest.mark.parametrize("script", SCRIPTS, ids=rel)
def test_script_parses_and_does_not_trace(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert not re.search(r"^\s*set\s+(-\w*x|-o\s+xtrace)", script.read_text(), re.MULTILINE), "xtrace would flood stderr"


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


@pytest.mark.parametrize("folder", RECIPE_DIRS, ids=rel)
def test_readme_names_every_file(folder):
    readme = folder / "README.md"
    assert readme.is_file()
    text = readme.read_text(encoding="utf-8")
    missing = [path.name for path in sorted(folder.iterdir())
               if path.suffix in (".sh", ".json") and path.name not in text]
    assert not missing, f"{rel(readme)} does not mention {missing}"
