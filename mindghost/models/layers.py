"""Building blocks shared by the Ghost family: width rounding, activations, SE, conv-BN-act, the Ghost module and
its cheap operations."""
import math
from typing import List, Optional, Tuple, Type

import numpy as np

from mindspore import Parameter, Tensor, nn, ops
from mindspore.common import initializer as init


def make_divisible(v: float, divisor: int = 4, min_value: Optional[int] = None) -> int:
    """Round `v` to the nearest multiple of `divisor`, never going down by more than 10%."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class HardSigmoid(nn.Cell):
    """relu6(x + 3) / 6, the gate of GhostNet's SE blocks."""

    def construct(self, x: Tensor) -> Tensor:
        return ops.relu6(x + 3.0) / 6.0


class GlobalAvgPool(nn.Cell):
    """Mean over H and W, kept as 1×1 (ReduceMean on every device). On CPU, `mindghost.cpu.accelerate` swaps it
    for an AvgPool over the whole map, the faster form there."""

    def construct(self, x: Tensor) -> Tensor:
        return x.mean(axis=(2, 3), keep_dims=True)


def gate_multiply(x: Tensor, gate: Tensor) -> Tensor:
    """`x * gate` with the gate (N, C, h, w) nearest-upsampled to x's (H, W) first, unless it is 1×1 (broadcast).

    The upsample is PyTorch's `F.interpolate(size=(H, W), mode='nearest')`: output index i reads input index
    floor(i · h / H). For odd sizes this is not "repeat twice and crop" (7 from 3 reads rows 0,0,0,1,1,2,2).
    It is the ResizeNearestNeighbor primitive, not `ops.interpolate`: the latter lowers to ResizeNearestNeighborV2,
    which MindSpore cannot export to ONNX."""
    if gate.shape[2] != 1 or gate.shape[3] != 1:
        gate = ops.ResizeNearestNeighbor(x.shape[2:])(gate)
    return x * gate


class GateMultiply(nn.Cell):
    """`gate_multiply(x, gate)` as a cell: the end of an SE block (gate (N, C, 1, 1)) and of GhostNetV2/V3's DFC
    attention (gate (N, C, H/2, W/2)). No parameters. On CPU, `mindghost.cpu.accelerate` swaps it for one
    kernel pass (the upsample and its gradient are slow there)."""

    def construct(self, x: Tensor, gate: Tensor) -> Tensor:
        return gate_multiply(x, gate)


class SqueezeExcite(nn.Cell):
    """Global pool → 1×1 conv (bias) → act → 1×1 conv (bias) → gate, multiplied back onto the input."""

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 0.25,
        divisor: int = 4,
        act_layer: Type[nn.Cell] = nn.ReLU,
        gate_layer: Type[nn.Cell] = HardSigmoid,
    ) -> None:
        super().__init__()
        rd_channels = make_divisible(channels * rd_ratio, divisor)
        self.pool = GlobalAvgPool()
        self.conv_reduce = nn.Conv2d(channels, rd_channels, 1, has_bias=True)
        self.act = act_layer()
        self.conv_expand = nn.Conv2d(rd_channels, channels, 1, has_bias=True)
        self.gate = gate_layer()
        self.multiply = GateMultiply()

    def construct(self, x: Tensor) -> Tensor:
        x_se = self.conv_expand(self.act(self.conv_reduce(self.pool(x))))
        return self.multiply(x, self.gate(x_se))


