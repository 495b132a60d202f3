#!/usr/bin/env bash
# The embedded demo: GhostNet 0.5x trained on Fashion-MNIST on the CPU, then validated.
#   bash scripts/demo.sh            # from the repository root
# Steps: .venv (created if missing) + requirements.txt; the Debian package dataset-fashion-mnist (installed with
# apt-get when missing); data/fashion_mnist as an ImageFolder tree; train configs/demo/... into runs/demo;
# validate runs/demo/checkpoints/best.ckpt. A finished runs/demo is not retrained (RETRAIN=1 forces it).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
DATA=data/fashion_mnist
RUN=runs/demo
RECIPE=configs/demo/ghostnet_050_fashion_mnist_cpu.yaml
SRC=/usr/share/datasets/fashion-mnist

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV" || { echo "error: 'python3 -m venv' failed; install python3-venv (Python >= 3.9)"; exit 1; }
fi
echo "== installing requirements into $VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt

if [ ! -f "$SRC/train-images-idx3-ubyte.gz" ]; then
    echo "== installing the Debian package dataset-fashion-mnist (31 MB, MIT licence)"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: Fashion-MNIST is not in $SRC and apt-get is not available on this system."
        echo "  Download the four *-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist"
        echo "  (folder data/fashion) and run: $VENV/bin/python scripts/prepare_fashion_mnist.py --src FOLDER --out $DATA"
        echo "  then rerun this script."
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "error: run as root or install sudo, or: apt-get install -y dataset-fashion-mnist"; exit 1; }
        SUDO=sudo
    fi
    $SUDO apt-get install -y dataset-fashion-mnist || {
        $SUDO apt-get update && $SUDO apt-get install -y dataset-fashion-mnist; } || {
        echo "error: apt-get could not install dataset-fashion-mnist (Debian >= 12 / Ubuntu >= 23.04 ship it)."
        echo "  Get the files from https://github.com/zalandoresearch/fashion-mnist and use --src (see above)."
        exit 1; }
fi

echo "== preparing $DATA"
"$VENV/bin/python" scripts/prepare_fashion_mnist.py --src "$SRC" --out "$DATA"

if [ -f "$RUN/summary.json" ] && [ "${RETRAIN:-0}" != 1 ]; then
    echo "== $RUN already holds a finished run (RETRAIN=1 bash scripts/demo.sh trains again)"
else
    OVERWRITE=()
    [ -f "$RUN/summary.json" ] && OVERWRITE=(--overwrite True)
    echo "== training (about 15 minutes on 2 CPU cores; rerun this script to resume if interrupted)"
    "$VENV/bin/python" train.py -c "$RECIPE" --data_dir "$DATA" --output_dir "$RUN" ${OVERWRITE[@]+"${OVERWRITE[@]}"}
fi

echo "== validating $RUN/checkpoints/best.ckpt"
"$VENV/bin/python" validate.py -c "$RECIPE" --data_dir "$DATA" --ckpt_path "$RUN/checkpoints/best.ckpt" \
    --output_dir "$RUN"
