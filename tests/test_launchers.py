"""The launchers in scripts/ work when started outside the repo with relative paths.

They are run with a stand-in `python` and `msrun` (a fake virtualenv first on PATH) that print their working
directory and arguments, so the test checks exactly what train.py / validate.py / msrun would be given, in
milliseconds and without MindSpore. Before the fix the launchers cd'ed to the repo root and passed the user's
relative paths on unchanged, so `configs/x.yaml` typed in another folder pointed into the repo (or nowhere).
"""
import os
import stat
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUB = """#!/bin/sh
if [ "$1" = "-c" ]; then exit 0; fi  # the launchers' `python -c "import mindspore"` probe
echo "cwd=$PWD"
for a in "$@"; do echo "arg=$a"; done
"""


@pytest.fixture
def user_dir(tmp_path):
    venv = tmp_path / "fakevenv" / "bin"
    venv.mkdir(parents=True)
    for name in ("python", "msrun"):
        path = venv / name
        path.write_text(STUB)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    work = tmp_path / "elsewhere"
    (work / "my_configs").mkdir(parents=True)
    (work / "my_configs" / "recipe.yaml").write_text("model: ghostnet_050\n")
    (work / "my_data" / "train").mkdir(parents=True)
    (work / "my.ckpt").write_bytes(b"x")
    env = dict(os.environ, VIRTUAL_ENV=str(tmp_path / "fakevenv"), PATH=f"{venv}:{os.environ['PATH']}")
    return work, env


def _run(script, args, work, env):
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *args], cwd=str(work), env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    cwd = next(line[4:] for line in lines if line.startswith("cwd="))
    return cwd, [line[4:] for line in lines if line.startswith("arg=")]


def _value(args, flag):
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("script, extra", [("run_standalone_train.sh", []), ("run_eval.sh", ["my.ckpt"]),
                                           ("run_distribute_train.sh", ["2"])])
def test_relative_paths_from_another_folder(user_dir, script, extra):
    work, env = user_dir
    cwd, args = _run(script, ["my_configs/recipe.yaml", "my_data", *extra, "--output_dir", "my_run"], work, env)
    expected = {"--config": "my_configs/recipe.yaml", "--data_dir": "my_data"}
    if script == "run_eval.sh":
        expected["--ckpt_path"] = "my.ckpt"
    for flag, typed in expected.items():
        given = os.path.join(cwd, _value(args, flag))  # what the program would open, from where it runs
        assert os.path.exists(given) and os.path.samefile(given, work / typed), f"{script}: {flag} -> {given}"
    # an override the launcher does not know (--output_dir) is relative to the user's folder too
    assert os.path.realpath(os.path.join(cwd, _value(args, "--output_dir"))) == os.path.realpath(work / "my_run")
    assert any(a.endswith("train.py") or a.endswith("validate.py") for a in args)


def test_repo_relative_recipe_still_found_from_elsewhere(user_dir):
    """`configs/...` as printed in the recipes' headers works from any folder (falls back to the repo)."""
    work, env = user_dir
    _, args = _run("run_standalone_train.sh", ["configs/demo/ghostnet_050_fashion_mnist_cpu.yaml", "my_data"],
                   work, env)
    assert os.path.samefile(_value(args, "--config"),
                            os.path.join(ROOT, "configs", "demo", "ghostnet_050_fashion_mnist_cpu.yaml"))
