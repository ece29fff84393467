"""LoRA adapters saved by paddleformers (or PaddleNLP) merged into a Llama checkpoint, in numpy on the CPU.

What paddleformers 1.2 writes with ``LoRAModel.save_pretrained(dir)`` (Trainer.save_model calls it for a
LoRAModel only with last_fc_to_hf=True or a non-flex save_checkpoint_format; by default it writes a
flex checkpoint ``model_state/*.distcp`` of every weight and no lora_config.json, which is refused here):

- ``lora_config.json``: the LoRAConfig fields (r, lora_alpha, rslora, loraga, target_modules, dtype, ...) and
  ``scaling`` = lora_alpha / r (lora_alpha / sqrt(r) with rslora), next to the base model's ``config.json``;
- the weights: ``peft_model-0000k-of-0000n.safetensors`` + ``peft_model.safetensors.index.json`` (default
  flex_checkpoint format, unified checkpoints), ``peft_model.safetensors``, or ``lora_model_state.pdparams``
  (save_checkpoint_format="sharding_io", PaddleNLP). Unmerged tensor-parallel saves are refused;
- tensors ``<linear>.lora_A`` [in, r] and ``<linear>.lora_B`` [r, out] in the training dtype, Paddle layout,
  named as in the model (``model.layers.0.self_attn.q_proj.lora_A``; PaddleNLP ``llama.layers...``, maybe a
  fused ``qkv_proj``), no safetensors metadata, no biases.

A LoRA linear computes x @ W + (x @ A @ B) * scaling with W [in, out], so the merged weight in HF layout is
W_hf + (A @ B * scaling).T. LoRA-GA adapters hold [A, A0] and [B; -B0], whose product is already the delta
from the original base weights. The merged checkpoint keeps the base's dtype and sharding.
"""
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tqdm import tqdm

from paddlellm.errors import UserError
from paddlellm.files import atomic_directory, read_json
from paddlellm.models.llama.checkpoint import (expected_shapes, indexed_files, read_config, read_paddle,
                                               read_safetensors, read_state_dict, read_weight_file, to_hf_layout,
                                               weight_files)
from paddlellm.tokenizer import copy_tokenizer_files

LORA_CONFIG = "lora_config.json"
WEIGHTS_INDEX = "peft_model.safetensors.index.json"
SINGLE_WEIGHTS = ("peft_model.safetensors", "lora_model_state.pdparams")
UNSUPPORTED = {"enable_lora_list": "MergedLoRALinear (enable_lora_list)", "do_qat": "quantization-aware (do_qat)",
               "use_mora": "MoRA (use_mora)", "lora_use_mixer": "MosLoRA (lora_use_mixer)"}


def read_lora_config(lora_path):
    """lora_config.json of an adapter directory, checked; "scaling" set as the LoRA layers compute it."""
    lora_dir = Path(lora_path)
    if not lora_dir.is_dir():
        raise UserError(f"LoRA directory {lora_dir} does not exist (pass the directory the LoRA training saved)")
    path = lora_dir / LORA_CONFIG
    if not path.is_file():
        hint = ("it holds a Trainer flex checkpoint (model_state/); save the adapter with LoRAModel.save_pretrained"
                if (lora_dir / "model_state").is_dir() else "is it a paddleformers LoRA adapter directory?")
        raise UserError(f"{path} not found ({hint})")
    config = read_json(path)
    r, alpha = config.get("r"), config.get("lora_alpha")
    if type(r) is not int or r <= 0 or type(alpha) not in (int, float):
        raise UserError(f"{path} needs a positive integer r and a number lora_alpha, not r={r!r}, "
                        f"lora_alpha={alpha!r} (fix the file or save the adapter again)")
    for key, kind in UNSUPPORTED.items():
        if config.get(key):
            raise UserError(f"{path}: {kind} LoRA adapters cannot be merged by paddlellm (train a plain LoRA adapter)")
    config["scaling"] = alpha / (math.sqrt(r) if config.get("rslora") else r)
    return config


