"""The training/validation config: one typed schema, a YAML recipe, then command-line overrides.

Every default lives once, in `Config` below. A recipe may only use field names or the MindCV aliases in
`ALIASES`; an unknown key or a wrong type is an error naming the key (and the closest valid one).
Derived values (cosine length, steps per epoch, eval preprocessing) are computed, never stored.
"""
import argparse
import dataclasses
import difflib
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from ..errors import ConfigError


def _f(default, help: str, choices: Optional[Sequence[Any]] = None, **kw):
    meta = {"help": help, "choices": tuple(choices) if choices else None}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    # --- system
    device: str = _f("auto", "auto (Ascend, then GPU, then CPU), Ascend, GPU or CPU", ["auto", "Ascend", "GPU", "CPU"])
    mode: str = _f("graph", "graph (compiled, MindCV mode 0) or pynative (eager, mode 1)", ["graph", "pynative"])
    distribute: bool = _f(False, "data-parallel over all msrun workers (needs msrun)")
    seed: int = _f(42, "seed for weights init, data order and augmentation")
    deterministic: bool = _f(False, "deterministic kernels and single-worker data (for exact resume checks)")
    num_workers: int = _f(0, "data workers per process; 0 = number of CPU cores (divided by local ranks)")
    cpu_threads: int = _f(0, "CPU kernel threads; 0 = number of cores (MindSpore's default is 25)")
    # --- data
    dataset: str = _f("imagenet", "dataset layout: an ImageFolder tree <data_dir>/<split>/<class>/*", ["imagenet"])
    data_dir: str = _f("", "dataset root holding the train and val split folders")
    train_split: str = _f("train", "train split folder under data_dir")
    val_split: str = _f("val", "validation split folder under data_dir")
    shuffle: bool = _f(True, "shuffle training data (seeded by seed + epoch)")
    batch_size: int = _f(128, "images per device per step (global batch = batch_size x devices)")
    eval_batch_size: int = _f(0, "images per eval step; 0 = batch_size")
    drop_remainder: bool = _f(True, "drop the last incomplete training batch")
    train_samples: int = _f(0, "train on N images per epoch (a random subset each epoch when shuffling); 0 = all")
    val_samples: int = _f(0, "use only the first N validation images; 0 = all")
    dataset_download: bool = _f(False, "MindCV compatibility; must be False (ImageNet cannot be downloaded)")
    # --- augmentation (train) and preprocessing (eval)
    image_size: int = _f(224, "train crop size; eval crop size too unless eval_image_size is set")
    eval_image_size: int = _f(0, "eval crop size; 0 = image_size")
    train_crop: str = _f("random_resized", "random_resized (ImageNet) or pad_crop (resize, pad 4, crop; small images)",
                         ["random_resized", "pad_crop"])
    scale: List[float] = _f([0.08, 1.0], "RandomResizedCrop area range")
    ratio: List[float] = _f([0.75, 1.333], "RandomResizedCrop aspect-ratio range")
    hflip: float = _f(0.5, "horizontal flip probability")
    vflip: float = _f(0.0, "vertical flip probability")
    color_jitter: Optional[float] = _f(None, "colour jitter strength (used when auto_augment is none)")
    auto_augment: Optional[str] = _f(None, "MindCV policy string, e.g. randaug-m9-mstd0.5, autoaug-mstd0.5")
    re_prob: float = _f(0.0, "random erasing probability")
    mixup: float = _f(0.0, "mixup alpha (0 = off)")
    cutmix: float = _f(0.0, "cutmix alpha (0 = off)")
    mixup_prob: float = _f(1.0, "probability that a batch is mixed when mixup or cutmix is on")
    aug_repeats: int = _f(0, "repeated augmentation count (0 = off, 3 in the ghostnet_130 recipe)")
    interpolation: Optional[str] = _f(None, "resize interpolation; none = the model's default cfg",
                                      ["bilinear", "bicubic", "nearest", "area"])
    crop_pct: Optional[float] = _f(None, "eval center-crop fraction; none = the model's default cfg")
    mean: Optional[List[float]] = _f(None, "per-channel normalisation mean in [0, 1]; none = the model's default cfg")
    std: Optional[List[float]] = _f(None, "per-channel normalisation std in [0, 1]; none = the model's default cfg")
    # --- model
    model: str = _f("ghostnet_100", "registered model name (mindghost.list_models())")
    num_classes: int = _f(1000, "number of classes")
    in_channels: int = _f(3, "input channels: 3 (images decoded as RGB) or 1 (grey-scale, decoded as L)")
    drop_rate: Optional[float] = _f(None, "classifier dropout; none = the variant's default")
    pretrained: bool = _f(False, "start from the variant's published weights (mindghost.hub; downloaded once)")
    pretrained_dir: str = _f("", "folder searched first for published weight files (offline machines); "
                                 "else $MINDGHOST_PRETRAINED_DIR, the cache, a download")
    ckpt_path: str = _f("", "train: initial weights (fine-tune); validate: the weights to evaluate")
    new_classifier: bool = _f(False, "fine-tuning: load ckpt_path except a classifier of another class count, "
                                     "which is re-initialised (automatic with pretrained)")
    freeze_backbone: int = _f(0, "fine-tuning: train only the classifier for the first N epochs (-1: the whole run)")
    head_lr_scale: float = _f(1.0, "fine-tuning: the classifier's lr is lr x head_lr_scale")
    ema: bool = _f(False, "train: keep an EMA of the weights; validate: evaluate the EMA weights")
    ema_decay: float = _f(0.9999, "EMA decay (warmed up as decay * (1 - exp(-updates / 2000)))")
    fuse_bn: str = _f("auto", "validate.py: fold BatchNorm into the convs before evaluating (outputs change at ~1e-6 "
                      "relative; ~1.5-2x faster on CPU); auto = on CPU only", ["auto", "on", "off"])
    amp_level: str = _f("O0", "automatic mixed precision: O0 (fp32), O2 (fp16, BN fp32), O3 (fp16)",
                        ["O0", "O1", "O2", "O3"])
    # --- loss
    loss: str = _f("CE", "loss: CE (cross entropy; takes mixup's soft labels)", ["CE"])
    label_smoothing: float = _f(0.1, "label smoothing")
    # --- knowledge distillation (off unless teacher is set; see docs/training.md)
    teacher: str = _f("", "KD teacher: a registered mindghost model or mindcv:<name>; '' = no distillation")
    teacher_ckpt: str = _f("", "the teacher's trained weights (required with teacher; loaded strictly)")
    kd_temperature: float = _f(1.0, "KD softmax temperature T (loss scaled by T^2); 1.0 = the GhostNetV3 reference")
    kd_weight: float = _f(1.0, "weight of the KD loss (reference --kd-loss-weight)")
    label_weight: float = _f(1.0, "weight of the label loss when distilling (reference --ori-loss-weight)")
    teacher_image_size: int = _f(0, "teacher input size (the batch is resized for it); 0 = the student's")
    # --- schedule (all computed per step)
    scheduler: str = _f("cosine_decay", "learning-rate schedule after warmup",
                        ["cosine_decay", "step_decay", "multi_step_decay", "exponential_decay", "constant"])
    lr: float = _f(0.4, "peak learning rate (for the global batch)")
    lr_base_batch: int = _f(0, "linear scaling rule: the global batch lr and min_lr were set for; when > 0 they are "
                               "multiplied by (batch_size x devices x accum_steps) / lr_base_batch. 0 = off")
    min_lr: float = _f(1e-7, "final learning rate of cosine_decay")
    warmup_epochs: float = _f(0.0, "linear warmup epochs")
    warmup_factor: float = _f(0.0, "warmup starts at lr * warmup_factor")
    decay_epochs: float = _f(0.0, "step_decay: decay every N epochs; cosine_decay: 0 = epochs - warmup_epochs")
    decay_rate: float = _f(0.9, "step/multi_step/exponential decay factor")
    milestones: List[int] = _f([], "multi_step_decay epochs")
    epochs: int = _f(600, "training epochs")
    # --- optimizer
    opt: str = _f("momentum", "momentum (SGD), adamw, rmsprop_tf (TF-style RMSProp), rmsprop, sgd",
                  ["momentum", "sgd", "adamw", "rmsprop_tf", "rmsprop"])
    momentum: float = _f(0.9, "momentum (SGD, RMSProp)")
    nesterov: bool = _f(False, "Nesterov momentum")
    weight_decay: float = _f(2e-5, "weight decay")
    weight_decay_filter: str = _f("norm_and_bias", "exclude norm and bias parameters from weight decay, or not",
                                  ["norm_and_bias", "disable"])
    eps: Optional[float] = _f(None, "optimizer epsilon; none = 1e-3 for rmsprop_tf, 1e-8 for adamw, 1e-10 rmsprop")
    clip_grad_norm: float = _f(0.0, "clip gradients to this global norm (0 = off)")
    accum_steps: int = _f(1, "gradient accumulation steps per update")
    loss_scale_type: str = _f("auto", "auto (dynamic for fp16 on Ascend/GPU, fixed otherwise), fixed or dynamic",
                              ["auto", "fixed", "dynamic"])
    loss_scale: float = _f(1024.0, "(initial) loss scale; used only with fp16 AMP")
    drop_overflow_update: bool = _f(True, "skip the update of a step whose gradients overflow")
    # --- run: validation, checkpoints, logging
    dataset_sink_mode: bool = _f(True, "sink data to the device where supported (Ascend, GPU; not CPU)")
    val_every: int = _f(1, "validate every N epochs (0 = never during training)")
    best_on: str = _f("auto", "track the best checkpoint on ema or raw weights; auto = ema when ema is on",
                      ["auto", "ema", "raw"])
    keep_checkpoint_max: int = _f(5, "keep the latest N epoch checkpoints (plus best.ckpt)")
    save_every: int = _f(1, "save a checkpoint every N epochs")
    log_every: int = _f(50, "log loss, lr and img/s every N steps")
    output_dir: str = _f("", "run directory; empty = runs/<model>-<timestamp>")
    resume: str = _f("", "checkpoint to resume from ('' = resume automatically from output_dir if unfinished)")
    overwrite: bool = _f(False, "allow writing into a run directory that holds a finished run")
    max_steps: int = _f(0, "stop after this many training batches (0 = run all epochs), saving a mid-epoch checkpoint")
    plot: bool = _f(True, "write curves.png at the end (needs matplotlib)")
    progress: bool = _f(True, "show a tqdm progress bar on rank 0")

    # ---- derived values (never stored)
    def resolved_eval_batch_size(self) -> int:
        return self.eval_batch_size or self.batch_size

    def resolved_decay_epochs(self) -> float:
        if self.scheduler == "cosine_decay" and not self.decay_epochs:
            return self.epochs - self.warmup_epochs
        return self.decay_epochs

    def resolved_best_on(self) -> str:
        return ("ema" if self.ema else "raw") if self.best_on == "auto" else self.best_on

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS: Dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)

