# Shared by the launchers: find the repo and a Python with MindSpore, and put it first on PATH
# (msrun starts every worker with a bare `python`, so the venv's bin must come first).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$REPO_ROOT/.venv/bin/python" ]; then
  export PATH="$REPO_ROOT/.venv/bin:$PATH"
elif [ -n "${VIRTUAL_ENV:-}" ]; then
  export PATH="$VIRTUAL_ENV/bin:$PATH"
fi
if ! python -c "import mindspore" >/dev/null 2>&1; then
  echo "error: '$(command -v python || echo python)' cannot import mindspore. Activate the environment that has" \
       "MindSpore (or run scripts/setup.sh to create .venv) and try again." >&2
  exit 2
fi

die_usage() { echo "$USAGE" >&2; exit 2; }

need_file() {  # need_file WHAT PATH
  [ -e "$2" ] || { echo "error: $1 '$2' does not exist." >&2; exit 2; }
}

need_msrun() {
  command -v msrun >/dev/null 2>&1 || {
    echo "error: msrun not found on PATH ($(command -v python)). It ships with MindSpore >= 2.3; check the install." >&2
    exit 2; }
}
