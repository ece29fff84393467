#!/usr/bin/env bash
# Export a trained Llama to a static inference model for the NPU (float16).
#   usage: bash export_npu.sh [SRC=./output/sft_bf16_llama_N1C8] [DST=./inference]     (any directory)
#          SRC: the SFT recipe's output (the default), ./output after the pretraining recipe, a merged LoRA
#          checkpoint, or the LoRA recipe's adapter with LORA_BASE; relative paths are from the current directory
#   env:   DEVICE=npu|cpu (cpu exports float32 for the CPU), LORA_BASE=BASE_DIR when SRC is a LoRA adapter
set -euo pipefail
src_path="$(realpath -m "${1:-./output/sft_bf16_llama_N1C8}")"
dst_path="$(realpath -m "${2:-./inference}")"
LOG_DIR=.
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
dtype="float16"; [ "$DEVICE" = "cpu" ] && dtype="float32"

if [ -n "${LORA_BASE:-}" ]; then
    model=(--model_name_or_path "$LORA_BASE" --lora_path "$src_path")
else
    model=(--model_name_or_path "$src_path")
fi
# Block attention (a paged KV cache), as PaddleNLP's NPU recipe exports it. On the npu the program runs on
# paddlellm's NPU op library (csrc/npu: python setup.py build bdist_wheel, then pip install dist/*.whl).
"$PYTHON" "$ROOT/llm/predict/export_model.py" "${model[@]}" --inference_model \
    --output_path "$dst_path" --dtype "$dtype" --device "$DEVICE" --block_attn
