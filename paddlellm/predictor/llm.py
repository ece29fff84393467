"""The Python API, in the shape vLLM users know, over an exported block-attention model:

    from paddlellm.predictor import LLM, SamplingParams

    llm = LLM("./inference", batch_size=8)          # any predictor flag as a keyword: cpu_threads=2, ...
    for out in llm.generate(["What is the capital of France?"], SamplingParams(max_tokens=32)):
        print(out.text)                             # results in input order
    for out in llm.stream(prompts, SamplingParams(temperature=0.7, top_p=0.9, max_tokens=64)):
        print(out.index, out.token_ids[-1:])        # each request's output each time it grows

Prompts are text (put through the tokenizer's chat template unless chat_template="none") or token id lists.
A request samples from its own random stream (seed, its index in the call), so what it gets does not
depend on what runs beside it. The KV pool holds `num_blocks` blocks, or what `kv_cache_memory_gb`
holds; by default it is sized for each call: its `batch_size` largest requests at once, so none is
preempted. Also here: what the CLI shares with the API (encoding prompts, checking a model, building the
runner).
"""
import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np
import paddle

from paddlellm.device import check_device, compute_dtype, paddle_place
from paddlellm.errors import UserError
from paddlellm.export.manifest import MANIFEST_NAME, read_manifest
from paddlellm.predictor.args import PredictorArgs, check_args
from paddlellm.predictor.block_manager import num_blocks_for_memory
from paddlellm.predictor.engine import Engine
from paddlellm.predictor.runners import DynamicBlockRunner, StaticBlockRunner
from paddlellm.predictor.sampling import SamplingParams
from paddlellm.predictor.scheduler import ScheduledRequest, SchedulerOutput
from paddlellm.tokenizer import load_tokenizer


@dataclass
class RequestOutput:
    index: int  # the request's place in the call
    prompt_token_ids: List[int]
    token_ids: List[int]  # generated so far, without the stop token
    text: str
    finished: bool
    finish_reason: Optional[str]  # "stop" or "length" once finished


class LLM:
    def __init__(self, model_name_or_path, mode="static", **flags):
        """`flags`: any predictor flag by its name (batch_size=8, cpu_threads=2, num_blocks=..., ...)."""
        args = PredictorArgs(model_name_or_path=str(model_name_or_path), mode=mode, **flags)
        check_args(args)
        model_dir = Path(args.model_name_or_path)
        if not model_dir.is_dir():
            raise UserError(f"model directory {model_dir} does not exist (check --model_name_or_path)")
        model = describe_model(args, model_dir)
        self._setup(args, load_tokenizer(model_dir), model, build_runner(args, model_dir, model))

    @classmethod
    def from_parts(cls, args: PredictorArgs, tokenizer, model, runner):
        """An LLM over a block runner the caller built (the CLI checks its prompts before loading)."""
        llm = cls.__new__(cls)
        llm._setup(args, tokenizer, model, runner)
        return llm

    def _setup(self, args, tokenizer, model, runner):
        self.args, self.tokenizer, self.model, self.runner = args, tokenizer, model, runner
        if args.num_blocks or args.kv_cache_memory_gb:
            runner.allocate(fixed_pool_blocks(args, runner))
        warm_up(runner)
        self.engine = Engine(runner, tokenizer.eos_token_ids, max_num_seqs=args.batch_size,
                             max_num_batched_tokens=args.max_num_batched_tokens,
                             max_model_len=model.max_position_embeddings,
                             enable_prefix_caching=args.enable_prefix_caching)
        # What loading made (Paddle's and the tokenizer's objects: hundreds of thousands) stays: out of the
        # collector's way, so that its collections during generation visit only what the steps make (measured:
        # the collector took ~4% of a SmolLM2 int4 decode step otherwise)
        gc.freeze()

    def stream(self, prompts, sampling_params=None) -> Iterator[RequestOutput]:
        """Each request's RequestOutput every time it gets a token, and once more when it finishes."""
        if not prompts:
            return
        ids = [list(p) if not isinstance(p, str) else None for p in prompts]
        texts = [p for p in prompts if isinstance(p, str)]
        encoded = iter(encode_prompts(self.tokenizer, texts, self.args) if texts else [])
        ids = [i if i is not None else next(encoded) for i in ids]
        params = sampling_params if sampling_params is not None else self.args.sampling()
        params = list(params) if isinstance(params, (list, tuple)) else [params] * len(ids)
        check_prompts_fit(ids, self.tokenizer, self.model, max(p.max_tokens for p in params))
        if not (self.args.num_blocks or self.args.kv_cache_memory_gb):
            needed = pool_blocks_for(ids, params, self.args.batch_size, self.runner.block_size)
            if needed > self.runner.num_blocks:
                self.runner.allocate(needed)
        for generation in self.engine.stream(ids, params):
            yield RequestOutput(generation.index, generation.prompt_token_ids, list(generation.token_ids),
                                self.tokenizer.decode(generation.token_ids), generation.finished,
                                generation.finish_reason)

    def generate(self, prompts, sampling_params=None) -> List[RequestOutput]:
        """Every request's finished RequestOutput, in input order."""
        done = {out.index: out for out in self.stream(prompts, sampling_params) if out.finished}
        return [done[index] for index in range(len(prompts))]


