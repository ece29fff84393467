# Sourced by the env.sh of every Llama recipe folder (llm/npu/llama, llm/dcu/llama), after the device
# check: what the recipes share, and the one place that says what they do differently on the CPU.
#   DEVICE_SETTINGS   an array a recipe passes right after its own settings (before OVERRIDE_CONFIG and its
#                     arguments). With DEVICE=cpu it is this folder's cpu_smoke.json: it turns the recipe's
#                     accelerator-only settings off (bf16, master grads, fused kernels, tensor/sequence/
#                     pipeline parallelism, sharding) and sizes the run for a CPU (short lengths, no gradient
#                     accumulation, no intermediate checkpoints); the training log names, in one line, each
#                     setting it changed. Empty on a device.
#   recipe_data DEMO  sets DATA_DIR: DATA when given, else ./data when it exists (PaddleNLP's layout), else
#                     the demo set DEMO; says which when DATA is not given.
#   require_model DIR NEEDS   stops with one error line when DIR (MODEL or the recipe's default) is not a
#                     local checkpoint, saying what a run needs (NEEDS: the recipe's data variable).
DEVICE_SETTINGS=()
if [ "$DEVICE" = "cpu" ]; then
    DEVICE_SETTINGS=("$ROOT/llm/config/llama/cpu_smoke.json")
fi

recipe_data() {
    if [ -n "${DATA:-}" ]; then
        DATA_DIR="$DATA"
    elif [ -d ./data ]; then
        DATA_DIR="$PWD/data"
        echo "DATA is not set: using ./data ($DATA_DIR)"
    else
        DATA_DIR="$1"
        echo "DATA is not set and there is no ./data: using the demo set $DATA_DIR"
    fi
}

require_model() {
    if [ ! -f "$1/config.json" ]; then
        echo "error: MODEL '$1' is not a local checkpoint directory (a run needs MODEL=DIR holding config.json" \
             "and the weights, e.g. MODEL=./output/quickstart/checkpoint from bash llm/quickstart.sh, $2)" >&2
        exit 2
    fi
}
