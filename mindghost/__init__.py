"""mindghost: train, validate, convert and deploy the GhostNet family on MindSpore.

`create_model` and `list_models` are imported lazily, so that `mindghost.runtime` can set CPU environment
variables before MindSpore (and its oneDNN) is loaded.
"""
__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "__version__"]


def __getattr__(name: str):
    if name in ("create_model", "list_models"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'mindghost' has no attribute '{name}'")
