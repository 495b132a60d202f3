"""Failure battery, configuration and launch: a bad recipe, flag, device or combination of settings is refused
before anything runs, every problem at once, and the CLI prints user errors as one line (exit 2) but keeps the
traceback of internal ones (exit 1).

Each test's docstring says what the user sees; the test checks a stable fragment of that message and that
files written before the failure are intact. Entry points are called in process (`train.main` raises the
error that `runtime.run_main` prints as `error: ...` with exit code 2); subprocesses only for the CLI's exit code.
Training runs use PyNative mode (no graph compile) on 32-px images.
"""
import os
import subprocess
import sys
import textwrap

import pytest
from _tiny_data import ROOT, TINY_PYNATIVE_ARGS, copy_tree, without

from mindghost.data import DataError

ARGS = TINY_PYNATIVE_ARGS


def _cli_error(capsys, fn, argv):
    """argparse-level errors: exit code 2 and the message on stderr."""
    with pytest.raises(SystemExit) as info:
        fn(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ config
def test_unknown_key_in_recipe(tmp_path, train_mod, capsys):
    """User sees: `Unknown config key 'batchsize'. Did you mean 'batch_size'?` (exit 2), nothing is written."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: ghostnet_050\nbatchsize: 4\n")
    err = _cli_error(capsys, train_mod.main, ["-c", str(recipe), "--output_dir", str(tmp_path / "run")])
    assert "Unknown config key 'batchsize'" in err and "Did you mean 'batch_size'" in err
    assert not (tmp_path / "run").exists()


def test_unknown_flag_on_command_line(train_mod, capsys):
    """User sees: `unknown option '--warmup_epoch' (did you mean '--warmup_epochs'?)`."""
    err = _cli_error(capsys, train_mod.main, ["--warmup_epoch", "4"])
    assert "unknown option '--warmup_epoch' (did you mean '--warmup_epochs'?)" in err


def test_wrong_type(tmp_path, train_mod, capsys):
    """User sees: `'batch_size' expects int, got str 'big'` naming the recipe file."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("batch_size: big\n")
    err = _cli_error(capsys, train_mod.main, ["-c", str(recipe)])
    assert "'batch_size' expects int, got str 'big'" in err and str(recipe) in err


def test_missing_data_dir(tmp_path, train_mod):
    """User sees: `No dataset given: pass --data_dir /path/to/dataset`."""
    with pytest.raises(DataError, match="No dataset given: pass --data_dir"):
        train_mod.main(ARGS + ["--output_dir", str(tmp_path / "run")])


def test_unknown_model_name(tiny, tmp_path, train_mod):
    """User sees: `Unknown model 'ghostnet_07'. Did you mean 'ghostnet_050' ...? Registered models: ...`."""
    with pytest.raises(ValueError, match=r"Unknown model 'ghostnet_07'\. Did you mean .*Registered models"):
        train_mod.main(ARGS + ["--data_dir", tiny, "--output_dir", str(tmp_path / "run"), "--model", "ghostnet_07"])


def test_recipe_num_classes_disagrees_with_dataset(tiny, tmp_path, train_mod):
    """User sees: `'<data>/train' has 3 class folders but num_classes is 1000; pass --num_classes 3`."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: ghostnet_050\nnum_classes: 1000\n")
    args = [a for a in ARGS if a not in ("--num_classes", "3")]
    with pytest.raises(ValueError, match="has 3 class folders but num_classes is 1000; pass --num_classes 3"):
        train_mod.main(["-c", str(recipe)] + args + ["--data_dir", tiny, "--output_dir", str(tmp_path / "run")])


def test_config_launch_and_data_problems_are_reported_together(tiny, tmp_path, train_mod):
    """The Ascend recipe run by hand on a small dataset: warmup longer than the run, distribute without msrun and a
    wrong class count come back in one error (they used to surface one rerun at a time), and nothing is written."""
    recipe = os.path.join(ROOT, "configs", "ghostnet", "ghostnet_050_ascend.yaml")
    with pytest.raises(ValueError) as err:
        train_mod.main(["-c", recipe, "--data_dir", tiny, "--num_classes", "5", "--epochs", "1", "--device", "CPU",
                        "--output_dir", str(tmp_path / "run")])
    message = str(err.value)
    assert message.startswith("3 problems found before starting (nothing was written)"), message
    assert "'warmup_epochs' (20) exceeds 'epochs' (1)" in message
    assert "needs the msrun launcher" in message and "--join=True" in message
    assert "has 3 class folders but num_classes is 5" in message
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_user_error_exits_2_with_one_message(tmp_path):
    """`python train.py --data_dir /missing ...` prints `error: Split folder ...` and the traceback hint, no
    traceback, and exits 2."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("MINDGHOST_TRACEBACK", None)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] + ARGS
                       + ["--data_dir", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "error: Split folder" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr and "MINDGHOST_TRACEBACK=1" in r.stderr


_RUN_MAIN = textwrap.dedent("""
    import errno, sys
    from mindghost import runtime
    from mindghost.training.checkpoint import CheckpointSaveError

    ERRORS = {
        "internal": RuntimeError("kernel launch failed\\n----\\n- C++ Call Stack: (For framework developers)"),
        "io": OSError(errno.EIO, "Input/output error"),
        "full": OSError(errno.ENOSPC, "No space left on device"),
        "missing": FileNotFoundError("no metrics.jsonl in 'runs/x'"),
        "own": CheckpointSaveError("could not save checkpoint 'x.ckpt'"),
    }

    def main(argv):
        raise ERRORS[argv[0]]

    runtime.run_main(main, sys.argv[1:])
""")


@pytest.mark.parametrize("kind, code, first", [
    ("internal", 1, "error: RuntimeError: kernel launch failed (an internal error; traceback above)"),
    ("io", 1, "error: OSError: [Errno 5] Input/output error (an internal error; traceback above)"),
    ("full", 2, "error: [Errno 28] No space left on device"),
    ("missing", 2, "error: no metrics.jsonl in 'runs/x'"),
    ("own", 2, "error: could not save checkpoint 'x.ckpt'"),
])
def test_cli_internal_errors_keep_their_traceback(tmp_path, kind, code, first):
    """User errors (mindghost's own error classes, a full disk, a missing file) print one line and exit 2;
    any other RuntimeError/OSError (a MindSpore crash, an I/O error) prints its traceback, then one line naming
    it as internal, and exits 1."""
    script = tmp_path / "entry.py"
    script.write_text(_RUN_MAIN)
    env = dict(os.environ, PYTHONPATH=ROOT)  # the script runs from tmp_path: mindghost from this checkout
    env.pop("MINDGHOST_TRACEBACK", None)
    r = subprocess.run([sys.executable, str(script), kind], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == code, r.stderr
    assert first in r.stderr.splitlines(), r.stderr
    assert ("Traceback" in r.stderr) == (code == 1), r.stderr


# ------------------------------------------------------------------------------------------------ device
def test_device_choice_is_logged_and_a_missing_device_is_an_error(tiny, tmp_path, train_mod, monkeypatch):
    """`--device auto` on a machine without Ascend/GPU logs `device auto: no Ascend device found (no
    /dev/davinci*, no npu-smi), no GPU found ...; running on CPU` at the top of train.log; an explicit
    `--device Ascend` there is an error naming the fix (`Pass --device CPU`), before anything is written."""
    import glob
    import shutil as sh

    from mindghost import runtime

    monkeypatch.setattr(glob, "glob", lambda pattern: [])  # this machine, whatever devices the CI host has
    monkeypatch.setattr(sh, "which", lambda name: None)
    device, why = runtime.choose_device("auto")
    assert device == "CPU" and "no Ascend device found (no /dev/davinci*, no npu-smi)" in why
    assert why.endswith("running on CPU")
    with pytest.raises(runtime.DeviceError, match=r"device Ascend was requested[\s\S]*Pass --device CPU"):
        train_mod.main(ARGS + ["--data_dir", tiny, "--output_dir", str(tmp_path / "run"), "--device", "Ascend"])
    assert not (tmp_path / "run").exists()
    args = without(ARGS, "--device")
    train_mod.main(args + ["--data_dir", tiny, "--output_dir", str(tmp_path / "auto"), "--device", "auto",
                           "--epochs", "1", "--max_steps", "1"])
    first = open(tmp_path / "auto" / "train.log").readline()
    assert "device auto: no Ascend device found" in first and "running on CPU" in first


# ------------------------------------------------------------------------------------------------ checks first
def test_every_problem_is_reported_at_once_and_nothing_is_written(tiny, tmp_path, train_mod, monkeypatch):
    """A recipe for another dataset, AMP O2 on CPU and a broken val image: user sees `3 problems found before
    starting (nothing was written)` listing all three (not one per rerun), and no empty runs/<model>-<time>."""
    from mindghost.training.plan import RunCheckError

    data = copy_tree(tiny, tmp_path / "d")
    open(os.path.join(data, "val", "class_0", "empty.png"), "wb").close()
    monkeypatch.chdir(tmp_path)
    args = without(ARGS, "--num_classes")
    with pytest.raises(RunCheckError) as info:
        train_mod.main(args + ["--data_dir", data, "--num_classes", "5", "--amp_level", "O2", "--val_every", "1"])
    msg = str(info.value)
    assert msg.startswith("3 problems found before starting (nothing was written)")
    assert "amp_level O2 is not supported on CPU" in msg and "has 3 class folders but num_classes is 5" in msg
    assert "empty.png: empty file (0 bytes)" in msg
    assert not (tmp_path / "runs").exists()


def test_config_problems_are_reported_together(train_mod):
    """User sees `3 problems found before starting` with `'accum_steps' must be >= 1`, `'warmup_epochs' (9)
    exceeds` and the missing data_dir: value checks of the config come with the data's, in one error."""
    with pytest.raises(ValueError) as info:
        train_mod.main(ARGS + ["--accum_steps", "0", "--epochs", "2", "--warmup_epochs", "9"])
    err = str(info.value)
    assert err.startswith("3 problems found before starting")
    assert "'accum_steps' must be >= 1" in err and "exceeds 'epochs'" in err and "No dataset given" in err


def test_too_many_workers_are_clamped_with_one_line(tiny, tmp_path, train_mod):
    """`--num_workers 64` on a small machine: one log line `num_workers 64 is more than the N cores this process
    may use: using N data workers`, and the run trains (not MindSpore's `num_parallel_workers exceeds the
    boundary`)."""
    args = without(ARGS, "--num_workers")
    out = tmp_path / "run"
    summary = train_mod.main(args + ["--data_dir", tiny, "--output_dir", str(out), "--num_workers", "64",
                                     "--epochs", "1", "--max_steps", "1"])
    assert summary["global_step"] == 1
    log = open(out / "train.log").read()
    assert log.count("num_workers 64 is more than the") == 1 and "data workers" in log


# ------------------------------------------------------------------------------------------------ mixup
def test_mixup_with_an_odd_batch_is_refused_at_config_time(tiny, tmp_path, train_mod):
    """MindCV's Mixup dies mid-epoch on an odd batch. User sees, before anything runs: `mixup/cutmix need an even
    batch_size (they mix pairs of images), got 5; pass --batch_size 6 (or 4), or --mixup 0 --cutmix 0`."""
    with pytest.raises(ValueError, match=r"mixup/cutmix need an even batch_size \(they mix pairs of images\), got 5; "
                                         r"pass --batch_size 6"):
        train_mod.main(ARGS + ["--data_dir", tiny, "--output_dir", str(tmp_path / "run"), "--batch_size", "5",
                               "--cutmix", "1.0"])
    assert not (tmp_path / "run").exists()


def test_mixup_with_an_odd_last_batch_is_refused_before_training(tiny, tmp_path, train_mod):
    """11 images, batch 4, drop_remainder False: the last batch holds 3. User sees `the last batch of each epoch
    holds 3 images per device, an odd number, which mixup cannot pair; pass --drop_remainder True ...`."""
    with pytest.raises(ValueError, match=r"last batch of each epoch holds 3 images per device, an odd number"):
        train_mod.main(ARGS + ["--data_dir", tiny, "--output_dir", str(tmp_path / "run"), "--mixup", "0.2",
                               "--train_samples", "11", "--drop_remainder", "False"])
    assert not (tmp_path / "run").exists()
