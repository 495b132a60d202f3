#!/usr/bin/env bash
# Run the test suite with the project venv (create it first with scripts/setup.sh --dev).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"  # msrun starts workers with a bare `python`
exec python -m pytest -q "$@"
