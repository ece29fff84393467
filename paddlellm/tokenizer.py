"""Tokenizers for Llama-family checkpoints without transformers.

Two sources, picked in this order from the model directory:

* ``tokenizer.json`` (HF "fast" serialization) through the ``tokenizers`` library, used as written: its own
  post-processor decides the special tokens of encode() (transformers 5 ignores add_bos_token/add_eos_token
  of tokenizer_config.json when tokenizer.json exists, and so does this).
* ``tokenizer.model`` (SentencePiece, Llama-2 style) through ``sentencepiece``, made to behave like
  transformers' ``LlamaTokenizer``: no normalizer, a ``▁`` prefix on the first piece of text (Metaspace
  "first", or on every piece after a special token when ``legacy`` is true), special tokens split out of
  the text, and decoding with ``▁`` -> space, byte fallback and one leading space stripped.

``tokenizer_config.json`` (optional) supplies bos/eos/pad/unk tokens, added tokens, the chat template,
clean_up_tokenization_spaces and, for tokenizer.model, add_bos_token/add_eos_token/legacy/add_prefix_space;
``chat_template.jinja`` overrides its template. generation_config.json and config.json add eos ids.
"""
import json
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from paddlellm.errors import UserError
from paddlellm.files import read_json

SPIECE_UNDERLINE = "\u2581"
_NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")


def _content(value):
    """A token given as a string or as an AddedToken-like dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _id_list(value):
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _clean_up_tokenization(text):
    """transformers' clean_up_tokenization (used when clean_up_tokenization_spaces is true)."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


@lru_cache(maxsize=8)
def _compile_template(source):
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # like HF: no HTML escaping, options exposed
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


class Tokenizer:
    """Common part: special tokens, eos ids from the config files, chat template. Use load_tokenizer()."""

    default_tokens = {}

    def __init__(self, model_dir, config):
        self.model_dir = Path(model_dir)
        self.config = config
        tokens = {name: _content(config.get(name)) for name in _NAMED_TOKENS}
        self.tokens = {k: v or self.default_tokens.get(k) for k, v in tokens.items()}
        self.bos_token, self.eos_token = self.tokens["bos_token"], self.tokens["eos_token"]
        self.clean_up_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        self.chat_template = self._find_chat_template()

    def _finish(self):
        """Resolve the special token ids once the backend can map tokens to ids."""
        gen = read_json(self.model_dir / "generation_config.json", missing_ok=True)
        model = read_json(self.model_dir / "config.json", missing_ok=True)
        self.bos_token_id = self.token_to_id(self.bos_token) if self.bos_token else None
        if self.bos_token_id is None:
            self.bos_token_id = next(iter(_id_list(gen.get("bos_token_id")) + _id_list(model.get("bos_token_id"))), None)
        eos = [self.token_to_id(self.eos_token)] if self.eos_token else []
        eos += _id_list(gen.get("eos_token_id")) + _id_list(model.get("eos_token_id"))
        self.eos_token_ids = list(dict.fromkeys(i for i in eos if i is not None))
        pad = self.token_to_id(self.tokens["pad_token"]) if self.tokens["pad_token"] else None
        self.pad_token_id = pad if pad is not None else (self.eos_token_ids[0] if self.eos_token_ids else None)

    def _find_chat_template(self):
        path = self.model_dir / "chat_template.jinja"
        if path.is_file():
            return path.read_text(encoding="utf-8")
        template = self.config.get("chat_template")
        if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]: the "default" one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        return template if isinstance(template, str) and template else None

    @property
    def has_chat_template(self):
        return self.chat_template is not None

    def apply_chat_template(self, messages, add_generation_prompt=True):
        """Render messages ([{"role", "content"}, ...]) to the prompt text, as HF's apply_chat_template(tokenize=False)."""
        if not self.has_chat_template:
            raise UserError(f"{self.model_dir} has no chat template (add chat_template to tokenizer_config.json "
                            "or chat_template.jinja, or send a plain prompt)")
        import jinja2

        specials = {k: v for k, v in self.tokens.items() if v is not None}
        try:
            return _compile_template(self.chat_template).render(
                messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt, **specials)
        except jinja2.TemplateError as e:
            raise UserError(f"chat template of {self.model_dir} failed: {e} (check the messages or the template)") from None

    def _finish_decode(self, text):
        return _clean_up_tokenization(text) if self.clean_up_spaces else text


