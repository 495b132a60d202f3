"""G-GhostNet: G-Ghost stages on RegNetX (the GPU-oriented GhostNet) in MindSpore.

Paper: "GhostNets on Heterogeneous Devices via Cheap Operations", Han et al., IJCV 2022 (arXiv 2201.03297).
Reference code: huawei-noah/Efficient-AI-Backbones `g_ghost_pytorch/g_ghost_regnet.py` (built on
d-li14/regnet.pytorch). Parameter names are the reference's, so its `.pth` releases load after the BatchNorm
renaming alone (`checkpoint_filter_fn`).

A G-Ghost stage runs only about half of its channels (`raw`) through the deep chain of RegNetX bottlenecks;
the other half (`cheap`) comes from the stage's first block through a 1×1 conv, corrected by a "mix" vector
pooled from every intermediate feature map. The first and last blocks of the stage stay full width.

Reference fix (issue #287, March 2025): the stage's shortcut test read `self.inplanes`, an attribute a stage
never has; `inplanes` was meant. Every registered variant builds its stages with stride 2, so the test
short-circuits and the fix changes no architecture and no weights; only a stride-1 stage (the reference's
dilation option) reached the bad attribute and crashed. Here the test compares the stage's input and output
widths, as intended.
"""
from typing import Dict, NamedTuple, Tuple

import numpy as np

from mindspore import Tensor, nn, ops

from ..weights import rename_torch_state_dict, unwrap_state_dict
from ._features import FeatureMixin, feature_dict
from ._head import ClassifierHeadMixin
from ._registry import DefaultCfg, Variant, register_variants
from .layers import GlobalAvgPool, conv2d, init_weights, init_weights_torch_default

__all__ = ["RegNetXSpec", "Bottleneck", "GGhostStage", "GGhostRegNet", "G_GHOST_REGNETX_ARCHS"]


class RegNetXSpec(NamedTuple):
    depths: Tuple[int, int, int, int]  # blocks per stage
    widths: Tuple[int, int, int, int]  # output channels per stage
    group_width: int  # channels per group of the 3×3 grouped conv


# RegNetX design points (Radosavovic et al., 2020) as used by the G-Ghost reference.
G_GHOST_REGNETX_ARCHS: Dict[str, RegNetXSpec] = {
    "002": RegNetXSpec((1, 1, 4, 7), (24, 56, 152, 368), 8),
    "004": RegNetXSpec((1, 2, 7, 12), (32, 64, 160, 384), 16),
    "006": RegNetXSpec((1, 3, 5, 7), (48, 96, 240, 528), 24),
    "008": RegNetXSpec((1, 3, 7, 5), (64, 128, 288, 672), 16),
    "016": RegNetXSpec((2, 4, 10, 2), (72, 168, 408, 912), 24),
    "032": RegNetXSpec((2, 6, 15, 2), (96, 192, 432, 1008), 48),
    "040": RegNetXSpec((2, 5, 14, 2), (80, 240, 560, 1360), 40),
    "064": RegNetXSpec((2, 4, 10, 1), (168, 392, 784, 1624), 56),
    "080": RegNetXSpec((2, 5, 15, 1), (80, 240, 720, 1920), 120),
    "120": RegNetXSpec((2, 5, 11, 1), (224, 448, 896, 2240), 112),
    "160": RegNetXSpec((2, 6, 13, 1), (256, 512, 896, 2048), 128),
    "320": RegNetXSpec((2, 7, 13, 1), (336, 672, 1344, 2520), 168),
}


def _conv_bn(in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1) -> nn.SequentialCell:
    return nn.SequentialCell([conv2d(in_chs, out_chs, kernel_size, stride, groups=groups), nn.BatchNorm2d(out_chs)])


