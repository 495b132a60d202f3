#!/usr/bin/env bash
# One device, no msrun. Hyperparameters live in the YAML; extra arguments are passed to train.py.
set -euo pipefail
USAGE="usage: bash scripts/run_standalone_train.sh CONFIG DATA_DIR [train.py overrides...]
  e.g. bash scripts/run_standalone_train.sh configs/demo/ghostnet_050_fashion_mnist_cpu.yaml data/fashion_mnist"
source "$(dirname "$0")/_common.sh"
[ $# -ge 2 ] || die_usage
CONFIG=$(resolve_config "$1") DATA_DIR=$(abs_path "$2"); shift 2
need_file config "$CONFIG"; need_file "data dir" "$DATA_DIR"
exec python "$REPO_ROOT/train.py" --config "$CONFIG" --data_dir "$DATA_DIR" --distribute False "$@"
