"""`llm/run_finetune.py`: SFT and LoRA on paddleformers' Trainer, configured as PaddleNLP's recipes are.

Everything a user can get wrong (settings, data rows, device) is checked before output_dir is touched.
"""
import sys
from functools import partial
from pathlib import Path

from paddlellm.errors import UserError
from paddlellm.training import trainer as common
from paddlellm.training.config import resolve
from paddlellm.training.sft_data import SFTDataset, collate_sft, read_sft_file, tokenize_sft_example


def load_sft_split(tokenizer, path, settings):
    """Tokenized examples of one file; rows whose target does not fit at all are an error, not dropped."""
    examples = []
    for number, row in enumerate(read_sft_file(path), 1):
        example = tokenize_sft_example(tokenizer, row, settings["max_length"], settings["src_length"])
        if example is None:
            raise UserError(f"{path}: example {number} leaves no room for its target within max_length "
                            f"{settings['max_length']} (shorten it or raise max_length/src_length)")
        examples.append(example)
    return SFTDataset(examples)


def main(argv):
    from paddlellm.tokenizer import load_tokenizer

    settings, training = resolve(argv, required=("model_name_or_path", "dataset_name_or_path", "output_dir"),
                                 prog="llm/run_finetune.py")
    common.check_device_settings(settings, training)
    data_dir = Path(settings["dataset_name_or_path"])
    if not data_dir.is_dir():
        raise UserError(f"dataset_name_or_path {data_dir} is not a directory (it must hold train.json and dev.json)")
    tokenizer = load_tokenizer(settings.get("tokenizer_name_or_path") or settings["model_name_or_path"])
    train_set = load_sft_split(tokenizer, data_dir / "train.json", settings)
    dev_set = load_sft_split(tokenizer, data_dir / "dev.json", settings) if common.wants_eval(training) else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # sequence parallelism splits a fixed length over the ranks: every batch is padded to max_length
    pad_to = settings["max_length"] if training.get("sequence_parallel") else settings["pad_to_multiple_of"]
    collator = partial(collate_sft, pad_id=pad_id, pad_to_multiple_of=pad_to)
    return common.train_and_save(settings, training, train_set, dev_set, collator, sequence_length=settings["max_length"])


if __name__ == "__main__":
    from paddlellm.cli import run_main

    sys.exit(run_main(main))
