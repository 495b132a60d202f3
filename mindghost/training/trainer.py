"""The build steps train.py calls in order, and the training loop (one path: our loop over a compiled step).

The loop rebuilds the train loader each epoch with seed + epoch, so a run resumed from a checkpoint (at an
epoch boundary or mid-epoch, by skipping the batches already consumed) sees exactly the data of an
uninterrupted run; with `deterministic: True` the weights then match exactly.
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .callbacks import LOG, CallbackList, Checkpointer, is_main, read_metrics, set_rank, setup_logging
from .checkpoint import LAST, load_training_state
from .config import Config, ConfigError, dump_yaml

FINISHED = "summary.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the run stopped before saving anything from the diverged state."""


@dataclass
class Run:
    """Where a run writes, and where it resumes from."""

    directory: str
    ckpt_dir: str
    resume_from: str = ""
    device: str = "CPU"
    rank: int = 0
    group_size: int = 1
    extra: Dict[str, Any] = field(default_factory=dict)


def setup_runtime(cfg: Config, env_note: str, device: str):
    """Device, mode, seeds, threads, then the process group."""
    from ..runtime import setup_context
    from .distributed import init_distributed

    setup_context(device, cfg.mode, cfg.deterministic, cfg.seed, cfg.cpu_threads)
    rank, size = init_distributed(cfg.distribute)
    set_rank(rank)
    if size > 1:  # in every worker log: scripts/_common.sh names a failed worker's rank from msrun's pid
        print(f"mindghost worker: rank {rank} of {size}, pid {os.getpid()}, host {platform.node()}", flush=True)
    return rank, size


def prepare_run_dir(cfg: Config, device: str, rank: int, size: int, env_note: str = "") -> Run:
    """Create or reopen the run directory; decide whether this is a fresh run or a resume."""
    directory = cfg.output_dir
    if not directory:
        directory = os.path.join("runs", f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}")
        if is_main():
            directory = _new_directory(directory)
    ckpt_dir = os.path.join(directory, "checkpoints")
    run = Run(directory=directory, ckpt_dir=ckpt_dir, device=device, rank=rank, group_size=size)
    finished = os.path.isfile(os.path.join(directory, FINISHED))
    last = os.path.join(ckpt_dir, LAST)
    if cfg.resume:
        run.resume_from = cfg.resume
    elif finished and not cfg.overwrite:
        raise FileExistsError(
            f"'{directory}' holds a finished run ({FINISHED} exists). Choose another --output_dir, pass "
            f"--overwrite True to start again there, or --resume {last} to continue it (e.g. with more epochs).")
    elif cfg.overwrite and os.path.isdir(directory):
        if is_main():
            for name in ("checkpoints", "metrics.jsonl", FINISHED, "curves.png", "train.log"):
                p = os.path.join(directory, name)
                if os.path.isdir(p):
                    shutil.rmtree(p)
                elif os.path.exists(p):
                    os.remove(p)
    elif os.path.isfile(last):
        run.resume_from = last  # an interrupted run in this directory: continue it
    if is_main():
        os.makedirs(ckpt_dir, exist_ok=True)
    setup_logging(os.path.join(directory, "train.log") if is_main() else None)
    if env_note:
        LOG.info(env_note)
    if is_main():
        dump_yaml(cfg, os.path.join(directory, "config.yaml"))
        with open(os.path.join(directory, "env.json"), "w") as fh:
            json.dump(environment_info(device, size), fh, indent=2)
    LOG.info(f"run directory: {directory}" + (f" (resuming from {run.resume_from})" if run.resume_from else ""))
    return run


def _new_directory(base: str) -> str:
    """Create and return `base`, or `base-1`, `base-2`, ... : two runs started in the same second never share."""
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    for i in range(10000):
        candidate = base if i == 0 else f"{base}-{i}"
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run directory next to '{base}'; pass --output_dir")


def _check_loss(loss, state: Dict[str, Any], run: Run, train_step) -> None:
    """Read the loss (at log points: that read waits for the device) and stop on NaN/inf, before any callback
    can save the diverged weights. Under fp16 loss scaling an overflowing step was skipped, not applied."""
    import numpy as np

    value = float(np.asarray(loss.asnumpy()).reshape(-1)[0])
    if np.isfinite(value):
        return
    where = f"step {state['step']} (epoch {state['epoch'] + 1}, batch {state['batch_in_epoch']})"
    if getattr(train_step, "check_overflow", False):
        LOG.warning(f"loss is {value} at {where}: gradients overflowed, the update was skipped (loss scaling)")
        return
    last = os.path.join(run.ckpt_dir, LAST)
    kept = f"The last good checkpoint is {last}; nothing from the diverged state was saved." \
        if os.path.isfile(last) else "No checkpoint had been saved yet."
    raise TrainingDiverged(
        f"loss is {value} at {where}: training stopped. {kept} Lower --lr (or add --warmup_epochs / "
        f"--clip_grad_norm), then resume" + (f" with --resume {last}." if os.path.isfile(last) else "."))


