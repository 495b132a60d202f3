"""Compatibility path: the torch-free `.pth` reader lives in `mindghost.weights.pth`."""
from ..weights.pth import UnsafeCheckpointError, load_pth, read_pth, unwrap_state_dict

__all__ = ["UnsafeCheckpointError", "load_pth", "read_pth", "unwrap_state_dict"]