def _adapter_files(lora_dir):
    index = lora_dir / WEIGHTS_INDEX
    if index.is_file():
        return indexed_files(index, "save the adapter again", "copy the whole adapter directory")
    for name in SINGLE_WEIGHTS:
        if (lora_dir / name).is_file():
            return [lora_dir / name]
    if any(lora_dir.glob("lora_model_state*tp*.pdparams")):
        raise UserError(f"{lora_dir} holds per-rank tensor-parallel LoRA weights (save the adapter with "
                        "merge_tensor_parallel=True or in the default safetensors format)")
    raise UserError(f"no LoRA weights in {lora_dir} (expected {WEIGHTS_INDEX} and its shards, or "
                    f"{' or '.join(SINGLE_WEIGHTS)})")


def _read_pairs(lora_dir, rank):
    """{stored weight name: (lora_A [in, rank], lora_B [rank, out])} of an adapter directory."""
    halves = {}
    for path in _adapter_files(lora_dir):
        stored = read_safetensors(path)[0] if path.suffix == ".safetensors" else read_paddle(path)
        for name, array in stored.items():
            stem, _, kind = name.rpartition(".")
            if kind not in ("lora_A", "lora_B") or array.ndim != 2:
                raise UserError(f"{path} holds {name}, which is not a LoRA matrix (only lora_A/lora_B can be "
                                "merged; train without trainable_modules and trainable_bias)")
            halves.setdefault(stem, {})[kind] = array
    if not halves:
        raise UserError(f"{lora_dir}: the adapter holds no tensors (save it again)")
    pairs = {}
    for stem, half in halves.items():
        if len(half) != 2:
            raise UserError(f"{lora_dir}: {stem} has only {', '.join(half)} (the adapter is incomplete; save it again)")
        a, b = half["lora_A"], half["lora_B"]
        if a.shape[1] != rank or b.shape[0] != rank:
            raise UserError(f"{lora_dir}: {stem}.lora_A {a.shape} and lora_B {b.shape} are not of rank {rank} as "
                            f"{LORA_CONFIG} says (the weights and {LORA_CONFIG} do not belong together)")
        pairs[stem + ".weight"] = (a, b)
    return pairs


class LoraDeltas(Mapping):
    """{HF weight name: float32 delta [out, in]}, each computed when looked up: all deltas of a large model
    at once would take as much memory as the model."""

    def __init__(self, lora_dir, pairs, scaling, model_config):
        self.pairs, self.scaling, self.model_config = pairs, scaling, model_config
        self.sources = {}  # HF name -> stored weight name
        expected = expected_shapes(model_config)
        for stored, (a, b) in pairs.items():
            if not stored.endswith("_proj.weight"):
                raise UserError(f"{lora_dir}: the adapter targets {stored[:-len('.weight')]}, which is not a Llama "
                                "projection (merge only adapters on q/k/v/o/gate/up/down_proj)")
            try:  # a [1, out] stand-in gives the names and output rows without computing the delta
                pieces = to_hf_layout(stored, np.zeros((1, b.shape[1]), np.float32), True, model_config)
            except ValueError:  # a fused qkv that does not split into the base's heads
                raise UserError(f"LoRA adapter {lora_dir} does not fit the base model: {stored} has {b.shape[1]} "
                                "outputs (use the base model the adapter was trained on)") from None
            for name, piece in pieces:
                shape = (piece.shape[0], a.shape[0])
                if expected.get(name) != shape:
                    found = f"has {expected[name]}" if name in expected else "has no such weight"
                    raise UserError(f"LoRA adapter {lora_dir} does not fit the base model: its delta for {name} is "
                                    f"{shape} but the base {found} (use the base model the adapter was trained on)")
                self.sources[name] = stored
        self._cached = (None, {})

    def __getitem__(self, name):
        stored = self.sources[name]
        if self._cached[0] != stored:
            a, b = self.pairs[stored]
            delta = (a.astype(np.float32) @ b.astype(np.float32)) * np.float32(self.scaling)
            self._cached = (stored, dict(to_hf_layout(stored, delta, True, self.model_config)))
        return self._cached[1][name]

    def __iter__(self):
        return iter(self.sources)

    def __len__(self):
        return len(self.sources)


