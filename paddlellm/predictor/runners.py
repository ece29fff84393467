"""Step runners: the same step (see generate.py) run eagerly on the dygraph model, or by paddle.inference
on the exported program. Caches are paddle tensors handed from one step to the next without copies."""
import os
from pathlib import Path

import numpy as np
import paddle

from paddlellm.device import paddle_place
from paddlellm.export.manifest import Manifest


def set_cpu_threads(threads):
    paddle.base.core.set_num_threads(threads)


class DynamicRunner:
    def __init__(self, model, threads):
        self.model = model
        self.num_caches = 2 * model.config.num_hidden_layers
        set_cpu_threads(threads)

    def new_caches(self, batch, length):
        shape = self.model.cache_shape(batch, length)
        return [paddle.zeros(shape, dtype=self.model.compute_dtype) for _ in range(self.num_caches)]

    def step(self, input_ids, pad_lens, cache_offset, caches):
        with paddle.no_grad():
            logits, caches = self.model(paddle.to_tensor(input_ids), paddle.to_tensor(pad_lens),
                                        paddle.to_tensor([cache_offset], dtype="int64"), caches)
        return logits.numpy(), caches


class StaticRunner:
    def __init__(self, model_dir, manifest: Manifest, device, threads):
        self.manifest = manifest
        # The predictor's garbage collector thread takes half a core from the math on small machines.
        paddle.set_flags({"FLAGS_eager_delete_tensor_gb": -1.0})
        config = paddle.inference.Config(str(Path(model_dir) / manifest.program), str(Path(model_dir) / manifest.params))
        place = paddle_place(device)
        if place == "cpu":
            config.disable_gpu()
            config.disable_mkldnn()  # oneDNN's inplace pass breaks rotary on PIR programs, and it is slower
            config.set_cpu_math_library_num_threads(threads)
        elif place == "gpu":
            config.enable_use_gpu(256, 0)
        else:
            config.enable_custom_device(place, 0)
        config.enable_new_ir(True)
        config.enable_new_executor(True)
        if not os.environ.get("PADDLELLM_IR_LOG"):
            config.disable_glog_info()
        self.predictor = paddle.inference.create_predictor(config)
        self.input_names = self.predictor.get_input_names()
        expected = set(manifest.inputs)
        if set(self.input_names) != expected:
            raise RuntimeError(f"program inputs {self.input_names} differ from the manifest's {manifest.inputs}")

    def new_caches(self, batch, length):
        m = self.manifest
        shape = [batch, m.num_kv_heads, length, m.head_dim]
        return [paddle.zeros(shape, dtype=m.compute_dtype) for _ in range(2 * m.num_layers)]

    def step(self, input_ids, pad_lens, cache_offset, caches):
        feeds = {"input_ids": paddle.to_tensor(input_ids), "pad_lens": paddle.to_tensor(pad_lens),
                 "cache_offset": paddle.to_tensor(np.array([cache_offset], dtype=np.int64))}
        feeds.update(zip(self.manifest.inputs[3:], caches))
        outputs = self.predictor.run([feeds[name] for name in self.input_names])
        return outputs[0].numpy(), outputs[1:]
