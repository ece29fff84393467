"""SFT data: JSON Lines of src/tgt conversations -> input_ids and labels for paddleformers' LlamaForCausalLM.

Label layout. In paddleformers 1.2.0, LlamaForCausalLM.forward hands `labels` unchanged to its
CriterionLayer (nn/criterion/sft_loss.py), which takes CrossEntropyLoss(logits[:, t], labels[:, t]) at every
position t, with no shift, drops positions whose label is config.ignored_index (default -100) and averages
over the rest. So labels come pre-shifted, as paddleformers' own SFTDataset makes them: input_ids is the
whole sequence, labels[t] is input_ids[t + 1] when that token is trained on and -100 otherwise, and the
last label is -100. (transformers shifts inside the model instead; PaddleNLP's data pipeline pre-shifted.)

Padding. collate_sft pads on the right (pad id / -100) and gives no attention_mask: without one the model
builds a plain causal mask, so a real token never sees the padding after it, and padded positions carry
no loss.

With a chat template, the loss covers each assistant reply and the end-of-turn token the template closes
it with (the last eos id in the rendered reply, e.g. ChatML's <|im_end|>); text after that token (ChatML's
"\\n") is not trained on, since generation stops at the end-of-turn token. Turn boundaries come from
rendering prefixes of the conversation and tokenizing the pieces, as the predictor tokenizes a prompt.
If the last reply has no end-of-turn token, eos is appended so the model learns to stop. Without a
template: src + tgt + eos for each turn (bos as the tokenizer adds it), loss on tgt + eos.

Truncation: src_length keeps the last src_length tokens before the final reply; then the whole sequence
is cut to max_length from the right. An example with no trained-on token left gives None.
"""
import numpy as np
import paddle

from paddlellm.errors import UserError
from paddlellm.training.preprocess import iter_jsonl

IGNORE_INDEX = -100
EXAMPLE = '{"src": "question", "tgt": "answer"}'


def _turns(path, number, row, key):
    value = row.get(key)
    where, fix = f"{path}:{number}: \"{key}\"", "(give a non-empty string, or a list of them for several turns)"
    if key not in row:
        raise UserError(f"{path}:{number}: missing \"{key}\" (each line needs \"src\" and \"tgt\", like {EXAMPLE})")
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, list):
        raise UserError(f"{where} must be a string or a list of strings, got {type(value).__name__} {fix}")
    if not value:
        raise UserError(f"{where} is an empty list {fix}")
    for i, turn in enumerate(value):
        name = where if len(value) == 1 and isinstance(row[key], str) else f"{where}[{i}]"
        if not isinstance(turn, str):
            raise UserError(f"{name} must be a string, got {type(turn).__name__} {fix}")
        if not turn.strip():
            raise UserError(f"{name} is empty {fix}")
    return value


def read_sft_file(path):
    """Rows of a JSON Lines SFT file as {"src": [turns], "tgt": [replies], "line": n}; the first bad row
    raises a `FILE:LINE: problem (fix)` UserError."""
    rows = []
    for number, obj in iter_jsonl(path, EXAMPLE):
        src, tgt = _turns(path, number, obj, "src"), _turns(path, number, obj, "tgt")
        if len(src) != len(tgt):
            raise UserError(f"{path}:{number}: \"src\" has {len(src)} turns but \"tgt\" has {len(tgt)} "
                            "(give one reply per user turn)")
        rows.append({"src": src, "tgt": tgt, "line": number})
    if not rows:
        raise UserError(f"{path} has no examples (add lines like {EXAMPLE})")
    return rows


def _render(tokenizer, messages, generation_prompt, previous):
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt)
    if not text.startswith(previous):
        raise UserError(f"the chat template of {tokenizer.model_dir} renders a conversation so that it does not "
                        "start with the rendering of its earlier turns, so the assistant tokens cannot be found "
                        "(use a template that only appends, or remove chat_template to train on plain src/tgt)")
    return text


