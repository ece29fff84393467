#!/usr/bin/env bash
# SFT of Llama-2-13B on one node of 8 Ascend 910 cards: bf16 O2 with master grads, tensor parallel 8 with
# sequence parallel, sharding stage1, flash attention and fused rope / rms_norm / qkv / ffn.
#   usage: bash llama_npu_sft_N1C8.sh [max_steps] [more run_finetune flags]   (works from any directory)
#   env:   MODEL (local checkpoint dir), DATA (dir with train.json, dev.json; default ./data, else the demo
#          set llm/data/sft_demo), OUTPUT_DIR, LOG_DIR, DEVICE=npu|cpu (cpu: the settings below that need
#          an accelerator are turned off by llm/config/llama/cpu_smoke.json), NPROC (cpu processes, 1),
#          OVERRIDE_CONFIG (a JSON whose keys win over the flags below; extra arguments win over both)
set -euo pipefail
max_steps="${1:-100}"
shift || true
LOG_DIR="${LOG_DIR:-$PWD/sft_bf16_llama_N1C8}"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
model="${MODEL:-meta-llama/Llama-2-13b}"
require_model "$model" "and DATA=DIR with train.json and dev.json (default: ./data, else llm/data/sft_demo)"
recipe_data "$ROOT/llm/data/sft_demo"

"${LAUNCH[@]}" "$ROOT/llm/run_finetune.py" \
    --device "$DEVICE" \
    --model_name_or_path "$model" \
    --dataset_name_or_path "$DATA_DIR" \
    --output_dir "${OUTPUT_DIR:-$PWD/output/sft_bf16_llama_N1C8}" \
    --per_device_train_batch_size 2 \
    --gradient_accumulation_steps 64 \
    --per_device_eval_batch_size 1 \
    --eval_accumulation_steps 1 \
    --max_steps "$max_steps" \
    --learning_rate 3e-06 \
    --warmup_steps 20 \
    --save_steps 1000 \
    --logging_steps 1 \
    --evaluation_strategy epoch \
    --src_length 1024 \
    --max_length 4096 \
    --bf16 true \
    --fp16_opt_level O2 \
    --amp_master_grad true \
    --do_train true \
    --disable_tqdm true \
    --recompute false \
    --tensor_parallel_degree 8 \
    --tensor_parallel_output true \
    --sequence_parallel true \
    --pipeline_parallel_degree 1 \
    --sharding_parallel_degree 1 \
    --sharding stage1 \
    --sharding_parallel_config "enable_stage1_tensor_fusion enable_stage1_overlap" \
    --use_flash_attention true \
    --use_fused_rope true \
    --use_fused_rms_norm true \
    --fuse_attention_qkv true \
    --fuse_attention_ffn true \
    --pad_to_multiple_of 4096 \
    ${DEVICE_SETTINGS[@]+"${DEVICE_SETTINGS[@]}"} \
    ${OVERRIDE_CONFIG:+"$OVERRIDE_CONFIG"} \
    "$@"
