"""Depthwise convolution with mindghost's own CPU kernel (csrc/depthwise.cc), built once with the system's C++
compiler and loaded through MindSpore's AOT custom-op interface.

Why: MindSpore's CPU Conv2D runs grouped convolutions through oneDNN's im2col + per-group GEMM (its fast
depthwise kernels need blocked layouts MindSpore does not use), ~2.5 GMAC/s; the direct kernel runs at 22-25
(docs/performance.md, section 3), which makes a GhostNet train step ~1.6x faster. Forward outputs are
bit-identical, gradients equal up to float rounding (tests/test_cpu.py).

Models never build `DepthwiseConv2d` themselves: `mindghost.cpu.accelerate` swaps it in for the eligible
`nn.Conv2d` cells of a built model (`eligible` is the one rule), and `mindghost.cpu.restore` swaps it back
before an export, since custom ops are not portable. `MINDGHOST_CPU_KERNELS=0` disables the kernel.
The library is built on the first `accelerate` and cached in `$MINDGHOST_CACHE` (default `~/.cache/mindghost`)
under a hash of source and flags.
"""
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from typing import Callable, Dict, Optional, Tuple, Union

import mindspore as ms
from mindspore import Tensor, nn, ops

_LOG = logging.getLogger("mindghost")
_CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
# one library for all of mindghost's CPU kernels
_SOURCES = tuple(os.path.join(_CSRC, name) for name in ("depthwise.cc", "gate.cc", "batchnorm.cc", "bias.cc"))
_HEADERS = (os.path.join(_CSRC, "common.h"),)
_STATE: Dict[str, Optional[str]] = {}  # "path" or "error", decided once per process
_OPS: Dict[Tuple[int, bool, bool], Callable] = {}


def _compile_flags() -> Tuple[str, ...]:
    flags = ("-O3", "-std=c++14", "-shared", "-fPIC", "-pthread")
    if platform.machine().lower() in ("x86_64", "amd64"):
        try:
            with open("/proc/cpuinfo") as fh:
                cpu_flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
        except OSError:
            cpu_flags = []
        if "avx2" in cpu_flags and "fma" in cpu_flags:
            flags += ("-mavx2", "-mfma")
    return flags


