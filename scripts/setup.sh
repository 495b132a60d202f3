#!/usr/bin/env bash
# Create ./.venv with the pinned requirements (and, with --dev, the test/optional extras), and install the
# Fashion-MNIST Debian package used by the demo and the real-data tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -r requirements-dev.txt
else
  .venv/bin/python -m pip install -q -r requirements.txt
fi
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "NOTE: no apt-get: the demo needs Fashion-MNIST's four IDX .gz files in /usr/share/datasets/fashion-mnist" \
         "(Debian package dataset-fashion-mnist), or pass --src DIR to scripts/prepare_fashion_mnist.py." >&2
  fi
fi