def _template_segments(tokenizer, src, tgt):
    """[(token ids, trained on)] of the conversation rendered with the chat template."""
    eos_ids, segments, messages, done = set(tokenizer.eos_token_ids), [], [], ""
    for user, reply in zip(src, tgt):
        messages.append({"role": "user", "content": user})
        prompt = _render(tokenizer, messages, True, done)
        messages.append({"role": "assistant", "content": reply})
        full = _render(tokenizer, messages, False, prompt)
        answer = tokenizer.encode(full[len(prompt):], add_special_tokens=False)
        ends = [i for i, t in enumerate(answer) if t in eos_ids]
        cut = ends[-1] + 1 if ends else len(answer)
        segments += [(tokenizer.encode(prompt[len(done):], add_special_tokens=False), False),
                     (answer[:cut], True), (answer[cut:], False)]
        done = full
    last, _ = segments[-2]
    if not any(t in eos_ids for t in last):  # the template never closes the reply: teach the model to stop
        segments[-2:] = [(last + _eos(tokenizer), True)]
    return segments


def _eos(tokenizer):
    if not tokenizer.eos_token_ids:
        raise UserError(f"the tokenizer in {tokenizer.model_dir} has no eos token "
                        "(set eos_token in tokenizer_config.json)")
    return [tokenizer.eos_token_ids[0]]


def _plain_segments(tokenizer, src, tgt):
    segments = []
    for i, (user, reply) in enumerate(zip(src, tgt)):
        segments += [(tokenizer.encode(user, add_special_tokens=i == 0), False),
                     (tokenizer.encode(reply, add_special_tokens=False) + _eos(tokenizer), True)]
    return segments


def tokenize_sft_example(tokenizer, row, max_length, src_length=None):
    """dict(input_ids, labels) (lists of equal length <= max_length, labels pre-shifted, see the module
    docstring) for a row of read_sft_file; None when no target token fits."""
    if max_length < 2 or (src_length is not None and src_length < 1):
        raise UserError(f"max_length must be at least 2 and src_length at least 1, got {max_length} and "
                        f"{src_length} (raise them)")
    src, tgt = row["src"], row["tgt"]
    src, tgt = ([src], [tgt]) if isinstance(src, str) else (src, tgt)
    build = _template_segments if tokenizer.has_chat_template else _plain_segments
    ids, mask, last_start = [], [], 0
    for tokens, trained in build(tokenizer, src, tgt):
        if trained:
            last_start = len(ids)
        ids += tokens
        mask += [trained] * len(tokens)
    if src_length is not None and last_start > src_length:  # keep the end of the prompt
        ids, mask = ids[last_start - src_length:], mask[last_start - src_length:]
    ids, mask = ids[:max_length], mask[:max_length]
    while mask and not mask[-1]:  # nothing to learn after the last target token
        ids.pop(), mask.pop()
    if not any(mask[1:]):
        return None
    labels = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])] + [IGNORE_INDEX]
    return {"input_ids": ids, "labels": labels}


class SFTDataset(paddle.io.Dataset):
    """Tokenized SFT examples; `skipped` holds the file line numbers of rows whose target did not fit."""

    def __init__(self, examples, skipped=()):
        super().__init__()
        self.examples, self.skipped = list(examples), list(skipped)

    @classmethod
    def from_file(cls, path, tokenizer, max_length, src_length=None):
        examples, skipped = [], []
        for row in read_sft_file(path):
            example = tokenize_sft_example(tokenizer, row, max_length, src_length)
            if example is None:
                skipped.append(row["line"])
            else:
                examples.append(example)
        return cls(examples, skipped)

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


def collate_sft(batch, pad_id, pad_to_multiple_of=None):
    """Right-pad a list of examples into int64 tensors input_ids (pad_id) and labels (-100), to a width
    that is a multiple of pad_to_multiple_of when given (fixed shapes for device kernels). Any pad id
    works: no real token attends to the padding after it and padded positions carry no loss."""
    width = max(len(example["input_ids"]) for example in batch)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = np.full((len(batch), width), 0 if pad_id is None else pad_id, dtype=np.int64)
    labels = np.full((len(batch), width), IGNORE_INDEX, dtype=np.int64)
    for row, example in enumerate(batch):
        input_ids[row, :len(example["input_ids"])] = example["input_ids"]
        labels[row, :len(example["labels"])] = example["labels"]
    return {"input_ids": paddle.to_tensor(input_ids), "labels": paddle.to_tensor(labels)}
