"""Data-parallel setup under msrun: init() on hccl (Ascend), nccl (GPU) or mccl (CPU), gradients averaged."""
import os
from dataclasses import dataclass

import numpy as np

from .config import ConfigError


def launched_by_msrun() -> bool:
    return "MS_ROLE" in os.environ or "RANK_SIZE" in os.environ or "MS_WORKER_NUM" in os.environ


@dataclass(frozen=True)
class Replica:
    """This process's place in the data-parallel group. Rank 0 alone writes files and logs at INFO level."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_problem(distribute: bool) -> str:
    """Why `distribute` cannot work in this process ("" when it can): data parallelism needs msrun's workers."""
    if distribute and not launched_by_msrun():
        return ("distribute=True needs the msrun launcher, e.g. `msrun --worker_num=8 --local_worker_num=8 "
                "--join=True train.py --config ... --data_dir ...`; for one device pass --distribute False")
    return ""


def init_distributed(distribute: bool) -> Replica:
    """This process's Replica; rank 0 of 1 for a single process. Call after the device is set. Without msrun
    (`launch_problem`) it raises ConfigError; train.py reports that with its other checks (plan.make_plan)."""
    if not distribute:
        return Replica()
    if launch_problem(distribute):
        raise ConfigError(launch_problem(distribute))
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    init()  # backend chosen from the device: hccl / nccl / mccl
    rank, size = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=size)
    return Replica(rank, size)


def allreduce_sum(values: np.ndarray) -> np.ndarray:
    """Sum a host array over all ranks (as float32: counts stay exact below 2**24 per entry)."""
    import mindspore as ms
    from mindspore import ops

    out = ops.AllReduce()(ms.Tensor(np.asarray(values, np.float32)))
    return out.asnumpy().astype(np.float64)


def _flat(params) -> np.ndarray:
    return np.concatenate([p.asnumpy().astype(np.float32).ravel() for p in params])


def from_rank0(params, rank: int) -> np.ndarray:
    """Rank 0's values of `params`, flattened, on every rank (an all-reduce in which the others add zeros)."""
    flat = _flat(params)
    return allreduce_sum(flat if rank == 0 else np.zeros_like(flat)).astype(np.float32)


def sync_from_rank0(params, rank: int) -> None:
    """Give every rank rank 0's values of `params` (BatchNorm moving statistics differ per rank: evaluating
    shards with rank 0's makes the sharded result that of the checkpoint rank 0 saves)."""
    import mindspore as ms

    params = list(params)
    if not params:
        return
    flat, i = from_rank0(params, rank), 0
    for p in params:
        n = int(np.prod(p.shape))
        p.set_data(ms.Tensor(flat[i:i + n].reshape(p.shape), dtype=p.dtype))
        i += n


def replica_divergence(params, rank: int) -> float:
    """Sum over ranks of max |w_rank - w_rank0|: 0.0 when every replica holds rank 0's weights."""
    params = list(params)
    diff = float(np.abs(_flat(params) - from_rank0(params, rank)).max()) if params else 0.0
    return float(allreduce_sum(np.array([diff]))[0])
