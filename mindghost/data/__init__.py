"""ImageFolder datasets and transforms through MindCV's factories (train augmentation, eval preprocessing), for
RGB or grey-scale models (`channels.py`)."""
from .channels import DECODE_MODES, channel_mean_std, decode_order, in_channels_problem
from .checks import IMG_EXTENSIONS
from .pipeline import (
    DataError,
    DatasetInfo,
    EvalPreprocessing,
    build_eval_loader,
    build_train_loader,
    check_dataset,
    data_workers,
    eval_ops,
    eval_preprocessing,
    inspect_split,
)

__all__ = ["DECODE_MODES", "IMG_EXTENSIONS", "DataError", "DatasetInfo", "EvalPreprocessing", "build_eval_loader",
           "build_train_loader", "channel_mean_std", "check_dataset", "data_workers", "decode_order", "eval_ops",
           "eval_preprocessing", "in_channels_problem", "inspect_split"]
