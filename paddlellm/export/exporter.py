"""to_static + jit.save of the inference model's step, with tokenizer, config and manifest, atomically."""
import shutil
import tempfile
import time
from pathlib import Path

import paddle
from paddle.static import InputSpec

import paddlellm
from paddlellm.device import check_device_name, check_dtype, compute_dtype
from paddlellm.errors import UserError
from paddlellm.export.manifest import MANIFEST_NAME, Manifest
from paddlellm.models.llama.loader import load_model
from paddlellm.tokenizer import copy_tokenizer_files



def step_input_specs(config, cache_dtype):
    """Inputs of the exported step, in order: ids, pad lengths, cache offset, then k/v per layer."""
    cache = [config.num_key_value_heads, config.head_dim]
    caches = []
    for i in range(config.num_hidden_layers):
        for kind in "kv":
            caches.append(InputSpec([None, cache[0], None, cache[1]], cache_dtype, f"cache_{kind}_{i}"))
    return [InputSpec([None, None], "int64", "input_ids"), InputSpec([None], "int64", "pad_lens"),
            InputSpec([1], "int64", "cache_offset"), caches]


def export_model(model_dir, output_path, dtype="float32", device="cpu", lora_path=None):
    """Export `model_dir` (a checkpoint, with the LoRA adapter at `lora_path` merged in) into `output_path`;
    the directory appears whole or not at all."""
    check_dtype(dtype)
    check_device_name(device)
    model_dir, output_path = Path(model_dir).resolve(), Path(output_path).resolve()
    if output_path == model_dir:
        raise UserError(f"--output_path {output_path} is the model directory itself (choose another directory)")
    if output_path.exists() and any(output_path.iterdir()) and not (output_path / MANIFEST_NAME).is_file():
        raise UserError(f"--output_path {output_path} exists and is not an exported model (choose a new or empty directory)")
    output_path.parent.mkdir(parents=True, exist_ok=True)

    paddle.set_device("cpu")
    started = time.perf_counter()
    _log(f"loading {model_dir} as {dtype}" + (f" with the LoRA adapter {lora_path}" if lora_path else ""))
    model = load_model(model_dir, dtype=dtype, device=device, lora_path=lora_path)
    config, cache_dtype = model.config, compute_dtype(dtype, device)
    specs = step_input_specs(config, cache_dtype)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_path.name}.export-", dir=output_path.parent))
    try:
        _log("tracing the step program (to_static)")
        static_model = paddle.jit.to_static(model, input_spec=specs, full_graph=True)
        paddle.jit.save(static_model, str(staging / "model"))
        shutil.copy2(model_dir / "config.json", staging / "config.json")
        copy_tokenizer_files(model_dir, staging)
        cache_names = [s.name for s in specs[3]]
        Manifest(
            model_type="llama", dtype=dtype, compute_dtype=cache_dtype, device=device,
            num_layers=config.num_hidden_layers, num_kv_heads=config.num_key_value_heads,
            head_dim=config.head_dim, max_position_embeddings=config.max_position_embeddings,
            inputs=[s.name for s in specs[:3]] + cache_names, outputs=["logits"] + cache_names,
            versions={"paddle": paddle.__version__, "paddlellm": paddlellm.__version__},
        ).write(staging)
        _swap_into_place(staging, output_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _log(f"exported to {output_path} in {time.perf_counter() - started:.1f}s")
    return output_path


def _swap_into_place(staging, output_path):
    old = None
    if output_path.exists():
        old = output_path.with_name(f".{output_path.name}.old-{staging.name.rsplit('-', 1)[-1]}")
        output_path.rename(old)
    staging.rename(output_path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _log(message):
    print(f"[export] {message}", flush=True)
