"""The training loop and the state it owns.

One path: our loop over a compiled train step. The train loader is rebuilt each epoch with seed + epoch, so a
run resumed from a checkpoint (at an epoch boundary, or mid-epoch by skipping the batches already trained) sees
exactly the data of an uninterrupted run; with `deterministic: True` the weights then match exactly.

The loop alone changes `TrainState`: it reads the loss from the device at log points (that read waits for
the device, so other steps do not), keeps the epoch's losses, the lr (from the same `LrSchedule` the optimizer
holds), the speed, the evaluation results and the best value. Callbacks only read it.
"""
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..errors import TrainingDiverged, TrainingStalled
from .callbacks import CallbackList
from .checkpoint import LAST
from .logs import LOG
from .optim import LrSchedule


class Speed:
    """Images per second over the steps after the first one of an epoch (the first may include a compile)."""

    def __init__(self):
        self.t0: Optional[float] = None
        self.images = 0

    def add(self, images: int) -> None:
        if self.t0 is None:
            self.t0 = time.time()
        else:
            self.images += images

    def rate(self) -> float:
        if self.t0 is None or self.images == 0:
            return 0.0
        return self.images / max(time.time() - self.t0, 1e-9)


@dataclass
class TrainState:
    """Where the run is and what it has measured. Saved positions are counted in batches (micro-batches when
    accumulating); `epoch_done` + `batch_done` is what a checkpoint records and a resume restores."""

    epochs: int
    steps_per_epoch: int
    epoch_done: int = 0  # completed epochs
    batch_done: int = 0  # batches of epoch `epoch_done` already trained (a mid-epoch checkpoint)
    step: int = 0  # batches trained since the run started (over all epochs and resumes)
    start_step: int = 0  # `step` when this process started
    epoch: int = 0  # the epoch being trained, from 0
    batch: int = 0  # its batch just trained, from 1
    loss: float = math.nan  # the last loss read from the device
    at_log_point: bool = False  # the loss (and lr, speed) were read at this step
    epoch_losses: List[float] = field(default_factory=list)
    loss_parts: Dict[str, float] = field(default_factory=dict)  # KD: the last unweighted {'label': .., 'kd': ..}
    epoch_loss_parts: Dict[str, List[float]] = field(default_factory=dict)
    lr: float = math.nan  # lr of the last applied update
    updates: int = 0  # optimizer updates applied (over the whole run)
    skipped: int = 0  # steps whose update was dropped because the fp16 gradients overflowed (whole run)
    skipped_epoch_start: int = 0  # `skipped` when the current epoch started
    checked_step: int = 0  # `step` when the counters were last read
    skip_run: int = 0  # consecutive steps seen skipped, up to the last read
    speed: Speed = field(default_factory=Speed)
    t_epoch: float = 0.0  # when the current epoch started
    metrics: Dict[str, Any] = field(default_factory=dict)  # the last finished epoch's (one metrics.jsonl line)
    best: Optional[Dict[str, Any]] = None  # {'key', 'value', 'epoch'}
    improved: bool = False  # the epoch just finished set a new best
    finished: bool = False
    stopped_by: str = ""  # the signal that stopped the run mid-epoch ("SIGTERM"), see preempt.py
    train_time: float = 0.0
    # timings for steady-state speed (mindghost.tools.reproduce): [batches, seconds] between consecutive loss
    # reads of the epoch, from its first step on (each read waits for the device, so an interval holds whole
    # steps), and the seconds of this process's first step (the graph compile, measured around it; None until then)
    intervals: List[List[float]] = field(default_factory=list)
    compile_s: Optional[float] = None
    compile_recorded: bool = False  # compile_s went into an epoch's metrics already
    t_read: Optional[float] = None  # when the loss was last read (None: not yet in this epoch)
    step_read: int = 0  # `step` at that read

    @property
    def first_step_of_process(self) -> bool:
        return self.step == self.start_step + 1

    @property
    def epoch_skipped(self) -> int:
        return self.skipped - self.skipped_epoch_start


