"""The README's first command: llm/quickstart.sh end to end on the reference model, from another directory,
giving HF transformers' greedy tokens for the same GGUF."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import transformers

from hf_reference import hf_greedy_tokens
from paddlellm.predictor.io import DEMO_PROMPTS
from paddlellm.reference import reference_gguf

ROOT = Path(__file__).resolve().parents[1]
NEW_TOKENS = 8


def test_quickstart_prints_hf_greedy_tokens_from_any_directory(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "WORK_DIR": str(tmp_path / "work")}
    results = tmp_path / "results.jsonl"
    proc = subprocess.run(["bash", str(ROOT / "llm" / "quickstart.sh"), "--max_length", str(NEW_TOKENS),
                           "--output_file", str(results)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "work" / "inference" / "paddlellm_manifest.json").is_file()

    gguf = reference_gguf()
    hf = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id]
    expected = []
    for text in DEMO_PROMPTS:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        expected.append(hf_greedy_tokens(hf, ids, NEW_TOKENS, eos, tokenizer.pad_token_id))

    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["src"] for r in rows] == DEMO_PROMPTS
    assert [r["output_ids"] for r in rows] == expected
    printed = [line[len("  -> "):] for line in proc.stdout.splitlines() if line.startswith("  -> ")]
    assert printed == [tokenizer.decode(ids) for ids in expected]
    assert proc.stdout.splitlines()[-1].startswith("[static, block attention]")
