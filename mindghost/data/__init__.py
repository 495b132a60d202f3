"""ImageFolder datasets and transforms through MindCV's factories (train augmentation, eval preprocessing)."""
from .pipeline import (
    DataError,
    DatasetInfo,
    EvalPreprocessing,
    build_eval_loader,
    build_train_loader,
    check_dataset,
    data_workers,
    eval_preprocessing,
    inspect_split,
)

__all__ = ["DataError", "DatasetInfo", "EvalPreprocessing", "build_eval_loader", "build_train_loader", "check_dataset",
           "data_workers", "eval_preprocessing", "inspect_split"]
