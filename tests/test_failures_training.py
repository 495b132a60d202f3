"""Failure battery, a run in progress: a NaN loss, kill -9 (mid-epoch and during a checkpoint write), fp16
overflow, resume with other settings, an existing output folder, and what the log and terminal show.

Each test's docstring says what the user sees; the test checks a stable fragment of that message and that
files written before the failure are intact. Entry points are called in process (`train.main` raises the
error that `runtime.run_main` prints as `error: ...` with exit code 2); subprocesses only for SIGKILL and the CLI.
Training runs use PyNative mode (no graph compile) on 32-px images. (Distributed failures - a dead worker - are
covered in test_distributed.py.)
"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _tiny_data import ROOT, TINY_PYNATIVE_ARGS, checkpoint_arrays, without

ARGS = TINY_PYNATIVE_ARGS
# the reference for the kill -9 resume checks: deterministic, 2 epochs x 3 steps
DET = ARGS + ["--deterministic", "True", "--epochs", "2", "--opt", "momentum", "--ema", "True", "--drop_rate", "0"]


# ------------------------------------------------------------------------------------------------ training
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny12, tmp_path, train_mod):
    """lr 1e12 after a good epoch: user sees `loss is nan at step N (epoch 2, batch B): training stopped` with
    what to do; the run's last.ckpt is still the finite epoch-1 checkpoint and no NaN checkpoint is written."""
    from mindghost.training.loop import TrainingDiverged
    from mindghost.weights import read_meta

    out = str(tmp_path / "run")
    first = train_mod.main(ARGS + ["--data_dir", tiny12, "--output_dir", out, "--epochs", "1", "--lr", "0.001",
                                   "--scheduler", "constant"])
    assert first["finished"]
    last = os.path.join(out, "checkpoints", "last.ckpt")
    before = open(last, "rb").read()
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf) at step \d+ \(epoch 2, batch \d+\): training "
                                               r"stopped[\s\S]*last\.ckpt"):
        train_mod.main(ARGS + ["--data_dir", tiny12, "--output_dir", out, "--epochs", "2", "--lr", "1e12",
                               "--scheduler", "constant", "--resume", last])
    assert open(last, "rb").read() == before and read_meta(last)["epoch"] == 1
    assert all(np.isfinite(v).all() for v in checkpoint_arrays(last).values())
    assert not os.path.exists(os.path.join(out, "checkpoints", "epoch_0002.ckpt"))


_KILLER = textwrap.dedent("""
    # Run train.py, then SIGKILL this process at a chosen point (a real kill -9, no cleanup handlers run).
    import os, runpy, signal, sys
    mode, n = sys.argv[1], int(sys.argv[2])
    if mode == "step":  # after the n-th training step (mid-epoch)
        from mindghost.training import callbacks
        orig = callbacks.ProgressLogger.on_step_end
        def on_step_end(self, state):
            orig(self, state)
            if state.step >= n:
                os.kill(os.getpid(), signal.SIGKILL)
        callbacks.ProgressLogger.on_step_end = on_step_end
    else:  # during the n-th checkpoint write: half of the temp file is on disk
        import mindspore as ms
        real, count = ms.save_checkpoint, [0]
        def save(obj, path, *a, **k):
            count[0] += 1
            real(obj, path, *a, **k)
            if count[0] >= n:
                with open(path, "r+b") as fh:
                    fh.truncate(os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        ms.save_checkpoint = save
    sys.argv = ["train.py"] + sys.argv[3:]
    runpy.run_path(os.path.join({root!r}, "train.py"), run_name="__main__")
""")


def _killed_run(tmp_path, mode, n, args):
    script = tmp_path / "killer.py"
    script.write_text(_KILLER.format(root=ROOT))
    env = dict(os.environ, PYTHONPATH=ROOT)  # the script runs from tmp_path: mindghost from this checkout
    r = subprocess.run([sys.executable, str(script), mode, str(n)] + args, capture_output=True, text=True,
                       timeout=300, cwd=str(tmp_path), env=env)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]


@pytest.fixture(scope="module")
def reference(tiny12, train_mod, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("reference"))
    summary = train_mod.main(DET + ["--data_dir", tiny12, "--output_dir", out])
    assert summary["finished"] and summary["global_step"] == 6
    return checkpoint_arrays(os.path.join(out, "checkpoints", "last.ckpt"))


def _assert_same_weights(a, b):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_kill9_mid_epoch_then_resume_reproduces_the_run(tiny12, tmp_path, train_mod, reference):
    """kill -9 at step 5 (mid epoch 2): the next start in the same --output_dir logs `resuming from
    .../last.ckpt` and ends with exactly the weights of the uninterrupted run (deterministic mode)."""
    out = str(tmp_path / "run")
    _killed_run(tmp_path, "step", 5, DET + ["--data_dir", tiny12, "--output_dir", out])
    from mindghost.weights import read_meta

    assert read_meta(os.path.join(out, "checkpoints", "last.ckpt"))["epoch"] == 1
    summary = train_mod.main(DET + ["--data_dir", tiny12, "--output_dir", out])
    assert summary["finished"] and summary["global_step"] == 6
    assert "resuming from" in open(os.path.join(out, "train.log")).read()
    _assert_same_weights(reference, checkpoint_arrays(os.path.join(out, "checkpoints", "last.ckpt")))


