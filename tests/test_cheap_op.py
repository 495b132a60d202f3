"""The Ghost module's cheap operation (`cheap_op`): the default is today's model exactly; every alternative builds,
counts, folds, takes the CPU pass, exports and serves as a backbone; recipes set it and checkpoints record it."""
import json
import os

import numpy as np
import pytest
from _tiny_data import TINY_TRAIN_ARGS, load_entry_point, write_tiny_imagefolder

import mindspore as ms

from mindghost import create_model
from mindghost.models import model_kwargs_choices, model_kwargs_problems
from mindghost.models.layers import CHEAP_OPS, ChannelAffine, MixedDepthwise, haar_filters, make_cheap_operation
from mindghost.tools.profile import count_macs, count_params

ALTERNATIVES = [op for op in CHEAP_OPS if op != "dw"]


def _x(shape=(2, 3, 64, 64), seed=0):
    return ms.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _eval(model, x):
    model.set_train(False)
    return model(x).asnumpy()


def _state(model):
    return {p.name: p.asnumpy() for p in model.get_parameters()}


def test_default_is_dw_and_unchanged():
    """`cheap_op='dw'` is the default: same parameter names, values (same seed) and logits as not passing it."""
    ms.set_seed(3)
    plain = create_model("ghostnet_050", num_classes=10)
    ms.set_seed(3)
    dw = create_model("ghostnet_050", num_classes=10, cheap_op="dw")
    a, b = _state(plain), _state(dw)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    x = _x()
    np.testing.assert_array_equal(_eval(plain, x), _eval(dw, x))
    assert "blocks.0.0.ghost1.cheap_operation.0.weight" in a  # MindCV's / PyTorch's names stay


@pytest.mark.parametrize("op", ALTERNATIVES)
@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnetv2_100"])
def test_alternatives_build_and_run(name, op):
    model = create_model(name, num_classes=10, cheap_op=op)
    out = _eval(model, _x())
    assert out.shape == (2, 10) and np.isfinite(out).all()
    dw = create_model(name, num_classes=10)
    n, n_dw = count_params(model)["trainable"], count_params(dw)["trainable"]
    macs, macs_dw = count_macs(model, (3, 224, 224)), count_macs(dw, (3, 224, 224))
    if op == "mixed":  # kernels 3/5/7 instead of 3 everywhere: more parameters and MACs than d = 3
        assert n > n_dw and macs > macs_dw
    else:  # affine: 2 values per ghost map; haar: BN's 2 per map, its filters are fixed (not trainable)
        assert n < n_dw and macs <= macs_dw


def test_affine_is_a_per_channel_scale_and_shift():
    cell = ChannelAffine(channels=3, multiplier=2)
    w = np.arange(1, 7, dtype=np.float32).reshape(1, 6, 1, 1)
    cell.weight.set_data(ms.Tensor(w))
    cell.bias.set_data(ms.Tensor(-w))
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    out = cell(ms.Tensor(x)).asnumpy()
    expected = np.repeat(x, 2, axis=1) * w - w  # ghost map j from intrinsic map j // 2, as a depthwise conv
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_mixed_splits_channels_with_kernels_3_5_7():
    cell = MixedDepthwise(channels=8, multiplier=2)
    assert cell.splits == (3, 3, 2)
    assert [seq[0].kernel_size for seq in cell.convs] == [(3, 3), (5, 5), (7, 7)]
    assert [seq[0].out_channels for seq in cell.convs] == [6, 6, 4]
    out = cell(_x((1, 8, 9, 9))).asnumpy()
    assert out.shape == (1, 16, 9, 9)
    assert MixedDepthwise(channels=2, multiplier=1).splits == (1, 1)  # fewer channels than kernels


