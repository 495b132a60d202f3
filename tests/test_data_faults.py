"""Issue #18, items 1, 2, 3, 8: what real datasets hold (non-file entries, corrupt bodies, renamed class folders,
EXIF-rotated photos), each refused or handled before training starts, with a message naming it."""
import io
import os
import shutil
import socket
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tiny_data import load_entry_point, write_tiny_imagefolder  # noqa: E402

from mindghost.data import DataError, check_dataset, inspect_split  # noqa: E402
from mindghost.training.config import Config  # noqa: E402


def _cfg(data, **kw):
    return Config(data_dir=str(data), num_classes=kw.pop("num_classes", 3), **kw)


def _jpeg(orientation=None, size=16) -> bytes:
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size * 2, 3), dtype=np.uint8))
    out = io.BytesIO()
    if orientation is None:
        img.save(out, "JPEG")
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(out, "JPEG", exif=exif)
    return out.getvalue()


@pytest.fixture()
def tiny(tmp_path):
    return write_tiny_imagefolder(str(tmp_path / "data"))


# ------------------------------------------------------------------------------------------ 1. non-file entries
def test_folders_and_other_non_files_in_class_folders_are_refused_by_name(tiny):
    """MindSpore's ImageFolderDataset lists every entry of a class folder and dies at batch 1 on a directory
    ("Invalid file found ... should be file, but got directory"); the check names each entry first."""
    cls = os.path.join(tiny, "train", "class_0")
    os.makedirs(os.path.join(cls, ".ipynb_checkpoints"))
    os.makedirs(os.path.join(cls, "@eaDir"))
    os.symlink(os.path.join(cls, "gone.png"), os.path.join(cls, "dangling.png"))
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(os.path.join(cls, "s.png"))
        with pytest.raises(DataError) as e:
            inspect_split(tiny, "train")
    finally:
        sock.close()
    msg = str(e.value)
    assert f"{cls}/.ipynb_checkpoints: a directory, not an image file" in msg, msg
    assert f"{cls}/@eaDir: a directory" in msg and f"{cls}/s.png: a socket" in msg
    assert f"{cls}/dangling.png: a dangling symlink" in msg
    assert "! -type f" in msg  # how to list them all


def test_non_file_entry_refused_before_the_run_directory_exists(tiny, tmp_path):
    os.makedirs(os.path.join(tiny, "val", "class_1", ".ipynb_checkpoints"))
    _, problems = check_dataset(_cfg(tiny), train=True, val=True)
    assert len(problems) == 1 and "class_1/.ipynb_checkpoints: a directory" in str(problems[0])


# ------------------------------------------------------------------------------------------ 8. EXIF orientation
def test_exif_orientation_is_read_from_the_header_and_counted(tiny):
    from mindghost.data.checks import check_image_file

    d = os.path.join(tiny, "val", "class_2")
    for name, orientation in (("r6.jpg", 6), ("r1.jpg", 1), ("plain.jpg", None), ("r8.jpg", 8)):
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(_jpeg(orientation))
    found = []
    assert check_image_file(os.path.join(d, "r6.jpg"), None, found) is None and found == [6]
    info, problems = check_dataset(_cfg(tiny), train=False, val=True)
    assert not problems
    assert info.rotated == (os.path.join(d, "r6.jpg"), os.path.join(d, "r8.jpg"))
    note = info.notes()[0]
    assert note.startswith("2 JPEG(s) carry an EXIF orientation") and "turn them upright as the tag says" in note


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillows_exif_transpose(orientation):
    from PIL import Image, ImageOps

    from mindghost.data.guard import orient

    stored = np.random.default_rng(orientation).integers(0, 255, (3, 5, 3), dtype=np.uint8)
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(img))
    np.testing.assert_array_equal(orient(stored, orientation), expected)


