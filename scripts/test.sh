#!/usr/bin/env bash
# The test suite, in two stages (the README's test command; .ci/run calls it after setup and lint):
#   stage 1, main: the full suite in .venv (Python 3.11 + MindSpore 2.10, requirements-dev.txt; create it first
#                  with scripts/setup.sh --dev)
#   stage 2, py39: the fast tier (`pytest -m stack`: every package at least once) in .venv39, Python 3.9 +
#                  MindSpore 2.7 (requirements-py39.txt), created here from pyenv's Python 3.9 or a python3.9
#                  on PATH (or $PYTHON39). No Python 3.9 is an error, never a skip.
# Usage: scripts/test.sh [--stack main|py39] [pytest arguments...]   (no --stack: both stages)
# Each stage runs in TEST_WORKERS parallel pytest processes (pytest-xdist; default: the cores, at most 4; 1 = no
# xdist). Most of the suite's time is single-threaded graph compilation, so 2 processes on 2 cores take ~0.6x.
set -uo pipefail
cd "$(dirname "$0")/.."
STACK=all
if [ "${1:-}" = "--stack" ]; then
  STACK=${2:?"--stack needs a value: main or py39"}
  shift 2
fi
case "$STACK" in
  all|main|py39) ;;
  *) echo "error: --stack $STACK: expected main or py39" >&2; exit 2 ;;
esac
VENV39=${VENV39:-.venv39}
SUMMARY=()

find_python39() {  # prints the path of a working Python 3.9, or nothing
  local candidates=() p
  [ -n "${PYTHON39:-}" ] && candidates+=("$PYTHON39")
  if command -v pyenv >/dev/null 2>&1 && p=$(pyenv prefix 3.9 2>/dev/null); then
    candidates+=("$p/bin/python3.9")
  fi
  for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9*/bin/python3.9; do candidates+=("$p"); done
  p=$(command -v python3.9 2>/dev/null) && candidates+=("$p")
  for p in "${candidates[@]}"; do
    if [ -x "$p" ] && "$p" -c 'import sys, venv; assert sys.version_info[:2] == (3, 9)' >/dev/null 2>&1; then
      echo "$p"
      return
    fi
  done
}

# run_stage NAME VENV PYTEST_ARGS...: pytest with VENV's Python (msrun starts workers with a bare `python`, so
# VENV/bin leads PATH); records the wall time and pytest's summary line
run_stage() {
  local name=$1 venv=$2 log start rc secs counts
  shift 2
  log=$(mktemp)
  start=$(date +%s)
  echo "== stage $name: $("$venv/bin/python" -c 'import platform, mindspore; print("Python", platform.python_version(), "+ MindSpore", mindspore.__version__)')"
  local workers=${TEST_WORKERS:-$(n=$(nproc 2>/dev/null || echo 1); echo $((n < 4 ? n : 4)))} parallel=()
  if [ "$workers" -gt 1 ] && "$venv/bin/python" -c 'import xdist' >/dev/null 2>&1; then
    parallel=(-n "$workers" --dist worksteal)
  elif [ "$workers" -gt 1 ]; then
    echo "== stage $name: pytest-xdist is not installed in $venv: one process (pip install pytest-xdist)"
    workers=1
  fi
  echo "== stage $name: ${workers} pytest process(es)"
  PATH="$(cd "$venv/bin" && pwd):$PATH" "$venv/bin/python" -m pytest -q ${parallel[@]+"${parallel[@]}"} "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  secs=$(( $(date +%s) - start ))
  counts=$(grep -E '^=*.* in [0-9.]+s' "$log" | tail -1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*//')
  rm -f "$log"
  SUMMARY+=("stage $name: ${counts:-no result} (exit $rc), wall $((secs / 60))m$(printf %02d $((secs % 60)))s")
  return "$rc"
}

stage_main() {
  [ -x .venv/bin/python ] || { echo "error: no .venv; run scripts/setup.sh --dev first" >&2; return 1; }
  run_stage "1 (main, full suite)" .venv "$@"
}

stage_py39() {
  local py start
  if [ ! -x "$VENV39/bin/python" ]; then
    py=$(find_python39)
    if [ -z "$py" ]; then
      echo "################################################################################" >&2
      echo "error: stage 2 needs Python 3.9 and found none (pyenv prefix 3.9, \$PYENV_ROOT/versions/3.9*," >&2
      echo "       python3.9 on PATH, \$PYTHON39). Install it (pyenv install 3.9) or set PYTHON39=/path." >&2
      echo "       The older-stack stage is FAILED, not skipped." >&2
      echo "################################################################################" >&2
      SUMMARY+=("stage 2 (py39): FAILED, no Python 3.9")
      return 1
    fi
    echo "== creating $VENV39 with $py"
    "$py" -m venv "$VENV39" || { SUMMARY+=("stage 2 (py39): FAILED, venv"); return 1; }
  fi
  start=$(date +%s)
  echo "== installing requirements-py39.txt and mindghost (editable) into $VENV39"
  "$VENV39/bin/python" -m pip install -q --upgrade pip &&
    "$VENV39/bin/python" -m pip install -q -r requirements-py39.txt &&
    "$VENV39/bin/python" -m pip install -q --no-deps -e . >/dev/null ||
    { SUMMARY+=("stage 2 (py39): FAILED, install"); return 1; }
  echo "== $VENV39 ready in $(( $(date +%s) - start ))s"
  # the fast tier within what the user selected: `-m EXPR` becomes `-m "stack and (EXPR)"`
  local args=() marker=stack rc
  while [ $# -gt 0 ]; do
    case "$1" in
      -m) marker="stack and (${2:?-m needs an expression})"; shift 2 ;;
      -m*) marker="stack and (${1#-m})"; shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  run_stage "2 (py39, -m stack)" "$VENV39" -m "$marker" ${args[@]+"${args[@]}"}
  rc=$?
  if [ "$rc" = 5 ] && [ ${#args[@]} -gt 0 ]; then  # pytest's "no tests collected": none of the user's are in the tier
    echo "== stage 2: none of the selected tests is in the stack tier"
    return 0
  fi
  return "$rc"
}

status=0
if [ "$STACK" != py39 ]; then stage_main ${1+"$@"} || status=1; fi
if [ "$STACK" != main ]; then stage_py39 ${1+"$@"} || status=1; fi
echo
for line in "${SUMMARY[@]}"; do echo "== $line"; done
exit "$status"
