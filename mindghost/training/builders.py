"""The build steps train.py calls in order: runtime, plan (every check), run directory, model, schedule, train
step, loop, and the summary at the end. Each returns what the next one needs; none reads global state.
"""
import os
import platform
import time
from typing import Any, Dict, Sequence

import numpy as np

from .callbacks import CallbackList, Checkpointer, MetricsWriter, ProgressLogger
from .config import Config
from .distributed import Replica
from .logs import LOG, setup_logging, show_progress_bars
from .loop import Loop, TrainState, restore
from .optim import LrSchedule
from .plan import RunPlan, make_plan
from .run_dir import LAST, create_run_dir, write_summary

# Consecutive skipped (overflowed) fp16 steps that stop a run. A fixed scale that overflowed keeps
# overflowing; a dynamic one halves at each overflow, and from 2**24 needs up to ~24 halvings to fit.
STALL_STEPS = {"fixed": 16, "dynamic": 48}


def setup_runtime(cfg: Config, device: str, notes: Sequence[str] = ()) -> Replica:
    """Device, mode, seeds, threads, the process group, then logging (which needs the rank); `notes` (which device
    and why, the CPU environment) open the log."""
    from ..runtime import setup_context
    from .distributed import init_distributed, launch_problem

    setup_context(device, cfg.mode, cfg.deterministic, cfg.seed, cfg.cpu_threads)
    replica = init_distributed(cfg.distribute and not launch_problem(cfg.distribute))  # else: plan_run reports it
    setup_logging(replica.is_main)
    if replica.size > 1:  # in every worker log: scripts/_common.sh names a failed worker's rank from msrun's pid
        print(f"mindghost worker: rank {replica.rank} of {replica.size}, pid {os.getpid()}, host {platform.node()}",
              flush=True)
    for note in notes:
        if note:
            LOG.info(note)
    return replica


def plan_run(cfg: Config, device: str, replica: Replica) -> RunPlan:
    """Every check of config, model name, data and run directory (one error for all problems); writes nothing."""
    return make_plan(cfg, device, replica)


def create_run(plan: RunPlan) -> None:
    """The run's first write: its directory, train.log, config.yaml and env.json (rank 0 only)."""
    if plan.replica.is_main:
        create_run_dir(plan.run, plan.cfg, plan.device, plan.replica.size)


def build_model(cfg: Config, replica=None):
    """The student: built, given its initial weights (`ckpt_path`, or the published ones with `pretrained`,
    classifier replaced under `new_classifier`), then the CPU pass. Under msrun the first process of each machine
    fetches published weights before the others read them from the cache."""
    from ..cpu import accelerate_on_cpu
    from ..models import create_model

    if cfg.pretrained:
        _fetch_published_weights_once(cfg, replica)
    model = create_model(cfg.model, num_classes=cfg.num_classes, in_channels=cfg.in_channels,
                         drop_rate=cfg.drop_rate, checkpoint_path=cfg.ckpt_path or None, pretrained=cfg.pretrained,
                         pretrained_dir=cfg.pretrained_dir or None, new_classifier=cfg.new_classifier,
                         **cfg.model_kwargs)
    model = accelerate_on_cpu(model, cfg.device)  # CPU speed-ups; before the optimizer and train step see it
    n = sum(p.size for p in model.trainable_params())
    source = cfg.ckpt_path or (f"the published {cfg.model} weights" if cfg.pretrained else "")
    LOG.info(f"model {cfg.model}: {n / 1e6:.2f}M trainable parameters"
             + (f", initial weights from {source}" if source else "")
             + (" (classifier re-initialised)" if cfg.new_classifier else ""))
    if cfg.freeze_backbone or cfg.head_lr_scale != 1.0:
        frozen = ("the whole run" if cfg.freeze_backbone < 0 else f"the first {cfg.freeze_backbone} epoch(s)")
        LOG.info(f"fine-tuning: classifier '{model.default_cfg['classifier']}' lr x {cfg.head_lr_scale:g}"
                 + (f"; the rest frozen (lr 0) for {frozen}" if cfg.freeze_backbone else ""))
    return model


