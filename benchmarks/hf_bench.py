#!/usr/bin/env python
"""HF transformers' greedy `generate` timed the way llama-batched-bench times llama.cpp: prompt and decode apart.

python benchmarks/hf_bench.py --model_name_or_path CKPT --prompt_tokens 128 --new_tokens 64 --batch_size 4 \
    --threads 2 [--output hf.json]

B prompts of exactly P random token ids (seeded, the same for every run), no padding. After a warm-up,
the prompt is timed as a generate of 1 new token (median of --prefill_runs), then a generate of exactly N
new tokens (min_new_tokens=N, so EOS never ends it early); its decode steps are the N-1 forwards after
the prompt, so decode tok/s = B*(N-1) / (t_generate_N - t_prompt). Prints one JSON object (and writes it
to --output). Used by benchmarks/vs_llamacpp.py; needs the test extras (torch, transformers).
"""
import argparse
import json
import statistics
import time

import torch
import transformers

try:  # run from the repository: hide paddle's codec package from transformers' optional imports
    from paddlellm.compat import hide_paddlecodec_from_transformers

    hide_paddlecodec_from_transformers()
except ImportError:
    pass


def timed_generate(model, ids, new_tokens):
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)
    seconds = time.perf_counter() - started
    assert out.shape == (ids.shape[0], ids.shape[1] + new_tokens), out.shape
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_name_or_path", required=True, help="HF checkpoint directory")
    p.add_argument("--prompt_tokens", type=int, default=128)
    p.add_argument("--new_tokens", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prefill_runs", type=int, default=3, help="timed prompt-only generates (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="JSON file to write")
    args = p.parse_args()
    if args.new_tokens < 2:
        p.error("--new_tokens must be at least 2 (decode is timed after the first token)")
    torch.set_num_threads(args.threads)

    model = transformers.AutoModelForCausalLM.from_pretrained(args.model_name_or_path, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, args.prompt_tokens), generator=torch.Generator().manual_seed(args.seed))
    ids = ids.expand(args.batch_size, -1).contiguous()  # the same prompt for every row, as llama-batched-bench

    timed_generate(model, ids, 2)  # warm-up: first-call allocations and kernel selection
    prefill = [timed_generate(model, ids, 1) for _ in range(args.prefill_runs)]
    t_prompt = statistics.median(prefill)
    t_total = timed_generate(model, ids, args.new_tokens)
    t_decode = max(t_total - t_prompt, 1e-9)
    result = {
        "batch_size": args.batch_size, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
        "threads": args.threads, "torch": torch.__version__, "transformers": transformers.__version__,
        "t_prompt_s": t_prompt, "t_prompt_samples_s": prefill, "t_generate_s": t_total,
        "prompt_tokens_per_s": args.batch_size * args.prompt_tokens / t_prompt,
        "decode_tokens_per_s": args.batch_size * (args.new_tokens - 1) / t_decode,
    }
    text = json.dumps(result)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
