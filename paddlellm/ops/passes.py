"""The IR passes as one table: PIR rewrites, in C++ in every op library (csrc/passes), that put the op set's ops in
place of the plain Paddle subgraphs of the portable exported step when the predictor is created (named as
PaddleNLP names its passes where the meaning carries over). Per pass: what it does, the backends whose op
library it inserts ops of, and how often it matches on a Llama of L layers. PIPELINES: each device's passes, in
order (the predictor's --passes / --disable_passes change them); a pass that did not pay for itself in
benchmarks/passes_ab.py stays out of them (in_pipelines=()) but can be asked for, as can a pass a library has
while its device's pipeline has a better one (the CPU's packed linear passes take what the weight-only pass would).

The CPU's passes also repack the projection weights (in the predictor's parameter scope, see csrc/passes/cpu_passes.cc):
the rewritten program is cached with them.
"""
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from paddlellm.errors import UserError


@dataclass(frozen=True)
class PassSpec:
    name: str
    summary: str
    backends: Tuple[str, ...]
    count: Callable[[int, int], int]  # expected matches on a Llama of L layers with Q quantized projections
    count_text: str
    in_pipelines: Optional[Tuple[str, ...]] = None  # the backends whose pipeline runs it (None: all its backends)

    def expected(self, num_layers, quantized_projections=0):
        return self.count(num_layers, quantized_projections)

    def in_pipeline(self, backend):
        return backend in (self.backends if self.in_pipelines is None else self.in_pipelines)

    def describe_expected(self):
        return self.count_text


PASSES = (
    PassSpec("paddlellm_rms_norm_pass", "the RMSNorm subgraph (x * rsqrt(mean(x * x) + eps) * w) -> paddlellm_rms_norm",
             ("cpu", "hip", "npu"), lambda layers, _: 2 * layers + 1, "2 per layer + 1 more"),
    # every norm but the first layer's input norm has an add before it
    PassSpec("remove_residual_in_rms_norm", "a residual add and the RMSNorm of its sum -> paddlellm_fused_add_rms_norm",
             ("cpu", "hip", "npu"), lambda layers, _: 2 * layers, "2 per layer"),
    PassSpec("paddlellm_rotary_pass", "the rotate-half RoPE subgraph of q and k -> paddlellm_rotary_embedding, in place",
             ("cpu", "hip", "npu"), lambda layers, _: layers, "1 per layer"),
    PassSpec("paddlellm_swiglu_pass", "Paddle's swiglu -> paddlellm_swiglu", ("cpu", "hip", "npu"),
             lambda layers, _: layers, "1 per layer"),
    PassSpec("paddlellm_linear_swiglu_pass", "swiglu(x @ W_gate_up) -> paddlellm_linear_swiglu, W packed gate/up "
             "interleaved (in the predictor's weights)", ("cpu",), lambda layers, _: layers, "1 per layer"),
    PassSpec("paddlellm_linear_pass", "a layer's projection x @ W -> paddlellm_linear, W packed in 32-column blocks",
             ("cpu",), lambda layers, _: 3 * layers, "3 per layer: qkv, o, down"),
    PassSpec("paddlellm_weight_only_linear_pass", "a projection x @ dequantize(W) over an int8 weight (--quant_type) "
             "-> paddlellm_weight_only_linear, the weight read as stored (on the CPU the linear passes pack it instead)",
             ("cpu", "hip", "npu"), lambda layers, quantized: quantized,
             "1 per quantized projection: 4 per layer (+ the lm_head) when quantized", in_pipelines=("hip", "npu")),
    PassSpec("llama_fuse_lm_head", "the lm_head x @ W -> paddlellm_linear, W packed; a tied embedding is looked up in "
             "it (paddlellm_packed_embedding) and its copy dropped", ("cpu",), lambda layers, _: 1, "1"),
    PassSpec("llama_fuse_lm_head_with_slice", "each sequence's last row (the gathers), the final norm and the packed "
             "lm_head -> paddlellm_final_logits (not in the pipeline: no faster, benchmarks/passes_ab.py)", ("cpu",),
             lambda layers, _: 1, "1", in_pipelines=()),
    PassSpec("llama_fuse_get_padding_offset", "the packed batch's positions and last rows (cumsum, arange, "
             "repeat_interleave, ...) -> paddlellm_packed_positions", ("cpu",), lambda layers, _: 1, "1"),
    PassSpec("llama_fuse_attention_layer_begin", "the first decoder layer (its input the embedding, no residual add) "
             "-> paddlellm_fused_decoder_layer", ("cpu",), lambda layers, _: 1, "1"),
    PassSpec("llama_fuse_attention_layer", "a decoder layer between the first and the last -> "
             "paddlellm_fused_decoder_layer", ("cpu",), lambda layers, _: max(layers - 2, 0),
             "1 per layer but the first and last"),
    PassSpec("llama_fuse_attention_layer_end", "the last decoder layer (the final norm reads its output) -> "
             "paddlellm_fused_decoder_layer", ("cpu",), lambda layers, _: min(layers - 1, 1), "1 (0 with one layer)"),
)
BY_NAME = {p.name: p for p in PASSES}
BACKEND_OF_DEVICE = {"cpu": "cpu", "npu": "npu", "dcu": "hip", "gpu": "hip"}
PIPELINES = {device: tuple(p.name for p in PASSES if p.in_pipeline(backend))
             for device, backend in BACKEND_OF_DEVICE.items()}


def names(value, flag):
    """The pass names of a --passes / --disable_passes value (comma-separated or a list; "none": no pass); an
    unknown one is a UserError."""
    listed = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    if listed == ["none"]:
        return []
    unknown = [n for n in listed if n not in BY_NAME]
    if unknown:
        raise UserError(f"{flag}: unknown pass {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    return listed


def pipeline(device, passes=None, disable_passes=None):
    """The passes the predictor runs for `device`: `passes` (see names) in place of the device's pipeline, minus
    `disable_passes`. Unknown names, or passes whose ops the device's library does not have, are a UserError."""
    chosen = list(PIPELINES[device]) if passes is None else names(passes, "--passes")
    foreign = [n for n in chosen if BACKEND_OF_DEVICE[device] not in BY_NAME[n].backends]
    if foreign:
        raise UserError(f"--passes: {', '.join(foreign)} inserts ops the {device} library does not have (its passes: "
                        f"{', '.join(PIPELINES[device]) or 'none'})")
    dropped = set(names(disable_passes, "--disable_passes")) if disable_passes else set()
    return [n for n in chosen if n not in dropped]