def _fetch_published_weights_once(cfg: Config, replica) -> None:
    from .. import hub
    from ..runtime import local_world_size
    from .distributed import allreduce_sum

    size = replica.size if replica is not None else 1
    first_on_machine = size == 1 or replica.rank % local_world_size() == 0
    if first_on_machine:
        hub.fetch_pretrained(cfg.model, cfg.pretrained_dir or None, progress=replica is None or replica.is_main)
    if size > 1:
        allreduce_sum(np.zeros(1))  # a barrier: the other processes read the file once it is complete


def build_schedule(plan: RunPlan) -> LrSchedule:
    """lr per optimizer update, linearly scaled to the global batch when lr_base_batch is set."""
    from .optim import build_lr_schedule, linear_lr_scale

    cfg = plan.cfg
    scale = linear_lr_scale(cfg, plan.global_batch)
    if cfg.lr_base_batch:
        LOG.info(f"linear lr scaling: lr {cfg.lr:g} x {plan.global_batch}/{cfg.lr_base_batch} = {cfg.lr * scale:g}")
    return build_lr_schedule(cfg, plan.updates_per_epoch, scale)


def build_train_step(plan: RunPlan, model, schedule: LrSchedule):
    """Loss, optimizer and the one compiled train-step cell (AMP, loss scale, clipping, accumulation, EMA)."""
    import mindspore as ms
    from mindcv.loss import create_loss
    from mindspore import nn

    from .optim import build_optimizer
    from .train_step import TrainStep, WithLoss

    cfg, amp = plan.cfg, plan.amp
    if amp.fp16:
        ms.amp.auto_mixed_precision(model, amp.level)
    scale = cfg.loss_scale if amp.fp16 else 1.0
    if amp.loss_scale_type == "dynamic":
        sense = nn.DynamicLossScaleUpdateCell(loss_scale_value=scale, scale_factor=2, scale_window=2000)
    else:
        sense = ms.Tensor(scale, ms.float32)
    loss_fn = create_loss(cfg.loss, label_smoothing=cfg.label_smoothing)
    net = WithLoss(model, loss_fn) if plan.teacher is None else with_teacher(plan, model, loss_fn)
    step = TrainStep(net, build_optimizer(cfg, model, schedule), sense,
                     ema_decay=cfg.ema_decay if cfg.ema else 0.0, clip_norm=cfg.clip_grad_norm,
                     accum_steps=cfg.accum_steps, check_overflow=amp.check_overflow, device=plan.device)
    step.set_train(True)
    LOG.info(f"precision {amp.level}, loss scale {amp.loss_scale_type} {scale:g}, optimizer {cfg.opt}, "
             f"ema {f'{cfg.ema_decay:g}' if cfg.ema else 'off'}, clip {cfg.clip_grad_norm or 'off'}, "
             f"accumulation {cfg.accum_steps}")
    return step


def with_teacher(plan: RunPlan, model, loss_fn):
    """The student's loss cell with the frozen teacher inside (distill.WithDistillLoss). The teacher only runs
    inference, so it gets the inference passes: GhostNetV3 branches fused, the CPU speed-ups. It stays fp32
    whatever amp_level says (AMP was applied to the student alone): its targets keep full precision, at the
    cost of an fp32 forward on Ascend/GPU."""
    from ..cpu import accelerate_on_cpu
    from ..models import reparameterize_model
    from .distill import WithDistillLoss

    cfg = plan.cfg
    teacher = accelerate_on_cpu(reparameterize_model(plan.teacher), plan.device)
    n = sum(p.size for p in teacher.get_parameters())
    LOG.info(f"distillation: teacher {cfg.teacher} ({n / 1e6:.2f}M parameters, fp32, frozen, eval mode) from "
             f"{cfg.teacher_ckpt}; loss = {cfg.label_weight:g} x label + {cfg.kd_weight:g} x "
             f"KD(T={cfg.kd_temperature:g})"
             + (f", teacher input {cfg.teacher_image_size}px" if cfg.teacher_image_size else ""))
    return WithDistillLoss(model, teacher, loss_fn, label_weight=cfg.label_weight, kd_weight=cfg.kd_weight,
                           temperature=cfg.kd_temperature, teacher_image_size=cfg.teacher_image_size)


