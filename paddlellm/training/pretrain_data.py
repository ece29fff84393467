"""Pretraining data: the Megatron / PaddleNLP "mmap" indexed token format and fixed-length GPT windows over it.

PREFIX.bin holds the token ids of all sequences back to back. PREFIX.idx, little-endian:

    magic      9 bytes  b"MMIDIDX\\x00\\x00"
    version    uint64   1
    dtype      uint8    code of the token dtype (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 8 uint16,
                        9 uint32, 10 uint64; 6 and 7 are floats)
    count      uint64   number of sequences N
    doc_count  uint64   number of doc_idx entries D (documents + 1)
    sizes      int32[N] tokens per sequence
    pointers   int64[N] byte offset of each sequence in PREFIX.bin
    doc_idx    int64[D] first sequence of each document, then N

This is what paddleformers.data.indexed_dataset.MMapIndexedDataset reads (and PaddleNLP's
create_pretraining_data.py writes). We write one sequence per document, so doc_idx is 0..N.

PretrainDataset cuts the token stream of the concatenated documents into windows of max_seq_length + 1
tokens that share their boundary token (window w starts at w * max_seq_length), as Megatron's GPT dataset
does, and yields input_ids = window[:-1], labels = window[1:]: paddleformers' LlamaForCausalLM does not
shift labels itself (see sft_data). The documents are split into train/dev/test parts by a PaddleNLP-style
`split` string of weights ("949,50,1"); window order is a seeded permutation.
"""
import os
import struct
from pathlib import Path

import numpy as np

from paddlellm.errors import UserError

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16, 9: np.uint32, 10: np.uint64}
HEADER = struct.Struct("<9sQBQQ")
SPLIT_NAMES = ("train", "dev", "test")


class IndexedTokensWriter:
    """Context manager writing PREFIX.bin/.idx under temporary names and renaming them into place only when
    the block ends without an exception (then nothing is left behind)."""

    def __init__(self, prefix, dtype):
        self.prefix, self.dtype = str(prefix), np.dtype(dtype)
        self.code = next(c for c, t in DTYPES.items() if np.dtype(t) == self.dtype)
        self.sizes = []
        suffix = f".tmp{os.getpid()}"
        self.paths = {ext: (Path(self.prefix + ext + suffix), Path(self.prefix + ext)) for ext in (".bin", ".idx")}

    def __enter__(self):
        Path(self.prefix).parent.mkdir(parents=True, exist_ok=True)
        self._bin = open(self.paths[".bin"][0], "wb")
        return self

    def add_document(self, ids):
        ids = np.asarray(ids)
        info = np.iinfo(self.dtype)
        if ids.size and (ids.min() < info.min or ids.max() > info.max):
            raise ValueError(f"token id out of range for {self.dtype}")
        self._bin.write(ids.astype(self.dtype).tobytes())
        self.sizes.append(len(ids))

    def _write_index(self, path):
        sizes = np.array(self.sizes, dtype=np.int32)
        pointers = np.zeros(len(sizes), dtype=np.int64)
        pointers[1:] = np.cumsum(sizes[:-1], dtype=np.int64) * self.dtype.itemsize
        doc_idx = np.arange(len(sizes) + 1, dtype=np.int64)
        with open(path, "wb") as f:
            f.write(HEADER.pack(MAGIC, VERSION, self.code, len(sizes), len(doc_idx)))
            f.write(sizes.tobytes() + pointers.tobytes() + doc_idx.tobytes())

    def __exit__(self, exc_type, exc, tb):
        self._bin.close()
        try:
            if exc_type is None:
                self._write_index(self.paths[".idx"][0])
                for tmp, final in self.paths.values():
                    os.replace(tmp, final)
        finally:
            for tmp, _ in self.paths.values():
                tmp.unlink(missing_ok=True)
        return False


def _read_index(path):
    """(dtype, sizes, pointers, doc_idx) of a .idx file, checked against its header."""
    data = path.read_bytes()
    if len(data) < HEADER.size or data[:9] != MAGIC:
        raise UserError(f"{path} is not an mmap indexed dataset index (make it with llm/tools/preprocess_data.py)")
    _, version, code, count, doc_count = HEADER.unpack_from(data)
    if version != VERSION or code not in DTYPES:
        raise UserError(f"{path} has version {version} and dtype code {code}; only version 1 with integer "
                        "tokens is supported (make it with llm/tools/preprocess_data.py)")
    if len(data) != HEADER.size + 12 * count + 8 * doc_count:
        raise UserError(f"{path} is truncated or corrupt: its size does not match its header "
                        "(run llm/tools/preprocess_data.py again)")
    sizes = np.frombuffer(data, np.int32, count, HEADER.size)
    pointers = np.frombuffer(data, np.int64, count, HEADER.size + 4 * count)
    doc_idx = np.frombuffer(data, np.int64, doc_count, HEADER.size + 12 * count)
    return np.dtype(DTYPES[code]), sizes, pointers, doc_idx


