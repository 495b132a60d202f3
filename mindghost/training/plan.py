"""Everything a training run is going to do, checked before anything is written.

`make_plan` reads the config, the model registry and the dataset, and reports every problem it finds in one
error (not one per rerun). Only then does train.py create the run directory, so a refused run leaves no
empty `runs/<model>-<time>` folder behind.
"""
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from ..data import DatasetInfo, EvalPreprocessing
from ..errors import RunCheckError
from .config import Config, ConfigError
from .distributed import Replica
from .logs import LOG
from .run_dir import Run


def raise_problems(problems: List[Exception]) -> None:
    """Nothing for no problem; the problem itself for one (its type is what callers know); all of them as
    one RunCheckError otherwise."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        lines = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
        raise RunCheckError(f"{len(problems)} problems found before starting (nothing was written):\n{lines}")


@dataclass(frozen=True)
class Amp:
    level: str  # O0 (fp32) .. O3
    loss_scale_type: str  # fixed or dynamic
    check_overflow: bool  # skip the update of a step whose gradients overflow

    @property
    def fp16(self) -> bool:
        return self.level != "O0"


def resolve_amp(cfg: Config, device: str) -> Amp:
    """The precision settings for this device; a ConfigError for combinations that cannot run there."""
    level = cfg.amp_level
    if device == "CPU" and level in ("O1", "O2"):
        raise ConfigError(f"amp_level {level} is not supported on CPU with GhostNet; use O0 (fp32, fastest on CPU) "
                          "or O3")
    fp16 = level != "O0"
    kind = cfg.loss_scale_type
    if kind == "auto":  # dynamic works on CPU too (our train step checks overflow itself): measured, see docs
        kind = "dynamic" if fp16 else "fixed"
    return Amp(level, kind, fp16 and cfg.drop_overflow_update)


@dataclass
class RunPlan:
    cfg: Config
    device: str
    replica: Replica
    run: Run
    data: DatasetInfo
    pre: EvalPreprocessing  # eval preprocessing (the recipe's, else the model's default cfg)
    amp: Amp
    make_train_loader: Callable[[int], object]  # epoch -> this rank's batched train dataset of that epoch
    steps_per_epoch: int  # batches per epoch on each device
    remap_updates: bool = False  # resuming at an epoch boundary with other batch settings: see check_resume
    teacher: Optional[Any] = None  # the KD teacher with its weights, eval mode (None without distillation)

    @property
    def updates_per_epoch(self) -> int:
        return -(-self.steps_per_epoch // self.cfg.accum_steps)

    @property
    def global_batch(self) -> int:
        """Images of one optimizer update: per-device batch x devices x accumulation."""
        return self.cfg.batch_size * self.replica.size * self.cfg.accum_steps

    @property
    def val_images(self) -> int:
        n = self.data.val_images
        return min(n, self.cfg.val_samples) if self.cfg.val_samples else n


def make_plan(cfg: Config, device: str, replica: Replica) -> RunPlan:
    """Check the config, model name, dataset and run directory together; one error lists every problem."""
    from ..data import build_train_loader, check_dataset, data_workers, eval_preprocessing
    from ..models import get_default_cfg
    from .config import config_problems
    from .distributed import launch_problem
    from .run_dir import plan_run_dir

    problems: List[Exception] = [ConfigError(p) for p in config_problems(cfg)]
    if launch_problem(cfg.distribute):
        problems.append(ConfigError(launch_problem(cfg.distribute)))
    pre, amp, run = None, None, None
    try:
        pre = eval_preprocessing(cfg, get_default_cfg(cfg.model).to_dict())
    except ValueError as e:  # an unknown model name (with the closest registered ones)
        problems.append(e)
    try:
        amp = resolve_amp(cfg, device)
    except ConfigError as e:
        problems.append(e)
    try:
        run = plan_run_dir(cfg)
    except FileExistsError as e:
        problems.append(e)
    names, names_source = trained_class_names(cfg, run)
    data, data_problems = check_dataset(cfg, train=True, val=cfg.val_every > 0, class_names=names,
                                        names_source=names_source)
    problems += data_problems
    for line in data.notes():
        LOG.info(line)
    if not data_problems and (cfg.mixup > 0 or cfg.cutmix > 0) and not cfg.drop_remainder:
        per_device = -(-(cfg.train_samples or data.train_images) // replica.size)
        if per_device % cfg.batch_size % 2:
            problems.append(ConfigError(
                f"mixup/cutmix with drop_remainder False: the last batch of each epoch holds "
                f"{per_device % cfg.batch_size} images per device, an odd number, which mixup cannot pair; pass "
                "--drop_remainder True (the default) or a batch_size that leaves an even last batch"))
    note = data_workers(cfg)[1]
    if note:
        LOG.info(note)
    steps, make_loader = 0, None
    if pre is not None and not data_problems:
        def make_loader(epoch: int):
            return build_train_loader(cfg, pre, epoch, replica.rank, replica.size,
                                      decode_guard=data.decode_guard(cfg.train_split, training=True))

        steps = make_loader(0).get_dataset_size()
        if steps == 0:
            problems.append(ConfigError(
                f"not one full batch of {cfg.batch_size} per device in the train split; lower batch_size"))
    teacher = None
    if cfg.teacher:
        try:
            teacher = plan_teacher(cfg)
        except ValueError as e:  # ConfigError (no checkpoint, unknown name), CheckpointError (missing, mismatched)
            problems.append(e)
    remap = False
    if run is not None and run.resume_from and not problems:
        try:
            remap = check_resume(cfg, run.resume_from, replica.size)
        except ConfigError as e:
            problems.append(e)
    raise_problems(problems)
    return RunPlan(cfg, device, replica, run, data, pre, amp, make_loader, steps, remap, teacher)


def trained_class_names(cfg: Config, run: Optional[Run]):
    """(class names, their source) the weights a run starts from were trained on: the resumed checkpoint's, else
    ckpt_path's when its classifier is kept; (None, "") when they record none or the classifier is new."""
    from ..inference import CLASS_NAMES_KEY, read_meta

    path = run.resume_from if run is not None and run.resume_from else ""
    if not path and cfg.ckpt_path and not cfg.new_classifier:
        path = cfg.ckpt_path
    if not path:
        return None, ""
    try:
        names = (read_meta(path, "--resume" if path != cfg.ckpt_path else "--ckpt_path") or {}).get(CLASS_NAMES_KEY)
    except (OSError, ValueError, RuntimeError):  # an unreadable file is reported by the resume / load checks
        return None, ""
    return (tuple(str(n) for n in names), f"'{path}'") if names else (None, "")


