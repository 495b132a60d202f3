"""Failure battery, data: a missing or inconsistent ImageFolder tree and undecodable files are named before
training starts; odd but valid images are converted.

Each test's docstring says what the user sees; the test checks a stable fragment of that message and that
files written before the failure are intact. Entry points are called in process (`train.main` raises the
error that `runtime.run_main` prints as `error: ...` with exit code 2).
Training runs use PyNative mode (no graph compile) on 32-px images.
"""
import os

import numpy as np
import pytest
from _tiny_data import TINY_PYNATIVE_ARGS, copy_tree, jpeg_bytes

from mindghost.data import DataError, inspect_split

ARGS = TINY_PYNATIVE_ARGS


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
    data = copy_tree(tiny, tmp_path / "d")
    os.makedirs(os.path.join(data, "train", "class_3"))
    with pytest.raises(DataError, match=r"1 class folder\(s\) hold no images \(class_3\)"):
        inspect_split(data, "train")


def test_train_and_val_classes_differ(tiny, tmp_path, train_mod):
    """User sees: `train and val class folders differ: ['class_2', 'class_x']`."""
    data = copy_tree(tiny, tmp_path / "d")
    os.rename(os.path.join(data, "val", "class_2"), os.path.join(data, "val", "class_x"))
    with pytest.raises(ValueError, match=r"train and val class folders differ: \['class_2', 'class_x'\]"):
        train_mod.main(ARGS + ["--data_dir", data, "--output_dir", str(tmp_path / "run"), "--val_every", "1"])


BAD_FILES = {
    # name: (content, reason shown).  Without the scan, MindSpore 2.10 fails opaquely on the first two,
    # kills the process with SIGFPE on the truncated JPEG and hangs forever on the garbage-body JPEG.
    "empty.jpg": (b"", "empty file (0 bytes)"),
    "notes.txt": (b"labels were checked by hand", "not an image file (extension)"),
    "page.jpg": (b"<!DOCTYPE html><html>403</html>", "not an image (unknown file header)"),
    "cut.jpg": (jpeg_bytes()[:300], "truncated or corrupt"),
    "garbage.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2, "truncated or corrupt"),
}


@pytest.mark.stack
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_undecodable_file_is_named_before_training(tiny, tmp_path, name):
    """User sees: `'<data>/train': 1 file(s) cannot be decoded ...`, then `<path>: <reason>` and
    `Remove or replace these files`, before any compile (instead of a crash, a hang or an opaque error)."""
    content, reason = BAD_FILES[name]
    data = copy_tree(tiny, tmp_path / "d")
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
    data = copy_tree(tiny, tmp_path / "d")
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

    jpg = jpeg_bytes(256)  # tens of KB: reading it whole would show in the count
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
    assert sum(read_bytes) <= 20 * (checks._HEAD + checks._TAIL), sum(read_bytes)
