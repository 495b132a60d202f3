"""Model surgery for inference: one traced forward, and BatchNorm folded into the preceding convolution.

timm keeps its model-manipulation helpers in `timm/models/_manipulate.py`; these are mindghost's.

Traced forward (`trace_forward`). The profiler (MACs), BN folding (which conv feeds which BN), the redundancy
tool (one layer's maps) and the benchmark's physical floor (bytes moved) all need to watch a forward. Hooks only
fire in PyNative mode, so the forward runs there and the previous execution mode and train flag are restored
afterwards, even on error.

BN folding (`fuse_bn`). An eval-mode BatchNorm is an affine map per channel, y = γ (x − μ) / √(σ² + ε) + β, so a
Conv2d whose output goes only into a BatchNorm2d can absorb it: W' = W · s, b' = (b − μ) · s + β with
s = γ / √(σ² + ε). The fused network computes the same function with one op less per pair (exact up to float
rounding, ~1e-6). Pairs are found by one traced forward: a BatchNorm2d is folded when its input is the very tensor
a Conv2d returned and no other cell consumed that tensor. This covers `SequentialCell([conv, bn, ...])` as well as
`self.bn(self.conv(x))`, in any family file, without a name list.
"""
import copy
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["check_fusion", "count_batchnorms", "find_conv_bn_pairs", "fold_conv_bn", "fuse_bn", "layer_macs",
           "max_diff", "trace_forward"]

# on_output(name, cell, inputs, output) and on_input(name, cell, inputs)
OutputHook = Callable[[str, object, tuple, object], None]
InputHook = Callable[[str, object, tuple], None]


def trace_forward(model, x: Union[np.ndarray, Sequence[int]], cells: Iterable[Tuple[str, object]],
                  on_output: Optional[OutputHook] = None, on_input: Optional[InputHook] = None):
    """Run `model` once in eval mode on `x` with hooks on `cells` ((name, cell) pairs, e.g. a filtered
    `model.cells_and_names()`); returns the model's output (a MindSpore Tensor).

    `x` is an input array (N, C, H, W float32) or a shape, which means zeros of that shape. `on_output` sees each
    cell's inputs and output, `on_input` each cell's inputs before it runs. Raises whatever the forward raises
    (e.g. a shape error for an input the model cannot take).
    """
    import mindspore as ms

    if not isinstance(x, np.ndarray):
        x = np.zeros(tuple(x), np.float32)
    handles = []
    for name, cell in cells:
        if on_output is not None:
            handles.append(cell.register_forward_hook(
                lambda _cell, inputs, output, n=name, c=cell: on_output(n, c, inputs, output)))
        if on_input is not None:
            handles.append(cell.register_forward_pre_hook(lambda _cell, inputs, n=name, c=cell: on_input(n, c, inputs)))
    previous_mode = ms.get_context("mode")
    was_training = model.training
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        model.set_train(False)
        return model(ms.Tensor(x))
    finally:
        for handle in handles:
            handle.remove()
        model.set_train(was_training)
        ms.set_context(mode=previous_mode)


