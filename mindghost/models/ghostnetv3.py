"""GhostNetV3 (re-parameterised Ghost blocks) in MindSpore.

Paper: "GhostNetV3: Exploring the Training Strategies for Compact Models", Liu et al., 2024 (arXiv 2404.11202).
Reference code: huawei-noah/Efficient-AI-Backbones `ghostnetv3_pytorch/ghostnetv3.py`; timm `ghostnet.py`
(`GhostModuleV3`, `GhostBottleneckV3`, `version='v3'`), whose parameter names we follow.

The inference network is GhostNetV2's (same stage table, DFC attention on the expansion module from block 2
on). What changes is the training-time form: each conv that V2 follows by a BN is replaced by a sum of
branches, all linear until the activation, so they fold into one conv + bias for inference:

| site | k×k conv+BN branches | 1×1 conv+BN `*_rpr_scale` | BN-only `*_rpr_skip` |
|---|---|---|---|
| Ghost module primary conv (1×1) | `primary_rpr_conv.{0,1,2}` | — (the kernel is already 1×1) | — (as timm) |
| Ghost module cheap op (3×3 depthwise) | `cheap_rpr_conv.{0,1,2}` | `cheap_rpr_scale` | `cheap_rpr_skip` |
| bottleneck stride-2 depthwise | `dw_rpr_conv.{0,1,2}` | `dw_rpr_scale` (stride 2) | — (stride 2) |

Fused names: `primary_conv.0`, `cheap_operation.0` (with bias; the activation is `.1`) and `conv_dw` (with
bias, no `bn_dw`), as timm's `convert_to_deploy()` leaves them. `model.reparameterize()` fuses in place;
`create_model(name, reparameterized=True)` builds the fused form directly (to load fused checkpoints).
"""
import math
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from mindspore import Tensor, nn, ops

from ..weights import CheckpointError
from ._registry import DefaultCfg, Variant, register_variants
from ._reparam import forget_compiled_graphs
from .ghostnet import GHOSTNET_V1_ARCH, BlockSpec, GhostBottleneck, GhostNet
from .ghostnetv2 import checkpoint_filter_fn as _v2_checkpoint_filter_fn
from .ghostnetv2 import dfc_short_conv
from .layers import GateMultiply, conv2d, init_weights_torch_default

__all__ = ["GhostModuleV3", "GhostBottleneckV3", "GhostNetV3", "fuse_branches"]

NUM_BRANCHES = 3  # k×k branches per site in the paper's and timm's models
BN_EPS = 1e-5  # MindSpore's and PyTorch's BatchNorm2d default; the reference's BNs all use it


