"""A checkpoint describes itself: its recorded model, classes and eval preprocessing reach every tool that reads it
(export, redundancy, benchmark), explicit values override with a warning, another model or a run directory is
refused with a message naming what to pass (issue #12 item 4)."""
import json
import os

import pytest

import mindghost
from mindghost.inference import read_meta, recorded_setup, resolve_inference_setup
from mindghost.training.config import build_config
from mindghost.weights import CheckpointError, atomic_save

MEAN = [0.25, 0.5, 0.75]  # nothing like ImageNet's, so a tool that ignores the checkpoint shows it
STD = [0.1, 0.2, 0.3]


def training_meta(model: str = "ghostnet_050", num_classes: int = 3, **config) -> dict:
    """The meta training writes (trainer.make_meta): the whole resolved config under "config"."""
    cfg = build_config(dict(model=model, num_classes=num_classes, **config))
    return {"format": 1, "model": model, "num_classes": num_classes, "epoch": 1, "config": cfg.to_dict()}


def write_checkpoint(path, model: str = "ghostnet_050", num_classes: int = 3, **config) -> str:
    net = mindghost.create_model(model, num_classes=num_classes)
    atomic_save(net, str(path), training_meta(model, num_classes, **config))
    return str(path)


@pytest.fixture(scope="module")
def ckpt_32(tmp_path_factory):
    """ghostnet_050, 3 classes, trained at 32 px with its own mean/std and crop_pct 1.0."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.ckpt", image_size=32, mean=MEAN, std=STD,
                            crop_pct=1.0)


def test_recorded_values_are_used_and_said():
    setup = resolve_inference_setup(training_meta(image_size=32, mean=MEAN, std=STD), source="c.ckpt")
    assert (setup.model, setup.num_classes, setup.image_size) == ("ghostnet_050", 3, 32)
    assert setup.mean == tuple(MEAN) and setup.std == tuple(STD)
    assert setup.crop_pct == 0.875  # not recorded (None in the config): the model's default cfg
    text = "\n".join(setup.notes)
    assert "using the checkpoint's recorded model ghostnet_050" in text
    assert "recorded image_size 32 (ghostnet_050's default is 224)" in text
    assert "recorded mean [0.25, 0.5, 0.75]" in text
    assert not setup.warnings


def test_eval_image_size_is_the_recorded_size():
    assert recorded_setup(training_meta(image_size=64, eval_image_size=48))["image_size"] == 48


def test_explicit_value_wins_with_a_warning_naming_both():
    setup = resolve_inference_setup(training_meta(image_size=32), model="ghostnet_050",
                                    explicit={"image_size": 224}, flags={"image_size": "--size"})
    assert setup.image_size == 224
    assert setup.warnings == ("--size 224 overrides the checkpoint's recorded image_size 32 (the model was "
                              "trained and validated with 32)",)
    agreeing = resolve_inference_setup(training_meta(image_size=32), explicit={"image_size": 32})
    assert not agreeing.warnings


def test_structure_mismatch_and_other_model_are_refused():
    with pytest.raises(CheckpointError, match=r"trained as ghostnet_050, not ghostnet_100; pass --model ghostnet_050"):
        resolve_inference_setup(training_meta(), model="ghostnet_100", source="c.ckpt")
    with pytest.raises(CheckpointError, match=r"trained with num_classes 3, but --num_classes 10 was given; pass "
                                              r"--num_classes 3"):
        resolve_inference_setup(training_meta(), explicit={"num_classes": 10})


def test_checkpoint_without_meta_uses_model_defaults_and_says_so():
    setup = resolve_inference_setup(None, model="ghostnet_050", source="mindcv.ckpt")
    assert (setup.image_size, setup.num_classes) == (224, 1000)
    assert "'mindcv.ckpt' records no training config: using ghostnet_050's default preprocessing" in setup.notes[0]
    with pytest.raises(mindghost.errors.UsageError, match="--model is needed"):
        resolve_inference_setup(None, source="mindcv.ckpt")


def test_recorded_class_names_must_match_the_class_count():
    meta = dict(training_meta(), class_names=["cat", "dog", "fox"])
    assert resolve_inference_setup(meta).class_names == ("cat", "dog", "fox")
    with pytest.raises(CheckpointError, match="lists 2 names but the model has 3 classes"):
        resolve_inference_setup(dict(training_meta(), class_names=["cat", "dog"]))


def test_run_directory_is_refused_naming_the_files_inside(tmp_path, ckpt_32):
    run = tmp_path / "runs" / "ghostnet_050-1"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("epoch_0001.ckpt", "last.ckpt", "best.ckpt"):
        os.link(ckpt_32, run / "checkpoints" / name)
    from mindghost.tools.export import main as export_main

    with pytest.raises(CheckpointError) as e:
        export_main(["--model", "ghostnet_050", "--ckpt_path", str(run), "--output_dir", str(tmp_path / "out")])
    message = str(e.value)
    assert f"--ckpt_path '{run}' is a run directory, not a checkpoint file" in message
    lines = message.splitlines()
    assert lines[1].strip() == str(run / "checkpoints" / "best.ckpt")
    assert lines[2].strip() == str(run / "checkpoints" / "last.ckpt")
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_checkpoint_of_another_model(tmp_path, ckpt_32):
    from mindghost.tools.export import main as export_main

    with pytest.raises(CheckpointError, match=r"was trained as ghostnet_050, not ghostnet_100; pass --model "
                                              r"ghostnet_050"):
        export_main(["--model", "ghostnet_100", "--ckpt_path", ckpt_32, "--output_dir", str(tmp_path)])


def test_export_names_model_when_the_checkpoint_records_none(tmp_path):
    import mindspore as ms

    from mindghost.tools.export import main as export_main

    plain = str(tmp_path / "plain.ckpt")
    ms.save_checkpoint(mindghost.create_model("ghostnet_050", num_classes=3), plain)  # no meta, like MindCV's
    with pytest.raises(mindghost.errors.UsageError, match="--model is needed"):
        export_main(["--ckpt_path", plain, "--output_dir", str(tmp_path)])


def test_export_json_lists_the_checkpoints_preprocessing(tmp_path, ckpt_32, capsys):
    from mindghost.tools.export import main as export_main

    # #17.2: no --model, the checkpoint records it
    rc = export_main(["--ckpt_path", ckpt_32, "--format", "mindir", "--output_dir", str(tmp_path), "--name", "m"])
    assert rc == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["model"] == "ghostnet_050"
    pre = report["preprocessing"]
    assert pre["image_size"] == 32 and pre["crop_pct"] == 1.0 and pre["resize_size"] == 32
    assert pre["mean"] == MEAN and pre["std"] == STD
    assert report["input_shape"] == [1, 3, 32, 32] and report["output_shape"] == [1, 3]
    assert report["num_classes"] == 3
    assert "using the checkpoint's recorded image_size 32" in capsys.readouterr().out


def test_benchmark_takes_size_and_classes_from_the_checkpoint(ckpt_32):
    from mindghost.tools.benchmark import build_parser, check_args

    parser = build_parser()
    args = parser.parse_args(["--model", "ghostnet_050", "--ckpt_path", ckpt_32])
    check_args(parser, args)
    assert (args.image_size, args.num_classes, args.in_channels) == (32, 3, 3)
    args = parser.parse_args(["--model", "ghostnet_050"])
    check_args(parser, args)
    assert (args.image_size, args.num_classes) == (224, 1000)  # no checkpoint: the model's default cfg


def test_redundancy_uses_the_checkpoints_preprocessing(tmp_path, ckpt_32):
    pytest.importorskip("matplotlib", reason="optional extra: pip install matplotlib")
    import numpy as np
    from PIL import Image

    from mindghost.tools.redundancy import main

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    rc = main(["--model", "ghostnet_050", "--ckpt_path", ckpt_32, "--image", str(tmp_path / "a.png"),
               "--layer", "conv_stem", "--out", str(tmp_path / "r.png")])
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    pre = report["models"][0]["preprocessing"]
    assert pre["image_size"] == 32 and pre["mean"] == MEAN and pre["std"] == STD
    assert report["models"][0]["map_shape"][1:] == [16, 16]  # conv_stem has stride 2: 32 px in


def test_read_meta_reads_only_the_meta(ckpt_32):
    meta = read_meta(ckpt_32)
    assert meta["model"] == "ghostnet_050" and meta["config"]["image_size"] == 32


def test_read_meta_of_a_checkpoint_without_meta_is_none(tmp_path):
    import mindspore as ms

    ms.save_checkpoint(mindghost.create_model("ghostnet_050", num_classes=3), str(tmp_path / "plain.ckpt"))
    assert read_meta(str(tmp_path / "plain.ckpt")) is None
