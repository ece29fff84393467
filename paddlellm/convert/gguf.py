"""Convert a llama-architecture GGUF file into an HF-format Llama checkpoint directory."""
import json
import math
import re
import sys
from pathlib import Path

import gguf
import numpy as np
from gguf import GGUFValueType
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tqdm import tqdm

from paddlellm.errors import UserError
from paddlellm.files import atomic_directory
from paddlellm.models.llama.checkpoint import QUANTIZATION_KEY, expected_shapes

SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0")
# --keep_quant: the GGUF types whose blocks are a paddlellm quantization as they are, in groups of 32 rows: Q4_0's
# d * (q - 8) and Q4_1's d * q + m as weight_only_int4 (q * scale + offset), Q8_0's d * q as weight_only_int8
KEPT = {"Q4_0": "weight_only_int4", "Q4_1": "weight_only_int4", "Q8_0": "weight_only_int8"}
KEPT_GROUP = 32  # the blocks' values
GLOBAL_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
LAYER_TENSORS = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
DIGIT_SPLIT_PRES = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b")
UNKNOWN, CONTROL, USER_DEFINED = 2, 3, 4
_MISSING = object()


def open_gguf(path):
    """Open a GGUF file with gguf.GGUFReader; missing, unreadable or non-llama files raise UserError."""
    path = Path(path)
    if not path.is_file():
        problem = "is not a file" if path.exists() else "does not exist"
        raise UserError(f"GGUF file {path} {problem} (check the --gguf path)")
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise UserError(f"{path} is not a GGUF file (it lacks the GGUF magic bytes; pass a .gguf model file)")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # the reader raises assorted errors on truncated or corrupt input
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(f"{path} is a truncated or corrupt GGUF file: {detail} (re-download or re-export it)") from None
    arch = field(reader, "general.architecture", None)
    if arch != "llama":
        raise UserError(f"{path}: architecture '{arch}' is not supported (only llama GGUF files can be converted)")
    return reader


def field(reader, key, default=_MISSING):
    """Value of a GGUF metadata field (str, number, bool or list); UserError when required and absent."""
    f = reader.fields.get(key)
    if f is None:
        if default is _MISSING:
            raise UserError(f"GGUF metadata '{key}' is missing (the file is not a complete llama GGUF)")
        return default
    value = f.contents()
    if f.types == [GGUFValueType.FLOAT32]:  # keep float32's shortest repr: 1e-05, not 9.999999747378752e-06
        value = float(str(np.float32(value)))
    return value


