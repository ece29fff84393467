"""`llm/predict/export_model.py`: export a checkpoint to a static inference model."""
import sys

from paddlellm.argparsing import ArgumentParser, DefaultsHelpFormatter, add_bool, add_debug
from paddlellm.device import DEVICES, DTYPES
from paddlellm.errors import UserError
from paddlellm.export.exporter import export_model
from paddlellm.quantization import DEFAULT_GROUP_SIZE, QUANT_TYPES


def build_parser():
    p = ArgumentParser(prog="export_model.py", formatter_class=DefaultsHelpFormatter,
                       description="Export a Llama checkpoint to a static inference model.")
    p.add_argument("--model_name_or_path", required=True, help="checkpoint directory (HF format or Paddle pdparams)")
    p.add_argument("--output_path", required=True, help="directory to write (replaced whole if it is an earlier export)")
    p.add_argument("--lora_path", default=None,
                   help="LoRA adapter directory (paddleformers) to merge into the weights (default: none)")
    add_bool(p, "--inference_model", "export the inference model (the only kind paddlellm exports; default: true)")
    p.add_argument("--dtype", default="float32", help="weights (bfloat16: the KV cache too): " + " | ".join(DTYPES))
    p.add_argument("--device", default="cpu", help=f"the device the program is for: {' | '.join(DEVICES)}")
    add_bool(p, "--block_attn", "a paged KV cache with continuous batching: always on (PaddleNLP's flag, accepted)")
    p.add_argument("--block_size", type=int, default=64, help="tokens per KV cache block")
    p.add_argument("--quant_type", default=None, help=f"quantize the layers' weights: {' | '.join(QUANT_TYPES)} "
                   "(per output channel, int4 and optionally int8 also per --group_size rows; a8w8: int8 activations per "
                   "token too; no calibration data; default: none)")
    add_bool(p, "--quant_lm_head", "with --quant_type, quantize the lm_head too (default: it stays float)")
    p.add_argument("--group_size", type=int, default=None,
                   help=f"rows (input features) per scale: weight_only_int4 (default {DEFAULT_GROUP_SIZE}), "
                   "weight_only_int8 (default: one scale per column)")
    p.add_argument("--cachekv_int8_type", default=None,
                   help="an int8 KV cache (CPU): dynamic, each row's scale computed as it is written, or static, one "
                   "scale per layer and kv head calibrated on --calibration_file (default: none)")
    p.add_argument("--calibration_file", default=None,
                   help="text (.txt, or .jsonl of {\"text\": ...}) to calibrate --cachekv_int8_type static on "
                   "(default: llm/data/pretrain_demo/corpus.jsonl)")
    p.add_argument("--calibration_tokens", type=int, default=None,
                   help="calibrate on the text's first N tokens (default: 4096)")
    add_debug(p)
    return p


def main(argv):
    args = build_parser().parse_args(argv)
    if args.inference_model is False:
        raise UserError("--inference_model false is not supported: paddlellm exports only the inference model (drop the flag)")
    if args.block_size < 1:
        raise UserError(f"--block_size must be a positive number of tokens, got {args.block_size}")
    export_model(args.model_name_or_path, args.output_path, dtype=args.dtype, device=args.device,
                 lora_path=args.lora_path, block_attn=args.block_attn, block_size=args.block_size,
                 quant_type=args.quant_type, quant_lm_head=bool(args.quant_lm_head), group_size=args.group_size,
                 cachekv_int8_type=args.cachekv_int8_type, calibration_file=args.calibration_file,
                 calibration_tokens=args.calibration_tokens)
    return 0


if __name__ == "__main__":
    from paddlellm.cli import run_main

    sys.exit(run_main(main))
