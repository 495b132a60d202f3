"""BatchNorm2d's training mode (batch statistics), with the ReLU after it when there is one, on mindghost's own CPU
kernel (csrc/batchnorm.cc).

Why: MindSpore's CPU BatchNorm and BatchNormGrad (oneDNN on plain NCHW) were 26-31% of a GhostNet train step
(docs/performance.md), and the ReLU after most of them costs one more pass each way. The kernel normalises each
channel while it is still in cache and applies the ReLU in the same pass. The moving statistics follow
`nn.BatchNorm2d` exactly: moving = (1 - m) · moving + m · batch, with the unbiased batch variance for the
moving variance (m = 1 - the cell's `momentum` argument).

Only training changes: in eval mode (and for BN folding, export, `restore`) the cells are MindSpore's own.
`mindghost.cpu.accelerate` swaps `nn.BatchNorm2d` → `BatchNormKernel` and, where a BN's output goes straight into
an `nn.ReLU` in a SequentialCell, that ReLU → `ReLUFusedInTraining` (identity while training, since the kernel
applied it; a ReLU in eval mode, where the BN is MindSpore's).
"""
from typing import Callable, Dict

import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops

from .depthwise import _SharedCustom, kernel_library

_OPS: Dict[bool, Callable] = {}


def batch_norm_train_op(relu: bool) -> Callable:
    """`op(x, gamma, beta, moving_mean, moving_var, attrs)` → (y, batch mean, biased batch var, new moving mean,
    new moving var); x (N, C, H, W), attrs (2,) = (eps, f), the rest (C,), float32; y = BN(x) with batch
    statistics, then ReLU when `relu`; new moving = (1 - f) · moving + f · batch (unbiased variance).
    Differentiable in x, gamma, beta (custom bprop with the BnTrainBackward kernel; the statistics carry none)."""
    if relu not in _OPS:
        lib = kernel_library()
        name = "Relu" if relu else ""
        backward = ops.Custom(f"{lib}:BnTrainBackward{name}", out_shape=lambda dy, x, g, *rest: (x, g, g),
                              out_dtype=lambda dy, x, g, *rest: (x, g, g), func_type="aot")

        def bprop(x, gamma, beta, moving_mean, moving_var, attrs, out, dout):
            dx, dgamma, dbeta = backward(dout[0], x, gamma, beta, out[1], out[2], attrs)
            return (dx, dgamma, dbeta, ops.zeros_like(moving_mean), ops.zeros_like(moving_var),
                    ops.zeros_like(attrs))

        _OPS[relu] = _SharedCustom(f"{lib}:BnTrainForward{name}", out_shape=lambda x, g, *rest: (x, g, g, g, g),
                                   out_dtype=lambda x, *rest: (x, x, x, x, x), func_type="aot", bprop=bprop)
    return _OPS[relu]


class BatchNormKernel(nn.BatchNorm2d):
    """An `nn.BatchNorm2d` (same Parameter objects) whose training mode runs mindghost's kernel for float32 NCHW
    inputs, with the following ReLU fused when `relu`; eval mode is MindSpore's BatchNorm (without the ReLU: the
    `ReLUFusedInTraining` after it applies it there). Built by `from_bn`; `to_bn` gives the plain cell back."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.9, relu: bool = False) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        if kernel_library() is None:
            raise RuntimeError("BatchNormKernel needs mindghost's CPU kernels, which could not be built (see the "
                               "warning above); keep the nn.BatchNorm2d")
        self.relu = relu
        self.op = batch_norm_train_op(relu)
        # (eps, weight of the batch statistics in the moving update: nn.BatchNorm2d keeps 1 - momentum as momentum)
        self.attrs = Tensor(np.array([eps, self.momentum], np.float32))

    @classmethod
    def from_bn(cls, bn: nn.BatchNorm2d, relu: bool = False) -> "BatchNormKernel":
        """The kernel cell for `bn` (plain, NCHW, `use_batch_statistics` unset), holding `bn`'s own Parameters."""
        if not eligible_bn(bn):
            raise ValueError(f"{bn} is not a BatchNorm2d mindghost's kernel computes (see cpu.batchnorm.eligible_bn)")
        new = cls(bn.num_features, eps=bn.eps, momentum=1.0 - bn.momentum, relu=relu)
        new.gamma, new.beta = bn.gamma, bn.beta
        new.moving_mean, new.moving_variance = bn.moving_mean, bn.moving_variance
        return new

    def to_bn(self) -> nn.BatchNorm2d:
        """The plain `nn.BatchNorm2d` this cell came from (same arguments, same Parameter objects)."""
        bn = nn.BatchNorm2d(self.num_features, eps=self.eps, momentum=1.0 - self.momentum)
        bn.gamma, bn.beta = self.gamma, self.beta
        bn.moving_mean, bn.moving_variance = self.moving_mean, self.moving_variance
        return bn

    def construct(self, x: Tensor) -> Tensor:
        if not self.training:
            return self.bn_infer(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)[0]
        if x.dtype != ms.float32 or self.gamma.dtype != ms.float32:
            out = self.bn_train(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)[0]
            return ops.relu(out) if self.relu else out
        y, mean, var, moving_mean, moving_variance = self.op(x, self.gamma, self.beta, self.moving_mean,
                                                               self.moving_variance, self.attrs)
        ops.assign(self.moving_mean, ops.stop_gradient(moving_mean))
        ops.assign(self.moving_variance, ops.stop_gradient(moving_variance))
        return ops.depend(y, (mean, var))  # the bprop reads them; unused here, GRAPH mode warned per BN


class ReLUFusedInTraining(nn.ReLU):
    """The ReLU after a `BatchNormKernel(relu=True)`: identity in training mode (the kernel applied it), ReLU in
    eval mode."""

    def construct(self, x: Tensor) -> Tensor:
        if self.training:
            return x
        return ops.relu(x)


def eligible_bn(cell: nn.Cell) -> bool:
    """Whether `accelerate` may swap this cell for a `BatchNormKernel`: a plain `nn.BatchNorm2d`, NCHW, with
    `use_batch_statistics` unset (batch statistics in training, moving ones in eval)."""
    return type(cell) is nn.BatchNorm2d and cell.format == "NCHW" and cell.use_batch_statistics is None
