"""GhostNet (v1; C-GhostNet in the IJCV paper) in MindSpore.

Paper: "GhostNet: More Features from Cheap Operations", Han et al., CVPR 2020 (arXiv 1911.11907);
"GhostNets on Heterogeneous Devices via Cheap Operations", IJCV 2022 (arXiv 2201.03297).
Reference code: huawei-noah/Efficient-AI-Backbones `ghostnet_pytorch/ghostnet.py`; timm `ghostnet.py`;
MindCV `mindcv/models/ghostnet.py` (parameter names match MindCV, so its checkpoints load as they are).
"""
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from mindspore import Tensor, nn

from ..weights import rename_torch_state_dict
from ._features import FeatureMixin, feature_dict
from ._head import ClassifierHeadMixin
from ._registry import DefaultCfg, Variant, register_variants
from .layers import ConvBnAct, GhostModule, GlobalAvgPool, SqueezeExcite, conv2d, init_weights, make_divisible

__all__ = ["BlockSpec", "GhostBottleneck", "GhostNet", "GHOSTNET_V1_ARCH"]


class BlockSpec(NamedTuple):
    kernel: int  # depthwise kernel of the bottleneck (and of its shortcut)
    exp: int  # hidden (expansion) channels before width scaling
    out: int  # output channels before width scaling
    se_ratio: float  # 0 for no squeeze-excite
    stride: int


# One inner tuple per stage, as in the paper's Table 1 (stage boundaries fix the parameter names).
GHOSTNET_V1_ARCH: Tuple[Tuple[BlockSpec, ...], ...] = tuple(tuple(BlockSpec(*row) for row in stage) for stage in (
    ((3, 16, 16, 0, 1),),
    ((3, 48, 24, 0, 2),),
    ((3, 72, 24, 0, 1),),
    ((5, 72, 40, 0.25, 2),),
    ((5, 120, 40, 0.25, 1),),
    ((3, 240, 80, 0, 2),),
    ((3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1)),
    ((5, 672, 160, 0.25, 2),),
    ((5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)),
))