def build_config(reader):
    """HF LlamaConfig dict from the llama.* and tokenizer.ggml.* metadata and the tensor list."""
    hidden, heads = int(field(reader, "llama.embedding_length")), int(field(reader, "llama.attention.head_count"))
    head_dim = int(field(reader, "llama.attention.key_length", hidden // heads))
    rot = int(field(reader, "llama.rope.dimension_count", head_dim))
    if rot != head_dim:
        raise UserError(f"partial rotary embeddings ({rot} of {head_dim} dims) are not supported "
                        "(use a standard llama GGUF)")
    names = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in names:
        raise UserError("GGUF has no token_embd.weight tensor (the file is not a complete llama GGUF)")
    n_vocab = len(field(reader, "tokenizer.ggml.tokens", [])) or int(names["token_embd.weight"].shape[1])
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": int(field(reader, "llama.vocab_size", n_vocab)), "hidden_size": hidden,
        "intermediate_size": int(field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(field(reader, "llama.block_count")), "num_attention_heads": heads,
        "num_key_value_heads": int(field(reader, "llama.attention.head_count_kv", heads)), "head_dim": head_dim,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "rms_norm_eps": float(field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(field(reader, "llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(field(reader, "llama.context_length", 2048)),
        "tie_word_embeddings": "output.weight" not in names, "torch_dtype": "float32",
    }
    for key, meta in (("bos", "bos"), ("eos", "eos"), ("pad", "padding")):
        value = field(reader, f"tokenizer.ggml.{meta}_token_id", None)
        if value is not None:
            cfg[f"{key}_token_id"] = int(value)
    scaling = rope_scaling(reader, cfg, names.get("rope_freqs.weight"))
    if scaling:
        cfg["rope_scaling"] = scaling
    return cfg


def rope_scaling(reader, cfg, freqs_tensor):
    """HF rope_scaling dict: linear from rope.scaling.* metadata, llama3 fitted to the rope_freqs tensor."""
    kind = field(reader, "llama.rope.scaling.type", "none")
    factor = float(field(reader, "llama.rope.scaling.factor", 1.0))
    orig = int(field(reader, "llama.rope.scaling.original_context_length", 8192))
    if freqs_tensor is None:
        if kind == "linear" and factor != 1.0:
            return {"rope_type": "linear", "factor": factor}
        if kind not in ("none", "linear"):
            raise UserError(f"rope scaling type '{kind}' is not supported (supported: linear, llama3)")
        return None
    divisors = dequantize(freqs_tensor).astype(np.float64)
    factor = float(divisors.max())
    wavelen = 2 * math.pi * cfg["rope_theta"] ** (np.arange(0, cfg["head_dim"], 2) / cfg["head_dim"])
    mid = (divisors > 1 + 1e-4) & (divisors < factor * (1 - 1e-4))
    low, high = 1.0, 4.0  # Llama 3.1 defaults; refitted below from the smooth transition band if it is visible
    if mid.sum() >= 2:  # 1/d = (1-s)/factor + s with s = (orig/wavelen - low) / (high - low)
        smooth = (1 / divisors[mid] - 1 / factor) / (1 - 1 / factor)
        slope, icpt = np.polyfit(orig / wavelen[mid], smooth, 1)
        low, high = round(-icpt / slope, 4), round((1 - icpt) / slope, 4)
    s = np.clip((orig / wavelen - low) / (high - low), 0, 1)
    if not np.allclose(1 / ((1 - s) / factor + s), divisors, rtol=1e-3):
        raise UserError("rope_freqs tensor does not follow llama3 rope scaling "
                        "(this GGUF's rope scaling is not supported)")
    return {"rope_type": "llama3", "factor": factor, "low_freq_factor": float(low), "high_freq_factor": float(high),
            "original_max_position_embeddings": orig}


def hf_name(name):
    """HF parameter name for a GGUF tensor name ('' for tensors folded into the config, None if unknown)."""
    if name == "rope_freqs.weight":
        return ""
    if name.removesuffix(".weight") in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[name.removesuffix(".weight")] + ".weight"
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", name)
    return f"model.layers.{int(m[1])}.{LAYER_TENSORS[m[2]]}.weight" if m and m[2] in LAYER_TENSORS else None


def check_tensors(reader, cfg):
    """Validate tensor names, types and shapes against the config before any work is written."""
    shapes, seen = expected_shapes(cfg), set()
    for t in reader.tensors:
        name, qtype = hf_name(t.name), t.tensor_type.name
        if name is None:
            raise UserError(f"unexpected tensor '{t.name}' (only plain llama GGUF files can be converted)")
        if qtype not in SUPPORTED_TYPES:
            raise UserError(f"tensor {t.name} has quantization type {qtype}, which is not supported "
                            f"(re-quantize to one of {', '.join(SUPPORTED_TYPES)})")
        shape = tuple(int(n) for n in reversed(t.shape.tolist()))
        if name and shapes.get(name) != shape:
            raise UserError(f"tensor {t.name} has shape {list(shape)}, expected {list(shapes.get(name, ()))} "
                            "(the GGUF metadata and tensors disagree)")
        seen.add(name)
    missing = sorted(set(shapes) - seen)
    if missing:
        raise UserError(f"GGUF lacks {len(missing)} tensors, e.g. {missing[0]} (the file is not a complete llama GGUF)")


def check_keepable(reader):
    """--keep_quant: the quant_type every layer projection's blocks are (KEPT), else a UserError saying why."""
    kinds = {}
    for t in reader.tensors:
        name, qtype = hf_name(t.name), t.tensor_type.name
        if name and name.endswith("_proj.weight"):
            if qtype not in KEPT:  # (check_tensors admits only these and floats)
                raise UserError(f"--keep_quant: tensor {t.name} is {qtype}, not quantized: there is nothing to keep "
                                "(convert without --keep_quant)")
            kinds.setdefault(KEPT[qtype], qtype)
    if len(kinds) > 1:
        raise UserError(f"--keep_quant: the projections mix {' and '.join(kinds.values())} blocks, which an export "
                        f"stores as one type ({' or '.join(kinds)}): convert without --keep_quant")
    return next(iter(kinds))


def kept_blocks(tensor):
    """A Q4_0 / Q4_1 / Q8_0 tensor as paddlellm stores it in groups of 32 (paddlellm.quantization), HF layout:
    {"": q [out, in] int8, "_scale": [out, in / 32] float32 (, "_offset": the same)}, q * scale (+ offset) equal
    to its de-quantized values (the float16 d and m widened; d * q exact in float32). weight_only_int4 (Q4_0: offset
    -8d; Q4_1: m) with q in [0, 15], a block storing element j in the low and 16 + j in the high 4 bits of byte j;
    weight_only_int8 (Q8_0) with the block's 32 int8 values as they are."""
    out_features, in_features = (int(n) for n in reversed(tensor.shape.tolist()))
    kind = tensor.tensor_type.name
    raw = np.asarray(tensor.data, dtype=np.uint8).reshape(-1, {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}[kind])
    d = raw[:, :2].copy().view(np.float16)[:, 0].astype(np.float32)
    groups = (out_features, in_features // KEPT_GROUP)
    if kind == "Q8_0":
        return {"": raw[:, 2:].view(np.int8).reshape(out_features, in_features), "_scale": d.reshape(groups)}
    offset = raw[:, 2:4].copy().view(np.float16)[:, 0].astype(np.float32) if kind == "Q4_1" else -8 * d
    nibbles = raw[:, 4:] if kind == "Q4_1" else raw[:, 2:]
    q = np.concatenate([nibbles & 15, nibbles >> 4], axis=1).astype(np.int8)
    return {"": q.reshape(out_features, in_features), "_scale": d.reshape(groups), "_offset": offset.reshape(groups)}


def dequantize(tensor):
    """A GGUF tensor as a float32 numpy array in HF (row-major, [out, in]) layout."""
    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return np.ascontiguousarray(data, dtype=np.float32).reshape(tuple(int(n) for n in reversed(tensor.shape.tolist())))


def unpermute(weight, n_head):
    """Undo llama.cpp's per-head rotary row interleave: rows (i, half) pairs back to [first half, second half]."""
    rows = weight.shape[0]
    w = weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:])
    return np.ascontiguousarray(w.swapaxes(1, 2).reshape(weight.shape))


def convert_tensors(reader, cfg, keep_quant=False):
    """Dequantize every tensor with a tqdm bar and return {hf_name: float32 array}; with `keep_quant` the layer
    projections (check_keepable) as their int8 values `name` with `name`_scale (and int4's `name`_offset)."""
    out = {}
    for t in tqdm(reader.tensors, desc="converting tensors", unit="tensor"):
        name = hf_name(t.name)
        if not name:
            continue
        kept = keep_quant and name.endswith("_proj.weight")
        arrays = kept_blocks(t) if kept else {"": dequantize(t)}
        for suffix, w in arrays.items():
            if name.endswith("q_proj.weight"):
                w = unpermute(w, cfg["num_attention_heads"])
            elif name.endswith("k_proj.weight"):
                w = unpermute(w, cfg["num_key_value_heads"])
            out[name + suffix] = w
    return out


def build_tokenizer(reader):
    """A `tokenizers.Tokenizer` from tokenizer.ggml.* (gpt2 byte-level BPE, or llama SentencePiece as BPE)."""
    kind = field(reader, "tokenizer.ggml.model")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    vocab = {tok: i for i, tok in enumerate(tokens)}
    unk_id = field(reader, "tokenizer.ggml.unknown_token_id", None)
    if kind == "gpt2":
        merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
        tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False))
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        pre = field(reader, "tokenizer.ggml.pre", "default")
        if pre in DIGIT_SPLIT_PRES:  # llama.cpp: every \p{N} on its own, then the GPT-2 regex
            byte_level = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        elif pre in ("llama-bpe", "llama3"):
            byte_level = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_REGEX), "isolated"),
                                                  pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        elif pre not in ("default", "gpt2", "gpt-2"):
            print(f"warning: pre-tokenizer '{pre}' is not known here; using GPT-2 byte-level rules", file=sys.stderr)
        tok.pre_tokenizer = byte_level
        tok.decoder = decoders.ByteLevel()
    elif kind == "llama":
        scores = field(reader, "tokenizer.ggml.scores")
        unk = tokens[unk_id] if unk_id is not None else None
        tok = Tokenizer(models.BPE(vocab, spm_merges(tokens, scores, types, vocab), unk_token=unk,
                                   fuse_unk=True, byte_fallback=True))
        prefix = bool(field(reader, "tokenizer.ggml.add_space_prefix", True))
        # like sentencepiece / llama.cpp: spaces become ▁ and every text run (start, after a special token) gets one
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁")] * prefix + [normalizers.Replace(" ", "▁")])
        steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        tok.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    else:
        raise UserError(f"tokenizer model '{kind}' is not supported (supported: gpt2, llama)")
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, ty in enumerate(types) if ty in (CONTROL, UNKNOWN)])
    tok.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                    for i, ty in enumerate(types) if ty == USER_DEFINED])
    flags = {k: bool(field(reader, f"tokenizer.ggml.add_{k}_token", kind == "llama" and k == "bos"))
             for k in ("bos", "eos")}
    bos, eos = (field(reader, f"tokenizer.ggml.{k}_token_id", None) if flags[k] else None for k in ("bos", "eos"))
    if bos is not None or eos is not None:  # BOS/EOS around every sequence, as llama.cpp adds them

        def wrap(seq, type_id):
            ends = [[f"{tokens[i]}:{type_id}"] if i is not None else [] for i in (bos, eos)]
            return ends[0] + [f"${seq}:{type_id}"] + ends[1]
        tok.post_processor = processors.TemplateProcessing(
            single=wrap("A", 0), pair=wrap("A", 0) + wrap("B", 1),
            special_tokens=[(tokens[i], i) for i in {bos, eos} - {None}])
    return tok, flags


