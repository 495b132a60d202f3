"""BN folding and export: MINDIR reloaded by MindSpore and ONNX run by onnxruntime match the MindSpore forward."""
import json
import os

import numpy as np
import pytest

from mindspore import Tensor, nn

import mindghost
from mindghost.tools.export import main as export_main
from mindghost.tools.fuse import check_fusion, count_batchnorms, fuse_bn


def _randomize_bn(model, seed=0):
    """Non-trivial BN statistics, so that folding is actually exercised (fresh BN is the identity)."""
    rng = np.random.default_rng(seed)
    for _, cell in model.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            n = cell.gamma.shape[0]
            cell.gamma.set_data(Tensor(rng.uniform(0.5, 1.5, n).astype(np.float32)))
            cell.beta.set_data(Tensor(rng.normal(0, 0.1, n).astype(np.float32)))
            cell.moving_mean.set_data(Tensor(rng.normal(0, 0.1, n).astype(np.float32)))
            cell.moving_variance.set_data(Tensor(rng.uniform(0.5, 2.0, n).astype(np.float32)))


def test_fuse_bn_is_exact_and_removes_every_bn():
    model = mindghost.create_model("ghostnet_050", num_classes=10)
    _randomize_bn(model)
    fused = fuse_bn(model, input_shape=(1, 3, 32, 32))
    assert count_batchnorms(model) == 80 and count_batchnorms(fused) == 0
    assert len(fused.fused_pairs) == 80
    diff = check_fusion(model, fused, input_shape=(2, 3, 32, 32))
    assert diff["max_rel"] < 5e-6, diff
    assert count_batchnorms(model) == 80  # the original is untouched


def test_export_mindir_and_onnx_match_mindspore(tmp_path):
    model = mindghost.create_model("ghostnet_050", num_classes=10)
    _randomize_bn(model)
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
        assert report["parity"][fmt]["max_rel"] <= 1e-5
    if "onnx" not in formats:
        pytest.importorskip("onnxruntime", reason="onnxruntime not installed: ONNX parity not checked")


def test_onnx_parity_with_onnxruntime(tmp_path):
    """Explicit, visible skip when the optional extra is absent (CI installs it)."""
    pytest.importorskip("onnxruntime", reason="optional extra: pip install onnxruntime")
    from mindghost.tools.export import onnx_opset, run_onnx
    from mindghost.tools.fuse import max_diff

    model = mindghost.create_model("ghostnet_050", num_classes=10)
    _randomize_bn(model)
    model.set_train(False)
    fused = fuse_bn(model, input_shape=(1, 3, 32, 32))
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    import mindspore as ms

    ms.export(fused, Tensor(x), file_name=str(tmp_path / "m"), file_format="ONNX")
    assert onnx_opset(str(tmp_path / "m.onnx")) >= 9
    diff = max_diff(model(Tensor(x)).asnumpy(), run_onnx(str(tmp_path / "m.onnx"), x))
    assert diff["max_rel"] <= 1e-5, diff


def test_export_refuses_random_weights_unless_asked(tmp_path):
    with pytest.raises(SystemExit) as e:
        export_main(["--model", "ghostnet_050", "--out_dir", str(tmp_path)])
    assert "random_weights" in str(e.value)
    assert not os.listdir(tmp_path)


def test_air_needs_ascend(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export_main(["--model", "ghostnet_050", "--random_weights", "--format", "air", "--out_dir", str(tmp_path),
                     "--device", "CPU"])
    assert e.value.code == 2
    assert "Ascend" in capsys.readouterr().err