class GhostBottleneck(nn.Cell):
    """ghost1 (expand, ReLU) → [depthwise k×k stride s + BN] → [SE] → ghost2 (project, linear) + shortcut."""

    def __init__(
        self,
        in_chs: int,
        mid_chs: int,
        out_chs: int,
        dw_kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
        ratio: int = 2,
        dw_size: int = 3,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.ghost1 = GhostModule(in_chs, mid_chs, ratio=ratio, dw_size=dw_size, relu=True)
        if stride > 1:
            self.conv_dw = conv2d(mid_chs, mid_chs, dw_kernel_size, stride, groups=mid_chs)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.has_se = se_ratio > 0
        self.se = SqueezeExcite(mid_chs, rd_ratio=se_ratio, divisor=4) if self.has_se else None
        self.ghost2 = GhostModule(mid_chs, out_chs, ratio=ratio, dw_size=dw_size, relu=False)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.SequentialCell([
                conv2d(in_chs, in_chs, dw_kernel_size, stride, groups=in_chs),
                nn.BatchNorm2d(in_chs),
                conv2d(in_chs, out_chs, 1),
                nn.BatchNorm2d(out_chs),
            ])

    def construct(self, x: Tensor) -> Tensor:
        shortcut = self.shortcut(x)
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.bn_dw(self.conv_dw(x))
        if self.has_se:
            x = self.se(x)
        x = self.ghost2(x)
        return x + shortcut  # not `+=`: an in-place add has no ONNX mapping


class GhostNet(FeatureMixin, ClassifierHeadMixin, nn.Cell):
    """GhostNet v1 with any width multiplier and any Ghost-module ratio `ratio` (s) and cheap kernel `dw_size` (d)."""

    def __init__(
        self,
        arch: Sequence[Sequence[BlockSpec]] = GHOSTNET_V1_ARCH,
        num_classes: int = 1000,
        width: float = 1.0,
        in_channels: int = 3,
        drop_rate: float = 0.2,
        ratio: int = 2,
        dw_size: int = 3,
        block_fn: Optional[Callable[[int, int, int, int, BlockSpec], nn.Cell]] = None,
    ) -> None:
        """`block_fn(index, in_chs, mid_chs, out_chs, spec)` builds each bottleneck (GhostNetV2 passes its own)."""
        super().__init__()
        if block_fn is None:
            def block_fn(index: int, in_chs: int, mid_chs: int, out_chs: int, spec: BlockSpec) -> nn.Cell:
                return GhostBottleneck(in_chs, mid_chs, out_chs, spec.kernel, spec.stride, spec.se_ratio,
                                       ratio=ratio, dw_size=dw_size)
        self.num_classes = num_classes
        stem_chs = make_divisible(16 * width, 4)
        self.conv_stem = conv2d(in_channels, stem_chs, 3, 2)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU()
        prev_chs = stem_chs
        # Backbone maps (timm's convention): the stem, then each stage that halves the resolution, at its end.
        self.feature_info = [feature_dict(stem_chs, 2, "act1")]
        reduction = 2
        stages = []
        index = 0
        for stage_index, stage in enumerate(arch):
            blocks = []
            for spec in stage:
                out_chs = make_divisible(spec.out * width, 4)
                blocks.append(block_fn(index, prev_chs, make_divisible(spec.exp * width, 4), out_chs, spec))
                prev_chs = out_chs
                index += 1
            stages.append(nn.SequentialCell(blocks))
            if any(spec.stride > 1 for spec in stage):
                reduction *= 2
                self.feature_info.append(feature_dict(prev_chs, reduction, f"blocks.{stage_index}"))
        head_chs = make_divisible(arch[-1][-1].exp * width, 4)
        stages.append(ConvBnAct(prev_chs, head_chs, 1))
        self.blocks = nn.SequentialCell(stages)
        self.trunk_names = ("conv_stem", "bn1", "act1") + tuple(f"blocks.{i}" for i in range(len(stages)))
        self.num_features = 1280  # the 1×1 head conv width is fixed, not scaled with `width`
        self.conv_head = conv2d(head_chs, self.num_features, 1, bias=True)
        self.act2 = nn.ReLU()
        self.global_pool = GlobalAvgPool()
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(p=drop_rate) if drop_rate > 0 else nn.Identity()
        self.classifier = self.make_classifier(num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        return self.blocks(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.flatten(self.act2(self.conv_head(self.global_pool(x))))
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))


def checkpoint_filter_fn(state_dict: Dict[str, np.ndarray], model: nn.Cell) -> Dict[str, np.ndarray]:
    """PyTorch GhostNet names (huawei-noah reference, timm, official GhostNetV2 files) → mindghost names: the final
    1×1 conv-BN-ReLU `blocks.9.0.{conv,bn1}` → MindCV's `blocks.9.features.{0,1}`, then BatchNorm's names."""

    last = f"blocks.{len(model.blocks) - 1}"

    def rename(key: str) -> str:  # the final 1×1 conv-BN-ReLU: `.0.conv`/`.0.bn1` → MindCV's `.features.{0,1}`
        return key.replace(last + ".0.conv.", last + ".features.0.").replace(last + ".0.bn1.", last + ".features.1.")

    return rename_torch_state_dict(state_dict, model, rename)


def _cfg(**kwargs) -> DefaultCfg:
    return DefaultCfg(paper="GhostNet, CVPR 2020 (arXiv 1911.11907)", **kwargs)


default_cfgs = {
    # MindCV ghostnet_*-*.ckpt (8× Ascend 910) top-1: 66.03 / 73.78 / 75.50; official 1.0x .pth: 73.98.
    "ghostnet_050": _cfg(paper_top1=66.2),
    "ghostnet_100": _cfg(paper_top1=73.9),
    "ghostnet_130": _cfg(paper_top1=75.7),
}

_entry = register_variants(GhostNet, {
    "ghostnet_050": Variant({"width": 0.5}, "GhostNet-0.5x: 2.59M params, 42.3M MACs at 224."),
    "ghostnet_100": Variant({"width": 1.0}, "GhostNet-1.0x: 5.18M params, 141.2M MACs at 224."),
    "ghostnet_130": Variant({"width": 1.3}, "GhostNet-1.3x: 7.36M params, 227.0M MACs at 224."),
})

# One line per registered name, so that `from mindghost.models.<family> import <name>` works and editors find it.
ghostnet_050 = _entry["ghostnet_050"]
ghostnet_100 = _entry["ghostnet_100"]
ghostnet_130 = _entry["ghostnet_130"]