def test_kill9_during_checkpoint_write_keeps_previous_checkpoint(tiny12, tmp_path, train_mod, reference):
    """kill -9 while epoch_0002.ckpt is half written: last.ckpt is still the complete epoch-1 checkpoint, only a
    hidden temp file is partial; resume removes it (`removed an incomplete checkpoint`) and finishes with the
    uninterrupted run's weights."""
    from mindghost.weights import read_meta

    out = str(tmp_path / "run")
    _killed_run(tmp_path, "save", 2, DET + ["--data_dir", tiny12, "--output_dir", out])
    ckpt_dir = os.path.join(out, "checkpoints")
    names = os.listdir(ckpt_dir)
    assert "epoch_0002.ckpt" not in names and any(n.startswith(".epoch_0002.ckpt.tmp") for n in names), names
    assert read_meta(os.path.join(ckpt_dir, "last.ckpt"))["epoch"] == 1
    summary = train_mod.main(DET + ["--data_dir", tiny12, "--output_dir", out])
    assert summary["finished"]
    assert not [n for n in os.listdir(ckpt_dir) if ".tmp" in n]
    assert "removed an incomplete checkpoint" in open(os.path.join(out, "train.log")).read()
    _assert_same_weights(reference, checkpoint_arrays(os.path.join(ckpt_dir, "last.ckpt")))


