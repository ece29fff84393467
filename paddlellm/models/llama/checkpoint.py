"""Read a Llama checkpoint directory into Hugging Face names and layout, as numpy arrays.

Weight files, the first kind found wins:

1. ``model.safetensors`` or ``model.safetensors.index.json`` + shards.
2. ``pytorch_model.bin`` or ``pytorch_model.bin.index.json`` + shards (torch zip pickles, read without torch).
3. ``model_state.pdparams`` or ``model_state.pdparams.index.json`` + shards, or a lone ``*.pdparams``
   (paddle.load).

Layouts. HF layout has linear weights as [out_features, in_features]. Paddle layout ([in, out]) is
assumed for every .pdparams file and for safetensors whose metadata says ``{"format": "np"}`` (or "pd"),
which paddleformers writes with ``save_to_hf=False`` (``save_pretrained`` outside its default flex
checkpoint path, Trainer unified checkpoints); its default and ``save_to_hf=True`` saves are HF layout
(no metadata, or ``{"format": "pt"}``). In Paddle layout the ``*_proj`` weights are transposed; lm_head is
[vocab, hidden] in paddleformers >= 1.0 and [hidden, vocab] in older PaddleNLP, told apart by config.json
(only ambiguous when vocab_size == hidden_size). Names may start with ``llama.`` (PaddleNLP),
``model.`` or nothing; they come back as ``model.…`` and ``lm_head.weight``.

Fused PaddleNLP weights (``fuse_attention_qkv`` / ``fuse_attention_ffn``; paddleformers 1.2's Llama no
longer has them) are split: ``self_attn.qkv_proj`` holds, along the output axis, one block per kv head g:
[the num_heads/num_kv_heads query heads of group g, k head g, v head g], each head_dim wide;
``mlp.gate_up_fused_proj`` (or ``mlp.up_gate_proj``) is [gate; up] along the output axis.

Dtypes are kept (float32/float16). bfloat16 comes back as ``ml_dtypes.bfloat16`` arrays when ml_dtypes is
installed (it is a dependency of paddle), else upcast to float32.
"""
import collections
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from paddlellm.errors import UserError
from paddlellm.files import read_json

REQUIRED_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
# config.json of a checkpoint whose layer projections are stored quantized (convert_gguf.py --keep_quant):
# {"quant_type": "weight_only_int4" | "weight_only_int8", "group_size": 32}; each `name` then int8 values with
# `name`_scale (and int4's `name`_offset) [out, in / group_size] beside it
QUANTIZATION_KEY = "paddlellm_quantization"


def stored_quantization(config):
    """(quant_type, group_size) a checkpoint's config.json dict says its projections are stored in, or None."""
    stored = config.get(QUANTIZATION_KEY)
    return (stored["quant_type"], stored["group_size"]) if stored else None
SOURCES = (  # (single file, index file, kind)
    ("model.safetensors", "model.safetensors.index.json", "safetensors"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json", "torch"),
    ("model_state.pdparams", "model_state.pdparams.index.json", "paddle"),
)
_TORCH_STORAGES = {"DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
                   "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
                   "ByteStorage": "u1", "BoolStorage": "?", "UntypedStorage": "u1"}


def _model_dir(model_dir):
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"model directory {model_dir} does not exist (check the path)")
    return model_dir


def read_config(model_dir):
    """config.json of a model directory as a dict, checked for the keys a Llama model needs."""
    path = _model_dir(model_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{path} not found (the model directory needs the config.json of the checkpoint)")
    config = read_json(path)
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)} (is it the config.json of a Llama model?)")
    return config


def _bf16(bits):
    """bfloat16 bit patterns (uint16) -> ml_dtypes.bfloat16 view if ml_dtypes is installed, else float32."""
    try:
        import ml_dtypes
    except ImportError:
        return (bits.astype(np.uint32) << 16).view(np.float32)
    return bits.view(ml_dtypes.bfloat16)