class ConvBn(nn.Cell):
    """conv → BN, no activation: one re-parameterisation branch. Named `conv`/`bn1` like timm's ConvBnAct."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = conv2d(in_chs, out_chs, kernel_size, stride, groups=groups)
        self.bn1 = nn.BatchNorm2d(out_chs, eps=BN_EPS)

    def construct(self, x: Tensor) -> Tensor:
        return self.bn1(self.conv(x))


def branch_sum(x: Tensor, convs: nn.CellList, scale: Optional[nn.Cell], skip: Optional[nn.Cell]) -> Tensor:
    """Σ conv_i(x) + scale(x) + skip(x): the training-time form of one re-parameterisable conv."""
    out = convs[0](x)
    for i in range(1, len(convs)):
        out = out + convs[i](x)
    if scale is not None:
        out = out + scale(x)
    if skip is not None:
        out = out + skip(x)
    return out


def _bn_affine(state: Mapping[str, np.ndarray], bn: str, eps: float) -> Tuple[np.ndarray, np.ndarray]:
    """Eval-mode BN `bn` as y = a·x + b (float64)."""
    gamma, beta, mean, var = (np.asarray(state[f"{bn}.{k}"], np.float64)
                              for k in ("gamma", "beta", "moving_mean", "moving_variance"))
    a = gamma / np.sqrt(var + eps)
    return a, beta - mean * a


def fuse_branches(state: Mapping[str, np.ndarray], site: str, eps: float = BN_EPS
                  ) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Fold the branches of one site into a single conv: returns (weight, bias, branch keys used).

    `state` maps mindghost names to arrays; `site` is the branches' prefix, e.g. `blocks.1.0.ghost1.cheap`:
    `{site}_rpr_conv.{i}.conv.weight` (out, in/groups, k, k) with `.bn1.*`, optionally `{site}_rpr_scale.*`
    (a 1×1 conv, placed at the kernel's centre: with padding k//2 it reads the same input pixel at any stride)
    and `{site}_rpr_skip.*` (a BN on the input, i.e. an identity kernel scaled per channel). Every branch is
    linear in eval mode, so the sum is one conv: W = Σ a_j·W_j, b = Σ b_j (computed in float64).
    Raises KeyError naming the first missing key.
    """
    convs = sorted({int(m.group(1)) for k in state for m in [re.match(re.escape(site) + r"_rpr_conv\.(\d+)\.", k)]
                    if m})
    if not convs:
        raise KeyError(f"{site}_rpr_conv.0.conv.weight")
    used: List[str] = []
    weight: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None

    def add(w: np.ndarray, b: np.ndarray) -> None:
        nonlocal weight, bias
        weight = w if weight is None else weight + w
        bias = b if bias is None else bias + b

    for i in convs:
        branch = f"{site}_rpr_conv.{i}"
        w = np.asarray(state[f"{branch}.conv.weight"], np.float64)
        a, b = _bn_affine(state, f"{branch}.bn1", eps)
        add(w * a.reshape(-1, 1, 1, 1), b)
        used += [f"{branch}.conv.weight"] + [f"{branch}.bn1.{k}" for k in ("gamma", "beta", "moving_mean",
                                                                           "moving_variance")]
    k = weight.shape[-1]
    if f"{site}_rpr_scale.conv.weight" in state:
        w = np.asarray(state[f"{site}_rpr_scale.conv.weight"], np.float64)
        a, b = _bn_affine(state, f"{site}_rpr_scale.bn1", eps)
        pad = (k - w.shape[-1]) // 2
        add(np.pad(w * a.reshape(-1, 1, 1, 1), ((0, 0), (0, 0), (pad, pad), (pad, pad))), b)
        used += [f"{site}_rpr_scale.conv.weight"] + [f"{site}_rpr_scale.bn1.{n}" for n in
                                                     ("gamma", "beta", "moving_mean", "moving_variance")]
    if f"{site}_rpr_skip.gamma" in state:
        a, b = _bn_affine(state, f"{site}_rpr_skip", eps)
        out_chs, in_per_group = weight.shape[:2]
        identity = np.zeros_like(weight)
        identity[np.arange(out_chs), np.arange(out_chs) % in_per_group, k // 2, k // 2] = 1.0
        add(identity * a.reshape(-1, 1, 1, 1), b)
        used += [f"{site}_rpr_skip.{n}" for n in ("gamma", "beta", "moving_mean", "moving_variance")]
    return weight.astype(np.float32), bias.astype(np.float32), used


class _Reparameterizable:
    """For cells with re-parameterisation sites. `rep_sites` maps each site's branch prefix to the name of its
    fused conv (`{"cheap": "cheap_operation.0"}`); `_geometry[site]` = (in, out, kernel, stride, groups);
    `_install_fused(site, conv)` puts the fused conv in place."""

    rep_sites: Dict[str, str] = {}
    reparameterized = False

    def _add_branches(self, site: str, num_branches: int, scale: bool, skip: bool) -> None:
        in_chs, out_chs, kernel, stride, groups = self._geometry[site]
        setattr(self, f"{site}_rpr_conv", nn.CellList([ConvBn(in_chs, out_chs, kernel, stride, groups)
                                                       for _ in range(num_branches)]))
        setattr(self, f"{site}_rpr_scale", ConvBn(in_chs, out_chs, 1, stride, groups) if scale else None)
        setattr(self, f"{site}_rpr_skip", nn.BatchNorm2d(in_chs, eps=BN_EPS) if skip else None)

    def _fused_conv(self, site: str) -> nn.Conv2d:
        in_chs, out_chs, kernel, stride, groups = self._geometry[site]
        return conv2d(in_chs, out_chs, kernel, stride, groups=groups, bias=True)

    def reparameterize(self) -> None:
        """Fold every site's branches into one conv with bias, in place (eval-mode BN statistics are used)."""
        if self.reparameterized:
            return
        local = {name: p.asnumpy() for name, p in self.parameters_and_names()}
        for site, fused_name in self.rep_sites.items():
            first = getattr(self, f"{site}_rpr_conv")[0].conv.weight.name  # full name: gives our place in the model
            base = first[: len(first) - len(f"{site}_rpr_conv.0.conv.weight")]
            weight, bias, _ = fuse_branches(local, site)
            conv = self._fused_conv(site)
            conv.weight.set_data(Tensor(weight))
            conv.bias.set_data(Tensor(bias))
            for suffix in ("_rpr_conv", "_rpr_scale", "_rpr_skip"):
                delattr(self, site + suffix)
            self._install_fused(site, conv)
            root = fused_name.split(".")[0]
            for name, p in self.parameters_and_names():  # a cell attached late only carries its local names
                if name.split(".")[0] == root:
                    p.name = base + name
        self.reparameterized = True


class GhostModuleV3(_Reparameterizable, nn.Cell):
    """A Ghost module whose primary conv and cheap op are re-parameterisable; with `attn`, GhostNetV2's DFC gate.

    Input (N, inp, H, W) → output (N, oup, H/stride, W/stride). Train form: see the module docstring; fused
    form (`reparameterized=True` or after `reparameterize()`): `primary_conv` = [conv+bias, act] and
    `cheap_operation` = [depthwise conv+bias, act], i.e. GhostNetV2's module with its BNs folded.
    """

    rep_sites = {"primary": "primary_conv.0", "cheap": "cheap_operation.0"}

    def __init__(self, inp: int, oup: int, kernel_size: int = 1, ratio: int = 2, dw_size: int = 3, stride: int = 1,
                 relu: bool = True, attn: bool = False, num_branches: int = NUM_BRANCHES,
                 reparameterized: bool = False) -> None:
        super().__init__()
        if ratio < 2:
            raise ValueError(f"Ghost module ratio s must be >= 2 (s=1 would have no cheap features), got {ratio}")
        if num_branches < 1:
            raise ValueError(f"num_branches must be >= 1 (the k×k conv+BN branches per site), got {num_branches}")
        self.oup = oup
        init_chs = math.ceil(oup / ratio)
        new_chs = init_chs * (ratio - 1)
        self.trim = init_chs + new_chs != oup  # as GhostModule: cut only when the concat is wider than `oup`
        self._geometry = {"primary": (inp, init_chs, kernel_size, stride, 1),
                          "cheap": (init_chs, new_chs, dw_size, 1, init_chs)}
        self.relu = relu
        if reparameterized:
            self._install_fused("primary", self._fused_conv("primary"))
            self._install_fused("cheap", self._fused_conv("cheap"))
        else:
            # timm (and the authors, for every registered width) have no primary skip; a 1×1 kernel needs no scale
            self._add_branches("primary", num_branches, scale=kernel_size > 1, skip=False)
            self._add_branches("cheap", num_branches, scale=dw_size > 1, skip=init_chs == new_chs)
            self.primary_activation = nn.ReLU() if relu else nn.Identity()
            self.cheap_activation = nn.ReLU() if relu else nn.Identity()
        self.reparameterized = reparameterized
        self.attn = attn
        if attn:
            self.pool = nn.AvgPool2d(kernel_size=2, stride=2, pad_mode="valid")  # floor mode, as F.avg_pool2d
            self.short_conv = dfc_short_conv(inp, oup, kernel_size, stride)
            self.gate = nn.Sigmoid()
            self.multiply = GateMultiply()

    def _install_fused(self, site: str, conv: nn.Conv2d) -> None:
        act = nn.ReLU() if self.relu else nn.Identity()
        if site == "primary":
            self.primary_conv = nn.SequentialCell([conv, act])
        else:
            self.cheap_operation = nn.SequentialCell([conv, act])

    def construct(self, x: Tensor) -> Tensor:
        if self.reparameterized:
            x1 = self.primary_conv(x)
            x2 = self.cheap_operation(x1)
        else:
            x1 = self.primary_activation(branch_sum(x, self.primary_rpr_conv, self.primary_rpr_scale,
                                                    self.primary_rpr_skip))
            x2 = self.cheap_activation(branch_sum(x1, self.cheap_rpr_conv, self.cheap_rpr_scale, self.cheap_rpr_skip))
        out = ops.concat((x1, x2), axis=1)
        if self.trim:
            out = out[:, : self.oup]
        if self.attn:
            out = self.multiply(out, self.gate(self.short_conv(self.pool(x))))
        return out


class GhostBottleneckV3(_Reparameterizable, GhostBottleneck):
    """GhostNet's bottleneck (shortcut, SE, layout from ghostnet.py) with V3 Ghost modules and, at stride 2, a
    re-parameterisable depthwise conv: `dw_rpr_conv.{i}` k×k + `dw_rpr_scale` 1×1, both stride 2."""

    rep_sites = {"dw": "conv_dw"}

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1,
                 se_ratio: float = 0.0, attn: bool = False, ratio: int = 2, dw_size: int = 3,
                 num_branches: int = NUM_BRANCHES, reparameterized: bool = False) -> None:
        super().__init__(in_chs, mid_chs, out_chs, dw_kernel_size, stride, se_ratio, ratio=ratio, dw_size=dw_size)
        module = dict(ratio=ratio, dw_size=dw_size, num_branches=num_branches, reparameterized=reparameterized)
        self.ghost1 = GhostModuleV3(in_chs, mid_chs, relu=True, attn=attn, **module)
        self.ghost2 = GhostModuleV3(mid_chs, out_chs, relu=False, **module)
        self.rep_sites = {"dw": "conv_dw"} if stride > 1 else {}
        if stride > 1:
            del self.conv_dw, self.bn_dw  # v1's conv + BN; V3 has the branches, or one conv with bias
            self._geometry = {"dw": (mid_chs, mid_chs, dw_kernel_size, stride, mid_chs)}
            if reparameterized:
                self._install_fused("dw", self._fused_conv("dw"))
            else:
                self._add_branches("dw", num_branches, scale=dw_kernel_size > 1, skip=False)
        self.reparameterized = reparameterized

    def _install_fused(self, site: str, conv: nn.Conv2d) -> None:
        self.conv_dw = conv

    def construct(self, x: Tensor) -> Tensor:
        shortcut = self.shortcut(x)
        x = self.ghost1(x)
        if self.stride > 1:
            if self.reparameterized:
                x = self.conv_dw(x)
            else:
                x = branch_sum(x, self.dw_rpr_conv, self.dw_rpr_scale, self.dw_rpr_skip)
        if self.has_se:
            x = self.se(x)
        x = self.ghost2(x)
        return x + shortcut  # not `+=`: an in-place add has no ONNX mapping


