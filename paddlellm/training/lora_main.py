"""`llm/tools/merge_lora_params.py`: merge a paddleformers LoRA adapter into its base Llama checkpoint.

Flags as PaddleNLP's script: --merge_lora_model_path (newer PaddleNLP: --output_path) is the output
directory, written as HF safetensors with the base's sharding. --device and --low_gpu_mem are accepted
and change nothing: the merge runs in numpy on the CPU with one base weight file in memory at a time.
--safe_serialization accepts only true (the output is always safetensors). PaddleNLP forks'
--use_vocab_extend is not supported.
"""
import sys

from paddlellm.argparsing import ArgumentParser, add_bool
from paddlellm.device import DEVICES, check_device_name
from paddlellm.errors import UserError


def build_parser():
    p = ArgumentParser(prog="merge_lora_params.py", description="Merge a LoRA adapter into its base checkpoint.")
    p.add_argument("--model_name_or_path", required=True, help="base checkpoint directory (HF or Paddle format)")
    p.add_argument("--lora_path", required=True,
                   help="adapter directory (lora_config.json + peft_model*.safetensors or lora_model_state.pdparams)")
    p.add_argument("--merge_lora_model_path", "--output_path", dest="merge_lora_model_path", required=True,
                   help="new or empty directory for the merged checkpoint")
    p.add_argument("--device", default="cpu", help=f"{' | '.join(DEVICES)}; accepted for PaddleNLP compatibility, "
                                                   "the merge always runs on the CPU")
    add_bool(p, "--low_gpu_mem", "accepted for PaddleNLP compatibility (the merge never uses a GPU)")
    add_bool(p, "--safe_serialization", "write safetensors (the only format paddlellm writes)")
    return p


def main(argv):
    args = build_parser().parse_args(argv)
    check_device_name(args.device)
    if args.safe_serialization is False:
        raise UserError("--safe_serialization false is not supported: the merged checkpoint is always safetensors "
                        "(drop the flag)")
    from paddlellm.models.llama.lora import merge_lora_checkpoint

    out = merge_lora_checkpoint(args.model_name_or_path, args.lora_path, args.merge_lora_model_path)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    from paddlellm.cli import run_main

    sys.exit(run_main(main))