def restore_state(plan: RunPlan, train_step) -> TrainState:
    """A fresh TrainState, or the position of the checkpoint the run resumes from."""
    import mindspore as ms

    state = restore(train_step, plan.run.resume_from,
                    TrainState(epochs=plan.cfg.epochs, steps_per_epoch=plan.steps_per_epoch))
    if plan.remap_updates:  # the saved update count belongs to the old batch settings' schedule
        opt_step = train_step.optimizer.global_step
        updates = state.epoch_done * plan.updates_per_epoch
        opt_step.set_data(ms.Tensor([updates] * opt_step.size, opt_step.dtype).reshape(opt_step.shape))
        state.step = state.start_step = state.checked_step = state.epoch_done * plan.steps_per_epoch
        LOG.info(f"position mapped: step {state.step}, optimizer update {updates}")
    return state


def training_meta(plan: RunPlan):
    """What each checkpoint says about itself: position, best, last metrics, the config and versions."""
    from .. import __version__

    cfg = plan.cfg

    def meta(state: TrainState) -> Dict[str, Any]:
        return {
            "format": 1, "model": cfg.model, "num_classes": cfg.num_classes, "in_channels": cfg.in_channels,
            "class_names": list(plan.data.classes),  # in class-index order (sorted folder names), for predict
            "epoch": state.epoch_done, "batch_in_epoch": state.batch_done, "global_step": state.step,
            "best": state.best, "metrics": state.metrics or None, "config": cfg.to_dict(),
            "devices": plan.replica.size, "steps_per_epoch": plan.steps_per_epoch,
            "seed": cfg.seed, "mindghost": __version__, "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    return meta


def build_callbacks(plan: RunPlan, train_step) -> CallbackList:
    """Progress lines, checkpoints and metrics files: rank 0's jobs (the one place the rank decides them)."""
    from ..data.guard import BadImageMonitor
    from .checkpoint import CheckpointManager

    cfg = plan.cfg
    if not plan.replica.is_main:
        return CallbackList([BadImageMonitor()])
    manager = CheckpointManager(plan.run.ckpt_dir, cfg.keep_checkpoint_max)
    return CallbackList([
        BadImageMonitor(),  # first: its epoch count goes into the metrics the others write
        Checkpointer(manager, train_step, cfg.save_every, training_meta(plan)),
        ProgressLogger(cfg.log_every, show_progress_bars(cfg.progress, plan.replica.is_main)),
        MetricsWriter(plan.run.directory, cfg.plot),
    ])


def build_evaluator(plan: RunPlan, model, train_step):
    """Validation during training (None when val_every is 0); sharded over the ranks under msrun."""
    from ..data import build_eval_loader
    from . import distributed as D
    from .evaluate import PeriodicEvaluator
    from .train_step import EvalNet

    cfg, replica, pre = plan.cfg, plan.replica, plan.pre
    if cfg.val_every <= 0:
        return None
    sharded = {}
    if replica.size > 1:
        buffers = [p for p in model.get_parameters() if not p.requires_grad]
        sharded = {"reduce": D.allreduce_sum, "sync": lambda: D.sync_from_rank0(buffers, replica.rank)}

    def make_loader():
        return build_eval_loader(cfg, pre, rank=replica.rank, group_size=replica.size,
                                 class_indexing=plan.data.val_class_indexing,
                                 decode_guard=plan.data.decode_guard(cfg.val_split, training=False))

    return PeriodicEvaluator(EvalNet(model), make_loader, cfg.resolved_eval_batch_size(), cfg.val_every, train_step,
                             show_progress_bars(cfg.progress, replica.is_main), plan.val_images,
                             (cfg.in_channels, pre.image_size, pre.image_size), **sharded)


def build_loop(plan: RunPlan, model, train_step, schedule: LrSchedule) -> Loop:
    cfg = plan.cfg
    best_key = "val_ema_top1" if cfg.resolved_best_on() == "ema" else "val_top1"
    loop = Loop(cfg, train_step, plan.make_train_loader, schedule, build_callbacks(plan, train_step),
                evaluator=build_evaluator(plan, model, train_step), best_key=best_key,
                global_batch=cfg.batch_size * plan.replica.size,
                use_sink=cfg.dataset_sink_mode and plan.device in ("Ascend", "GPU"), ckpt_dir=plan.run.ckpt_dir,
                stall_steps=STALL_STEPS[plan.amp.loss_scale_type],
                loss_scale_note=f"loss_scale_type {plan.amp.loss_scale_type}, loss_scale {cfg.loss_scale:g}",
                dynamic_scale=plan.amp.loss_scale_type == "dynamic", stop=build_stop_request(plan))
    LOG.info(f"{plan.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, global batch {plan.global_batch} "
             f"({cfg.batch_size} per device x {plan.replica.size} x {plan.device}"
             + (f" x {cfg.accum_steps} accumulation" if cfg.accum_steps > 1 else "") + f"), eval {plan.pre}")
    return loop


def build_stop_request(plan: RunPlan):
    """SIGTERM/SIGUSR1 handling for the loop (preempt.py); under msrun the ranks agree through an all-reduce."""
    from .distributed import allreduce_sum
    from .preempt import StopRequest

    return StopRequest(plan.replica.size, allreduce=allreduce_sum if plan.replica.size > 1 else None)


def finish(plan: RunPlan, model, state: TrainState) -> Dict[str, Any]:
    """Check the replicas agree (msrun), then the summary (summary.json on rank 0 when the run finished)."""
    from ..data.guard import bad_image_summary
    from .callbacks import read_metrics

    run, replica = plan.run, plan.replica
    summary = {
        "model": plan.cfg.model, "epochs": state.epoch_done, "global_step": state.step,
        "finished": state.finished, "best": state.best,
        "last": (read_metrics(os.path.join(run.directory, "metrics.jsonl")) or [{}])[-1],
        "train_time_s": state.train_time,
        "best_checkpoint": os.path.join(run.ckpt_dir, "best.ckpt") if state.best else None,
        "last_checkpoint": os.path.join(run.ckpt_dir, LAST),
        "devices": replica.size, "global_batch": plan.global_batch,
        "updates": state.updates, "skipped_steps": state.skipped, "bad_images": bad_image_summary(),
    }
    if replica.size > 1:  # every replica must hold rank 0's weights (what was saved)
        from .distributed import replica_divergence

        summary["replica_weight_diff"] = replica_divergence(model.trainable_params(), replica.rank)
        LOG.info(f"replicas: sum over ranks of max |w - w_rank0| = {summary['replica_weight_diff']:g}")
    if state.stopped_by:
        from .loop import stopped_line

        summary["stopped"] = stopped_line(state, run.ckpt_dir)
        summary["stopped_by"] = state.stopped_by
    if replica.is_main and (state.finished or state.stopped_by):
        write_summary(run, summary)
    if state.best:
        LOG.info(f"best {state.best['key']} {state.best['value']:.2f} at epoch {state.best['epoch']}: "
                 f"{summary['best_checkpoint']}")
    if state.stopped_by:
        import signal

        from ..errors import TrainingPreempted
        from .preempt import exit_code

        raise TrainingPreempted(exit_code(signal.Signals[state.stopped_by]), summary)
    return summary
