#!/usr/bin/env bash
# Reproduce a recipe's published result with msrun: the quick check of the published weights (one process),
# the training run under msrun (rerun the same command to resume it), then the final validation and the report
# (one process: RUN_DIR/reproduce.md and reproduce.json). One device: python -m mindghost.tools.reproduce ...
# Env: LOG_DIR (default RUN_DIR/msrun_log), MASTER_PORT (8118), CLUSTER_TIMEOUT (600 s), BIND_CORE (True).
set -euo pipefail
USAGE="usage: bash scripts/run_reproduce.sh CONFIG DATA_DIR [NUM_WORKERS=8] [reproduce options and recipe overrides...]
  e.g. bash scripts/run_reproduce.sh configs/ghostnet/ghostnet_100_ascend.yaml /data/imagenet 8 --pretrained_dir /data/weights"
source "$(dirname "$0")/_common.sh"
[ $# -ge 2 ] || die_usage
CONFIG=$(resolve_config "$1") DATA_DIR=$(abs_path "$2"); shift 2
NUM_WORKERS=8
if [ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]]; then NUM_WORKERS=$1; shift; fi
need_file config "$CONFIG"; need_file "data dir" "$DATA_DIR"; need_msrun
# the run directory the three steps share (the one reproduce.py chooses), and the options train.py must not get
RUN_DIR=$(PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" python -m mindghost.tools.reproduce \
  -c "$CONFIG" --data_dir "$DATA_DIR" "$@" --stage run_dir)
ORIG_ARGS=("$@")
TRAIN_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ckpt_path|--pretrained_dir|--tolerance|--quick_check|--weights_only|--stage|--output_dir)
      if [ $# -ge 2 ] && [[ $2 != --* ]]; then shift; fi ;;
    --ckpt_path=*|--pretrained_dir=*|--tolerance=*|--quick_check=*|--weights_only=*|--stage=*|--output_dir=*) ;;
    *) TRAIN_ARGS+=("$1") ;;
  esac
  shift
done
RUN_DIR=$(abs_path "$RUN_DIR")
REPRODUCE=(python -m mindghost.tools.reproduce -c "$CONFIG" --data_dir "$DATA_DIR" --output_dir "$RUN_DIR")
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
"${REPRODUCE[@]}" "${ORIG_ARGS[@]+"${ORIG_ARGS[@]}"}" --stage check
if [ -f "$RUN_DIR/summary.json" ]; then
  echo "== $RUN_DIR holds a finished run: not retrained"
else
  run_msrun "$(abs_path "${LOG_DIR:-$RUN_DIR/msrun_log}")" --worker_num="$NUM_WORKERS" --local_worker_num="$NUM_WORKERS" \
    --master_addr=127.0.0.1 --master_port="${MASTER_PORT:-8118}" --node_rank=0 \
    --join=True --cluster_time_out="${CLUSTER_TIMEOUT:-600}" --bind_core="${BIND_CORE:-True}" \
    "$REPO_ROOT/train.py" --config "$CONFIG" --data_dir "$DATA_DIR" \
    ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"} --output_dir "$RUN_DIR" --distribute True
fi
"${REPRODUCE[@]}" "${ORIG_ARGS[@]+"${ORIG_ARGS[@]}"}" --stage report
