"""`llm/tools/preprocess_data.py`: a JSON Lines corpus to the mmap indexed token format (PREFIX.bin + PREFIX.idx)."""
import json
import sys
import time
from pathlib import Path

from paddlellm.argparsing import ArgumentParser
from paddlellm.errors import UserError


def iter_jsonl(path, example):
    """Yield (line number, object) for each non-blank line of a JSON Lines file; `example` shows a good row
    in the error messages. Stops at the first bad line with a `FILE:LINE: ...` UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist (check the path)")
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    raise UserError(f"{path}:{number}: invalid JSON: {e} (write one JSON object a line, "
                                    f"like {example})") from None
                if not isinstance(obj, dict):
                    raise UserError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__} "
                                    f"(write one JSON object a line, like {example})")
                yield number, obj
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text: {e} (save the file as UTF-8)") from None


def read_texts(path, json_key):
    """Check every line of the corpus and yield (line number, text); nothing is returned for a blank line."""
    example = json.dumps({json_key: "a document"})
    for number, obj in iter_jsonl(path, example):
        if json_key not in obj:
            raise UserError(f"{path}:{number}: no \"{json_key}\" key (give each line a \"{json_key}\" field, "
                            "or name the field with --json_key)")
        text = obj[json_key]
        if not isinstance(text, str):
            raise UserError(f"{path}:{number}: \"{json_key}\" must be a string, got {type(text).__name__} "
                            "(store the document as one string)")
        if not text.strip():
            raise UserError(f"{path}:{number}: \"{json_key}\" is empty (remove the line or give it text)")
        yield number, text


def preprocess(input_path, output_prefix, tokenizer, json_key="text", append_eos=False):
    """Tokenize each document (no special tokens, as PaddleNLP's create_pretraining_data.py) into
    PREFIX.bin/.idx, one document per sequence; return (documents, tokens, seconds)."""
    import numpy as np
    from tqdm import tqdm

    from paddlellm.training.pretrain_data import IndexedTokensWriter

    # a full pass first, so a bad line fails before anything is tokenized or written
    docs = sum(1 for _ in read_texts(input_path, json_key))
    if docs == 0:
        raise UserError(f"{input_path} has no documents (add lines like {{\"{json_key}\": \"...\"}})")
    eos = []
    if append_eos:
        if not tokenizer.eos_token_ids:
            raise UserError(f"the tokenizer in {tokenizer.model_dir} has no eos token "
                            "(set eos_token in tokenizer_config.json, or drop --append_eos)")
        eos = [tokenizer.eos_token_ids[0]]
    # PaddleNLP's choice: uint16 while every id fits, else int32
    dtype = np.uint16 if tokenizer.vocab_size < 2**16 - 1 else np.int32
    start, tokens = time.perf_counter(), 0
    with IndexedTokensWriter(output_prefix, dtype) as writer:
        for _, text in tqdm(read_texts(input_path, json_key), total=docs, unit="doc", desc="tokenizing"):
            ids = tokenizer.encode(text, add_special_tokens=False) + eos
            writer.add_document(ids)
            tokens += len(ids)
    return docs, tokens, time.perf_counter() - start


def main(argv):
    parser = ArgumentParser(prog="preprocess_data.py", description=__doc__.split(": ", 1)[1])
    parser.add_argument("--input_path", required=True, help="JSON Lines file, one document a line")
    parser.add_argument("--output_prefix", required=True, help="writes OUTPUT_PREFIX.bin and OUTPUT_PREFIX.idx")
    parser.add_argument("--model_name_or_path", required=True, help="model directory whose tokenizer to use")
    parser.add_argument("--json_key", default="text", help="field of each JSON object that holds the text")
    parser.add_argument("--append_eos", action="store_true", help="end every document with the eos token")
    args = parser.parse_args(argv)
    from paddlellm.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.model_name_or_path)
    docs, tokens, seconds = preprocess(args.input_path, args.output_prefix, tokenizer, args.json_key, args.append_eos)
    seconds = max(seconds, 1e-9)
    print(f"wrote {args.output_prefix}.bin and {args.output_prefix}.idx: {docs} documents, {tokens} tokens "
          f"in {seconds:.2f} s ({docs / seconds:.1f} docs/s, {tokens / seconds:.0f} tokens/s)")
    return 0


if __name__ == "__main__":
    from paddlellm.cli import run_main

    sys.exit(run_main(main))
