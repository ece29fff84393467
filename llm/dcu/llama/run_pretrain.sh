#!/usr/bin/env bash
# Pretraining of Llama-2-13B on 8 Hygon K100_AI cards: the settings of pretrain_pp8.json
# (fp16 O2 with master grads, tensor parallel 1, pipeline parallel 8, sharding stage1, max_seq_length 4096).
#   usage: bash run_pretrain.sh [CONFIG.json ...] [--key value ...]   (any directory; later settings win)
#   env:   MODEL (config, and weights with continue_training true), TOKENIZER (default: MODEL), INPUT_DIR (the
#          PREFIX of the .bin/.idx from llm/tools/preprocess_data.py), OUTPUT_DIR - each overrides the JSON
#          when set; LOG_DIR, DEVICE=dcu|cpu, HIP_VISIBLE_DEVICES, NPROC, OVERRIDE_CONFIG (a JSON;
#          the arguments win over it)
set -euo pipefail
LOG_DIR="${LOG_DIR:-$PWD/log/llama_pretrain_dcu}"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"

if [ -n "${MODEL:-}" ]; then require_model "$MODEL" "and INPUT_DIR=PREFIX of the PREFIX.bin/.idx that llm/tools/preprocess_data.py writes"; fi
add_path model_name_or_path "${MODEL:-}"
add_path tokenizer_name_or_path "${TOKENIZER:-}"
add_path input_dir "${INPUT_DIR:-}"
add_path output_dir "${OUTPUT_DIR:-}"
"${LAUNCH[@]}" "$ROOT/llm/run_pretrain.py" "$HERE/pretrain_pp8.json" --device "$DEVICE" \
    ${PATH_FLAGS[@]+"${PATH_FLAGS[@]}"} ${DEVICE_SETTINGS[@]+"${DEVICE_SETTINGS[@]}"} \
    ${OVERRIDE_CONFIG:+"$OVERRIDE_CONFIG"} "$@"