class GhostNetV3(GhostNet):
    """GhostNetV3 at any width: GhostNetV2's network with re-parameterisable convs (see the module docstring).

    `reparameterized=True` builds the fused inference form; `reparameterize()` turns a train-form model into it.
    `model.reparameterized` says which form a model is in.
    """

    def __init__(
        self,
        arch: Sequence[Sequence[BlockSpec]] = GHOSTNET_V1_ARCH,
        num_classes: int = 1000,
        width: float = 1.0,
        in_channels: int = 3,
        drop_rate: float = 0.2,
        attn_from: int = 2,
        ratio: int = 2,
        dw_size: int = 3,
        num_branches: int = NUM_BRANCHES,
        reparameterized: bool = False,
        cheap_op: str = "dw",
    ) -> None:
        """`cheap_op` is accepted for the family's common signature, and only as `dw`: V3's cheap operation is a
        sum of re-parameterisable depthwise conv branches that fold into one d×d depthwise conv; the other cheap
        operations (`layers.CHEAP_OPS`) have no such branches (use ghostnet_* or ghostnetv2_* for them)."""
        if cheap_op != "dw":
            raise ValueError(f"GhostNetV3 supports cheap_op 'dw' only (its re-parameterised branches are depthwise "
                             f"convs), got {cheap_op!r}; the other cheap operations are on ghostnet_* and ghostnetv2_*")

        def block_fn(index: int, in_chs: int, mid_chs: int, out_chs: int, spec: BlockSpec) -> nn.Cell:
            return GhostBottleneckV3(in_chs, mid_chs, out_chs, spec.kernel, spec.stride, spec.se_ratio,
                                     attn=index >= attn_from, ratio=ratio, dw_size=dw_size,
                                     num_branches=num_branches, reparameterized=reparameterized)

        super().__init__(arch, num_classes, width, in_channels, drop_rate, ratio, dw_size, block_fn=block_fn)
        self.reparameterized = reparameterized
        # The reference (timm's ghostnet.py, the authors' training code) keeps PyTorch's default init. v1's
        # He-normal fan_out, given to every branch of a site, makes each branch add its variance: eval-mode logits
        # of the train form start near 1e9 instead of timm's ~0.05 (tests/test_v3_init.py).
        init_weights_torch_default(self)

    def init_classifier(self) -> None:
        """Re-initialise the classifier as the reference does (PyTorch's default `nn.Linear` init)."""
        init_weights_torch_default(self.classifier)

    def reparameterize(self) -> "GhostNetV3":
        """Fuse every site in place (timm's `convert_to_deploy()`); a no-op when already fused. Returns self.

        Uses the BN moving statistics, so the eval-mode function is unchanged (to float rounding, ~1e-6
        relative); the training-mode function is not (batch statistics no longer apply)."""
        if not self.reparameterized:
            for _, cell in list(self.cells_and_names()):
                if isinstance(cell, _Reparameterizable):
                    cell.reparameterize()
            self.reparameterized = True
            forget_compiled_graphs(self)
        return self

    @staticmethod
    def checkpoint_form(keys: Sequence[str]) -> Optional[str]:
        """"fused" if checkpoint `keys` hold fused Ghost modules (`...primary_conv.0.weight`: timm's
        `convert_to_deploy()` files, the authors' re-parameterised files, our fused saves), "train" if they hold
        branches only (`_rpr_`), None when neither shows (not a GhostNetV3 checkpoint). `weights.load_checkpoint`
        uses it to load either form into either model."""
        if any(k.endswith(("primary_conv.0.weight", "cheap_operation.0.weight")) for k in keys):
            return "fused"
        if any("_rpr_" in k for k in keys):
            return "train"
        return None


