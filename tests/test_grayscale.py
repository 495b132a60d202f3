"""Grey-scale data end to end (issue #12 item 7): `--in_channels 1` decodes images as L with a one-value mean/std in
training (train and eval loaders), validate.py, export (its JSON says "decode L") and predict; a 3-value mean with
in_channels 1 and an in_channels without an image mode (4) are refused before anything is written.

One GRAPH-mode training run (train step + in-training evaluation) is shared by the end-to-end checks; validate and
predict from the checkpoint run in PyNative mode, export and the MINDIR prediction compile once each.
"""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tiny_data import load_entry_point, write_tiny_imagefolder  # noqa: E402

ARGS = ["--model", "ghostnet_050", "--num_classes", "3", "--in_channels", "1", "--image_size", "32",
        "--batch_size", "8", "--epochs", "1", "--warmup_epochs", "0", "--device", "CPU", "--progress", "False",
        "--plot", "False", "--log_every", "1", "--num_workers", "1"]


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    return write_tiny_imagefolder(str(tmp_path_factory.mktemp("grey")), val_per_class=4, grey=True)


@pytest.fixture(scope="module")
def grey_mean_std():
    """The one-value default: the average of ghostnet_050's default RGB mean/std."""
    from mindghost.models import get_default_cfg

    cfg = get_default_cfg("ghostnet_050")
    return float(np.mean(cfg.mean)), float(np.mean(cfg.std))


@pytest.fixture(scope="module")
def trained(grey, tmp_path_factory):
    """One short GRAPH-mode run with --in_channels 1 (in-training evaluation on): its run directory."""
    import mindspore as ms

    out = str(tmp_path_factory.mktemp("run") / "run")
    summary = load_entry_point("train").main(ARGS + ["--mode", "graph", "--data_dir", grey, "--output_dir", out])
    ms.set_context(mode=ms.PYNATIVE_MODE)
    return out, summary


def test_training_runs_on_one_channel_with_the_grey_default_mean(trained, grey_mean_std):
    from mindghost.inference import read_meta

    out, summary = trained
    assert summary["finished"] and summary["global_step"] == 3  # 24 images / batch 8
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert np.isfinite(metrics[-1]["train_loss"]) and "val_top1" in metrics[-1]  # the eval loader ran too
    log = open(os.path.join(out, "train.log")).read()
    assert f"grey-scale input (in_channels 1): mean {grey_mean_std[0]:.4g}" in log
    ckpt = os.path.join(out, "checkpoints", "last.ckpt")
    assert read_meta(ckpt)["in_channels"] == 1
    import mindspore as ms

    stem = [v for k, v in ms.load_checkpoint(ckpt).items() if k.endswith("conv_stem.weight")]
    assert stem and stem[0].shape[1] == 1  # the network really takes one channel


def test_validate_reads_one_channel_from_the_checkpoint(trained, grey):
    out, _ = trained
    ckpt = os.path.join(out, "checkpoints", "last.ckpt")
    # no --in_channels: validate takes it (and the image size) from the checkpoint
    res = load_entry_point("validate").main(["--data_dir", grey, "--ckpt_path", ckpt, "--device", "CPU",
                                             "--mode", "pynative", "--batch_size", "4", "--num_workers", "1",
                                             "--progress", "False", "--output_dir", os.path.join(out, "val")])
    assert res["num_samples"] == 12 and res["image_size"] == 32 and np.isfinite(res["loss"])


