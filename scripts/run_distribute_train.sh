#!/usr/bin/env bash
# Data-parallel training on one node with msrun (8 Ascend cards by default).
# Env: LOG_DIR (default runs/msrun_log), MASTER_PORT (8118), CLUSTER_TIMEOUT (600 s), BIND_CORE (True).
set -euo pipefail
USAGE="usage: bash scripts/run_distribute_train.sh CONFIG DATA_DIR [NUM_WORKERS=8] [train.py overrides...]
  e.g. bash scripts/run_distribute_train.sh configs/ghostnet/ghostnet_100_ascend.yaml /data/imagenet 8"
source "$(dirname "$0")/_common.sh"
[ $# -ge 2 ] || die_usage
CONFIG=$(resolve_config "$1") DATA_DIR=$(abs_path "$2"); shift 2
NUM_WORKERS=8
if [ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]]; then NUM_WORKERS=$1; shift; fi
need_file config "$CONFIG"; need_file "data dir" "$DATA_DIR"; need_msrun
LOG_DIR=$(abs_path "${LOG_DIR:-runs/msrun_log}")
need_free_port "${MASTER_PORT:-8118}"
run_msrun "$LOG_DIR" --worker_num="$NUM_WORKERS" --local_worker_num="$NUM_WORKERS" \
  --master_addr=127.0.0.1 --master_port="${MASTER_PORT:-8118}" --node_rank=0 \
  --join=True --cluster_time_out="${CLUSTER_TIMEOUT:-600}" \
  --bind_core="${BIND_CORE:-True}" \
  "$REPO_ROOT/train.py" --config "$CONFIG" --data_dir "$DATA_DIR" --distribute True "$@"
