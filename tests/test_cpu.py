"""The CPU pass (`mindghost.cpu`): pure models, `accelerate` / `restore`, and mindghost's depthwise kernel
(cpu/csrc/depthwise.cc) against MindSpore's Conv2D: outputs and both gradients, every stride / kernel /
channel-multiplier case the models use, in PyNative and GRAPH mode."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from mindghost import cpu
from mindghost.cpu import depthwise as dw
from mindghost.models import create_model
from mindghost.models.layers import GlobalAvgPool, conv2d

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_kernel = pytest.mark.skipif(dw.kernel_library() is None,
                                  reason="the CPU depthwise kernel could not be built (see the warning)")


class _Grads(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.grad = ops.GradOperation(get_all=True, get_by_list=True, sens_param=True)
        self.params = ms.ParameterTuple(net.trainable_params())

    def construct(self, x, dy):
        return self.grad(self.net, self.params)(x, dy)


def _run(cell, x, dy):
    (dx,), dws = _Grads(cell)(x, dy)
    return cell(x).asnumpy(), dx.asnumpy(), [g.asnumpy() for g in dws]


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _count(model, cls):
    return sum(1 for _, c in model.cells_and_names() if isinstance(c, cls))


CASES = [  # (in, out, kernel, stride, H, W, bias): GhostNet's cheap ops and dw convs, odd/even sizes, ratio 3
    (8, 8, 3, 1, 12, 12, False), (8, 8, 3, 2, 12, 12, False), (6, 6, 5, 2, 9, 11, False), (6, 6, 3, 2, 7, 7, True),
    (4, 8, 3, 1, 10, 9, False), (5, 5, (1, 5), 1, 6, 8, False), (5, 5, (5, 1), 1, 8, 6, False),
    (3, 3, 7, 1, 9, 9, False), (3, 3, 9, 2, 11, 10, False), (4, 4, 1, 1, 6, 6, False),  # 9x9, 1x1: generic loops
    (8, 8, 3, 1, 2, 2, True), (8, 8, 3, 2, 2, 2, False), (5, 5, (1, 5), 1, 3, 4, False),  # maps <= 4x4: channels-last
]


def test_create_model_is_plain_and_never_compiles(monkeypatch):
    """Models hold only MindSpore's own cells, on CPU too, and building one never runs the compiler."""
    def refuse(*args, **kwargs):
        raise AssertionError("create_model tried to build the CPU kernel")

    monkeypatch.setattr(dw, "build_library", refuse)
    monkeypatch.setattr(dw, "kernel_library", refuse)
    for name in ("ghostnet_050", "ghostnetv2_100", "g_ghost_regnetx_002"):
        model = create_model(name, num_classes=3)
        assert _count(model, dw.DepthwiseConv2d) == 0 and _count(model, cpu.AvgPoolGlobalPool) == 0, name
        assert _count(model, GlobalAvgPool) > 0, name


@needs_kernel
def test_accelerate_swaps_keeps_parameters_and_outputs_and_restores():
    ms.set_seed(2)
    model = create_model("ghostnet_050", num_classes=3)
    model.set_train(False)
    params = {p.name: p for p in model.get_parameters()}
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    expected = model(x).asnumpy()
    pools = _count(model, GlobalAvgPool)
    assert cpu.accelerate(model) is model
    assert _count(model, dw.DepthwiseConv2d) == 41 and _count(model, cpu.AvgPoolGlobalPool) == pools > 0
    assert _count(model, GlobalAvgPool) == _count(model, cpu.AvgPoolGlobalPool)  # every pool swapped
    after = {p.name: p for p in model.get_parameters()}
    assert after.keys() == params.keys() and all(after[k] is params[k] for k in params)  # same objects, names
    assert _rel(model(x).asnumpy(), expected) < 1e-6
    with cpu.plain(model):
        assert _count(model, dw.DepthwiseConv2d) == 0 and _count(model, cpu.AvgPoolGlobalPool) == 0
    assert _count(model, dw.DepthwiseConv2d) == 41
    swaps = cpu.restore(model)
    assert len(swaps) == 41 + pools and _count(model, dw.DepthwiseConv2d) == 0
    assert {p.name: p for p in model.get_parameters()} == params
    np.testing.assert_array_equal(model(x).asnumpy(), expected)


