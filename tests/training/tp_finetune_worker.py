"""llm/run_finetune.py's main, with paddleformers' Trainer.train replaced by a deterministic stand-in update.

Tensor-parallel training itself cannot run on the CPU (see test_tensor_parallel.py), so the stand-in
changes the weights the way a training step would, identically for any split: every trainable parameter
gets a fixed full-size array (a function of its name only), of which each rank keeps its own slice. Then
the real entry point saves, exactly as after training.
    python tp_finetune_worker.py CONFIG.json --key value ...   (as run_finetune.py; under paddle.distributed.launch)
"""
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import paddle  # noqa: E402
from paddleformers.trainer import Trainer  # noqa: E402
from paddleformers.trainer.trainer_utils import TrainOutput  # noqa: E402

from paddlellm.cli import run_main  # noqa: E402
from paddlellm.training.finetune import main  # noqa: E402


def update(name, full_shape):
    return np.random.default_rng(zlib.crc32(name.encode())).standard_normal(full_shape).astype(np.float32) * 0.05


def stand_in_train(self, resume_from_checkpoint=None, **kwargs):
    degree, rank = max(self.args.tensor_model_parallel_size, 1), max(self.args.tensor_parallel_rank, 0)
    with paddle.no_grad():
        for name, param in self.model.named_parameters():
            if param.stop_gradient:
                continue
            shape = list(param.shape)
            split = param.split_axis if getattr(param, "is_distributed", False) else None
            if split is not None:
                shape[split] *= degree
            delta = update(name, shape)
            if split is not None:
                delta = np.take(delta, range(rank * param.shape[split], (rank + 1) * param.shape[split]), axis=split)
            base = np.zeros(param.shape, np.float32) if ".lora_" in name else param.numpy()  # LoRA init is random
            param.set_value(paddle.to_tensor(base + delta).astype(param.dtype))
    self.state.global_step = 1
    return TrainOutput(1, 0.0, {"train_loss": 0.0})


Trainer.train = stand_in_train

if __name__ == "__main__":
    sys.exit(run_main(main))
