"""Failure battery: every failure a user can cause or suffer ends in a clear message, and nothing is lost.

Each test's docstring says what the user sees; the test checks a stable fragment of that message and that
files written before the failure are intact. Entry points are called in process (`train.main` raises the
error that `runtime.run_main` prints as `error: ...` with exit code 2); subprocesses only for SIGKILL and for
the CLI's exit code. Training runs use PyNative mode (no graph compile) on 32-px images.
(Distributed failures - a dead worker - are covered in test_distributed.py.)
"""
import errno
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tiny_data import ROOT, load_entry_point, write_tiny_imagefolder  # noqa: E402

from mindghost.data import DataError, inspect_split  # noqa: E402
from mindghost.models import CheckpointError  # noqa: E402

ARGS = ["--model", "ghostnet_050", "--num_classes", "3", "--image_size", "32", "--batch_size", "4",
        "--device", "CPU", "--mode", "pynative", "--progress", "False", "--plot", "False", "--lr", "0.01",
        "--log_every", "1", "--warmup_epochs", "0", "--val_every", "0", "--num_workers", "1"]
# the reference for the kill -9 resume checks: deterministic, 2 epochs x 3 steps
DET = ARGS + ["--deterministic", "True", "--epochs", "2", "--opt", "momentum", "--ema", "True", "--drop_rate", "0"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_imagefolder(str(tmp_path_factory.mktemp("tiny")))  # 3 classes, 8 train / 5 val each


@pytest.fixture(scope="module")
def tiny12(tmp_path_factory):  # 3 classes x 4 train images: 3 steps of 4 per epoch (the kill -9 resume runs)
    return write_tiny_imagefolder(str(tmp_path_factory.mktemp("tiny12")), train_per_class=4, val_per_class=2)


@pytest.fixture(scope="module")
def train_mod():
    return load_entry_point("train")


@pytest.fixture(scope="module")
def validate_mod():
    return load_entry_point("validate")


def _copy_tree(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def _state(path):
    import mindspore as ms

    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items() if hasattr(v, "asnumpy")}


def _without(args, flag):
    """`args` without `flag` and its value."""
    i = args.index(flag)
    return args[:i] + args[i + 2:]


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


# ------------------------------------------------------------------------------------------------ data
def test_missing_data_dir_on_disk(tmp_path):
    """User sees: `Split folder '<dir>/train' not found ('<dir>' does not exist)`."""
    with pytest.raises(DataError, match="does not exist"):
        inspect_split(str(tmp_path / "nowhere"), "train")


def test_split_folder_missing(tiny, tmp_path):
    """User sees: `Split folder '.../validation' not found ('...' holds ['train', 'val'])` and the flag to fix it."""
    with pytest.raises(DataError, match=r"holds \['train', 'val'\].*--train_split/--val_split"):
        inspect_split(tiny, "validation")


def test_empty_class_folder(tiny, tmp_path):
    """User sees: `1 class folder(s) hold no images (class_3); remove them or add images`."""
    data = _copy_tree(tiny, tmp_path / "d")
    os.makedirs(os.path.join(data, "train", "class_3"))
    with pytest.raises(DataError, match=r"1 class folder\(s\) hold no images \(class_3\)"):
        inspect_split(data, "train")


def test_train_and_val_classes_differ(tiny, tmp_path, train_mod):
    """User sees: `train and val class folders differ: ['class_2', 'class_x']`."""
    data = _copy_tree(tiny, tmp_path / "d")
    os.rename(os.path.join(data, "val", "class_2"), os.path.join(data, "val", "class_x"))
    with pytest.raises(ValueError, match=r"train and val class folders differ: \['class_2', 'class_x'\]"):
        train_mod.main(ARGS + ["--data_dir", data, "--output_dir", str(tmp_path / "run"), "--val_every", "1"])


def _jpeg_bytes(size=64):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


BAD_FILES = {
    # name: (content, reason shown).  Without the scan, MindSpore 2.10 fails opaquely on the first two,
    # kills the process with SIGFPE on the truncated JPEG and hangs forever on the garbage-body JPEG.
    "empty.jpg": (b"", "empty file (0 bytes)"),
    "notes.txt": (b"labels were checked by hand", "not an image file (extension)"),
    "page.jpg": (b"<!DOCTYPE html><html>403</html>", "not an image (unknown file header)"),
    "cut.jpg": (_jpeg_bytes()[:300], "truncated or corrupt"),
    "garbage.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2, "truncated or corrupt"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_undecodable_file_is_named_before_training(tiny, tmp_path, name):
    """User sees: `'<data>/train': 1 file(s) cannot be decoded ...`, then `<path>: <reason>` and
    `Remove or replace these files`, before any compile (instead of a crash, a hang or an opaque error)."""
    content, reason = BAD_FILES[name]
    data = _copy_tree(tiny, tmp_path / "d")
    bad = os.path.join(data, "train", "class_1", name)
    with open(bad, "wb") as fh:
        fh.write(content)
    with pytest.raises(DataError) as info:
        inspect_split(data, "train")
    msg = str(info.value)
    assert "1 file(s) cannot be decoded" in msg and f"{bad}: {reason}" in msg and "Remove or replace" in msg
    assert os.path.isfile(bad)  # reported, not deleted


def test_bad_files_are_all_listed_with_a_count(tiny, tmp_path):
    """User sees every bad file (up to 8, then `... and N more`), not only the first one."""
    data = _copy_tree(tiny, tmp_path / "d")
    for i in range(10):
        open(os.path.join(data, "val", "class_0", f"empty{i}.png"), "wb").close()
    with pytest.raises(DataError, match=r"10 file\(s\) cannot be decoded[\s\S]*\.\.\. and 2 more"):
        inspect_split(data, "val")


def test_odd_but_valid_images_are_converted_to_rgb(tmp_path):
    """Grey, RGBA, CMYK and 16-bit PNG images pass the scan and come out of the loader as 3x32x32 float
    images: converted, not crashed, nothing skipped."""
    from PIL import Image

    from mindghost.data import build_eval_loader, eval_preprocessing
    from mindghost.training.config import build_config

    root = tmp_path / "odd"
    for split in ("train", "val"):
        d = root / split / "a"
        d.mkdir(parents=True)
        Image.fromarray(np.full((40, 40), 60, np.uint8)).save(d / "grey.png")
        Image.fromarray(np.full((40, 40, 4), 90, np.uint8)).save(d / "rgba.png")
        Image.new("CMYK", (40, 40), (10, 20, 30, 40)).save(d / "cmyk.jpg")
        Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(d / "deep16.png")
        Image.fromarray(np.full((40, 40), 60, np.uint8)).save(d / "grey.jpg")
        Image.fromarray(np.full((40, 40, 3), 60, np.uint8)).save(d / "rgb.bmp")
    classes, count = inspect_split(str(root), "val")
    assert classes == ["a"] and count == 6
    cfg = build_config({"data_dir": str(root), "num_classes": 1, "image_size": 32, "num_workers": 1})
    pre = eval_preprocessing(cfg, {"crop_pct": 0.875, "interpolation": "bilinear",
                                   "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)})
    shapes = [x.shape for x, _ in build_eval_loader(cfg, pre, 1).create_tuple_iterator(num_epochs=1,
                                                                                       output_numpy=True)]
    assert shapes == [(1, 3, 32, 32)] * 6


def test_header_scan_reads_headers_not_pixels(tmp_path, monkeypatch):
    """The scan reads a file's first bytes and its last KB and ends; it never decodes a good image. Counted in
    bytes read (the old check here timed 2,000 files against a wall clock, which a loaded machine can fail)."""
    from mindghost.data import checks

    jpg = _jpeg_bytes(256)  # tens of KB: reading it whole would show in the count
    d = tmp_path / "many"
    d.mkdir()
    for i in range(20):
        (d / f"{i}.jpg").write_bytes(jpg)
    read_bytes = []
    real_open = open

    class CountingFile:
        def __init__(self, fh):
            self._fh = fh

        def read(self, *args):
            data = self._fh.read(*args)
            read_bytes.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    monkeypatch.setattr(checks, "open", lambda *a, **k: CountingFile(real_open(*a, **k)), raising=False)
    monkeypatch.setattr(checks, "_full_decode", lambda path: pytest.fail(f"decoded a good image: {path}"))
    good, bad = checks.scan_class_folder(str(d))
    assert (good, bad) == (20, [])
    assert len(jpg) > 20 * (12 + checks._TAIL)
    assert sum(read_bytes) <= 20 * (12 + checks._TAIL), sum(read_bytes)


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    import mindspore as ms

    from mindghost import create_model

    root = tmp_path_factory.mktemp("ckpts")
    ms.set_seed(0)
    good = str(root / "good.ckpt")
    ms.save_checkpoint(create_model("ghostnet_050", num_classes=3), good)
    five = str(root / "five.ckpt")
    ms.save_checkpoint(create_model("ghostnet_050", num_classes=5), five)
    other = str(root / "v2.ckpt")
    ms.save_checkpoint(create_model("ghostnetv2_100", num_classes=3), other)
    return {"dir": root, "good": good, "five": five, "other": other}


def _model():
    from mindghost import create_model

    return create_model("ghostnet_050", num_classes=3)


def test_checkpoint_missing_path(tiny, tmp_path, validate_mod):
    """User sees: `Checkpoint not found: '<path>'. Pass an existing file to --ckpt_path` (never random weights)."""
    with pytest.raises(CheckpointError, match="Checkpoint not found: .*Pass an existing file to --ckpt_path"):
        validate_mod.main(ARGS + ["--data_dir", tiny, "--ckpt_path", str(tmp_path / "nope.ckpt"),
                                "--output_dir", str(tmp_path / "v")])
    assert not (tmp_path / "v" / "validate.json").exists()


def test_not_a_checkpoint(tmp_path):
    """User sees: `Could not read '<file>' as a MindSpore ckpt checkpoint (...). The file is truncated, corrupt
    or not a checkpoint`."""
    from mindghost.models import load_checkpoint

    path = tmp_path / "photo.ckpt"
    path.write_bytes(_jpeg_bytes())
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a checkpoint"):
        load_checkpoint(_model(), str(path))


def test_truncated_checkpoint(ckpts, tmp_path):
    """User sees the same `truncated, corrupt or not a checkpoint` message; a 0-byte file says `empty file`."""
    from mindghost.models import load_checkpoint

    data = open(ckpts["good"], "rb").read()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a checkpoint"):
        load_checkpoint(_model(), str(cut))
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty file \(0 bytes\)"):
        load_checkpoint(_model(), str(empty))


def test_checkpoint_of_another_model(ckpts):
    """User sees: `Checkpoint '...' does not match model 'ghostnet_050': missing N key(s) ... unexpected ...`."""
    from mindghost.models import load_checkpoint

    with pytest.raises(CheckpointError, match=r"does not match model 'ghostnet_050'[\s\S]*unexpected \d+ key"):
        load_checkpoint(_model(), ckpts["other"])


def test_checkpoint_with_other_num_classes(ckpts):
    """User sees the shape mismatch and `The classifier differs: set num_classes to the checkpoint's class count`."""
    from mindghost.models import load_checkpoint

    with pytest.raises(CheckpointError, match=r"shape mismatch[\s\S]*set num_classes to the checkpoint's"):
        load_checkpoint(_model(), ckpts["five"])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pth_refused_without_executing(tmp_path):
    """User sees: `... global 'posix.system' ... Nothing was executed` (UnsafeCheckpointError); the payload
    never runs (its marker file does not appear)."""
    from mindghost.models import load_checkpoint
    from mindghost.weights import UnsafeCheckpointError

    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    with open(path, "wb") as fh:
        pickle.dump({"conv_stem.weight": [0.0], "x": _Evil(str(marker))}, fh, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match=r"system[\s\S]*Nothing was executed"):
        load_checkpoint(_model(), str(path))
    assert not marker.exists()


def test_resume_from_plain_weights(ckpts, tiny, tmp_path, train_mod):
    """User sees: `'<file>' is not a mindghost training checkpoint ... use --ckpt_path instead of --resume`."""
    with pytest.raises(CheckpointError, match="not a mindghost training checkpoint.*--ckpt_path instead of --resume"):
        train_mod.main(ARGS + ["--data_dir", tiny, "--output_dir", str(tmp_path / "run"), "--epochs", "1",
                               "--resume", ckpts["good"]])


# ------------------------------------------------------------------------------------------------ saving
def _small_cell():
    from mindspore import nn

    return nn.Dense(200, 200)  # 160 kB of weights


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (needs root); None where mounting is not allowed."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        yield None
        return
    yield str(mnt)
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_full_disk_at_save_is_reported(small_disk, tmp_path, monkeypatch):
    """User sees: `could not save checkpoint '.../epoch_0002.ckpt': No space left on device ... the previous
    checkpoints in '...' are intact`; last.ckpt still loads and holds epoch 1, no partial file is left."""
    from mindghost.training.checkpoint import LAST, CheckpointManager, CheckpointSaveError
    from mindghost.weights import read_meta

    directory = small_disk or str(tmp_path / "ckpt")
    cell = _small_cell()
    manager = CheckpointManager(directory, keep=5)
    manager.save(cell, {"epoch": 1}, "epoch_0001.ckpt")
    before = open(os.path.join(directory, LAST), "rb").read()
    if small_disk:
        with open(os.path.join(directory, "filler"), "wb") as fh:  # fill the disk
            try:
                fh.write(b"\0" * (2 << 20))
            except OSError:
                pass
    else:  # no tmpfs here: the writer fails as it would on a full disk
        import mindspore as ms

        def full(*a, **k):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(ms, "save_checkpoint", full)
    with pytest.raises(CheckpointSaveError, match=r"epoch_0002\.ckpt.*No space left on device[\s\S]*intact"):
        manager.save(cell, {"epoch": 2}, "epoch_0002.ckpt")
    assert open(os.path.join(directory, LAST), "rb").read() == before
    assert read_meta(os.path.join(directory, LAST))["epoch"] == 1
    assert sorted(f for f in os.listdir(directory) if f != "filler") == ["epoch_0001.ckpt", LAST]
    assert isinstance(CheckpointSaveError("x"), RuntimeError)  # run_main prints it and exits 2


def test_nonfinite_weights_are_never_saved(tmp_path):
    """A NaN checkpoint is refused: `refusing to save ... non-finite values in 'weight'`; last.ckpt unchanged."""
    import mindspore as ms

    from mindghost.training.checkpoint import LAST, CheckpointManager, CheckpointSaveError

    cell = _small_cell()
    manager = CheckpointManager(str(tmp_path), keep=5)
    manager.save(cell, {"epoch": 1}, "epoch_0001.ckpt")
    before = open(tmp_path / LAST, "rb").read()
    cell.weight.set_data(ms.Tensor(np.full((200, 200), np.nan, np.float32)))
    with pytest.raises(CheckpointSaveError, match="non-finite values in 'weight'"):
        manager.save(cell, {"epoch": 2}, "epoch_0002.ckpt")
    assert open(tmp_path / LAST, "rb").read() == before and not (tmp_path / "epoch_0002.ckpt").exists()


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
    assert all(np.isfinite(v).all() for v in _state(last).values())
    assert not os.path.exists(os.path.join(out, "checkpoints", "epoch_0002.ckpt"))


_KILLER = textwrap.dedent("""
    # Run train.py, then SIGKILL this process at a chosen point (a real kill -9, no cleanup handlers run).
    import os, runpy, signal, sys
    sys.path.insert(0, {root!r})
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
    r = subprocess.run([sys.executable, str(script), mode, str(n)] + args, capture_output=True, text=True,
                       timeout=300, cwd=str(tmp_path))
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]


@pytest.fixture(scope="module")
def reference(tiny12, train_mod, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("reference"))
    summary = train_mod.main(DET + ["--data_dir", tiny12, "--output_dir", out])
    assert summary["finished"] and summary["global_step"] == 6
    return _state(os.path.join(out, "checkpoints", "last.ckpt"))


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
    _assert_same_weights(reference, _state(os.path.join(out, "checkpoints", "last.ckpt")))


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
    _assert_same_weights(reference, _state(os.path.join(ckpt_dir, "last.ckpt")))


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
    sys.path.insert(0, {root!r})
    from mindghost import runtime
    from mindghost.training.checkpoint import CheckpointSaveError

    ERRORS = {{
        "internal": RuntimeError("kernel launch failed\\n----\\n- C++ Call Stack: (For framework developers)"),
        "io": OSError(errno.EIO, "Input/output error"),
        "full": OSError(errno.ENOSPC, "No space left on device"),
        "missing": FileNotFoundError("no metrics.jsonl in 'runs/x'"),
        "own": CheckpointSaveError("could not save checkpoint 'x.ckpt'"),
    }}

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
    script.write_text(_RUN_MAIN.format(root=ROOT))
    env = dict(os.environ)
    env.pop("MINDGHOST_TRACEBACK", None)
    r = subprocess.run([sys.executable, str(script), kind], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == code, r.stderr
    assert first in r.stderr.splitlines(), r.stderr
    assert ("Traceback" in r.stderr) == (code == 1), r.stderr


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
    args = _without(ARGS, "--device")
    train_mod.main(args + ["--data_dir", tiny, "--output_dir", str(tmp_path / "auto"), "--device", "auto",
                           "--epochs", "1", "--max_steps", "1"])
    first = open(tmp_path / "auto" / "train.log").readline()
    assert "device auto: no Ascend device found" in first and "running on CPU" in first


# ------------------------------------------------------------------------------------------------ checks first
def test_every_problem_is_reported_at_once_and_nothing_is_written(tiny, tmp_path, train_mod, monkeypatch):
    """A recipe for another dataset, AMP O2 on CPU and a broken val image: user sees `3 problems found before
    starting (nothing was written)` listing all three (not one per rerun), and no empty runs/<model>-<time>."""
    from mindghost.training.plan import RunCheckError

    data = _copy_tree(tiny, tmp_path / "d")
    open(os.path.join(data, "val", "class_0", "empty.png"), "wb").close()
    monkeypatch.chdir(tmp_path)
    args = _without(ARGS, "--num_classes")
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
    args = _without(ARGS, "--num_workers")
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


# ------------------------------------------------------------------------------------------------ resume
def test_mid_epoch_resume_with_other_batch_settings_is_refused(tiny, tmp_path, train_mod):
    """Stopped after 3 batches of 4, rerun with --batch_size 2: the saved position (3 batches) would mean 6 images
    instead of 12. User sees `cannot resume mid-epoch from '.../last.ckpt' (epoch 1, 3 batches done) with other
    batch settings (batch_size 4 -> 2) ... Resume with the checkpoint's settings (--batch_size 4)`."""
    out = str(tmp_path / "run")
    train_mod.main(ARGS + ["--data_dir", tiny, "--output_dir", out, "--epochs", "1", "--max_steps", "3"])
    with pytest.raises(ValueError, match=r"cannot resume mid-epoch from .*last\.ckpt' \(epoch 1, 3 batches done\) "
                                         r"with other batch settings \(batch_size 4 -> 2\)[\s\S]*--batch_size 4"):
        train_mod.main(_without(ARGS, "--batch_size") + ["--batch_size", "2", "--data_dir", tiny, "--output_dir", out,
                                                         "--epochs", "1"])


def test_epoch_end_resume_with_other_batch_maps_the_schedule_and_warns(tiny12, tmp_path, train_mod):
    """1 epoch of 3 batches of 4, then --resume with batch 2 and 2 epochs: the lr schedule (6 updates per epoch
    now) continues at epoch 1, not at update 3; the log says so and warns that the schedule changed."""
    out = str(tmp_path / "run")
    train_mod.main(ARGS + ["--data_dir", tiny12, "--output_dir", out, "--epochs", "1"])
    last = os.path.join(out, "checkpoints", "last.ckpt")
    summary = train_mod.main(_without(ARGS, "--batch_size") + [
        "--batch_size", "2", "--data_dir", tiny12, "--output_dir", out, "--epochs", "2", "--resume", last])
    assert summary["finished"] and summary["global_step"] == 12 and summary["updates"] == 12
    assert int(_state(last)["global_step"].reshape(-1)[0]) == 12  # 2 epochs x 6 updates, not 3 + 6
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
    train_mod.main(_without(ARGS, "--progress") + ["--data_dir", tiny12, "--output_dir", str(out), "--epochs", "1",
                                                   "--val_every", "1"])
    err = capsys.readouterr().err
    assert "\r" not in err and "step/s" not in err and "img/s]" not in err
    assert "epoch 1 step 2/3 loss" in err and "epoch 1 step 2/3 loss" in open(out / "train.log").read()
