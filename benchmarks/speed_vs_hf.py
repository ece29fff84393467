#!/usr/bin/env python
"""The README's speed table, rerunnable: the static predictor against HF transformers' greedy `generate`,
whole processes (start-up and model loading included), same checkpoint, prompts, new tokens and threads.

    python benchmarks/speed_vs_hf.py [--runs 3] [--batch_sizes 1 4] [--max_length 32] [--threads 2]

Prepares the reference model first (SmolLM2-135M-Instruct GGUF -> checkpoint -> static export, in
--work_dir), then for each batch size runs the two commands in turn (ours, HF, ours, HF, ...) and reports
the median seconds of each and the median of the pairwise ratios (pairs keep the ratio fair when the
machine's speed drifts). Prints a Markdown table; --output writes the raw samples as JSON.
Needs the test extras (torch, transformers, accelerate).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paddlellm.predictor.io import DEMO_PROMPTS  # noqa: E402
from paddlellm.reference import reference_gguf  # noqa: E402

PROMPTS = DEMO_PROMPTS + [
    "List three primary colors.",
    "Explain gravity to a five year old.",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue? Answer in one sentence.",
]


def run(cmd, env=None):
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(map(str, cmd))} failed:\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def prepare(work):
    checkpoint, inference = work / "checkpoint", work / "inference"
    run([sys.executable, ROOT / "llm/tools/convert_gguf.py", "--gguf", reference_gguf(), "--output_path",
         checkpoint, "--overwrite"])
    run([sys.executable, ROOT / "llm/predict/export_model.py", "--model_name_or_path", checkpoint,
         "--output_path", inference, "--inference_model", "--dtype", "float32"])
    data = work / "prompts.jsonl"
    data.write_text("".join(json.dumps({"src": p}) + "\n" for p in PROMPTS))
    return checkpoint, inference, data


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="timed runs of each command per batch size")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4])
    p.add_argument("--max_length", type=int, default=32, help="new tokens per prompt")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work_dir", default=str(ROOT / "output" / "speed_vs_hf"))
    p.add_argument("--output", default=None, help="JSON file for the raw samples")
    args = p.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint, inference, data = prepare(work)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    rows = []
    for batch in args.batch_sizes:
        ours = [sys.executable, ROOT / "llm/predict/predictor.py", "--model_name_or_path", inference,
                "--inference_model", "--mode", "static", "--data_file", data, "--decode_strategy", "greedy_search",
                "--max_length", args.max_length, "--batch_size", batch, "--cpu_threads", args.threads, "--quiet"]
        hf = [sys.executable, ROOT / "benchmarks/hf_generate.py", "--model_name_or_path", checkpoint,
              "--data_file", data, "--max_length", args.max_length, "--batch_size", batch, "--threads", args.threads]
        samples = {"paddlellm": [], "hf": []}
        for _ in range(args.runs):
            samples["paddlellm"].append(run(list(map(str, ours)), env)[0])
            samples["hf"].append(run(list(map(str, hf)), env)[0])
        ratios = [a / b for a, b in zip(samples["paddlellm"], samples["hf"])]
        rows.append({"batch_size": batch, "samples": samples, "ratios": ratios,
                     "paddlellm_median_s": statistics.median(samples["paddlellm"]),
                     "hf_median_s": statistics.median(samples["hf"]), "ratio_median": statistics.median(ratios)})
        print(f"batch {batch}: ours {rows[-1]['paddlellm_median_s']:.1f}s, HF {rows[-1]['hf_median_s']:.1f}s",
              file=sys.stderr, flush=True)

    print(f"SmolLM2-135M fp32, {len(PROMPTS)} chat prompts x {args.max_length} new tokens, {args.threads} threads, "
          f"{cpu_name()}, median of {args.runs} whole-process runs:\n")
    print("| batch | static predictor | HF transformers | ratio |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['batch_size']} | {row['paddlellm_median_s']:.1f} s | {row['hf_median_s']:.1f} s | "
              f"{row['ratio_median']:.2f} |")
    if args.output:
        Path(args.output).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
