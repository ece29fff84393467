"""`llm/tools/eval_ppl.py`: the perplexity of a text under an exported model, computed by the predictor's own
program (its IR passes, kernels and quantized weights included), so that quantization's cost in quality shows.

Sliding windows, as HF's perplexity guide computes them: windows of --max_seq_length tokens, --stride tokens
apart; every token but the first is scored once, in the first window that holds it and the token before it, with
the rest of that window before it as context.

One step per window. The block step returns the logits of each sequence's last token, so a window is fed as
the context before its first scored token (one prompt chunk) followed by each later position as a one-token
sequence of its own, all of them on the window's blocks: one row of logits per position, at a prompt's cost.
Each one-token sequence attends to exactly its causal prefix, because within a layer every row's K/V are
written before any row's attention reads the cache (write_cache_kv precedes block_attention on every backend).
"""
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from paddlellm.argparsing import ArgumentParser, DefaultsHelpFormatter, add_debug
from paddlellm.errors import UserError

DEFAULT_TEXT = Path(__file__).resolve().parents[2] / "llm" / "data" / "coriolanus.txt"


def windows(num_tokens, max_seq_length, stride):
    """(begin, end, first_target) of each window: tokens [begin, end) are fed, tokens [first_target, end) scored."""
    if not 1 <= stride < max_seq_length:
        raise UserError(f"--stride must be at least 1 and below --max_seq_length {max_seq_length}, got {stride} "
                        "(each window must reach back to the token before the first one it scores)")
    spans, scored_to = [], 1
    for begin in range(0, max(num_tokens - 1, 0), stride):
        end = min(begin + max_seq_length, num_tokens)
        if end > scored_to:
            spans.append((begin, end, scored_to))
            scored_to = end
        if end == num_tokens:
            break
    return spans


def window_plan(ids, begin, end, first_target, table):
    """The step for one window: the context chunk, then a one-token sequence per scored position (its logits
    predict the next token)."""
    from paddlellm.predictor.scheduler import ScheduledRequest, SchedulerOutput

    context = first_target - 1 - begin
    rows = [ScheduledRequest("context", context, 0, list(ids[begin:first_target - 1]), table, True)] if context else []
    rows += [ScheduledRequest(k, 1, k - begin, [ids[k]], table, True) for k in range(first_target - 1, end - 1)]
    return SchedulerOutput(rows), len(rows) - (end - first_target)


def negative_log_likelihoods(logits, targets):
    """-log softmax(logits)[target] per row, in float64."""
    x = logits.astype(np.float64)
    peak = x.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(x - peak).sum(axis=1)) + peak[:, 0]
    return log_total - x[np.arange(len(targets)), targets]


@dataclass
class Perplexity:
    perplexity: float
    tokens: int  # scored
    windows: int
    max_seq_length: int
    stride: int
    seconds: float


def perplexity(runner, ids, max_seq_length=512, stride=256, progress=None):
    """The perplexity of token ids under the block runner's step (see the module's docstring)."""
    spans = windows(len(ids), max_seq_length, stride)
    if not spans:
        raise UserError("the text has fewer than 2 tokens: nothing to score (give a longer --data_file)")
    blocks = -(-max_seq_length // runner.block_size)
    runner.allocate(blocks)
    table = list(range(blocks))
    total, scored, started = 0.0, 0, time.perf_counter()
    for begin, end, first in spans:
        plan, skip = window_plan(ids, begin, end, first, table)
        logits = runner.step(plan)[skip:]
        total += float(negative_log_likelihoods(logits, np.asarray(ids[first:end])).sum())
        scored += end - first
        if progress:
            progress(end - first)
    return Perplexity(math.exp(total / scored), scored, len(spans), max_seq_length, stride,
                      time.perf_counter() - started)


def build_parser():
    p = ArgumentParser(prog="eval_ppl.py", formatter_class=DefaultsHelpFormatter,
                       description="Perplexity of a text under an exported model, computed by the predictor's "
                                   "program (sliding windows).")
    p.add_argument("--model_name_or_path", required=True, help="an exported model directory (export_model.py)")
    p.add_argument("--data_file", default=str(DEFAULT_TEXT), help="a UTF-8 text file")
    p.add_argument("--max_seq_length", type=int, default=512, help="tokens per window")
    p.add_argument("--stride", type=int, default=256, help="tokens between the starts of consecutive windows")
    p.add_argument("--max_tokens", type=int, default=0, help="score only the text's first N tokens (0: all)")
    p.add_argument("--cpu_threads", type=int, default=0, help="CPU math threads (0: all available cores)")
    p.add_argument("--device", default=None, help="the device to run on (default: the export's)")
    p.add_argument("--passes", default=None, help="the IR passes to run, NAME,... or none (default: the device's)")
    p.add_argument("--disable_passes", default=None, help="IR passes not to run, NAME,... (default: none)")
    p.add_argument("--output_file", default=None, help="JSON file for the result (default: none)")
    add_debug(p)
    return p


def main(argv):
    import os

    from tqdm import tqdm

    from paddlellm.device import check_device, paddle_place
    from paddlellm.export.manifest import read_manifest
    from paddlellm.files import write_json
    from paddlellm.ops.passes import pipeline
    from paddlellm.predictor.runners import StaticBlockRunner
    from paddlellm.tokenizer import load_tokenizer

    args = build_parser().parse_args(argv)
    model_dir, data = Path(args.model_name_or_path), Path(args.data_file)
    manifest = read_manifest(model_dir)
    if args.max_seq_length < 2 or args.max_seq_length > manifest.max_position_embeddings:
        raise UserError(f"--max_seq_length must be in [2, {manifest.max_position_embeddings}] (the model's positions), "
                        f"got {args.max_seq_length}")
    windows(0, args.max_seq_length, args.stride)  # checks --stride
    try:
        text = data.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--data_file {data} cannot be read as UTF-8 text: {exc} (give a text file)") from None
    ids = load_tokenizer(model_dir).encode(text)
    if args.max_tokens > 0:
        ids = ids[: args.max_tokens]
    device = args.device or manifest.device
    check_device(device)
    import paddle

    paddle.set_device(paddle_place(device))
    passes = None if args.passes is None and args.disable_passes is None else pipeline(device, args.passes,
                                                                                       args.disable_passes)
    runner = StaticBlockRunner(model_dir, manifest, device, args.cpu_threads or len(os.sched_getaffinity(0)),
                               passes=passes)
    with tqdm(total=max(len(ids) - 1, 0), unit="tok", desc="perplexity", file=sys.stderr) as bar:
        result = perplexity(runner, ids, args.max_seq_length, args.stride, bar.update)
    if args.output_file:
        write_json(args.output_file, {**asdict(result), "model": str(model_dir), "data_file": str(data),
                                      "quant_type": manifest.quant_type, "cachekv_int8_type": manifest.cachekv_int8_type,
                                      "dtype": manifest.dtype})
    print(f"perplexity {result.perplexity:.4f} over {result.tokens} tokens of {data.name} ({result.windows} windows "
          f"of {result.max_seq_length}, stride {result.stride}) in {result.seconds:.1f}s", flush=True)
    return 0