def test_accelerate_without_kernel_warns_and_keeps_convs(tmp_path):
    env = dict(os.environ, CXX="no-such-compiler-xyz", MINDGHOST_CACHE=str(tmp_path))
    code = ("import logging, sys; logging.basicConfig(stream=sys.stdout, level=logging.INFO)\n"
            "from mindghost.cpu import accelerate, DepthwiseConv2d, AvgPoolGlobalPool\n"
            "from mindghost.models import create_model\n"
            "m = accelerate(create_model('ghostnet_050', num_classes=3))\n"
            "print('kernel cells', sum(isinstance(c, DepthwiseConv2d) for _, c in m.cells_and_names()))\n"
            "print('pools swapped', all(type(c).__name__ != 'GlobalAvgPool' for _, c in m.cells_and_names()))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "kernel cells 0" in out.stdout and "pools swapped True" in out.stdout
    assert out.stdout.count("no C++ compiler 'no-such-compiler-xyz'") == 1 and "Conv2D" in out.stdout


def test_eligibility_is_one_rule():
    assert dw.eligible(conv2d(8, 8, 3, 2, groups=8)) and dw.eligible(conv2d(8, 16, 3, 1, groups=8))
    assert dw.eligible(conv2d(5, 5, (1, 5), groups=5))
    for args, kwargs in (((8, 8, 3), {}), ((8, 8, 3), {"groups": 2}), ((8, 8, 3, 3), {"groups": 8}),
                         ((8, 8, 2), {"groups": 8})):  # dense, grouped, stride 3, even kernel
        assert not dw.eligible(conv2d(*args, **kwargs)), (args, kwargs)
    assert not dw.eligible(nn.Conv2d(8, 8, 3, group=8, pad_mode="valid"))  # padding the kernel does not do
    assert not dw.eligible(nn.Conv2d(8, 8, 3, 2, group=8, pad_mode="same"))  # asymmetric at stride 2
    with pytest.raises(ValueError, match="odd kernel sizes"):
        dw.DepthwiseConv2d(8, 8, 4)


@needs_kernel
@pytest.mark.parametrize("case", CASES, ids=lambda c: "in{}-out{}-k{}-s{}-{}x{}-bias{}".format(*c))
def test_kernel_matches_conv2d(case):
    in_chs, out_chs, k, stride, h, w, bias = case
    ms.set_seed(1)
    ref = conv2d(in_chs, out_chs, k, stride, groups=in_chs, bias=bias)
    assert type(ref) is nn.Conv2d
    ours = dw.DepthwiseConv2d.from_conv(ref)
    assert ours.weight is ref.weight
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((2, in_chs, h, w)).astype(np.float32))
    dy = ms.Tensor(rng.standard_normal(ref(x).shape).astype(np.float32))
    y_ref, dx_ref, dw_ref = _run(ref, x, dy)
    y, dx, dws = _run(ours, x, dy)
    assert y.shape == y_ref.shape
    assert _rel(y, y_ref) < 1e-6 and _rel(dx, dx_ref) < 1e-6
    for g, g_ref in zip(dws, dw_ref):
        assert _rel(g, g_ref) < 1e-5  # a sum over the whole batch and plane: float rounding of long sums


@needs_kernel
def test_graph_mode_train_step_matches_conv2d():
    """One SGD step of ghostnet_050 (41 depthwise convs, GRAPH mode) with the kernel and with Conv2D."""
    x = ms.Tensor(np.random.default_rng(0).standard_normal((4, 3, 48, 48)).astype(np.float32))
    y = ms.Tensor(np.array([0, 1, 2, 3], np.int32))
    results = []
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        for use in (True, False):
            ms.set_seed(3)
            net = cpu.accelerate(create_model("ghostnet_050", num_classes=4), depthwise_kernel=use, avgpool=False)
            assert _count(net, dw.DepthwiseConv2d) == (41 if use else 0)
            start = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
            depthwise = [c.weight.name for _, c in net.cells_and_names() if dw.eligible(c)
                         or isinstance(c, dw.DepthwiseConv2d)]
            loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
            step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), nn.SGD(net.trainable_params(), 0.1))
            step.set_train(True)
            first = float(step(x, y).asnumpy())
            second = float(step(x, y).asnumpy())
            results.append((first, second, {p.name: p.asnumpy() - start[p.name] for p in net.trainable_params()}))
    finally:
        ms.set_context(mode=previous)
    (a1, a2, ua), (b1, b2, ub) = results  # losses of both steps, weight updates
    assert abs(a1 - b1) <= 1e-6 * abs(b1) and abs(a2 - b2) <= 1e-5 * abs(b2)
    scale = max(float(np.abs(u).max()) for u in ub.values())
    assert len(depthwise) == 41 and min(float(np.abs(ub[k]).max()) for k in depthwise) > 1e-3 * scale
    worst = max(float(np.abs(ua[k] - ub[k]).max()) for k in ub)  # some BN betas move by ~1e-9: not relative
    assert worst < 1e-5 * scale, (worst, scale)


@needs_kernel
def test_folded_accelerated_copy_runs_and_plain_model_exports(tmp_path):
    """fuse_bn deep-copies the model (the custom op is shared, the folded bias goes into the kernel); the
    accelerated copy compiles in GRAPH mode, and a plain model exports to ONNX with no special step."""
    from mindghost.models import fuse_bn

    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        model = create_model("ghostnet_050", num_classes=10)
        model.set_train(False)
        x = ms.Tensor(np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32))
        reference = model(x).asnumpy()
        folded = fuse_bn(model, input_shape=(1, 3, 64, 64))
        ms.export(folded, x, file_name=str(tmp_path / "m"), file_format="ONNX")
        assert (tmp_path / "m.onnx").stat().st_size > 100_000
        accelerated = cpu.accelerate(fuse_bn(model, input_shape=(1, 3, 64, 64)))
        assert sum(isinstance(c, dw.DepthwiseConv2d) and c.has_bias for _, c in accelerated.cells_and_names()) == 41
        assert _rel(accelerated(x).asnumpy(), reference) < 1e-5
    finally:
        ms.set_context(mode=previous)