def spm_merges(tokens, scores, types, vocab):
    """BPE merges equivalent to SentencePiece BPE: every split of a normal piece, best-scoring result first."""
    found = []
    for i, piece in enumerate(tokens):
        if types[i] != 1:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                found.append((-scores[i], i, vocab[left], vocab[right], left, right))
    return [(f[4], f[5]) for f in sorted(found)]


def tokenizer_files(reader, cfg, flags):
    """(tokenizer_config, generation_config) dicts from the tokenizer metadata."""
    tokens = field(reader, "tokenizer.ggml.tokens")
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg["max_position_embeddings"],
               "add_bos_token": flags["bos"], "add_eos_token": flags["eos"], "clean_up_tokenization_spaces": False}
    for key, meta in (("bos", "bos"), ("eos", "eos"), ("pad", "padding"), ("unk", "unknown")):
        idx = field(reader, f"tokenizer.ggml.{meta}_token_id", None)
        if idx is not None and 0 <= int(idx) < len(tokens):
            tok_cfg[f"{key}_token"] = tokens[int(idx)]
    template = field(reader, "tokenizer.chat_template", None)
    if template:
        tok_cfg["chat_template"] = template
    gen = {k: cfg[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in cfg}
    return tok_cfg, gen


def check_output(out, overwrite):
    """UserError when the output path is a file, or a non-empty directory without --overwrite."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output path {out} exists and is not a directory (choose another --output_path)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"output directory {out} is not empty (pass --overwrite to replace it, or choose another path)")


def convert(gguf_path, output_path, overwrite=False, keep_quant=False):
    """Convert `gguf_path` into an HF Llama checkpoint at `output_path`; returns the output Path. With
    `keep_quant` the layer projections stay quantized in groups of 32 (weight_only_int4 from Q4_0 / Q4_1,
    weight_only_int8 from Q8_0; config.json says so under QUANTIZATION_KEY): a checkpoint only export_model.py
    reads."""
    out = Path(output_path).resolve()
    check_output(out, overwrite)
    reader = open_gguf(gguf_path)
    cfg = build_config(reader)
    check_tensors(reader, cfg)
    if keep_quant:
        cfg[QUANTIZATION_KEY] = {"quant_type": check_keepable(reader), "group_size": KEPT_GROUP}
    tokenizer, flags = build_tokenizer(reader)
    tok_cfg, gen_cfg = tokenizer_files(reader, cfg, flags)

    with atomic_directory(out, before_swap=lambda: check_output(out, overwrite)) as tmp:
        save_file(convert_tensors(reader, cfg, keep_quant), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save(str(tmp / "tokenizer.json"))
        files = {"config.json": cfg, "tokenizer_config.json": tok_cfg, "generation_config.json": gen_cfg}
        for name, data in files.items():
            (tmp / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