def environment_info(device: str, group_size: int) -> Dict[str, Any]:
    import numpy

    import mindcv
    import mindspore

    from .. import __version__

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "git_commit": git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "mindghost": __version__, "mindspore": mindspore.__version__, "mindcv": mindcv.__version__,
        "numpy": numpy.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "device": device, "devices": group_size, "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "argv": sys.argv, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def build_model(cfg: Config):
    from ..cpu import accelerate_on_cpu
    from ..models import create_model

    model = create_model(cfg.model, num_classes=cfg.num_classes, in_channels=cfg.in_channels,
                         drop_rate=cfg.drop_rate, checkpoint_path=cfg.ckpt_path or None)
    model = accelerate_on_cpu(model, cfg.device)  # CPU speed-ups; before the optimizer and train step see it
    n = sum(p.size for p in model.trainable_params())
    LOG.info(f"model {cfg.model}: {n / 1e6:.2f}M trainable parameters"
             + (f", initial weights from {cfg.ckpt_path}" if cfg.ckpt_path else ""))
    return model


def build_loss(cfg: Config):
    from mindcv.loss import create_loss

    return create_loss(cfg.loss, label_smoothing=cfg.label_smoothing)


def resolve_amp(cfg: Config, device: str):
    """(amp_level, loss-scale type, check_overflow) for this device."""
    level = cfg.amp_level
    if device == "CPU" and level in ("O1", "O2"):
        raise ConfigError(f"amp_level {level} is not supported on CPU with GhostNet; use O0 (fp32, fastest on CPU) "
                         "or O3")
    fp16 = level != "O0"
    kind = cfg.loss_scale_type
    if kind == "auto":
        kind = "dynamic" if fp16 and device in ("Ascend", "GPU") else "fixed"
    if kind == "dynamic" and device == "CPU":
        raise ConfigError("loss_scale_type dynamic is not supported on CPU; use fixed")
    return level, kind, fp16 and cfg.drop_overflow_update


def build_train_step(cfg: Config, model, loss_fn, optimizer, device: str):
    import mindspore as ms
    from mindspore import nn

    from .train_step import TrainStep, WithLoss

    level, kind, check_overflow = resolve_amp(cfg, device)
    if level != "O0":
        ms.amp.auto_mixed_precision(model, level)
    scale = cfg.loss_scale if level != "O0" else 1.0
    if kind == "dynamic":
        sense = nn.DynamicLossScaleUpdateCell(loss_scale_value=scale, scale_factor=2, scale_window=2000)
    else:
        sense = ms.Tensor(scale, ms.float32)
    step = TrainStep(WithLoss(model, loss_fn), optimizer, sense, ema_decay=cfg.ema_decay if cfg.ema else 0.0,
                     clip_norm=cfg.clip_grad_norm, accum_steps=cfg.accum_steps, check_overflow=check_overflow,
                     device=device)
    step.set_train(True)
    LOG.info(f"precision {level}, loss scale {kind} {scale:g}, optimizer {cfg.opt}, "
             f"ema {format(cfg.ema_decay, 'g') if cfg.ema else 'off'}, clip {cfg.clip_grad_norm or 'off'}, "
             f"accumulation {cfg.accum_steps}")
    return step