class JsonTokenizer(Tokenizer):
    """tokenizer.json via the tokenizers library, with transformers 5's handling of tokenizer_config.json."""

    def __init__(self, model_dir, config, path):
        from tokenizers import AddedToken
        from tokenizers import Tokenizer as Backend

        super().__init__(model_dir, config)
        try:
            self._tk = Backend.from_file(str(path))
        except Exception as e:  # the library raises plain Exception for malformed files
            raise UserError(f"cannot read {path}: {e} (download the tokenizer files again)") from None
        # transformers adds the configured special tokens that tokenizer.json lacks, as special tokens
        present = {t.content for t in self._tk.get_added_tokens_decoder().values()}
        wanted = [config.get(name) for name in _NAMED_TOKENS]
        wanted += list((config.get("added_tokens_decoder") or {}).values())
        new = []
        for value in wanted:
            text = _content(value)
            if text and text not in present:
                flags = value if isinstance(value, dict) else {}
                new.append(AddedToken(text, special=flags.get("special", True), normalized=flags.get("normalized", False),
                                      lstrip=flags.get("lstrip", False), rstrip=flags.get("rstrip", False),
                                      single_word=flags.get("single_word", False)))
                present.add(text)
        if new:
            self._tk.add_tokens(new)
        self._finish()

    def token_to_id(self, token):
        return self._tk.token_to_id(token)

    @property
    def vocab_size(self):
        return self._tk.get_vocab_size(with_added_tokens=True)

    def encode(self, text, add_special_tokens=True):
        # transformers 5 drops add_bos_token/add_eos_token of tokenizer_config.json when tokenizer.json exists:
        # the special tokens are exactly what the tokenizer.json post-processor adds (none if it has none)
        return self._tk.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens=True):
        return self._finish_decode(self._tk.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens))


