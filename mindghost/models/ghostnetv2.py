"""GhostNetV2 (Ghost modules with DFC attention) in MindSpore.

Paper: "GhostNetV2: Enhance Cheap Operation with Long-Range Attention", Tang et al., NeurIPS 2022
(arXiv 2211.12905). Reference code: huawei-noah/Efficient-AI-Backbones
`ghostnetv2_pytorch/model/ghostnetv2_torch.py`; timm `ghostnet.py` (`GhostModuleV2`, `version='v2'`).
The architecture table, the bottleneck and the head are GhostNet v1's (see ghostnet.py); only the expansion
Ghost module of every bottleneck from the third on gains a decoupled fully-connected (DFC) attention branch.
Parameter names are the PyTorch ones except for MindSpore's BatchNorm names and the final 1×1 stage
(`blocks.9.features.{0,1}`, as in v1/MindCV), so timm's and the official checkpoints
(`ck_ghostnetv2_{10,13,16}.pth.tar`) load through `checkpoint_filter_fn`.
"""
from typing import Any, Dict, Mapping

import numpy as np

from mindspore import Tensor, nn, ops

from ..weights import unwrap_state_dict
from ._registry import DefaultCfg, Variant, register_variants
from .ghostnet import BlockSpec, GhostBottleneck, GhostNet
from .ghostnet import checkpoint_filter_fn as ghostnet_filter_fn
from .layers import GateMultiply, GhostModule, conv2d, init_weights_torch_default

__all__ = ["GhostModuleV2", "GhostBottleneckV2", "GhostNetV2", "dfc_short_conv"]


def dfc_short_conv(inp: int, oup: int, kernel_size: int = 1, stride: int = 1) -> nn.SequentialCell:
    """The DFC attention branch before its sigmoid, run on the 2×2-pooled module input: conv (as the module's
    primary conv) + BN → depthwise (1, 5) + BN → depthwise (5, 1) + BN. GhostNetV2 and V3 share it (`short_conv`)."""
    return nn.SequentialCell([
        conv2d(inp, oup, kernel_size, stride),
        nn.BatchNorm2d(oup),
        conv2d(oup, oup, (1, 5), groups=oup),
        nn.BatchNorm2d(oup),
        conv2d(oup, oup, (5, 1), groups=oup),
        nn.BatchNorm2d(oup),
    ])


class GhostModuleV2(GhostModule):
    """A Ghost module (v1's `primary_conv` + `cheap_operation`) scaled by a DFC attention gate.

    The gate is computed from the module's input at half resolution: 2×2 average pool → `short_conv`
    (1×1 conv + BN → depthwise (1, 5) conv + BN → depthwise (5, 1) conv + BN) → sigmoid → nearest upsample to
    the output's size. Cell names are the reference's, so PyTorch weights map one to one. `relu` is always on:
    only expansion modules carry attention.

    The upsample and product are `layers.GateMultiply` (PyTorch's nearest rule, so no slice is needed for odd
    sizes; tests/test_parity.py checks odd and even sizes).
    """

    def __init__(self, inp: int, oup: int, kernel_size: int = 1, ratio: int = 2, dw_size: int = 3,
                 stride: int = 1, cheap_op: str = "dw") -> None:
        super().__init__(inp, oup, kernel_size=kernel_size, ratio=ratio, dw_size=dw_size, stride=stride, relu=True,
                         cheap_op=cheap_op)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2, pad_mode="valid")  # floor mode, as F.avg_pool2d
        self.short_conv = dfc_short_conv(inp, oup, kernel_size, stride)
        self.gate = nn.Sigmoid()
        self.multiply = GateMultiply()

    def construct(self, x: Tensor) -> Tensor:
        gate = self.gate(self.short_conv(self.pool(x)))
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = ops.concat((x1, x2), axis=1)
        if self.trim:  # a no-op slice is slow on CPU, so cut only when the concat is wider than `oup`
            out = out[:, : self.oup]
        return self.multiply(out, gate)


