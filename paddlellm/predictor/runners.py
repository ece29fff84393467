"""Step runners: the same step run eagerly on the dygraph model, or by paddle.inference on the exported
program. Dense runners (see generate.py) hand their caches from one step to the next without copies; block
runners (see engine.py) own a pool of KV blocks that each step writes in place."""
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


def create_predictor(model_dir, manifest: Manifest, device, threads):
    """paddle.inference's predictor for an exported program, set up for speed on the device."""
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
    predictor = paddle.inference.create_predictor(config)
    names = predictor.get_input_names()
    if set(names) != set(manifest.inputs):
        raise RuntimeError(f"program inputs {names} differ from the manifest's {manifest.inputs}")
    return predictor


class StaticRunner:
    def __init__(self, model_dir, manifest: Manifest, device, threads):
        self.manifest = manifest
        self.predictor = create_predictor(model_dir, manifest, device, threads)
        self.input_names = self.predictor.get_input_names()

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


def block_step_inputs(plan):
    """The block step's plain inputs for a SchedulerOutput: packed ids, lengths, block tables."""
    return [paddle.to_tensor(np.array(plan.input_ids, dtype=np.int64)),
            paddle.to_tensor(np.array(plan.seq_lens_this_time, dtype=np.int32)),
            paddle.to_tensor(np.array(plan.seq_lens_decoder, dtype=np.int32)),
            paddle.to_tensor(np.array(plan.block_tables(), dtype=np.int32))]


def new_block_pool(num_layers, num_blocks, num_kv_heads, block_size, head_dim, dtype):
    shape = [num_blocks, num_kv_heads, block_size, head_dim]
    return [paddle.zeros(shape, dtype=dtype) for _ in range(2 * num_layers)]


class DynamicBlockRunner:
    """The model's block step, eagerly, over a pool of `num_blocks` KV blocks per layer."""

    def __init__(self, model, threads, num_blocks, block_size):
        from paddlellm import ops

        ops.load_library()
        c = model.config
        self.model, self.num_blocks, self.block_size = model, num_blocks, block_size
        self.caches = new_block_pool(c.num_hidden_layers, num_blocks, c.num_key_value_heads, block_size, c.head_dim,
                                     model.compute_dtype)
        set_cpu_threads(threads)

    def step(self, plan):
        with paddle.no_grad():
            return self.model.forward_block(*block_step_inputs(plan), self.caches).numpy()


class StaticBlockRunner:
    """The exported block step run by paddle.inference; the pool's tensors are fed by position each step and
    written in place by the program (no copy)."""

    def __init__(self, model_dir, manifest: Manifest, device, threads, num_blocks):
        from paddlellm import ops

        ops.load_library()  # the program's custom ops must be registered before the predictor is created
        m = manifest
        self.num_blocks, self.block_size = num_blocks, m.block_size
        self.predictor = create_predictor(model_dir, manifest, device, threads)
        self.caches = new_block_pool(m.num_layers, num_blocks, m.num_kv_heads, m.block_size, m.head_dim,
                                     m.compute_dtype)
        order = {name: i for i, name in enumerate(m.inputs)}
        self.feed_order = [order[name] for name in self.predictor.get_input_names()]

    def step(self, plan):
        feeds = block_step_inputs(plan) + self.caches
        return self.predictor.run([feeds[i] for i in self.feed_order])[0].numpy()