class SentencePieceTokenizer(Tokenizer):
    """tokenizer.model (SentencePiece), behaving like transformers 5's LlamaTokenizer built from it, except that
    add_bos_token defaults to true (Llama-2; transformers 5 defaults it to false when tokenizer_config.json
    does not say)."""

    default_tokens = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}

    def __init__(self, model_dir, config, path):
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2

        super().__init__(model_dir, config)
        proto = sentencepiece_model_pb2.ModelProto()
        try:
            proto.ParseFromString(path.read_bytes())
            # HF ignores the model's normalizer and adds the "▁" prefix itself: switch both off in sentencepiece
            spec = proto.normalizer_spec
            spec.name, spec.precompiled_charsmap = "identity", b""
            spec.add_dummy_prefix = spec.remove_extra_whitespaces = False
            self._sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        except Exception as e:  # protobuf DecodeError / sentencepiece RuntimeError
            raise UserError(f"cannot read {path}: {e} (download the tokenizer files again)") from None
        size = self._sp.get_piece_size()
        self._added, self._special_ids = {}, set()
        for key, entry in (config.get("added_tokens_decoder") or {}).items():
            if _content(entry) and str(key).isdigit():
                self._added[_content(entry)] = int(key)
                if not isinstance(entry, dict) or entry.get("special", True):
                    self._special_ids.add(int(key))
        for token in self.tokens.values():
            if token and token not in self._added:
                pid = self._sp.piece_to_id(token)
                if self._sp.id_to_piece(pid) != token:  # not in the model: appended, as HF does
                    pid = max([size - 1, *self._added.values()]) + 1
                self._added[token] = pid
            if token:
                self._special_ids.add(self._added[token])
        self._id_to_added = {i: t for t, i in self._added.items()}
        alternatives = [re.escape(t) for t in sorted(self._added, key=len, reverse=True)]
        self._split = re.compile("|".join(alternatives) or "(?!)")
        self.add_bos_token = bool(config.get("add_bos_token", True))
        self.add_eos_token = bool(config.get("add_eos_token", False))
        prefix = config.get("add_prefix_space")
        self._prefix = prefix is None or bool(prefix)
        self._prepend = ("always" if config.get("legacy", False) else "first") if self._prefix else "never"
        self._finish()

    def token_to_id(self, token):
        if token in self._added:
            return self._added[token]
        pid = self._sp.piece_to_id(token)
        return pid if self._sp.id_to_piece(pid) == token else None

    @property
    def vocab_size(self):
        return max([self._sp.get_piece_size() - 1, *self._added.values()]) + 1

    def _encode_piece(self, text, first):
        if not text:
            return []
        text = text.replace(" ", SPIECE_UNDERLINE)
        if (self._prepend == "always" or (self._prepend == "first" and first)) and not text.startswith(SPIECE_UNDERLINE):
            text = SPIECE_UNDERLINE + text
        return self._sp.encode(text)

    def encode(self, text, add_special_tokens=True):
        ids, pos = [], 0
        for match in self._split.finditer(text):
            ids += self._encode_piece(text[pos:match.start()], pos == 0)
            ids.append(self._added[match.group()])
            pos = match.end()
        ids += self._encode_piece(text[pos:], pos == 0)
        if add_special_tokens:
            bos, eos = self.token_to_id(self.bos_token), self.token_to_id(self.eos_token)
            ids = ([bos] if self.add_bos_token and bos is not None else []) + ids
            ids += [eos] if self.add_eos_token and eos is not None else []
        return ids

    def decode(self, ids, skip_special_tokens=True):
        # HF's decoder chain: "▁" -> " ", byte fallback (<0xNN> runs -> UTF-8, U+FFFD per byte when invalid),
        # join, then strip one leading space when a prefix space is added on encode.
        size, parts, pending = self._sp.get_piece_size(), [], bytearray()

        def flush():
            if pending:
                try:
                    parts.append(pending.decode("utf-8"))
                except UnicodeDecodeError:
                    parts.append("\ufffd" * len(pending))
                pending.clear()

        for i in ids:
            i = int(i)
            if skip_special_tokens and i in self._special_ids:
                continue
            piece = self._id_to_added.get(i) or (self._sp.id_to_piece(i) if 0 <= i < size else None)
            if piece is None:
                continue
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                try:
                    pending.append(int(piece[3:5], 16))
                    continue
                except ValueError:
                    pass
            flush()
            parts.append(piece.replace(SPIECE_UNDERLINE, " "))
        flush()
        text = "".join(parts)
        if self._prefix and text.startswith(" "):
            text = text[1:]
        return self._finish_decode(text)


def load_tokenizer(model_dir):
    """The tokenizer of a model directory: tokenizer.json if present, else tokenizer.model."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"model directory {model_dir} does not exist (check the path)")
    config = read_json(model_dir / "tokenizer_config.json", missing_ok=True)
    if (model_dir / "tokenizer.json").is_file():
        return JsonTokenizer(model_dir, config, model_dir / "tokenizer.json")
    if (model_dir / "tokenizer.model").is_file():
        return SentencePieceTokenizer(model_dir, config, model_dir / "tokenizer.model")
    raise UserError(f"no tokenizer in {model_dir}: neither tokenizer.json nor tokenizer.model "
                    "(copy the tokenizer files of the model into that directory)")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "generation_config.json")


def copy_tokenizer_files(source, destination):
    """Copy the tokenizer files (and generation_config.json) that `source` has into `destination`."""
    import shutil

    for name in TOKENIZER_FILES:
        if (Path(source) / name).is_file():
            shutil.copy2(Path(source) / name, Path(destination) / name)