def test_every_pipeline_turns_a_tagged_jpeg_upright():
    """MindSpore's Decode alone returns the stored 16 x 32 (H x W); tag 6 means 'turn 90 degrees clockwise', so
    validation/prediction (eval_ops) and training (the guarded decode) get 32 x 16."""
    from mindspore.dataset import transforms, vision

    from mindghost.data import EvalPreprocessing, eval_ops
    from mindghost.data.guard import ImageGuard

    data = np.frombuffer(_jpeg(6), np.uint8)
    assert vision.Decode()(data).shape[:2] == (16, 32)  # today's behaviour in every path
    assert ImageGuard(vision.Decode())(data).shape[:2] == (32, 16)
    pre = EvalPreprocessing(image_size=8, crop_pct=1.0, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    upright = transforms.Compose(eval_ops(pre))(data)
    assert upright.shape == (3, 8, 8)
    ops = eval_ops(pre)
    assert isinstance(ops[0], ImageGuard)  # the one eval transform of validate, in-training eval and predict


# ------------------------------------------------------------------------------------------ 3. class names
def test_val_split_with_a_renamed_folder_is_refused_naming_it(tiny):
    os.rename(os.path.join(tiny, "val", "class_1"), os.path.join(tiny, "val", "class_one"))
    _, problems = check_dataset(_cfg(tiny), train=False, val=True, class_names=("class_0", "class_1", "class_2"),
                                names_source="'best.ckpt'")
    msg = str(problems[0])
    assert len(problems) == 1 and "records: renamed? 'class_1' -> 'class_one'" in msg, msg
    assert "missing (trained, no folder): ['class_1']" in msg and "extra (a folder, not trained): ['class_one']" in msg


def test_val_subset_is_mapped_to_the_trained_indices(tiny):
    shutil.rmtree(os.path.join(tiny, "val", "class_0"))
    info, problems = check_dataset(_cfg(tiny), train=False, val=True, class_names=("class_0", "class_1", "class_2"))
    assert not problems and info.val_class_indexing == {"class_1": 1, "class_2": 2}
    # in training: a val split with fewer classes than train is evaluated by name too
    info, problems = check_dataset(_cfg(tiny), train=True, val=True)
    assert not problems and info.val_class_indexing == {"class_1": 1, "class_2": 2} and info.classes[0] == "class_0"


def test_resume_or_fine_tune_on_other_train_classes_is_refused(tiny, tmp_path):
    """A checkpoint's classifier was trained on its class_names: train folders of another set or order would
    continue with permuted labels."""
    from mindghost import create_model
    from mindghost.training.checkpoint import atomic_save
    from mindghost.training.plan import trained_class_names

    model = create_model("ghostnet_050", num_classes=3)
    ckpt = str(tmp_path / "trained.ckpt")
    atomic_save(model, ckpt, {"model": "ghostnet_050", "num_classes": 3, "class_names": ["cat", "class_1", "dog"]})
    cfg = _cfg(tiny, ckpt_path=ckpt)
    names, source = trained_class_names(cfg, None)
    assert names == ("cat", "class_1", "dog") and source == f"'{ckpt}'"
    _, problems = check_dataset(cfg, train=True, val=True, class_names=names, names_source=source)
    assert "'" + os.path.join(tiny, "train") + "' class folders do not match the 3 class names" in str(problems[0])
    assert "--new_classifier True" in str(problems[0])
    assert trained_class_names(_cfg(tiny, ckpt_path=ckpt, new_classifier=True), None) == (None, "")


@pytest.fixture(scope="module")
def biased_ckpt(tmp_path_factory):
    """ghostnet_050 (3 classes) whose classifier says class 2 for every image, with class names recorded."""
    import mindspore as ms

    from mindghost import create_model
    from mindghost.training.checkpoint import atomic_save

    model = create_model("ghostnet_050", num_classes=3)
    for p in model.get_parameters():
        if p.name == "classifier.weight":
            p.set_data(ms.Tensor(np.zeros(p.shape, np.float32)))
        if p.name == "classifier.bias":
            p.set_data(ms.Tensor(np.array([0.0, 0.0, 10.0], np.float32)))
    path = str(tmp_path_factory.mktemp("ck") / "biased.ckpt")
    config = {"model": "ghostnet_050", "num_classes": 3, "in_channels": 3, "image_size": 32}
    atomic_save(model, path, {"model": "ghostnet_050", "num_classes": 3, "config": config,
                              "class_names": ["class_0", "class_1", "class_2"]})
    return path


VALIDATE = ["--device", "CPU", "--mode", "pynative", "--progress", "False", "--batch_size", "5"]


def test_validate_evaluates_a_subset_by_name(tiny, biased_ckpt, tmp_path):
    """Today: "pass --num_classes 2" (then, with it, a checkpoint of 3 classes is refused). Now: labels are the
    checkpoint's indices, so the always-class-2 model scores class_2's 5 of 10 images."""
    shutil.rmtree(os.path.join(tiny, "val", "class_0"))
    res = load_entry_point("validate").main(VALIDATE + ["--data_dir", tiny, "--ckpt_path", biased_ckpt,
                                                        "--output_dir", str(tmp_path / "o")])
    assert res["num_samples"] == 10 and res["top1"] == pytest.approx(50.0)


def test_validate_refuses_a_renamed_class_folder(tiny, biased_ckpt):
    """Today: evaluated silently with shifted labels."""
    os.rename(os.path.join(tiny, "val", "class_2"), os.path.join(tiny, "val", "class_two"))
    with pytest.raises(DataError, match=r"renamed\? 'class_2' -> 'class_two'"):
        load_entry_point("validate").main(VALIDATE + ["--data_dir", tiny, "--ckpt_path", biased_ckpt])


# ------------------------------------------------------------------------------------------ 2. corrupt bodies
def _damaged_jpegs(folder):
    """Two JPEGs with intact SOI/EOI markers that the header scan passes: a damaged scan header (MindSpore's
    Decode raises mid-epoch) and a body cut short (libjpeg half-decodes it, only warning on stderr)."""
    good = _jpeg(size=32)
    sos = good.find(b"\xff\xda")
    paths = {"bad_sos.jpg": good[:sos + 4] + b"\x09" + good[sos + 5:],
             "half.jpg": good[:sos + 40] + b"\xff\xd9"}
    for name, data in paths.items():
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(data)
    return [os.path.join(folder, n) for n in paths]


@pytest.mark.slow
def test_verify_images_finds_damaged_bodies_and_remembers_good_files(tiny, monkeypatch, tmp_path):
    from mindghost.data.verify import verify_split
    from mindghost.tools import verify_images

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bad_sos, half = _damaged_jpegs(os.path.join(tiny, "train", "class_1"))
    assert not check_dataset(_cfg(tiny), train=True, val=False)[1]  # the header scan passes them
    _, problems = check_dataset(_cfg(tiny, verify_images=True, num_workers=1), train=True, val=False)
    msg = str(problems[0])
    assert len(problems) == 1 and "2 file(s) failed the full decode (verify_images)" in msg, msg
    assert f"{bad_sos}: cannot be decoded" in msg and f"{half}: only partly decoded (libjpeg: " in msg
    files, cached, bad = verify_split(os.path.join(tiny, "train"), workers=1, progress=False)
    assert (files, cached, len(bad)) == (26, 24, 2)  # the 24 good ones are not decoded again
    os.remove(bad_sos)
    os.remove(half)
    assert verify_images.main(["--data_dir", tiny, "--splits", "train", "--progress", "false"]) == 0


def test_verify_images_in_worker_processes_finds_the_same(tiny, monkeypatch, tmp_path):
    """Large splits are decoded by spawned worker processes (small ones in process): same verdicts both ways."""
    from mindghost.data import verify

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(verify, "_IN_PROCESS_BELOW", 0)
    bad_sos, half = _damaged_jpegs(os.path.join(tiny, "train", "class_1"))
    files, cached, bad = verify.verify_split(os.path.join(tiny, "train"), workers=2, progress=False)
    assert (files, cached) == (26, 0) and sorted(p for p, _ in bad) == sorted([bad_sos, half])
    assert verify.unverified(os.path.join(tiny, "train"), 26) == 2


def _tiny_cfg(data, **kw):
    return _cfg(data, image_size=16, batch_size=4, shuffle=False, num_workers=1, **kw)


def _pre():
    from mindghost.data import EvalPreprocessing

    return EvalPreprocessing(image_size=16, crop_pct=1.0, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)


def test_a_bad_training_image_is_skipped_named_and_counted(tiny, caplog, tmp_path, monkeypatch):
    """Today: the epoch dies at the batch holding it ("map operation: [RandomCropDecodeResize] failed ... Bogus
    marker length"), and so does every resume. Now: replaced by another sample, the epoch keeps its length, and
    the copy MindSpore's Decode dumps into the working directory (./abnormal_image.jpg) is not left behind."""
    from mindghost.data import build_train_loader
    from mindghost.data import guard as G

    monkeypatch.chdir(tmp_path)

    G._TRACKERS.clear()
    bad_sos, _ = _damaged_jpegs(os.path.join(tiny, "train", "class_1"))
    os.remove(os.path.join(tiny, "train", "class_1", "half.jpg"))  # decodes (grey): only verify_images finds it
    cfg = _tiny_cfg(tiny)
    loader = build_train_loader(cfg, _pre(), epoch=0)
    labels = np.concatenate([lbl for _, lbl in loader.create_tuple_iterator(num_epochs=1, output_numpy=True)])
    assert len(labels) == 24  # 25 files, drop_remainder: 6 batches of 4
    (t,) = G.trackers()
    assert t.files == {bad_sos: "Error raised by libjpeg: Bogus marker length"} and t.epoch == 1 and t.fatal is None
    assert any(f"skipped a training image that cannot be decoded: {bad_sos}" in r.message for r in caplog.records)
    assert not [f for f in os.listdir(str(tmp_path)) if f.startswith("abnormal_image")]


def test_too_many_bad_images_stop_the_run_naming_them(tiny):
    from mindghost.data import build_train_loader
    from mindghost.data import guard as G

    G._TRACKERS.clear()
    bad_sos, _ = _damaged_jpegs(os.path.join(tiny, "train", "class_1"))
    os.remove(os.path.join(tiny, "train", "class_1", "half.jpg"))
    loader = build_train_loader(_tiny_cfg(tiny, max_bad_images=0), _pre(), epoch=0)
    for _ in loader.create_tuple_iterator(num_epochs=1, output_numpy=True):
        pass
    with pytest.raises(G.BadImageLimit, match=r"1 distinct images \(more than max_bad_images 0\) failed to decode"
                       r"[\s\S]*" + bad_sos):
        G.BadImageMonitor().on_step_end(None)
    G._TRACKERS.clear()


def test_a_verified_split_trains_without_the_python_guard(tiny, tmp_path, monkeypatch):
    """The guard is a Python map function: the demo's 28-px pipeline ran at ~1/3 of its throughput with it and
    the demo took twice as long. A bad image can only be skipped where one may exist: once verify_images vouches
    for every train image (and none carries an EXIF rotation) training runs MindSpore's own ops, giving the same
    batches. Old: every pipeline wrapped its decode, verified or not."""
    from mindghost.data import build_eval_loader, build_train_loader
    from mindghost.data import guard as G
    from mindghost.data.pipeline import train_transforms
    from mindghost.data.verify import verify_split

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = _tiny_cfg(tiny)
    info, problems = check_dataset(cfg, train=True, val=True)
    assert not problems and info.unverified == 24
    assert info.decode_guard("train", training=True) and not info.decode_guard("val", training=False)
    assert any("decode guard on: 24 of 24 train images are not verified" in line for line in info.notes())
    guarded = train_transforms(cfg, _pre(), True)
    assert isinstance(guarded[0], G.ImageGuard) and type(guarded[1]).__name__ == "RandomResizedCrop"

    monkeypatch.chdir(tiny)  # verified by a relative path, trained by an absolute one: the same files
    verify_split("train", workers=1, progress=False)
    monkeypatch.chdir(str(tmp_path))
    info, _ = check_dataset(cfg, train=True, val=True)
    assert info.unverified == 0 and not info.decode_guard("train", training=True)
    assert any("every train image is verified" in line for line in info.notes())
    ops = train_transforms(cfg, _pre(), info.decode_guard("train", training=True))
    assert not any(isinstance(op, G.ImageGuard) for op in ops) and type(ops[0]).__name__ == "RandomCropDecodeResize"

    def batches(loader):
        return [b[0] for b in loader.create_tuple_iterator(num_epochs=1, output_numpy=True)]

    G._TRACKERS.clear()
    for plain, guarded in zip(batches(build_train_loader(cfg, _pre(), 0, decode_guard=False)),
                              batches(build_train_loader(cfg, _pre(), 0, decode_guard=True))):
        np.testing.assert_array_equal(plain, guarded)
    for plain, guarded in zip(batches(build_eval_loader(cfg, _pre(), 5, decode_guard=False)),
                              batches(build_eval_loader(cfg, _pre(), 5, decode_guard=True))):
        np.testing.assert_array_equal(plain, guarded)

    # a rotated JPEG in a split: its pipeline keeps the wrapper (orientation), verified or not
    for split in ("train", "val"):
        with open(os.path.join(tiny, split, "class_0", "r6.jpg"), "wb") as fh:
            fh.write(_jpeg(6))
    verify_split(os.path.join(tiny, "train"), workers=1, progress=False)
    info, _ = check_dataset(cfg, train=True, val=True)
    assert info.unverified == 0 and info.decode_guard("train", training=True)
    assert info.decode_guard("val", training=False)
    G._TRACKERS.clear()


def test_the_guarded_train_pipeline_draws_a_crop_per_image(tmp_path):
    """The guard calls its op from Python, where a seeded MindSpore random op repeats one draw: old main wrapped
    MindCV's RandomCropDecodeResize, so every image of an epoch got the same random-resized crop box. Eight copies
    of one image must come out cropped differently."""
    from mindghost.data import build_train_loader
    from mindghost.data import guard as G

    data = write_tiny_imagefolder(str(tmp_path / "same"), classes=3, train_per_class=1, val_per_class=1, size=48)
    src = os.path.join(data, "train", "class_0", "0.png")
    for i in range(1, 8):
        shutil.copy(src, os.path.join(data, "train", "class_0", f"copy{i}.png"))
    G._TRACKERS.clear()
    cfg = _cfg(data, image_size=16, batch_size=10, shuffle=False, num_workers=1, hflip=0.0, scale=[0.08, 1.0])
    (images, labels), = build_train_loader(cfg, _pre(), epoch=0).create_tuple_iterator(num_epochs=1, output_numpy=True)
    copies = images[labels == 0] if labels.ndim == 1 else images[labels.argmax(-1) == 0]
    assert len(copies) == 8
    assert len({c.tobytes() for c in copies}) > 1, "every copy got the same crop"
    G._TRACKERS.clear()


def test_bad_image_limits_are_checked():
    from mindghost.training.config import config_problems

    problems = config_problems(Config(max_bad_images=-1, max_consecutive_bad_images=0))
    assert "'max_bad_images' must be >= 0, got -1" in problems
    assert "'max_consecutive_bad_images' must be >= 1, got 0" in problems


def test_predict_folder_search_leaves_out_non_files(tmp_path, capsys):
    from mindghost.tools.predict import find_images

    (tmp_path / "a.jpg").write_bytes(_jpeg())
    os.symlink(str(tmp_path / "gone.jpg"), str(tmp_path / "dangling.jpg"))
    os.makedirs(str(tmp_path / "@eaDir.jpg"))
    assert find_images([str(tmp_path)]) == [str(tmp_path / "a.jpg")]
    assert f"left out 1 entry under '{tmp_path}' with an image name that are not files" in capsys.readouterr().err
