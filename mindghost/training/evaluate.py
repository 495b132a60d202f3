"""Top-1/top-5/loss over a whole eval loader (every sample counted exactly once), and validation during training.

The last partial batch is padded to the compiled batch shape (no second graph compile) and the padding is
dropped from the results, so the batch size never changes silently and no sample is skipped or repeated.
Under msrun each rank evaluates its own shard and `reduce` sums the counts over ranks: the result is total
correct over total samples, also when the shards differ in size.
"""
import time
from typing import Callable, Dict, Optional

import numpy as np

from ..data.pipeline import DataError


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def batch_sums(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[samples, top-1 correct, top-5 correct, summed cross entropy] of one batch."""
    n = logits.shape[0]
    labels = labels.astype(np.int64).reshape(-1)
    k = min(5, logits.shape[1])
    topk = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return np.array([n, (logits.argmax(axis=1) == labels).sum(), (topk == labels[:, None]).any(axis=1).sum(),
                     -_log_softmax(logits)[np.arange(n), labels].sum()], np.float64)


def metrics_from_sums(sums: np.ndarray) -> Dict[str, float]:
    """top-1/top-5 (percent), mean loss and sample count from summed `batch_sums` (of one or all ranks)."""
    total = int(round(sums[0]))
    if total == 0:
        raise DataError("the evaluation set is empty")
    return {"top1": 100.0 * sums[1] / total, "top5": 100.0 * sums[2] / total, "loss": float(sums[3]) / total,
            "num_samples": total}


def evaluate(eval_net, loader, batch_size: int, desc: str = "eval", progress: bool = False,
             expected: Optional[int] = None,
             reduce: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Dict[str, float]:
    """Returns {'top1', 'top5' (percent), 'loss' (plain cross entropy), 'num_samples', 'img_per_s', 'seconds'}.

    `reduce` sums an array over ranks (sharded evaluation); every rank then returns the global result."""
    import mindspore as ms

    eval_net.set_train(False)
    sums = np.zeros(4, np.float64)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=expected, desc=desc, unit="img", leave=False, dynamic_ncols=True)
    t_start = time.time()
    t_steady, n_steady = None, 0
    for images, labels in loader.create_tuple_iterator(num_epochs=1, output_numpy=True):
        n = images.shape[0]
        if n < batch_size:  # pad to the compiled shape; the padding is sliced off below
            pad = np.zeros((batch_size - n,) + images.shape[1:], dtype=images.dtype)
            images = np.concatenate([images, pad])
        logits = eval_net(ms.Tensor(images)).asnumpy()[:n]
        sums += batch_sums(logits, labels)
        if t_steady is None:
            t_steady = time.time()  # the first batch includes the graph compile
        else:
            n_steady += n
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    local = int(sums[0])
    if reduce is not None:
        sums = reduce(sums)
    seconds = time.time() - t_start
    steady = time.time() - t_steady if t_steady else 0.0
    res = metrics_from_sums(sums)
    rate = n_steady / steady if steady > 0 and n_steady else local / max(seconds, 1e-9)
    res.update(img_per_s=rate * res["num_samples"] / max(local, 1), seconds=seconds)  # all ranks together
    return res


class PeriodicEvaluator:
    """Validation during training: raw (and EMA) weights every `every` epochs and at the last epoch.

    EMA weights are evaluated by swapping them into the same network (no second graph compile). Under msrun
    every rank evaluates its shard; `sync` first gives all ranks rank 0's non-trainable state (BatchNorm
    statistics differ per rank), so the summed result (`reduce`) is that of the checkpoint rank 0 saves."""

    def __init__(self, eval_net, make_loader: Callable[[], object], batch_size: int, every: int, train_step,
                 progress: bool, num_samples: int, input_shape, reduce=None, sync=None):
        self.eval_net = eval_net
        self.make_loader = make_loader
        self.batch_size = batch_size
        self.every = every
        self.train_step = train_step
        self.progress = progress
        self.num_samples = num_samples
        self.input_shape = tuple(input_shape)
        self.reduce = reduce
        self.sync = sync

    def compile(self) -> None:
        """Compile the eval graph before training: MindSpore parses the Python source at compile time, so a
        graph first compiled after an hour of training would pick up any edit made to the code meanwhile."""
        import logging

        import mindspore as ms

        if self.every > 0:
            logging.getLogger("mindghost").info("compiling the eval graph ...")
            self.eval_net.set_train(False)
            self.eval_net(ms.Tensor(np.zeros((self.batch_size,) + self.input_shape, np.float32)))

    def due(self, epoch: int, epochs: int) -> bool:
        """`epoch` counts from 1."""
        return self.every > 0 and (epoch % self.every == 0 or epoch == epochs)

    def _one(self, desc: str) -> Dict[str, float]:
        if self.sync is not None:
            self.sync()
        return evaluate(self.eval_net, self.make_loader(), self.batch_size, desc=desc, progress=self.progress,
                        expected=self.num_samples, reduce=self.reduce)

    def run(self) -> Dict[str, float]:
        """{'val_top1', 'val_top5', 'val_loss', ...} and, with EMA, {'val_ema_top1', ...}."""
        res = self._one("validate")
        out = {"val_top1": res["top1"], "val_top5": res["top5"], "val_loss": res["loss"],
               "val_img_per_s": res["img_per_s"], "val_num_samples": res["num_samples"]}
        if getattr(self.train_step, "use_ema", False):
            with swapped_ema(self.train_step):
                res = self._one("validate ema")
            out.update(val_ema_top1=res["top1"], val_ema_top5=res["top5"], val_ema_loss=res["loss"])
        return out


class swapped_ema:
    """Context manager: the network holds the EMA weights inside, its own weights again after."""

    def __init__(self, train_step):
        self.ts = train_step

    def __enter__(self):
        import mindspore as ms

        self.backup = [p.asnumpy().copy() for p in self.ts.model_params]
        for p, e in zip(self.ts.model_params, self.ts.ema_params):
            p.set_data(ms.Tensor(e.asnumpy(), dtype=p.dtype))

    def __exit__(self, *exc):
        import mindspore as ms

        for p, v in zip(self.ts.model_params, self.backup):
            p.set_data(ms.Tensor(v, dtype=p.dtype))
