"""Prompts in (JSONL or built-in demos), results out (JSONL, streamed to `<output>.partial` as they finish,
renamed into place at the end)."""
import json
from pathlib import Path

from paddlellm.errors import UserError
from paddlellm.files import JsonlStream

DEMO_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in one sentence what a large language model is.",
    "Give me three tips for learning to program.",
]


def read_prompts(data_file):
    """The `src` of each JSONL line, in order; the built-in demo prompts without a data file."""
    if data_file is None:
        return list(DEMO_PROMPTS)
    path = Path(data_file)
    if not path.is_file():
        raise UserError(f"--data_file {path} does not exist")
    prompts = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            src = row.get("src") if isinstance(row, dict) else None
            if not isinstance(src, str):
                raise UserError(f'{path}:{number}: expected an object with a string "src" (e.g. {{"src": "Hello"}})')
            if not src.strip():
                raise UserError(f"{path}:{number}: empty prompt (remove the line or give it text)")
            prompts.append(src)
    if not prompts:
        raise UserError(f"{path} holds no prompts (one JSON object with a \"src\" a line)")
    return prompts


def open_results(output_file):
    """The JsonlStream that --output_file's rows go to as they finish (None without --output_file). It is
    created here, before any work, so a path that cannot be written fails at once."""
    if output_file is None:
        return None
    path = Path(output_file)
    if path.is_dir():
        raise UserError(f"--output_file {output_file} is a directory (give a file path)")
    if not path.resolve().parent.is_dir():
        raise UserError(f"--output_file {output_file}: directory {path.resolve().parent} does not exist")
    try:
        return JsonlStream(path)
    except OSError as exc:
        raise UserError(f"--output_file {output_file} cannot be written: {exc.strerror} "
                        "(choose a file in a writable directory)") from None