_AUTHORS_BN = re.compile(r"(_rpr_(?:conv\.\d+|scale))\.bn\.")  # the authors' conv+BN branches are `conv`/`bn`
_BRANCH_BN = re.compile(r"(_rpr_(?:conv\.\d+\.bn1|scale\.bn1|skip))\.(weight|bias)$")


def checkpoint_filter_fn(state_dict: Mapping[str, object], model: nn.Cell) -> Dict[str, np.ndarray]:
    """PyTorch GhostNetV3 weights (timm `ghostnetv3_*`, or the authors' `ghostnetv3-1.0.pth.tar`) → mindghost names,
    for a model in either form.

    timm and the authors name the branches alike except the branch BN: timm `*_rpr_conv.{i}.bn1`, the authors'
    `*_rpr_conv.{i}.bn` (their conv+BN is a Sequential of `conv`, `bn`). Wrappers (`state_dict`/`model`),
    `module.` prefixes and profiler entries are handled as for GhostNetV2. Fused files: timm's
    `convert_to_deploy()` fuses every site; the authors' `reparameterize()` fuses only the Ghost modules and keeps
    the bottleneck's `dw_rpr_*` branches. Into a fused model (`reparameterized=True`) any site still in branch
    form is fused here; into a train-form model a fused file cannot go (branches cannot be recovered from their
    sum): CheckpointError says to build the fused form.
    """
    state = _v2_checkpoint_filter_fn(state_dict, model)  # wrappers, `module.`, last stage, BN running stats
    out: Dict[str, np.ndarray] = {}
    for key, value in state.items():
        key = _AUTHORS_BN.sub(r"\1.bn1.", key)
        key = _BRANCH_BN.sub(lambda m: m.group(1) + (".gamma" if m.group(2) == "weight" else ".beta"), key)
        out[key] = value
    params = model.parameters_dict()
    for name, cell in model.cells_and_names():
        for site, fused in getattr(cell, "rep_sites", {}).items():
            prefix, fused_weight = f"{name}.{site}", f"{name}.{fused}.weight"
            has_branches = f"{prefix}_rpr_conv.0.conv.weight" in out
            if fused_weight in params and fused_weight not in out and has_branches:
                weight, bias, used = fuse_branches(out, prefix)
                for key in used:
                    del out[key]
                out[fused_weight], out[f"{name}.{fused}.bias"] = weight, bias
            elif fused_weight not in params and fused_weight in out:
                raise CheckpointError(
                    f"The weights are GhostNetV3's fused (re-parameterised) form ('{fused_weight}'), the model is "
                    "the training form: build it with create_model(name, reparameterized=True).")
    return out


