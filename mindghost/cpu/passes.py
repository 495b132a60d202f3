"""The CPU pass: swap a built model's cells for faster CPU forms, and swap them back.

Models are plain MindSpore cells on every device (`create_model` compiles nothing and writes nothing). On CPU
two cells have faster equivalents, measured in docs/performance.md:
- eligible depthwise `nn.Conv2d` → `DepthwiseConv2d`, mindghost's own kernel (train step ~1.6x faster);
- `GlobalAvgPool` (ReduceMean) → `AvgPoolGlobalPool`, an AvgPool over the whole map (MindSpore's CPU ReduceMean
  is ~4x slower forward, ~2.6x forward+backward; results differ by ~1e-7).
All keep the Parameter objects, so checkpoints and names are unchanged; apply the pass before the optimizer
or train step is built (they capture cells when compiled). Custom ops do not export: `restore` (or the `plain`
context manager) gives back the plain cells.
"""
import logging
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import mindspore as ms
from mindspore import Tensor, nn, ops

from ..models.layers import GateMultiply, GlobalAvgPool
from ..runtime import detect_device
from .batchnorm import BatchNormKernel, ReLUFusedInTraining, eligible_bn
from .depthwise import DepthwiseConv2d, _SharedCustom, eligible, kernel_library, share_parameters
from .gate import GateMultiplyKernel

_LOG = logging.getLogger("mindghost")

# (parent, child name, cell that was there, cell put there)
Swap = Tuple[nn.Cell, str, nn.Cell, nn.Cell]
_OPS: Dict[str, Callable] = {}


class MatMulConv2d(nn.Conv2d):
    """A 1×1 `nn.Conv2d` (stride 1, no padding, one group) that runs as one MatMul when its input map is 1×1 (SE
    blocks and the head after the global pool) and the batch is at least `MIN_BATCH`: (N, C, 1, 1) → (N, C) · Wᵀ
    (+ bias) → (N, O, 1, 1). There MindSpore's CPU Conv2D is ~2x slower; at batch 1 the MatMul is the slower one
    (docs/performance.md). Other inputs take the plain conv. Same Parameter objects."""

    MIN_BATCH = 16

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv.in_channels, conv.out_channels, 1, has_bias=conv.has_bias, pad_mode="valid")
        share_parameters(self, conv)
        self.matmul = ops.MatMul(transpose_b=True)
        self.relu_in_eval = False  # set by `accelerate` when the ReLU after this (folded) conv was fused into it
        self.bias_relu = _bias_relu_op() if kernel_library() is not None else None

    @staticmethod
    def eligible(conv: nn.Cell) -> bool:
        """A plain NCHW 1×1 conv, stride 1, dilation 1, one group, zero padding."""
        if type(conv) is not nn.Conv2d or conv.data_format != "NCHW" or conv.group != 1:
            return False
        padding = (conv.padding,) * 4 if isinstance(conv.padding, int) else tuple(conv.padding)
        return (tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1)
                and (conv.pad_mode in ("valid", "same") or not any(padding)))

    def to_conv(self) -> nn.Conv2d:
        """The plain 1×1 `nn.Conv2d` (same Parameter objects)."""
        return share_parameters(nn.Conv2d(self.in_channels, self.out_channels, 1, has_bias=self.has_bias,
                                          pad_mode="valid"), self)

    def construct(self, x: Tensor) -> Tensor:
        fused_relu = self.relu_in_eval and not self.training
        if x.shape[2] == 1 and x.shape[3] == 1 and x.shape[0] >= self.MIN_BATCH:
            out = self.matmul(x.reshape(x.shape[0], x.shape[1]), self.weight.reshape(self.out_channels, -1))
            if self.has_bias:
                out = out + self.bias
            out = out.reshape(x.shape[0], self.out_channels, 1, 1)
        else:
            out = self.conv2d(x, self.weight)
            if fused_relu and self.has_bias and self.bias_relu is not None and x.dtype == ms.float32:
                return self.bias_relu(out, self.bias)
            if self.has_bias:
                out = self.bias_add(out, self.bias)
        return ops.relu(out) if fused_relu else out


