"""G-GhostNet (RegNetX) and Ghost-ResNet-50 / `ghostify` specifics. Shapes in both modes and gradients of every
registered model are in test_models.py; large models are only built here (counting is cheap, forwards are not)."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

import mindghost
from mindghost.models import g_ghost_regnet, load_state_dict
from mindghost.models.ghost_resnet import GhostConv2d, GhostDense, ghostify


def _trainable(model: nn.Cell) -> int:
    return sum(int(np.prod(p.shape)) for p in model.trainable_params())


# Trainable parameters at 1000 classes; the reference code gives exactly these counts (10,511,000 / 15,726,268 /
# 24,586,928 / 32,381,704), and its readme rounds them to 10.5M / 15.7M / 24.6M / 32.4M.
@pytest.mark.parametrize("name, millions", [
    ("g_ghost_regnetx_032", 10.51),
    ("g_ghost_regnetx_040", 15.73),
    ("g_ghost_regnetx_080", 24.59),
    ("g_ghost_regnetx_160", 32.38),
])
def test_g_ghost_param_counts_match_reference(name, millions):
    assert round(_trainable(mindghost.create_model(name)) / 1e6, 2) == millions


# The paper gives Ghost-ResNet-50 to 0.1M (ResNet-50: 25.6M); see ghost_resnet.py for why the classifier is ghosted.
@pytest.mark.parametrize("name, millions", [("ghost_resnet50", 13.0), ("ghost_resnet50_s4", 6.5)])
def test_ghost_resnet50_param_counts_match_paper(name, millions):
    n = _trainable(mindghost.create_model(name)) / 1e6
    assert abs(n - millions) <= 0.02 * millions, n


def test_g_ghost_stage_layout():
    """Stage 1 is plain; later stages with > 2 blocks are G-Ghost: raw path in multiples of 0.75 × group width."""
    model = mindghost.create_model("g_ghost_regnetx_002")  # depths (1, 1, 4, 7), widths (.., 152, 368), gw 8
    assert isinstance(model.layer1, nn.SequentialCell) and isinstance(model.layer2, nn.SequentialCell)
    for stage, depth, width in ((model.layer3, 4, 152), (model.layer4, 7, 368)):
        assert isinstance(stage, g_ghost_regnet.GGhostStage)
        raw, cheap = stage.split_sizes
        assert raw % 6 == 0 and raw + cheap == width and len(stage.layers) == depth - 2
    assert model.default_cfg["classifier"] == "fc" and model.default_cfg["paper_top1"] is None
    assert mindghost.create_model("g_ghost_regnetx_160").default_cfg["paper_top1"] == 79.9


class _Toy(nn.Cell):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, pad_mode="pad", padding=1)
        self.body = nn.SequentialCell([
            nn.Conv2d(8, 12, 3, has_bias=True), nn.BatchNorm2d(12), nn.ReLU(),  # "same" padding, with bias
            nn.Conv2d(12, 12, 3, group=12), nn.BatchNorm2d(12), nn.ReLU(),  # depthwise: kept
            nn.Conv2d(12, 10, 1, stride=2), nn.BatchNorm2d(10),  # 10 is not a multiple of 4: trimmed at s=4
        ])
        self.fc = nn.Dense(10, 5)

    def construct(self, x):
        return self.fc(self.body(self.stem(x)).mean(axis=(2, 3)))


@pytest.mark.parametrize("ratio", [2, 4])
def test_ghostify_replaces_the_right_cells_and_keeps_shapes(ratio):
    net = _Toy()
    x = ms.Tensor(np.random.RandomState(0).rand(2, 3, 16, 16).astype(np.float32))
    before = net(x).shape
    replaced = ghostify(net, ratio=ratio, dw_size=3, dense=True)
    assert replaced == ["body.0", "body.6", "fc"]  # not the stem, not the depthwise conv
    assert isinstance(net.stem, nn.Conv2d) and isinstance(net.body[3], nn.Conv2d)
    assert isinstance(net.body[0], GhostConv2d) and isinstance(net.body[6], GhostConv2d)
    assert isinstance(net.fc, GhostDense)
    assert net.body[6].trim == (ratio == 4)
    assert net.body[0].primary_conv.stride == (1, 1) and net.body[6].primary_conv.stride == (2, 2)
    assert net(x).shape == before
    names = [p.name for p in net.trainable_params()]
    assert "body.0.primary_conv.weight" in names and "body.0.cheap_operation.bias" in names
    assert "fc.primary.weight" in names and len(set(names)) == len(names)
    assert ghostify(net, ratio=ratio) == []  # Ghost cells are never ghosted again


def test_ghostify_options():
    net = _Toy()
    assert ghostify(net, skip_first_conv=False, exclude=("body.6",)) == ["stem", "body.0"]
    assert isinstance(net.fc, nn.Dense)


def test_g_ghost_regnet_forward_and_face():
    model = mindghost.create_model("g_ghost_regnetx_002", num_classes=10)
    model.set_train(False)
    x = ms.Tensor(np.random.RandomState(0).rand(2, 3, 64, 64).astype(np.float32))
    assert model(x).shape == (2, 10)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 368)
    model.reset_classifier(0)
    assert model(x).shape == (2, 368)


def test_ghost_resnet50_s4_forward_and_face():
    model = mindghost.create_model("ghost_resnet50_s4", num_classes=10)
    model.set_train(False)
    assert isinstance(model.classifier, GhostDense) and isinstance(model.conv1, nn.Conv2d)
    assert isinstance(model.layer1[0].down_sample[0], GhostConv2d)
    x = ms.Tensor(np.random.RandomState(0).rand(2, 3, 64, 64).astype(np.float32))
    out = model(x)
    assert out.shape == (2, 10) and np.isfinite(out.asnumpy()).all()
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.num_features)


def _to_torch_name(name: str) -> str:
    for ours, theirs in ((".gamma", ".weight"), (".beta", ".bias"), (".moving_mean", ".running_mean"),
                         (".moving_variance", ".running_var")):
        if name.endswith(ours):
            return name[: -len(ours)] + theirs
    return name


def test_checkpoint_filter_fn_round_trip():
    """A PyTorch-named state dict (as in the official .pth) converts and loads strictly, weights unchanged."""
    source = mindghost.create_model("g_ghost_regnetx_002")
    rng = np.random.RandomState(0)
    torch_state = {}
    for name, p in source.parameters_dict().items():
        value = rng.rand(*p.shape).astype(np.float32)
        torch_state["module." + _to_torch_name(name)] = value
        if name.endswith(".moving_mean"):
            torch_state["module." + name[: -len(".moving_mean")] + ".num_batches_tracked"] = np.array(7)
    assert "module.layer3.merge.1.weight" in torch_state and "module.layer3.cheap.1.running_var" in torch_state

    target = mindghost.create_model("g_ghost_regnetx_002")
    load_state_dict(target, g_ghost_regnet.checkpoint_filter_fn(torch_state, target), source="fake .pth")
    for name, p in target.parameters_dict().items():
        np.testing.assert_array_equal(p.asnumpy(), torch_state["module." + _to_torch_name(name)])
