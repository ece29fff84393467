#!/usr/bin/env python
"""Thin entry point; the work is in paddlellm.training.pretrain. Runs from any directory.

python llm/run_pretrain.py CONFIG.json [--key value ...]   (later settings win)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a source checkout works without installing

from paddlellm.cli import run_main  # noqa: E402
from paddlellm.training.pretrain import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_main(main))
