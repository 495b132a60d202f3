"""The CPU pass (`mindghost.cpu`): pure models, `accelerate` / `restore`, and mindghost's CPU kernels against
MindSpore's own ops: the depthwise conv (csrc/depthwise.cc) against Conv2D for every stride / kernel /
channel-multiplier case the models use; the gate product (csrc/gate.cc) against x * ResizeNearestNeighbor(gate);
BatchNorm (+ ReLU) in training (csrc/batchnorm.cc) against nn.BatchNorm2d, moving statistics included; the 1×1 conv
as MatMul. Outputs and gradients, in PyNative and GRAPH mode."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from mindghost import cpu
from mindghost.cpu import batchnorm as bnk
from mindghost.cpu import depthwise as dw
from mindghost.cpu.passes import MatMulConv2d
from mindghost.models import create_model
from mindghost.models.layers import GateMultiply, GlobalAvgPool, conv2d

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
    accelerated = {cls: _count(model, cls) for cls in (cpu.GateMultiplyKernel, bnk.BatchNormKernel,
                                                        bnk.ReLUFusedInTraining, MatMulConv2d)}
    assert accelerated[cpu.GateMultiplyKernel] == _count(create_model("ghostnet_050"), GateMultiply) > 0
    assert accelerated[bnk.BatchNormKernel] == _count(create_model("ghostnet_050"), nn.BatchNorm2d) > 0
    assert accelerated[bnk.ReLUFusedInTraining] > 0 and accelerated[MatMulConv2d] > 0
    swaps = cpu.restore(model)
    assert len(swaps) == 41 + pools + sum(accelerated.values()) and _count(model, dw.DepthwiseConv2d) == 0
    assert all(_count(model, cls) == 0 for cls in accelerated)
    assert {p.name: p for p in model.get_parameters()} == params
    np.testing.assert_array_equal(model(x).asnumpy(), expected)


@needs_kernel
@pytest.mark.parametrize("name", ["ghostnetv2_100", "ghostnetv3_050"])
def test_accelerated_model_matches_plain_in_train_and_eval_mode(name):
    """Whole models (DFC gates, SE, BN + ReLU, re-parameterisable branches) in PyNative: eval-mode logits within
    1e-5 of the plain model's; training mode (batch statistics: the BN kernel) within 1e-4, as are the moving
    statistics after it. Why looser: BNs over few values (3 images × 2×2 maps in the late stages) amplify float
    rounding layer by layer; the kernel and MindSpore's BN are equally close to a float64 reference there
    (per-op checks below: 1e-6), but 122 of them in a row drift apart by ~2e-5 (measured)."""
    ms.set_seed(4)
    plain_model = create_model(name, num_classes=5, drop_rate=0.0)  # no dropout: training-mode outputs compare
    fast = create_model(name, num_classes=5, drop_rate=0.0)
    ms.load_param_into_net(fast, {k: ms.Parameter(p.data.copy(), name=k) for k, p in
                                  plain_model.parameters_and_names()})
    cpu.accelerate(fast)
    assert _count(fast, bnk.BatchNormKernel) == _count(plain_model, nn.BatchNorm2d) > 0
    x = ms.Tensor(np.random.default_rng(1).standard_normal((3, 3, 40, 40)).astype(np.float32))
    for train, tolerance in ((True, 1e-4), (False, 1e-5)):
        plain_model.set_train(train)
        fast.set_train(train)
        assert _rel(fast(x).asnumpy(), plain_model(x).asnumpy()) < tolerance, train
    moving = dict(fast.parameters_and_names())
    for kind in ("moving_mean", "moving_variance"):  # against the largest of the kind: after a BN a mean is ~1e-9
        pairs = [(moving[k].asnumpy(), p.asnumpy()) for k, p in plain_model.parameters_and_names() if k.endswith(kind)]
        scale = max(float(np.abs(b).max()) for _, b in pairs)
        assert max(float(np.abs(a - b).max()) for a, b in pairs) < 1e-4 * scale, kind


GATE_CASES = [(8, 8, 4, 4), (7, 7, 3, 3), (9, 11, 4, 5), (5, 6, 2, 3), (3, 3, 1, 1), (14, 14, 1, 1),
              (56, 56, 28, 28), (1, 1, 1, 1)]  # DFC gates (even / odd sizes: PyTorch's nearest rule), SE gates


@pytest.mark.stack
@needs_kernel
@pytest.mark.parametrize("case", GATE_CASES, ids=lambda c: "{}x{}-gate{}x{}".format(*c))
def test_gate_kernel_matches_resize_and_multiply(case):
    """x * ResizeNearestNeighbor(gate): forward bit-identical, dx bit-identical, dgate within 1e-6."""
    h, w, gh, gw = case
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((2, 3, h, w)).astype(np.float32))
    gate = ms.Tensor(rng.standard_normal((2, 3, gh, gw)).astype(np.float32))
    dy = ms.Tensor(rng.standard_normal((2, 3, h, w)).astype(np.float32))
    grad = ops.GradOperation(get_all=True, sens_param=True)
    results = []
    for cell in (GateMultiply(), cpu.GateMultiplyKernel()):
        dx, dgate = grad(cell)(x, gate, dy)
        results.append((cell(x, gate).asnumpy(), dx.asnumpy(), dgate.asnumpy()))
    (y_ref, dx_ref, dg_ref), (y, dx, dg) = results
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    assert dg.shape == dg_ref.shape and _rel(dg, dg_ref) < 1e-6
    rows = np.floor(np.arange(h) * (gh / h)).astype(int)  # the index rule itself, not only agreement
    cols = np.floor(np.arange(w) * (gw / w)).astype(int)
    np.testing.assert_array_equal(y, x.asnumpy() * gate.asnumpy()[:, :, rows][:, :, :, cols])


BN_CASES = [((4, 6, 7, 9), False, 0.0), ((4, 6, 7, 9), True, 0.0), ((2, 5, 16, 16), True, 50.0),
            ((3, 4, 1, 1), False, 0.0), ((8, 3, 2, 3), True, 0.0)]  # odd sizes (vector tails), |mean| >> std, 1x1


@pytest.mark.stack
@needs_kernel
@pytest.mark.parametrize("case", BN_CASES, ids=lambda c: "{}-relu{}-offset{}".format(*c))
def test_batchnorm_kernel_matches_batchnorm2d(case):
    """BN (+ ReLU) in training mode against nn.BatchNorm2d (+ nn.ReLU): output, dx, dgamma, dbeta and the moving
    statistics (unbiased variance, momentum) within 1e-5; eval mode is MindSpore's BatchNorm and, with the fused
    ReLU, the `ReLUFusedInTraining` cell applies it."""
    shape, relu, offset = case
    rng = np.random.default_rng(0)
    x = ms.Tensor((rng.standard_normal(shape) * 2 + offset).astype(np.float32))
    dy = ms.Tensor(rng.standard_normal(shape).astype(np.float32))
    plain_bn = nn.BatchNorm2d(shape[1], momentum=0.8)
    plain_bn.gamma.set_data(ms.Tensor(rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)))
    plain_bn.beta.set_data(ms.Tensor(rng.uniform(-0.5, 0.5, shape[1]).astype(np.float32)))
    plain_bn.moving_variance.set_data(ms.Tensor(rng.uniform(0.5, 2.0, shape[1]).astype(np.float32)))
    kernel_bn = bnk.BatchNormKernel(shape[1], momentum=0.8, relu=relu)
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        getattr(kernel_bn, name).set_data(getattr(plain_bn, name).data.copy())
    nets = [nn.SequentialCell([plain_bn, nn.ReLU()] if relu else [plain_bn]),
            nn.SequentialCell([kernel_bn, bnk.ReLUFusedInTraining()] if relu else [kernel_bn])]
    results = []
    for net in nets:
        net.set_train(True)
        y = net(x).asnumpy()
        moving = [getattr(net[0], n).asnumpy().copy() for n in ("moving_mean", "moving_variance")]
        (dx,), grads = _Grads(net)(x, dy)
        net.set_train(False)
        results.append((y, moving, dx.asnumpy(), [g.asnumpy() for g in grads], net(x).asnumpy()))
    (y_ref, mov_ref, dx_ref, g_ref, ev_ref), (y, mov, dx, g, ev) = results
    assert _rel(y, y_ref) < 1e-5 and _rel(dx, dx_ref) < 1e-5
    assert all(_rel(a, b) < 1e-5 for a, b in zip(mov, mov_ref))
    assert all(_rel(a, b) < 1e-5 for a, b in zip(g, g_ref))  # dgamma, dbeta
    assert _rel(ev, ev_ref) < 1e-5 and (ev.min() >= 0) == relu


@needs_kernel
def test_batchnorm_swap_fuses_only_a_relu_that_follows_in_a_sequential():
    seq = nn.SequentialCell([nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4), nn.ReLU6()])
    cpu.accelerate(seq, depthwise_kernel=False, avgpool=False, gate_kernel=False, matmul_1x1=False)
    assert [type(c) for c in seq] == [nn.Conv2d, bnk.BatchNormKernel, bnk.ReLUFusedInTraining, bnk.BatchNormKernel,
                                      nn.ReLU6]
    assert seq[1].relu and not seq[3].relu
    assert not bnk.eligible_bn(nn.BatchNorm2d(4, use_batch_statistics=True))
    cpu.restore(seq)
    assert [type(c) for c in seq] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.BatchNorm2d, nn.ReLU6]


@pytest.mark.stack
def test_matmul_1x1_conv_matches_conv_on_1x1_maps_and_passes_others_through():
    ms.set_seed(5)
    conv = nn.Conv2d(6, 5, 1, has_bias=True)
    assert MatMulConv2d.eligible(conv) and MatMulConv2d.eligible(conv2d(6, 5, 1))
    assert not MatMulConv2d.eligible(nn.Conv2d(6, 5, 3)) and not MatMulConv2d.eligible(nn.Conv2d(6, 6, 1, group=2))
    assert not MatMulConv2d.eligible(nn.Conv2d(6, 5, 1, stride=2))
    fast = MatMulConv2d(conv)
    assert fast.weight is conv.weight and fast.bias is conv.bias
    rng = np.random.default_rng(0)
    for batch, size in ((MatMulConv2d.MIN_BATCH, 1), (1, 1), (4, 3)):  # the MatMul, then the conv
        x = ms.Tensor(rng.standard_normal((batch, 6, size, size)).astype(np.float32))
        dy = ms.Tensor(rng.standard_normal((batch, 5, size, size)).astype(np.float32))
        (y_ref, dx_ref, g_ref), (y, dx, g) = _run(conv, x, dy), _run(fast, x, dy)
        assert y.shape == y_ref.shape and _rel(y, y_ref) < 1e-6 and _rel(dx, dx_ref) < 1e-6
        assert all(_rel(a, b) < 1e-6 for a, b in zip(g, g_ref))
    assert type(fast.to_conv()) is nn.Conv2d and fast.to_conv().weight is conv.weight


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


@pytest.mark.stack
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


@pytest.mark.stack
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


@pytest.mark.slow
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
            net = cpu.accelerate(create_model("ghostnet_050", num_classes=4), depthwise_kernel=use, avgpool=False,
                                 gate_kernel=False, batchnorm_kernel=False, matmul_1x1=False)
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


@pytest.mark.slow
@needs_kernel
def test_graph_mode_train_steps_with_every_kernel_match_the_plain_model():
    """Two Momentum steps of ghostnetv2_100 (DFC and SE gates, BN + ReLU, 1×1 convs on 1×1 maps; GRAPH mode) with
    the whole CPU pass, against plain cells: both losses within 1e-5, and the weight updates and moving statistics
    no further from the plain model's than the plain model's own are when its input moves by 1e-7 (relative).

    Why that yardstick: at this size the late BNs normalise over 4 × 2×2 values, so float rounding anywhere is
    amplified; a 1e-7 input perturbation alone moves the plain model's updates by 1.6e-2 (global relative norm;
    measured), the CPU pass by 1.0e-2. A wrong gradient would be off by O(1)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 40, 40)).astype(np.float32)
    inputs = {"plain": x, "perturbed": x * (1 + 1e-7 * rng.standard_normal(x.shape).astype(np.float32)),
              "accelerated": x}
    y = ms.Tensor(np.array([0, 1, 2, 3], np.int32))
    results = {}
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        for name, inp in inputs.items():
            ms.set_seed(3)
            net = create_model("ghostnetv2_100", num_classes=4, drop_rate=0.0)
            if name == "accelerated":
                cpu.accelerate(net)
                assert _count(net, bnk.BatchNormKernel) == 122 and _count(net, cpu.GateMultiplyKernel) == 21
            start = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
            loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
            step = nn.TrainOneStepCell(nn.WithLossCell(net, loss), nn.Momentum(net.trainable_params(), 0.1, 0.9))
            step.set_train(True)
            losses = [float(step(ms.Tensor(inp), y).asnumpy()) for _ in range(2)]
            results[name] = (losses, {p.name: p.asnumpy() - start[p.name] for p in net.get_parameters()})
    finally:
        ms.set_context(mode=previous)
    plain_losses, plain_updates = results["plain"]
    assert all(abs(a - b) <= 1e-5 * abs(b) for a, b in zip(results["accelerated"][0], plain_losses))

    def deviation(updates, moving):
        keys = [k for k in plain_updates if ("moving_" in k) == moving]
        diff = sum(float(((updates[k] - plain_updates[k]) ** 2).sum()) for k in keys)
        return (diff / sum(float((plain_updates[k] ** 2).sum()) for k in keys)) ** 0.5

    for moving in (False, True):
        ours, noise = deviation(results["accelerated"][1], moving), deviation(results["perturbed"][1], moving)
        assert 0 < noise and ours <= 2 * noise, (moving, ours, noise)


@pytest.mark.slow
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
