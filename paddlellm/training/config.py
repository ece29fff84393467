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
from paddlellm.files import read_json

# PaddleNLP recipe name -> paddleformers 1.x TrainingArguments name
RENAMED = {
    "tensor_parallel_degree": "tensor_model_parallel_size",
    "pipeline_parallel_degree": "pipeline_model_parallel_size",
    "sharding_parallel_degree": "sharding_parallel_size",
    "min_learning_rate": "min_lr",
}
# The keys this project adds to paddleformers' TrainingArguments: {key: (type, default, help)}.
MODEL_DATA_KEYS = {
    "model_name_or_path": (str, None, "local Llama checkpoint directory (HF safetensors/bin or Paddle pdparams)"),
    "tokenizer_name_or_path": (str, None, "tokenizer directory (default: model_name_or_path)"),
    "dataset_name_or_path": (str, None, "SFT/LoRA: directory with train.json and dev.json (JSON Lines of src/tgt)"),
    "input_dir": (str, None, "pretraining: PREFIX of the indexed PREFIX.bin/.idx, or a directory holding one pair"),
    "src_length": (int, 1024, "SFT/LoRA: the most prompt tokens kept (the end of the prompt)"),
    "max_length": (int, 2048, "SFT/LoRA: the most tokens of prompt plus reply"),
    "max_seq_length": (int, 1024, "pretraining: tokens per training window"),
    "split": (str, "949,50,1", "pretraining: train,dev,test proportions of the documents"),
    "continue_training": (bool, True, "pretraining: start from the model's weights (false: from its config only)"),
    "lora": (bool, False, "train a LoRA adapter instead of all weights"),
    "lora_path": (str, None, "LoRA: an adapter directory to continue training"),
    "lora_rank": (int, 8, "LoRA rank"),
    "lora_alpha": (float, -1.0, "LoRA alpha (-1: 2 * lora_rank, as PaddleNLP)"),
    "lora_target_modules": (list, None, "LoRA: regexes of the layers to adapt (default: all attention and MLP projections)"),
    "use_flash_attention": (bool, False, "flash attention (accelerators only)"),
    "use_fused_rms_norm": (bool, False, "fused RMSNorm kernel (accelerators only)"),
    "use_fused_rope": (bool, False, "fused rotary embedding kernel (accelerators only)"),
    "fuse_attention_qkv": (bool, False, "one fused QKV projection (accelerators only)"),
    "fuse_attention_ffn": (bool, False, "one fused gate/up projection (accelerators only)"),
    "tensor_parallel_output": (bool, False, "keep the logits split over tensor-parallel ranks for the loss"),
    "pad_to_multiple_of": (int, None, "SFT/LoRA: pad each batch's length to a multiple of this"),
    "recompute": (bool, False, "recompute activations (paddleformers: recompute_granularity full)"),
    "log_level": (str, "info", "paddleformers' log level: debug also shows its full settings dump"),
    # PaddleNLP keys this trainer does not implement: accepted only at the value that changes nothing
    "intokens": (bool, False, "not supported: packing several examples into one sequence"),
    "zero_padding": (bool, False, "not supported: packing several examples into one sequence"),
    "eval_with_do_generation": (bool, False, "not supported: generating text during evaluation"),
    "benchmark": (bool, False, "not supported: PaddleNLP's benchmark mode"),
    "autotuner_benchmark": (bool, False, "not supported: PaddleNLP's auto-tuner benchmark mode"),
    "data_cache": (str, None, "not supported: a cache directory of tokenized data"),
    "virtual_pp_degree": (int, 1, "not supported: interleaved pipeline stages"),
    # PaddleNLP kernel choices that do not change the result: read for compatibility only
    "enable_linear_fused_grad_add": (bool, False, "compatibility only: a fused gradient kernel of PaddleNLP"),
    "recompute_use_reentrant": (bool, False, "compatibility only: how PaddleNLP's recompute is implemented"),
}
UNSUPPORTED = ("intokens", "zero_padding", "eval_with_do_generation", "benchmark", "autotuner_benchmark",
               "data_cache", "virtual_pp_degree")