class GhostBottleneckV2(GhostBottleneck):
    """GhostNet v1's bottleneck, with DFC attention on the expansion Ghost module when `attn` is set."""

    def __init__(self, in_chs: int, mid_chs: int, *args: Any, attn: bool = True, ratio: int = 2, dw_size: int = 3,
                 cheap_op: str = "dw", **kwargs: Any) -> None:
        """`GhostBottleneck`'s arguments (in_chs, mid_chs, out_chs, dw_kernel_size, stride, se_ratio, ratio,
        dw_size, cheap_op) plus `attn`."""
        super().__init__(in_chs, mid_chs, *args, ratio=ratio, dw_size=dw_size, cheap_op=cheap_op, **kwargs)
        if attn:  # replaces v1's plain module (same construct, same names plus `short_conv.*`)
            self.ghost1 = GhostModuleV2(in_chs, mid_chs, ratio=ratio, dw_size=dw_size, cheap_op=cheap_op)


class GhostNetV2(GhostNet):
    """GhostNetV2 with any width multiplier; bottlenecks with a global index ≥ `attn_from` use DFC attention."""

    def __init__(self, *args: Any, attn_from: int = 2, ratio: int = 2, dw_size: int = 3, cheap_op: str = "dw",
                 **kwargs: Any) -> None:
        """`GhostNet`'s arguments (arch, num_classes, width, in_channels, drop_rate, ratio, dw_size, cheap_op) plus
        `attn_from`, the first bottleneck index with DFC attention."""
        def block_fn(index: int, in_chs: int, mid_chs: int, out_chs: int, spec: BlockSpec) -> nn.Cell:
            return GhostBottleneckV2(in_chs, mid_chs, out_chs, spec.kernel, spec.stride, spec.se_ratio,
                                     attn=index >= attn_from, ratio=ratio, dw_size=dw_size, cheap_op=cheap_op)

        super().__init__(*args, ratio=ratio, dw_size=dw_size, block_fn=block_fn, cheap_op=cheap_op, **kwargs)
        init_weights_torch_default(self)  # the reference (ghostnetv2_torch.py) leaves init to PyTorch

    def init_classifier(self) -> None:
        """Re-initialise the classifier as the reference does (PyTorch's default `nn.Linear` init)."""
        init_weights_torch_default(self.classifier)


def checkpoint_filter_fn(state_dict: Mapping[str, object], model: nn.Cell) -> Dict[str, np.ndarray]:
    """PyTorch GhostNetV2 names (timm `ghostnetv2_*` or the official `ck_ghostnetv2_*.pth.tar`) → mindghost names:
    v1's mapping (ghostnet.checkpoint_filter_fn). The official files' wrappers (`state_dict`, `model`), DataParallel
    `module.` prefixes and thop's `total_ops`/`total_params` are dropped on the way."""
    return ghostnet_filter_fn(unwrap_state_dict(state_dict), model)


def _cfg(**kwargs) -> DefaultCfg:
    # timm's in1k weights (ported from the official ones) are evaluated with bicubic resize, crop 0.875.
    return DefaultCfg(interpolation="bicubic", paper="GhostNetV2, NeurIPS 2022 (arXiv 2211.12905)", **kwargs)


default_cfgs = {
    # timm ghostnetv2_*.in1k top-1: 75.186 / 76.746 / 77.836.
    "ghostnetv2_100": _cfg(paper_top1=75.3),
    "ghostnetv2_130": _cfg(paper_top1=76.9),
    "ghostnetv2_160": _cfg(paper_top1=77.8),
}

_entry = register_variants(GhostNetV2, {
    "ghostnetv2_100": Variant({"width": 1.0}, "GhostNetV2-1.0x: 6.16M params, 167.0M MACs at 224."),
    "ghostnetv2_130": Variant({"width": 1.3}, "GhostNetV2-1.3x: 8.96M params, 269.3M MACs at 224."),
    "ghostnetv2_160": Variant({"width": 1.6}, "GhostNetV2-1.6x: 12.39M params, 398.6M MACs at 224."),
})

# One line per registered name, so that `from mindghost.models.<family> import <name>` works and editors find it.
ghostnetv2_100 = _entry["ghostnetv2_100"]
ghostnetv2_130 = _entry["ghostnetv2_130"]
ghostnetv2_160 = _entry["ghostnetv2_160"]
