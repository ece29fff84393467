"""Prompts in (JSONL or built-in demos), results out (JSONL, written whole or not at all)."""
import json
import os
import tempfile
from pathlib import Path

from paddlellm.errors import UserError

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


def check_output_file(output_file):
    """Fail before any work if the output file cannot be written."""
    if output_file is None:
        return
    parent = Path(output_file).resolve().parent
    if not parent.is_dir():
        raise UserError(f"--output_file {output_file}: directory {parent} does not exist")
    if Path(output_file).is_dir():
        raise UserError(f"--output_file {output_file} is a directory (give a file path)")


def write_results(output_file, rows):
    """Write rows as JSONL through a temporary sibling file, then rename it into place."""
    path = Path(output_file).resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
