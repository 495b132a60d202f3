#!/usr/bin/env bash
# Data-parallel training across nodes with msrun: run this once on every node, with the same CONFIG,
# NUM_NODES and MASTER_ADDR (node 0's address, reachable from all nodes) and that node's NODE_RANK.
# Env: WORKERS_PER_NODE (8), MASTER_PORT (8118, must be free on node 0), LOG_DIR (runs/msrun_log),
#      CLUSTER_TIMEOUT (600 s: how long nodes wait for each other, and for a dead worker to be noticed),
#      BIND_CORE (True).
set -euo pipefail
USAGE="usage: bash scripts/run_multinode_train.sh CONFIG DATA_DIR NUM_NODES NODE_RANK MASTER_ADDR [train.py overrides...]
  e.g. on node 0: bash scripts/run_multinode_train.sh configs/ghostnet/ghostnet_100_ascend.yaml /data/imagenet 2 0 10.0.0.1
       on node 1: bash scripts/run_multinode_train.sh configs/ghostnet/ghostnet_100_ascend.yaml /data/imagenet 2 1 10.0.0.1"
source "$(dirname "$0")/_common.sh"
[ $# -ge 5 ] || die_usage
CONFIG=$(resolve_config "$1") DATA_DIR=$(abs_path "$2") NUM_NODES=$3 NODE_RANK=$4 MASTER_ADDR=$5; shift 5
WORKERS_PER_NODE=${WORKERS_PER_NODE:-8}
need_file config "$CONFIG"; need_file "data dir" "$DATA_DIR"; need_msrun
LOG_DIR=$(abs_path "${LOG_DIR:-runs/msrun_log}")
[ "$NODE_RANK" != 0 ] || need_free_port "${MASTER_PORT:-8118}"  # node 0 runs the scheduler
run_msrun "$LOG_DIR" --worker_num=$((NUM_NODES * WORKERS_PER_NODE)) \
  --local_worker_num="$WORKERS_PER_NODE" --master_addr="$MASTER_ADDR" --master_port="${MASTER_PORT:-8118}" \
  --node_rank="$NODE_RANK" --join=True --cluster_time_out="${CLUSTER_TIMEOUT:-600}" \
  --bind_core="${BIND_CORE:-True}" \
  "$REPO_ROOT/train.py" --config "$CONFIG" --data_dir "$DATA_DIR" --distribute True "$@"
