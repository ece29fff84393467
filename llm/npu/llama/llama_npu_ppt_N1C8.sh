#!/usr/bin/env bash
# Pretraining of Llama-2-13B on one node of 8 Ascend 910 cards: bf16 O2 with master grads, tensor parallel 4
# with sequence parallel, sharding stage1 over 2, flash attention and fused rope / rms_norm / qkv / ffn.
#   usage: bash llama_npu_ppt_N1C8.sh [max_steps] [more run_pretrain flags]   (works from any directory)
#   output: checkpoints and the final model in OUTPUT_DIR, default ./output as in PaddleNLP, so that
#           `bash export_npu.sh ./output ./inference` exports it
#   env:   MODEL (config, and weights unless continue_training 0), TOKENIZER, INPUT_DIR (PREFIX of the
#          .bin/.idx from llm/tools/preprocess_data.py), OUTPUT_DIR, LOG_DIR, DEVICE=npu|cpu (cpu: the
#          settings below that need an accelerator are turned off by llm/config/llama/cpu_smoke.json),
#          NPROC (cpu processes, 1), OVERRIDE_CONFIG (a JSON whose keys win over the flags below; extra
#          arguments win over both)
set -euo pipefail
max_steps="${1:-2000}"
shift || true
LOG_DIR="${LOG_DIR:-$PWD/ppt_bf16_llama_N1C8}"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"
model="${MODEL:-meta-llama/Llama-2-13b}"
require_model "$model" "and INPUT_DIR=PREFIX of the PREFIX.bin/.idx that llm/tools/preprocess_data.py writes"

"${LAUNCH[@]}" "$ROOT/llm/run_pretrain.py" \
    --device "$DEVICE" \
    --model_name_or_path "$model" \
    --tokenizer_name_or_path "${TOKENIZER:-$model}" \
    --input_dir "${INPUT_DIR:-./pre-data}" \
    --output_dir "${OUTPUT_DIR:-$PWD/output}" \
    --split 949,50,1 \
    --max_seq_length 4096 \
    --per_device_train_batch_size 2 \
    --gradient_accumulation_steps 32 \
    --per_device_eval_batch_size 1 \
    --learning_rate 0.00001 \
    --min_learning_rate 0.000001 \
    --max_steps "$max_steps" \
    --save_steps 2000 \
    --seed 100 \
    --warmup_steps 20 \
    --max_grad_norm 1.0 \
    --logging_steps 1 \
    --evaluation_strategy steps \
    --eval_steps 1001 \
    --disable_tqdm true \
    --continue_training true \
    --do_train true \
    --bf16 true \
    --fp16_opt_level O2 \
    --amp_master_grad true \
    --tensor_parallel_degree 4 \
    --tensor_parallel_config "enable_mp_async_allreduce enable_mp_skip_c_identity" \
    --sequence_parallel true \
    --pipeline_parallel_degree 1 \
    --pipeline_parallel_config "disable_partial_send_recv" \
    --sharding stage1 \
    --sharding_parallel_degree 2 \
    --use_flash_attention true \
    --use_fused_rms_norm true \
    --use_fused_rope true \
    --fuse_attention_qkv true \
    --fuse_attention_ffn true \
    ${DEVICE_SETTINGS[@]+"${DEVICE_SETTINGS[@]}"} \
    ${OVERRIDE_CONFIG:+"$OVERRIDE_CONFIG"} \
    "$@"
