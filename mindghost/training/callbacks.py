"""Training callbacks, one job each: progress/logging, evaluation, checkpointing, metrics files.

Only rank 0 writes files, logs and shows progress: `is_main()` is the one gate.
"""
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np

LOG = logging.getLogger("mindghost")
_RANK = {"rank": 0}


def set_rank(rank: int) -> None:
    _RANK["rank"] = rank


def is_main() -> bool:
    return _RANK["rank"] == 0


class _TqdmHandler(logging.StreamHandler):
    """Console log lines that do not break a running tqdm bar."""

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record))
        except Exception:  # pragma: no cover
            super().emit(record)


def setup_logging(log_file: Optional[str] = None) -> logging.Logger:
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    for h in list(LOG.handlers):
        LOG.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    console = _TqdmHandler() if is_main() else logging.StreamHandler()
    console.setFormatter(fmt)
    console.setLevel(logging.INFO if is_main() else logging.WARNING)
    LOG.addHandler(console)
    if log_file and is_main():
        fh = logging.FileHandler(log_file)
        fh.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        LOG.addHandler(fh)
    return LOG


class Callback:
    def on_train_begin(self, state: Dict[str, Any]) -> None: ...
    def on_step_end(self, state: Dict[str, Any]) -> None: ...
    def on_epoch_end(self, state: Dict[str, Any]) -> None: ...
    def on_train_end(self, state: Dict[str, Any]) -> None: ...


class CallbackList(Callback):
    def __init__(self, callbacks: List[Callback]):
        self.callbacks = callbacks

    def on_train_begin(self, state):
        for c in self.callbacks:
            c.on_train_begin(state)

    def on_step_end(self, state):
        for c in self.callbacks:
            c.on_step_end(state)

    def on_epoch_end(self, state):
        for c in self.callbacks:
            c.on_epoch_end(state)

    def on_train_end(self, state):
        for c in self.callbacks:
            c.on_train_end(state)


class ProgressLogger(Callback):
    """tqdm bar (loss, lr, img/s) and a log line every `log_every` steps; the loss is read from the device
    only then, so other steps do not wait for the host."""

    def __init__(self, log_every: int, global_batch: int, progress: bool):
        self.log_every = log_every
        self.global_batch = global_batch
        self.progress = progress and is_main()
        self.bar = None

    def on_train_begin(self, state):
        LOG.info("compiling the train step (the first step includes the graph compile; about 20-60 s on CPU) ...")

    def on_step_end(self, state):
        step_in_epoch = state["batch_in_epoch"]
        if self.progress and self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=state["steps_per_epoch"], initial=step_in_epoch - 1,
                            desc=f"epoch {state['epoch'] + 1}/{state['epochs']}", unit="step", dynamic_ncols=True,
                            leave=False)
        if self.bar is not None:
            self.bar.update(1)
        if state["step"] == 1 + state["start_step"]:
            LOG.info(f"first step done in {time.time() - state['t_first']:.1f} s (includes compile)")
        if step_in_epoch % self.log_every == 0 or step_in_epoch == state["steps_per_epoch"]:
            loss = float(state["loss"].asnumpy())
            state["epoch_losses"].append(loss)
            ips = state["img_per_s"]()
            lr = state["lr"]()
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", img_s=f"{ips:.0f}")
            if not np.isfinite(loss):
                LOG.warning(f"step {state['step']}: loss is {loss}")
            if not self.progress or step_in_epoch % self.log_every == 0:
                LOG.info(f"epoch {state['epoch'] + 1} step {step_in_epoch}/{state['steps_per_epoch']} "
                         f"loss {loss:.4f} lr {lr:.4g} {ips:.1f} img/s")

    def on_epoch_end(self, state):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        m = state["metrics"]
        line = (f"epoch {m['epoch']}/{state['epochs']} done: train loss {m['train_loss']:.4f}, "
                f"{m['img_per_s']:.1f} img/s, {m['epoch_time']:.0f} s")
        for prefix in ("val", "val_ema"):
            if f"{prefix}_top1" in m:
                line += f"; {prefix} top-1 {m[prefix + '_top1']:.2f} top-5 {m[prefix + '_top5']:.2f} " \
                        f"loss {m[prefix + '_loss']:.4f}"
        LOG.info(line)


