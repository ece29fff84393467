# Sourced by every recipe in this folder: the one place for device setup.
#   DEVICE=npu (default): the Ascend 910 environment of PaddleNLP's recipes, 8 cards through
#     paddle.distributed.launch; fails at once, clearly, when no NPU is present.
#   DEVICE=cpu: the same recipe on the CPU (NPROC processes, default 1), its accelerator-only settings
#     turned off by llm/config/llama/cpu_smoke.json (see llm/config/llama/recipes.sh).
# Sets ROOT (the repository), PYTHON, LAUNCH (an array: the launcher, to which the script is appended),
# and what llm/config/llama/recipes.sh sets (DEVICE_SETTINGS, recipe_data, require_model).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
PYTHON="${PYTHON:-python3}"
DEVICE="${DEVICE:-npu}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DEVICE" = "npu" ]; then
    ascend_env="${ASCEND_TOOLKIT_HOME:-/usr/local/Ascend/ascend-toolkit}/set_env.sh"
    # shellcheck disable=SC1090
    if [ -f "$ascend_env" ]; then set +u; source "$ascend_env"; set -u; fi
    export GLOG_v=0
    export FLAGS_npu_storage_format=1
    export FLAGS_use_stride_kernel=0
    export FLAGS_allocator_strategy=naive_best_fit
    export HCCL_OP_BASE_FFTS_MODE_ENABLE=TRUE
    export HCCL_INTRA_PCIE_ENABLE=0
    export HCCL_INTRA_ROCE_ENABLE=1
    export MULTI_STREAM_MEMORY_REUSE=1
    export FLAGS_NPU_MC2=1      # overlap tensor-parallel communication with the matmuls
    export MC2_Recompute=1
    export ASCEND_RT_VISIBLE_DEVICES="${ASCEND_RT_VISIBLE_DEVICES:-0,1,2,3,4,5,6,7}"
fi

"$PYTHON" -m paddlellm.device --check "$DEVICE" || exit 2
# shellcheck source=../../config/llama/recipes.sh
source "$ROOT/llm/config/llama/recipes.sh"

if [ "$DEVICE" = "npu" ]; then
    # The launcher counts the visible cards from 0, whichever physical cards they are.
    cards="$(echo "$ASCEND_RT_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)"
    LAUNCH=("$PYTHON" -u -m paddle.distributed.launch --devices "$(seq -s, 0 $((cards - 1)))" --log_dir "$LOG_DIR")
elif [ "${NPROC:-1}" -gt 1 ]; then
    LAUNCH=("$PYTHON" -u -m paddle.distributed.launch --nproc_per_node "$NPROC" --log_dir "$LOG_DIR")
else
    LAUNCH=("$PYTHON" -u)
fi
