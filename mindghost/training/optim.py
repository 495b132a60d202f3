"""Learning-rate schedules (a value per optimizer update) and optimizers, via MindCV's factories."""
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import List, Tuple

from .config import ConfigError

# MindCV's 'rmsprop' is MindSpore's nn.RMSProp, which already follows TensorFlow: epsilon inside the square
# root, lr folded into the momentum buffer, mean_square initialised to ones. What makes it "RMSProp-TF"
# (the EfficientNet/MobileNetV3/GhostNet-authors recipe) is epsilon 1e-3 instead of MindCV's 1e-10 and decay 0.9.
_DEFAULT_EPS = {"rmsprop_tf": 1e-3, "rmsprop": 1e-10, "adamw": 1e-8}


def linear_lr_scale(cfg, global_batch: int) -> float:
    """Linear scaling rule (Goyal et al. 2017): lr x global_batch / lr_base_batch; 1.0 when lr_base_batch is 0.
    `global_batch` is the batch of one optimizer update: batch_size x devices x accum_steps."""
    return global_batch / cfg.lr_base_batch if cfg.lr_base_batch else 1.0


@dataclass(frozen=True)
class LrSchedule:
    """The learning rate of every optimizer update of the run. The optimizer gets `values` as its lr table;
    the loop asks `at(update)` for what it logs, so both read the same numbers."""

    values: Tuple[float, ...]

    def at(self, update: int) -> float:
        """lr of update number `update` (0-based; clamped to the table: the last value holds after the end)."""
        return self.values[min(max(update, 0), len(self.values) - 1)]

    def __len__(self) -> int:
        return len(self.values)


def build_lr_schedule(cfg, steps_per_epoch: int, scale: float = 1.0) -> LrSchedule:
    """Per-optimizer-update learning rates for the whole run: linear warmup, then the configured decay.
    `steps_per_epoch` counts optimizer updates (batches / accum_steps, rounded up).

    cosine, multi-step, exponential and constant come from MindCV's `create_scheduler`. step_decay is
    computed here: MindCV floors the epoch index before dividing by decay_epochs, so a 2.4-epoch period
    decays at epochs 3, 5, 8... instead of 2.4, 4.8, 7.2 (TF's staircase exponential decay).
    """
    from mindcv.scheduler import create_scheduler

    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    total = cfg.epochs * steps_per_epoch
    if cfg.scheduler == "step_decay":
        period = cfg.decay_epochs * steps_per_epoch
        lrs = []
        for s in range(total):
            if s < warmup_steps:
                lrs.append(cfg.lr * (cfg.warmup_factor + (1 - cfg.warmup_factor) * (s + 1) / warmup_steps))
            else:
                lrs.append(cfg.lr * cfg.decay_rate ** math.floor((s - warmup_steps) / period))
        return LrSchedule(tuple(x * scale for x in lrs))
    if float(cfg.warmup_epochs).is_integer():
        lrs = create_scheduler(
            steps_per_epoch, scheduler=cfg.scheduler, lr=cfg.lr, min_lr=cfg.min_lr,
            warmup_epochs=int(cfg.warmup_epochs), warmup_factor=cfg.warmup_factor,
            decay_epochs=int(cfg.resolved_decay_epochs()) if cfg.scheduler == "cosine_decay" else int(
                cfg.decay_epochs or 1),
            decay_rate=cfg.decay_rate, milestones=list(cfg.milestones), num_epochs=cfg.epochs,
        )
    else:  # fractional warmup: MindCV's factory takes whole epochs only
        lrs = _fractional_warmup_cosine(cfg, steps_per_epoch, warmup_steps, total)
    if len(lrs) != total:
        raise ValueError(f"schedule has {len(lrs)} steps, expected {total}")
    return LrSchedule(tuple(float(x) * scale for x in lrs))


def _fractional_warmup_cosine(cfg, steps_per_epoch: int, warmup_steps: int, total: int) -> List[float]:
    if cfg.scheduler not in ("cosine_decay", "constant"):
        raise ConfigError("fractional warmup_epochs is supported with cosine_decay, constant and step_decay")
    lrs = []
    decay_steps = max(1, int(round(cfg.resolved_decay_epochs() * steps_per_epoch)))
    for s in range(total):
        if s < warmup_steps:
            lrs.append(cfg.lr * (cfg.warmup_factor + (1 - cfg.warmup_factor) * (s + 1) / warmup_steps))
        elif cfg.scheduler == "constant":
            lrs.append(cfg.lr)
        else:
            t = min(s - warmup_steps, decay_steps) / decay_steps
            lrs.append(cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t)))
    return lrs


