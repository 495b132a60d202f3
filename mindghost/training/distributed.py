"""Data-parallel setup under msrun: init() on hccl (Ascend), nccl (GPU) or mccl (CPU), gradients averaged."""
import os
from typing import Tuple


def launched_by_msrun() -> bool:
    return "MS_ROLE" in os.environ or "RANK_SIZE" in os.environ or "MS_WORKER_NUM" in os.environ


def init_distributed(distribute: bool) -> Tuple[int, int]:
    """Returns (rank, group_size); (0, 1) for a single process. Call after the device is set."""
    if not distribute:
        return 0, 1
    if not launched_by_msrun():
        raise RuntimeError(
            "distribute=True needs the msrun launcher, e.g. `msrun --bind_core=True --worker_num 8 "
            "python train.py --config ... --data_dir ...`; for one device pass --distribute False")
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    init()  # backend chosen from the device: hccl / nccl / mccl
    rank, size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=size)
    return rank, size