def pool_blocks_for(prompts, params, batch_size, block_size):
    """Blocks for the `batch_size` largest requests at once (the last sampled token needs no slot)."""
    sizes = sorted((-(-(len(p) + q.max_tokens - 1) // block_size) for p, q in zip(prompts, params)), reverse=True)
    return sum(sizes[:batch_size])


def fixed_pool_blocks(args: PredictorArgs, runner):
    if args.num_blocks and args.kv_cache_memory_gb:
        raise UserError("--num_blocks and --kv_cache_memory_gb both size the KV pool (give one)")
    if args.num_blocks:
        return args.num_blocks
    _, kv_heads, block_size, head_dim = runner.shape
    return num_blocks_for_memory(int(args.kv_cache_memory_gb * 2**30), num_layers=runner.num_layers,
                                 num_kv_heads=kv_heads, head_dim=head_dim, block_size=block_size,
                                 dtype_bytes=np.dtype(runner.dtype).itemsize,
                                 max_model_len=args.src_length + args.max_length)


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
        if args.block_size is not None and args.block_size != manifest.block_size:
            raise UserError(f"--block_size {args.block_size} contradicts block_size {manifest.block_size} in {source} "
                            f"(drop --block_size, or export again with --block_size {args.block_size})")
        for flag in ("quant_type", "cachekv_int8_type"):
            given, exported = getattr(args, flag), getattr(manifest, flag)
            if given is not None and given != exported:
                raise UserError(f"--{flag} {given} contradicts the export's {flag} {exported} in {source} (drop "
                                f"--{flag}, or export again with --{flag} {given})")
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


def check_prompts_fit(prompts, tokenizer, model, max_tokens):
    """Every prompt id exists in the model's vocabulary, and prompt + max_tokens (--max_length) fit its
    positions."""
    largest = max(max(p) for p in prompts)
    if largest >= model.vocab_size:
        number = next(n for n, p in enumerate(prompts, 1) if largest in p)
        raise UserError(f"prompt {number} has token id {largest}, but the model's vocab_size is {model.vocab_size} "
                        f"(the tokenizer has {tokenizer.vocab_size} tokens: it does not belong to this model; "
                        "put the model's own tokenizer files in its directory)")
    longest = max(len(p) for p in prompts)
    room = model.max_position_embeddings - longest
    if max_tokens > room:
        fix = f"lower --max_length to {room}" if room >= 1 else "shorten the prompt"
        raise UserError(f"prompt ({longest} tokens) + --max_length {max_tokens} exceeds the model's "
                        f"{model.max_position_embeddings} positions ({fix})")


def build_runner(args: PredictorArgs, model_dir: Path, model):
    """The runner for --mode, its pool allocated later: the exported program (`model` is its manifest) or the
    checkpoint loaded."""
    if args.mode == "static":
        device = args.device or model.device
        paddle.set_device(paddle_place(device))
        return StaticBlockRunner(model_dir, model, device, args.threads(), passes=chosen_passes(args, model, device),
                                 ir_debug=args.ir_debug)
    from paddlellm.models.llama.loader import load_model

    dtype, device = args.dtype or "float32", args.device or "cpu"
    paddle.set_device(paddle_place(device))
    return DynamicBlockRunner(load_model(model_dir, dtype=dtype, device=device), args.threads(),
                              block_size=args.block_size or 64)


def chosen_passes(args: PredictorArgs, manifest, device):
    """--passes / --disable_passes applied to the device's pipeline; None: the device's pipeline as it is."""
    from paddlellm.ops.passes import pipeline

    if args.passes is None and args.disable_passes is None:
        return None
    return pipeline(device, args.passes, args.disable_passes)


def warm_up(runner):
    """One step on one token: the first run of a program prepares it (seconds on a real model)."""
    if runner.num_blocks == 0:
        runner.allocate(1)
    # block 0, slot 0 gets a K/V row that any request using it overwrites before reading it
    runner.step(SchedulerOutput([ScheduledRequest("warm-up", 1, 0, [0], [0], True)]))


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
