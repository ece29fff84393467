"""The README's first command: llm/quickstart.sh end to end on the reference model, from another directory."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs_the_static_predictor_from_any_directory(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "WORK_DIR": str(tmp_path / "work")}
    proc = subprocess.run(["bash", str(ROOT / "llm" / "quickstart.sh"), "--max_length", "8"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("  -> ") and len(line) > 6 for line in lines) == 4
    assert lines[-1].startswith("[static]") and "tok/s" in lines[-1]
    assert (tmp_path / "work" / "inference" / "paddlellm_manifest.json").is_file()
