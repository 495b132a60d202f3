#!/usr/bin/env bash
# Validate a checkpoint on DATA_DIR/val with the recipe's model and eval preprocessing.
set -euo pipefail
USAGE="usage: bash scripts/run_eval.sh CONFIG DATA_DIR CKPT_PATH [validate.py overrides...]"
source "$(dirname "$0")/_common.sh"
[ $# -ge 3 ] || die_usage
CONFIG=$(resolve_config "$1") DATA_DIR=$(abs_path "$2") CKPT=$(abs_path "$3"); shift 3
need_file config "$CONFIG"; need_file "data dir" "$DATA_DIR"; need_file checkpoint "$CKPT"
exec python "$REPO_ROOT/validate.py" --config "$CONFIG" --data_dir "$DATA_DIR" --ckpt_path "$CKPT" "$@"
