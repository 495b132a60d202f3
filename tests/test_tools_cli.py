"""Every command-line tool answers `--help` as `python -m ...` and leaves through `runtime.run_main`.

Generated from the package: a new module in mindghost/tools/ without a `__main__` block fails here (before,
`python -m mindghost.tools.export --help` printed nothing and exited 0).
"""
import os
import pkgutil
import subprocess
import sys

import pytest

import mindghost.tools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY_MODULES = {"fuse", "trace"}  # used by the tools, no command line of their own
TOOLS = sorted(m.name for m in pkgutil.iter_modules(mindghost.tools.__path__)
               if not m.name.startswith("_") and m.name not in LIBRARY_MODULES)
CLI_MODULES = [f"mindghost.tools.{name}" for name in TOOLS] + ["mindghost.convert"]


def _run(args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module", CLI_MODULES)
def test_help_prints_usage(module, tmp_path):
    """Run from another folder, as a user would after `pip install`: help text, exit 0, no MindSpore noise."""
    result = _run(["-m", module, "--help"], cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout[:200]
    assert "--" in result.stdout


@pytest.mark.parametrize("module", CLI_MODULES)
def test_console_script_declared(module):
    """pyproject's [project.scripts] points at a `cli` function that exists in each module."""
    import importlib

    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    target = f"{module}:cli" if not module.endswith("convert") else "mindghost.convert.__main__:cli"
    assert f'"{target}"' in text
    owner = importlib.import_module(target.split(":")[0])
    assert callable(owner.cli)


def test_user_error_exits_2_with_one_line(tmp_path):
    """A refused request leaves through run_main: `error: ...` on stderr, exit 2, no traceback."""
    result = _run(["-m", "mindghost.tools.export", "--model", "ghostnet_050", "--output_dir", str(tmp_path / "x")])
    assert result.returncode == 2, result.stderr
    assert "error: no --ckpt_path given" in result.stderr
    assert "Traceback" not in result.stderr


def test_only_our_errors_are_user_errors():
    """A bare ValueError (an internal assertion, or one from inside MindSpore/MindCV) keeps its traceback; our
    classes and user-caused OSErrors are one line. Before, every ValueError was shown as a user error."""
    import errno

    from mindghost.errors import UsageError
    from mindghost.runtime import _is_user_error
    from mindghost.training.config import ConfigError

    assert not _is_user_error(ValueError("schedule has 9 steps, expected 10"))
    assert not _is_user_error(RuntimeError("MindSpore crashed"))
    assert _is_user_error(ConfigError("unknown key")) and _is_user_error(UsageError("unknown model"))
    assert _is_user_error(OSError(errno.ENOSPC, "No space left on device"))
    assert not _is_user_error(OSError(errno.EIO, "Input/output error"))


def test_internal_value_error_prints_its_traceback():
    code = ("from mindghost import runtime\n"
            "def main(argv):\n"
            "    raise ValueError('an internal invariant broke')\n"
            "runtime.run_main(main, [])\n")
    result = _run(["-c", code])
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr and "an internal invariant broke" in result.stderr