def plan_teacher(cfg: Config):
    """The KD teacher, built and loaded strictly here so that a missing or mismatched teacher_ckpt is reported
    with the other problems, before the run directory exists. Every rank builds its own (msrun)."""
    from .distill import build_teacher

    if not cfg.teacher_ckpt:
        raise ConfigError(f"'teacher: {cfg.teacher}' needs 'teacher_ckpt', the teacher's trained weights for the "
                          f"student's {cfg.num_classes} classes (a teacher with random weights teaches nothing): "
                          "pass --teacher_ckpt PATH, or --teacher '' to train without distillation")
    return build_teacher(cfg.teacher, cfg.teacher_ckpt, cfg.num_classes, cfg.in_channels)


# Settings that fix which images a batch position means, and those that shape the lr schedule.
POSITION_KEYS = ("batch_size", "accum_steps", "train_samples", "drop_remainder", "devices")
MODEL_KEYS = ("model", "num_classes", "in_channels")  # fix the weights' names and shapes
SLOT_KEYS = ("accum_steps", "opt", "ema")  # add or drop optimizer, accumulation and EMA state
SCHEDULE_KEYS = ("epochs", "scheduler", "lr", "min_lr", "lr_base_batch", "warmup_epochs", "warmup_factor",
                 "decay_epochs", "decay_rate", "milestones")


def check_resume(cfg: Config, path: str, devices: int) -> bool:
    """Compare the resumed run's settings with the checkpoint's. Returns True when the optimizer's update
    counter must be mapped to the new schedule (an epoch-boundary resume with other batch settings).

    A mid-epoch position (batches of an epoch already trained) means other images under other batch settings,
    so such a resume is refused, naming the changed keys; so is another model (its weights would not fit). A
    changed schedule is allowed, with a warning; changed optimizer, accumulation or EMA settings are logged, and
    `checkpoint.load_training_state` adds and drops their state by name."""
    from ..weights import read_meta
    from .checkpoint import not_a_training_checkpoint

    meta = read_meta(path, "--resume")
    if meta is None:
        raise not_a_training_checkpoint(path)
    old = dict(meta.get("config") or {})
    old["devices"] = meta.get("devices", devices)  # checkpoints before this key: assume unchanged
    new = dict(cfg.to_dict(), devices=devices)

    def changed(keys):
        return [f"{k} {old[k]} -> {new[k]}" for k in keys if k in old and old[k] != new[k]]

    position, schedule = changed(POSITION_KEYS), changed(SCHEDULE_KEYS)
    epoch, batch = int(meta.get("epoch", 0)), int(meta.get("batch_in_epoch", 0))
    model = changed(MODEL_KEYS)
    if model:
        flags = " ".join(f"--{k} {old[k]}" for k in MODEL_KEYS if k in old and old[k] != new[k])
        raise ConfigError(
            f"cannot resume from '{path}' with another model ({', '.join(model)}): its weights are the "
            f"checkpoint's model's. Resume with {flags}, or start a new run from its weights with --ckpt_path "
            f"{path} (and another --output_dir).")
    if position and batch:
        flags = " ".join(f"--{k} {old[k]}" for k in POSITION_KEYS if k != "devices" and k in old and old[k] != new[k])
        raise ConfigError(
            f"cannot resume mid-epoch from '{path}' (epoch {epoch + 1}, {batch} batches done) with other batch "
            f"settings ({', '.join(position)}): the saved position would point at other images. Resume with the "
            f"checkpoint's settings ({flags or 'the same number of devices'}), or from an epoch-end checkpoint "
            "(epoch_XXXX.ckpt) of the run.")
    slots = changed(SLOT_KEYS)
    if slots and not (position and batch):
        LOG.info(f"resuming with other optimizer settings ({', '.join(slots)}): the optimizer, accumulation and EMA "
                 "state they add starts fresh, the state they no longer use is dropped (named when the checkpoint "
                 "loads)")
    if schedule:
        LOG.warning(f"resuming with another lr schedule than the checkpoint's ({', '.join(schedule)}): the lr "
                    "continues on the new schedule from the resumed position")
    if position:
        LOG.info(f"resuming at the end of epoch {epoch} with other batch settings ({', '.join(position)}): the "
                 f"position is mapped by epochs (the lr schedule continues at epoch {epoch})")
    return bool(position)

