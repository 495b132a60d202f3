"""The msrun launchers when the job cannot start or a worker dies early (issue #18 item 5), with a stand-in
`msrun` (no MindSpore). Before: a taken MASTER_PORT made msrun's scheduler fail at once while the workers waited
out the cluster timeout (600 s); and `run_msrun` ended under `set -e` without its failure report when a worker
had died before printing its first line."""
import os
import socket
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = f"""#!/bin/sh
case "$2" in *"import mindspore"*) exit 0 ;; esac  # the launchers' probe: no MindSpore needed here
exec {sys.executable} "$@"
"""
# records its call; with MSRUN_DIE_EARLY set, plays a worker that died before its first line
MSRUN = """#!/bin/sh
echo called > "$MSRUN_CALLED"
for a in "$@"; do case "$a" in --log_dir=*) log_dir="${a#--log_dir=}" ;; esac; done
if [ -n "$MSRUN_DIE_EARLY" ]; then
  printf 'Traceback (most recent call last):\\nRuntimeError: The pointer[cluster_] is null.\\n' \\
    > "$log_dir/worker_0.log"
  echo "Worker process 4242 exit with exception. Error code: 1."
  exit 1
fi
"""


@pytest.fixture
def env(tmp_path):
    venv = tmp_path / "fakevenv" / "bin"
    venv.mkdir(parents=True)
    for name, text in (("python", PYTHON), ("msrun", MSRUN)):
        path = venv / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "recipe.yaml").write_text("model: ghostnet_050\n")
    (tmp_path / "data").mkdir()
    return dict(os.environ, VIRTUAL_ENV=str(tmp_path / "fakevenv"), PATH=f"{venv}:{os.environ['PATH']}",
                MSRUN_CALLED=str(tmp_path / "msrun_called"), LOG_DIR=str(tmp_path / "logs"))


def _launch(script, args, env, cwd):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("script, args", [("run_distribute_train.sh", ["recipe.yaml", "data", "2"]),
                                          ("run_multinode_train.sh", ["recipe.yaml", "data", "2", "0", "127.0.0.1"])])
def test_master_port_in_use_is_named_before_msrun_starts(env, tmp_path, script, args):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = _launch(script, args, dict(env, MASTER_PORT=str(port)), tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"port {port} on this machine is already in use (MASTER_PORT={port}" in result.stderr
    assert not os.path.exists(env["MSRUN_CALLED"])  # refused before msrun (and its 600 s wait)


def test_free_port_starts_msrun(env, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _launch("run_distribute_train.sh", ["recipe.yaml", "data", "2"], dict(env, MASTER_PORT=str(port)),
                     tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.path.exists(env["MSRUN_CALLED"])


def test_failure_report_prints_when_a_worker_died_before_its_first_line(env, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _launch("run_distribute_train.sh", ["recipe.yaml", "data", "2"],
                     dict(env, MASTER_PORT=str(port), MSRUN_DIE_EARLY="1"), tmp_path)
    assert result.returncode == 1
    assert "error: the distributed job failed (msrun exit code 1); no worker reported its rank" in result.stderr
    assert "worker_0.log: RuntimeError: The pointer[cluster_] is null." in result.stderr
