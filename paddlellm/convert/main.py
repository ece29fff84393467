"""`llm/tools/convert_gguf.py`: a llama-architecture GGUF file to an HF-format Llama checkpoint."""
import sys

from paddlellm.argparsing import ArgumentParser


def main(argv):
    parser = ArgumentParser(prog="convert_gguf.py", description=__doc__.split(": ", 1)[1])
    parser.add_argument("--gguf", required=True, help="input .gguf file (general.architecture must be llama)")
    parser.add_argument("--output_path", required=True, help="output directory for the HF checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    parser.add_argument("--keep_quant", action="store_true",
                        help="keep Q4_0 / Q4_1 layer weights as weight_only_int4 and Q8_0 ones as weight_only_int8 "
                             "(groups of 32) without a float round trip; the checkpoint is then for export_model.py "
                             "only")
    args = parser.parse_args(argv)
    from paddlellm.convert.gguf import convert

    print(f"wrote {convert(args.gguf, args.output_path, overwrite=args.overwrite, keep_quant=args.keep_quant)}")
    return 0


if __name__ == "__main__":
    from paddlellm.cli import run_main

    sys.exit(run_main(main))
