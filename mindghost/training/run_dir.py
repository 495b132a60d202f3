"""The run directory: deciding where a run writes (fresh, resumed, or refused), creating it, and the files
that describe the run (config.yaml, env.json, train.log, summary.json).

Deciding writes nothing, so every check can run before a directory exists; `create_run_dir` is the first
write of a run.
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict

from .checkpoint import LAST
from .config import Config, dump_yaml
from .logs import LOG, attach_log_file

FINISHED = "summary.json"
_OVERWRITTEN = ("checkpoints", "metrics.jsonl", FINISHED, "curves.png", "train.log")


@dataclass
class Run:
    """Where a run writes, and the checkpoint it resumes from ('' for a fresh start)."""

    directory: str
    resume_from: str = ""
    overwrite: bool = False  # clear a previous run's files in `directory` when creating it
    fresh_name: bool = False  # `directory` is a new default name: create it exclusively (suffix -1, -2, ...)

    @property
    def ckpt_dir(self) -> str:
        return os.path.join(self.directory, "checkpoints")


def plan_run_dir(cfg: Config) -> Run:
    """Decide the run directory and whether this is a fresh run or a resume; writes nothing."""
    if not cfg.output_dir:
        return Run(os.path.join("runs", f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"), fresh_name=True,
                   resume_from=cfg.resume)
    run = Run(cfg.output_dir)
    last = os.path.join(run.ckpt_dir, LAST)
    if cfg.resume:
        run.resume_from = cfg.resume
    elif _finished(run.directory) and not cfg.overwrite:
        raise FileExistsError(
            f"'{run.directory}' holds a finished run ({FINISHED} exists). Choose another --output_dir, pass "
            f"--overwrite True to start again there, or --resume {last} to continue it (e.g. with more epochs).")
    elif cfg.overwrite and os.path.isdir(run.directory):
        run.overwrite = True
    elif os.path.isfile(last):
        run.resume_from = last  # an interrupted run in this directory: continue it
    return run


def _finished(directory: str) -> bool:
    """summary.json exists and does not say a signal stopped the run (preempt.py: that run resumes)."""
    path = os.path.join(directory, FINISHED)
    if not os.path.isfile(path):
        return False
    try:
        with open(path) as fh:
            summary = json.load(fh)
    except (OSError, ValueError):
        return True
    return not (isinstance(summary, dict) and summary.get("stopped") and not summary.get("finished"))


def create_run_dir(run: Run, cfg: Config, device: str, devices: int) -> None:
    """Create the directory (rank 0 only calls this), start train.log there, write config.yaml and env.json."""
    if run.fresh_name:
        run.directory = _new_directory(run.directory)
    elif run.overwrite:
        for name in _OVERWRITTEN:
            p = os.path.join(run.directory, name)
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.remove(p)
    os.makedirs(run.ckpt_dir, exist_ok=True)
    attach_log_file(os.path.join(run.directory, "train.log"))
    dump_yaml(cfg, os.path.join(run.directory, "config.yaml"))
    with open(os.path.join(run.directory, "env.json"), "w") as fh:
        json.dump(environment_info(device, devices), fh, indent=2)
    LOG.info(f"run directory: {run.directory}" + (f" (resuming from {run.resume_from})" if run.resume_from else ""))


def _new_directory(base: str) -> str:
    """Create and return `base`, or `base-1`, `base-2`, ... : two runs started in the same second never share."""
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    for i in range(10000):
        candidate = base if i == 0 else f"{base}-{i}"
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run directory next to '{base}'; pass --output_dir")


def environment_info(device: str, devices: int) -> Dict[str, Any]:
    import numpy

    import mindcv
    import mindspore

    from .. import __version__

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "git_commit": git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "mindghost": __version__, "mindspore": mindspore.__version__, "mindcv": mindcv.__version__,
        "numpy": numpy.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "device": device, "devices": devices, "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "argv": sys.argv, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_summary(run: Run, summary: Dict[str, Any]) -> None:
    """summary.json marks the run finished (a rerun in the same directory is then refused), or stopped by a signal
    (`stopped`: a rerun resumes)."""
    with open(os.path.join(run.directory, FINISHED), "w") as fh:
        json.dump(summary, fh, indent=2)