def _bias_relu_op() -> Callable:
    """`op(x, b)` → max(x + b, 0) per channel, x (N, C, H, W) float32: mindghost's kernel (csrc/bias.cc), inference
    only (no bprop)."""
    if "bias_relu" not in _OPS:
        _OPS["bias_relu"] = _SharedCustom(f"{kernel_library()}:BiasReluForward", out_shape=lambda x, b: x,
                                          out_dtype=lambda x, b: x, func_type="aot")
    return _OPS["bias_relu"]


class ReLUFusedInEval(nn.ReLU):
    """The ReLU after a folded conv whose eval mode applies it (`relu_in_eval`): identity in eval mode, ReLU in
    training mode."""

    def construct(self, x: Tensor) -> Tensor:
        if self.training:
            return ops.relu(x)
        return x


class AvgPoolGlobalPool(GlobalAvgPool):
    """`GlobalAvgPool` as an AvgPool whose kernel is the whole map: the fast form on MindSpore's CPU backend. A 1×1
    map (the last stage at 32 px) is returned as it is: MindSpore's AvgPool copied it at ~0.3 ms a call (b128)."""

    def construct(self, x: Tensor) -> Tensor:
        if x.shape[2] == 1 and x.shape[3] == 1:
            return x
        return ops.AvgPool(kernel_size=(x.shape[2], x.shape[3]), strides=1)(x)


def _swap_cells(model: nn.Cell, replacement: Callable[[nn.Cell], Optional[nn.Cell]]) -> List[Swap]:
    """Put `replacement(cell)` in place of every cell for which it is not None; returns what was swapped."""
    found = []
    for _, parent in model.cells_and_names():
        for name, child in parent.name_cells().items():
            new = replacement(child)
            if new is not None:
                found.append((parent, name, child, new))
    for parent, name, _, new in found:
        _put(parent, name, new)
    return found


def _put(parent: nn.Cell, name: str, cell: nn.Cell) -> None:
    """Make `cell` the child `name` of `parent`, keeping the full names its parameters already have (a Cell
    attribute assignment renames them relative to `parent`, e.g. `blocks.1.0.conv_dw.weight` → `conv_dw.weight`)."""
    names = [(p, p.name) for p in cell.get_parameters()]
    if isinstance(parent, (nn.SequentialCell, nn.CellList)):
        parent[int(name)] = cell
    else:
        setattr(parent, name, cell)
    for param, full_name in names:
        param.name = full_name


def _swap_batch_norms(model: nn.Cell) -> Tuple[int, int]:
    """BN → ReLU pairs of SequentialCells to one fused kernel cell (and a `ReLUFusedInTraining`), then the other
    eligible BNs to the plain kernel cell. Returns (BNs swapped, ReLUs fused)."""
    pairs = []
    for _, parent in model.cells_and_names():
        if isinstance(parent, nn.SequentialCell):
            cells = list(parent)
            pairs += [(parent, i, cell) for i, cell in enumerate(cells[:-1])
                      if eligible_bn(cell) and type(cells[i + 1]) is nn.ReLU]
    for parent, i, bn in pairs:
        _put(parent, str(i), BatchNormKernel.from_bn(bn, relu=True))
        _put(parent, str(i + 1), ReLUFusedInTraining())
    others = _swap_cells(model, lambda c: BatchNormKernel.from_bn(c) if eligible_bn(c) else None)
    return len(pairs) + len(others), len(pairs)


def _fuse_relus_into_folded_convs(model: nn.Cell) -> int:
    """In SequentialCells, a conv with a bias (BN folded into it) on the kernel path, then only Identities (the
    folded BN's place), then an `nn.ReLU`: the conv applies the ReLU in eval mode and the ReLU becomes a
    `ReLUFusedInEval`. Returns how many."""
    found = []
    for _, parent in model.cells_and_names():
        if isinstance(parent, nn.SequentialCell):
            cells = list(parent)
            for i, cell in enumerate(cells):
                if not (isinstance(cell, (DepthwiseConv2d, MatMulConv2d)) and cell.has_bias):
                    continue
                j = i + 1
                while j < len(cells) and type(cells[j]) is nn.Identity:
                    j += 1
                if j < len(cells) and type(cells[j]) is nn.ReLU:
                    found.append((parent, cell, j))
    for parent, cell, j in found:
        cell.relu_in_eval = True
        _put(parent, str(j), ReLUFusedInEval())
    return len(found)


