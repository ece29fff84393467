# Sourced by every recipe in this folder: the one place for device setup.
#   DEVICE=dcu (default): Hygon K100_AI cards through paddle.distributed.launch, the cards being
#     HIP_VISIBLE_DEVICES (default 0-7); fails at once, clearly, when no DCU is present.
#   DEVICE=cpu: the same recipe on the CPU (NPROC processes, default 1), its accelerator-only settings
#     turned off by llm/config/llama/cpu_smoke.json (see llm/config/llama/recipes.sh).
# Needs LOG_DIR. Sets ROOT (the repository), PYTHON, LAUNCH (an array: the launcher, to which the script
# is appended), the function add_path (collects --key value flags in PATH_FLAGS), and what
# llm/config/llama/recipes.sh sets (DEVICE_SETTINGS, recipe_data, require_model).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
PYTHON="${PYTHON:-python3}"
DEVICE="${DEVICE:-dcu}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

case "$DEVICE" in
    dcu|cpu) ;;
    *) echo "error: DEVICE must be dcu or cpu for the recipes in $HERE (got '$DEVICE')" >&2; exit 2 ;;
esac

if [ "$DEVICE" = "dcu" ]; then
    dtk_env="${DTK_HOME:-/opt/dtk}/env.sh"
    # shellcheck disable=SC1090
    if [ -f "$dtk_env" ]; then set +u; source "$dtk_env" >/dev/null; set -u; fi
    export HIP_VISIBLE_DEVICES="${HIP_VISIBLE_DEVICES:-0,1,2,3,4,5,6,7}"
fi

"$PYTHON" -m paddlellm.device --check "$DEVICE" || exit 2
# shellcheck source=../../config/llama/recipes.sh
source "$ROOT/llm/config/llama/recipes.sh"

if [ "$DEVICE" = "dcu" ]; then
    # HIP numbers the visible cards from 0, and launch's --devices counts among the visible ones.
    IFS=, read -r -a visible <<< "$HIP_VISIBLE_DEVICES"
    LAUNCH=("$PYTHON" -u -m paddle.distributed.launch --devices "$(seq -s, 0 $(( ${#visible[@]} - 1 )))"
            --log_dir "$LOG_DIR")
elif [ "${NPROC:-1}" -gt 1 ]; then
    LAUNCH=("$PYTHON" -u -m paddle.distributed.launch --nproc_per_node "$NPROC" --log_dir "$LOG_DIR")
else
    LAUNCH=("$PYTHON" -u)
fi

# add_path KEY VALUE: when VALUE is set, pass --KEY VALUE after the recipe's JSON (so it wins over it).
PATH_FLAGS=()
add_path() {
    if [ -n "${2:-}" ]; then PATH_FLAGS+=("--$1" "$2"); fi
}
