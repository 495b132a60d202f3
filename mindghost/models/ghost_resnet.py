"""Ghost-ResNet-50 and `ghostify`: Ghost modules plugged into an existing network (GhostNet's plug-and-play claim).

Paper: "GhostNet: More Features from Cheap Operations", Han et al., CVPR 2020 (arXiv 1911.11907), Table 3:
Ghost-ResNet-50 (s=2) 13.0M params, 2.2G MACs, 75.0 top-1; (s=4, d=3) 6.5M, 1.2G, 74.1 (ResNet-50: 25.6M, 4.1G,
75.3). Reference code: huawei-noah/Efficient-AI-Backbones `ghostnet_pytorch/ghost_resnet.py`.

What `ghostify` replaces, and why (the choices that reproduce the paper's Ghost-ResNet-50 numbers):
- Every ungrouped `nn.Conv2d`, 1×1 and k×k alike: the bottleneck convs and the 1×1 downsample shortcut convs
  (the reference replaces both). Grouped and depthwise convs are kept: they are already cheap.
- Not the stem (the first conv): with 3 input channels halving its outputs saves ~5k parameters, and the
  reference keeps a plain 7×7 conv there.
- The classifier, for the Ghost-ResNet-50 models: replacing only the convs gives 13.95M / 8.15M parameters
  at s=2 / s=4 (+7% / +25% over the paper), because the 2.05M-parameter fc layer then dominates at s=4.
  Treating the fc as a 1×1 conv and ghosting it too gives 12.93M / 6.62M (−0.5% / +1.9%), and 2.15G / 1.18G
  MACs against the paper's 2.2G / 1.2G: the paper's counts are those of a fully ghosted network.
- No BN and no ReLU inside the Ghost module: the host's BN (and activation) after the replaced conv stays and
  normalises both halves, intrinsic and cheap channels alike (BN is per channel). An inner BN would be a
  per-channel affine map that the depthwise conv and the host BN absorb (up to border effects), and an inner
  ReLU would make non-linear a layer that was linear in the host. The reference's Ghost-ResNet module has no
  normalisation in its forward either; an inner BN would also add 53k parameters (6.68M at s=4, +2.7%).
"""
from typing import List, Sequence, Tuple, Union

from mindcv.models.resnet import Bottleneck as _MindCVBottleneck
from mindcv.models.resnet import ResNet
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common import initializer as init

from ._features import FeatureMixin, feature_dict
from ._head import ClassifierHeadMixin
from ._registry import DefaultCfg, Variant, register_variants
from .layers import GhostModule, GlobalAvgPool, conv2d, ghost_split, init_weights

__all__ = ["GhostConv2d", "GhostDense", "GhostResNet", "ghostify"]