class Bottleneck(nn.Cell):
    """RegNetX block: 1×1 conv → 3×3 grouped conv (stride) → 1×1 conv, each with BN, ReLU after the residual add.

    The shortcut is a strided 1×1 conv + BN when the stride or the width changes, else the identity.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, group_width: int = 1) -> None:
        super().__init__()
        groups = out_chs // min(out_chs, group_width)
        self.conv1 = conv2d(in_chs, out_chs, 1)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = conv2d(out_chs, out_chs, 3, stride, groups=groups)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv3 = conv2d(out_chs, out_chs, 1)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU()
        self.has_downsample = stride != 1 or in_chs != out_chs
        self.downsample = _conv_bn(in_chs, out_chs, 1, stride) if self.has_downsample else nn.Identity()

    def construct(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))  # not `+=`: an in-place add has no ONNX mapping


class GGhostStage(nn.Cell):
    """A RegNetX stage whose middle blocks run on `raw` channels only; the `cheap` rest is a 1×1 conv of the first
    block's output plus a mix vector pooled from all intermediate features (`base` → `layers` → `end`)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        group_width: int,
        depth: int,
        stride: int = 2,
        cheap_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError(f"a G-Ghost stage needs at least 3 blocks (first, cheap-path, last), got {depth}")
        self.base = Bottleneck(in_chs, out_chs, stride, group_width)  # shortcut test uses in_chs: the 2025 fix
        self.end = Bottleneck(out_chs, out_chs, 1, group_width)
        raw_group_width = int(group_width * 0.75)  # the narrower raw path also uses narrower groups
        raw_chs = int(out_chs * (1 - cheap_ratio) / raw_group_width) * raw_group_width
        cheap_chs = out_chs - raw_chs
        self.split_sizes = (raw_chs, cheap_chs)
        # Index 0 is the reference's global pool; each map is pooled before the concat instead (same result,
        # no full-resolution concat), so it is a placeholder that keeps the PyTorch indices 1, 2, 4, 5.
        self.merge = nn.SequentialCell([
            nn.Identity(),
            conv2d(out_chs + raw_chs * (depth - 2), cheap_chs, 1),
            nn.BatchNorm2d(cheap_chs),
            nn.ReLU(),
            conv2d(cheap_chs, cheap_chs, 1),
            nn.BatchNorm2d(cheap_chs),
        ])
        self.cheap = _conv_bn(cheap_chs, cheap_chs, 1)
        self.cheap_relu = nn.ReLU()
        self.layers = nn.CellList([Bottleneck(raw_chs, raw_chs, 1, raw_group_width) for _ in range(depth - 2)])
        self.pool = GlobalAvgPool()

    def construct(self, x: Tensor) -> Tensor:
        x0 = self.base(x)
        pooled = [self.pool(x0)]
        raw, cheap = ops.split(x0, self.split_sizes, axis=1)
        for layer in self.layers:
            raw = layer(raw)
            pooled.append(self.pool(raw))
        mix = self.merge(ops.concat(pooled, axis=1))
        cheap = self.cheap_relu(self.cheap(cheap) + mix)
        return self.end(ops.concat((raw, cheap), axis=1))


def _plain_stage(in_chs: int, out_chs: int, group_width: int, depth: int, stride: int = 2) -> nn.SequentialCell:
    blocks = [Bottleneck(in_chs, out_chs, stride, group_width)]
    blocks.extend(Bottleneck(out_chs, out_chs, 1, group_width) for _ in range(depth - 1))
    return nn.SequentialCell(blocks)