# MindCV key -> our key. Values pass through unchanged unless a converter is given in _ALIAS_VALUES.
ALIASES: Dict[str, str] = {
    "device_target": "device",
    "num_parallel_workers": "num_workers",
    "image_resize": "image_size",
    "epoch_size": "epochs",
    "ckpt_save_dir": "output_dir",
    "ckpt_save_interval": "save_every",
    "val_interval": "val_every",
    "val_while_train": "val_every",
    "log_interval": "log_every",
    "use_nesterov": "nesterov",
    "gradient_accumulation_steps": "accum_steps",
    "cutmix_prob": "mixup_prob",
    "clip_value": "clip_grad_norm",
    "clip_grad": "clip_grad_norm",
    "filter_bias_and_bn": "weight_decay_filter",
}
_ALIAS_VALUES = {
    # MindCV's val_while_train is a bool; ours is an interval
    "val_while_train": lambda v: 1 if _parse_bool("val_while_train", v) else 0,
    # MindCV's clip_grad is a bool paired with clip_value (default 15)
    "clip_grad": lambda v: 15.0 if _parse_bool("clip_grad", v) else 0.0,
    "filter_bias_and_bn": lambda v: "norm_and_bias" if _parse_bool("filter_bias_and_bn", v) else "disable",
}
_MODE_NAMES = {0: "graph", 1: "pynative", "0": "graph", "1": "pynative"}
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"'{key}' expects a bool (true/false), got {value!r}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: Any, tp, from_cli: bool) -> Any:
    """Check `value` against the annotation `tp`; CLI strings are parsed, YAML values must already fit."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        return _coerce(key, value, inner, from_cli)
    if origin in (list, List):
        (inner,) = typing.get_args(tp)
        if from_cli and isinstance(value, str):
            value = [v for v in value.replace(",", " ").split()]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' expects a list of {_type_name(inner)}, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, inner, from_cli) for i, v in enumerate(value)]
    if tp is bool:
        return _parse_bool(key, value)
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' expects int, got bool {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"'{key}' expects int, got {type(value).__name__} {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' expects float, got bool {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"'{key}' expects float, got {type(value).__name__} {value!r}")
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' expects str, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"'{key}': unsupported type {tp}")  # pragma: no cover


def _unknown(key: str) -> ConfigError:
    names = list(FIELDS) + list(ALIASES)
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"Unknown config key '{key}'.{hint} (valid keys: see `python train.py --help`)")


def normalize(raw: Dict[str, Any], from_cli: bool = False, source: str = "config") -> Dict[str, Any]:
    """Map aliases to our names and check every value's type and choices; returns {field: value}."""
    out: Dict[str, Any] = {}
    for key, value in raw.items():
        name = key
        if key in ALIASES:
            name = ALIASES[key]
            if key in _ALIAS_VALUES:
                value = _ALIAS_VALUES[key](value)
        if name not in FIELDS:
            raise _unknown(key)
        if name == "mode" and value in _MODE_NAMES:
            value = _MODE_NAMES[value]
        value = _coerce(key, value, _HINTS[name], from_cli)
        choices = FIELDS[name].metadata.get("choices")
        if choices and value is not None:
            if isinstance(value, str) and value not in choices:
                lowered = {c.lower(): c for c in choices}
                if value.lower() in lowered:
                    value = lowered[value.lower()]
                else:
                    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
                    hint = f" Did you mean '{close[0]}'?" if close else ""
                    raise ConfigError(f"'{key}' must be one of {list(choices)}, got {value!r}.{hint}")
        if name in out and key != name:
            raise ConfigError(f"{source}: '{key}' is an alias of '{name}', which is also set")
        out[name] = value
    return out


