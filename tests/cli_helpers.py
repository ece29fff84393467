"""Running entry points in-process, as a user would, and checking their results and errors."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from paddlellm.cli import run_main
from paddlellm.predictor.main import main as predictor_main

GREEDY = ["--decode_strategy", "greedy_search", "--max_length", "12", "--src_length", "64"]
PROMPTS = ["Hello there, how are you?", "The quick brown fox", "1 + 1 =", "def add(a, b): return a + b, and more text"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def predict(model_dir, out_file, *flags):
    """Run the predictor CLI in-process; return its JSONL rows."""
    argv = ["--model_name_or_path", str(model_dir), "--output_file", str(out_file), "--quiet", *map(str, flags)]
    assert predictor_main(argv) == 0
    return [json.loads(line) for line in out_file.read_text().splitlines()]


def fails(capsys, main, argv):
    """Run an entry point expecting a user error: exit 2 and exactly one stderr line `error: ...`."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, [str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "llm" / "config" / "llama" / "cpu_smoke.json"  # the CPU override of the device recipes


def run_recipe(script, env, *args, timeout=1200):
    """Run a recipe of llm/npu/llama (or a path) with extra environment, from env['WORK'] if given."""
    env = {**os.environ, "PYTHON": sys.executable, **{k: str(v) for k, v in env.items()}}
    path = Path(script) if "/" in str(script) else ROOT / "llm" / "npu" / "llama" / script
    return subprocess.run(["bash", str(path), *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=env.get("WORK"))


def losses(log_text):
    """{step: training loss} from the Trainer's log lines."""
    return {int(step): float(loss) for loss, step in re.findall(r"- loss: ([0-9.]+),.*?global_step: (\d+)", log_text)}


def eval_losses(log_text):
    return [float(x) for x in re.findall(r"eval_loss: ([0-9.]+)", log_text)]
