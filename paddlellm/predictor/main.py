"""`llm/predict/predictor.py`: flags -> prompts -> runner -> generations, printed and/or written."""
import sys
from pathlib import Path

from paddlellm.errors import UserError
from paddlellm.predictor.args import PredictorArgs, parse_args
from paddlellm.predictor.benchmark import run_benchmark, synthetic_prompts, table, write_result
from paddlellm.predictor.engine import EngineStats
from paddlellm.predictor.io import open_results, read_prompts
from paddlellm.predictor.llm import LLM, build_runner, check_prompts_fit, describe_model, encode_prompts
from paddlellm.tokenizer import load_tokenizer


def main(argv):
    args = parse_args(argv)
    model_dir = Path(args.model_name_or_path)
    if not model_dir.is_dir():
        raise UserError(f"model directory {model_dir} does not exist (check --model_name_or_path)")
    if args.benchmark:
        return benchmark(args, model_dir)
    texts = read_prompts(args.data_file)
    output = open_results(args.output_file)
    try:
        line = predict(args, model_dir, texts, output)
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
    print(line, flush=True)
    return 0


def predict(args: PredictorArgs, model_dir: Path, texts, output):
    """Generate for every prompt text; print each result (unless --quiet) and write it to `output`, in input
    order, as soon as it and every result before it are done. Returns the summary line."""
    tokenizer = load_tokenizer(model_dir)
    prompts = encode_prompts(tokenizer, texts, args)
    model = describe_model(args, model_dir)
    check_prompts_fit(prompts, tokenizer, model, args.max_length)
    log(f"loading {model_dir} ({args.mode} mode, block attention)")
    runner = build_runner(args, model_dir, model)
    log_ops(runner)
    llm = LLM.from_parts(args, tokenizer, model, runner)
    log(f"generating for {len(prompts)} prompt(s), up to {args.batch_size} at a time")
    emit = ordered_rows(texts, tokenizer, output, args.quiet)
    for out in llm.stream(prompts):
        if out.finished:
            emit(out.index, out.token_ids)
    return engine_summary(llm.engine.stats, args, runner)


def benchmark(args: PredictorArgs, model_dir: Path):
    """--benchmark: see benchmark.py; prints one table, writes --benchmark_output."""
    tokenizer = load_tokenizer(model_dir)
    model = describe_model(args, model_dir)
    if args.data_file:
        prompts = encode_prompts(tokenizer, read_prompts(args.data_file), args)
    else:
        count = args.benchmark_requests or args.batch_size
        prompts = synthetic_prompts(count, args.src_length, model.vocab_size, args.seed)
    check_prompts_fit(prompts, tokenizer, model, args.max_length)
    log(f"loading {model_dir} ({args.mode} mode, block attention)")
    llm = LLM.from_parts(args, tokenizer, model, build_runner(args, model_dir, model))
    log_ops(llm.runner)
    log(f"benchmarking {len(prompts)} request(s), up to {args.batch_size} at a time")
    result = run_benchmark(llm, prompts)
    if args.benchmark_output:
        write_result(args.benchmark_output, result)
    print(table(result), flush=True)
    return 0


def ordered_rows(texts, tokenizer, output, quiet):
    """emit(index, token_ids) for results finishing in any order: rows go out (printed, written) in input
    order, each as soon as every row before it is out."""
    pending, next_index = {}, 0

    def emit(index, token_ids):
        nonlocal next_index
        pending[index] = token_ids
        while next_index in pending:
            token_ids = pending.pop(next_index)
            row = {"src": texts[next_index], "output": tokenizer.decode(token_ids), "output_ids": token_ids}
            if output is not None:
                output.write(row)
            if not quiet:
                print(f"[{next_index + 1}] {row['src']}\n  -> {row['output']}", flush=True)
            next_index += 1

    return emit


def log_ops(runner):
    """Say once which custom ops the program runs on (static mode; after the IR passes)."""
    program = getattr(runner, "program_path", None)
    if program is not None:
        from paddlellm import ops

        log("ops: " + ops.describe_ops(ops.ops_in_program(program)))


def log(message):
    print(f"[predictor] {message}", flush=True)


def engine_summary(stats: EngineStats, args: PredictorArgs, runner):
    """The summary line of a block-attention run: prompt and decode throughput over the steps that did each."""
    prefill_seconds = sum(t for t, prompt, _ in stats.step_log if prompt)
    decode_seconds = sum(t for t, prompt, _ in stats.step_log if not prompt)
    decode_only = sum(decode for _, prompt, decode in stats.step_log if not prompt)
    return (f"[{args.mode}, block attention] {stats.steps} steps, {stats.prompt_tokens} prompt tokens "
            f"({stats.prefix_cache_hits} from the prefix cache), {stats.decode_tokens} decode tokens in "
            f"{stats.seconds:.2f}s: prefill {stats.prompt_tokens / max(prefill_seconds, 1e-9):.1f} tok/s, decode "
            f"{decode_only / max(decode_seconds, 1e-9):.1f} tok/s; {stats.preemptions} preemption(s), KV pool "
            f"{runner.num_blocks} blocks of {runner.block_size} ({runner.pool_bytes / 2**20:.1f} MiB)")


if __name__ == "__main__":
    from paddlellm.cli import run_main

    sys.exit(run_main(main))
