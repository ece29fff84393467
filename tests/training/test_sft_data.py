"""SFT data: row checks with FILE:LINE errors, label masking, truncation, and the loss paddleformers computes."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from paddlellm.errors import UserError
from paddlellm.tokenizer import load_tokenizer
from paddlellm.training.sft_data import SFTDataset, collate_sft, read_sft_file, tokenize_sft_example

DEMO = Path(__file__).resolve().parents[2] / "llm" / "data" / "sft_demo"
GOOD = '{"src": "What is 2 + 2?", "tgt": "4"}'
MULTI = {"src": ["Name a fruit.", "Another one?"], "tgt": ["An apple.", "A pear, which is sweet."]}


@pytest.fixture(scope="module")
def chatml(tiny_llama):
    return load_tokenizer(tiny_llama)


def tokenizer_with_template(tiny_llama, tmp_path, template):
    """The tiny tokenizer with another chat template (None: none at all)."""
    shutil.copy(tiny_llama / "tokenizer.json", tmp_path / "tokenizer.json")
    config = json.loads((tiny_llama / "tokenizer_config.json").read_text())
    config.pop("chat_template")
    if template is not None:
        config["chat_template"] = template
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return load_tokenizer(tmp_path)


def runs(example):
    """The trained-on tokens as runs of consecutive label positions; also checks the pre-shifted layout."""
    ids, labels = example["input_ids"], example["labels"]
    assert len(ids) == len(labels) and labels[-1] == -100
    assert all(label in (-100, ids[t + 1]) for t, label in enumerate(labels[:-1]))
    groups, previous = [], -2
    for t, label in enumerate(labels):
        if label != -100:
            if t != previous + 1:
                groups.append([])
            groups[-1].append(label)
            previous = t
    return groups


def decode(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=False)


BAD_ROWS = [
    ("not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"tgt": "a"}', 'missing "src"'),
    ('{"src": "a"}', 'missing "tgt"'),
    ('{"src": 3, "tgt": "a"}', '"src" must be a string or a list of strings, got int'),
    ('{"src": "a", "tgt": null}', '"tgt" must be a string or a list of strings, got NoneType'),
    ('{"src": "", "tgt": "a"}', '"src" is empty'),
    ('{"src": "a", "tgt": "  "}', '"tgt" is empty'),
    ('{"src": [], "tgt": []}', '"src" is an empty list'),
    ('{"src": ["a", ""], "tgt": ["b", "c"]}', '"src"[1] is empty'),
    ('{"src": ["a", "b"], "tgt": ["c", 5]}', '"tgt"[1] must be a string, got int'),
    ('{"src": ["a", "b"], "tgt": ["c"]}', '"src" has 2 turns but "tgt" has 1'),
]


@pytest.mark.parametrize("line,problem", BAD_ROWS, ids=[p for _, p in BAD_ROWS])
def test_bad_row_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "train.json"
    path.write_text(f"{GOOD}\n\n{line}\n{GOOD}\n[]\n")  # the bad row is line 3; line 5 is bad too
    with pytest.raises(UserError) as info:
        read_sft_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: {problem}"), message
    assert "\n" not in message and message.endswith(")")


@pytest.mark.parametrize("content,problem", [(None, "does not exist"), ("", "has no examples"),
                                             ("\n  \n", "has no examples"), (b"\xff\xfe{}\n", "not UTF-8")])
def test_bad_file(tmp_path, content, problem):
    path = tmp_path / "train.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=problem) as info:
        read_sft_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_rows_are_normalized_and_kept(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(f"{GOOD}\n\n{json.dumps(MULTI)}\n")
    rows = read_sft_file(path)
    assert rows == [{"src": ["What is 2 + 2?"], "tgt": ["4"], "line": 1}, {**MULTI, "line": 3}]


def test_demo_files_parse():
    train, dev = read_sft_file(DEMO / "train.json"), read_sft_file(DEMO / "dev.json")
    assert len(train) >= 70 and len(dev) >= 10
    assert sum(len(row["src"]) > 1 for row in train) >= 8
    assert all(len(reply.split()) < 40 for row in train + dev for reply in row["tgt"])


def test_chatml_single_turn(chatml):
    row = {"src": ["What is the capital of France?"], "tgt": ["Paris is the capital of France."]}
    example = tokenize_sft_example(chatml, row, 512)
    assert [decode(chatml, g) for g in runs(example)] == ["Paris is the capital of France.<|im_end|>"]
    messages = [{"role": "user", "content": row["src"][0]}, {"role": "assistant", "content": row["tgt"][0]}]
    # the whole rendering, less the "\n" ChatML puts after the final <|im_end|> (never generated, not trained)
    assert decode(chatml, example["input_ids"]) + "\n" == chatml.apply_chat_template(messages, False)


def test_chatml_multi_turn(chatml):
    example = tokenize_sft_example(chatml, MULTI, 512)
    assert [decode(chatml, g) for g in runs(example)] == [reply + "<|im_end|>" for reply in MULTI["tgt"]]
    text = decode(chatml, example["input_ids"])
    assert text.count("<|im_start|>") == 4 and "<|im_end|>\n<|im_start|>user\nAnother one?" in text


def test_plain_src_tgt_eos(tiny_llama, tmp_path):
    plain = tokenizer_with_template(tiny_llama, tmp_path, None)
    example = tokenize_sft_example(plain, {"src": "Say hi.", "tgt": "Hi there!"}, 512)
    assert [decode(plain, g) for g in runs(example)] == ["Hi there!<|im_end|>"]
    assert decode(plain, example["input_ids"]) == "Say hi.Hi there!<|im_end|>"
    example = tokenize_sft_example(plain, MULTI, 512)
    assert [decode(plain, g) for g in runs(example)] == [reply + "<|im_end|>" for reply in MULTI["tgt"]]


def test_template_without_end_of_turn_gets_eos(tiny_llama, tmp_path):
    template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    tokenizer = tokenizer_with_template(tiny_llama, tmp_path, template)
    example = tokenize_sft_example(tokenizer, MULTI, 512)
    assert [decode(tokenizer, g) for g in runs(example)] == ["An apple.\n", "A pear, which is sweet.\n<|im_end|>"]


def test_template_that_rewrites_history_is_refused(tiny_llama, tmp_path):
    template = ("{{ messages | length }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant: {% endif %}")
    tokenizer = tokenizer_with_template(tiny_llama, tmp_path, template)
    with pytest.raises(UserError, match="chat template of .* does not start with") as info:
        tokenize_sft_example(tokenizer, MULTI, 512)
    assert str(tmp_path) in str(info.value)


def test_truncation(chatml):
    row = {"src": "Tell me something long: " + "word " * 30, "tgt": "A fairly long answer to that."}
    full = tokenize_sft_example(chatml, row, 1024)
    prompt = next(t for t, label in enumerate(full["labels"]) if label != -100) + 1  # first target position
    cut = tokenize_sft_example(chatml, row, prompt + 3)
    assert cut["input_ids"] == full["input_ids"][:prompt + 3] and sum(label != -100 for label in cut["labels"]) == 3
    assert tokenize_sft_example(chatml, row, prompt) is None  # not one target token fits
    short = tokenize_sft_example(chatml, row, 1024, src_length=5)
    assert short["input_ids"] == full["input_ids"][prompt - 5:] and short["labels"] == full["labels"][prompt - 5:]
    both = tokenize_sft_example(chatml, row, 8, src_length=5)
    assert both["input_ids"] == full["input_ids"][prompt - 5:prompt + 3]
    with pytest.raises(UserError, match="max_length"):
        tokenize_sft_example(chatml, row, 1)


def test_dataset_from_file_reports_rows_that_do_not_fit(chatml, tmp_path):
    path = tmp_path / "train.json"
    path.write_text(f"{GOOD}\n{json.dumps({'src': 'x ' * 100, 'tgt': 'y'})}\n{GOOD}\n")
    dataset = SFTDataset.from_file(path, chatml, max_length=64)
    assert len(dataset) == 2 and dataset.skipped == [2]


def test_paddleformers_loss_is_mean_ce_over_target_tokens(chatml):
    """Pre-shifted labels, -100 ignored, right padding without attention_mask: paddleformers' own loss on a
    collated batch equals the mean next-token cross-entropy over exactly the target tokens, each sequence
    run alone and unpadded."""
    import paddle
    import paddle.nn.functional as F
    from paddleformers.transformers import LlamaConfig, LlamaForCausalLM

    rows = [{"src": ["Hi"], "tgt": ["Hello, friend."]}, MULTI, {"src": ["A much longer question, about things?"],
                                                             "tgt": ["Short."]}]
    examples = [tokenize_sft_example(chatml, row, 512) for row in rows]
    batch = collate_sft(examples, chatml.pad_token_id)
    assert sorted(batch) == ["input_ids", "labels"] and batch["input_ids"].dtype == paddle.int64
    assert len({len(e["input_ids"]) for e in examples}) == 3  # really padded
    paddle.seed(0)
    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, fuse_rms_norm=False)
    model = LlamaForCausalLM(config)
    model.eval()
    with paddle.no_grad():
        loss = float(model(batch["input_ids"], labels=batch["labels"])[0])
        losses = []
        for example in examples:
            logits = model(paddle.to_tensor([example["input_ids"]]))[0][0]
            logp = F.log_softmax(logits.astype("float32"), axis=-1).numpy()
            for t, label in enumerate(example["labels"]):
                if label != -100:
                    assert label == example["input_ids"][t + 1]
                    losses.append(-logp[t, label])
    assert len(losses) == sum(len(g) for e in examples for g in runs(e))
    np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-5)
