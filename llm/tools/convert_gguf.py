"""Convert a llama-architecture GGUF file into an HF-format Llama checkpoint directory.

Usage: python llm/tools/convert_gguf.py --gguf FILE --output_path DIR [--overwrite]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from paddlellm.cli import run_main  # noqa: E402
from paddlellm.errors import UserError  # noqa: E402


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors become UserError (one `error:` line, exit 2)."""

    def error(self, message):
        raise UserError(f"{message} (see --help)")


def main(argv):
    """Parse flags and run the conversion."""
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", required=True, help="input .gguf file (general.architecture must be llama)")
    parser.add_argument("--output_path", required=True, help="output directory for the HF checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    args = parser.parse_args(argv)
    from paddlellm.convert.gguf import convert

    out = convert(args.gguf, args.output_path, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
