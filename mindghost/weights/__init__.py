"""The one home for weight files: reading (mindghost/MindCV `.ckpt`, `.safetensors`, PyTorch `.pth` without torch),
strict loading, the checks on a checkpoint path, the metadata key, atomic saving, and the PyTorch → MindSpore
renaming helpers.

`io` (errors, META_KEY, atomic_save) ← `pth` (the torch-free reader) ← `load` (read + strict load). Models,
training and convert import from here; this package imports none of them.
"""
from .io import META_KEY, TORCH_SUFFIXES, CheckpointError, CheckpointSaveError, atomic_save, decode_meta
from .load import (
    check_ckpt_path,
    find_checkpoints,
    load_checkpoint,
    load_state_dict,
    read_checkpoint,
    read_meta,
    rename_torch_state_dict,
    torch_bn_rename,
)
from .pth import UnsafeCheckpointError, load_pth, read_pth, unwrap_state_dict

__all__ = ["META_KEY", "TORCH_SUFFIXES", "CheckpointError", "CheckpointSaveError", "UnsafeCheckpointError",
           "atomic_save", "check_ckpt_path", "decode_meta", "find_checkpoints", "load_checkpoint", "load_pth",
           "load_state_dict", "read_checkpoint", "read_meta", "read_pth", "rename_torch_state_dict", "torch_bn_rename",
           "unwrap_state_dict"]
