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

# The launchers run from the caller's working directory (they do not cd to the repo), so every relative path
# the user types (CONFIG, DATA_DIR, CKPT, LOG_DIR, --output_dir ...) means what it means in their shell.
# abs_path PATH: PATH made absolute against that directory (msrun workers get absolute paths).
abs_path() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
  esac
}

# resolve_config PATH: a recipe as given (relative to the caller), else relative to the repo root, so that
# both `configs/x.yaml` from the repo and `../mindghost/configs/x.yaml` from elsewhere work.
resolve_config() {
  if [ -e "$1" ]; then abs_path "$1"; elif [ -e "$REPO_ROOT/$1" ]; then printf '%s\n' "$REPO_ROOT/$1"; else printf '%s\n' "$1"; fi
}

need_file() {  # need_file WHAT PATH
  [ -e "$2" ] || { echo "error: $1 '$2' does not exist." >&2; exit 2; }
}

need_msrun() {
  command -v msrun >/dev/null 2>&1 || {
    echo "error: msrun not found on PATH ($(command -v python)). It ships with MindSpore >= 2.3; check the install." >&2
    exit 2; }
}

# need_free_port PORT: stop before msrun when PORT (MASTER_PORT) is taken on this machine. msrun's scheduler then
# fails at once, but its workers wait out the whole cluster timeout (600 s) before dying with raw tracebacks.
# A bind is the test (a listening socket refuses it; a closed connection in TIME_WAIT does not).
need_free_port() {
  local port=$1 rc=0
  python -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("", int(sys.argv[1])))
except OSError:
    sys.exit(3)
' "$port" || rc=$?
  if [ "$rc" -eq 3 ]; then
    echo "error: port $port on this machine is already in use (MASTER_PORT=$port; another msrun job, or any other" \
         "program, holds it), so msrun's scheduler could not start. Stop that job, or pick a free port:" \
         "MASTER_PORT=$((port + 1)) bash $0 ..." >&2
    exit 2
  fi
}

# run_msrun LOG_DIR MSRUN_ARGS...: run msrun (its console output also goes to LOG_DIR/msrun.log); on failure
# name the failed rank(s) and their logs. msrun itself reports only a PID ("Worker process PID exit with
# exception"); every train.py worker prints "mindghost worker: rank R of N, pid P" first, which maps it back.
run_msrun() {
  local log_dir=$1; shift
  mkdir -p "$log_dir"
  set +e
  msrun --log_dir="$log_dir" "$@" 2>&1 | tee "$log_dir/msrun.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then set -e; return 0; fi
  # the report runs without `set -e`: a grep that finds nothing (a worker that died before its first line)
  # must not end the launcher before it has said what failed
  local named=0 pid code log rank line
  while read -r pid code; do
    log=$(grep -l "mindghost worker: rank [0-9]* of [0-9]*, pid $pid\b" "$log_dir"/worker_*.log 2>/dev/null | head -n1)
    if [ -n "$log" ]; then
      rank=$(grep -o "mindghost worker: rank [0-9]*" "$log" | head -n1 | grep -o "[0-9]*$")
      echo "error: rank $rank (pid $pid) failed with exit code $code; its log: $log" >&2
      grep -m3 -E "^(error: |[A-Za-z]*Error)" "$log" | sed 's/^/    /' >&2 || true
      named=1
    fi
  done < <(sed -n 's/.*Worker process \([0-9]*\) exit with exception. Error code: \(-\{0,1\}[0-9]*\).*/\1 \2/p' \
           "$log_dir/msrun.log")
  if [ "$named" -eq 0 ]; then
    echo "error: the distributed job failed (msrun exit code $rc); no worker reported its rank. Logs:" \
         "$log_dir/msrun.log, $log_dir/scheduler.log, $log_dir/worker_*.log" >&2
    for log in "$log_dir"/scheduler.log "$log_dir"/worker_*.log; do
      [ -f "$log" ] || continue
      line=$(grep -m1 -E "^(error: |[A-Za-z]*Error)|ERROR" "$log")
      [ -n "$line" ] && echo "    $(basename "$log"): $line" >&2
    done
  fi
  set -e
  return "$rc"
}
