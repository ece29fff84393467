#!/usr/bin/env bash
# LoRA (rank 32) of Llama-2-13B-chat on 8 Ascend 910 cards: the SFT recipe's settings plus LoRA.
#   usage: bash llama_npu_lora_N1C8.sh [max_steps] [more run_finetune flags]   (env as in llama_npu_sft_N1C8.sh)
# The output_dir receives the adapter; merge it with llm/tools/merge_lora_params.py, or export with
# LORA_BASE=BASE_DIR bash export_npu.sh OUTPUT_DIR DST.
set -euo pipefail
export LOG_DIR="${LOG_DIR:-$PWD/lora_bf16_llama_N1C8}"
export OUTPUT_DIR="${OUTPUT_DIR:-$PWD/output/lora_bf16_llama_N1C8}"
export MODEL="${MODEL:-meta-llama/Llama-2-13b-chat}"
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/llama_npu_sft_N1C8.sh" "${1:-100}" --lora true --lora_rank 32 "${@:2}"