class Evaluator(Callback):
    """Validate raw (and EMA) weights every `every` epochs and at the last epoch.

    EMA weights are evaluated by swapping them into the same network (no second graph compile). Under msrun
    every rank evaluates its shard; `sync` first gives all ranks rank 0's non-trainable state (BatchNorm
    statistics differ per rank), so the summed result is that of the checkpoint rank 0 saves."""

    def __init__(self, eval_net, make_loader, batch_size: int, every: int, train_step, progress: bool,
                 num_samples: int, input_shape, reduce=None, sync=None):
        self.input_shape = input_shape
        self.eval_net = eval_net
        self.make_loader = make_loader
        self.batch_size = batch_size
        self.every = every
        self.train_step = train_step
        self.progress = progress
        self.num_samples = num_samples
        self.reduce = reduce
        self.sync = sync

    def on_train_begin(self, state):
        """Compile the eval graph now: MindSpore parses the Python source at compile time, so a graph first
        compiled after an hour of training would pick up any edit made to the code in the meantime."""
        import mindspore as ms

        if self.every > 0:
            LOG.info("compiling the eval graph ...")
            self.eval_net.set_train(False)
            self.eval_net(ms.Tensor(np.zeros((self.batch_size,) + tuple(self.input_shape), np.float32)))

    def due(self, state) -> bool:
        epoch = state["metrics"]["epoch"]
        return self.every > 0 and (epoch % self.every == 0 or epoch == state["epochs"])

    def on_epoch_end(self, state):
        from .evaluate import evaluate

        if not self.due(state):
            return
        m = state["metrics"]
        if self.sync is not None:
            self.sync()
        res = evaluate(self.eval_net, self.make_loader(), self.batch_size, desc="validate",
                       progress=self.progress and is_main(), expected=self.num_samples, reduce=self.reduce)
        m.update(val_top1=res["top1"], val_top5=res["top5"], val_loss=res["loss"], val_img_per_s=res["img_per_s"],
                 val_num_samples=res["num_samples"])
        if getattr(self.train_step, "use_ema", False):
            with swapped_ema(self.train_step):
                if self.sync is not None:
                    self.sync()
                res = evaluate(self.eval_net, self.make_loader(), self.batch_size, desc="validate ema",
                               progress=self.progress and is_main(), expected=self.num_samples,
                               reduce=self.reduce)
            m.update(val_ema_top1=res["top1"], val_ema_top5=res["top5"], val_ema_loss=res["loss"])


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


class Checkpointer(Callback):
    """Save every `every` epochs, at the last epoch and when the tracked metric improves; `best.ckpt` follows it."""

    def __init__(self, manager, train_step, every: int, best_key: str, make_meta):
        self.manager = manager
        self.train_step = train_step
        self.every = every
        self.best_key = best_key
        self.make_meta = make_meta

    def on_epoch_end(self, state):
        if not is_main():
            return
        m = state["metrics"]
        is_best = False
        if self.best_key in m and (state["best"] is None or m[self.best_key] > state["best"]["value"]):
            state["best"] = {"value": m[self.best_key], "epoch": m["epoch"], "key": self.best_key}
            is_best = True
        if is_best or m["epoch"] % self.every == 0 or m["epoch"] == state["epochs"]:
            path = self.manager.save(self.train_step, self.make_meta(state), f"epoch_{m['epoch']:04d}.ckpt",
                                     is_best=is_best)
            m["checkpoint"] = os.path.basename(path)

    def save_partial(self, state) -> str:
        """Mid-epoch save (max_steps reached): the meta records how many batches of the epoch are done."""
        if not is_main():
            return ""
        return self.manager.save(self.train_step, self.make_meta(state),
                                 f"epoch_{state['epoch'] + 1:04d}_step_{state['step']:08d}.ckpt")


class MetricsWriter(Callback):
    """metrics.jsonl (one line per epoch), then curves.png and summary.json at the end."""

    def __init__(self, run_dir: str, plot: bool):
        self.run_dir = run_dir
        self.plot = plot
        self.path = os.path.join(run_dir, "metrics.jsonl")

    def on_epoch_end(self, state):
        if is_main():
            with open(self.path, "a") as fh:
                fh.write(json.dumps(state["metrics"]) + "\n")

    def on_train_end(self, state):
        if not is_main():
            return
        history = read_metrics(self.path)
        if self.plot and history:
            plot_curves(history, os.path.join(self.run_dir, "curves.png"))


def read_metrics(path: str) -> List[Dict[str, Any]]:
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def plot_curves(history: List[Dict[str, Any]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        LOG.info("curves.png skipped: matplotlib is not installed (pip install matplotlib)")
        return
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [h["train_loss"] for h in history], label="train")
    if any("val_loss" in h for h in history):
        axes[0].plot([h["epoch"] for h in history if "val_loss" in h],
                     [h["val_loss"] for h in history if "val_loss" in h], label="val")
    axes[0].set_title("loss")
    for key, label in (("val_top1", "top-1"), ("val_top5", "top-5"), ("val_ema_top1", "EMA top-1")):
        pts = [(h["epoch"], h[key]) for h in history if key in h]
        if pts:
            axes[1].plot(*zip(*pts), marker="o", label=label)
    axes[1].set_title("validation accuracy (%)")
    axes[2].plot(epochs, [h["lr"] for h in history])
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