def test_haar_filters_are_fixed_and_orthonormal():
    f = haar_filters(4)
    basis = f[:, 1:, 1:].reshape(4, 4)
    np.testing.assert_allclose(basis @ basis.T, np.eye(4), atol=1e-7)
    assert np.array_equal(haar_filters(6)[4], f[0])  # cycles past four
    seq = make_cheap_operation(4, 8, cheap_op="haar")
    conv = seq[0]
    assert not conv.weight.requires_grad
    np.testing.assert_array_equal(conv.weight.asnumpy()[1, 0], f[1])  # channel 0's second ghost map
    for name in ("ghostnet_050", "ghostnetv2_100"):  # neither family's init touches the filters
        model = create_model(name, num_classes=10, cheap_op="haar")
        w = model.blocks[0][0].ghost1.cheap_operation[0].weight
        assert not w.requires_grad and set(np.unique(np.abs(w.asnumpy()))) == {0.0, 0.5}


def test_unknown_cheap_op_names_the_choices():
    with pytest.raises(ValueError, match=r"cheap_op must be one of \['dw', 'affine', 'mixed', 'haar'\]"):
        create_model("ghostnet_050", cheap_op="wavelet")


def test_ghostnetv3_takes_dw_only():
    create_model("ghostnetv3_050", num_classes=10, cheap_op="dw")
    with pytest.raises(ValueError, match="GhostNetV3 supports cheap_op 'dw' only"):
        create_model("ghostnetv3_050", num_classes=10, cheap_op="haar")


