"""`llm/run_pretrain.py`: causal-LM pretraining on Megatron-style indexed data (PREFIX.bin + PREFIX.idx),
on paddleformers' Trainer, configured as PaddleNLP's pretraining recipes are."""
import sys
from pathlib import Path

import numpy as np
import paddle

from paddlellm.errors import UserError
from paddlellm.training import trainer as common
from paddlellm.training.config import resolve
from paddlellm.training.pretrain_data import PretrainDataset


def index_prefix(input_dir):
    """input_dir is a PREFIX of PREFIX.bin/.idx, or a directory holding exactly one such pair."""
    path = Path(input_dir)
    if path.is_dir():
        indexes = sorted(path.glob("*.idx"))
        if len(indexes) != 1:
            raise UserError(f"input_dir {path} holds {len(indexes)} .idx files (give the PREFIX of one "
                            "dataset, e.g. DIR/name for DIR/name.bin + DIR/name.idx)")
        return str(indexes[0].with_suffix(""))
    if not Path(f"{path}.idx").is_file() or not Path(f"{path}.bin").is_file():
        raise UserError(f"input_dir {path}: no {path.name}.bin and {path.name}.idx there "
                        "(build them with llm/tools/preprocess_data.py)")
    return str(path)


def collate_windows(batch):
    return {key: paddle.to_tensor(np.stack([item[key] for item in batch])) for key in ("input_ids", "labels")}


def main(argv):
    settings, training = resolve(argv, required=("model_name_or_path", "input_dir", "output_dir"),
                                 prog="llm/run_pretrain.py")
    common.check_device_settings(settings, training)
    prefix = index_prefix(settings["input_dir"])
    seed = training.get("seed", 42)
    train_set = PretrainDataset(prefix, settings["max_seq_length"], seed=seed, split=settings["split"], name="train")
    dev_set = (PretrainDataset(prefix, settings["max_seq_length"], seed=seed, split=settings["split"], name="dev")
               if common.wants_eval(training) else None)
    return common.train_and_save(settings, training, train_set, dev_set, collate_windows,
                                 from_scratch=not settings["continue_training"],
                                 sequence_length=settings["max_seq_length"])


if __name__ == "__main__":
    from paddlellm.cli import run_main

    sys.exit(run_main(main))
