"""Exported ONNX files are first-class (issue #20 item 2): validate.py evaluates a `.onnx` file with its export JSON
like the checkpoint it came from (same preprocessing, same numbers), and predict takes `--onnx` as it takes MINDIR."""
import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from _tiny_data import load_entry_point, write_tiny_imagefolder  # noqa: E402
from test_inference import MEAN, STD, write_checkpoint  # noqa: E402

from mindghost.errors import UsageError  # noqa: E402

COMMON = ["--device", "CPU", "--progress", "False", "--batch_size", "4"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 32-px checkpoint with its own mean/std, its fp32 ONNX export (fixed batch 1) and a tiny dataset."""
    from mindghost.tools.export import main as export_main

    root = tmp_path_factory.mktemp("onnxval")
    data = write_tiny_imagefolder(str(root / "data"))  # 3 classes x 5 val images
    ckpt = write_checkpoint(root / "tiny.ckpt", image_size=32, mean=MEAN, std=STD, crop_pct=1.0)
    assert export_main(["--ckpt_path", ckpt, "--model", "ghostnet_050", "--format", "onnx",
                        "--out_dir", str(root / "exp"), "--name", "tiny"]) == 0
    return {"data": data, "ckpt": ckpt, "onnx": str(root / "exp" / "tiny.onnx"), "root": root}


@pytest.mark.slow
def test_checkpoint_and_its_onnx_give_the_same_numbers(exported):
    validate = load_entry_point("validate")
    base = COMMON + ["--data_dir", exported["data"]]
    ours = validate.main(base + ["--ckpt_path", exported["ckpt"], "--mode", "pynative",
                                 "--output_dir", str(exported["root"] / "v_ckpt")])
    onnx = validate.main(base + ["--ckpt_path", exported["onnx"], "--output_dir", str(exported["root"] / "v_onnx")])
    assert onnx["num_samples"] == ours["num_samples"] == 15
    assert onnx["top1"] == ours["top1"] and onnx["top5"] == ours["top5"]
    assert abs(onnx["loss"] - ours["loss"]) < 1e-4
    assert onnx["image_size"] == 32 and onnx["format"] == "onnx"  # the export JSON's recorded size, not 224
    written = json.loads((exported["root"] / "v_onnx" / "validate.json").read_text())
    assert written["top1"] == onnx["top1"]


@pytest.mark.slow
def test_onnx_without_its_json_is_refused(exported, tmp_path):
    import shutil

    validate = load_entry_point("validate")
    lonely = str(tmp_path / "lonely.onnx")
    shutil.copy(exported["onnx"], lonely)
    with pytest.raises(UsageError, match="export JSON"):
        validate.main(COMMON + ["--data_dir", exported["data"], "--ckpt_path", lonely])


@pytest.mark.slow
def test_predict_takes_onnx_like_mindir(exported, tmp_path):
    from mindghost.tools.predict import main as predict_main

    images = exported["data"] + "/val"
    out_ckpt, out_onnx = str(tmp_path / "c.json"), str(tmp_path / "o.json")
    assert predict_main([images, "--ckpt_path", exported["ckpt"], "--mode", "pynative", "--out", out_ckpt]) == 0
    assert predict_main([images, "--onnx", exported["onnx"], "--out", out_onnx]) == 0
    a, b = json.load(open(out_ckpt)), json.load(open(out_onnx))
    assert b["preprocessing"] == a["preprocessing"]
    assert [r["top_k"][0]["class"] for r in a["predictions"]] == [r["top_k"][0]["class"] for r in b["predictions"]]
    pa = np.array([[t["prob"] for t in r["top_k"]] for r in a["predictions"]])
    pb = np.array([[t["prob"] for t in r["top_k"]] for r in b["predictions"]])
    np.testing.assert_allclose(pa, pb, atol=1e-4)
