#!/usr/bin/env python
"""Thin entry point; the work is in paddlellm.predictor.perplexity. Runs from any directory."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # a source checkout works without installing

from paddlellm.cli import run_main  # noqa: E402
from paddlellm.predictor.perplexity import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_main(main))