def accelerate(model: nn.Cell, depthwise_kernel: bool = True, avgpool: bool = True, gate_kernel: bool = True,
               batchnorm_kernel: bool = True, matmul_1x1: bool = True, folded_relu: bool = True) -> nn.Cell:
    """Swap, in place, `model`'s eligible depthwise convs for mindghost's CPU kernel (`depthwise_kernel`), its
    global pools for the AvgPool form (`avgpool`), its gate products (`gate_kernel`) and its BatchNorms, with the
    ReLUs right after them (`batchnorm_kernel`), for mindghost's kernels; returns `model`. Logs one line saying
    what changed.

    CPU only: call it after `mindspore.set_device("CPU")` (or on the default CPU target) and before the optimizer
    or train step is built. When the kernels cannot be built (no C++ compiler, `MINDGHOST_CPU_KERNELS=0`) one
    warning names why and those cells stay as they are. Raises ValueError on another device target.
    """
    import mindspore as ms

    target = ms.get_context("device_target")
    if target != "CPU":
        raise ValueError(f"mindghost.cpu.accelerate is a CPU pass, but MindSpore's device target is {target}; "
                         "apply it only to models that run on CPU")
    convs = pools = gates = bns = relus = folded_relus = 0
    if depthwise_kernel and kernel_library() is not None:
        convs = len(_swap_cells(model, lambda c: DepthwiseConv2d.from_conv(c) if eligible(c) else None))
    if avgpool:
        pools = len(_swap_cells(model, lambda c: AvgPoolGlobalPool() if type(c) is GlobalAvgPool else None))
    if gate_kernel and kernel_library() is not None:
        gates = len(_swap_cells(model, lambda c: GateMultiplyKernel() if type(c) is GateMultiply else None))
    if batchnorm_kernel and kernel_library() is not None:
        bns, relus = _swap_batch_norms(model)
    if matmul_1x1:
        _swap_cells(model, lambda c: MatMulConv2d(c) if MatMulConv2d.eligible(c) else None)
    if folded_relu and kernel_library() is not None:
        folded_relus = _fuse_relus_into_folded_convs(model)
    _LOG.info(f"CPU pass: {convs} depthwise convs, {gates} gate products and {bns} BatchNorms ({relus} with their "
              f"ReLU) on mindghost's kernels, {folded_relus} ReLUs fused into folded convs, {pools} global pools as "
              "AvgPool (mindghost.cpu.restore undoes it)")
    return model


def restore(model: nn.Cell) -> List[Swap]:
    """Undo `accelerate` in place: plain `nn.Conv2d`, `GlobalAvgPool`, `GateMultiply`, `nn.BatchNorm2d` and
    `nn.ReLU` cells again, holding the same Parameter objects. Returns the swaps made, as (parent, name,
    accelerated cell, plain cell)."""

    def plain_cell(cell: nn.Cell) -> Optional[nn.Cell]:
        if isinstance(cell, (DepthwiseConv2d, MatMulConv2d)):
            return cell.to_conv()
        if isinstance(cell, GateMultiplyKernel):
            return GateMultiply()
        if isinstance(cell, BatchNormKernel):
            return cell.to_bn()
        if isinstance(cell, (ReLUFusedInTraining, ReLUFusedInEval)):
            return nn.ReLU()
        return GlobalAvgPool() if isinstance(cell, AvgPoolGlobalPool) else None

    return _swap_cells(model, plain_cell)


@contextmanager
def plain(model: nn.Cell) -> Iterator[nn.Cell]:
    """Within the block `model` has only MindSpore's own cells (e.g. for `mindspore.export`); the accelerated cells
    come back afterwards."""
    swaps = restore(model)
    try:
        yield model
    finally:
        for parent, name, accelerated, _ in swaps:
            _put(parent, name, accelerated)


def accelerate_on_cpu(model: nn.Cell, device: str = "auto", **options: bool) -> nn.Cell:
    """What the entry points call where they build a model: `accelerate(model, **options)` when `device` (resolved
    like `runtime.detect_device`) is CPU, else `model` unchanged."""
    return accelerate(model, **options) if detect_device(device) == "CPU" else model