def build_library() -> str:
    """Path of the compiled library of mindghost's CPU kernels (csrc/: the depthwise conv, the gate product), built
    on first use. Raises RuntimeError naming what is missing."""
    compiler = os.environ.get("CXX", "g++")
    if not shutil.which(compiler):
        raise RuntimeError(f"no C++ compiler '{compiler}' on PATH (install g++, or set CXX)")
    flags = _compile_flags()
    source = b""
    for name in _SOURCES + _HEADERS:
        with open(name, "rb") as fh:
            source += fh.read()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    key = hashlib.sha256(source + repr((flags, version, platform.machine())).encode()).hexdigest()[:16]
    cache = os.path.join(os.environ.get("MINDGHOST_CACHE") or os.path.expanduser("~/.cache/mindghost"), "kernels")
    path = os.path.join(cache, f"cpu-kernels-{key}.so")
    allowed = os.environ.get("MS_CUSTOM_AOT_WHITE_LIST")  # MindSpore refuses custom-op libraries outside it
    if allowed and os.path.commonpath([os.path.realpath(cache), os.path.realpath(allowed)]) != \
            os.path.realpath(allowed):
        raise RuntimeError(f"MS_CUSTOM_AOT_WHITE_LIST={allowed} does not contain the kernel cache {cache} "
                           f"(set MINDGHOST_CACHE to a folder inside it)")
    if os.path.exists(path):
        return path
    os.makedirs(cache, exist_ok=True)
    _LOG.info(f"building mindghost's CPU kernels (once per machine and source) into {path}")
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)  # several ranks may build at once: rename atomically
    os.close(fd)
    try:
        run = subprocess.run([compiler, *flags, "-o", tmp, *_SOURCES], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{compiler} failed to build {' '.join(_SOURCES)}:\n{run.stderr[-2000:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def kernel_library() -> Optional[str]:
    """The library path, or None (with one log line saying why) when the kernels cannot be used."""
    if not _STATE:
        if os.environ.get("MINDGHOST_CPU_KERNELS", "1") == "0":
            _STATE["error"] = "disabled by MINDGHOST_CPU_KERNELS=0"
        else:
            try:
                _STATE["path"] = build_library()
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                _STATE["error"] = str(e)
        if "error" in _STATE:
            _LOG.warning(f"mindghost's CPU depthwise kernel is not used ({_STATE['error']}); depthwise convs run "
                         f"MindSpore's Conv2D (same results; training ~1.6x slower on CPU)")
    return _STATE.get("path")


def _out_size(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


class _SharedCustom(ops.Custom):
    """A stateless custom op that copies of a model share (`copy.deepcopy` of a plain Custom fails)."""

    def __deepcopy__(self, memo):
        return self


def depthwise_op(stride: int, bias: bool = False, relu: bool = False) -> Callable:
    """`op(x, w)` (or `op(x, w, b)` with `bias`) → depthwise conv output, differentiable (custom bprop with the
    backward kernels). With `relu` (needs `bias`): `op(x, w, b)` → max(conv + b, 0), inference only (no bprop)."""
    if relu:
        if (stride, True, True) not in _OPS:
            _OPS[(stride, True, True)] = _SharedCustom(
                f"{kernel_library()}:DwForwardBiasReluS{stride}", out_dtype=lambda x, *rest: x, func_type="aot",
                out_shape=lambda x, w, b: [x[0], w[0], _out_size(x[2], w[2], stride), _out_size(x[3], w[3], stride)])
        return _OPS[(stride, True, True)]
    if (stride, bias, False) not in _OPS:
        lib = kernel_library()
        grad_input = ops.Custom(f"{lib}:DwBackwardInputS{stride}", out_shape=lambda dy, w, x: x,
                                out_dtype=lambda dy, w, x: x, func_type="aot")
        grad_filter = ops.Custom(f"{lib}:DwBackwardFilterS{stride}", out_shape=lambda dy, x, w: w,
                                 out_dtype=lambda dy, x, w: w, func_type="aot")

        def bprop(x, w, out, dout):
            return grad_input(dout, w, x), grad_filter(dout, x, w)

        def bprop_bias(x, w, b, out, dout):
            return grad_input(dout, w, x), grad_filter(dout, x, w), dout.sum(axis=(0, 2, 3))

        def out_shape(x, w, *b):
            return [x[0], w[0], _out_size(x[2], w[2], stride), _out_size(x[3], w[3], stride)]

        _OPS[(stride, bias, False)] = _SharedCustom(
            f"{lib}:DwForward{'Bias' if bias else ''}S{stride}", out_shape=out_shape, out_dtype=lambda x, *rest: x,
            func_type="aot", bprop=bprop_bias if bias else bprop)
    return _OPS[(stride, bias, False)]


def is_supported(in_chs: int, out_chs: int, kernel_size, stride: int = 1, groups: Optional[int] = None) -> bool:
    """Whether the kernel computes this conv: groups == in_chs > 1 (default: in_chs), out_chs a multiple of it, odd
    kernel sizes, stride 1, or 2 for square kernels (padding is always the symmetric (kh//2, kw//2))."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    groups = in_chs if groups is None else groups
    return (1 < groups == in_chs and out_chs % in_chs == 0 and kh % 2 == 1 and kw % 2 == 1
            and (stride == 1 or (stride == 2 and kh == kw)))


def eligible(conv: nn.Cell) -> bool:
    """Whether `accelerate` may swap this cell for a `DepthwiseConv2d`: a plain `nn.Conv2d` (NCHW, no dilation,
    equal strides) that `is_supported` accepts and whose padding is the kernel's symmetric (kh//2, kw//2)."""
    if type(conv) is not nn.Conv2d or conv.data_format != "NCHW" or tuple(conv.dilation) != (1, 1):
        return False
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    if sh != sw or not is_supported(conv.in_channels, conv.out_channels, (kh, kw), sh, conv.group):
        return False
    if conv.pad_mode == "same":
        return sh == 1  # odd kernels at stride 1: "same" pads kh//2 on both sides
    if conv.pad_mode == "pad":
        pads = (conv.padding,) * 4 if isinstance(conv.padding, int) else tuple(conv.padding)
        return pads == (kh // 2, kh // 2, kw // 2, kw // 2)
    return False


def share_parameters(conv: nn.Conv2d, source: nn.Conv2d) -> nn.Conv2d:
    """`conv` holding `source`'s weight (and bias) Parameter objects: the swap of a conv cell for its CPU form and
    back keeps names, checkpoints and optimizer state. Returns `conv`."""
    conv.weight = source.weight
    if source.has_bias:
        conv.bias = source.bias
    return conv


class DepthwiseConv2d(nn.Conv2d):
    """An eligible depthwise `nn.Conv2d` that runs mindghost's kernel for float32 inputs (MindSpore's Conv2D
    otherwise). Built from an existing conv with `from_conv`, sharing its Parameter objects (same names and
    shapes, so checkpoints, optimizers and BN folding see no difference); `to_conv` gives the plain cell back.
    Needs the kernel library: `accelerate` only builds it when `kernel_library()` is not None."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size, stride: int = 1, pad_mode: str = "pad",
                 padding: Union[int, Tuple[int, ...]] = 0, bias: bool = False) -> None:
        if not is_supported(in_chs, out_chs, kernel_size, stride):
            raise ValueError(f"DepthwiseConv2d needs in_chs > 1, out_chs a multiple of in_chs, odd kernel sizes and "
                             f"stride 1 or 2 (2 only for square kernels); got {in_chs}→{out_chs}, {kernel_size}, "
                             f"stride {stride}; use nn.Conv2d for other convolutions")
        super().__init__(in_chs, out_chs, kernel_size, stride, pad_mode=pad_mode, padding=padding, group=in_chs,
                         has_bias=bias)
        if kernel_library() is None:
            raise RuntimeError("DepthwiseConv2d needs mindghost's CPU kernel, which could not be built (see the "
                               "warning above); keep the nn.Conv2d")
        self.depthwise = depthwise_op(stride)
        self.depthwise_bias = depthwise_op(stride, bias=True)  # used when BN was folded into the conv
        self.depthwise_bias_relu = depthwise_op(stride, bias=True, relu=True)
        self.relu_in_eval = False  # set by `accelerate` when the ReLU after this (folded) conv was fused into it

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "DepthwiseConv2d":
        """The kernel cell for `conv` (`eligible(conv)` must hold), holding `conv`'s own weight and bias."""
        if not eligible(conv):
            raise ValueError(f"{conv} is not a conv mindghost's depthwise kernel computes (see cpu.eligible)")
        return share_parameters(cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride[0],
                                    conv.pad_mode, conv.padding, conv.has_bias), conv)

    def to_conv(self) -> nn.Conv2d:
        """The plain `nn.Conv2d` this cell came from (same arguments, same Parameter objects)."""
        return share_parameters(nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                                          pad_mode=self.pad_mode, padding=self.padding, group=self.group,
                                          has_bias=self.has_bias), self)

    def construct(self, x: Tensor) -> Tensor:
        fused_relu = self.relu_in_eval and not self.training
        if x.dtype == ms.float32 and self.weight.dtype == ms.float32:
            if self.has_bias:
                if fused_relu:
                    return self.depthwise_bias_relu(x, self.weight, self.bias)
                return self.depthwise_bias(x, self.weight, self.bias)
            out = self.depthwise(x, self.weight)
        else:
            out = self.conv2d(x, self.weight)  # nn.Conv2d.construct (`super()` here breaks GRAPH mode for copies)
            if self.has_bias:
                out = self.bias_add(out, self.bias)
        return ops.relu(out) if fused_relu else out