class IndexedTokens:
    """Reader for PREFIX.bin/.idx: `tokens` is the whole token stream as a read-only np.memmap."""

    def __init__(self, prefix):
        self.prefix = str(prefix)
        idx, bin_ = Path(self.prefix + ".idx"), Path(self.prefix + ".bin")
        for path in (idx, bin_):
            if not path.is_file():
                raise UserError(f"{path} not found (make PREFIX.bin and PREFIX.idx with llm/tools/preprocess_data.py "
                                "and pass PREFIX without the extension)")
        self.dtype, self.sizes, self.pointers, self.doc_idx = _read_index(idx)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)])
        fix = "(run llm/tools/preprocess_data.py again)"
        if not np.array_equal(self.pointers, self.offsets[:-1] * self.dtype.itemsize):
            raise UserError(f"{idx} has sequences that are not stored back to back {fix}")
        if len(self.doc_idx) < 2 or self.doc_idx[0] != 0 or self.doc_idx[-1] != len(self.sizes) \
                or np.any(np.diff(self.doc_idx) < 0):
            raise UserError(f"{idx} has an invalid document index {fix}")
        expected = int(self.offsets[-1]) * self.dtype.itemsize
        if bin_.stat().st_size != expected:
            raise UserError(f"{bin_} has {bin_.stat().st_size} bytes but {idx} describes {expected} {fix}")
        if expected == 0:
            raise UserError(f"{bin_} holds no tokens (preprocess a corpus with text in it)")
        self.tokens = np.memmap(bin_, dtype=self.dtype, mode="r")

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    @property
    def num_docs(self):
        return len(self.doc_idx) - 1

    def doc_token_range(self, first_doc, end_doc):
        """[start, end) in `tokens` of documents first_doc .. end_doc - 1."""
        return int(self.offsets[self.doc_idx[first_doc]]), int(self.offsets[self.doc_idx[end_doc]])


def split_bounds(split, num_docs):
    """Document bounds [0, a, b, num_docs] of the train/dev/test parts for weights like "949,50,1"."""
    try:
        weights = [float(w) for w in str(split).replace("/", ",").split(",")]
    except ValueError:
        weights = []
    if not 1 <= len(weights) <= 3 or min(weights) < 0 or sum(weights) <= 0:
        raise UserError(f"split '{split}' is not 1 to 3 non-negative weights (write it like 949,50,1)")
    weights += [0.0] * (3 - len(weights))
    total, bounds, acc = sum(weights), [0], 0.0
    for w in weights[:2]:
        acc += w
        bounds.append(min(num_docs, int(round(acc / total * num_docs))))
    return bounds + [num_docs]


class PretrainDataset:
    """Windows of max_seq_length + 1 tokens over one part (train, dev or test) of an indexed dataset, in a
    seeded random order; items are dict(input_ids, labels) of int64 arrays of length max_seq_length."""

    def __init__(self, prefix, max_seq_length, seed=1234, split="949,50,1", name="train"):
        if name not in SPLIT_NAMES:
            raise UserError(f"unknown split part '{name}' (use one of {', '.join(SPLIT_NAMES)})")
        if max_seq_length < 1:
            raise UserError(f"max_seq_length must be at least 1, got {max_seq_length} (raise it)")
        self.data = IndexedTokens(prefix)
        self.max_seq_length = int(max_seq_length)
        part = SPLIT_NAMES.index(name)
        bounds = split_bounds(split, self.data.num_docs)
        self.start, self.end = self.data.doc_token_range(bounds[part], bounds[part + 1])
        windows = (self.end - self.start - 1) // self.max_seq_length
        if windows < 1:
            raise UserError(f"the {name} part of {prefix} (split {split}) has {self.end - self.start} tokens, "
                            f"too few for one window of {self.max_seq_length + 1} (use more data, a smaller "
                            "max_seq_length or another split)")
        self.order = np.random.RandomState(seed).permutation(windows)

    def __len__(self):
        return len(self.order)

    def window(self, w):
        """Tokens of window w (in stream order, before the shuffle)."""
        begin = self.start + w * self.max_seq_length
        return np.asarray(self.data.tokens[begin:begin + self.max_seq_length + 1], dtype=np.int64)

    def __getitem__(self, i):
        tokens = self.window(int(self.order[i]))
        return {"input_ids": tokens[:-1], "labels": tokens[1:]}
