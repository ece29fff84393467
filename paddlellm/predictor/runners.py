"""Step runners: the same block step run eagerly on the dygraph model, or by paddle.inference on the exported
program. A runner owns a pool of KV blocks that each step (see engine.py) writes in place."""
import os
from pathlib import Path

import numpy as np
import paddle

from paddlellm import ops
from paddlellm.device import paddle_place
from paddlellm.export.manifest import Manifest


def set_cpu_threads(threads):
    paddle.base.core.set_num_threads(threads)


def create_predictor(model_dir, manifest: Manifest, device, threads, passes=(), ir_debug=None):
    """paddle.inference's predictor for an exported program, set up for speed on the device, the IR passes
    `passes` run on its program (see ir_passes.py); and the path of the program it runs."""
    from paddlellm import ops
    from paddlellm.predictor.ir_passes import PassPipeline

    # The device's op library is registered for eager calls (the sampler's) before the process's first
    # predictor: registered after it, eager calls fail; before, the predictor logs one harmless "op already
    # registered" line per op.
    ops.use_device(device)
    ops.register_ops()
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
    pipeline = PassPipeline(model_dir, manifest, device, passes, ir_debug)
    pipeline.apply(config)
    verbose = bool(os.environ.get("PADDLELLM_IR_LOG"))
    if not verbose:
        config.disable_glog_info()
    predictor = pipeline.create(config, verbose)
    names = predictor.get_input_names()
    if set(names) != set(manifest.inputs):
        raise RuntimeError(f"program inputs {names} differ from the manifest's {manifest.inputs}")
    return predictor, pipeline.program_path()


def block_step_arrays(plan):
    """The block step's plain inputs for a SchedulerOutput, as numpy arrays: packed ids, lengths, block tables."""
    return [np.array(plan.input_ids, dtype=np.int64), np.array(plan.seq_lens_this_time, dtype=np.int32),
            np.array(plan.seq_lens_decoder, dtype=np.int32), np.array(plan.block_tables(), dtype=np.int32)]


def block_step_inputs(plan):
    """block_step_arrays as Paddle tensors."""
    return [paddle.to_tensor(a) for a in block_step_arrays(plan)]


class BlockRunner:
    """A pool of KV blocks ([num_blocks, kv_heads, block_size, row] per layer, k then v; row: ops.cache_row, the
    head_dim, and an int8 cache's scale) and the block step over it; subclasses run the step. The pool is sized at
    predict time and may be re-sized between runs (allocate)."""

    def __init__(self, num_layers, num_kv_heads, head_dim, block_size, dtype, num_blocks=0):
        self.shape = [0, num_kv_heads, block_size, ops.cache_row(head_dim, dtype)]
        self.num_layers, self.block_size, self.dtype = num_layers, block_size, dtype
        self.num_blocks, self.caches = 0, []
        if num_blocks:
            self.allocate(num_blocks)

    def allocate(self, num_blocks):
        """A fresh pool of num_blocks blocks (what the old one held is gone)."""
        self.caches = []  # free the old pool before taking the new one
        self.shape[0], self.num_blocks = num_blocks, num_blocks
        self.caches = [paddle.zeros(self.shape, dtype=self.dtype) for _ in range(2 * self.num_layers)]

    @property
    def pool_bytes(self):
        return sum(int(t.numel()) * t.element_size() for t in self.caches)


class DynamicBlockRunner(BlockRunner):
    """The model's block step, eagerly."""

    def __init__(self, model, threads, num_blocks=0, block_size=64):
        c = model.config
        super().__init__(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, block_size, model.kv_cache_dtype,
                         num_blocks)
        self.model = model
        set_cpu_threads(threads)

    def step(self, plan):
        with paddle.no_grad():
            return self.model(*block_step_inputs(plan), self.caches).numpy()


class StaticBlockRunner(BlockRunner):
    """The exported block step run by paddle.inference; the pool's tensors are the program's cache inputs (shared,
    no copy), written in place by it. `passes`: the IR passes to run on it (None: the device's pipeline, see
    paddlellm.ops.passes)."""

    def __init__(self, model_dir, manifest: Manifest, device, threads, num_blocks=0, passes=None, ir_debug=None):
        from paddlellm.ops.passes import pipeline

        m = manifest
        self.bound_pool = None  # the pool the program's cache inputs share, bound once per allocate
        super().__init__(m.num_layers, m.num_kv_heads, m.head_dim, m.block_size, m.cache_dtype, num_blocks)
        if passes is None:
            passes = pipeline(device)
        self.predictor, self.program_path = create_predictor(model_dir, manifest, device, threads, passes, ir_debug)
        handles = [self.predictor.get_input_handle(name) for name in m.inputs]  # the manifest's order: step, caches
        self.step_handles, self.cache_handles = handles[:-2 * m.num_layers], handles[-2 * m.num_layers:]
        self.logits = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def step(self, plan):
        """Binds this step's inputs (the pool only after allocate: rebinding its 2 x layers tensors every step, as
        run(list) does, measured ~0.25 ms of a ~4 ms SmolLM2 decode step; the four small ones copied from numpy,
        ~0.15 ms less than making Paddle tensors of them), runs the program, returns the logits."""
        if self.bound_pool is not self.caches:
            for handle, cache in zip(self.cache_handles, self.caches):
                handle.share_external_data(cache)
            self.bound_pool = self.caches
        for handle, array in zip(self.step_handles, block_step_arrays(plan)):
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)
        self.predictor.run()
        return self.logits.copy_to_cpu()


def prompt_logits(runner, prompts):
    """The next-token logits after each prompt (token id lists), all in one step over a fresh pool that
    holds just them: numpy [len(prompts), vocab]."""
    from paddlellm.predictor.scheduler import ScheduledRequest, SchedulerOutput

    tables, first = [], 0
    for prompt in prompts:
        blocks = -(-len(prompt) // runner.block_size)
        tables.append(list(range(first, first + blocks)))
        first += blocks
    runner.allocate(first)
    return runner.step(SchedulerOutput([ScheduledRequest(i, len(p), 0, list(p), table, True)
                                        for i, (p, table) in enumerate(zip(prompts, tables))]))