class GGhostRegNet(FeatureMixin, ClassifierHeadMixin, nn.Cell):
    """G-GhostNet on a RegNetX design: 3×3 stem (32 channels, stride 2) → 4 stages (stride 2 each) → pool → fc.

    Stage 1 is plain RegNetX; a later stage is a G-Ghost stage when it has more than 2 blocks (as in the
    reference: stages 2 and 4 depend on depth, stage 3 always qualifies).
    """

    classifier_attr = "fc"

    def __init__(
        self,
        arch: RegNetXSpec,
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_rate: float = 0.2,
        cheap_ratio: float = 0.5,
        stem_chs: int = 32,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = conv2d(in_channels, stem_chs, 3, 2)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.relu = nn.ReLU()
        prev_chs = stem_chs
        # Backbone maps (timm's RegNet convention, MindCV's too): the stem, then the end of each stage.
        self.feature_info = [feature_dict(stem_chs, 2, "relu")]
        self.trunk_names = ("conv1", "bn1", "relu", "layer1", "layer2", "layer3", "layer4")
        for i, (depth, width) in enumerate(zip(arch.depths, arch.widths)):
            if i > 0 and depth > 2:
                stage = GGhostStage(prev_chs, width, arch.group_width, depth, 2, cheap_ratio)
            else:
                stage = _plain_stage(prev_chs, width, arch.group_width, depth, 2)
            setattr(self, f"layer{i + 1}", stage)
            self.feature_info.append(feature_dict(width, 2 ** (i + 2), f"layer{i + 1}"))
            prev_chs = width
        self.num_features = prev_chs
        self.global_pool = GlobalAvgPool()
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = self.make_classifier(num_classes)
        init_weights(self)  # the reference's: He-normal fan_out convs, BN 1/0; its fc keeps PyTorch's default
        self.init_classifier()

    def init_classifier(self) -> None:
        """Re-initialise `fc` as the reference does (PyTorch's default `nn.Linear` init)."""
        init_weights_torch_default(self.fc)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def checkpoint_filter_fn(state_dict: Dict[str, np.ndarray], model: nn.Cell) -> Dict[str, np.ndarray]:
    """huawei-noah G-Ghost RegNet `.pth` → mindghost: the names agree except BatchNorm's (a wrapper or a DataParallel
    `module.` prefix, if the file has one, is dropped)."""
    return rename_torch_state_dict(unwrap_state_dict(state_dict), model)


def _cfg(**kwargs) -> DefaultCfg:
    return DefaultCfg(first_conv="conv1", classifier="fc",
                      paper="GhostNets on Heterogeneous Devices via Cheap Operations, IJCV 2022 (arXiv 2201.03297)",
                      **kwargs)


default_cfgs = {
    "g_ghost_regnetx_002": _cfg(),
    "g_ghost_regnetx_004": _cfg(),
    "g_ghost_regnetx_006": _cfg(),
    "g_ghost_regnetx_008": _cfg(),
    "g_ghost_regnetx_016": _cfg(),
    "g_ghost_regnetx_032": _cfg(paper_top1=77.8),
    "g_ghost_regnetx_040": _cfg(paper_top1=78.6),
    "g_ghost_regnetx_064": _cfg(),
    "g_ghost_regnetx_080": _cfg(paper_top1=79.0),
    "g_ghost_regnetx_120": _cfg(),
    "g_ghost_regnetx_160": _cfg(paper_top1=79.9),
    "g_ghost_regnetx_320": _cfg(),
}

_DOCS = {  # variants with published weights
    "032": "10.51M params, 1.80G MACs at 224; 77.8 top-1 (paper).",
    "040": "15.73M params, 2.23G MACs at 224; 78.6 top-1 (paper).",
    "080": "24.59M params, 4.15G MACs at 224; 79.0 top-1 (paper).",
    "160": "32.38M params, 9.00G MACs at 224; 79.9 top-1 (paper).",
}

_entry = register_variants(GGhostRegNet, {f"g_ghost_regnetx_{key}": Variant({"arch": arch}, _DOCS.get(key, ""))
                                 for key, arch in G_GHOST_REGNETX_ARCHS.items()})

# One line per registered name, so that `from mindghost.models.<family> import <name>` works and editors find it.
g_ghost_regnetx_002 = _entry["g_ghost_regnetx_002"]
g_ghost_regnetx_004 = _entry["g_ghost_regnetx_004"]
g_ghost_regnetx_006 = _entry["g_ghost_regnetx_006"]
g_ghost_regnetx_008 = _entry["g_ghost_regnetx_008"]
g_ghost_regnetx_016 = _entry["g_ghost_regnetx_016"]
g_ghost_regnetx_032 = _entry["g_ghost_regnetx_032"]
g_ghost_regnetx_040 = _entry["g_ghost_regnetx_040"]
g_ghost_regnetx_064 = _entry["g_ghost_regnetx_064"]
g_ghost_regnetx_080 = _entry["g_ghost_regnetx_080"]
g_ghost_regnetx_120 = _entry["g_ghost_regnetx_120"]
g_ghost_regnetx_160 = _entry["g_ghost_regnetx_160"]
g_ghost_regnetx_320 = _entry["g_ghost_regnetx_320"]
