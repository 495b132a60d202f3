"""Top-1/top-5/loss over a whole eval loader; every sample is counted exactly once.

The last partial batch is padded to the compiled batch shape (no second graph compile) and the padding is
dropped from the results, so the batch size never changes silently and no sample is skipped or repeated.
"""
import time
from typing import Dict, Optional

import numpy as np


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def evaluate(eval_net, loader, batch_size: int, desc: str = "eval", progress: bool = False,
             expected: Optional[int] = None) -> Dict[str, float]:
    """Returns {'top1', 'top5' (percent), 'loss' (plain cross entropy), 'num_samples', 'img_per_s', 'seconds'}."""
    import mindspore as ms

    eval_net.set_train(False)
    total = correct1 = correct5 = 0
    loss_sum = 0.0
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
        labels = labels.astype(np.int64).reshape(-1)
        k = min(5, logits.shape[1])
        topk = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        correct1 += int((logits.argmax(axis=1) == labels).sum())
        correct5 += int((topk == labels[:, None]).any(axis=1).sum())
        loss_sum += float(-_log_softmax(logits)[np.arange(n), labels].sum())
        total += n
        if t_steady is None:
            t_steady = time.time()  # the first batch includes the graph compile
        else:
            n_steady += n
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    seconds = time.time() - t_start
    if total == 0:
        raise ValueError("the evaluation set is empty")
    steady = time.time() - t_steady if t_steady else 0.0
    return {
        "top1": 100.0 * correct1 / total,
        "top5": 100.0 * correct5 / total,
        "loss": loss_sum / total,
        "num_samples": total,
        "img_per_s": n_steady / steady if steady > 0 and n_steady else total / max(seconds, 1e-9),
        "seconds": seconds,
    }
