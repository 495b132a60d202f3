"""One traced forward: run a model once in PyNative mode with hooks on chosen cells.

The profiler (MACs), BN folding (which conv feeds which BN), the redundancy tool (one layer's maps) and the
benchmark's physical floor (bytes moved) all need to watch a forward. Hooks only fire in PyNative mode, so the
forward runs there and the previous execution mode and train flag are restored afterwards, even on error.
"""
from typing import Callable, Iterable, Optional, Sequence, Tuple, Union

import numpy as np

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
