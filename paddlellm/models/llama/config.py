"""Typed Llama configuration, read from an HF-style config.json dict."""
from dataclasses import dataclass, field
from typing import List, Optional

from paddlellm.errors import UserError

SUPPORTED_ROPE_SCALING = ("default", "linear", "llama3")


@dataclass
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: Optional[dict] = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    bos_token_id: Optional[int] = None
    eos_token_ids: List[int] = field(default_factory=list)
    pad_token_id: Optional[int] = None
    torch_dtype: str = "float32"

    @property
    def kv_group_size(self):
        return self.num_attention_heads // self.num_key_value_heads

    @classmethod
    def from_dict(cls, cfg, source="config.json"):
        """Validate an HF config dict; any problem is a UserError naming `source`."""
        def get(key, kind, default=None, required=False):
            value = cfg.get(key)
            if value is None:  # absent or null: the default, as in HF
                value = default
            if value is None:
                if required:
                    raise UserError(f"{source}: missing key '{key}' (is this a Llama config?)")
                return None
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise UserError(f"{source}: '{key}' must be {kind.__name__}, got {value!r}")
            return value

        model_type = cfg.get("model_type", "llama")
        if model_type != "llama" or cfg.get("attention_bias") or cfg.get("mlp_bias"):
            raise UserError(f"{source}: model_type '{model_type}' (with biases: {bool(cfg.get('attention_bias') or cfg.get('mlp_bias'))}) is not supported (only plain Llama checkpoints are)")
        heads = get("num_attention_heads", int, required=True)
        hidden = get("hidden_size", int, required=True)
        kv_heads = get("num_key_value_heads", int, heads)
        head_dim = get("head_dim", int, hidden // heads if heads else 0)
        for key, value in (("num_attention_heads", heads), ("hidden_size", hidden), ("head_dim", head_dim)):
            if value <= 0:
                raise UserError(f"{source}: '{key}' must be positive, got {value}")
        if kv_heads <= 0 or heads % kv_heads:
            raise UserError(f"{source}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
        if head_dim % 2:
            raise UserError(f"{source}: head_dim {head_dim} must be even for rotary embeddings")
        eos = cfg.get("eos_token_id")
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        # transformers 5 writes rope_theta and the scaling into one `rope_parameters` dict
        rope_parameters = cfg.get("rope_parameters") or {}
        if not isinstance(rope_parameters, dict):
            raise UserError(f"{source}: 'rope_parameters' must be an object, got {rope_parameters!r}")
        rope_scaling = cfg.get("rope_scaling")
        if rope_scaling is None and rope_parameters.get("rope_type", "default") != "default":
            rope_scaling = rope_parameters
        if rope_scaling is not None:
            check_rope_scaling(rope_scaling, source)
        return cls(
            vocab_size=get("vocab_size", int, required=True),
            hidden_size=hidden,
            intermediate_size=get("intermediate_size", int, required=True),
            num_hidden_layers=get("num_hidden_layers", int, required=True),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            rms_norm_eps=get("rms_norm_eps", float, 1e-6),
            rope_theta=get("rope_theta", float, rope_parameters.get("rope_theta", 10000.0)),
            rope_scaling=rope_scaling,
            max_position_embeddings=get("max_position_embeddings", int, 2048),
            tie_word_embeddings=get("tie_word_embeddings", bool, False),
            bos_token_id=get("bos_token_id", int),
            eos_token_ids=eos_ids,
            pad_token_id=get("pad_token_id", int),
            torch_dtype=str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32"),
        )


ROPE_SCALING_KEYS = {"linear": ("factor",),
                     "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}


def check_rope_scaling(scaling, source):
    """A UserError naming `source` unless `scaling` is a rope_scaling object the model can apply."""
    def bad(what):
        return UserError(f"{source}: rope_scaling {what} (fix it, or remove rope_scaling if the model uses plain RoPE)")

    if not isinstance(scaling, dict):
        raise bad(f"must be an object like {{\"rope_type\": \"linear\", \"factor\": 2.0}}, got {scaling!r}")
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in SUPPORTED_ROPE_SCALING:
        raise bad(f"type {kind!r} is not supported (supported: {', '.join(SUPPORTED_ROPE_SCALING)})")
    for key in ROPE_SCALING_KEYS.get(kind, ()):
        value = scaling.get(key)
        if value is None:
            raise bad(f"of type {kind} needs '{key}'")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise bad(f"'{key}' must be a positive number, got {value!r}")
    if kind == "llama3" and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        raise bad(f"high_freq_factor {scaling['high_freq_factor']} must be greater than "
                  f"low_freq_factor {scaling['low_freq_factor']}")
