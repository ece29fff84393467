"""Running entry points in-process, as a user would, and checking their results and errors."""
import json

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
