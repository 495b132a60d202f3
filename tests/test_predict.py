"""predict: top-k with the checkpoint's own preprocessing, equal to the model's logits on validation's eval
pipeline; unreadable images named while the rest go on; JSON/CSV output; MINDIR files (issue #13 item 4)."""
import csv
import json
import os

import numpy as np
import parity_recipe
import pytest
from _tiny_data import write_tiny_imagefolder

from mindspore import Tensor

import mindghost
from mindghost.models import load_state_dict
from mindghost.tools.predict import main as predict_main
from mindghost.training.config import build_config
from mindghost.weights import atomic_save

NAMES = ["red", "green", "blue"]
MEAN, STD = [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-class ImageFolder of 40x40 images and a ghostnet_050 checkpoint 'trained' at 32 px with its own
    mean/std and class names; the weights are the parity recipe's (O(1) logits, no near-ties)."""
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_imagefolder(str(root / "data"), classes=3, train_per_class=1, val_per_class=3, size=40)
    model = mindghost.create_model("ghostnet_050", num_classes=3)
    shapes = ((name, p.shape) for name, p in model.parameters_dict().items())
    load_state_dict(model, parity_recipe.make_state(shapes, 1), source="parity recipe")
    cfg = build_config(dict(model="ghostnet_050", num_classes=3, image_size=32, mean=MEAN, std=STD))
    meta = {"format": 1, "model": "ghostnet_050", "num_classes": 3, "config": cfg.to_dict(), "class_names": NAMES}
    atomic_save(model, str(root / "best.ckpt"), meta)
    return root, model, cfg


@pytest.mark.stack
def test_predict_equals_the_models_logits_on_the_eval_pipeline(tiny, tmp_path, capsys):
    root, model, cfg = tiny
    from mindghost.data import build_eval_loader, eval_preprocessing

    out = tmp_path / "p.json"
    rc = predict_main([str(root / "data" / "val"), "--ckpt_path", str(root / "best.ckpt"), "--top_k", "3",
                       "--batch_size", "4", "--mode", "pynative", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["preprocessing"]["image_size"] == 32 and report["preprocessing"]["mean"] == MEAN

    # validate's eval loader over the same folder (file order: class folders, then names, as find_images)
    pre = eval_preprocessing(build_config(dict(cfg.to_dict(), data_dir=str(root / "data"), num_workers=1)),
                             model.default_cfg)
    loader = build_eval_loader(build_config(dict(cfg.to_dict(), data_dir=str(root / "data"), num_workers=1)),
                               pre, batch_size=9)
    images, labels = next(loader.create_tuple_iterator(output_numpy=True))
    model.set_train(False)
    logits = model(Tensor(images)).asnumpy()
    rows = report["predictions"]
    assert [r["file"] for r in rows] == sorted(r["file"] for r in rows) and len(rows) == 9
    assert [r["top_k"][0]["class"] for r in rows] == list(logits.argmax(1))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    got = np.array([[t["prob"] for t in sorted(r["top_k"], key=lambda t: t["class"])] for r in rows])
    np.testing.assert_allclose(got, probs, rtol=1e-4, atol=1e-6)
    assert [r["top_k"][0]["name"] for r in rows] == [NAMES[c] for c in logits.argmax(1)]
    table = capsys.readouterr().out
    assert "using the checkpoint's recorded image_size 32" in table
    assert NAMES[int(logits[0].argmax())] in table.splitlines()[-9]


def test_corrupt_image_is_named_and_the_rest_predicted(tiny, tmp_path, capsys):
    root, _, _ = tiny
    good = root / "data" / "val" / "class_0" / "0.png"
    bad = tmp_path / "broken.png"
    bad.write_bytes(good.read_bytes()[:60])  # a PNG cut off after its header
    out = tmp_path / "p.csv"
    rc = predict_main([str(bad), str(good), "--ckpt_path", str(root / "best.ckpt"), "--top_k", "2",
                       "--mode", "pynative", "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: cannot read it as an image" in err
    assert "1 of 2 image(s) could not be read" in err
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["file"], r["rank"]) for r in rows] == [(str(good), "1"), (str(good), "2"), (str(bad), "")]
    assert rows[0]["class_name"] in NAMES and 0 < float(rows[0]["probability"]) <= 1
    assert "cannot read it as an image" in rows[2]["error"]


def test_class_names_file_for_a_checkpoint_without_names(tiny, tmp_path, capsys):
    root, model, _ = tiny
    import mindspore as ms

    ms.save_checkpoint(model, str(tmp_path / "plain.ckpt"))  # no meta: a MindCV-style file
    (tmp_path / "names.txt").write_text("cat\ndog\nfox\n")
    img = str(root / "data" / "val" / "class_1" / "0.png")
    rc = predict_main([img, "--ckpt_path", str(tmp_path / "plain.ckpt"), "--model", "ghostnet_050",
                       "--num_classes", "3", "--image_size", "32", "--class_names", str(tmp_path / "names.txt"),
                       "--mode", "pynative", "--out", str(tmp_path / "p.json")])
    assert rc == 0
    top = json.loads((tmp_path / "p.json").read_text())["predictions"][0]["top_k"]
    assert {t["name"] for t in top} == {"cat", "dog", "fox"}
    assert "records no training config" in capsys.readouterr().out
    (tmp_path / "two.json").write_text('["cat", "dog"]')
    with pytest.raises(mindghost.errors.UsageError, match="--class_names lists 2 names but the model has 3"):
        predict_main([img, "--ckpt_path", str(root / "best.ckpt"), "--class_names", str(tmp_path / "two.json")])


def test_inputs_that_match_nothing_are_refused(tiny, tmp_path):
    root, _, _ = tiny
    with pytest.raises(mindghost.errors.UsageError, match="matches no files"):
        predict_main([str(tmp_path / "*.jpg"), "--ckpt_path", str(root / "best.ckpt")])
    with pytest.raises(mindghost.errors.UsageError, match="no images"):
        predict_main([str(tmp_path), "--ckpt_path", str(root / "best.ckpt")])


@pytest.mark.slow
def test_mindir_uses_the_export_json(tiny, tmp_path, capsys):
    root, _, _ = tiny
    from mindghost.tools.export import main as export_main

    assert export_main(["--model", "ghostnet_050", "--ckpt_path", str(root / "best.ckpt"), "--format", "mindir",
                        "--batch_size", "4", "--output_dir", str(tmp_path), "--name", "m"]) == 0
    val = str(root / "data" / "val")
    assert predict_main([val, "--mindir", str(tmp_path / "m.mindir"), "--top_k", "1",
                         "--out", str(tmp_path / "mindir.json")]) == 0
    assert "using the export JSON's recorded image_size 32" in capsys.readouterr().out
    assert predict_main([val, "--ckpt_path", str(root / "best.ckpt"), "--top_k", "1", "--mode", "pynative",
                         "--out", str(tmp_path / "ckpt.json")]) == 0
    from_mindir = json.loads((tmp_path / "mindir.json").read_text())["predictions"]
    from_ckpt = json.loads((tmp_path / "ckpt.json").read_text())["predictions"]
    assert [r["top_k"][0]["name"] for r in from_mindir] == [r["top_k"][0]["name"] for r in from_ckpt]
    np.testing.assert_allclose([r["top_k"][0]["prob"] for r in from_mindir],
                               [r["top_k"][0]["prob"] for r in from_ckpt], rtol=1e-4)


@pytest.mark.slow
def test_predict_and_validate_run_the_same_model_the_same_way(tmp_path):
    """#17.2: a GhostNetV3 checkpoint in its train form gives the same class probabilities through predict as
    through validate.py's build path (both: V3 fused, BN folded on CPU, the checkpoint's preprocessing)."""
    from _tiny_data import load_entry_point

    import mindspore as ms

    data = write_tiny_imagefolder(str(tmp_path / "data"), classes=3, train_per_class=1, val_per_class=1, size=72)
    model = mindghost.create_model("ghostnetv3_050", num_classes=3)
    rng = np.random.default_rng(0)
    ranges = {"moving_mean": (-0.2, 0.2), "beta": (-0.2, 0.2), "moving_variance": (0.5, 1.5), "gamma": (0.1, 0.4)}
    for p in model.get_parameters():  # non-trivial BN statistics, so that a skipped fusion or fold shows
        kind = p.name.rsplit(".", 1)[-1]
        if kind in ranges:
            p.set_data(ms.Tensor(rng.uniform(*ranges[kind], p.shape).astype(np.float32)))
    cfg = build_config(dict(model="ghostnetv3_050", num_classes=3, image_size=64, mean=MEAN, std=STD))
    ckpt = str(tmp_path / "v3.ckpt")
    atomic_save(model, ckpt, {"format": 1, "model": "ghostnetv3_050", "num_classes": 3, "config": cfg.to_dict()})

    out = tmp_path / "p.json"
    assert predict_main([os.path.join(data, "val"), "--ckpt_path", ckpt, "--top_k", "3", "--batch_size", "3",
                         "--mode", "pynative", "--device", "CPU", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["reparameterized"] and report["bn_folded"] > 0
    predicted = np.array([[t["prob"] for t in sorted(r["top_k"], key=lambda t: t["class"])]
                          for r in report["predictions"]])

    validate = load_entry_point("validate")
    vcfg, given, _ = validate.parse_args(["--ckpt_path", ckpt, "--data_dir", data, "--device", "CPU",
                                       "--batch_size", "3", "--num_workers", "1"])
    source = validate.resolve_weights(vcfg, given)
    vcfg = validate.dataclasses.replace(vcfg, model=source.setup.model, num_classes=3, in_channels=3)
    loader, _ = validate.build_data(vcfg, source.setup)
    built = validate.build_model(vcfg, source, "CPU")
    assert built.reparameterized and built.bn_folded == report["bn_folded"]
    images, _ = next(loader.create_tuple_iterator(output_numpy=True))
    logits = built.model(Tensor(images)).asnumpy().astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(predicted, probs, rtol=1e-4, atol=1e-6)
