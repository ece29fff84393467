"""The IR passes as one table: PIR rewrites, in C++ in every op library (csrc/passes), that put the op set's ops in
place of the plain Paddle subgraphs of the portable exported step when the predictor is created (named as
PaddleNLP names its passes where the meaning carries over). Per pass: what it does, the backends whose op
library it inserts ops of, and how often it matches on a Llama of L layers. PIPELINES: each device's passes, in
order (the predictor's --passes / --disable_passes change them).

A program exported with the CPU's own ops already fused in (manifest weight_layout "packed") runs no passes.
"""
from dataclasses import dataclass
from typing import Tuple

from paddlellm.errors import UserError


@dataclass(frozen=True)
class PassSpec:
    name: str
    summary: str
    backends: Tuple[str, ...]
    per_layer: int  # expected matches on a Llama: per_layer * layers + once
    once: int = 0

    def expected(self, num_layers):
        return self.per_layer * num_layers + self.once

    def describe_expected(self):
        parts = ([f"{self.per_layer} per layer"] if self.per_layer else []) + ([f"{self.once} more"] if self.once else [])
        return " + ".join(parts)


PASSES = (
    PassSpec("paddlellm_rms_norm_pass", "the RMSNorm subgraph (x * rsqrt(mean(x * x) + eps) * w) -> paddlellm_rms_norm",
             ("cpu", "hip", "npu"), per_layer=2, once=1),
    PassSpec("remove_residual_in_rms_norm", "a residual add and the RMSNorm of its sum -> paddlellm_fused_add_rms_norm",
             ("cpu", "hip", "npu"), per_layer=2),  # every norm but the first layer's input norm has an add before it
    PassSpec("paddlellm_rotary_pass", "the rotate-half RoPE subgraph of q and k -> paddlellm_rotary_embedding, in place",
             ("cpu", "hip", "npu"), per_layer=1),
    PassSpec("paddlellm_swiglu_pass", "Paddle's swiglu -> paddlellm_swiglu", ("cpu", "hip", "npu"), per_layer=1),
)
BY_NAME = {p.name: p for p in PASSES}
BACKEND_OF_DEVICE = {"cpu": "cpu", "npu": "npu", "dcu": "hip", "gpu": "hip"}
PIPELINES = {device: tuple(p.name for p in PASSES if backend in p.backends)
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
