"""Pretraining data: preprocess CLI, the mmap indexed format (checked against paddleformers' reader), windows."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paddlellm.errors import UserError
from paddlellm.tokenizer import load_tokenizer
from paddlellm.training.preprocess import main as preprocess_main
from paddlellm.training.pretrain_data import IndexedTokens, IndexedTokensWriter, PretrainDataset

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "llm" / "tools" / "preprocess_data.py"
CORPUS = ROOT / "llm" / "data" / "pretrain_demo" / "corpus.jsonl"


def run_script(cwd, *flags):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, flags)], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def write_docs(prefix, docs, dtype=np.uint16):
    with IndexedTokensWriter(prefix, dtype) as writer:
        for doc in docs:
            writer.add_document(doc)
    return prefix


def test_cli_end_to_end_matches_tokenizer_and_paddleformers(tiny_llama, tmp_path):
    from paddleformers.data.indexed_dataset import MMapIndexedDataset

    prefix = tmp_path / "out" / "demo"
    result = run_script(tmp_path, "--input_path", CORPUS, "--output_prefix", "out/demo",
                        "--model_name_or_path", tiny_llama, "--append_eos")
    assert result.returncode == 0, result.stderr
    assert "docs/s" in result.stdout and "tokens/s" in result.stdout
    assert sorted(p.name for p in prefix.parent.iterdir()) == ["demo.bin", "demo.idx"]

    tokenizer = load_tokenizer(tiny_llama)
    texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line.strip()]
    expected = [tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_ids[0]] for text in texts]
    ours = IndexedTokens(prefix)
    assert ours.num_docs == len(texts) >= 250 and ours.dtype == np.uint16
    assert f"{len(texts)} documents, {sum(map(len, expected))} tokens" in result.stdout
    for i, ids in enumerate(expected):
        assert ours[i].tolist() == ids

    theirs = MMapIndexedDataset(str(prefix), skip_warmup=True)
    assert len(theirs) == len(texts) and theirs._index.dtype == np.uint16
    np.testing.assert_array_equal(theirs.sizes, [len(ids) for ids in expected])
    np.testing.assert_array_equal(theirs.doc_idx, np.arange(len(texts) + 1))
    for i in (0, 1, len(texts) // 2, len(texts) - 1):
        np.testing.assert_array_equal(theirs[i], expected[i])
    assert len(PretrainDataset(prefix, 128, seed=1)) >= 200


def test_cli_bad_line_exit_2_one_line_nothing_written(tiny_llama, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "fine"}\n\n{"text": "fine" \n{"text": "never read"}\n')
    out = tmp_path / "out"
    result = run_script(ROOT.parent, "--input_path", corpus, "--output_prefix", out / "demo",
                        "--model_name_or_path", tiny_llama)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {corpus}:3: invalid JSON"), result.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("line,problem", [
    ('{"body": "x"}', 'no "text" key'), ('{"text": 3}', '"text" must be a string, got int'),
    ('{"text": "  "}', '"text" is empty'), ('"just a string"', "expected a JSON object, got str")])
def test_bad_corpus_rows_keep_old_output(tiny_llama, tmp_path, line, problem):
    corpus, prefix = tmp_path / "corpus.jsonl", tmp_path / "demo"
    corpus.write_text(f'{{"text": "fine"}}\n{line}\n')
    write_docs(prefix, [[1, 2, 3]])
    before = [Path(f"{prefix}.{ext}").read_bytes() for ext in ("bin", "idx")]
    with pytest.raises(UserError, match=f"^{corpus}:2: {problem}"):
        preprocess_main(["--input_path", str(corpus), "--output_prefix", str(prefix),
                         "--model_name_or_path", str(tiny_llama)])
    assert [Path(f"{prefix}.{ext}").read_bytes() for ext in ("bin", "idx")] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "demo.bin", "demo.idx"]


def test_json_key_and_empty_corpus(tiny_llama, tmp_path):
    corpus, prefix = tmp_path / "corpus.jsonl", tmp_path / "demo"
    corpus.write_text('{"body": "Hello world."}\n')
    assert preprocess_main(["--input_path", str(corpus), "--output_prefix", str(prefix), "--json_key", "body",
                            "--model_name_or_path", str(tiny_llama)]) == 0
    assert IndexedTokens(prefix)[0].tolist() == load_tokenizer(tiny_llama).encode("Hello world.", False)
    corpus.write_text("\n\n")
    with pytest.raises(UserError, match="has no documents"):
        preprocess_main(["--input_path", str(corpus), "--output_prefix", str(prefix),
                         "--model_name_or_path", str(tiny_llama)])


def test_reader_refuses_missing_and_damaged_files(tmp_path):
    prefix = write_docs(tmp_path / "d", [[1, 2, 3], [4, 5]])
    with pytest.raises(UserError, match="not found"):
        IndexedTokens(tmp_path / "nothing")
    bin_, idx = Path(f"{prefix}.bin"), Path(f"{prefix}.idx")
    bin_.write_bytes(bin_.read_bytes()[:-2])
    with pytest.raises(UserError, match="has 8 bytes but .* describes 10"):
        IndexedTokens(prefix)
    write_docs(prefix, [[1, 2, 3], [4, 5]])
    idx.write_bytes(idx.read_bytes()[:-3])
    with pytest.raises(UserError, match="truncated"):
        IndexedTokens(prefix)
    idx.write_bytes(b"TNTIDX\x00\x00" + bytes(40))
    with pytest.raises(UserError, match="not an mmap indexed dataset"):
        IndexedTokens(prefix)


def test_windows_are_contiguous_and_seeded(tmp_path):
    docs = [np.arange(start, start + size) for start, size in zip(range(0, 10_000, 1000), [70, 5, 300, 41, 1, 99,
                                                                                           250, 13, 64, 180])]
    prefix = write_docs(tmp_path / "d", docs)
    stream = np.concatenate(docs)
    length = 32
    dataset = PretrainDataset(prefix, length, seed=7, split="1")
    assert len(dataset) == (len(stream) - 1) // length
    seen = set()
    for i in range(len(dataset)):
        item = dataset[i]
        assert item["input_ids"].dtype == np.int64 and len(item["input_ids"]) == length
        start = int(np.flatnonzero(stream == item["input_ids"][0])[0])  # the ids are unique
        assert start % length == 0
        np.testing.assert_array_equal(item["input_ids"], stream[start:start + length])
        np.testing.assert_array_equal(item["labels"], stream[start + 1:start + length + 1])
        seen.add(start)
    assert seen == set(range(0, len(dataset) * length, length))
    again = PretrainDataset(prefix, length, seed=7, split="1")
    assert all(np.array_equal(dataset[i]["labels"], again[i]["labels"]) for i in range(len(dataset)))
    assert not np.array_equal(dataset.order, PretrainDataset(prefix, length, seed=8, split="1").order)


def test_split_by_documents(tmp_path):
    docs = [np.full(100, i) for i in range(10)]
    prefix = write_docs(tmp_path / "d", docs)
    train, dev = PretrainDataset(prefix, 16, split="8,1,1"), PretrainDataset(prefix, 16, split="8,1,1", name="dev")
    assert (train.start, train.end, dev.start, dev.end) == (0, 800, 800, 900)
    assert all(set(dev[i]["input_ids"]) == {8} for i in range(len(dev)))
    with pytest.raises(UserError, match="too few for one window"):
        PretrainDataset(prefix, 100, split="8,1,1", name="test")
    with pytest.raises(UserError, match="split 'a,b'"):
        PretrainDataset(prefix, 16, split="a,b")
