"""`predictor.py --benchmark`: what a block-attention run costs, measured on the engine's own steps.

Requests: --data_file's prompts, or --benchmark_requests (default --batch_size) synthetic prompts of
--src_length random token ids; each generates exactly --max_length tokens (EOS ignored). After the
predictor's warm-up, every step is timed. Prompt tok/s counts the steps that computed prompt tokens
(llama-batched-bench's S_PP), decode tok/s the steps that only decoded (its S_TG); time to first token
and time per output token are per request, from the start of the run.
"""
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import paddle

import paddlellm
from paddlellm.files import atomic_file
from paddlellm.predictor.engine import EngineStats


def synthetic_prompts(count, length, vocab_size, seed):
    rng = np.random.default_rng(seed)
    return [[int(t) for t in rng.integers(0, vocab_size, length)] for _ in range(count)]


def run_benchmark(llm, prompts):
    """Run every prompt through `llm` (an LLM) and return the results dict (see module doc)."""
    params = llm.args.sampling()
    llm.generate([prompts[0][:8]], replace(params, max_tokens=2))  # warm-up of the prompt and decode shapes
    llm.engine.stats = EngineStats()
    started = time.perf_counter()
    outputs = llm.generate(prompts, params)
    seconds = time.perf_counter() - started
    stats = llm.engine.stats
    prefill = [(t, p) for t, p, _ in stats.step_log if p]
    decode = [(t, d) for t, p, d in stats.step_log if not p]
    ttft = [g.first_token_seconds for g in llm.engine.last_generations]
    tpot = [(g.token_seconds[-1] - g.token_seconds[0]) / (len(g.token_seconds) - 1)
            for g in llm.engine.last_generations if len(g.token_seconds) > 1]
    args = llm.args
    return {
        "prompt_tokens_per_s": sum(p for _, p in prefill) / max(sum(t for t, _ in prefill), 1e-9),
        "decode_tokens_per_s": sum(d for _, d in decode) / max(sum(t for t, _ in decode), 1e-9),
        "ttft_median_s": statistics.median(ttft),
        "ttft_p90_s": float(np.percentile(ttft, 90)),
        "tpot_median_s": statistics.median(tpot) if tpot else None,
        "requests_per_s": len(prompts) / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "kv_pool_mb": llm.runner.pool_bytes / 2**20,
        "num_requests": len(prompts), "batch_size": args.batch_size, "src_length": max(len(p) for p in prompts),
        "max_length": args.max_length, "generated_tokens": sum(len(o.token_ids) for o in outputs),
        "seconds": seconds, "steps": stats.steps, "preemptions": stats.preemptions,
        "threads": args.threads(), "mode": args.mode, "model": str(Path(args.model_name_or_path).resolve()),
        "commit": commit(), "machine": machine(), "versions": {"paddle": paddle.__version__,
                                                               "paddlellm": paddlellm.__version__},
        "samples": {"step_seconds_prompt_decode": stats.step_log, "ttft_s": ttft, "tpot_s": tpot},
    }


def table(result):
    rows = [("requests", f"{result['num_requests']} x {result['src_length']} prompt + {result['max_length']} new tokens, "
                         f"batch {result['batch_size']}, {result['threads']} threads"),
            ("prompt tok/s", f"{result['prompt_tokens_per_s']:.1f}"),
            ("decode tok/s", f"{result['decode_tokens_per_s']:.1f}"),
            ("time to first token (median / p90)", f"{result['ttft_median_s'] * 1e3:.1f} / {result['ttft_p90_s'] * 1e3:.1f} ms"),
            ("time per output token (median)",
             f"{result['tpot_median_s'] * 1e3:.2f} ms" if result["tpot_median_s"] is not None else "-"),
            ("requests/s", f"{result['requests_per_s']:.2f}"),
            ("peak RSS", f"{result['peak_rss_mb']:.0f} MB (KV pool {result['kv_pool_mb']:.0f} MB)"),
            ("preemptions", str(result["preemptions"]))]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)


def write_result(path, result):
    with atomic_file(path) as f:
        f.write(json.dumps(result, indent=2) + "\n")


def commit():
    root = Path(paddlellm.__file__).resolve().parents[1]
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine():
    from paddlellm import ops

    name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), platform.machine())
    return {"cpu": name, "cores": len(os.sched_getaffinity(0)), "isa": ops.cpu_isa(), "system": platform.platform()}