def make_meta(cfg: Config, run: Run):
    from .. import __version__

    def meta(state: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "format": 1, "model": cfg.model, "num_classes": cfg.num_classes,
            "epoch": state["epoch_done"], "batch_in_epoch": state["batch_in_epoch_done"], "global_step": state["step"],
            "best": state["best"], "metrics": state.get("metrics"), "config": cfg.to_dict(),
            "seed": cfg.seed, "mindghost": __version__, "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    return meta


def fit(cfg: Config, run: Run, train_step, make_train_loader, steps_per_epoch: int, callbacks: CallbackList,
        checkpointer: Optional[Checkpointer], state: Dict[str, Any]) -> Dict[str, Any]:
    """The loop. `state` carries the position (epoch_done, batch_in_epoch_done, step) restored on resume."""

    opt = train_step.optimizer
    lr_table = getattr(opt, "lr_table", None) or [float("nan")]

    def current_lr() -> float:
        i = int(opt.global_step.asnumpy().reshape(-1)[0]) - 1
        return float(lr_table[min(max(i, 0), len(lr_table) - 1)])

    global_batch = cfg.batch_size * run.group_size
    timing = {"t0": None, "images": 0}

    def img_per_s() -> float:
        if timing["t0"] is None or timing["images"] == 0:
            return 0.0
        return timing["images"] / max(time.time() - timing["t0"], 1e-9)

    state.update(steps_per_epoch=steps_per_epoch, epochs=cfg.epochs, lr=current_lr, img_per_s=img_per_s,
                 start_step=state["step"], t_first=time.time())
    callbacks.on_train_begin(state)
    use_sink = cfg.dataset_sink_mode and run.device in ("Ascend", "GPU")
    stop = False
    t_train = time.time()
    for epoch in range(state["epoch_done"], cfg.epochs):
        state["epoch"] = epoch
        train_step.set_train(True)  # evaluation switched the shared network to inference mode
        skip = state["batch_in_epoch_done"] if epoch == state["epoch_done"] else 0
        loader = make_train_loader(epoch)
        state["epoch_losses"] = []
        timing.update(t0=None, images=0)  # the running img/s shown in logs covers this epoch's steady steps
        t_epoch = time.time()
        epoch_images, t_epoch_steady = 0, None
        if use_sink and skip == 0:
            batches = _sink_batches(train_step, loader, steps_per_epoch, cfg.log_every)
        else:
            batches = _host_batches(train_step, loader, skip)
        prev = skip
        for batch_index, loss in batches:
            new_batches, prev = batch_index - prev, batch_index
            state["step"] += new_batches
            state["loss"] = loss
            state["batch_in_epoch"] = batch_index
            if timing["t0"] is None:  # steady-state speed excludes the first (compiling) step
                timing["t0"] = time.time()
            else:
                timing["images"] += global_batch * new_batches
            if t_epoch_steady is None:
                t_epoch_steady = time.time()
            else:
                epoch_images += global_batch * new_batches
            if use_sink or batch_index % cfg.log_every == 0 or batch_index == steps_per_epoch:
                _check_loss(loss, state, run, train_step)
            state["batch_in_epoch_done"], state["epoch_done"] = batch_index, epoch
            callbacks.on_step_end(state)
            if cfg.max_steps and state["step"] >= cfg.max_steps:
                stop = batch_index < steps_per_epoch
                if stop:
                    break
        if stop:
            LOG.info(f"max_steps={cfg.max_steps} reached at epoch {epoch + 1}, batch {state['batch_in_epoch']}")
            if checkpointer is not None:
                path = checkpointer.save_partial(state)
                LOG.info(f"saved {path}")
            break
        state["epoch_done"], state["batch_in_epoch_done"] = epoch + 1, 0
        elapsed = time.time() - t_epoch
        steady = time.time() - t_epoch_steady if t_epoch_steady else elapsed
        losses = state["epoch_losses"]
        state["metrics"] = {
            "epoch": epoch + 1, "step": state["step"],
            "train_loss": float(sum(losses) / len(losses)) if losses else float("nan"),
            "lr": current_lr(), "img_per_s": epoch_images / steady if steady > 0 and epoch_images else 0.0,
            "epoch_time": elapsed, "time": time.time() - t_train,
        }
        callbacks.on_epoch_end(state)
        if cfg.max_steps and state["step"] >= cfg.max_steps:
            break
    state["finished"] = state["epoch_done"] >= cfg.epochs
    state["train_time"] = time.time() - t_train
    callbacks.on_train_end(state)
    return state


def _host_batches(train_step, loader, skip: int):
    """Feed batches from the host (CPU; or a mid-epoch resume): yields (batch index from 1, loss tensor)."""
    for i, (images, labels) in enumerate(loader.create_tuple_iterator(num_epochs=1), start=1):
        if i <= skip:
            continue  # consumed before the interruption: same data, not trained again
        yield i, train_step(images, labels)


def _sink_batches(train_step, loader, steps: int, log_every: int):
    """Dataset sink mode (Ascend/GPU): the device pulls `chunk` batches per call."""
    import mindspore as ms

    chunk = max(c for c in range(1, min(log_every, steps) + 1) if steps % c == 0)
    sink = ms.data_sink(train_step, loader, sink_size=chunk)
    for i in range(chunk, steps + 1, chunk):
        yield i, sink()


def write_summary(cfg: Config, run: Run, state: Dict[str, Any]) -> Dict[str, Any]:
    history = read_metrics(os.path.join(run.directory, "metrics.jsonl"))
    last = history[-1] if history else {}
    summary = {
        "model": cfg.model, "epochs": state["epoch_done"], "global_step": state["step"],
        "finished": state["finished"], "best": state["best"], "last": last,
        "train_time_s": state.get("train_time"),
        "best_checkpoint": os.path.join(run.ckpt_dir, "best.ckpt") if state["best"] else None,
        "last_checkpoint": os.path.join(run.ckpt_dir, LAST),
    }
    if run.group_size > 1:
        summary.update(devices=run.group_size, global_batch=cfg.batch_size * run.group_size,
                       replica_weight_diff=state.get("replica_weight_diff"))
    if is_main() and state["finished"]:
        with open(os.path.join(run.directory, FINISHED), "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


def restore(train_step, run: Run) -> Dict[str, Any]:
    """The loop position: fresh, or read from the checkpoint's meta (never from its file name)."""
    state: Dict[str, Any] = {"epoch_done": 0, "batch_in_epoch_done": 0, "step": 0, "best": None}
    if run.resume_from:
        meta, _ = load_training_state(train_step, run.resume_from)
        state.update(epoch_done=int(meta["epoch"]), batch_in_epoch_done=int(meta.get("batch_in_epoch", 0)),
                     step=int(meta["global_step"]), best=meta.get("best"))
        LOG.info(f"resumed from {run.resume_from}: epoch {state['epoch_done']}, "
                 f"batch {state['batch_in_epoch_done']}, step {state['step']}")
    return state