def restore(train_step, resume_from: str, state: TrainState) -> TrainState:
    """The loop position read from the checkpoint's meta (never from its file name); fresh when no resume."""
    from .checkpoint import load_training_state

    if resume_from:
        meta, _ = load_training_state(train_step, resume_from)
        state.epoch_done, state.batch_done = int(meta["epoch"]), int(meta.get("batch_in_epoch", 0))
        state.step, state.best = int(meta["global_step"]), meta.get("best")
        LOG.info(f"resumed from {resume_from}: epoch {state.epoch_done}, batch {state.batch_done}, "
                 f"step {state.step}")
    state.start_step = state.checked_step = state.step
    if hasattr(train_step, "skipped_steps"):
        state.skipped = int(train_step.skipped_steps.asnumpy())
    return state


class Loop:
    """Runs `train_step` over the epochs; `evaluator` (or None) validates at the epochs it chooses."""

    def __init__(self, cfg, train_step, make_loader: Callable[[int], Any], schedule: LrSchedule,
                 callbacks: CallbackList, evaluator=None, best_key: str = "val_top1", global_batch: int = 1,
                 use_sink: bool = False, ckpt_dir: str = "", stall_steps: int = 16, loss_scale_note: str = "",
                 dynamic_scale: bool = False, stop=None):
        self.cfg = cfg
        self.train_step = train_step
        self.make_loader = make_loader
        self.schedule = schedule
        self.callbacks = callbacks
        self.evaluator = evaluator
        self.best_key = best_key
        self.global_batch = global_batch  # images of one batch over all devices
        self.use_sink = use_sink
        self.ckpt_dir = ckpt_dir
        self.counts_skips = hasattr(train_step, "skipped_steps")  # overflow checking is on (fp16)
        self.stall_steps = stall_steps  # this many consecutive skipped steps stop the run
        self.dynamic_scale = dynamic_scale  # the scale adapts after overflows: an all-skipped epoch may recover
        self.loss_scale_note = loss_scale_note  # e.g. "loss_scale_type fixed, loss_scale 1.68e+07"
        self.loss_parts = loss_part_params(train_step)
        self.stop = stop  # a preempt.StopRequest (SIGTERM/SIGUSR1), or None

    def applied_updates(self) -> int:
        """Optimizer updates applied so far (the index of the next lr); a device read."""
        return int(self.train_step.optimizer.global_step.asnumpy().reshape(-1)[0])

    def fit(self, state: TrainState) -> TrainState:
        cfg = self.cfg
        if self.evaluator is not None:
            self.evaluator.compile()
        self.callbacks.on_train_begin(state)
        t_train = time.time()
        if self.stop is not None:
            self.stop.install()
        try:
            self._epochs(state, t_train)
        finally:
            if self.stop is not None:
                self.stop.uninstall()
        state.updates = self.applied_updates()  # also after a max_steps stop between log points
        state.finished = state.epoch_done >= cfg.epochs
        state.train_time = time.time() - t_train
        self.callbacks.on_train_end(state)
        return state

    def _epochs(self, state: TrainState, t_train: float) -> None:
        cfg = self.cfg
        for epoch in range(state.epoch_done, cfg.epochs):
            state.epoch = epoch
            stopped = self._train_epoch(state)
            if stopped:
                if not state.stopped_by:
                    LOG.info(f"max_steps={cfg.max_steps} reached at epoch {epoch + 1}, batch {state.batch}")
                self.callbacks.on_stop_mid_epoch(state)
                if state.stopped_by:
                    LOG.info(stopped_line(state, self.ckpt_dir))
                break
            self._end_epoch(state, time.time() - t_train)
            if cfg.max_steps and state.step >= cfg.max_steps:
                break

    def _train_epoch(self, state: TrainState) -> bool:
        """Train one epoch (the rest of it when resuming mid-epoch). True when max_steps or a stop signal
        (`state.stopped_by`) stopped it early; a signal stops it at its last batch too (the resume then ends the
        epoch: evaluation, epoch checkpoint)."""
        cfg = self.cfg
        self.train_step.set_train(True)  # evaluation switched the shared network to inference mode
        skip = state.batch_done if state.epoch == state.epoch_done else 0
        loader = self.make_loader(state.epoch)
        state.epoch_losses, state.speed = [], Speed()
        state.epoch_loss_parts = {k: [] for k in self.loss_parts}
        state.skipped_epoch_start = state.skipped
        state.t_epoch = time.time()
        state.intervals, state.t_read = [], None
        t_before = time.time()
        if self.use_sink and skip == 0:
            batches = _sink_batches(self.train_step, loader, state.steps_per_epoch, cfg.log_every)
        else:
            batches = _host_batches(self.train_step, loader, skip)
        prev = skip
        for batch, loss in batches:
            new_batches, prev = batch - prev, batch
            state.step += new_batches
            state.batch = batch
            state.speed.add(self.global_batch * new_batches)
            state.at_log_point = self.use_sink or batch % cfg.log_every == 0 or batch == state.steps_per_epoch
            if state.t_read is None:  # wait for the epoch's first step: the intervals start after it
                loss.asnumpy()
                if state.compile_s is None:  # the process's first step: its time is the graph compile (+ one step)
                    state.compile_s = time.time() - t_before
                state.t_read, state.step_read = time.time(), state.step
            if state.at_log_point:
                self._read(loss, state)
                self._time_interval(state)
            elif self.counts_skips and (state.step - state.start_step) % self.stall_steps == 0:
                self._read_counters(state)
            state.epoch_done, state.batch_done = state.epoch, batch
            self.callbacks.on_step_end(state)
            if self.stop is not None and self.stop.due(state.step):
                state.stopped_by = self.stop.signal_name
                return True
            if cfg.max_steps and state.step >= cfg.max_steps and batch < state.steps_per_epoch:
                return True
        return False

    def _read(self, loss, state: TrainState) -> None:
        """Read the loss (waits for the device) and stop on NaN/inf before any callback can save the diverged
        weights. Under fp16 loss scaling an overflowing step was skipped, not applied."""
        import numpy as np

        value = float(np.asarray(loss.asnumpy()).reshape(-1)[0])
        state.loss = value
        self._read_counters(state)
        if math.isfinite(value):
            state.epoch_losses.append(value)
            for part, param in self.loss_parts.items():  # the same step's parts (written by the step that gave loss)
                state.loss_parts[part] = float(param.asnumpy())
                state.epoch_loss_parts[part].append(state.loss_parts[part])
            return
        where = f"step {state.step} (epoch {state.epoch + 1}, batch {state.batch})"
        if getattr(self.train_step, "check_overflow", False):
            return  # an overflowing fp16 step: its update was dropped (counted in `skipped`)
        last = os.path.join(self.ckpt_dir, LAST)
        kept = f"The last good checkpoint is {last}; nothing from the diverged state was saved." \
            if os.path.isfile(last) else "No checkpoint had been saved yet."
        raise TrainingDiverged(
            f"loss is {value} at {where}: training stopped. {kept} Lower --lr (or add --warmup_epochs / "
            f"--clip_grad_norm), then resume" + (f" with --resume {last}." if os.path.isfile(last) else "."))

    @staticmethod
    def _time_interval(state: TrainState) -> None:
        """Record the batches and seconds since the previous loss read of this epoch (the loss was just read)."""
        now = time.time()
        if state.t_read is not None and state.step > state.step_read:
            state.intervals.append([state.step - state.step_read, round(now - state.t_read, 6)])
        state.t_read, state.step_read = now, state.step

    def _read_counters(self, state: TrainState) -> None:
        """Applied updates (and so the lr) and skipped steps, from the device; stop a run that trains on nothing."""
        state.updates = self.applied_updates()
        state.lr = self.schedule.at(state.updates - 1)
        if not self.counts_skips:
            return
        skipped = int(self.train_step.skipped_steps.asnumpy())
        new_steps, new_skips = state.step - state.checked_step, skipped - state.skipped
        state.skipped, state.checked_step = skipped, state.step
        state.skip_run = state.skip_run + new_steps if new_steps and new_skips == new_steps else 0
        if state.skip_run >= self.stall_steps:
            raise self._stalled(f"the last {state.skip_run} steps (up to step {state.step}, epoch {state.epoch + 1}) "
                                "were all skipped")

    def _stalled(self, what: str) -> TrainingStalled:
        if self.dynamic_scale:  # it halves after each overflow: a run this short never got down to a usable scale
            fix = ("Start the dynamic scale lower with --loss_scale (e.g. 1024), or train longer (it halves after "
                   "each overflow), or train in fp32 with --amp_level O0.")
        else:
            fix = ("Lower --loss_scale (e.g. 1024), or pass --loss_scale_type dynamic (it halves the scale after an "
                   "overflow), or train in fp32 with --amp_level O0.")
        return TrainingStalled(f"{what}: the fp16 gradients overflowed at every step ({self.loss_scale_note}), so the "
                               f"weights did not change. {fix} Nothing from these steps was saved.")

    def _end_epoch(self, state: TrainState, elapsed_total: float) -> None:
        # a fixed scale that overflowed at every step of an epoch will not recover; a dynamic one may still be
        # searching for its scale (the stall_steps rule covers it), but must have updated by the end of the run
        searching = self.dynamic_scale and state.epoch + 1 < state.epochs
        if self.counts_skips and state.updates == 0 and state.skipped > 0 and not searching:
            raise self._stalled(f"no update was applied in {state.step} steps ({state.skipped} skipped)")
        state.epoch_done, state.batch_done = state.epoch + 1, 0
        losses = state.epoch_losses
        state.metrics = {
            "epoch": state.epoch + 1, "step": state.step,
            "train_loss": _mean(losses),
            **{f"train_{part}_loss": _mean(values) for part, values in state.epoch_loss_parts.items()},
            "lr": state.lr, "img_per_s": state.speed.rate(), "updates": state.updates,
            "skipped_steps": state.epoch_skipped,
            "epoch_time": time.time() - state.t_epoch, "time": elapsed_total,
            "step_intervals": state.intervals,
        }
        if state.compile_s is not None and not state.compile_recorded:
            state.metrics["compile_s"] = state.compile_s
            state.compile_recorded = True
        if self.evaluator is not None and self.evaluator.due(state.epoch + 1, state.epochs):
            state.metrics.update(self.evaluator.run())
        value = state.metrics.get(self.best_key)
        state.improved = value is not None and (state.best is None or value > state.best["value"])
        if state.improved:
            state.best = {"value": value, "epoch": state.epoch + 1, "key": self.best_key}
        self.callbacks.on_epoch_end(state)