COMPAT_ONLY = ("enable_linear_fused_grad_add", "recompute_use_reentrant")


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
            sources.append((arg, read_json(arg, hint="check the config file's path and JSON")))
        else:
            raise UserError(f"unexpected argument '{arg}' (give CONFIG.json files and --key value flags)")
        i += 1
    return sources


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


def usage(prog, required):
    """--help: how to call the entry point, the keys this project adds, where the others are documented."""
    import paddleformers.trainer.training_args as training_args

    lines = [f"usage: python {prog} CONFIG.json [CONFIG.json ...] [--key value ...]",
             "Settings come from JSON files and --key value flags, applied in order: later settings win.",
             f"Required: {', '.join(required)}. Give --debug for a traceback on errors.", "",
             "Keys this project adds (type, default):"]
    for key, (kind, default, text) in MODEL_DATA_KEYS.items():
        lines.append(f"  --{key} ({kind.__name__}, {json.dumps(default)}): {text}")
    lines += ["", "PaddleNLP's names of paddleformers' keys: "
              + ", ".join(f"{old} -> {new}" for old, new in RENAMED.items()), "",
              "Every field of paddleformers' TrainingArguments is a key too (output_dir, max_steps, learning_rate,",
              "per_device_train_batch_size, save_steps, bf16, ...). Each is documented, with its default, in",
              f"  {training_args.__file__}",
              "  or: python -c 'from paddleformers.trainer import TrainingArguments; help(TrainingArguments)'"]
    return "\n".join(lines)


def resolve(argv, required=("model_name_or_path", "output_dir"), prog="run_finetune.py"):
    """Merge all sources into (model/data settings dict, TrainingArguments kwargs dict). settings["notes"]
    holds what the log should say about them: the keys a later JSON file changed, the compatibility-only keys."""
    if "--help" in argv or "-h" in argv:
        print(usage(prog, required))
        raise SystemExit(0)
    train_types = training_argument_types()
    known = set(MODEL_DATA_KEYS) | set(train_types) | set(RENAMED)
    settings = {k: d for k, (_, d, _) in MODEL_DATA_KEYS.items()}
    training, given, notes = {}, {}, []
    for source, values in parse_sources(argv):
        changed = []
        for key, value in values.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else "remove it"
                raise UserError(f"{source}: unknown key '{key}' ({hint})")
            if key in MODEL_DATA_KEYS:
                target, name, kind = settings, key, MODEL_DATA_KEYS[key][0]
            else:
                target, name = training, RENAMED.get(key, key)
                kind = train_types[name]
            value = convert(value, kind, key, source)
            if name in given and target[name] != value:
                changed.append(f"{key} {json.dumps(target[name])} -> {json.dumps(value)}")
            target[name], given[name] = value, source
        if changed and source.endswith(".json"):  # a flag is explicit; a file's changes are worth a line
            notes.append(f"{source} changes the settings before it: {', '.join(changed)}")
    for key in UNSUPPORTED:
        if settings[key] not in (None, MODEL_DATA_KEYS[key][1]):
            what = MODEL_DATA_KEYS[key][2].removeprefix("not supported: ")
            raise UserError(f"{given[key]}: '{key}' is not supported by paddlellm's trainer ({what} is not "
                            f"implemented; leave it out or set it {json.dumps(MODEL_DATA_KEYS[key][1])})")
    compat = [key for key in COMPAT_ONLY if key in given]
    if compat:
        notes.append(f"read for compatibility with PaddleNLP only, no effect here: {', '.join(compat)}")
    if settings["log_level"].upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise UserError(f"{given['log_level']}: 'log_level' must be debug, info, warning or error")
    if settings["recompute"]:
        training.setdefault("recompute_granularity", "full")
        training.setdefault("recompute_method", "uniform")
        training.setdefault("recompute_num_layers", 1)
    for key in required:
        if settings.get(key) is None and training.get(key) is None:
            raise UserError(f"missing key '{key}' (give it in the config file or as --{key})")
    settings["notes"] = notes
    return settings, training