def read_safetensors(path):
    """(tensors, paddle_layout). BF16 is read from the raw bytes (safetensors' numpy backend may lack it)."""
    from safetensors import SafetensorError, safe_open

    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else size
            if length > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(f.read(length))
        metadata = header.pop("__metadata__", None) or {}
        tensors = {}
        with safe_open(str(path), framework="np") as sf:
            for name, info in header.items():
                if info["dtype"] == "BF16":
                    start, end = info["data_offsets"]
                    bits = np.fromfile(path, dtype="<u2", count=(end - start) // 2, offset=8 + length + start)
                    tensors[name] = _bf16(bits.reshape(info["shape"]))
                else:
                    tensors[name] = sf.get_tensor(name)
    except (ValueError, KeyError, TypeError, AttributeError, SafetensorError) as e:
        raise UserError(f"{path} is not a valid safetensors file ({e}; download it again)") from None
    return tensors, isinstance(metadata, dict) and metadata.get("format") in ("np", "pd")


class _Storage:
    def __init__(self, name):
        self.dtype = _TORCH_STORAGES[name]


def _rebuild_tensor(storage, offset, size, stride, *_):
    size, stride = tuple(size), tuple(stride)
    if 0 in size:
        return np.empty(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= storage.size or min(stride, default=0) < 0:
        raise ValueError(f"tensor of shape {size} reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=[s * storage.itemsize for s in stride])
    return np.ascontiguousarray(view)  # a copy: storages may be shared and zip data is read-only


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles a torch zip checkpoint's data.pkl into numpy arrays; allows only tensor-rebuilding globals."""

    ALLOWED = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
               ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
               ("torch._utils", "_rebuild_parameter_with_state"): lambda data, *_: data,
               ("collections", "OrderedDict"): collections.OrderedDict}

    def __init__(self, archive, prefix):
        super().__init__(archive.open(prefix + "data.pkl"))
        self.archive, self.prefix, self.storages = archive, prefix, {}

    def find_class(self, module, name):
        if module == "torch" and name in _TORCH_STORAGES:
            return _Storage(name)
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            dtype = storage_type.dtype
            if dtype == "bf16":
                self.storages[key] = _bf16(np.frombuffer(raw, dtype="<u2"))
            else:
                self.storages[key] = np.frombuffer(raw, dtype=dtype)
        return self.storages[key]


def _read_torch(path):
    """A torch.save zip file (torch >= 1.6) as {name: array}, without importing torch."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pkl = next((n for n in names if n == "data.pkl" or n.endswith("/data.pkl")), None)
            if pkl is None:
                raise ValueError("no data.pkl in the archive")
            prefix = pkl[: -len("data.pkl")]
            if prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() != b"little":
                raise ValueError("big-endian tensors are not supported")
            state = _TorchUnpickler(archive, prefix).load()
    except zipfile.BadZipFile:
        raise UserError(f"{path} is not a zip-format PyTorch file (re-save it with torch >= 1.6 "
                        "or convert it to safetensors)") from None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, pickle.UnpicklingError, EOFError) as e:
        raise UserError(f"cannot read {path}: {e} (download it again or convert it to safetensors)") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state dict (save model.state_dict(), not the model)")
    return {k: v for k, v in state.items() if isinstance(v, np.ndarray)}


def read_paddle(path):
    import paddle

    try:
        state = paddle.load(str(path), return_numpy=True)
    except Exception as e:  # paddle raises many kinds for a bad file
        raise UserError(f"cannot read {path}: {e} (download it again or re-save it)") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state dict (save model.state_dict())")
    # paddle returns bfloat16 tensors as uint16 bit patterns
    return {k: _bf16(v) if v.dtype == np.uint16 else v for k, v in state.items() if isinstance(v, np.ndarray)}


def indexed_files(index, fix_index, fix_missing):
    """The weight files an `*.index.json` lists in its weight_map (beside it), each checked to exist; the
    fixes finish the errors for a broken index and a missing file."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError(f"{index} has no weight_map ({fix_index})")
    files = [index.parent / name for name in sorted(set(map(str, weight_map.values())))]
    for path in files:
        if not path.is_file():
            raise UserError(f"{path} not found, but {index.name} lists it ({fix_missing})")
    return files


def weight_files(model_dir):
    for single, index, kind in SOURCES:
        if (model_dir / single).is_file():
            return [model_dir / single], kind
        if (model_dir / index).is_file():
            return indexed_files(model_dir / index, "download it again", "download the missing shard"), kind
    pdparams = sorted(model_dir.glob("*.pdparams"))
    if len(pdparams) == 1:
        return pdparams, "paddle"
    raise UserError(f"no weight files in {model_dir} (expected model.safetensors, pytorch_model.bin or "
                    "model_state.pdparams, or their sharded .index.json forms)")


def _dims(config):
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return heads, config.get("num_key_value_heads") or heads, head_dim


def to_hf_layout(name, array, paddle_layout, config):
    """[(hf_name, array)] for one stored tensor: renamed, transposed to [out, in], fused weights split."""
    for prefix in ("llama.", "model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    if not name.startswith("lm_head."):
        name = "model." + name
    if "rotary_emb.inv_freq" in name:
        return []
    if paddle_layout and array.ndim == 2:
        hidden, vocab = config["hidden_size"], config["vocab_size"]
        old_lm_head = name == "lm_head.weight" and hidden != vocab and array.shape == (hidden, vocab)
        if name.endswith("_proj.weight") or old_lm_head:
            array = np.ascontiguousarray(array.T)
    base, _, leaf = name.rpartition(".")
    if base.endswith("self_attn.qkv_proj"):
        heads, kv_heads, head_dim = _dims(config)
        group = heads // kv_heads
        blocks = array.reshape(kv_heads, group + 2, head_dim, *array.shape[1:])
        q = blocks[:, :group].reshape(heads * head_dim, *array.shape[1:])
        k, v = (blocks[:, i].reshape(kv_heads * head_dim, *array.shape[1:]) for i in (group, group + 1))
        stem = base[: -len("qkv_proj")]
        return [(f"{stem}{p}_proj.{leaf}", np.ascontiguousarray(t)) for p, t in zip("qkv", (q, k, v))]
    if base.endswith(("mlp.gate_up_fused_proj", "mlp.up_gate_proj")):
        gate, up = np.split(array, 2, axis=0)
        stem = base.rpartition(".")[0]
        return [(f"{stem}.gate_proj.{leaf}", np.ascontiguousarray(gate)),
                (f"{stem}.up_proj.{leaf}", np.ascontiguousarray(up))]
    return [(name, array)]


LAYER_WEIGHTS = ("input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                 "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def expected_shapes(config):
    """{HF weight name: shape} of a Llama config.json dict, linear weights [out, in]; lm_head.weight only when
    it is not tied to the embeddings. The one table of weight shapes (checkpoints, LoRA, GGUF)."""
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv_heads, head_dim = _dims(config)
    q, kv = heads * head_dim, kv_heads * head_dim
    layer = dict(zip(LAYER_WEIGHTS, [(hidden,), (hidden,), (q, hidden), (kv, hidden), (kv, hidden), (hidden, q),
                                     (inter, hidden), (inter, hidden), (hidden, inter)]))
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    if not config.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (vocab, hidden)
    for i in range(config["num_hidden_layers"]):
        shapes.update({f"model.layers.{i}.{name}.weight": shape for name, shape in layer.items()})
    return shapes


def read_weight_file(path, kind, config):
    """One weight file (`kind` as weight_files says) as {HF name: array in HF layout}, fused weights split."""
    if kind == "safetensors":
        stored, paddle_layout = read_safetensors(path)
    elif kind == "torch":
        stored, paddle_layout = _read_torch(path), False
    else:
        stored, paddle_layout = read_paddle(path), True
    tensors = {}
    for name in list(stored):
        array = stored.pop(name)
        try:
            converted = to_hf_layout(name, array, paddle_layout, config)
        except ValueError as e:  # a fused weight that does not split as config.json says
            raise UserError(f"{path}: {name} of shape {array.shape} does not match config.json ({e})") from None
        tensors.update(converted)
    return tensors


def read_state_dict(model_dir):
    """All weights of a Llama checkpoint directory as {HF name: numpy array in HF layout}.

    lm_head.weight is absent when the checkpoint ties it to the embeddings (tie_word_embeddings)."""
    model_dir = _model_dir(model_dir)
    config = read_config(model_dir)
    files, kind = weight_files(model_dir)
    tensors, origin = {}, {}
    for path in tqdm(files, desc=f"reading {model_dir.name}", unit="file", disable=None):
        for hf_name, hf_array in read_weight_file(path, kind, config).items():
            tensors[hf_name], origin[hf_name] = hf_array, path
    for name, shape in expected_shapes(config).items():
        if name not in tensors:
            raise UserError(f"{model_dir}: the weights lack {name} (the checkpoint is incomplete or not a "
                            "Llama model; download or save it again)")
        if tuple(tensors[name].shape) != shape:
            raise UserError(f"{origin[name]}: {name} has shape {tuple(tensors[name].shape)} but config.json "
                            f"implies {shape} (the weights and config.json do not belong together)")
    return tensors