def _cfg(**kwargs) -> DefaultCfg:
    # timm's ghostnetv3_100.in1k (ported from the authors' weights) is evaluated with bicubic resize, crop 0.875.
    return DefaultCfg(interpolation="bicubic", paper="GhostNetV3, arXiv 2404.11202 (2024)", **kwargs)


default_cfgs = {
    # Paper top-1 (600 epochs with distillation): 1.0x 77.1, 1.3x 79.1; timm ghostnetv3_100.in1k 76.936.
    # 0.5x and 1.6x: not in the sources we could check, so left unset.
    "ghostnetv3_050": _cfg(),
    "ghostnetv3_100": _cfg(paper_top1=77.1),
    "ghostnetv3_130": _cfg(paper_top1=79.1),
    "ghostnetv3_160": _cfg(),
}

_entry = register_variants(GhostNetV3, {
    "ghostnetv3_050": Variant({"width": 0.5}, "GhostNetV3-0.5x: 3.40M params to train, 2.85M fused."),
    "ghostnetv3_100": Variant({"width": 1.0}, "GhostNetV3-1.0x: 8.13M params to train, 6.15M fused."),
    "ghostnetv3_130": Variant({"width": 1.3}, "GhostNetV3-1.3x: 12.22M params to train, 8.95M fused."),
    "ghostnetv3_160": Variant({"width": 1.6}, "GhostNetV3-1.6x: 17.28M params to train, 12.38M fused."),
})

# One line per registered name, so that `from mindghost.models.<family> import <name>` works and editors find it.
ghostnetv3_050 = _entry["ghostnetv3_050"]
ghostnetv3_100 = _entry["ghostnetv3_100"]
ghostnetv3_130 = _entry["ghostnetv3_130"]
ghostnetv3_160 = _entry["ghostnetv3_160"]
