#!/usr/bin/env bash
# Create the venv ($VENV, default ./.venv) with the pinned requirements and matplotlib (with --dev also the
# test/optional extras), and install the Fashion-MNIST Debian package used by the demo and the real-data tests.
# Safe to run again: an existing venv is reused and what is installed already is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
FASHION_MNIST=/usr/share/datasets/fashion-mnist
BY_HAND="Download the four *-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist (folder data/fashion)
  and run: $VENV/bin/python scripts/prepare_fashion_mnist.py --src FOLDER --output_dir data/fashion_mnist"
REQUIREMENTS=requirements.txt
if [ "${1:-}" = "--dev" ]; then
  REQUIREMENTS=requirements-dev.txt
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  "$PYTHON" -m venv "$VENV" || {
    echo "error: '$PYTHON -m venv' failed; install python3-venv (Python >= 3.9)" >&2; exit 1; }
fi
echo "== installing $REQUIREMENTS into $VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r "$REQUIREMENTS"
# matplotlib draws the run's curves.png (the demo's figure); an optional extra of the package, so installed here
# rather than pinned in requirements.txt. Without it training works and logs one line instead of the figure.
"$VENV/bin/python" -m pip install -q "matplotlib>=3.5"
# mindghost itself, editable: `import mindghost` works from any folder and the mindghost-* commands exist
install_log=$(mktemp)  # setuptools' build warnings are noise here; shown only if the install fails
"$VENV/bin/python" -m pip install -q --no-deps -e . >"$install_log" 2>&1 || { cat "$install_log" >&2; exit 1; }
rm -f "$install_log"

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO=sudo
fi
apt_install() {  # quiet; refreshes stale package lists once
  $SUDO apt-get install -y -qq "$@" >/dev/null 2>&1 || {
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$@" >/dev/null; }
}
can_apt() {
  command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }
}

# The package is not needed once the demo's data was prepared by hand (BY_HAND).
if [ ! -f "$FASHION_MNIST/train-images-idx3-ubyte.gz" ] && [ ! -f data/fashion_mnist/.complete ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "NOTE: no apt-get, so Fashion-MNIST (the demo's data) is not installed. $BY_HAND" >&2
  elif ! can_apt; then
    echo "error: run as root or install sudo, or: apt-get install -y dataset-fashion-mnist" >&2; exit 1
  else
    echo "== installing the Debian package dataset-fashion-mnist (31 MB, MIT licence)"
    apt_install dataset-fashion-mnist || {
      echo "error: apt-get could not install dataset-fashion-mnist (Debian >= 12 / Ubuntu >= 23.04 ship it)." \
           "$BY_HAND" >&2
      exit 1; }
  fi
fi

# A C++ compiler builds mindghost's CPU depthwise kernel on first use (mindghost/cpu/depthwise.py). Without
# one everything still works, with MindSpore's slower Conv2D (a warning says so).
if ! command -v "${CXX:-g++}" >/dev/null 2>&1; then
  if can_apt && { echo "== installing g++ (for the CPU depthwise kernel)"; apt_install g++; }; then
    :
  else
    echo "NOTE: no C++ compiler (${CXX:-g++}): depthwise convs will use MindSpore's Conv2D on CPU (training ~1.6x slower)." \
         "Install g++ or set CXX." >&2
  fi
fi