class GhostConv2d(nn.Cell):
    """A drop-in Ghost replacement for a convolution: the primary conv (the host's kernel, stride, padding and
    dilation) makes ceil(out/s) channels, a d×d depthwise conv makes (s-1)× as many cheap ones; the
    concatenation is cut to `out_channels`. Linear: whatever followed the host conv follows this.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Union[int, Tuple[int, int]] = 1,
        stride: Union[int, Tuple[int, int]] = 1,
        pad_mode: str = "pad",
        padding: Union[int, Tuple[int, int, int, int]] = 0,
        dilation: Union[int, Tuple[int, int]] = 1,
        has_bias: bool = False,
        ratio: int = 2,
        dw_size: int = 3,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        init_channels, new_channels, self.trim = ghost_split(out_channels, ratio)
        self.primary_conv = nn.Conv2d(in_channels, init_channels, kernel_size, stride, pad_mode=pad_mode,
                                      padding=padding, dilation=dilation, has_bias=has_bias)
        self.cheap_operation = conv2d(init_channels, new_channels, dw_size, groups=init_channels, bias=has_bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, ratio: int = 2, dw_size: int = 3) -> "GhostConv2d":
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.pad_mode, conv.padding,
                   conv.dilation, conv.has_bias, ratio, dw_size)

    def construct(self, x: Tensor) -> Tensor:
        x1 = self.primary_conv(x)
        out = ops.concat((x1, self.cheap_operation(x1)), axis=1)
        if self.trim:  # only when it removes channels: a no-op slice is slow on CPU
            out = out[:, : self.out_channels]
        return out


class GhostDense(nn.Cell):
    """The Ghost module of a fully connected layer (a 1×1 conv on a 1×1 map): a dense layer makes ceil(out/s)
    features and each is scaled s-1 times (the d×d depthwise conv on a 1×1 map is that scaling, so `dw_size`
    plays no part). The scales start at 1: each cheap output starts as a copy of its intrinsic feature.
    """

    def __init__(self, in_channels: int, out_channels: int, has_bias: bool = True, ratio: int = 2) -> None:
        super().__init__()
        self.out_channels = out_channels
        init_channels, self.new_channels, self.trim = ghost_split(out_channels, ratio)
        self.has_bias = has_bias
        self.primary = nn.Dense(in_channels, init_channels, has_bias=has_bias)
        self.cheap_weight = Parameter(init.initializer("ones", (init_channels, ratio - 1)), name="cheap_weight")
        self.cheap_bias = Parameter(init.initializer("zeros", (self.new_channels,)), name="cheap_bias") \
            if has_bias else None

    def construct(self, x: Tensor) -> Tensor:
        x1 = self.primary(x)
        x2 = (x1.expand_dims(2) * self.cheap_weight).reshape((-1, self.new_channels))
        if self.has_bias:
            x2 = x2 + self.cheap_bias
        out = ops.concat((x1, x2), axis=1)
        if self.trim:
            out = out[:, : self.out_channels]
        return out


_GHOST_CELLS = (GhostConv2d, GhostDense, GhostModule)  # already ghosted: never descended into


def _children(cell: nn.Cell, prefix: str = ""):
    """(parent, attribute name, full name, child) for every cell under `cell`, depth first (construction
    order), not entering Ghost cells."""
    for name, child in cell.name_cells().items():
        full = f"{prefix}.{name}" if prefix else name
        yield cell, name, full, child
        if not isinstance(child, _GHOST_CELLS):
            yield from _children(child, full)


def _replace_child(parent: nn.Cell, name: str, old: nn.Cell, new: nn.Cell) -> None:
    if isinstance(parent, (nn.SequentialCell, nn.CellList)):
        parent[list(parent.name_cells()).index(name)] = new
    else:
        setattr(parent, name, new)
    # Name the new parameters after the old ones' full path (`layer1.0.conv1.weight` →
    # `layer1.0.conv1.primary_conv.weight`), also when `ghostify` got a sub-network of a larger model.
    prefix = old.weight.name[: -len(".weight")] if old.weight.name.endswith(".weight") else name
    for param_name, param in new.parameters_and_names(name_prefix=prefix):
        param.name = param_name


def ghostify(
    network: nn.Cell,
    ratio: int = 2,
    dw_size: int = 3,
    skip_first_conv: bool = True,
    dense: bool = False,
    exclude: Sequence[str] = (),
) -> List[str]:
    """Replace, in place, the convolutions of `network` by Ghost modules of ratio s=`ratio` and cheap kernel
    d=`dw_size`; returns the names of the replaced cells.

    Replaced: every `nn.Conv2d` with `group == 1` and at least 2 output channels, except the first conv when
    `skip_first_conv` (the stem) and cells whose name is in `exclude`; with `dense=True` also every `nn.Dense`
    without a fused activation (the classifier). Kept: grouped and depthwise convs, BN, activations and all
    other cells, so the host's BN/activation after each conv still applies. The new cells get MindSpore's
    default initialisation; re-run the network's own init if it has one.
    """
    targets = []
    first_conv_seen = False
    for parent, name, full, child in _children(network):
        if isinstance(child, nn.Conv2d):
            is_stem = skip_first_conv and not first_conv_seen
            first_conv_seen = True
            if not is_stem and child.group == 1 and child.out_channels >= 2 and full not in exclude:
                targets.append((parent, name, full, child, GhostConv2d.from_conv(child, ratio, dw_size)))
        elif dense and isinstance(child, nn.Dense) and not child.activation_flag and full not in exclude:
            targets.append((parent, name, full, child,
                            GhostDense(child.in_channels, child.out_channels, child.has_bias, ratio)))
    for parent, name, _, old, new in targets:
        _replace_child(parent, name, old, new)
    return [full for _, _, full, _, _ in targets]


class _Bottleneck(_MindCVBottleneck):
    """MindCV's ResNet bottleneck with an out-of-place residual add (an in-place add has no ONNX mapping)."""

    def construct(self, x: Tensor) -> Tensor:
        identity = self.down_sample(x) if self.down_sample is not None else x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class GhostResNet(FeatureMixin, ClassifierHeadMixin, ResNet):
    """MindCV's ResNet (bottleneck blocks) with every conv but the stem, and the classifier, made Ghost modules.

    Parameter names are MindCV's ResNet's (`layer1.0.conv1.primary_conv.weight`, `classifier.primary.weight`).
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_rate: float = 0.0,
        ratio: int = 2,
        dw_size: int = 3,
        ghost_classifier: bool = True,
    ) -> None:
        # MindCV's ResNet always builds a Dense head; `reset_classifier` below replaces it (also for num_classes=0).
        super().__init__(_Bottleneck, list(layers), num_classes=max(num_classes, 1), in_channels=in_channels)
        self.ratio = ratio
        self.ghost_classifier = ghost_classifier
        ghostify(self, ratio, dw_size, skip_first_conv=True, dense=False)
        self.global_pool = GlobalAvgPool()
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        init_weights(self)
        self.reset_classifier(num_classes)
        # Backbone maps (timm's and MindCV's ResNet convention): the stem before the max-pool, then each stage.
        self.trunk_names = ("conv1", "bn1", "relu", "max_pool", "layer1", "layer2", "layer3", "layer4")
        widths = [self.bn1.gamma.shape[0]] + [getattr(self, f"layer{i}")[-1].conv3.out_channels for i in range(1, 5)]
        self.feature_info = [feature_dict(c, 2 ** (i + 1), m) for i, (c, m) in
                             enumerate(zip(widths, ("relu", "layer1", "layer2", "layer3", "layer4")))]

    def make_classifier(self, num_classes: int) -> nn.Cell:
        if num_classes > 0 and self.ghost_classifier:
            return GhostDense(self.num_features, num_classes, ratio=self.ratio)
        return super().make_classifier(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.max_pool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def _cfg(**kwargs) -> DefaultCfg:
    return DefaultCfg(first_conv="conv1", classifier="classifier",
                      paper="GhostNet, CVPR 2020 (arXiv 1911.11907), Table 3", **kwargs)


default_cfgs = {
    # No weights were published for Ghost-ResNet-50.
    "ghost_resnet50": _cfg(paper_top1=75.0),
    "ghost_resnet50_s4": _cfg(paper_top1=74.1),
}


_entry = register_variants(GhostResNet, {
    "ghost_resnet50": Variant({"ratio": 2, "dw_size": 3},
                              "Ghost-ResNet-50 (s=2, d=3): 12.93M params, 2.15G MACs at 224 (paper: 13.0M, 2.2G)."),
    "ghost_resnet50_s4": Variant({"ratio": 4, "dw_size": 3},
                                 "Ghost-ResNet-50 (s=4, d=3): 6.62M params, 1.18G MACs at 224 (paper: 6.5M, 1.2G)."),
})

# One line per registered name, so that `from mindghost.models.<family> import <name>` works and editors find it.
ghost_resnet50 = _entry["ghost_resnet50"]
ghost_resnet50_s4 = _entry["ghost_resnet50_s4"]