def build_optimizer(cfg, network, schedule: LrSchedule):
    """MindCV's optimizer over `network`'s trainable parameters, norm and bias excluded from weight decay when
    configured. Loss scaling is undone in the train step, so the optimizer always gets loss_scale=1.

    Fine-tuning (`freeze_backbone`, `head_lr_scale`): the classifier (`network.default_cfg["classifier"]`) and
    the backbone become parameter groups with their own lr tables (`finetune_lr_tables`)."""
    import mindspore as ms
    from mindcv.optim import create_optimizer

    opt = "rmsprop" if cfg.opt == "rmsprop_tf" else cfg.opt
    kwargs = {}
    eps = cfg.eps if cfg.eps is not None else _DEFAULT_EPS.get(cfg.opt)
    if eps is not None:
        kwargs["eps"] = eps
    if opt == "rmsprop":
        kwargs["decay"] = 0.9
    lr = ms.Tensor(list(schedule.values), ms.float32)
    params, wd_filter = network.trainable_params(), cfg.weight_decay_filter
    quiet = contextlib.nullcontext()
    if cfg.freeze_backbone or cfg.head_lr_scale != 1.0:
        # "auto" passes our groups through as they are; its warning (that MindSpore filters norm weights itself)
        # does not apply to groups that carry their own weight_decay
        params, wd_filter = _finetune_groups(cfg, network, schedule), "auto"
        quiet = _logger_level("mindcv.optim.optim_factory", logging.ERROR)
    with quiet:
        return create_optimizer(
            params, opt=opt, lr=lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
            nesterov=cfg.nesterov, weight_decay_filter=wd_filter, loss_scale=1.0, **kwargs,
        )


@contextlib.contextmanager
def _logger_level(name: str, level: int):
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def finetune_lr_tables(cfg, schedule: LrSchedule) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """(backbone lr table, classifier lr table): the backbone's is 0 for the first `freeze_backbone` epochs (all of
    them for -1), the classifier's is the schedule x `head_lr_scale`. With lr 0 no optimizer here moves a weight
    (SGD/momentum, AdamW and RMSProp all multiply their step by lr), while momentum and Adam moments keep
    accumulating; BatchNorm statistics of the backbone still follow the data, as in any train-mode forward."""
    per_epoch = len(schedule) // cfg.epochs
    frozen = len(schedule) if cfg.freeze_backbone < 0 else cfg.freeze_backbone * per_epoch
    backbone = tuple(0.0 if i < frozen else v for i, v in enumerate(schedule.values))
    return backbone, tuple(v * cfg.head_lr_scale for v in schedule.values)


def _finetune_groups(cfg, network, schedule: LrSchedule) -> list:
    """Parameter groups for MindSpore's optimizers: (backbone | classifier) x (decay | no decay), each with its lr
    table, then `order_params`. The decay filter is MindCV's `norm_and_bias` rule (names with gamma, beta, bias);
    MindCV's factory cannot take groups with their own lr through its filter, hence this copy of the rule."""
    import mindspore as ms

    head = network.default_cfg.get("classifier", "classifier") + "."
    backbone_lr, head_lr = finetune_lr_tables(cfg, schedule)
    params = network.trainable_params()
    if not any(p.name.startswith(head) for p in params):
        raise ConfigError(f"freeze_backbone / head_lr_scale: the model has no trainable classifier parameters "
                          f"'{head}*' (num_classes 0?)")
    no_decay = cfg.weight_decay_filter == "norm_and_bias"
    groups = []
    for part, lrs in (("backbone", backbone_lr), ("head", head_lr)):
        mine = [p for p in params if p.name.startswith(head) == (part == "head")]
        is_skipped = [no_decay and any(k in p.name for k in ("gamma", "beta", "bias")) for p in mine]
        skip = [p for p, s in zip(mine, is_skipped) if s]
        keep = [p for p, s in zip(mine, is_skipped) if not s]
        for group, wd in ((keep, cfg.weight_decay), (skip, 0.0)):
            if group:
                groups.append({"params": group, "weight_decay": wd, "lr": ms.Tensor(list(lrs), ms.float32)})
    groups.append({"order_params": params})
    return groups
