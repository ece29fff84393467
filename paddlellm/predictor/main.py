"""`llm/predict/predictor.py`: flags -> prompts -> runner -> generations, printed and/or written."""
import sys
import time
from pathlib import Path

import numpy as np
import paddle

from paddlellm.device import check_device, compute_dtype, paddle_place
from paddlellm.errors import UserError
from paddlellm.export.manifest import MANIFEST_NAME, read_manifest
from paddlellm.predictor.args import PredictorArgs, parse_args
from paddlellm.predictor.generate import GenerationStats, generate_batch
from paddlellm.predictor.io import open_results, read_prompts
from paddlellm.predictor.runners import DynamicRunner, StaticRunner
from paddlellm.predictor.sampling import Sampler
from paddlellm.tokenizer import load_tokenizer


def main(argv):
    args = parse_args(argv)
    model_dir = Path(args.model_name_or_path)
    if not model_dir.is_dir():
        raise UserError(f"model directory {model_dir} does not exist (check --model_name_or_path)")
    texts = read_prompts(args.data_file)
    output = open_results(args.output_file)
    try:
        stats, seconds = predict(args, model_dir, texts, output)
    except BaseException as exc:
        if output is None:
            raise
        output.abandon()
        if not output.rows:
            raise
        kept = f"{output.rows} of {len(texts)} results are saved in {output.partial}"
        if isinstance(exc, UserError):
            raise UserError(f"{exc}; {kept}") from None
        print(f"stopped: {kept}", file=sys.stderr, flush=True)
        raise
    if output is not None:
        output.finish()
    print(summary(stats, seconds, args), flush=True)
    return 0


def predict(args: PredictorArgs, model_dir: Path, texts, output):
    """Generate for every prompt text; print each result (unless --quiet) and write it to `output` as it
    finishes, in input order. Returns the GenerationStats and the seconds spent generating."""
    tokenizer = load_tokenizer(model_dir)
    prompts = encode_prompts(tokenizer, texts, args)
    model = describe_model(args, model_dir)
    check_prompts_fit(prompts, tokenizer, model, args)
    log(f"loading {model_dir} ({args.mode} mode)")
    runner = build_runner(args, model_dir, model)
    log("warming up")
    warm_up(runner)
    log(f"generating for {len(prompts)} prompt(s), {args.batch_size} at a time")
    samplers = [Sampler(args.sampling(), index) for index in range(len(prompts))]
    eos_ids, pad_id = tokenizer.eos_token_ids, tokenizer.pad_token_id
    stats, started = GenerationStats(), time.perf_counter()
    for first in range(0, len(prompts), args.batch_size):
        batch = slice(first, first + args.batch_size)
        results, batch_stats = generate_batch(runner, prompts[batch], args.max_length, samplers[batch], eos_ids, pad_id)
        stats.add(batch_stats)
        for number, text, result in zip(range(first + 1, len(texts) + 1), texts[batch], results):
            row = {"src": text, "output": tokenizer.decode(result.token_ids), "output_ids": result.token_ids}
            if output is not None:
                output.write(row)
            if not args.quiet:
                print(f"[{number}] {text}\n  -> {row['output']}", flush=True)
    return stats, time.perf_counter() - started


def warm_up(runner):
    """One step on one token: the first run of a program prepares it (seconds on a real model)."""
    runner.step(np.zeros((1, 1), dtype=np.int64), np.zeros(1, dtype=np.int64), 0, runner.new_caches(1, 1))


def log(message):
    print(f"[predictor] {message}", flush=True)


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


def describe_model(args: PredictorArgs, model_dir: Path):
    """What the model is, read without loading it: the manifest (static mode; the flags are checked against
    it) or the config (dynamic mode), after checking that the device is present. Both have vocab_size and
    max_position_embeddings."""
    if args.mode == "static":
        manifest = read_manifest(model_dir)
        source = model_dir / MANIFEST_NAME
        if args.dtype is not None and args.dtype != manifest.dtype:
            raise UserError(f"--dtype {args.dtype} contradicts the exported dtype {manifest.dtype} in {source} "
                            f"(drop --dtype, or export again with --dtype {args.dtype})")
        if args.block_attn is not None and args.block_attn != manifest.block_attn:
            raise UserError(f"--block_attn {args.block_attn} contradicts block_attn {manifest.block_attn} in {source} "
                            "(drop --block_attn: block attention is not available in this version)")
        device = args.device or manifest.device
        if compute_dtype(manifest.dtype, device) != manifest.compute_dtype:
            raise UserError(f"--device {device} cannot run the program exported for {manifest.device} in {source} "
                            f"(its math is {manifest.compute_dtype}; drop --device, or export again with --device {device})")
        try:
            check_device(device)
        except UserError:
            if args.device is not None:
                raise
            raise UserError(f"{model_dir} is exported for {device}, which is not present here (run it where a {device} "
                            "is, or export the checkpoint again with --device cpu)") from None
        return manifest
    if (model_dir / MANIFEST_NAME).is_file():
        raise UserError(f"{model_dir} is an exported model (run it with --mode static)")
    check_device(args.device or "cpu")
    from paddlellm.models.llama.loader import load_config

    return load_config(model_dir)


def check_prompts_fit(prompts, tokenizer, model, args: PredictorArgs):
    """Every prompt id exists in the model's vocabulary, and prompt + --max_length fit its positions."""
    largest = max(max(p) for p in prompts)
    if largest >= model.vocab_size:
        number = next(n for n, p in enumerate(prompts, 1) if largest in p)
        raise UserError(f"prompt {number} has token id {largest}, but the model's vocab_size is {model.vocab_size} "
                        f"(the tokenizer has {tokenizer.vocab_size} tokens: it does not belong to this model; "
                        "put the model's own tokenizer files in its directory)")
    longest = max(len(p) for p in prompts)
    room = model.max_position_embeddings - longest
    if args.max_length > room:
        fix = f"lower --max_length to {room}" if room >= 1 else "shorten the prompt"
        raise UserError(f"prompt ({longest} tokens) + --max_length {args.max_length} exceeds the model's "
                        f"{model.max_position_embeddings} positions ({fix})")


def build_runner(args: PredictorArgs, model_dir: Path, model):
    """The runner for --mode: the exported program (`model` is its manifest) or the checkpoint loaded."""
    if args.mode == "static":
        device = args.device or model.device
        paddle.set_device(paddle_place(device))
        return StaticRunner(model_dir, model, device, args.threads())
    from paddlellm.models.llama.loader import load_model

    dtype, device = args.dtype or "float32", args.device or "cpu"
    paddle.set_device(paddle_place(device))
    return DynamicRunner(load_model(model_dir, dtype=dtype, device=device), args.threads())


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
