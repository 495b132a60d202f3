"""Training callbacks, one job each: progress lines, checkpoints, the metrics files. They read the loop's
`TrainState` and never change it. They exist on rank 0 only (`build_callbacks` decides), so none checks
the rank itself.
"""
import json
import os
import time
from typing import Any, Dict, List

from .logs import LOG


class Callback:
    def on_train_begin(self, state) -> None: ...
    def on_step_end(self, state) -> None: ...
    def on_epoch_end(self, state) -> None: ...
    def on_stop_mid_epoch(self, state) -> None: ...
    def on_train_end(self, state) -> None: ...


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

    def on_stop_mid_epoch(self, state):
        for c in self.callbacks:
            c.on_stop_mid_epoch(state)

    def on_train_end(self, state):
        for c in self.callbacks:
            c.on_train_end(state)


class ProgressLogger(Callback):
    """A log line every `log_every` steps and at the end of each epoch; a tqdm bar too when `bar` is True."""

    def __init__(self, log_every: int, bar: bool):
        self.log_every = log_every
        self.show_bar = bar
        self.bar = None
        self.t_begin = 0.0

    def on_train_begin(self, state):
        self.t_begin = time.time()
        LOG.info("compiling the train step (the first step includes the graph compile; about 20-60 s on CPU) ...")

    def on_step_end(self, state):
        if self.show_bar and self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=state.steps_per_epoch, initial=state.batch - 1,
                            desc=f"epoch {state.epoch + 1}/{state.epochs}", unit="step", dynamic_ncols=True,
                            leave=False)
        if self.bar is not None:
            self.bar.update(1)
        if state.first_step_of_process:
            LOG.info(f"first step done in {time.time() - self.t_begin:.1f} s (includes compile)")
        if not state.at_log_point:
            return
        ips = state.speed.rate()
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{state.loss:.4f}", lr=f"{state.lr:.3g}", img_s=f"{ips:.0f}")
        if self.bar is None or state.batch % self.log_every == 0:
            skipped = f", {state.epoch_skipped} skipped this epoch (fp16 overflow)" if state.epoch_skipped else ""
            parts = f" (label {state.loss_parts['label']:.4f}, kd {state.loss_parts['kd']:.4f})" \
                if state.loss_parts else ""
            LOG.info(f"epoch {state.epoch + 1} step {state.batch}/{state.steps_per_epoch} "
                     f"loss {state.loss:.4f}{parts} lr {state.lr:.4g} {ips:.1f} img/s{skipped}")

    def on_epoch_end(self, state):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        m = state.metrics
        parts = f" (label {m['train_label_loss']:.4f}, kd {m['train_kd_loss']:.4f})" \
            if "train_kd_loss" in m else ""
        line = (f"epoch {m['epoch']}/{state.epochs} done: train loss {m['train_loss']:.4f}{parts}, "
                f"{m['img_per_s']:.1f} img/s, {m['epoch_time']:.0f} s")
        if m.get("skipped_steps"):
            line += f", {m['skipped_steps']} of {state.steps_per_epoch} steps skipped (fp16 overflow)"
        for prefix in ("val", "val_ema"):
            if f"{prefix}_top1" in m:
                line += f"; {prefix} top-1 {m[prefix + '_top1']:.2f} top-5 {m[prefix + '_top5']:.2f} " \
                        f"loss {m[prefix + '_loss']:.4f}"
        LOG.info(line)


class Checkpointer(Callback):
    """Save every `every` epochs, at the last epoch, when the loop found a new best (`best.ckpt` follows it),
    and where max_steps stopped the run mid-epoch. `meta(state)` is what the file says about itself."""

    def __init__(self, manager, train_step, every: int, meta):
        self.manager = manager
        self.train_step = train_step
        self.every = every
        self.meta = meta

    def on_epoch_end(self, state):
        m = state.metrics
        if state.improved or m["epoch"] % self.every == 0 or m["epoch"] == state.epochs:
            path = self.manager.save(self.train_step, self.meta(state), f"epoch_{m['epoch']:04d}.ckpt",
                                     is_best=state.improved)
            m["checkpoint"] = os.path.basename(path)

    def on_stop_mid_epoch(self, state):
        """The meta records how many batches of the epoch are done."""
        path = self.manager.save(self.train_step, self.meta(state),
                                 f"epoch_{state.epoch + 1:04d}_step_{state.step:08d}.ckpt")
        LOG.info(f"saved {path}")


class MetricsWriter(Callback):
    """metrics.jsonl (one line per epoch), then curves.png at the end."""

    def __init__(self, run_dir: str, plot: bool):
        self.run_dir = run_dir
        self.plot = plot
        self.path = os.path.join(run_dir, "metrics.jsonl")

    def on_epoch_end(self, state):
        with open(self.path, "a") as fh:
            fh.write(json.dumps(state.metrics) + "\n")

    def on_train_end(self, state):
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
