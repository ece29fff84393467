#!/usr/bin/env python
"""The yardstick for the predictor: HF transformers' greedy `generate` on the same checkpoint and prompts.

python benchmarks/hf_generate.py --model_name_or_path CKPT --data_file prompts.jsonl --batch_size 4 --max_length 64
Prints one summary line in the predictor's format. Needs the test extras (torch, transformers).
"""
import argparse
import json
import time

import torch
import transformers

from paddlellm.compat import hide_paddlecodec_from_transformers

hide_paddlecodec_from_transformers()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model_name_or_path", required=True)
    p.add_argument("--data_file", required=True)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--max_length", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model_name_or_path, padding_side="left")
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model_name_or_path, dtype=torch.float32).eval()
    prompts = [json.loads(line)["src"] for line in open(args.data_file) if line.strip()]
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
             for p in prompts]
    generated, started = 0, time.perf_counter()
    for first in range(0, len(texts), args.batch_size):
        batch = tokenizer(texts[first:first + args.batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=args.max_length, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        new = out[:, batch["input_ids"].shape[1]:]
        generated += int((new != (tokenizer.pad_token_id or tokenizer.eos_token_id)).sum())
    seconds = time.perf_counter() - started
    print(f"[hf] {generated} generated tokens in {seconds:.2f}s: overall {generated / seconds:.1f} tok/s")


if __name__ == "__main__":
    main()
