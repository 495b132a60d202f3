"""ImageFolder datasets and transforms through MindCV's factories (train augmentation, eval preprocessing)."""
from .pipeline import (
    DataError,
    EvalPreprocessing,
    build_eval_loader,
    build_train_loader,
    eval_preprocessing,
    inspect_split,
)

__all__ = ["DataError", "EvalPreprocessing", "build_eval_loader", "build_train_loader", "eval_preprocessing",
           "inspect_split"]
