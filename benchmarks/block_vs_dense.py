#!/usr/bin/env python
"""Decode-step time of the block-attention program against the dense-cache one, same weights and threads.

    python benchmarks/block_vs_dense.py --model_name_or_path CHECKPOINT [--batch_sizes 1 4 8 12] [--cached 160]

Exports the checkpoint twice (llm/predict/export_model.py with --block_attn true / false, into --work_dir),
then times one decode step of each program in the same process, batch size by batch size, the two
programs taking turns so that the machine's drift hits both: `--cached` tokens already in every
sequence's cache (the dense cache holds --cached + 32 slots, as a dense run generating 32 more would), one
new token each. Prints the median milliseconds of each and their ratio as a Markdown table.
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paddlellm.export.manifest import read_manifest  # noqa: E402
from paddlellm.predictor.runners import StaticBlockRunner, StaticRunner  # noqa: E402


def export(checkpoint, output, block_attn):
    cmd = [sys.executable, ROOT / "llm/predict/export_model.py", "--model_name_or_path", checkpoint,
           "--output_path", output, "--block_attn", str(block_attn).lower()]
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)
    return output


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_name_or_path", required=True, help="a checkpoint directory")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4, 8, 12])
    p.add_argument("--cached", type=int, default=160, help="tokens already in each sequence's cache")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=30, help="timed steps of each program per batch size")
    p.add_argument("--work_dir", default=str(ROOT / "output" / "block_vs_dense"))
    args = p.parse_args()
    import paddle

    work = Path(args.work_dir)
    dense_dir = export(args.model_name_or_path, work / "dense", False)
    block_dir = export(args.model_name_or_path, work / "block", True)
    dense = StaticRunner(dense_dir, read_manifest(dense_dir), "cpu", args.threads)
    block_manifest = read_manifest(block_dir)
    blocks_per_seq = -(-(args.cached + 1) // block_manifest.block_size)
    block = StaticBlockRunner(block_dir, block_manifest, "cpu", args.threads,
                              num_blocks=max(args.batch_sizes) * blocks_per_seq)

    print(f"decode step, {args.cached} tokens cached, {args.threads} threads, median of {args.steps}")
    print("| batch | dense ms | block ms | block / dense |\n|---:|---:|---:|---:|")
    for batch in args.batch_sizes:
        caches = dense.new_caches(batch, args.cached + 32)
        ids, pad_lens = np.full((batch, 1), 100, np.int64), np.zeros(batch, np.int64)
        tables = np.arange(batch * blocks_per_seq, dtype=np.int32).reshape(batch, blocks_per_seq)
        feeds = [paddle.to_tensor(np.full(batch, 100, np.int64)), paddle.to_tensor(np.ones(batch, np.int32)),
                 paddle.to_tensor(np.full(batch, args.cached, np.int32)), paddle.to_tensor(tables)] + block.caches
        feeds = [feeds[i] for i in block.feed_order]
        steps = {"dense": lambda: dense.step(ids, pad_lens, args.cached, caches),
                 "block": lambda: block.predictor.run(feeds)[0].numpy()}
        times = {name: [] for name in steps}
        for i in range(args.steps + 3):
            for name, step in steps.items():
                started = time.perf_counter()
                step()
                if i >= 3:  # warm-up
                    times[name].append(time.perf_counter() - started)
        d, b = (statistics.median(times[n]) * 1e3 for n in ("dense", "block"))
        print(f"| {batch} | {d:.2f} | {b:.2f} | {b / d:.2f} |", flush=True)


if __name__ == "__main__":
    main()