# ------------------------------------------------------------------------------------------------ output dir
def test_finished_run_is_not_overwritten(tiny, tmp_path, train_mod):
    """User sees: `'<dir>' holds a finished run (summary.json exists). Choose another --output_dir, pass
    --overwrite True ..., or --resume ...`; the finished run's files are untouched."""
    out = tmp_path / "done"
    (out / "checkpoints").mkdir(parents=True)
    (out / "summary.json").write_text('{"finished": true}')
    (out / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    with pytest.raises(FileExistsError, match=r"holds a finished run[\s\S]*--overwrite True"):
        train_mod.main(ARGS + ["--data_dir", tiny, "--output_dir", str(out), "--epochs", "1"])
    assert (out / "summary.json").read_text() == '{"finished": true}'
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == b"weights"
    assert sorted(os.listdir(out)) == ["checkpoints", "summary.json"]


def test_two_runs_started_in_the_same_second_get_different_dirs(tmp_path, monkeypatch):
    """Default output dirs are runs/<model>-<timestamp>; a second run in the same second gets a `-1` suffix
    instead of sharing (and clobbering) the first run's files."""
    import time

    from mindghost.training.config import build_config
    from mindghost.training.run_dir import create_run_dir, plan_run_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-000000")
    cfg = build_config({"model": "ghostnet_050"})
    a, b = plan_run_dir(cfg), plan_run_dir(cfg)
    create_run_dir(a, cfg, "CPU", 1)
    create_run_dir(b, cfg, "CPU", 1)
    assert a.directory != b.directory
    assert a.directory == os.path.join("runs", "ghostnet_050-20260101-000000")
    assert b.directory == a.directory + "-1"
    assert not a.resume_from and not b.resume_from


# ------------------------------------------------------------------------------------------------ fp16 overflow
FP16 = ARGS + ["--amp_level", "O3", "--loss_scale", "16777216", "--drop_rate", "0"]


def test_fp16_run_whose_every_update_overflows_stops_with_the_fix(tiny12, tmp_path, train_mod):
    """MindCV's recipe scale 2**24, fixed, on CPU: every update overflows and is dropped. User sees
    `no update was applied in 3 steps (3 skipped): the fp16 gradients overflowed at every step (loss_scale_type
    fixed, loss_scale 1.67772e+07) ... Lower --loss_scale ... --loss_scale_type dynamic` (exit 2); the run is
    not reported finished and no checkpoint of the unchanged weights is written."""
    from mindghost import runtime
    from mindghost.training.loop import TrainingStalled

    out = tmp_path / "run"
    with pytest.raises(TrainingStalled, match=r"no update was applied in 3 steps \(3 skipped\)[\s\S]*loss_scale_type "
                                              r"fixed, loss_scale 1\.67772e\+07[\s\S]*--loss_scale_type dynamic"):
        train_mod.main(FP16 + ["--data_dir", tiny12, "--output_dir", str(out), "--epochs", "2",
                               "--loss_scale_type", "fixed"])
    assert not (out / "summary.json").exists() and not (out / "checkpoints" / "last.ckpt").exists()
    assert runtime._is_user_error(TrainingStalled("x"))  # run_main: one `error:` line, exit 2


def test_fp16_dynamic_loss_scale_trains_on_cpu_and_counts_skipped_steps(tiny12, tmp_path, train_mod):
    """The dynamic scale (once refused on CPU) starts at 65536, where every step overflows here (as at 8192; 1024
    fits), halves at each overflow, then updates apply. summary.json and metrics.jsonl count the skipped steps;
    updates + skipped = steps."""
    import json

    out = tmp_path / "run"
    summary = train_mod.main(FP16 + ["--data_dir", tiny12, "--output_dir", str(out), "--epochs", "4",
                                     "--loss_scale_type", "dynamic", "--loss_scale", "65536"])
    assert summary["finished"] and summary["global_step"] == 12
    assert summary["skipped_steps"] > 0 and summary["updates"] > 0
    assert summary["updates"] + summary["skipped_steps"] == 12
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert sum(m["skipped_steps"] for m in metrics) == summary["skipped_steps"]
    assert json.load(open(out / "summary.json"))["skipped_steps"] == summary["skipped_steps"]
    assert "steps skipped (fp16 overflow)" in open(out / "train.log").read()


# ------------------------------------------------------------------------------------------------ resume
def test_mid_epoch_resume_with_other_batch_settings_is_refused(tiny, tmp_path, train_mod):
    """Stopped after 3 batches of 4, rerun with --batch_size 2: the saved position (3 batches) would mean 6 images
    instead of 12. User sees `cannot resume mid-epoch from '.../last.ckpt' (epoch 1, 3 batches done) with other
    batch settings (batch_size 4 -> 2) ... Resume with the checkpoint's settings (--batch_size 4)`."""
    out = str(tmp_path / "run")
    train_mod.main(ARGS + ["--data_dir", tiny, "--output_dir", out, "--epochs", "1", "--max_steps", "3"])
    with pytest.raises(ValueError, match=r"cannot resume mid-epoch from .*last\.ckpt' \(epoch 1, 3 batches done\) "
                                         r"with other batch settings \(batch_size 4 -> 2\)[\s\S]*--batch_size 4"):
        train_mod.main(without(ARGS, "--batch_size") + ["--batch_size", "2", "--data_dir", tiny, "--output_dir", out,
                                                         "--epochs", "1"])


def test_epoch_end_resume_with_other_batch_maps_the_schedule_and_warns(tiny12, tmp_path, train_mod):
    """1 epoch of 3 batches of 4, then --resume with batch 2 and 2 epochs: the lr schedule (6 updates per epoch
    now) continues at epoch 1, not at update 3; the log says so and warns that the schedule changed."""
    out = str(tmp_path / "run")
    train_mod.main(ARGS + ["--data_dir", tiny12, "--output_dir", out, "--epochs", "1"])
    last = os.path.join(out, "checkpoints", "last.ckpt")
    summary = train_mod.main(without(ARGS, "--batch_size") + [
        "--batch_size", "2", "--data_dir", tiny12, "--output_dir", out, "--epochs", "2", "--resume", last])
    assert summary["finished"] and summary["global_step"] == 12 and summary["updates"] == 12
    assert int(checkpoint_arrays(last)["global_step"].reshape(-1)[0]) == 12  # 2 epochs x 6 updates, not 3 + 6
    log = open(os.path.join(out, "train.log")).read()
    assert "another lr schedule than the checkpoint's (epochs 1 -> 2)" in log
    assert "position is mapped by epochs" in log


# ------------------------------------------------------------------------------------------------ output
def test_failed_run_has_its_error_line_in_train_log(tiny12, tmp_path):
    """`python train.py ... --lr 1e12` diverges: the `error: loss is nan ...` line printed on stderr (exit 2) is
    also the last line of the run's train.log, where someone reading the run later looks."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("MINDGHOST_TRACEBACK", None)
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] + ARGS
                       + ["--data_dir", tiny12, "--output_dir", str(out), "--lr", "1e12", "--scheduler", "constant",
                          "--epochs", "1"], capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr[-2000:]
    error = next(line for line in r.stderr.splitlines() if line.startswith("error: "))
    assert "training stopped" in error
    assert open(out / "train.log").read().splitlines()[-1].endswith(error)


def test_progress_bars_only_on_a_terminal(tiny12, tmp_path, train_mod, capsys):
    """With stderr redirected (a file, a pipe, CI), `--progress True` (the default) draws no tqdm frames; the
    per-step log lines are written instead."""
    out = tmp_path / "run"
    train_mod.main(without(ARGS, "--progress") + ["--data_dir", tiny12, "--output_dir", str(out), "--epochs", "1",
                                                   "--val_every", "1"])
    err = capsys.readouterr().err
    assert "\r" not in err and "step/s" not in err and "img/s]" not in err
    assert "epoch 1 step 2/3 loss" in err and "epoch 1 step 2/3 loss" in open(out / "train.log").read()
