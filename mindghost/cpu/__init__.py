"""CPU speed-ups applied to a built model as an explicit pass (models themselves are plain MindSpore cells).

    from mindghost.cpu import accelerate, restore
    model = accelerate(create_model("ghostnet_100"))  # before building the optimizer / train step
    restore(model)  # plain cells again, e.g. before mindspore.export

See `passes` for what is swapped and why, `depthwise` and `gate` for the kernels (csrc/).
"""
from .depthwise import DepthwiseConv2d, eligible, is_supported, kernel_library
from .gate import GateMultiplyKernel
from .passes import AvgPoolGlobalPool, accelerate, accelerate_on_cpu, plain, restore

__all__ = ["AvgPoolGlobalPool", "DepthwiseConv2d", "GateMultiplyKernel", "accelerate", "accelerate_on_cpu",
           "eligible", "is_supported", "kernel_library", "plain", "restore"]
