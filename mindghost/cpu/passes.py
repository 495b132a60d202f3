"""The CPU pass: swap a built model's cells for faster CPU forms, and swap them back.

Models are plain MindSpore cells on every device (`create_model` compiles nothing and writes nothing). On CPU
two cells have faster equivalents, measured in docs/performance.md:
- eligible depthwise `nn.Conv2d` → `DepthwiseConv2d`, mindghost's own kernel (train step ~1.6x faster);
- `GlobalAvgPool` (ReduceMean) → `AvgPoolGlobalPool`, an AvgPool over the whole map (MindSpore's CPU ReduceMean
  is ~4x slower forward, ~2.6x forward+backward; results differ by ~1e-7).
Both keep the Parameter objects, so checkpoints and names are unchanged; apply the pass before the optimizer
or train step is built (they capture cells when compiled). Custom ops do not export: `restore` (or the `plain`
context manager) gives back the plain cells.
"""
import logging
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple

from mindspore import Tensor, nn, ops

from ..models.layers import GlobalAvgPool
from ..runtime import detect_device
from .depthwise import DepthwiseConv2d, eligible, kernel_library

_LOG = logging.getLogger("mindghost")

# (parent, child name, cell that was there, cell put there)
Swap = Tuple[nn.Cell, str, nn.Cell, nn.Cell]


class AvgPoolGlobalPool(GlobalAvgPool):
    """`GlobalAvgPool` as an AvgPool whose kernel is the whole map: the fast form on MindSpore's CPU backend."""

    def construct(self, x: Tensor) -> Tensor:
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


def accelerate(model: nn.Cell, depthwise_kernel: bool = True, avgpool: bool = True) -> nn.Cell:
    """Swap, in place, `model`'s eligible depthwise convs for mindghost's CPU kernel (`depthwise_kernel`) and its
    global pools for the AvgPool form (`avgpool`); returns `model`. Logs one line saying what changed.

    CPU only: call it after `mindspore.set_device("CPU")` (or on the default CPU target) and before the optimizer
    or train step is built. When the kernel cannot be built (no C++ compiler, `MINDGHOST_CPU_KERNELS=0`) one
    warning names why and the convs stay as they are. Raises ValueError on another device target.
    """
    import mindspore as ms

    target = ms.get_context("device_target")
    if target != "CPU":
        raise ValueError(f"mindghost.cpu.accelerate is a CPU pass, but MindSpore's device target is {target}; "
                         "apply it only to models that run on CPU")
    convs = pools = 0
    if depthwise_kernel and kernel_library() is not None:
        convs = len(_swap_cells(model, lambda c: DepthwiseConv2d.from_conv(c) if eligible(c) else None))
    if avgpool:
        pools = len(_swap_cells(model, lambda c: AvgPoolGlobalPool() if type(c) is GlobalAvgPool else None))
    _LOG.info(f"CPU pass: {convs} depthwise convs on mindghost's kernel, {pools} global pools as AvgPool "
              "(mindghost.cpu.restore undoes it)")
    return model


def restore(model: nn.Cell) -> List[Swap]:
    """Undo `accelerate` in place: plain `nn.Conv2d` and `GlobalAvgPool` cells again, holding the same Parameter
    objects. Returns the swaps made, as (parent, name, accelerated cell, plain cell)."""

    def plain_cell(cell: nn.Cell) -> Optional[nn.Cell]:
        if isinstance(cell, DepthwiseConv2d):
            return cell.to_conv()
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