def load_yaml(path: str) -> Dict[str, Any]:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: '{path}'") from None
    if not isinstance(data, dict):
        raise ConfigError(f"'{path}' must hold a mapping of key: value, got {type(data).__name__}")
    try:
        return normalize(data, from_cli=False, source=path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def config_problems(cfg: Config) -> List[str]:
    """Every value or combination the schema's types cannot catch, as messages naming the key (all, not the
    first)."""
    problems = []
    if cfg.dataset_download:
        problems.append("'dataset_download: True' is not supported: download ImageNet yourself and set data_dir")
    if cfg.pretrained and cfg.ckpt_path:
        problems.append("'pretrained: True' and 'ckpt_path' both name initial weights: keep one")
    if cfg.new_classifier and not (cfg.pretrained or cfg.ckpt_path):
        problems.append("'new_classifier: True' replaces the classifier of loaded weights: set ckpt_path (or "
                        "pretrained: True) too")
    if cfg.pretrained_dir and not cfg.pretrained:
        problems.append("'pretrained_dir' is searched for published weights: it needs 'pretrained: True'")
    if cfg.freeze_backbone < -1:
        problems.append(f"'freeze_backbone' is a number of epochs (or -1 for the whole run), got {cfg.freeze_backbone}")
    if cfg.head_lr_scale <= 0:
        problems.append(f"'head_lr_scale' must be > 0, got {cfg.head_lr_scale:g} (freeze_backbone freezes the rest)")
    for key in ("batch_size", "epochs", "accum_steps", "log_every", "save_every", "keep_checkpoint_max"):
        if getattr(cfg, key) < 1:
            problems.append(f"'{key}' must be >= 1, got {getattr(cfg, key)}")
    for key in ("scale", "ratio"):
        if len(getattr(cfg, key)) != 2:
            problems.append(f"'{key}' expects two numbers [low, high], got {getattr(cfg, key)}")
    for key in ("mean", "std"):
        v = getattr(cfg, key)
        if v is not None and (len(v) not in (1, 3) or max(v) > 1.0):  # 1: grey-scale (in_channels 1)
            problems.append(f"'{key}' expects one number per input channel (3, or 1 for grey-scale) in [0, 1], got {v}")
    if cfg.scheduler == "step_decay" and cfg.decay_epochs <= 0:
        problems.append("'scheduler: step_decay' needs decay_epochs > 0")
    if cfg.scheduler == "multi_step_decay" and not cfg.milestones:
        problems.append("'scheduler: multi_step_decay' needs milestones")
    if cfg.warmup_epochs > cfg.epochs:
        problems.append(
            f"'warmup_epochs' ({cfg.warmup_epochs:g}) exceeds 'epochs' ({cfg.epochs}); lower --warmup_epochs")
    problems += _distill_problems(cfg)
    if (cfg.mixup > 0 or cfg.cutmix > 0) and cfg.batch_size % 2:
        # MindCV's Mixup pairs each batch with its reverse and refuses an odd batch mid-epoch
        problems.append(f"mixup/cutmix need an even batch_size (they mix pairs of images), got {cfg.batch_size}; "
                        f"pass --batch_size {cfg.batch_size + 1} (or {cfg.batch_size - 1}), or --mixup 0 --cutmix 0")
    return problems


def _distill_problems(cfg: Config) -> List[str]:
    """The KD values the types cannot check. Whether the teacher exists and its checkpoint loads is checked by
    the run plan (training/plan.py), which builds it."""
    import math

    problems = []
    if not cfg.teacher:
        if cfg.teacher_ckpt:
            problems.append(f"'teacher_ckpt' is set ({cfg.teacher_ckpt}) but 'teacher' is empty: name the teacher's "
                            "model with --teacher (e.g. ghostnet_100 or mindcv:resnet50), or drop --teacher_ckpt")
        return problems
    if not (math.isfinite(cfg.kd_temperature) and cfg.kd_temperature > 0):
        problems.append(f"'kd_temperature' must be a finite number > 0, got {cfg.kd_temperature} (1.0 reproduces "
                        "the GhostNetV3 reference)")
    for key in ("kd_weight", "label_weight"):
        value = getattr(cfg, key)
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"'{key}' must be a finite number >= 0, got {value}")
    if cfg.kd_weight == 0 and cfg.label_weight == 0:
        problems.append("'kd_weight' and 'label_weight' are both 0: the loss would be constant (the reference "
                        "uses 1 and 1)")
    if cfg.teacher_image_size < 0:
        problems.append(f"'teacher_image_size' must be 0 (the student's input size) or a size in pixels, "
                        f"got {cfg.teacher_image_size}")
    return problems


