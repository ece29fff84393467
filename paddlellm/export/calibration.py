"""--cachekv_int8_type static: the int8 KV cache's fixed per-head scales, calibrated at export.

The model about to be exported (its weights quantized as they will be served) runs over calibration text,
writing float32 K/V caches; each layer's scale for kv head h is the largest |K| (after rotary) or |V| of that
head over every token, / 127 (abs-max calibration, as PaddleNLP's PTQ gives cachekv scales). Served rows are
then round(x / scale) clipped to +-127 (csrc/cpu/paged_ops.cc): values beyond the calibrated range clip, so the
text must look like what will be served. It is fed in two forms, `tokens` of each: as eval_ppl reads a text
(plain, in windows), and, where the tokenizer has a chat template, each document as the predictor sends a
prompt (the template's user turn): its special tokens and system prompt are part of what is served.
The default text is the pretraining demo corpus, not the perplexity text (llm/data/coriolanus.txt), so that
eval_ppl measures a model calibrated on other text.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddlellm.errors import UserError

DEFAULT_CALIBRATION_FILE = Path(__file__).resolve().parents[2] / "llm" / "data" / "pretrain_demo" / "corpus.jsonl"
DEFAULT_CALIBRATION_TOKENS = 4096
WINDOW = 512  # tokens a sequence at most (fewer where the model has fewer positions)


@dataclass
class CacheScales:
    key: np.ndarray  # [num_layers, num_kv_heads] float32
    value: np.ndarray
    tokens: int  # calibrated on


def read_calibration_documents(path):
    """The documents of a UTF-8 text file (paragraphs, split at blank lines), or of JSON Lines ({"text": ...} per
    line, as the pretraining corpus) when named .jsonl."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--calibration_file {path} cannot be read as UTF-8 text: {exc} (give a text file)") from None
    if path.suffix != ".jsonl":
        documents = [part.strip() for part in text.split("\n\n")]
        return [d for d in documents if d]
    documents = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            documents.append(str(json.loads(line)["text"]))
        except (ValueError, KeyError, TypeError):
            raise UserError(f"--calibration_file {path}:{number}: not a JSON object with a \"text\" string "
                            "(give JSON Lines of {\"text\": ...}, or a plain .txt file)") from None
    return [d for d in documents if d.strip()]


def calibration_sequences(tokenizer, documents, tokens, window=WINDOW):
    """Token id sequences, each at most `window` long: the documents' text joined as eval_ppl reads a file (its
    first `tokens` tokens, in windows), then, with a chat template, documents as user prompts (`tokens` more)."""
    ids = tokenizer.encode("\n\n".join(documents))[:tokens]
    sequences = [ids[begin:begin + window] for begin in range(0, len(ids), window)]
    budget = tokens if tokenizer.has_chat_template else 0
    for document in documents:
        if budget <= 0:
            break
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": document}], add_generation_prompt=True)
        sequences.append(tokenizer.encode(prompt, add_special_tokens=False)[:min(window, budget)])
        budget -= len(sequences[-1])
    sequences = [s for s in sequences if s]
    if sum(map(len, sequences)) < 2:
        raise UserError("--calibration_file holds fewer than 2 tokens (give a longer text)")
    return sequences


def calibrate_cache_scales(model, sequences, block_size, step_tokens=2048):
    """Per-layer, per-head abs-max scales of K and V over the token id `sequences`, run through `model`
    (LlamaForCausalLM, in dygraph), each a sequence of its own from position 0, packed into steps of about
    `step_tokens` tokens."""
    import paddle

    c = model.config
    peak = np.zeros((2, c.num_hidden_layers, c.num_key_value_heads), np.float32)
    steps, step = [], []
    for sequence in sequences:
        if step and sum(map(len, step)) + len(sequence) > step_tokens:
            steps.append(step)
            step = []
        step.append(sequence[:c.max_position_embeddings])
    steps.append(step)
    with paddle.no_grad():
        for step in steps:
            blocks = [-(-len(s) // block_size) for s in step]
            tables = -np.ones((len(step), max(blocks)), np.int32)
            for i, first in enumerate(np.cumsum([0] + blocks[:-1])):
                tables[i, :blocks[i]] = np.arange(first, first + blocks[i])
            shape = [sum(blocks), c.num_key_value_heads, block_size, c.head_dim]
            caches = [paddle.zeros(shape, "float32") for _ in range(2 * c.num_hidden_layers)]
            model(paddle.to_tensor(np.concatenate(step).astype(np.int64)),
                  paddle.to_tensor(np.array([len(s) for s in step], np.int32)),
                  paddle.to_tensor(np.zeros(len(step), np.int32)), paddle.to_tensor(tables), caches)
            for i, cache in enumerate(caches):  # rows not written stay 0, which no peak is below
                peak[i % 2, i // 2] = np.maximum(peak[i % 2, i // 2], np.abs(cache.numpy()).max(axis=(0, 2, 3)))
    if not np.isfinite(peak).all():
        raise UserError("calibration met a NaN or Inf in K/V: the checkpoint's weights overflow (check the model)")
    scales = np.where(peak > 0, peak / np.float32(127), np.float32(1)).astype(np.float32)
    return CacheScales(scales[0], scales[1], sum(map(len, sequences)))
