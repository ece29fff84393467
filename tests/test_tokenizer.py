"""paddlellm.tokenizer against transformers 5 (AutoTokenizer) on tokenizers built in the tests."""
import json
import re

import pytest
import transformers

from paddlellm.errors import UserError
from paddlellm.tokenizer import load_tokenizer

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! How are you today? I am fine, thanks.",
    "Numbers: 1234567890 and 3.14159, dates like 2024-05-01.",
    "def add(a, b):\n    return a + b\n",
    "Unicode: café, naïve, Über, señor.",
    "Llamas live in the mountains and eat grass all day long.",
]
TEXTS = [
    "Hello world", "Hello world!", " leading space", "trailing space ", "multiple   spaces\tand\ttabs",
    "line one\nline two\r\n", "numbers 1234567890 and 3.14", "Ünïcödé çàfé naïve", "日本語のテキスト",
    "emoji 🦙🚀👍🏽", "", " ", "don't stop , ok ?", "a" * 40, "x▁y",
]
BPE_TEXTS = TEXTS + ["<|im_start|>user\nhi<|im_end|>", "text<|endoftext|>  more", "<|im_end|>"]
SPM_TEXTS = TEXTS + ["<s>Hello</s> there", "end</s>", "<unk> and <s>  two"]
PLAIN = ["Hello world", "The quick brown fox.", "multiple   spaces\tand\ttabs", "Ünïcödé çàfé 🦙", "line\nbreak 42"]
MESSAGES = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "Hi 🦙, what's 2+2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And \"quoted\" <b>html</b>?"},
]


def write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")


def bpe_tokenizer(path, post_processor="bytelevel", **config):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=350, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 5, trainer)
    if post_processor == "bytelevel":
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    elif post_processor == "bos":
        tok.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    tok.save(str(path / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "chat_template": CHATML, **config}
    write_json(path / "tokenizer_config.json", config)
    return path


def spm_tokenizer(path, llama2_options=True, **config):
    import sentencepiece

    path.mkdir(parents=True, exist_ok=True)
    (path / "corpus.txt").write_text("\n".join(CORPUS * 20), encoding="utf-8")
    options = dict(normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
                   allow_whitespace_only_pieces=True) if llama2_options else {}
    sentencepiece.SentencePieceTrainer.train(
        input=str(path / "corpus.txt"), model_prefix=str(path / "tokenizer"), vocab_size=340, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2,
        **options)
    (path / "corpus.txt").unlink()
    (path / "tokenizer.vocab").unlink()
    write_json(path / "tokenizer_config.json", {"tokenizer_class": "LlamaTokenizer", **config})
    return path


def compare(path, texts):
    hf = transformers.AutoTokenizer.from_pretrained(str(path))
    ours = load_tokenizer(path)
    for text in texts:
        for special in (True, False):
            ids = hf.encode(text, add_special_tokens=special)
            assert ours.encode(text, add_special_tokens=special) == ids, (text, special)
            for skip in (True, False):
                assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), (text, skip)
    assert ours.vocab_size == len(hf)
    return hf, ours


# ---- tokenizer.json ----------------------------------------------------------------------------------


@pytest.mark.parametrize("post_processor, config", [
    ("bytelevel", {"pad_token": "<|endoftext|>"}),
    ("none", {"bos_token": "<|endoftext|>", "clean_up_tokenization_spaces": True}),
    ("bos", {"bos_token": "<|endoftext|>"}),
    # transformers 5 ignores add_bos_token/add_eos_token when tokenizer.json exists
    ("bytelevel", {"bos_token": "<|endoftext|>", "add_bos_token": True, "add_eos_token": True}),
], ids=["bytelevel", "no-post-processor", "template-bos", "add-bos-ignored"])
def test_tokenizer_json_matches_hf(tmp_path, post_processor, config):
    hf, ours = compare(bpe_tokenizer(tmp_path, post_processor, **config), BPE_TEXTS)
    for text in PLAIN:
        assert ours.decode(ours.encode(text)) == text
    assert ours.bos_token_id == hf.bos_token_id
    assert ours.eos_token_ids == [hf.eos_token_id]
    assert ours.apply_chat_template(MESSAGES) == hf.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert ours.apply_chat_template(MESSAGES[:2], add_generation_prompt=False) == hf.apply_chat_template(
        MESSAGES[:2], tokenize=False, add_generation_prompt=False)


