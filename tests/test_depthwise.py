"""mindghost's CPU depthwise kernel (models/csrc/depthwise.cc) against MindSpore's Conv2D: outputs and both
gradients, every stride / kernel / channel-multiplier case the models use, in PyNative and GRAPH mode."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from mindghost.models import create_model
from mindghost.models import depthwise as dw
from mindghost.models.layers import conv2d

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


CASES = [  # (in, out, kernel, stride, H, W, bias): GhostNet's cheap ops and dw convs, odd/even sizes, ratio 3
    (8, 8, 3, 1, 12, 12, False), (8, 8, 3, 2, 12, 12, False), (6, 6, 5, 2, 9, 11, False), (6, 6, 3, 2, 7, 7, True),
    (4, 8, 3, 1, 10, 9, False), (5, 5, (1, 5), 1, 6, 8, False), (5, 5, (5, 1), 1, 8, 6, False),
    (3, 3, 7, 1, 9, 9, False), (3, 3, 9, 2, 11, 10, False), (4, 4, 1, 1, 6, 6, False),  # 9x9, 1x1: generic loops
    (8, 8, 3, 1, 2, 2, True), (8, 8, 3, 2, 2, 2, False), (5, 5, (1, 5), 1, 3, 4, False),  # maps <= 4x4: channels-last
]


@needs_kernel
@pytest.mark.parametrize("case", CASES, ids=lambda c: "in{}-out{}-k{}-s{}-{}x{}-bias{}".format(*c))
def test_kernel_matches_conv2d(case):
    in_chs, out_chs, k, stride, h, w, bias = case
    ms.set_seed(1)
    ours = conv2d(in_chs, out_chs, k, stride, groups=in_chs, bias=bias)
    assert isinstance(ours, dw.DepthwiseConv2d) and ours.use_kernel
    ref = conv2d(in_chs, out_chs, k, stride, groups=in_chs, bias=bias)
    dw.set_cpu_kernels(ref, False)
    ref.weight.set_data(ours.weight.data)
    if bias:
        ref.bias.set_data(ours.bias.data)
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
            net = create_model("ghostnet_050", num_classes=4)
            assert dw.set_cpu_kernels(net, use) == (0 if use else 41)
            start = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
            depthwise = [c.weight.name for _, c in net.cells_and_names() if isinstance(c, dw.DepthwiseConv2d)]
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


def test_factory_routes_only_depthwise_convs():
    assert isinstance(conv2d(8, 8, 3, 2, groups=8), dw.DepthwiseConv2d)
    assert isinstance(conv2d(8, 16, 3, 1, groups=8), dw.DepthwiseConv2d)  # channel multiplier 2
    for args, kwargs in (((8, 8, 3), {}), ((8, 8, 3), {"groups": 2}), ((8, 8, 3, 3), {"groups": 8}),
                         ((8, 8, 2), {"groups": 8})):  # dense, grouped, stride 3, even kernel
        conv = conv2d(*args, **kwargs)
        assert type(conv) is nn.Conv2d, (args, kwargs)
    with pytest.raises(ValueError, match="odd kernel sizes"):
        dw.DepthwiseConv2d(8, 8, 4)


def test_portable_switches_off_and_restores():
    net = create_model("ghostnet_050", num_classes=3)
    cells = [c for _, c in net.cells_and_names() if isinstance(c, dw.DepthwiseConv2d)]
    assert len(cells) == 41
    before = [c.use_kernel for c in cells]
    with dw.portable(net):
        assert not any(c.use_kernel for c in cells)
    assert [c.use_kernel for c in cells] == before


def test_missing_compiler_is_reported_and_conv2d_used(tmp_path):
    env = dict(os.environ, CXX="no-such-compiler-xyz", MINDGHOST_CACHE=str(tmp_path))
    code = ("import logging, sys; logging.basicConfig(stream=sys.stdout, level=logging.WARNING)\n"
            "from mindghost.models.layers import conv2d\n"
            "c = conv2d(8, 8, 3, groups=8); print('use_kernel', c.use_kernel)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "use_kernel False" in out.stdout
    assert "no C++ compiler 'no-such-compiler-xyz'" in out.stdout and "Conv2D" in out.stdout


def test_folded_copies_run_both_paths_in_graph_mode(tmp_path):
    """fuse_bn deep-copies the model (the custom op is shared, the bias goes into the kernel); the copy must
    compile in GRAPH mode with the kernel, without it, and for ONNX export (without it)."""
    from mindghost.tools.fuse import fuse_bn

    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        model = create_model("ghostnet_050", num_classes=10)
        model.set_train(False)
        x = ms.Tensor(np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32))
        reference = model(x).asnumpy()
        with_kernel = fuse_bn(model, input_shape=(1, 3, 64, 64))
        without = fuse_bn(model, input_shape=(1, 3, 64, 64))
        dw.set_cpu_kernels(without, False)
        for folded in (with_kernel, without):
            assert _rel(folded(x).asnumpy(), reference) < 1e-5
        with dw.portable(with_kernel):
            ms.export(with_kernel, x, file_name=str(tmp_path / "m"), file_format="ONNX")
        assert (tmp_path / "m.onnx").stat().st_size > 100_000
    finally:
        ms.set_context(mode=previous)
