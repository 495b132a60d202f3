#!/usr/bin/env bash
# The embedded demo: GhostNet 0.5x trained on Fashion-MNIST on the CPU, then validated.
#   bash scripts/demo.sh            # from the repository root
# Steps: scripts/setup.sh (.venv created if missing + requirements.txt; the Debian package dataset-fashion-mnist,
# installed with apt-get when missing); data/fashion_mnist as an ImageFolder tree; train configs/demo/... into
# runs/demo; validate runs/demo/checkpoints/best.ckpt and print the verdict against the recipe's expected top-1.
# A finished runs/demo is not retrained (RETRAIN=1 forces it).
set -euo pipefail
cd "$(dirname "$0")/.."

export VENV=${VENV:-.venv}
DATA=data/fashion_mnist
RUN=runs/demo
RECIPE=configs/demo/ghostnet_050_fashion_mnist_cpu.yaml
SRC=/usr/share/datasets/fashion-mnist

bash scripts/setup.sh

if [ ! -f "$SRC/train-images-idx3-ubyte.gz" ] && [ ! -f "$DATA/.complete" ]; then
    echo "error: Fashion-MNIST is neither in $SRC nor prepared in $DATA (scripts/setup.sh printed how to get it); then rerun this script."
    exit 1
fi
echo "== preparing $DATA"
"$VENV/bin/python" scripts/prepare_fashion_mnist.py --src "$SRC" --output_dir "$DATA"

if [ -f "$RUN/summary.json" ] && [ "${RETRAIN:-0}" != 1 ]; then
    echo "== $RUN already holds a finished run (RETRAIN=1 bash scripts/demo.sh trains again)"
else
    OVERWRITE=()
    [ -f "$RUN/summary.json" ] && OVERWRITE=(--overwrite True)
    echo "== training (8-12 minutes on 2 CPU cores; rerun this script to resume if interrupted)"
    "$VENV/bin/python" train.py -c "$RECIPE" --data_dir "$DATA" --output_dir "$RUN" ${OVERWRITE[@]+"${OVERWRITE[@]}"}
fi

# the trainer draws curves.png after every epoch; redraw it here so that a run finished earlier (or trained before
# matplotlib was installed) still ends with the figure
"$VENV/bin/python" -m mindghost.tools.plots --run_dir "$RUN"

# validate best.ckpt ($RUN/validate.json), then compare with the recipe's expected block: $RUN/reproduce.md and
# reproduce.json, and the verdict line last (exit code 1 when the run is outside the tolerance)
echo "== validating $RUN/checkpoints/best.ckpt against the recipe's expected figures"
"$VENV/bin/python" -m mindghost.tools.reproduce -c "$RECIPE" --data_dir "$DATA" --output_dir "$RUN" --stage report
