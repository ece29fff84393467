"""GGUF -> HF Llama conversion, checked against transformers' own GGUF loader and sentencepiece."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers
from gguf import GGMLQuantizationType as Q

from paddlellm.convert.gguf import convert
from paddlellm.errors import UserError
from paddlellm.reference import reference_gguf

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "llm" / "tools" / "convert_gguf.py"
TEXTS = [
    "Hello world", "Hello, World! How are you today?", "  leading and   multiple   spaces  ", "trailing space ",
    "numbers 1234567 and 3.14159, 2024-01-31", "héllo naïve café façade", "日本語のテキストと中文", "Привет, мир",
    "مرحبا بالعالم", "emoji 😀🎉👍🏽 and 🧑‍🤝‍🧑", "def f(x):\n    return x ** 2  # square\n", "\t\ttabs\n\nnewlines\r\n",
    "<|im_start|>user\nhi there<|im_end|>\n", "before<|endoftext|>after", "I'm sure they'll say we've can't",
    "“quotes” — dashes – and ellipsis…", "a" * 40, "https://example.com/path?q=1&r=two#frag", "$100,000.00 #tag @user",
    "", " ", "\n",
]


def hf_gguf(path, what):
    """transformers' own GGUF loading of `path` (the independent reference)."""
    path = Path(path)
    if what == "model":
        return transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                 torch_dtype=torch.float32)
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def run_cli(*args):
    """Run the converter CLI with the current interpreter; returns CompletedProcess."""
    return subprocess.run([sys.executable, str(CLI), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


# ---------------------------------------------------------------- reference model (SmolLM2-135M, Q4_1)


@pytest.fixture(scope="module")
def ref_path():
    return reference_gguf()


@pytest.fixture(scope="module")
def converted(ref_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "hf"
    proc = run_cli("--gguf", ref_path, "--output_path", out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def hf_model(ref_path):
    return hf_gguf(ref_path, "model")


def test_output_files(converted):
    names = sorted(p.name for p in converted.iterdir())
    assert names == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json"]
    assert not [p for p in converted.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left behind
    gen = json.loads((converted / "generation_config.json").read_text())
    assert gen == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}


def test_config_matches_hf(converted, hf_model):
    ours = json.loads((converted / "config.json").read_text())
    ref = hf_model.config
    assert ours["architectures"] == ["LlamaForCausalLM"] and ours["model_type"] == "llama"
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "tie_word_embeddings",
                "bos_token_id", "eos_token_id", "pad_token_id"):
        assert ours[key] == getattr(ref, key), key
    assert ours["rms_norm_eps"] == pytest.approx(ref.rms_norm_eps, rel=1e-6)
    assert ours["rope_theta"] == ref.rope_parameters["rope_theta"]
    assert ours["torch_dtype"] == "float32" and "rope_scaling" not in ours and ours["tie_word_embeddings"]


def test_weights_match_hf(converted, hf_model):
    ours = transformers.AutoModelForCausalLM.from_pretrained(str(converted))
    assert ours.dtype == torch.float32
    a, b = hf_model.state_dict(), ours.state_dict()
    assert set(a) == set(b)
    for name in a:
        assert a[name].shape == b[name].shape, name
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), name
    ids = torch.tensor([[1, 9690, 198, 19556, 905, 30]])
    with torch.no_grad():
        assert torch.allclose(hf_model(ids).logits, ours(ids).logits, atol=1e-4)


@pytest.fixture(scope="module")
def tokenizers_pair(converted, ref_path):
    return transformers.AutoTokenizer.from_pretrained(str(converted)), hf_gguf(ref_path, "tokenizer")


def test_tokenizer_ids_and_decode_match_hf(tokenizers_pair):
    ours, ref = tokenizers_pair
    for text in TEXTS:
        ids = ours(text, add_special_tokens=False)["input_ids"]
        assert ids == ref(text, add_special_tokens=False)["input_ids"], text
        assert ours.decode(ids) == ref.decode(ids) == text, text
        assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True), text
    assert ours("<|im_start|>")["input_ids"] == [1]


def test_tokenizer_special_tokens(tokenizers_pair):
    ours, _ = tokenizers_pair
    # From the GGUF metadata. (transformers' GGUF loader says eos=<|im_start|> and prepends a BOS although
    # tokenizer.ggml.add_bos_token is false, so these are checked against the file, not against it.)
    assert (ours.bos_token, ours.eos_token, ours.pad_token, ours.unk_token) == (
        "<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    assert ours("hello")["input_ids"] == ours("hello", add_special_tokens=False)["input_ids"]
    assert ours.model_max_length == 8192
    specials = {t.content for t in ours.backend_tokenizer.get_added_tokens_decoder().values() if t.special}
    assert {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<empty_output>"} <= specials


def test_chat_template_matches_hf(tokenizers_pair):
    ours, ref = tokenizers_pair
    msgs = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4, of course."}]
    text = ours.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")


# ---------------------------------------------------------------- synthetic GGUF files

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 64, 4, 2, 96, 2
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "l l", "e ll", "h ell", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld",
          "i n", "Ġ in", "Ġ a", "Ġa n", "Ġan d", "1 2"]


def byte_chars():
    """The 256 printable stand-ins GPT-2 byte-level BPE uses for raw bytes (index = byte value)."""
    direct = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    shifted = iter(range(0x100, 0x200))
    return [chr(b) if b in direct else chr(next(shifted)) for b in range(256)]


def gpt2_vocab():
    """Tokens and token types of the synthetic byte-level vocabulary."""
    tokens = SPECIALS + byte_chars() + [m.replace(" ", "") for m in MERGES]
    return tokens, [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))


def to_gguf_layout(w, n_head):
    """llama.cpp's Q/K row order: within each head, interleave the two rotary halves."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, -1).swapaxes(1, 2).reshape(w.shape)


def gpt2_metadata(w, pre="default"):
    """Tokenizer metadata of the synthetic byte-level BPE vocabulary."""
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_merges(MERGES)


def write_gguf(path, qtypes=None, tokens=None, types=None, tokenizer=gpt2_metadata, extra=(), hidden=HIDDEN,
               heads=HEADS, tensors=None, theta=10000.0, add_bos=False):
    """Write a tiny llama GGUF; returns {gguf tensor name: (HF-layout float32 weight, GGUF qtype)}."""
    qtypes, arch = qtypes or {}, "llama"
    if tokens is None:
        tokens, types = gpt2_vocab()
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny test llama")
    for key, value in {"block_count": LAYERS, "context_length": 256, "embedding_length": hidden,
                       "feed_forward_length": FFN, "attention.head_count": heads,
                       "attention.head_count_kv": KV_HEADS, "vocab_size": len(tokens)}.items():
        w.add_uint32(f"{arch}.{key}", value)
    w.add_float32(f"{arch}.rope.freq_base", theta)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    for add in (tokenizer, *extra):
        add(w)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(add_bos)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                        "{% endfor %}")
    rng = np.random.default_rng(0)
    d = hidden // heads
    shapes = {"token_embd.weight": (len(tokens), hidden), "output_norm.weight": (hidden,),
              "output.weight": (len(tokens), hidden)}
    for i in range(LAYERS):
        shapes.update({f"blk.{i}.attn_norm.weight": (hidden,), f"blk.{i}.ffn_norm.weight": (hidden,),
                       f"blk.{i}.attn_q.weight": (heads * d, hidden), f"blk.{i}.attn_k.weight": (KV_HEADS * d, hidden),
                       f"blk.{i}.attn_v.weight": (KV_HEADS * d, hidden),
                       f"blk.{i}.attn_output.weight": (hidden, heads * d),
                       f"blk.{i}.ffn_gate.weight": (FFN, hidden), f"blk.{i}.ffn_up.weight": (FFN, hidden),
                       f"blk.{i}.ffn_down.weight": (hidden, FFN)})
    written = {}
    for name, shape in (tensors or shapes).items():
        hf = rng.standard_normal(shape).astype(np.float32) * 0.2
        stored = hf
        if ".attn_q." in name or ".attn_k." in name:
            stored = to_gguf_layout(hf, heads if ".attn_q." in name else KV_HEADS)
        qtype = qtypes.get(name, Q.F32)
        data = gguf.quants.quantize(np.ascontiguousarray(stored), qtype)
        w.add_tensor(name, data, raw_dtype=qtype)
        written[name] = (hf, qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return written


SYNTH_TYPES = {"blk.0.attn_q.weight": Q.Q8_0, "blk.0.attn_k.weight": Q.Q8_0, "blk.0.ffn_up.weight": Q.Q8_0,
               "token_embd.weight": Q.Q8_0, "blk.1.attn_k.weight": Q.F16, "blk.1.ffn_down.weight": Q.Q4_0,
               "blk.1.attn_q.weight": Q.Q4_1, "output.weight": Q.BF16}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic")
    written = write_gguf(base / "tiny.gguf", SYNTH_TYPES)
    out = convert(base / "tiny.gguf", base / "hf")
    return base / "tiny.gguf", out, written


def test_synthetic_round_trip(synthetic):
    from safetensors.numpy import load_file

    path, out, written = synthetic
    tensors = load_file(str(out / "model.safetensors"))
    hf_names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
                "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
                "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    assert len(tensors) == len(written)
    for name, (hf, qtype) in written.items():
        parts = name.split(".")
        key = (f"model.layers.{parts[1]}.{hf_names[parts[2]]}.weight" if parts[0] == "blk"
               else f"{hf_names[parts[0]]}.weight")
        got = tensors[key]
        assert got.dtype == np.float32 and got.shape == hf.shape, name
        if qtype == Q.F32:
            np.testing.assert_array_equal(got, hf, err_msg=name)
        else:  # equal to the de-quantized stored values, de-permuted back to HF order
            tol = {Q.Q8_0: 0.01, Q.F16: 1e-3, Q.BF16: 0.01, Q.Q4_0: 0.15, Q.Q4_1: 0.1}[qtype]
            np.testing.assert_allclose(got, hf, atol=tol, err_msg=name)
            stored = hf if not (".attn_q." in name or ".attn_k." in name) else \
                to_gguf_layout(hf, HEADS if ".attn_q." in name else KV_HEADS)
            expect = gguf.quants.dequantize(gguf.quants.quantize(np.ascontiguousarray(stored), qtype), qtype)
            if stored is not hf:
                n = HEADS if ".attn_q." in name else KV_HEADS
                expect = expect.reshape(n, -1, 2, HIDDEN).swapaxes(1, 2).reshape(hf.shape)
            np.testing.assert_array_equal(got, expect, err_msg=name)
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["num_key_value_heads"], cfg["head_dim"], cfg["tie_word_embeddings"]) == (2, 16, False)


def test_synthetic_matches_hf(synthetic):
    path, out, _ = synthetic
    ours = transformers.AutoModelForCausalLM.from_pretrained(str(out))
    ref = hf_gguf(path, "model")
    a, b = ref.state_dict(), ours.state_dict()
    assert set(a) == set(b)
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-6), name
    tok, ref_tok = transformers.AutoTokenizer.from_pretrained(str(out)), hf_gguf(path, "tokenizer")
    for text in ["hello world", "the thin and the 12 hell", " in  and<|im_end|>x", "ünï 😀"]:
        ids = tok(text)["input_ids"]
        assert ids == ref_tok(text, add_special_tokens=False)["input_ids"], text
        assert tok.decode(ids) == text
    assert tok(" world")["input_ids"] == [len(SPECIALS) + 256 + MERGES.index("Ġwor ld")]


@pytest.mark.parametrize("pre, expect", [
    ("default", ["a", "Ġ", "12", "12", "Ġ", "b"]),  # GPT-2 regex: " 1212" is one chunk
    ("smollm", ["a", "Ġ", "1", "2", "1", "2", "Ġ", "b"]),  # llama.cpp smollm: each digit alone
    ("llama-bpe", ["a", "Ġ", "12", "1", "2", "Ġ", "b"]),  # Llama 3: digits in groups of up to three
])
def test_pre_tokenizer_follows_gguf_pre(tmp_path, pre, expect):
    import paddlellm.convert.gguf as conv

    write_gguf(tmp_path / "p.gguf", tokenizer=lambda w: gpt2_metadata(w, pre),
               tensors={"token_embd.weight": (len(gpt2_vocab()[0]), HIDDEN)})
    tok, _ = conv.build_tokenizer(conv.open_gguf(tmp_path / "p.gguf"))
    assert tok.encode("a 1212 b").tokens == expect
    assert tok.decode(tok.encode("a 1212 b").ids) == "a 1212 b"


def test_add_bos_token_is_honoured(tmp_path):
    write_gguf(tmp_path / "b.gguf", add_bos=True)
    out = convert(tmp_path / "b.gguf", tmp_path / "hf")
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    assert tok("hello")["input_ids"] == [1] + tok("hello", add_special_tokens=False)["input_ids"]
    assert json.loads((out / "tokenizer_config.json").read_text())["add_bos_token"] is True


def test_llama3_rope_scaling_recovered(tmp_path):
    theta, factor, low, high, orig, d = 500000.0, 8.0, 1.0, 4.0, 8192, 128
    wavelen = 2 * math.pi * theta ** (np.arange(0, d, 2) / d)
    smooth = np.clip((orig / wavelen - low) / (high - low), 0, 1)
    freqs = (1 / ((1 - smooth) / factor + smooth)).astype(np.float32)
    assert ((freqs > 1.001) & (freqs < factor - 0.001)).sum() >= 2  # the fit has a transition band to work on

    def rope(w):
        w.add_tensor("rope_freqs.weight", freqs)
    write_gguf(tmp_path / "r.gguf", extra=[rope], hidden=256, heads=2, theta=theta,
               tensors={"token_embd.weight": (len(gpt2_vocab()[0]), 256)})
    import paddlellm.convert.gguf as conv

    cfg = conv.build_config(conv.open_gguf(tmp_path / "r.gguf"))
    assert cfg["rope_theta"] == theta and cfg["head_dim"] == d
    got = cfg["rope_scaling"]
    assert got["rope_type"] == "llama3" and got["original_max_position_embeddings"] == orig
    assert got["factor"] == pytest.approx(factor) and got["low_freq_factor"] == pytest.approx(low)
    assert got["high_freq_factor"] == pytest.approx(high)


# ---------------------------------------------------------------- SentencePiece ("llama") tokenizer


def test_spm_tokenizer_matches_sentencepiece(tmp_path):
    import io

    import sentencepiece as spm

    corpus = ["The quick brown fox jumps over the lazy dog.", "Hello world, hello there!",
              "Sentencepiece byte fallback handles 😀 and ünïcödé.", "Numbers like 12345 and 3.14 appear too."] * 50
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=model, vocab_size=400,
                                   model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False, add_dummy_prefix=True, bos_id=1, eos_id=2,
                                   unk_id=0, hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    n = sp.get_piece_size()
    tokens = [sp.id_to_piece(i) for i in range(n)]
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1 for i in range(n)]

    def meta(w):
        w.add_tokenizer_model("llama")
        w.add_token_scores([sp.get_score(i) for i in range(n)])
        w.add_unk_token_id(0)
    write_gguf(tmp_path / "spm.gguf", tokens=tokens, types=types, tokenizer=meta,
               tensors={"token_embd.weight": (n, HIDDEN)})
    import paddlellm.convert.gguf as conv

    tok, flags = conv.build_tokenizer(conv.open_gguf(tmp_path / "spm.gguf"))
    assert flags == {"bos": False, "eos": False}
    for text in ["The quick brown fox", "hello  there world", "Numbers 12345!", "ünïcödé 😀 日本", " lead", "x",
                 "line\nbreak\ttab", "ZQXJ unseen", "trailing  ", "The lazy dog jumps over the quick fox."]:
        assert tok.encode(text).ids == sp.encode(text), text
        assert tok.decode(tok.encode(text).ids) == sp.decode(sp.encode(text)), text


# ---------------------------------------------------------------- errors


def test_unsupported_quant_type_names_it(tmp_path):
    path = tmp_path / "k.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    for key, value in {"block_count": 1, "embedding_length": 256, "feed_forward_length": 256,
                       "attention.head_count": 2}.items():
        w.add_uint32(f"llama.{key}", value)
    w.add_tokenizer_model("gpt2")
    w.add_tensor("token_embd.weight", np.zeros((8, 144), np.uint8), raw_dtype=Q.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UserError, match="Q4_K"):
        convert(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_non_llama_architecture(tmp_path):
    path = tmp_path / "g.gguf"
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UserError, match="architecture 'gpt2'"):
        convert(path, tmp_path / "out")


def _assert_clean_failure(proc, parent, expect):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], proc.stderr
    assert not [p for p in parent.iterdir() if p.name.startswith(".")]


def test_cli_missing_file(tmp_path):
    proc = run_cli("--gguf", tmp_path / "nope.gguf", "--output_path", tmp_path / "out")
    _assert_clean_failure(proc, tmp_path, "does not exist")
    assert not (tmp_path / "out").exists()


def test_cli_not_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_text("this is not a gguf file\n" * 10)
    proc = run_cli("--gguf", bad, "--output_path", tmp_path / "out")
    _assert_clean_failure(proc, tmp_path, "is not a GGUF file")
    assert not (tmp_path / "out").exists()


def test_cli_truncated_gguf(tmp_path, synthetic):
    cut = tmp_path / "cut.gguf"
    data = synthetic[0].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    proc = run_cli("--gguf", cut, "--output_path", tmp_path / "out")
    _assert_clean_failure(proc, tmp_path, "truncated or corrupt")
    assert not (tmp_path / "out").exists()


def test_cli_nonempty_output_needs_overwrite(tmp_path, synthetic):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    proc = run_cli("--gguf", synthetic[0], "--output_path", out)
    _assert_clean_failure(proc, tmp_path, "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    proc = run_cli("--gguf", synthetic[0], "--output_path", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_cli_usage_error(tmp_path):
    proc = run_cli("--output_path", tmp_path / "out")
    _assert_clean_failure(proc, tmp_path, "--gguf")


# ---------------------------------------------------------------- --keep_quant: Q4_0 / Q4_1 kept as int4, Q8_0 as int8

PROJECTIONS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
KEPT_TYPES = {  # the projections' blocks, the rest F32
    "weight_only_int4": {f"blk.{i}.{name}.weight": (Q.Q4_0 if (i + j) % 2 else Q.Q4_1) for i in range(LAYERS)
                         for j, name in enumerate(PROJECTIONS)},
    "weight_only_int8": {f"blk.{i}.{name}.weight": Q.Q8_0 for i in range(LAYERS) for name in PROJECTIONS}}


@pytest.fixture(scope="module", params=sorted(KEPT_TYPES))
def kept_pair(request, tmp_path_factory):
    """(quant_type, directory, float conversion, --keep_quant conversion) of a tiny GGUF whose projections are
    Q4_0 and Q4_1 (weight_only_int4), or Q8_0 (weight_only_int8)."""
    base = tmp_path_factory.mktemp(request.param)
    write_gguf(base / "q.gguf", KEPT_TYPES[request.param])
    return (request.param, base, convert(base / "q.gguf", base / "float"),
            convert(base / "q.gguf", base / "kept", keep_quant=True))


def test_keep_quant_stores_the_blocks_as_groups_of_32_exactly(kept_pair):
    """Each projection: int8 values (int4: 0..15) with a scale (int4: and an offset) per output row and 32 inputs,
    and q * scale (+ offset) is the float conversion's weight bit for bit (Q4_0's d * (q - 8), Q4_1's d * q + m and
    Q8_0's d * q in float32): nothing went through a float round trip and re-quantization."""
    from safetensors.numpy import load_file

    quant_type, _, float_dir, kept_dir = kept_pair
    floats, kept = load_file(str(float_dir / "model.safetensors")), load_file(str(kept_dir / "model.safetensors"))
    assert json.loads((kept_dir / "config.json").read_text())["paddlellm_quantization"] == {
        "quant_type": quant_type, "group_size": 32}
    int4 = quant_type == "weight_only_int4"
    suffixes = ("_scale", "_offset") if int4 else ("_scale",)
    projections = [n for n in floats if n.endswith("_proj.weight")]
    assert len(projections) == 7 * LAYERS and set(kept) == set(floats) | {n + s for n in projections for s in suffixes}
    for name in projections:
        q, scale = kept[name], kept[name + "_scale"]
        offset = kept[name + "_offset"] if int4 else np.zeros_like(scale)
        out_features, in_features = floats[name].shape
        assert q.dtype == np.int8 and q.shape == (out_features, in_features)
        assert (0 <= q.min() and q.max() <= 15) if int4 else (q.min() < -64 and q.max() > 64)  # the int8 range used
        assert scale.shape == offset.shape == (out_features, in_features // 32)
        np.testing.assert_array_equal(q * np.repeat(scale, 32, axis=1) + np.repeat(offset, 32, axis=1),
                                      floats[name], err_msg=name)
    for name in set(floats) - set(projections):
        np.testing.assert_array_equal(kept[name], floats[name], err_msg=name)


def test_a_kept_checkpoint_exports_with_the_ggufs_own_values(kept_pair):
    """export_model follows the checkpoint (its type, groups of 32, in the manifest); the portable program
    dequantizes to the float conversion's weights exactly, so its logits are the float export's; the CPU's passes
    pack the kept blocks (every projection fused) and the logits stay within float32 rounding of them."""
    from paddlellm.export.exporter import export_model
    from paddlellm.export.manifest import read_manifest
    from paddlellm.predictor.runners import StaticBlockRunner, prompt_logits

    quant_type, base, float_dir, kept_dir = kept_pair
    exported = {d.name: export_model(d, base / f"inference_{d.name}") for d in (float_dir, kept_dir)}
    manifest = read_manifest(exported["kept"])
    assert (manifest.quant_type, manifest.group_size, manifest.quant_lm_head) == (quant_type, 32, False)
    prompts = [[3, 4, 5, 6], [7]]
    logits = {k: prompt_logits(StaticBlockRunner(v, read_manifest(v), "cpu", 2, passes=[]), prompts)
              for k, v in exported.items()}
    np.testing.assert_allclose(logits["kept"], logits["float"], rtol=0, atol=1e-5)
    if quant_type == "weight_only_int8":  # (int4's kernels quantize the activations: test_passes.py bounds that)
        fused = prompt_logits(StaticBlockRunner(exported["kept"], manifest, "cpu", 2), prompts)
        np.testing.assert_allclose(fused, logits["float"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("flags, message", [
    (dict(quant_type="a8w8"), "(convert_gguf.py --keep_quant): export it without --quant_type"),
    (dict(quant_type="weight_only_int4", group_size=64), "export it without --quant_type"),
    (dict(lora_path="adapter"), "a LoRA adapter merges into float weights"),
])
def test_a_kept_checkpoint_refuses_what_needs_float_weights(kept_pair, tmp_path, flags, message):
    from paddlellm.export.exporter import export_model

    with pytest.raises(UserError, match=re.escape(message)):
        export_model(kept_pair[3], tmp_path / "inference", **flags)
    assert not (tmp_path / "inference").exists()


def test_keep_quant_says_why_mixed_and_float_projections_are_not_kept(tmp_path):
    mixed = dict(KEPT_TYPES["weight_only_int8"], **{"blk.1.ffn_down.weight": Q.Q4_0})
    write_gguf(tmp_path / "mixed.gguf", mixed)
    proc = run_cli("--gguf", tmp_path / "mixed.gguf", "--output_path", tmp_path / "out", "--keep_quant")
    _assert_clean_failure(proc, tmp_path, "--keep_quant: the projections mix Q8_0 and Q4_0 blocks, which an export "
                                          "stores as one type (weight_only_int8 or weight_only_int4)")
    write_gguf(tmp_path / "f32.gguf")
    proc = run_cli("--gguf", tmp_path / "f32.gguf", "--output_path", tmp_path / "out", "--keep_quant")
    assert proc.returncode == 2 and "is F32, not quantized: there is nothing to keep" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_kept_checkpoint_is_for_export_only(kept_pair):
    from paddlellm.models.llama.loader import load_model
    from paddlellm.training.trainer import assign_checkpoint

    with pytest.raises(UserError, match=re.escape("(convert_gguf.py --keep_quant): export it (llm/predict/"
                                                  "export_model.py), then predict with --mode static")):
        load_model(kept_pair[3])
    with pytest.raises(UserError, match=re.escape("training needs float weights")):
        assign_checkpoint(None, kept_pair[3])
