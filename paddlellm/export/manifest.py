"""The export manifest: the single source of truth for what the static predictor needs."""
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

from paddlellm.errors import UserError
from paddlellm.files import read_json

MANIFEST_NAME = "paddlellm_manifest.json"
FORMAT_VERSION = 3  # 3: the portable program, fused by the device's IR passes at predict time (2: the CPU's fused
# ops built in at export; 1: also a dense-cache step)


@dataclass
class Manifest:
    model_type: str
    dtype: str  # weights
    compute_dtype: str  # matmuls (activations between ops are float32; the KV cache: kv_cache_dtype)
    device: str  # the device the program was exported for
    num_layers: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    vocab_size: int
    block_size: int  # tokens per KV cache block
    inputs: List[str]
    outputs: List[str]
    inference_model: bool = True
    block_attn: bool = True  # PaddleNLP's name for what every export is now: a paged KV cache
    cache_layout: str = "blocks"  # [num_blocks, kv_heads, block_size, head_dim] per layer, k then v
    quant_type: Optional[str] = None  # the layers' projections (paddlellm.quantization), None: in `dtype`
    quant_lm_head: bool = False  # the lm_head quantized too
    group_size: Optional[int] = None  # weight_only_int4, grouped weight_only_int8: rows per scale
    cachekv_int8_type: Optional[str] = None  # the KV cache int8 (ops.cache_row), scales "dynamic" per row or "static"
    cachekv_calibration: Optional[dict] = None  # static: the text file's name and the tokens its scales came from
    kv_cache_dtype: Optional[str] = None  # device.kv_cache_dtype (None: an export from before it was recorded)
    program: str = "model.json"
    params: str = "model.pdiparams"
    versions: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def cache_dtype(self):
        if self.kv_cache_dtype is not None:
            return self.kv_cache_dtype
        return "int8" if self.cachekv_int8_type else self.compute_dtype  # how earlier exports chose it

    @property
    def quantized_projections(self):
        """How many of the program's matmuls read a quantized weight: 4 a layer (qkv, o, gate_up, down), the
        lm_head with quant_lm_head."""
        return (4 * self.num_layers + int(self.quant_lm_head)) if self.quant_type else 0

    def write(self, directory):
        (Path(directory) / MANIFEST_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n")


def check_block_attn(block_attn):
    """--block_attn is PaddleNLP's flag: on (or not given) is the only step there is."""
    if block_attn is False:
        raise UserError("--block_attn false: the dense-cache step was removed, block attention is the only step "
                        "(drop the flag)")


def read_manifest(directory) -> Manifest:
    """Read and check DIR/paddlellm_manifest.json and the program files it names."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise UserError(f"model directory {directory} does not exist (pass an exported model to --model_name_or_path)")
    if not path.is_file():
        raise UserError(f"{path} is missing: {directory} is not an exported model "
                        "(export it with llm/predict/export_model.py, or use --mode dynamic)")
    data = read_json(path, hint="re-export the model")
    if data.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} has format_version {data.get('format_version')}, "
                        f"this paddlellm reads {FORMAT_VERSION} (re-export the model)")
    try:
        manifest = Manifest(**data)
    except TypeError as exc:
        raise UserError(f"{path} is incomplete or has unknown keys: {exc} (re-export the model)") from None
    for name in (manifest.program, manifest.params):
        if not (directory / name).is_file():
            raise UserError(f"{directory / name} is missing (re-export the model)")
    return manifest