def read_lora_adapter(lora_path, base_config=None):
    """(lora config, LoraDeltas) of an adapter directory, checked against `base_config` (a config.json
    dict; default: the adapter's own config.json)."""
    config = read_lora_config(lora_path)
    lora_dir = Path(lora_path)
    base_config = base_config if base_config is not None else read_config(lora_dir)
    pairs = _read_pairs(lora_dir, config["r"] * (2 if config.get("loraga") else 1))
    return config, LoraDeltas(lora_dir, pairs, config["scaling"], base_config)


def _merged(base, delta):
    return (base.astype(np.float32) + delta).astype(base.dtype)


def merged_state_dict(model_dir, lora_path):
    """read_state_dict(model_dir) with the adapter at `lora_path` merged in, all in memory."""
    _, deltas = read_lora_adapter(lora_path, read_config(model_dir))
    state = read_state_dict(model_dir)
    for name, delta in deltas.items():
        state[name] = _merged(state[name], delta)
    return state


def _merge_shard(path, kind, config, deltas, target):
    """Read one base weight file, add the deltas of its tensors, write it to `target`; {name: shape}."""
    tensors = read_weight_file(path, kind, config)
    for name in tensors.keys() & deltas.keys():
        tensors[name] = _merged(tensors[name], deltas[name])
    save_file({name: np.ascontiguousarray(a) for name, a in tensors.items()}, str(target), metadata={"format": "pt"})
    return {name: tuple(a.shape) for name, a in tensors.items()}


def _check_complete(base_dir, config, shapes):
    for name, shape in expected_shapes(config).items():
        if name not in shapes:
            raise UserError(f"{base_dir}: the weights lack {name} (the base checkpoint is incomplete; "
                            "download it again)")
        if shapes[name] != shape:
            raise UserError(f"{base_dir}: {name} has shape {shapes[name]} but config.json implies {shape} "
                            "(the weights and config.json do not belong together)")


def _write_metadata(base_dir, staging, weight_map):
    if len(set(weight_map.values())) > 1:
        total = sum((staging / name).stat().st_size for name in set(weight_map.values()))
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (staging / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config = read_json(base_dir / "config.json")
    for key in ("fuse_attention_qkv", "fuse_attention_ffn"):  # the merged weights are stored unfused
        if config.get(key):
            config[key] = False
    (staging / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    copy_tokenizer_files(base_dir, staging)


def _check_output(out, base_dir, lora_dir):
    if out in (base_dir, lora_dir):
        raise UserError(f"output directory {out} is an input directory (choose a new directory)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"output path {out} exists and is not an empty directory (choose a new or empty directory)")


def merge_lora_checkpoint(base_dir, lora_path, output_dir):
    """Write base + adapter to `output_dir` as an HF checkpoint (same sharding as the base), one base weight
    file in memory at a time; the directory appears whole or not at all. Returns its Path."""
    base_dir, lora_dir, out = (Path(p).resolve() for p in (base_dir, lora_path, output_dir))
    config = read_config(base_dir)
    _, deltas = read_lora_adapter(lora_dir, config)
    files, kind = weight_files(base_dir)
    _check_output(out, base_dir, lora_dir)
    with atomic_directory(out, before_swap=lambda: _check_output(out, base_dir, lora_dir)) as staging:
        weight_map, shapes = {}, {}
        for i, path in enumerate(tqdm(files, desc=f"merging into {out.name}", unit="file", disable=None)):
            name = "model.safetensors" if len(files) == 1 else f"model-{i + 1:05d}-of-{len(files):05d}.safetensors"
            for tensor, shape in _merge_shard(path, kind, config, deltas, staging / name).items():
                weight_map[tensor], shapes[tensor] = name, shape
        _check_complete(base_dir, config, shapes)
        _write_metadata(base_dir, staging, weight_map)
    return out
