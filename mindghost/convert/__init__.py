"""Weight conversion: PyTorch checkpoints read without torch (`pth`), and the converter CLI (`convert`)."""
from .pth import UnsafeCheckpointError, load_pth, read_pth, unwrap_state_dict

__all__ = ["UnsafeCheckpointError", "load_pth", "read_pth", "unwrap_state_dict"]
