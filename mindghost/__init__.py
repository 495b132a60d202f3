"""mindghost: train, validate, convert and deploy the GhostNet family on MindSpore.

Importing mindghost applies the CPU environment MindSpore reads when it loads (`runtime.apply_cpu_environment`:
`ONEDNN_MAX_CPU_ISA=AVX2` on CPU unless set, `GLOG_v=3`), so import it before mindspore; it warns once when
mindspore came first. `create_model` and `list_models` are imported lazily, for the same reason.
"""
from . import runtime as _runtime

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "__version__"]

_runtime.apply_cpu_environment()


def __getattr__(name: str):
    if name in ("create_model", "list_models"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'mindghost' has no attribute '{name}'")
