"""validate.py in process (PyNative: no graph compile): exact sample count, JSON output, clear errors."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tiny_data import load_entry_point, write_tiny_imagefolder  # noqa: E402

from mindghost.models import CheckpointError  # noqa: E402
from mindghost.training.config import ConfigError  # noqa: E402

ARGS = ["--model", "ghostnet_050", "--num_classes", "3", "--image_size", "32", "--device", "CPU",
        "--mode", "pynative", "--progress", "False"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import mindspore as ms

    from mindghost import create_model
    from mindghost.training.checkpoint import atomic_save

    root = tmp_path_factory.mktemp("val")
    data = write_tiny_imagefolder(str(root / "data"))  # 3 classes x 5 val images = 15
    ms.set_seed(0)
    model = create_model("ghostnet_050", num_classes=3)
    plain = str(root / "mindcv_style.ckpt")
    ms.save_checkpoint(model, plain)  # plain weights, no meta (like a MindCV checkpoint)
    with_ema = str(root / "with_ema.ckpt")
    params = [{"name": p.name, "data": p} for p in model.get_parameters()]
    params += [{"name": "ema." + p.name, "data": ms.Tensor(p.asnumpy())} for p in model.get_parameters()]
    atomic_save(params, with_ema, {"model": "ghostnet_050", "epoch": 1, "global_step": 6})
    other = create_model("ghostnet_050", num_classes=5)
    five = str(root / "five_classes.ckpt")
    ms.save_checkpoint(other, five)
    return {"data": data, "plain": plain, "ema": with_ema, "five": five, "out": str(root / "out")}


@pytest.fixture(scope="module")
def validate_mod():
    return load_entry_point("validate")


def test_every_sample_counted_once_and_json_written(setup, validate_mod):
    res = validate_mod.main(ARGS + ["--data_dir", setup["data"], "--ckpt_path", setup["plain"], "--batch_size", "4",
                                    "--output_dir", setup["out"]])
    assert res["num_samples"] == 15 and res["batch_size"] == 4  # 4+4+4+3: the last partial batch is kept
    written = json.load(open(os.path.join(setup["out"], "validate.json")))
    assert {"top1", "top5", "loss", "img_per_s", "num_samples"} <= set(written)
    whole = validate_mod.main(ARGS + ["--data_dir", setup["data"], "--ckpt_path", setup["plain"],
                                      "--batch_size", "15", "--output_dir", setup["out"]])
    assert whole["top1"] == res["top1"] and abs(whole["loss"] - res["loss"]) < 1e-4  # padding changes nothing


def test_ema_weights_and_meta(setup, validate_mod):
    res = validate_mod.main(ARGS + ["--data_dir", setup["data"], "--ckpt_path", setup["ema"], "--ema", "True",
                                    "--batch_size", "8", "--output_dir", setup["out"]])
    assert res["ema"] is True and res["trained_epochs"] == 1 and res["num_samples"] == 15
    with pytest.raises(CheckpointError, match="no EMA weights"):
        validate_mod.main(ARGS + ["--data_dir", setup["data"], "--ckpt_path", setup["plain"], "--ema", "True"])


def test_missing_or_mismatched_checkpoint_is_an_error(setup, validate_mod):
    with pytest.raises(ConfigError, match="--ckpt_path"):
        validate_mod.main(ARGS + ["--data_dir", setup["data"]])
    with pytest.raises(CheckpointError, match="not found"):
        validate_mod.main(ARGS + ["--data_dir", setup["data"], "--ckpt_path", "/nonexistent.ckpt"])
    with pytest.raises(CheckpointError, match="num_classes"):
        validate_mod.main(ARGS + ["--data_dir", setup["data"], "--ckpt_path", setup["five"]])
    with pytest.raises(CheckpointError, match="does not match model 'ghostnet_100'"):
        validate_mod.main(ARGS + ["--data_dir", setup["data"], "--ckpt_path", setup["plain"],
                                  "--model", "ghostnet_100"])
    with pytest.raises(ValueError, match="class folders"):
        validate_mod.main(ARGS + ["--data_dir", setup["data"], "--ckpt_path", setup["plain"], "--num_classes", "4"])


def test_bn_folding_on_cpu_changes_no_result(setup, validate_mod):
    common = ARGS + ["--data_dir", setup["data"], "--ckpt_path", setup["plain"], "--batch_size", "8",
                     "--output_dir", setup["out"]]
    folded = validate_mod.main(common)  # fuse_bn auto: on, since the device is CPU
    kept = validate_mod.main(common + ["--fuse_bn", "false"])
    assert folded["bn_folded"] > 0 and kept["bn_folded"] == 0
    assert folded["top1"] == kept["top1"] and folded["top5"] == kept["top5"]
    assert abs(folded["loss"] - kept["loss"]) < 1e-5 * max(1.0, abs(kept["loss"]))


def test_checkpoint_records_fill_what_the_user_left_unsaid(setup, validate_mod, capsys):
    """#12.4: a checkpoint trained at 32 px with its own mean/std and 3 classes, validated with only --ckpt_path
    (and no model, class count or size), is evaluated the way it was trained; an explicit disagreeing value is
    used with a warning naming both."""
    import mindspore as ms

    from mindghost import create_model
    from mindghost.training.checkpoint import atomic_save

    model = create_model("ghostnet_050", num_classes=3)
    path = os.path.join(os.path.dirname(setup["plain"]), "recorded.ckpt")
    config = {"model": "ghostnet_050", "num_classes": 3, "in_channels": 3, "image_size": 32, "eval_image_size": 0,
              "crop_pct": 1.0, "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    ms.save_checkpoint(model, path)
    params = [{"name": p.name, "data": p} for p in model.get_parameters()]
    atomic_save(params, path, {"model": "ghostnet_050", "num_classes": 3, "epoch": 2, "global_step": 9,
                               "config": config})
    bare = ["--device", "CPU", "--mode", "pynative", "--progress", "False", "--batch_size", "5"]
    res = validate_mod.main(bare + ["--data_dir", setup["data"], "--ckpt_path", path, "--output_dir", setup["out"]])
    assert (res["model"], res["image_size"], res["crop_pct"]) == ("ghostnet_050", 32, 1.0)
    assert res["num_samples"] == 15
    capsys.readouterr()
    res = validate_mod.main(bare + ["--data_dir", setup["data"], "--ckpt_path", path, "--image_size", "48",
                                    "--output_dir", setup["out"]])
    log = capsys.readouterr().err
    assert res["image_size"] == 48
    assert "warning: --image_size 48 overrides the checkpoint's recorded image_size 32" in log, log
    with pytest.raises(CheckpointError, match="trained as ghostnet_050"):
        validate_mod.main(bare + ["--data_dir", setup["data"], "--ckpt_path", path, "--model", "ghostnet_100"])


def test_ghostnetv3_train_form_checkpoint_validates_fused(tmp_path, validate_mod):
    """A GhostNetV3 checkpoint as training writes it (train form, branches unfused) is evaluated in the fused form;
    top-1 and loss equal the unfused model's on the same images. Non-trivial BN statistics make a wrong fusion show.
    64 px: V3's DFC attention needs maps >= 2x2 at its last stages."""
    import numpy as np

    import mindspore as ms

    from mindghost import create_model
    from mindghost.data import build_eval_loader, eval_preprocessing
    from mindghost.training.config import build_config
    from mindghost.training.evaluate import evaluate
    from mindghost.training.train_step import EvalNet

    data = write_tiny_imagefolder(str(tmp_path / "data"), size=64)
    model = create_model("ghostnetv3_050", num_classes=3)
    rng = np.random.default_rng(0)
    for p in model.get_parameters():
        # gamma < 1: the train form sums up to five BN branches per conv, which would blow the logits up
        ranges = {"moving_mean": (-0.2, 0.2), "beta": (-0.2, 0.2), "moving_variance": (0.5, 1.5), "gamma": (0.1, 0.4)}
        kind = p.name.rsplit(".", 1)[-1]
        if kind in ranges:
            p.set_data(ms.Tensor(rng.uniform(*ranges[kind], p.shape).astype(np.float32)))
    ckpt = str(tmp_path / "v3_train_form.ckpt")
    ms.save_checkpoint(model, ckpt)
    args = ["--model", "ghostnetv3_050", "--num_classes", "3", "--image_size", "64", "--device", "CPU",
            "--mode", "pynative", "--progress", "False", "--data_dir", data, "--ckpt_path", ckpt,
            "--batch_size", "15", "--output_dir", str(tmp_path / "out"), "--fuse_bn", "false"]
    res = validate_mod.main(args)
    assert res["reparameterized"] and not model.reparameterized

    cfg = build_config({"model": "ghostnetv3_050", "num_classes": 3, "image_size": 64, "data_dir": data})
    pre = eval_preprocessing(cfg, model.default_cfg)
    model.set_train(False)
    ref = evaluate(EvalNet(model), build_eval_loader(cfg, pre, 15), 15)  # the unfused train form
    assert res["num_samples"] == ref["num_samples"] == 15
    assert res["top1"] == ref["top1"] and res["top5"] == ref["top5"]
    assert abs(res["loss"] - ref["loss"]) < 1e-5 * max(1.0, abs(ref["loss"]))