def layer_macs(cell, output_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one Conv2d or Dense call that produced `output_shape` (batch included)."""
    from mindspore import nn

    out_elems = int(np.prod(output_shape))
    if isinstance(cell, nn.Conv2d):
        kh, kw = cell.kernel_size
        return out_elems * (cell.in_channels // cell.group) * kh * kw
    return out_elems * cell.in_channels


def find_conv_bn_pairs(model, input_shape: Sequence[int] = (1, 3, 64, 64)) -> List[Tuple[str, str]]:
    """(conv name, bn name) for every Conv2d whose output feeds only a BatchNorm2d, in execution order."""
    from mindspore import nn

    conv_out: Dict[int, str] = {}  # id(output tensor) → conv name
    keep_alive = []  # every traced tensor stays referenced so that no id is reused during the trace
    consumers: Dict[int, List[str]] = {}  # id(tensor) → names of leaf cells that took it as input
    bn_inputs: Dict[str, int] = {}

    def on_output(name, cell, _inputs, output):
        if isinstance(cell, nn.Conv2d):
            conv_out[id(output)] = name
            keep_alive.append(output)

    def on_input(name, cell, inputs):
        keep_alive.append(inputs)
        for t in inputs:
            consumers.setdefault(id(t), []).append(name)
        if isinstance(cell, nn.BatchNorm2d) and inputs:
            bn_inputs[name] = id(inputs[0])

    leaves = [(name, cell) for name, cell in model.cells_and_names() if not cell.name_cells()]
    trace_forward(model, input_shape, leaves, on_output=on_output, on_input=on_input)
    pairs = []
    for bn_name, tid in bn_inputs.items():
        if tid in conv_out and consumers.get(tid) == [bn_name]:
            pairs.append((conv_out[tid], bn_name))
    return pairs


def _get_cell(model, name: str):
    cell = model
    for part in name.split("."):
        cell = cell._cells[part]  # SequentialCell children are "0", "1", ...; attributes by name
    return cell


def _replace_cell(model, name: str, new_cell) -> None:
    from mindspore import nn

    parent_name, _, child = name.rpartition(".")
    parent = _get_cell(model, parent_name) if parent_name else model
    if isinstance(parent, nn.SequentialCell):
        parent[int(child)] = new_cell
    else:
        setattr(parent, child, new_cell)


def fold_conv_bn(conv, bn) -> None:
    """Fold `bn`'s eval-mode affine map into `conv` in place (adds a bias when the conv has none)."""
    from mindspore import Parameter, Tensor

    weight = conv.weight.asnumpy().astype(np.float64)
    scale = bn.gamma.asnumpy().astype(np.float64) / np.sqrt(bn.moving_variance.asnumpy().astype(np.float64) + bn.eps)
    bias = conv.bias.asnumpy().astype(np.float64) if conv.bias is not None else np.zeros(weight.shape[0])
    new_bias = (bias - bn.moving_mean.asnumpy()) * scale + bn.beta.asnumpy()
    dtype = conv.weight.dtype
    conv.weight.set_data(Tensor((weight * scale.reshape(-1, 1, 1, 1)).astype(np.float32), dtype))
    if conv.bias is not None:
        conv.bias.set_data(Tensor(new_bias.astype(np.float32), dtype))
    else:
        bias_name = conv.weight.name[: -len("weight")] + "bias"
        conv.bias = Parameter(Tensor(new_bias.astype(np.float32), dtype), name=bias_name)
        conv.has_bias = True


def fuse_bn(model, input_shape: Sequence[int] = (1, 3, 64, 64), inplace: bool = False):
    """A copy of `model` in eval mode with every Conv2d → BatchNorm2d pair folded into the conv.

    `input_shape` is only used to trace the pairs once (any valid size). Returns the new model; it has
    `fused_pairs` (the folded names) set for reporting.
    """
    from mindspore import nn

    fused = model if inplace else copy.deepcopy(model)
    if hasattr(model, "default_cfg"):
        fused.default_cfg = dict(model.default_cfg)
    fused.set_train(False)
    pairs = find_conv_bn_pairs(fused, input_shape)
    for conv_name, bn_name in pairs:
        fold_conv_bn(_get_cell(fused, conv_name), _get_cell(fused, bn_name))
        _replace_cell(fused, bn_name, nn.Identity())
    fused.set_train(False)
    fused.fused_pairs = pairs
    return fused


def max_diff(reference: np.ndarray, other: np.ndarray) -> Dict[str, float]:
    """Max absolute difference, and max abs difference relative to the reference's max magnitude."""
    reference = np.asarray(reference, np.float64)
    diff = np.abs(reference - np.asarray(other, np.float64))
    scale = max(float(np.abs(reference).max()), 1e-12)
    return {"max_abs": float(diff.max()), "max_rel": float(diff.max() / scale)}


def count_batchnorms(model) -> int:
    from mindspore import nn

    return sum(1 for _, c in model.cells_and_names() if isinstance(c, (nn.BatchNorm2d, nn.BatchNorm1d)))


def check_fusion(model, fused, x: Optional[np.ndarray] = None, input_shape: Sequence[int] = (2, 3, 64, 64),
                 seed: int = 0) -> Dict[str, float]:
    """Compare eval outputs of the unfused and fused model on `x` (default: a seeded normal batch)."""
    from mindspore import Tensor

    if x is None:
        x = np.random.default_rng(seed).standard_normal(tuple(input_shape)).astype(np.float32)
    model.set_train(False)
    fused.set_train(False)
    return max_diff(model(Tensor(x)).asnumpy(), fused(Tensor(x)).asnumpy())
