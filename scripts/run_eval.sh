#!/usr/bin/env bash
# Validate a checkpoint on DATA_DIR/val with the recipe's model and eval preprocessing.
set -euo pipefail
USAGE="usage: bash scripts/run_eval.sh CONFIG DATA_DIR CKPT_PATH [validate.py overrides...]"
source "$(dirname "$0")/_common.sh"
[ $# -ge 3 ] || die_usage
CONFIG=$1 DATA_DIR=$2 CKPT=$3; shift 3
need_file config "$CONFIG"; need_file "data dir" "$DATA_DIR"; need_file checkpoint "$CKPT"
cd "$REPO_ROOT"
exec python validate.py --config "$CONFIG" --data_dir "$DATA_DIR" --ckpt_path "$CKPT" "$@"
