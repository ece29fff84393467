"""Training configuration: PaddleNLP's `llm/` keys, from JSON files and `--flags`, checked strictly.

`run_finetune.py A.json --max_steps 5 B.json` applies A, then the flag, then B: later sources win.
Keys are our model/data keys (below) plus every field of paddleformers' TrainingArguments, plus
PaddleNLP's old names for the parallel degrees. An unknown key, a wrong type or a missing required
key is a UserError naming the source; nothing has been written when that happens.
"""
import argparse
import dataclasses
import difflib
import json
import typing
from pathlib import Path

from paddlellm.argparsing import str2bool
from paddlellm.errors import UserError

# PaddleNLP recipe name -> paddleformers 1.x TrainingArguments name
RENAMED = {
    "tensor_parallel_degree": "tensor_model_parallel_size",
    "pipeline_parallel_degree": "pipeline_model_parallel_size",
    "sharding_parallel_degree": "sharding_parallel_size",
    "min_learning_rate": "min_lr",
}
# Model and data keys: (type, default); None as default with required=True below means required.
MODEL_DATA_KEYS = {
    "model_name_or_path": (str, None),
    "tokenizer_name_or_path": (str, None),
    "dataset_name_or_path": (str, None),
    "input_dir": (str, None),  # pretraining: a PREFIX (or directory) of the indexed .bin/.idx files
    "src_length": (int, 1024),
    "max_length": (int, 2048),
    "max_seq_length": (int, 1024),  # pretraining window
    "split": (str, "949,50,1"),
    "continue_training": (bool, True),
    "lora": (bool, False),
    "lora_path": (str, None),
    "lora_rank": (int, 8),
    "lora_alpha": (float, -1.0),  # -1: 2 * lora_rank, as PaddleNLP
    "lora_target_modules": (list, None),
    "use_flash_attention": (bool, False),
    "use_fused_rms_norm": (bool, False),
    "use_fused_rope": (bool, False),
    "fuse_attention_qkv": (bool, False),
    "fuse_attention_ffn": (bool, False),
    "tensor_parallel_output": (bool, False),
    "zero_padding": (bool, False),
    "pad_to_multiple_of": (int, None),
    "eval_with_do_generation": (bool, False),
    "autotuner_benchmark": (bool, False),
    "data_cache": (str, None),
    "recompute": (bool, False),  # PaddleNLP's switch; paddleformers spells it recompute_granularity/method
}
# Keys a device script may pass that have no effect here; accepted so PaddleNLP recipes run unchanged.
IGNORED_KEYS = {"intokens", "benchmark", "virtual_pp_degree", "enable_linear_fused_grad_add", "recompute_use_reentrant"}


def training_argument_types():
    from paddleformers.trainer import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    return {f.name: hints.get(f.name, str) for f in dataclasses.fields(TrainingArguments) if f.init}


def parse_sources(argv):
    """[(source name, {key: raw value})] in command-line order: JSON files and --key value pairs."""
    sources, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            if not value:
                if i + 1 < len(argv) and not argv[i + 1].startswith("--") and not argv[i + 1].endswith(".json"):
                    value, i = argv[i + 1], i + 1
                else:
                    value = "true"  # a bare boolean flag
            sources.append((f"--{key}", {key: value}))
        elif arg.endswith(".json"):
            sources.append((arg, read_json_config(arg)))
        else:
            raise UserError(f"unexpected argument '{arg}' (give CONFIG.json files and --key value flags)")
        i += 1
    return sources


def read_json_config(path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of settings")
    return data


def convert(value, kind, key, source):
    """Check a JSON value or convert a flag's string to `kind`; a UserError names key and source."""
    if value is None:  # JSON null: unset
        return None
    origin = typing.get_origin(kind)
    if origin is typing.Union:
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        kind = options[0] if len(options) == 1 else str
        origin = typing.get_origin(kind)
    if origin in (list, typing.List) or kind is list:
        if isinstance(value, str):
            return [v for v in value.replace(",", " ").split() if v]
        if isinstance(value, list):
            return value
        raise UserError(f"{source}: '{key}' must be a list, got {value!r}")
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int):
                if value in (0, 1):
                    return bool(value)
                raise ValueError
            return str2bool(str(value))
        if kind is int:
            if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is str:
            if isinstance(value, (dict, list, bool)):
                raise ValueError
            return str(value)
    except (ValueError, TypeError, argparse.ArgumentTypeError):
        raise UserError(f"{source}: '{key}' must be {kind.__name__}, got {value!r}") from None
    return value


def resolve(argv, required=("model_name_or_path", "output_dir"), defaults=None):
    """Merge all sources into (model/data settings dict, TrainingArguments kwargs dict)."""
    train_types = training_argument_types()
    known = set(MODEL_DATA_KEYS) | set(train_types) | set(RENAMED) | IGNORED_KEYS
    settings = {k: d for k, (_, d) in MODEL_DATA_KEYS.items()}
    settings.update(defaults or {})
    training = {}
    for source, values in parse_sources(argv):
        for key, value in values.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else "remove it"
                raise UserError(f"{source}: unknown key '{key}' ({hint})")
            if key in IGNORED_KEYS:
                continue
            if key in MODEL_DATA_KEYS:
                settings[key] = convert(value, MODEL_DATA_KEYS[key][0], key, source)
            else:
                name = RENAMED.get(key, key)
                training[name] = convert(value, train_types[name], key, source)
    if settings["recompute"]:
        training.setdefault("recompute_granularity", "full")
        training.setdefault("recompute_method", "uniform")
        training.setdefault("recompute_num_layers", 1)
    for key in required:
        if settings.get(key) is None and training.get(key) is None:
            raise UserError(f"missing key '{key}' (give it in the config file or as --{key})")
    return settings, training