def test_special_ids_from_config_files(tmp_path):
    path = bpe_tokenizer(tmp_path)
    write_json(path / "generation_config.json", {"eos_token_id": [2, 0], "bos_token_id": 1})
    write_json(path / "config.json", {"eos_token_id": 7})
    ours = load_tokenizer(path)
    assert ours.eos_token_ids == [2, 0, 7]
    assert ours.pad_token_id == 2  # no pad_token: the first eos
    assert ours.bos_token_id == 1  # no bos_token: generation_config.json
    write_json(path / "tokenizer_config.json", {"eos_token": {"content": "<|im_end|>", "special": True},
                                                "pad_token": "<|endoftext|>"})
    assert load_tokenizer(path).pad_token_id == 0


def test_chat_template_variants(tmp_path):
    template = "{% for m in messages %}[{{ m['role'] }}|{{ m['content'] | tojson }}]{% endfor %}{{ bos_token }}"
    path = bpe_tokenizer(tmp_path, bos_token="<|endoftext|>",
                         chat_template=[{"name": "tool_use", "template": "tools"}, {"name": "default", "template": template}])
    hf = transformers.AutoTokenizer.from_pretrained(str(path))
    ours = load_tokenizer(path)
    assert ours.apply_chat_template(MESSAGES) == hf.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert ours.apply_chat_template(MESSAGES[:1]) == '[system|"You are brief."]<|endoftext|>'
    (path / "chat_template.jinja").write_text("{{ raise_exception('only ' + messages[0]['role']) }}")
    with pytest.raises(UserError, match="only system"):
        load_tokenizer(path).apply_chat_template(MESSAGES)


def test_no_chat_template(tmp_path):
    path = bpe_tokenizer(tmp_path, chat_template=None)
    ours = load_tokenizer(path)
    assert not ours.has_chat_template
    with pytest.raises(UserError, match="no chat template"):
        ours.apply_chat_template(MESSAGES)


# ---- SentencePiece tokenizer.model ------------------------------------------------------------------


@pytest.mark.parametrize("llama2_options", [True, False], ids=["llama2-options", "default-options"])
def test_sentencepiece_matches_hf(tmp_path, llama2_options):
    path = spm_tokenizer(tmp_path, llama2_options, add_bos_token=True, bos_token="<s>", eos_token="</s>")
    hf, ours = compare(path, SPM_TEXTS)
    assert type(hf).__name__ == "LlamaTokenizer"
    assert (ours.bos_token_id, ours.eos_token_ids, ours.pad_token_id) == (1, [2], 2)
    for text in PLAIN:
        assert ours.decode(ours.encode(text)) == text
        assert ours.encode(text)[0] == 1


@pytest.mark.parametrize("config", [
    {"add_bos_token": False, "add_eos_token": True},
    {"add_bos_token": True, "legacy": True},
    {"add_bos_token": True, "add_prefix_space": False},
], ids=["eos", "legacy", "no-prefix-space"])
def test_sentencepiece_options_match_hf(tmp_path, config):
    compare(spm_tokenizer(tmp_path, **config), SPM_TEXTS)


def test_sentencepiece_adds_bos_by_default(tmp_path):
    """Llama-2 behaviour: BOS unless tokenizer_config.json says otherwise (transformers 5 adds none here)."""
    ours = load_tokenizer(spm_tokenizer(tmp_path))
    assert ours.encode("Hello")[0] == ours.bos_token_id == 1
    assert ours.encode("Hello", add_special_tokens=False)[0] != 1


def test_tokenizer_json_preferred(tmp_path):
    spm_tokenizer(tmp_path, add_bos_token=True)
    bpe_tokenizer(tmp_path)
    assert type(load_tokenizer(tmp_path)).__name__ == "JsonTokenizer"


# ---- user errors --------------------------------------------------------------------------------------


def test_missing_files(tmp_path):
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "nope"))):
        load_tokenizer(tmp_path / "nope")
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": CHATML})
    with pytest.raises(UserError, match="tokenizer.json nor tokenizer.model") as info:
        load_tokenizer(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_corrupt_files(tmp_path):
    path = bpe_tokenizer(tmp_path)
    (path / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(UserError, match="tokenizer_config.json is not valid JSON"):
        load_tokenizer(path)
    (path / "tokenizer_config.json").write_text("{}")
    (path / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(UserError, match="tokenizer.json"):
        load_tokenizer(path)
