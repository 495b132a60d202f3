"""BN folding and export: MINDIR reloaded by MindSpore and ONNX run by onnxruntime match the MindSpore forward.

The models carry the parity recipe's weights (tests/parity_recipe.py), which set every tensor: logits of O(1)
(std 1-2) and non-trivial BN statistics in every layer, so a wrong fold or a lossy export moves the logits far
beyond the tolerance. (Random init gives logits of ~1e-2 and identity BNs.) Tolerance: max |diff| / max |logit|
<= 1e-5, the export's own --rtol default; measured <= 1e-6 here (float32 rounding of the folded convolutions),
an absolute error of a few 1e-6 on logits of a few units.
"""
import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from mindspore import Tensor

import mindghost
from mindghost.models import check_fusion, count_batchnorms, fuse_bn, load_state_dict
from mindghost.tools.export import main as export_main

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # parity_recipe.py, whatever pytest's import mode
import parity_recipe  # noqa: E402

RECIPE_SEED = 1
RTOL = 1e-5


def _recipe_model(num_classes: int = 10):
    """ghostnet_050 with the parity recipe's weights; checks that its logits are O(1), not degenerate."""
    model = mindghost.create_model("ghostnet_050", num_classes=num_classes)
    shapes = ((name, p.shape) for name, p in model.parameters_dict().items())
    load_state_dict(model, parity_recipe.make_state(shapes, RECIPE_SEED), source="parity recipe")
    model.set_train(False)
    logits = model(Tensor(parity_recipe.make_input((2, 3, 32, 32), RECIPE_SEED))).asnumpy()
    assert logits.std() > 0.5, f"degenerate logits (std {logits.std():.3g}): the parity checks would prove nothing"
    return model


def test_fuse_bn_is_exact_and_removes_every_bn():
    model = _recipe_model()
    fused = fuse_bn(model, input_shape=(1, 3, 32, 32))
    assert count_batchnorms(model) == 80 and count_batchnorms(fused) == 0
    assert len(fused.fused_pairs) == 80
    diff = check_fusion(model, fused, input_shape=(2, 3, 32, 32))
    assert diff["max_rel"] < 5e-6, diff  # folding alone: measured <= 1e-6
    assert count_batchnorms(model) == 80  # the original is untouched


def test_export_mindir_and_onnx_match_mindspore(tmp_path):
    model = _recipe_model()
    ckpt = str(tmp_path / "g.ckpt")
    import mindspore as ms

    ms.save_checkpoint(model, ckpt)
    formats = ["mindir", "onnx"]
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        formats = ["mindir"]
    rc = export_main(["--model", "ghostnet_050", "--num_classes", "10", "--ckpt_path", ckpt, "--format", *formats,
                      "--img_size", "64", "--batch", "2", "--out_dir", str(tmp_path / "out")])
    assert rc == 0
    report = json.load(open(tmp_path / "out" / "ghostnet_050_64_b2.json"))
    assert report["bn_left"] == 0 and report["output_shape"] == [2, 10]
    for fmt in formats:
        assert os.path.isfile(report["files"][fmt])
        assert report["parity"][fmt]["max_rel"] <= RTOL, (fmt, report["parity"][fmt])
    if "onnx" not in formats:
        pytest.importorskip("onnxruntime", reason="onnxruntime not installed: ONNX parity not checked")


def test_onnx_parity_with_onnxruntime(tmp_path, monkeypatch):
    """Explicit, visible skip when the optional extra is absent (CI installs it)."""
    pytest.importorskip("onnxruntime", reason="optional extra: pip install onnxruntime")
    from mindghost.models import max_diff
    from mindghost.tools.export import ONNX_MISSING_NOTE, onnx_opset, onnx_opset_record, run_onnx

    model = _recipe_model()
    fused = fuse_bn(model, input_shape=(1, 3, 32, 32))
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    import mindspore as ms

    ms.export(fused, Tensor(x), file_name=str(tmp_path / "m"), file_format="ONNX")  # a plain model: no special step
    path = str(tmp_path / "m.onnx")
    if importlib.util.find_spec("onnx") is not None:  # requirements-dev.txt installs it
        assert onnx_opset(path) >= 9 and onnx_opset_record(path) == {"onnx_opset": onnx_opset(path)}
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError: no opset line, a note instead
        assert onnx_opset(path) is None
        assert onnx_opset_record(path) == {"onnx_opset": None, "onnx_opset_note": ONNX_MISSING_NOTE}
    diff = max_diff(model(Tensor(x)).asnumpy(), run_onnx(str(tmp_path / "m.onnx"), x))
    assert diff["max_rel"] <= RTOL, diff


def test_export_refuses_random_weights_unless_asked(tmp_path):
    from mindghost.errors import UsageError

    with pytest.raises(UsageError) as e:
        export_main(["--model", "ghostnet_050", "--out_dir", str(tmp_path)])
    assert "random_weights" in str(e.value)
    assert not os.listdir(tmp_path)


def test_air_needs_ascend(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export_main(["--model", "ghostnet_050", "--random_weights", "--format", "air", "--out_dir", str(tmp_path),
                     "--device", "CPU"])
    assert e.value.code == 2
    assert "Ascend" in capsys.readouterr().err
