"""`x * up(gate)` with mindghost's own CPU kernel (csrc/gate.cc): the end of SE blocks and of GhostNetV2/V3's DFC
attention, in one pass forward and one per gradient.

Why: on MindSpore's CPU backend the DFC gate's nearest upsample (ResizeNearestNeighbor) and its gradient took
36% of a GhostNetV2 train step (b32, 224 px; MindSpore's profiler), and the gradient of SE's broadcast product
is a ReduceSum over H, W, slow there too (docs/performance.md). Forward outputs are bit-identical (the same
float products), gradients equal up to summation order (the gate's gradient is summed in double).

Models build the plain `layers.GateMultiply`; `mindghost.cpu.accelerate` swaps it for `GateMultiplyKernel` and
`restore` swaps it back. The kernel lives in the same library as the depthwise kernel (`depthwise.kernel_library`).
"""
from typing import Callable, Dict

import mindspore as ms
from mindspore import Tensor, ops

from ..models.layers import GateMultiply, gate_multiply
from .depthwise import _SharedCustom, kernel_library

_OPS: Dict[str, Callable] = {}


def gate_multiply_op() -> Callable:
    """`op(x, gate)` → x · gate nearest-upsampled to x's size; x (N, C, H, W), gate (N, C, h, w), float32.
    Differentiable (custom bprop: dx = op(dy, gate), dgate from the GateMulBackwardGate kernel)."""
    if "forward" not in _OPS:
        lib = kernel_library()
        plain = ops.Custom(f"{lib}:GateMulForward", out_shape=lambda x, g: x, out_dtype=lambda x, g: x,
                           func_type="aot")
        grad_gate = ops.Custom(f"{lib}:GateMulBackwardGate", out_shape=lambda dy, x, g: g,
                               out_dtype=lambda dy, x, g: g, func_type="aot")

        def bprop(x, g, out, dout):
            return plain(dout, g), grad_gate(dout, x, g)

        _OPS["forward"] = _SharedCustom(f"{lib}:GateMulForward", out_shape=lambda x, g: x,
                                        out_dtype=lambda x, g: x, func_type="aot", bprop=bprop)
    return _OPS["forward"]


class GateMultiplyKernel(GateMultiply):
    """`layers.GateMultiply` through mindghost's kernel for float32 inputs whose batch and channels match (the
    plain ops otherwise). Needs the kernel library: `accelerate` only builds it when `kernel_library()` is not
    None."""

    def __init__(self) -> None:
        super().__init__()
        if kernel_library() is None:
            raise RuntimeError("GateMultiplyKernel needs mindghost's CPU kernels, which could not be built (see the "
                               "warning above); keep the GateMultiply")
        self.op = gate_multiply_op()

    def construct(self, x: Tensor, gate: Tensor) -> Tensor:
        if x.dtype == ms.float32 and gate.dtype == ms.float32 and x.shape[:2] == gate.shape[:2]:
            return self.op(x, gate)
        return gate_multiply(x, gate)