def conv2d(in_chs: int, out_chs: int, kernel_size, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    """A PyTorch-style convolution: symmetric zero padding of kernel//2 (so PyTorch weights port exactly).
    Always a plain `nn.Conv2d`; on CPU `mindghost.cpu.accelerate` later swaps depthwise ones for its kernel."""
    if isinstance(kernel_size, int):
        return nn.Conv2d(in_chs, out_chs, kernel_size, stride, pad_mode="pad", padding=kernel_size // 2,
                         group=groups, has_bias=bias)
    if stride != 1 or kernel_size[0] % 2 == 0 or kernel_size[1] % 2 == 0:
        raise ValueError(f"non-square kernels need stride 1 and odd sizes, got {kernel_size} stride {stride}")
    # (kh, kw): "same" is the symmetric (kh//2, kw//2) padding here. An explicit 4-tuple padding would do the same
    # in MindSpore, but its ONNX exporter writes the tuple in the wrong order (top, bottom, left, right as ONNX's
    # h_begin, w_begin, h_end, w_end), shifting the output.
    return nn.Conv2d(in_chs, out_chs, kernel_size, stride, pad_mode="same", group=groups, has_bias=bias)


class ConvBnAct(nn.Cell):
    """conv → BN → ReLU, stored as `features.{0,1}` so MindCV checkpoints load without renaming."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.features = nn.SequentialCell([conv2d(in_chs, out_chs, kernel_size, stride), nn.BatchNorm2d(out_chs),
                                           nn.ReLU()])

    def construct(self, x: Tensor) -> Tensor:
        return self.features(x)


def ghost_split(out_channels: int, ratio: int) -> Tuple[int, int, bool]:
    """The Ghost module's channel split for `out_channels` outputs at ratio s: (intrinsic = ceil(out/s) channels
    from the primary conv, cheap = (s-1) × intrinsic from the cheap op, whether the concatenation must be cut
    back to `out_channels`). Raises ValueError for s < 2, which would leave no cheap features."""
    if ratio < 2:
        raise ValueError(f"Ghost module ratio s must be >= 2 (s=1 would have no cheap features), got {ratio}")
    intrinsic = math.ceil(out_channels / ratio)
    cheap = intrinsic * (ratio - 1)
    return intrinsic, cheap, intrinsic + cheap != out_channels


# The Ghost module's cheap linear operation Φ (GhostNet paper, Sec. 3.1: "other linear operations such as affine
# transformation and wavelet transformation"; the paper itself uses depthwise convs). `dw` is the paper's.
CHEAP_OPS = ("dw", "affine", "mixed", "haar")
MIXED_KERNELS = (3, 5, 7)  # MixConv (Tan & Le, BMVC 2019): channel groups with growing depthwise kernels


def _split_groups(channels: int, groups: int) -> List[int]:
    """MixConv's equal split: `channels` into `groups` near-equal parts, the remainder to the first ones."""
    groups = min(groups, channels)
    return [channels // groups + (1 if i < channels % groups else 0) for i in range(groups)]


class MixedDepthwise(nn.Cell):
    """Depthwise convs of kernels 3, 5, 7 (MixConv) over channel groups of the intrinsic maps, each with its own BN.

    Input (N, C, H, W) → output (N, C × multiplier, H, W), in the order a grouped conv with `group=C` gives (the
    ghost maps of intrinsic channel c at c × multiplier ...). The groups split the C input channels as MixConv
    does; every group's conv+BN pair is an ordinary `nn.Conv2d` + `nn.BatchNorm2d`, so BN folding and the CPU
    depthwise kernel apply to each. Fewer than 3 input channels use the first kernels only.
    """

    def __init__(self, channels: int, multiplier: int, kernels: Tuple[int, ...] = MIXED_KERNELS) -> None:
        super().__init__()
        self.splits = tuple(_split_groups(channels, len(kernels)))
        self.convs = nn.CellList([
            nn.SequentialCell([conv2d(c, c * multiplier, k, groups=c), nn.BatchNorm2d(c * multiplier)])
            for c, k in zip(self.splits, kernels)])
        self.offsets = tuple(int(v) for v in np.cumsum((0,) + self.splits))

    def construct(self, x: Tensor) -> Tensor:
        outs = []
        for i, conv in enumerate(self.convs):
            outs.append(conv(x[:, self.offsets[i]:self.offsets[i + 1]]))
        return ops.concat(outs, axis=1)


class ChannelAffine(nn.Cell):
    """The cheapest cheap operation: each ghost map is a learnable scale and shift of one intrinsic map.

    Input (N, C, H, W) → output (N, C × multiplier, H, W); output channel j = weight[j] · x[:, j // multiplier] +
    bias[j] (the channel order of a depthwise conv with multiplier `multiplier`). No spatial mixing and no
    normalisation: the paper's d = 1 depthwise conv + BN is the same map at inference but normalises while
    training. Initialised to the identity copy (weight 1, bias 0).
    """

    def __init__(self, channels: int, multiplier: int) -> None:
        super().__init__()
        self.multiplier = multiplier
        out = channels * multiplier
        self.weight = Parameter(Tensor(np.ones((1, out, 1, 1), np.float32)), name="weight")
        self.bias = Parameter(Tensor(np.zeros((1, out, 1, 1), np.float32)), name="bias")

    def construct(self, x: Tensor) -> Tensor:
        if self.multiplier > 1:  # (N, C, H, W) → (N, C·m, H, W), channel c repeated m times in place
            n, c, h, w = x.shape
            x = ops.reshape(ops.tile(ops.expand_dims(x, 2), (1, 1, self.multiplier, 1, 1)),
                            (n, c * self.multiplier, h, w))
        return x * self.weight + self.bias


def haar_filters(multiplier: int) -> np.ndarray:
    """Fixed 2-D Haar wavelet filters for a depthwise conv: (multiplier, 3, 3) float32, filter m = the m-th of the
    three detail filters (horizontal, vertical, diagonal) then the average, cycling when multiplier > 4.

    Each 2×2 Haar filter (±1/2 entries, unit norm) sits in the lower-right 2×2 of a 3×3 kernel, so the conv keeps
    the symmetric padding of 1 (same size, exports to ONNX like every other conv): output (i, j) reads the 2×2
    window x[i:i+2, j:j+2].
    """
    basis = 0.5 * np.array([[[1, 1], [-1, -1]],    # horizontal detail (LH)
                            [[1, -1], [1, -1]],    # vertical detail (HL)
                            [[1, -1], [-1, 1]],    # diagonal detail (HH)
                            [[1, 1], [1, 1]]],     # average (LL)
                           np.float32)
    out = np.zeros((multiplier, 3, 3), np.float32)
    for m in range(multiplier):
        out[m, 1:, 1:] = basis[m % 4]
    return out


def make_cheap_operation(channels: int, new_channels: int, dw_size: int = 3, cheap_op: str = "dw",
                         relu: bool = True) -> nn.SequentialCell:
    """The Ghost module's cheap operation Φ: `channels` intrinsic maps → `new_channels` ghost maps (a multiple).

    - `dw`: a d×d depthwise conv + BN (the paper's; cells `0` conv, `1` BN — MindCV/PyTorch names);
    - `affine`: `ChannelAffine`, a per-map scale and shift (no BN);
    - `mixed`: `MixedDepthwise`, depthwise kernels 3/5/7 over channel groups, BN per group (`dw_size` unused);
    - `haar`: fixed Haar filters (`haar_filters`, not trained) depthwise + BN, whose γ is the learnable
      per-map scale (`dw_size` unused).
    Each is followed by ReLU when `relu`. Raises ValueError for another name.
    """
    if cheap_op not in CHEAP_OPS:
        raise ValueError(f"cheap_op must be one of {list(CHEAP_OPS)}, got {cheap_op!r}")
    multiplier = new_channels // channels
    act = nn.ReLU() if relu else nn.Identity()
    if cheap_op == "dw":
        return nn.SequentialCell([conv2d(channels, new_channels, dw_size, groups=channels),
                                  nn.BatchNorm2d(new_channels), act])
    if cheap_op == "affine":
        return nn.SequentialCell([ChannelAffine(channels, multiplier), act])
    if cheap_op == "mixed":
        return nn.SequentialCell([MixedDepthwise(channels, multiplier), act])
    conv = conv2d(channels, new_channels, 3, groups=channels)
    conv.weight.set_data(Tensor(np.tile(haar_filters(multiplier), (channels, 1, 1))[:, None]))
    conv.weight.requires_grad = False
    conv.fixed_weights = True  # `init_weights` leaves it alone
    return nn.SequentialCell([conv, nn.BatchNorm2d(new_channels), act])


class GhostModule(nn.Cell):
    """Ghost module: a primary k×k conv makes ceil(oup/s) channels, a cheap operation (default: a d×d depthwise
    conv, see `make_cheap_operation`) makes the other (s-1)/s, and the concatenation is cut to `oup` channels.

    Input (N, inp, H, W) → output (N, oup, H/stride, W/stride). The cut is emitted only when it removes channels:
    a no-op StridedSlice is slow on CPU and breaks nothing by its absence (the outputs are bit-identical).
    """

    def __init__(
        self,
        inp: int,
        oup: int,
        kernel_size: int = 1,
        ratio: int = 2,
        dw_size: int = 3,
        stride: int = 1,
        relu: bool = True,
        cheap_op: str = "dw",
    ) -> None:
        super().__init__()
        self.oup = oup
        init_channels, new_channels, self.trim = ghost_split(oup, ratio)
        self.primary_conv = nn.SequentialCell([
            conv2d(inp, init_channels, kernel_size, stride),
            nn.BatchNorm2d(init_channels),
            nn.ReLU() if relu else nn.Identity(),
        ])
        self.cheap_operation = make_cheap_operation(init_channels, new_channels, dw_size, cheap_op, relu)

    def construct(self, x: Tensor) -> Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = ops.concat((x1, x2), axis=1)
        if self.trim:
            out = out[:, : self.oup]
        return out


def init_weights_torch_default(model: nn.Cell) -> None:
    """PyTorch's default init (what `nn.Conv2d`/`nn.Linear`/`nn.BatchNorm2d.reset_parameters` do), for models
    whose reference code leaves init to PyTorch (timm's GhostNetV3 = the authors' training code, GhostNetV2's
    `ghostnetv2_torch.py`, G-GhostNet's classifier): weights U(-1/√fan_in, 1/√fan_in) (kaiming_uniform with
    a=√5), biases U(-1/√fan_in, 1/√fan_in), BN γ=1 β=0. fan_in = in_channels/groups · kh · kw (conv) or
    in_features (linear). Draws from MindSpore's global seed. A fixed filter bank (the `haar` cheap op) is kept."""
    for _, cell in model.cells_and_names():
        if isinstance(cell, nn.Conv2d) and getattr(cell, "fixed_weights", False):
            continue
        if isinstance(cell, (nn.Conv2d, nn.Dense)):
            shape = cell.weight.shape
            cell.weight.set_data(init.initializer(
                init.HeUniform(negative_slope=math.sqrt(5), mode="fan_in", nonlinearity="leaky_relu"),
                shape, cell.weight.dtype))
            if cell.bias is not None:
                bound = 1.0 / math.sqrt(math.prod(shape[1:]))
                cell.bias.set_data(init.initializer(init.Uniform(bound), cell.bias.shape, cell.bias.dtype))
        elif isinstance(cell, (nn.BatchNorm2d, nn.BatchNorm1d)):
            cell.gamma.set_data(init.initializer("ones", cell.gamma.shape, cell.gamma.dtype))
            cell.beta.set_data(init.initializer("zeros", cell.beta.shape, cell.beta.dtype))


def init_weights(model: nn.Cell) -> None:
    """Explicit init for a conv net: He-normal (fan_out) convs, N(0, 0.01) linear, BN γ=1 β=0, zero biases."""
    for _, cell in model.cells_and_names():
        if isinstance(cell, nn.Conv2d) and getattr(cell, "fixed_weights", False):
            continue  # a fixed filter bank (the `haar` cheap op)
        if isinstance(cell, nn.Conv2d):
            cell.weight.set_data(init.initializer(init.HeNormal(mode="fan_out", nonlinearity="relu"),
                                                  cell.weight.shape, cell.weight.dtype))
            if cell.bias is not None:
                cell.bias.set_data(init.initializer("zeros", cell.bias.shape, cell.bias.dtype))
        elif isinstance(cell, nn.Dense):
            cell.weight.set_data(init.initializer(init.Normal(0.01), cell.weight.shape, cell.weight.dtype))
            if cell.bias is not None:
                cell.bias.set_data(init.initializer("zeros", cell.bias.shape, cell.bias.dtype))
        elif isinstance(cell, (nn.BatchNorm2d, nn.BatchNorm1d)):
            cell.gamma.set_data(init.initializer("ones", cell.gamma.shape, cell.gamma.dtype))
            cell.beta.set_data(init.initializer("zeros", cell.beta.shape, cell.beta.dtype))