def test_export_json_says_decode_l_and_predict_agrees(trained, grey, grey_mean_std, tmp_path, capsys):
    from mindghost.tools.export import main as export_main
    from mindghost.tools.predict import main as predict_main

    out, _ = trained
    ckpt = os.path.join(out, "checkpoints", "last.ckpt")
    assert export_main(["--model", "ghostnet_050", "--ckpt_path", ckpt, "--format", "mindir", "onnx",
                        "--batch_size", "4", "--output_dir", str(tmp_path), "--name", "g"]) == 0
    report = json.loads((tmp_path / "g.json").read_text())
    pre = report["preprocessing"]
    assert report["input_shape"] == [4, 1, 32, 32] and pre["in_channels"] == 1
    assert pre["order"].startswith("decode L") and "RGB," not in pre["order"]
    np.testing.assert_allclose(pre["mean"] + pre["std"], grey_mean_std, rtol=1e-6)
    import onnxruntime

    assert onnxruntime.InferenceSession(report["files"]["onnx"]).get_inputs()[0].shape == [4, 1, 32, 32]

    val = os.path.join(grey, "val")
    assert predict_main([val, "--mindir", str(tmp_path / "g.mindir"), "--top_k", "1",
                         "--out", str(tmp_path / "mindir.json")]) == 0
    assert predict_main([val, "--ckpt_path", ckpt, "--top_k", "1", "--mode", "pynative",
                         "--out", str(tmp_path / "ckpt.json")]) == 0
    from_mindir = json.loads((tmp_path / "mindir.json").read_text())
    from_ckpt = json.loads((tmp_path / "ckpt.json").read_text())
    assert len(from_ckpt["predictions"]) == 12 and not from_ckpt["errors"]
    assert from_ckpt["preprocessing"]["in_channels"] == 1
    assert [r["top_k"][0]["name"] for r in from_mindir["predictions"]] == \
        [r["top_k"][0]["name"] for r in from_ckpt["predictions"]]
    np.testing.assert_allclose([r["top_k"][0]["prob"] for r in from_mindir["predictions"]],
                               [r["top_k"][0]["prob"] for r in from_ckpt["predictions"]], rtol=1e-4)


def test_grey_preprocessing_is_the_luma_normalized_with_one_value(tmp_path):
    """A colour file through a grey model's eval transform: its luma (Pillow's L conversion), (x / 255 - mean) / std."""
    from PIL import Image

    from mindspore.dataset import transforms

    from mindghost.inference import eval_transforms, resolve_inference_setup

    rgb = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = str(tmp_path / "colour.png")
    Image.fromarray(rgb).save(path)
    meta = {"model": "ghostnet_050", "num_classes": 3, "in_channels": 1,
            "config": {"image_size": 32, "crop_pct": 1.0, "mean": [0.5], "std": [0.25]}}
    setup = resolve_inference_setup(meta, source="grey.ckpt")
    out = transforms.Compose(eval_transforms(setup))(np.fromfile(path, np.uint8))
    luma = np.asarray(Image.fromarray(rgb).convert("L"), np.float32)
    assert out.shape == (1, 32, 32)
    # OpenCV (MindSpore) and Pillow may round a luma value differently: one grey level apart at most
    np.testing.assert_allclose(out[0], (luma / 255 - 0.5) / 0.25, atol=1.001 / 255 / 0.25)


@pytest.mark.parametrize("extra, key", [
    (["--mean", "0.5", "0.5", "0.5"], "'mean' has 3 values but in_channels is 1"),
    (["--in_channels", "4"], "'in_channels' is 4, but images decode only as L"),
])
def test_channel_mismatches_are_refused_before_anything_is_written(grey, tmp_path, extra, key):
    out = str(tmp_path / "run")
    with pytest.raises(ValueError) as err:
        load_entry_point("train").main(ARGS + ["--mode", "pynative", "--data_dir", grey, "--output_dir", out] + extra)
    assert key in str(err.value)
    assert not os.path.exists(out)


def test_inference_refuses_a_three_value_mean_for_a_grey_checkpoint():
    from mindghost.errors import UsageError
    from mindghost.inference import resolve_inference_setup

    meta = {"model": "ghostnet_050", "num_classes": 3, "in_channels": 1, "config": {"image_size": 32}}
    with pytest.raises(UsageError, match="--mean has 3 values but in_channels is 1: give one value"):
        resolve_inference_setup(meta, explicit={"mean": [0.5, 0.5, 0.5]})
