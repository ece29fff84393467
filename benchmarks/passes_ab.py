#!/usr/bin/env python
"""Does each IR pass pay for itself? Step times of an exported model with the device's whole pipeline, with
no pass, and with the pipeline less one pass, for every pass in it.

    python benchmarks/passes_ab.py [--model DIR] [--device cpu] [--batch_sizes 1 8] [--prompt_tokens 128]
        [--steps 16] [--rounds 5] [--threads 2] [--configs=NAME,...]

DIR: an export (default: output/vs_llamacpp/inference, what benchmarks/vs_llamacpp.py exports). Per batch size
B: one prompt step of B prompts of P tokens, then --steps decode steps of B tokens, each step timed; the
configurations take turns step by step (in a shuffled order each round), --rounds times, so that a slow spell on
a shared machine hits them alike. A second predictor with the whole pipeline ("pipeline again") shows the noise
floor. Prints the median step times and, per pass, the pipeline's speed over the pipeline without it (> 1: the
pass pays).
A pass that others build on (the layer fusion needs the norm, rotary and projection passes before it) takes
what they enable with it. Not part of .ci/run.
"""
import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def plans(batch, prompt_tokens, steps, block_size):
    """The prompt step of `batch` sequences of `prompt_tokens` tokens from position 0, then `steps` decode steps."""
    from paddlellm.predictor.scheduler import ScheduledRequest, SchedulerOutput

    blocks = -(-(prompt_tokens + steps) // block_size)
    tables = [list(range(s * blocks, (s + 1) * blocks)) for s in range(batch)]
    prompt = list(range(5, 5 + prompt_tokens))
    yield SchedulerOutput([ScheduledRequest(s, prompt_tokens, 0, prompt, tables[s], True) for s in range(batch)])
    for i in range(steps):
        yield SchedulerOutput([ScheduledRequest(s, 1, prompt_tokens + i, [7], tables[s], True) for s in range(batch)])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "output" / "vs_llamacpp" / "inference"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--prompt_tokens", type=int, default=128)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", help="only these configurations, comma-separated, created in this order (e.g. "
                   "--configs=-llama_fuse_get_padding_offset,pipeline): predictors created later ran a few %% "
                   "faster here")
    args = p.parse_args()

    from paddlellm.export.manifest import read_manifest
    from paddlellm.ops.passes import PIPELINES
    from paddlellm.predictor.runners import StaticBlockRunner

    manifest = read_manifest(args.model)
    pipeline = list(PIPELINES[args.device])
    configs = {"pipeline": pipeline, "pipeline again": pipeline, "none": []}  # again: the noise floor
    configs.update({f"-{name}": [n for n in pipeline if n != name] for name in pipeline})
    if args.configs:  # these, created in this order ("pipeline" always among them)
        chosen = args.configs.split(",")
        unknown = [c for c in chosen if c not in configs]
        if unknown:
            p.error(f"--configs: unknown {', '.join(unknown)} (known: {', '.join(configs)})")
        configs = {c: configs[c] for c in chosen + ([] if "pipeline" in chosen else ["pipeline"])}
    blocks = max(args.batch_sizes) * -(-(args.prompt_tokens + args.steps) // manifest.block_size)
    runners = {}
    for name, passes in configs.items():
        print(f"creating the predictor: {name}", file=sys.stderr, flush=True)
        runners[name] = StaticBlockRunner(args.model, manifest, args.device, args.threads, num_blocks=blocks,
                                          passes=passes)
    prompt = {(c, b): [] for c in configs for b in args.batch_sizes}
    decode = {(c, b): [] for c in configs for b in args.batch_sizes}
    order = list(configs)
    for round_ in range(args.rounds):
        for batch in args.batch_sizes:
            random.Random(round_).shuffle(order)
            # step by step, each configuration in turn: a slow spell hits them alike
            for i, plan in enumerate(plans(batch, args.prompt_tokens, args.steps, manifest.block_size)):
                for name in order:
                    started = time.perf_counter()
                    runners[name].step(plan)
                    (decode if i else prompt)[name, batch].append(time.perf_counter() - started)

    def ms(samples):
        return statistics.median(samples) * 1e3

    header = " | ".join(f"decode b{b} ms | prompt b{b} ms" for b in args.batch_sizes)
    print(f"{manifest.num_layers} layers, {args.threads} threads, prompt {args.prompt_tokens} tokens, median of "
          f"{args.rounds} rounds ({args.steps} decode steps each)\n")
    print(f"| passes | {header} | decode speed-up vs this | prompt speed-up vs this |")
    print("|---|" + "---:|" * (2 * len(args.batch_sizes) + 2))
    for name in configs:
        cells = " | ".join(f"{ms(decode[name, b]):.2f} | {ms(prompt[name, b]):.1f}" for b in args.batch_sizes)
        speedup = [" / ".join(f"{ms(kind[name, b]) / ms(kind['pipeline', b]):.3f}" for b in args.batch_sizes)
                   for kind in (decode, prompt)]
        print(f"| {name} | {cells} | {speedup[0]} | {speedup[1]} |")


if __name__ == "__main__":
    main()
