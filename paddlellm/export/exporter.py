"""to_static + jit.save of the inference model's step, with tokenizer, config and manifest, atomically."""
import shutil
import tempfile
import time
from pathlib import Path

import paddle
from paddle.static import InputSpec

import paddlellm
from paddlellm import ops
from paddlellm.device import (check_cache_dtype, check_device, check_device_name, check_dtype, compute_dtype,
                              kv_cache_dtype)
from paddlellm.errors import UserError
from paddlellm.export.manifest import MANIFEST_NAME, Manifest, check_block_attn
from paddlellm.files import atomic_directory
from paddlellm.models.llama.loader import load_model, resolve_quantization
from paddlellm.quantization import check_cachekv_int8_type, check_quant_type, group_size_for
from paddlellm.quiet import without_stderr_lines
from paddlellm.tokenizer import copy_tokenizer_files


def step_input_specs(config, cache_dtype, block_size):
    """Inputs of the exported step (see LlamaForCausalLM.forward), in order: the packed token ids,
    per-sequence lengths and block tables (PaddleNLP's names), then the paged k/v cache of each layer (rows of
    ops.cache_row). The number of sequences, tokens and blocks is free: the pool's size is chosen at predict
    time."""
    row = ops.cache_row(config.head_dim, cache_dtype)
    caches = [InputSpec([None, config.num_key_value_heads, block_size, row], cache_dtype,
                        f"{kind}_cache_{i}") for i in range(config.num_hidden_layers) for kind in ("key", "value")]
    return [InputSpec([None], "int64", "input_ids"), InputSpec([None], "int32", "seq_lens_this_time"),
            InputSpec([None], "int32", "seq_lens_decoder"), InputSpec([None, None], "int32", "block_tables"), caches]


def export_model(model_dir, output_path, dtype="float32", device="cpu", lora_path=None, block_attn=None,
                 block_size=64, quant_type=None, quant_lm_head=False, group_size=None,
                 cachekv_int8_type=None, calibration_file=None, calibration_tokens=None):
    """Export `model_dir` (a checkpoint, with the LoRA adapter at `lora_path` merged in) into `output_path`:
    the step over a paged KV cache of `block_size`-token blocks, for `device`'s op library, its projections
    quantized as `quant_type` says (in groups of `group_size` rows: quantization.group_size_for; the lm_head too
    with `quant_lm_head`;
    see paddlellm.quantization), the KV cache int8 with `cachekv_int8_type` "dynamic" or "static" (its scales
    calibrated on the first `calibration_tokens` tokens of `calibration_file`: paddlellm.export.calibration).
    `block_attn` (PaddleNLP's flag) is accepted; block attention is the only step there is. The directory appears
    whole or not at all."""
    check_block_attn(block_attn)
    if not (isinstance(block_size, int) and block_size >= 1):
        raise UserError(f"--block_size must be a positive number of tokens, got {block_size}")
    check_dtype(dtype)
    check_quant_type(quant_type)
    group_size = group_size_for(quant_type, group_size)
    check_device_name(device)
    check_cachekv_int8_type(cachekv_int8_type, device)
    calibration = calibration_settings(cachekv_int8_type, calibration_file, calibration_tokens)
    check_cache_dtype(dtype, device)
    model_dir, output_path = Path(model_dir).resolve(), Path(output_path).resolve()
    if output_path == model_dir:
        raise UserError(f"--output_path {output_path} is the model directory itself (choose another directory)")
    check_replaceable(output_path)
    if compute_dtype(dtype, device) != "float32":
        check_narrow_math_traceable(dtype, device)
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=output_path.parent).close()
    except OSError as exc:
        raise UserError(f"--output_path {output_path} cannot be written: {exc.strerror} (choose a writable location)") from None

    quant_type, group_size = resolve_quantization(model_dir, quant_type, group_size, lora_path)
    if quant_lm_head and quant_type is None:
        raise UserError("--quant_lm_head quantizes the lm_head as --quant_type says (give --quant_type too)")

    paddle.set_device("cpu")
    started = time.perf_counter()
    _log(f"loading {model_dir} as {dtype}" + (f" with the LoRA adapter {lora_path}" if lora_path else "")
         + (f", quantized {quant_type}" + (f" in groups of {group_size}" if group_size else "")
            + (" (the lm_head too)" if quant_lm_head else "") if quant_type else "")
         + (f", the KV cache int8 ({cachekv_int8_type})" if cachekv_int8_type else ""))
    model = load_model(model_dir, dtype=dtype, device=device, lora_path=lora_path, portable=True,
                       quant_type=quant_type, quant_lm_head=quant_lm_head, group_size=group_size)
    config, math_dtype = model.config, compute_dtype(dtype, device)
    if calibration:
        calibration = calibrate(model, model_dir, block_size, *calibration)
    cache_dtype = kv_cache_dtype(dtype, math_dtype, cachekv_int8_type)
    if ops.library_device() != device:
        _log(f"the {device} is not present here: tracing with the CPU op library (same op signatures)")
    ops.load_library()  # (the CPU's is built on first use), before tracing needs it
    specs = step_input_specs(config, cache_dtype, block_size)
    with atomic_directory(output_path, before_swap=lambda: check_replaceable(output_path)) as staging:
        _log("tracing the step program (to_static)")
        with without_stderr_lines(PADDLE_EXPORT_NOISE):
            static_model = paddle.jit.to_static(model, input_spec=specs, full_graph=True)
            paddle.jit.save(static_model, str(staging / "model"))
        shutil.copy2(model_dir / "config.json", staging / "config.json")
        copy_tokenizer_files(model_dir, staging)
        plain, cache_names = [spec.name for spec in specs[:-1]], [spec.name for spec in specs[-1]]
        Manifest(
            model_type="llama", dtype=dtype, compute_dtype=math_dtype, device=device,
            num_layers=config.num_hidden_layers, num_kv_heads=config.num_key_value_heads,
            head_dim=config.head_dim, max_position_embeddings=config.max_position_embeddings,
            vocab_size=config.vocab_size, block_size=block_size, inputs=plain + cache_names,
            outputs=["logits"], quant_type=quant_type, quant_lm_head=quant_lm_head,
            group_size=group_size, cachekv_int8_type=cachekv_int8_type, cachekv_calibration=calibration,
            kv_cache_dtype=cache_dtype,
            versions={"paddle": paddle.__version__, "paddlellm": paddlellm.__version__},
        ).write(staging)
    _log(f"exported to {output_path} in {time.perf_counter() - started:.1f}s")
    return output_path


