"""`llm/predict/predictor.py`: flags -> prompts -> runner -> generations, printed and/or written."""
import sys
import time
from pathlib import Path

import paddle

from paddlellm.device import check_device, compute_dtype, paddle_place
from paddlellm.errors import UserError
from paddlellm.export.manifest import MANIFEST_NAME, read_manifest
from paddlellm.predictor.args import PredictorArgs, parse_args
from paddlellm.predictor.generate import GenerationStats, generate_batch
from paddlellm.predictor.io import check_output_file, read_prompts, write_results
from paddlellm.predictor.runners import DynamicRunner, StaticRunner
from paddlellm.predictor.sampling import Sampler
from paddlellm.tokenizer import load_tokenizer


def main(argv):
    args = parse_args(argv)
    model_dir = Path(args.model_name_or_path)
    if not model_dir.is_dir():
        raise UserError(f"model directory {model_dir} does not exist (check --model_name_or_path)")
    texts = read_prompts(args.data_file)
    check_output_file(args.output_file)
    tokenizer = load_tokenizer(model_dir)
    prompts = encode_prompts(tokenizer, texts, args)
    runner, max_positions = build_runner(args, model_dir)
    longest = max(len(p) for p in prompts)
    if longest + args.max_length > max_positions:
        raise UserError(f"prompt ({longest} tokens) + --max_length {args.max_length} exceeds the model's "
                        f"{max_positions} positions (lower --max_length or --src_length)")

    sampler = Sampler(args.sampling())
    eos_ids, pad_id = tokenizer.eos_token_ids, tokenizer.pad_token_id
    rows, stats, started = [], GenerationStats(), time.perf_counter()
    for first in range(0, len(prompts), args.batch_size):
        batch = prompts[first:first + args.batch_size]
        results, batch_stats = generate_batch(runner, batch, args.max_length, sampler, eos_ids, pad_id)
        stats.add(batch_stats)
        for text, result in zip(texts[first:], results):
            output = tokenizer.decode(result.token_ids)
            rows.append({"src": text, "output": output, "output_ids": result.token_ids})
            if not args.quiet:
                print(f"[{len(rows)}] {text}\n  -> {output}", flush=True)
    if args.output_file:
        write_results(args.output_file, rows)
    print(summary(stats, time.perf_counter() - started, args), flush=True)
    return 0


def encode_prompts(tokenizer, texts, args: PredictorArgs):
    """Token ids per prompt, through the chat template unless --chat_template none."""
    template = args.chat_template
    if template is not None and template != "none":
        path = Path(template)
        if not path.is_file():
            raise UserError(f"--chat_template {template} is not a file (give a Jinja template file, or 'none')")
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    use_template = template != "none" and tokenizer.has_chat_template
    prompts = []
    for number, text in enumerate(texts, 1):
        if not text.strip():
            raise UserError(f"prompt {number} is empty (give it text)")
        if use_template:
            rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
            ids = tokenizer.encode(rendered, add_special_tokens=False)
        else:
            ids = tokenizer.encode(text, add_special_tokens=True)
        if not ids:
            raise UserError(f"prompt {number} encodes to no tokens (give it text)")
        if len(ids) > args.src_length:
            raise UserError(f"prompt {number} has {len(ids)} tokens, more than --src_length {args.src_length} "
                            "(shorten it or raise --src_length)")
        prompts.append(ids)
    return prompts


def build_runner(args: PredictorArgs, model_dir: Path):
    """The runner for --mode, after checking flags against the manifest and the device's presence."""
    if args.mode == "static":
        manifest = read_manifest(model_dir)
        source = model_dir / MANIFEST_NAME
        if args.dtype is not None and args.dtype != manifest.dtype:
            raise UserError(f"--dtype {args.dtype} contradicts the exported dtype {manifest.dtype} in {source} "
                            "(drop --dtype, or export again with it)")
        if args.block_attn is not None and args.block_attn != manifest.block_attn:
            raise UserError(f"--block_attn {args.block_attn} contradicts block_attn {manifest.block_attn} in {source} "
                            "(drop --block_attn, or export again with it)")
        device = args.device or manifest.device
        if compute_dtype(manifest.dtype, device) != manifest.compute_dtype:
            raise UserError(f"--device {device} cannot run the program exported for {manifest.device} in {source} "
                            f"(its math is {manifest.compute_dtype}; drop --device, or export again with --device {device})")
        check_device(device)
        paddle.set_device(paddle_place(device))
        return StaticRunner(model_dir, manifest, device, args.threads()), manifest.max_position_embeddings
    if (model_dir / MANIFEST_NAME).is_file():
        raise UserError(f"{model_dir} is an exported model (run it with --mode static)")
    from paddlellm.models.llama.loader import load_model

    dtype, device = args.dtype or "float32", args.device or "cpu"
    check_device(device)
    paddle.set_device(paddle_place(device))
    model = load_model(model_dir, dtype=dtype, device=device)
    return DynamicRunner(model, args.threads()), model.config.max_position_embeddings


def summary(stats: GenerationStats, seconds, args: PredictorArgs):
    decode_tps = stats.decode_steps and (stats.generated_tokens - stats.batches) / max(stats.decode_seconds, 1e-9)
    prefill_tps = stats.prompt_tokens / max(stats.prefill_seconds, 1e-9)
    return (f"[{args.mode}] {stats.batches} batch(es), {stats.prompt_tokens} prompt tokens, "
            f"{stats.generated_tokens} generated tokens in {seconds:.2f}s: "
            f"prefill {prefill_tps:.1f} tok/s, decode {decode_tps:.1f} tok/s, overall "
            f"{stats.generated_tokens / max(seconds, 1e-9):.1f} tok/s")


if __name__ == "__main__":
    from paddlellm.cli import run_main

    sys.exit(run_main(main))