@pytest.mark.parametrize("op", CHEAP_OPS)
def test_bn_folding_and_cpu_pass(op):
    from mindghost.cpu import accelerate, restore
    from mindghost.models import fuse_bn

    ms.set_seed(0)  # unseeded, 1 run in 3 drew weights whose 'affine' logits (~150, no BN) folded to 3e-3 off
    model = create_model("ghostnet_050", num_classes=10, cheap_op=op)
    x = _x()
    ref = _eval(model, x)
    fused = fuse_bn(model, input_shape=(1, 3, 64, 64))
    out = _eval(fused, x)
    assert len(fused.fused_pairs) > 0
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    accelerate(model)
    try:
        fast = _eval(model, x)
    finally:
        restore(model)
    assert np.abs(fast - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("op", ALTERNATIVES)
def test_features_only(op):
    backbone = create_model("ghostnet_050", cheap_op=op, features_only=True)
    maps = backbone(_x())
    assert [m.shape[1] for m in maps] == [8, 12, 20, 40, 80]


@pytest.mark.slow
@pytest.mark.parametrize("op", ALTERNATIVES)
def test_export_onnx_and_mindir(op, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from mindghost.models import fuse_bn
    from mindghost.tools.export import export_model, run_mindir

    model = fuse_bn(create_model("ghostnet_050", num_classes=10, cheap_op=op), input_shape=(1, 3, 32, 32))
    model.set_train(False)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ref = model(ms.Tensor(x)).asnumpy()
    onnx_path = export_model(model, x, str(tmp_path / f"m_{op}"), "onnx")
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    mindir = export_model(model, x, str(tmp_path / f"m_{op}"), "mindir")
    np.testing.assert_allclose(run_mindir(mindir, x), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_model_kwargs_choices_and_problems():
    choices = model_kwargs_choices("ghostnetv2_100")
    assert {"width", "ratio", "dw_size", "cheap_op", "attn_from"} <= set(choices)
    assert "num_classes" not in choices and "block_fn" not in choices
    assert model_kwargs_problems("ghostnet_050", {"cheap_op": "haar", "ratio": 3, "dw_size": 5}) == []
    problems = model_kwargs_problems("ghostnet_050", {"cheap": "haar", "ratio": 1, "dw_size": 4, "cheap_op": "x",
                                                      "width": "wide"})
    text = "\n".join(problems)
    assert len(problems) == 5
    assert "takes no option 'cheap'" in text and "cheap_op" in text  # the valid options are listed
    assert "ratio of ghostnet_050 must be an int >= 2" in text and "odd int" in text
    assert "['dw', 'affine', 'mixed', 'haar']" in text and "width of ghostnet_050 must be a float" in text


def test_config_model_kwargs_yaml_and_command_line(tmp_path):
    from mindghost.training.config import ConfigError, build_config, parse_args

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: ghostnet_050\nmodel_kwargs: {cheap_op: haar, ratio: 3}\n")
    assert build_config(config_path=str(recipe)).model_kwargs == {"cheap_op": "haar", "ratio": 3}
    cfg, _ = parse_args(["--model", "ghostnet_050", "--model_kwargs", "cheap_op=mixed", "dw_size=5"])
    assert cfg.model_kwargs == {"cheap_op": "mixed", "dw_size": 5}
    with pytest.raises(ConfigError, match="takes no option 'cheap'"):
        build_config({"model": "ghostnet_050", "model_kwargs": {"cheap": "haar"}})
    with pytest.raises(ConfigError, match="cheap_op of ghostnet_050 must be one of"):
        build_config({"model": "ghostnet_050", "model_kwargs": {"cheap_op": "wavelet"}})
    with pytest.raises(ConfigError, match="expects a mapping"):
        build_config({"model_kwargs": ["cheap_op"]})
    with pytest.raises(SystemExit):  # argparse error (exit 2) naming the key=value form
        parse_args(["--model_kwargs", "cheap_op"])
    assert build_config().model_kwargs == {}


@pytest.mark.slow
def test_checkpoint_records_model_kwargs_and_validate_rebuilds_them(tmp_path):
    """Train with cheap_op haar + ratio 3; validate.py (no model_kwargs given) builds the same module from the
    checkpoint's record and scores what training's last evaluation scored; another value is refused."""
    data = write_tiny_imagefolder(str(tmp_path / "data"))
    out = str(tmp_path / "run")
    train = load_entry_point("train")
    summary = train.main(TINY_TRAIN_ARGS + ["--data_dir", data, "--output_dir", out, "--epochs", "1",
                                            "--mode", "pynative", "--model_kwargs", "cheap_op=haar", "ratio=3"])
    ckpt = os.path.join(out, "checkpoints", "last.ckpt")
    from mindghost.inference import read_meta

    assert read_meta(ckpt)["config"]["model_kwargs"] == {"cheap_op": "haar", "ratio": 3}
    validate = load_entry_point("validate")
    result = validate.main(["--data_dir", data, "--ckpt_path", ckpt, "--device", "CPU", "--mode", "pynative",
                            "--progress", "False", "--output_dir", str(tmp_path / "val")])
    assert result["top1"] == pytest.approx(summary["last"]["val_top1"], abs=1e-6)
    with open(tmp_path / "val" / "validate.json") as fh:
        assert json.load(fh)["model"] == "ghostnet_050"
    from mindghost.errors import CheckpointError

    with pytest.raises(CheckpointError, match="was trained with model_kwargs"):
        validate.main(["--data_dir", data, "--ckpt_path", ckpt, "--device", "CPU", "--mode", "pynative",
                       "--progress", "False", "--output_dir", str(tmp_path / "val2"),
                       "--model_kwargs", "cheap_op=mixed"])


def test_to_timm_refuses_a_module_timm_cannot_build(tmp_path):
    """convert --to timm reads the checkpoint's model_kwargs: a haar GhostNet has no timm counterpart, so it is
    refused naming the export route, instead of writing a file timm cannot load."""
    pytest.importorskip("safetensors")
    from mindghost.deploy.timm import export_timm
    from mindghost.errors import UsageError
    from mindghost.weights import atomic_save

    model = create_model("ghostnet_050", num_classes=3, cheap_op="haar")
    ckpt = str(tmp_path / "haar.ckpt")
    atomic_save(model, ckpt, {"model": "ghostnet_050", "num_classes": 3,
                              "config": {"model": "ghostnet_050", "num_classes": 3,
                                         "model_kwargs": {"cheap_op": "haar"}}})
    with pytest.raises(UsageError, match=r"trained with model_kwargs \{'cheap_op': 'haar'\}.*tools.export"):
        export_timm(ckpt, str(tmp_path / "x.safetensors"))