def _validate(cfg: Config) -> Config:
    problems = config_problems(cfg)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems in the config:\n" + "\n".join(f"  - {p}" for p in problems))
    return cfg


def build_config(overrides: Optional[Dict[str, Any]] = None, config_path: str = "") -> Config:
    """Defaults <- YAML recipe <- overrides (already-normalized or raw keys)."""
    values: Dict[str, Any] = load_yaml(config_path) if config_path else {}
    if overrides:
        values.update(normalize(overrides, from_cli=False, source="overrides"))
    return _validate(Config(**values))


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors keep exit code 2, with our hint for unknown flags
        if "unrecognized arguments" in message:
            flags = [t for t in message.split(":", 1)[1].split() if t.startswith("-")]
            names = ["--" + n for n in list(FIELDS) + list(ALIASES)]
            hints = []
            for f in flags:
                close = difflib.get_close_matches(f.split("=")[0], names, n=1, cutoff=0.6)
                hints.append(f"'{f}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            message = "unknown option " + ", ".join(hints)
        super().error(message)


def make_parser(description: str = "") -> argparse.ArgumentParser:
    """An argparse parser generated from the schema: every field as --name, MindCV aliases as extra flags."""
    p = _Parser(description=description, usage="%(prog)s [-c RECIPE.yaml] [--key value ...]  (see --help)",
                allow_abbrev=False)
    p.add_argument("-c", "--config", default="", help="YAML recipe; command-line flags override it")
    by_target: Dict[str, List[str]] = {}
    for alias, target in ALIASES.items():
        by_target.setdefault(target, []).append(alias)
    for name, f in FIELDS.items():
        tp = _HINTS[name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        is_list = typing.get_origin(tp) in (list, List) or (inner and typing.get_origin(inner[0]) in (list, List))
        kwargs: Dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": f.metadata["help"]}
        if is_list:
            kwargs["nargs"] = "*"
        if f.metadata.get("choices"):
            kwargs["metavar"] = "{" + ",".join(f.metadata["choices"]) + "}"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs["help"] += f" (default: {default})"
        p.add_argument("--" + name, **kwargs)
        for alias in by_target.get(name, []):
            p.add_argument("--" + alias, dest="alias:" + alias, default=argparse.SUPPRESS, metavar=name.upper(),
                           nargs="*" if is_list else None, help=f"MindCV alias of --{name}")
    return p


def parse_args(argv: Optional[List[str]] = None, description: str = "", defer_checks: bool = False
               ) -> Tuple[Config, Dict[str, Any]]:
    """Parse the command line: returns the resolved Config and the dict of explicitly given CLI values.
    Unknown keys and wrong types always stop here; `defer_checks=True` leaves the value checks
    (`config_problems`) to the caller, which reports them with its own (train.py: with the data's)."""
    cfg, cli, _ = parse_args_with_recipe(argv, description, defer_checks)
    return cfg, cli


def parse_args_with_recipe(argv: Optional[List[str]] = None, description: str = "", defer_checks: bool = False
                           ) -> Tuple[Config, Dict[str, Any], Dict[str, Any]]:
    """`parse_args`, plus the recipe's own values ({} without --config): what the user set, by either route,
    as opposed to the schema's defaults (validate.py lets a checkpoint's record fill what neither set)."""
    parser = make_parser(description)
    ns = vars(parser.parse_args(argv))
    config_path = ns.pop("config", "")
    cli_raw: Dict[str, Any] = {}
    for dest, value in ns.items():
        key = dest.split(":", 1)[1] if dest.startswith("alias:") else dest
        if isinstance(value, list):  # nargs='*': ['0.5', '1.0'] or ['0.5,1.0']
            value = " ".join(value)
        cli_raw[key] = value
    try:
        cli = normalize(cli_raw, from_cli=True, source="command line")
        recipe = load_yaml(config_path) if config_path else {}
        cfg = Config(**{**recipe, **cli})
        if not defer_checks:
            cfg = _validate(cfg)
    except ConfigError as e:
        parser.error(str(e))
        raise  # pragma: no cover
    return cfg, cli, recipe


def dump_yaml(cfg: Config, path: str) -> None:
    with open(path, "w") as fh:
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)


if __name__ == "__main__":  # pragma: no cover
    print(parse_args(sys.argv[1:])[0])
