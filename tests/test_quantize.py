"""INT8 post-training quantization (issue #20 item 1): the search space, the node groups found in a Ghost export,
that a group kept fp32 really stays fp32, and the shrunk command end to end (tiny model, a few calibration images)."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")

from mindghost.deploy.quantize import GROUPS, QuantConfig, node_groups, quantize, search_space  # noqa: E402


def test_search_space_stages():
    full1 = search_space("full", 1)
    assert len(full1) == 6 and {c.method for c in full1} == {"MinMax", "Entropy", "Percentile"}
    assert {c.per_channel for c in full1} == {False, True} and all(not c.fp32 for c in full1)
    assert [c.method for c in search_space("quick", 1)] == ["MinMax", "MinMax"]
    assert search_space("none", 1) == [QuantConfig(False, "MinMax")] and search_space("none", 2, full1[0]) == []
    best = QuantConfig(True, "Entropy")
    full2 = search_space("full", 2, best)
    assert [c.fp32 for c in full2] == [(g,) for g in GROUPS] + [GROUPS]
    assert all(c.per_channel and c.method == "Entropy" for c in full2)
    assert [c.fp32 for c in search_space("quick", 2, best)] == [GROUPS]
    assert [c.fp32 for c in search_space("full", 2, best, present=("depthwise", "stem"))] == \
        [("depthwise",), ("stem",), ("depthwise", "stem")]
    # stage 3: the groups that helped one by one, together, unless that is a single group or all of them
    assert [c.fp32 for c in search_space("full", 3, best, helped=("stem", "depthwise"))] == [("depthwise", "stem")]
    assert search_space("full", 3, best, helped=("stem",)) == []
    assert search_space("full", 3, best, helped=GROUPS) == []


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """ghostnet_050 (3 classes, random weights), BN folded, exported at 32 px with a symbolic batch."""
    import mindspore as ms

    import mindghost
    from mindghost.deploy.onnx import make_batch_dynamic
    from mindghost.models import fuse_bn
    from mindghost.tools.export import export_model

    d = tmp_path_factory.mktemp("quant")
    ms.set_context(mode=ms.GRAPH_MODE)
    net = mindghost.create_model("ghostnet_050", num_classes=3)
    net.set_train(False)
    net = fuse_bn(net, input_shape=(1, 3, 32, 32))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    fixed = export_model(net, x[:1], str(d / "tiny_b1"), "onnx")
    path = str(d / "tiny.onnx")
    make_batch_dynamic(fixed, path)
    reference = np.concatenate([net(ms.Tensor(x[i:i + 1])).asnumpy() for i in range(2)])
    ms.set_context(mode=ms.PYNATIVE_MODE)
    return path, x, reference


@pytest.mark.slow
def test_dynamic_batch_matches_mindspore(tiny_onnx):
    from mindghost.deploy.onnx import OnnxModel

    path, x, reference = tiny_onnx
    model = OnnxModel(path)
    assert model.batch is None  # symbolic
    np.testing.assert_allclose(model(x), reference, rtol=1e-4, atol=1e-5)
    opset = next(o.version for o in onnx.load(path).opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 13  # per-channel DequantizeLinear needs the axis attribute


@pytest.mark.slow
def test_node_groups_of_a_ghost_export(tiny_onnx):
    groups = node_groups(onnx.load(tiny_onnx[0]))
    assert len(groups["stem"]) == 1 and len(groups["classifier"]) == 1
    assert len(groups["depthwise"]) >= 16  # one cheap operation per Ghost module, and the stride-2 depthwise convs
    # ghostnet_050 has 7 squeeze-excite gates, each Add(+3) -> Clip -> Div(6) -> Mul
    assert len(groups["se_gate"]) == 4 * 7


@pytest.mark.slow
def test_fp32_group_stays_fp32(tiny_onnx, tmp_path):
    path, x, reference = tiny_onnx
    model = onnx.load(path)
    groups = node_groups(model)
    calibration = np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32)
    out = quantize(path, str(tmp_path / "int8.onnx"), QuantConfig(True, "MinMax", ("depthwise",)), calibration,
                   groups)
    q = onnx.load(out)
    producer = {o: n for n in q.graph.node for o in n.output}
    dw = set(groups["depthwise"])
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    weight_is_dq = {n.name: producer.get(n.input[1]) is not None and producer[n.input[1]].op_type ==
                    "DequantizeLinear" for n in convs}
    assert dw and all(not weight_is_dq[name] for name in dw)  # kept fp32
    others = [name for name in weight_is_dq if name not in dw]
    assert others and all(weight_is_dq[name] for name in others)  # everything else INT8


@pytest.mark.slow
def test_quantize_command_shrunk(tmp_path):
    """The CI run: tiny model, a few calibration images, quick search; every output and number is there."""
    from _tiny_data import write_tiny_imagefolder
    from test_inference import write_checkpoint

    from mindghost.tools.quantize import main

    data = write_tiny_imagefolder(str(tmp_path / "data"), train_per_class=6, val_per_class=3)
    ckpt = write_checkpoint(tmp_path / "tiny.ckpt", image_size=32, crop_pct=1.0)
    out = tmp_path / "q"
    assert main(["--ckpt_path", ckpt, "--data_dir", data, "--calibration_samples", "8", "--holdout_samples", "6",
                 "--search", "quick", "--output_dir", str(out), "--repeats", "2", "--batch_size", "4"]) == 0
    report = json.loads((out / "ghostnet_050_32_quantize.json").read_text())
    assert [r["name"] for r in report["results"]] == ["fp32", "int8"]
    assert all(r["num_samples"] == 9 for r in report["results"])
    assert len(report["quantization"]["candidates"]) == 3  # quick: per-tensor, per-channel, then all groups fp32
    assert report["quantization"]["chosen"]["name"] in {c["config"]["name"] for c in report["quantization"][
        "candidates"]}
    int8 = json.loads((out / "ghostnet_050_32_int8.json").read_text())
    assert int8["preprocessing"]["image_size"] == 32 and int8["quantization"]["chosen"]
    assert os.path.getsize(out / "ghostnet_050_32_int8.onnx") < os.path.getsize(out / "ghostnet_050_32_fp32.onnx")
    # a second run without --overwrite refuses to replace the files
    from mindghost.errors import UsageError

    with pytest.raises(UsageError, match="overwrite"):
        main(["--ckpt_path", ckpt, "--data_dir", data, "--output_dir", str(out)])


@pytest.mark.slow
@pytest.mark.parametrize("name,op", [("ghost_resnet50_s4", "Reshape"), ("ghostnetv3_050", "Resize")])
def test_dynamic_batch_rewrites_ops_that_bake_the_batch(tmp_path, name, op):
    """Two ops of MindSpore's ONNX export carry the exported batch 1 in a constant. Ghost-ResNet-50's classifier
    exports an ExpandDims as a Reshape to (1, C, 1): with only the inputs made symbolic, batch 8 failed in
    onnxruntime ('The input tensor cannot be reshaped to the requested shape. Input shape:{8,500}, requested
    shape:{1,500,1}'), which stopped `benchmark --models 'ghost*'` and quantize for that model. GhostNetV3's
    ResizeNearestNeighbor exports a Resize to sizes (1, C, H, W): onnxruntime returned batch 1 and the attention
    of sample 0 was applied to every sample (logits off by ~3e-4, silently). The rewritten graph runs any batch
    and equals batch-1 runs."""
    import mindspore as ms

    import mindghost
    from mindghost.deploy.onnx import OnnxModel, make_batch_dynamic
    from mindghost.models import fuse_bn
    from mindghost.tools.export import export_model

    ms.set_context(mode=ms.GRAPH_MODE)
    net = mindghost.models.reparameterize_model(mindghost.create_model(name, num_classes=3))
    net.set_train(False)
    net = fuse_bn(net, input_shape=(1, 3, 64, 64))
    x = np.random.default_rng(1).standard_normal((3, 3, 64, 64)).astype(np.float32)
    fixed = export_model(net, x[:1], str(tmp_path / "b1"), "onnx")
    assert any(n.op_type == op for n in onnx.load(fixed).graph.node)
    path = str(tmp_path / "dynamic.onnx")
    make_batch_dynamic(fixed, path)
    reference = np.concatenate([net(ms.Tensor(x[i:i + 1])).asnumpy() for i in range(3)])
    ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_allclose(OnnxModel(path)(x), reference, rtol=1e-4, atol=1e-5)
