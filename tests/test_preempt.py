"""Preemption (issue #18 item 4): SIGTERM/SIGUSR1 finish the step, save a mid-epoch checkpoint, write `stopped:`
to train.log and summary.json, exit 128 + signal; the rerun resumes at that batch bitwise; a second signal exits
at once. On the code before this, SIGTERM killed the process on the spot (exit 143, no checkpoint, no line)."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _tiny_data import ROOT, TINY_TRAIN_ARGS, load_entry_point, write_tiny_imagefolder

# PyNative (no graph compile), deterministic, momentum + EMA state: 6 steps in one epoch
ARGS = TINY_TRAIN_ARGS + ["--mode", "pynative", "--deterministic", "True", "--epochs", "1", "--opt", "momentum",
                          "--ema", "True", "--hflip", "0.5", "--drop_rate", "0", "--val_every", "0"]


def _state(path):
    import mindspore as ms

    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items() if hasattr(v, "asnumpy")}


def _signal_at(monkeypatch, step: int, signum: int):
    """Deliver `signum` to this process right after train step `step` (from inside the loop's callbacks)."""
    from mindghost.training import callbacks

    original = callbacks.ProgressLogger.on_step_end

    def on_step_end(self, state):
        original(self, state)
        if state.step == step:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(callbacks.ProgressLogger, "on_step_end", on_step_end)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_sigterm_saves_mid_epoch_and_the_rerun_resumes_bitwise(tmp_path, monkeypatch, signum):
    from mindghost.errors import TrainingPreempted

    train = load_entry_point("train")
    data = write_tiny_imagefolder(str(tmp_path / "data"))
    args = ARGS + ["--data_dir", data]
    full = train.main(args + ["--output_dir", str(tmp_path / "full")])
    assert full["finished"] and full["global_step"] == 6

    part = tmp_path / "part"
    with monkeypatch.context() as m:
        _signal_at(m, 2, signum)
        with pytest.raises(TrainingPreempted) as stop:
            train.main(args + ["--output_dir", str(part)])
    assert stop.value.code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the loop put the previous handler back
    ckpts = sorted(os.listdir(part / "checkpoints"))
    assert "epoch_0001_step_00000002.ckpt" in ckpts and "last.ckpt" in ckpts
    assert not [f for f in ckpts if ".tmp" in f]
    log = (part / "train.log").read_text()
    assert "stopped: SIGTERM received; saved epoch 1, batch 2/6 (step 2)" in log
    summary = json.loads((part / "summary.json").read_text())
    assert summary["stopped_by"] == "SIGTERM" and summary["stopped"].startswith("stopped: SIGTERM")
    assert not summary["finished"] and summary["global_step"] == 2

    resumed = train.main(args + ["--output_dir", str(part)])  # summary.json of a stopped run does not block it
    assert resumed["finished"] and resumed["global_step"] == 6
    assert "resumed from" in (part / "train.log").read_text()
    a, b = _state(str(tmp_path / "full" / "checkpoints" / "last.ckpt")), _state(str(part / "checkpoints" / "last.ckpt"))
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


_HANDLER_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from mindghost.training.preempt import StopRequest
    stop = StopRequest()
    stop.install()
    os.kill(os.getpid(), signal.{sig})
    time.sleep(0.2)
    print("due", stop.due(1), stop.signal_name, flush=True)
    if {twice}:
        os.kill(os.getpid(), signal.{sig})
        time.sleep(5)
        print("still running", flush=True)
    stop.uninstall()
""")


def _run_handler(sig: str, twice: bool):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", _HANDLER_SCRIPT.format(sig=sig, twice=twice)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_first_signal_requests_a_stop_and_the_second_exits_at_once():
    once = _run_handler("SIGUSR1", twice=False)
    assert once.returncode == 0 and "due True SIGUSR1" in once.stdout
    assert "SIGUSR1 received: finishing the current step" in once.stderr
    twice = _run_handler("SIGTERM", twice=True)
    assert twice.returncode == 143 and "still running" not in twice.stdout
    assert "SIGTERM again: exiting now without saving (exit 143)" in twice.stderr


def test_ranks_agree_at_the_same_step_whichever_was_signalled():
    from mindghost.training.preempt import StopRequest

    calls = []

    def allreduce(values):  # another rank saw SIGTERM
        calls.append(values.copy())
        return values + np.array([1.0, 0.0])

    stop = StopRequest(size=2, check_every=10, allreduce=allreduce)
    assert [stop.due(s) for s in range(1, 10)] == [False] * 9 and not calls  # no collective between checks
    assert stop.due(10) and stop.signal_name == "SIGTERM"
    assert len(calls) == 1 and not calls[0].any()  # this rank had seen nothing
    quiet = StopRequest(size=2, check_every=10, allreduce=lambda v: v)
    assert not quiet.due(10) and quiet.signum is None
