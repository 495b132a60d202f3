"""Failure battery, checkpoints: loading refuses a missing, foreign, truncated or malicious file with a clear
error; saving never writes non-finite weights and reports a full disk.

Each test's docstring says what the user sees; the test checks a stable fragment of that message and that
files written before the failure are intact. Entry points are called in process (`train.main` raises the
error that `runtime.run_main` prints as `error: ...` with exit code 2).
"""
import errno
import os
import pickle
import subprocess

import numpy as np
import pytest
from _tiny_data import TINY_PYNATIVE_ARGS, jpeg_bytes

from mindghost.models import CheckpointError

ARGS = TINY_PYNATIVE_ARGS


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
    path.write_bytes(jpeg_bytes())
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