def calibration_settings(cachekv_int8_type, calibration_file, calibration_tokens):
    """(text file, tokens) to calibrate a static int8 KV cache on (defaults filled in), or None for other caches;
    a UserError for calibration flags that would do nothing, or a count below 2."""
    from paddlellm.export.calibration import DEFAULT_CALIBRATION_FILE, DEFAULT_CALIBRATION_TOKENS

    if cachekv_int8_type != "static":
        if calibration_file is not None or calibration_tokens is not None:
            raise UserError("--calibration_file / --calibration_tokens calibrate --cachekv_int8_type static's scales "
                            "(add it, or drop them)")
        return None
    tokens = DEFAULT_CALIBRATION_TOKENS if calibration_tokens is None else calibration_tokens
    if tokens < 2:
        raise UserError(f"--calibration_tokens must be at least 2, got {tokens}")
    return Path(calibration_file or DEFAULT_CALIBRATION_FILE), tokens


def calibrate(model, model_dir, block_size, calibration_file, tokens):
    """Sets each layer's static KV cache scales from the text; returns what the manifest records of it."""
    from paddlellm.export.calibration import calibrate_cache_scales, calibration_sequences, read_calibration_documents
    from paddlellm.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    sequences = calibration_sequences(tokenizer, read_calibration_documents(calibration_file), tokens)
    _log(f"calibrating the int8 KV cache's scales on {sum(map(len, sequences))} tokens of {calibration_file.name}"
         + (" (as text, then as chat prompts)" if tokenizer.has_chat_template else ""))
    scales = calibrate_cache_scales(model, sequences, block_size)
    for layer, key, value in zip(model.layers, scales.key, scales.value):
        layer.set_cache_scales(key, value)
    return {"data_file": calibration_file.name, "tokens": scales.tokens, "chat_template": tokenizer.has_chat_template}


def check_narrow_math_traceable(dtype, device):
    """A program whose math runs in float16/bfloat16 traces only where Paddle has the device's kernels (a CPU
    build rejects e.g. roll in bfloat16 while tracing)."""
    try:
        check_device(device)
    except UserError:
        raise UserError(f"--dtype {dtype} --device {device} exports a program whose math runs in {dtype}, which "
                        f"only a Paddle build with the {device} present can trace (export on the {device} machine, "
                        f"or export with --dtype float32)") from None


def check_replaceable(output_path):
    """`output_path` may be created or replaced: it is new, an empty directory or an earlier export."""
    existing = next(p for p in (output_path, *output_path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"--output_path {output_path}: {existing} is a file, not a directory (choose a directory path)")
    if existing == output_path and any(output_path.iterdir()) and not (output_path / MANIFEST_NAME).is_file():
        raise UserError(f"--output_path {output_path} exists and is not an exported model (choose a new or empty directory)")


# Paddle 3.3.1 logs this (C++ glog, eager_utils.cc) for every paddle.arange traced into a PIR program: its
# Python wrapper always passes `out=None` to _C_ops.arange. Nothing is wrong with the program.
PADDLE_EXPORT_NOISE = ("Paddle static graph(PIR) not support input out tensor for now!!!!!",)


def _log(message):
    print(f"[export] {message}", flush=True)
