#!/usr/bin/env bash
# LoRA (rank 8) of Llama-2-13B on 8 Hygon K100_AI cards: the settings of lora_argument.json
# (fp16 O2, tensor parallel 8, src_length 1024, max_length 2048). OUTPUT_DIR receives the adapter only.
#   usage: bash run_lora.sh [CONFIG.json ...] [--key value ...]   (any directory; later settings win)
#   env:   MODEL, DATA (dir with train.json, dev.json; default ./data, else llm/data/sft_demo), OUTPUT_DIR -
#          each overrides the JSON's path when set;
#          LOG_DIR, DEVICE=dcu|cpu, HIP_VISIBLE_DEVICES, NPROC (cpu processes), OVERRIDE_CONFIG (a JSON;
#          the arguments win over it)
set -euo pipefail
LOG_DIR="${LOG_DIR:-$PWD/log/llama_lora_dcu}"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"

if [ -n "${MODEL:-}" ]; then require_model "$MODEL" "and DATA=DIR with train.json and dev.json (default: ./data, else llm/data/sft_demo)"; fi
add_path model_name_or_path "${MODEL:-}"
recipe_data "$ROOT/llm/data/sft_demo"
add_path dataset_name_or_path "$DATA_DIR"
add_path output_dir "${OUTPUT_DIR:-}"
"${LAUNCH[@]}" "$ROOT/llm/run_finetune.py" "$HERE/lora_argument.json" --device "$DEVICE" \
    ${PATH_FLAGS[@]+"${PATH_FLAGS[@]}"} ${DEVICE_SETTINGS[@]+"${DEVICE_SETTINGS[@]}"} \
    ${OVERRIDE_CONFIG:+"$OVERRIDE_CONFIG"} "$@"