def stopped_line(state: TrainState, ckpt_dir: str) -> str:
    """The `stopped:` line of train.log and summary.json for a run a signal stopped."""
    return (f"stopped: {state.stopped_by} received; saved epoch {state.epoch + 1}, batch {state.batch_done}/"
            f"{state.steps_per_epoch} (step {state.step}) to {os.path.join(ckpt_dir, LAST)}; rerun the same "
            "command (same --output_dir) to resume at that batch")


def _mean(values: List[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def loss_part_params(train_step) -> Dict[str, Any]:
    """{'label': Parameter, 'kd': Parameter} when the step's network is a distill.WithDistillLoss (its recorders of
    the last step's unweighted loss parts), else {}."""
    from .distill import LOSS_PART_NAMES

    network = getattr(train_step, "network", None)
    found = {name: getattr(network, name, None) for name in LOSS_PART_NAMES}
    if any(p is None for p in found.values()):
        return {}
    return {"label": found["last_label_loss"], "kd": found["last_kd_loss"]}


def _host_batches(train_step, loader, skip: int) -> Iterator[Tuple[int, Any]]:
    """Feed batches from the host (CPU; or a mid-epoch resume): yields (batch index from 1, loss tensor)."""
    for i, (images, labels) in enumerate(loader.create_tuple_iterator(num_epochs=1), start=1):
        if i <= skip:
            continue  # trained before the interruption: same data, not trained again
        yield i, train_step(images, labels)


def _sink_batches(train_step, loader, steps: int, log_every: int) -> Iterator[Tuple[int, Any]]:
    """Dataset sink mode (Ascend/GPU): the device pulls `chunk` batches per call."""
    import mindspore as ms

    chunk = max(c for c in range(1, min(log_every, steps) + 1) if steps % c == 0)
    sink = ms.data_sink(train_step, loader, sink_size=chunk)
    for i in range(chunk, steps + 1, chunk):
        yield i, sink()
