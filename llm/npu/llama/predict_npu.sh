#!/usr/bin/env bash
# Run the static predictor on an exported model; dtype and device come from its manifest.
#   usage: bash predict_npu.sh [DIR=./inference] [predictor flags, e.g. --data_file F --output_file O]
set -euo pipefail
model_path="$(realpath -m "${1:-./inference}")"
shift || true
LOG_DIR=.
PYTHON="${PYTHON:-python3}"
# The device the model was exported for (when its manifest is unreadable, the predictor says why).
DEVICE="${DEVICE:-$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["device"])' \
    "$model_path/paddlellm_manifest.json" 2>/dev/null || echo cpu)}"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
"$PYTHON" "$ROOT/llm/predict/predictor.py" --model_name_or_path "$model_path" --inference_model --mode static \
    --block_attn "$@"
