"""What running a checkpoint needs to know, read from the checkpoint itself: its model, class count, input
channels, eval preprocessing and class names, merged with what the user passed explicitly.

Every tool that reads a checkpoint (export, redundancy, benchmark, predict; validate.py through the lead's call)
goes through `resolve_inference_setup`, so a ghostnet_050 trained at 32 px with its own mean/std is run at 32 px
with that mean/std everywhere, and each tool says where every value came from:

    meta = read_meta(path)                     # None for MindCV / .pth / .safetensors files (nothing recorded)
    setup = resolve_inference_setup(meta, model=args.model, explicit={"image_size": args.img_size}, source=path)
    for line in setup.messages(): print(line)  # "using the checkpoint's recorded image_size 32", warnings

Precedence, field by field: an explicit value (command line or recipe) > the checkpoint's recorded training
config (`meta["config"]`, written by training's `make_meta`) > the model's default cfg. An explicit
preprocessing value that disagrees with the checkpoint wins with a warning naming both; an explicit model,
num_classes or in_channels that disagrees is refused (the weights cannot run that way).

Grey-scale models (in_channels 1) decode images as L and use one mean/std value (`mindghost.data.channels`); one
that records no mean/std gets the average of the model's default RGB values, with a note.
"""
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import UsageError
from .weights import CheckpointError, check_ckpt_path, find_checkpoints, read_meta  # read_meta: re-exported

# the fields `resolve_inference_setup` decides; keys of `explicit` and of `InferenceSetup`
PREPROCESSING_KEYS = ("image_size", "crop_pct", "interpolation", "mean", "std")
STRUCTURE_KEYS = ("num_classes", "in_channels")
CLASS_NAMES_KEY = "class_names"  # meta key: list of str in class-index order (written by training)


@dataclass(frozen=True)
class InferenceSetup:
    """The model to build and the eval preprocessing to apply to its input.

    image_size: the square center-crop side in pixels; crop_pct: crop / resize of the short side (MindCV's eval:
    resize to int(image_size / crop_pct), then center crop); mean/std: per channel (3: RGB, 1: grey-scale), in [0, 1].
    `notes` say which values came from the checkpoint; `warnings` name explicit values that override it."""

    model: str
    num_classes: int
    in_channels: int
    image_size: int
    crop_pct: float
    interpolation: str
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    class_names: Optional[Tuple[str, ...]] = None
    notes: Tuple[str, ...] = field(default=(), compare=False)
    warnings: Tuple[str, ...] = field(default=(), compare=False)

    def preprocessing(self):
        """The `mindghost.data.EvalPreprocessing` validate's eval loader takes."""
        from .data import EvalPreprocessing

        # EvalPreprocessing knows its channel count from len(mean), which resolve_inference_setup checked
        return EvalPreprocessing(image_size=self.image_size, crop_pct=self.crop_pct,
                                 interpolation=self.interpolation, mean=tuple(self.mean), std=tuple(self.std))

    def preprocessing_dict(self) -> Dict[str, Any]:
        """What a deployment must do to an image before the network (export writes it into its JSON); "order" says
        whether images are decoded as L (grey-scale, in_channels 1) or RGB."""
        from .data import decode_order

        return {"image_size": self.image_size, "resize_size": int(self.image_size / self.crop_pct),
                "crop_pct": self.crop_pct, "interpolation": self.interpolation, "mean": list(self.mean),
                "std": list(self.std), "in_channels": self.in_channels, "order": decode_order(self.in_channels)}

    def messages(self) -> List[str]:
        """Notes and warnings as printable lines (warnings prefixed 'warning: ')."""
        return list(self.notes) + [f"warning: {w}" for w in self.warnings]


def recorded_setup(meta: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The values a checkpoint's meta records for `InferenceSetup` fields ({} when it records none).

    Training stores its whole config: the eval crop is `eval_image_size` or else `image_size`; a preprocessing
    field left at None there means the model's default cfg was used, so it is not a recorded value."""
    if not meta:
        return {}
    config = meta.get("config") or {}
    out: Dict[str, Any] = {}
    model = meta.get("model") or config.get("model")
    if model:
        out["model"] = model
    for key in STRUCTURE_KEYS:
        value = meta.get(key, config.get(key))
        if value is not None:
            out[key] = int(value)
    size = config.get("eval_image_size") or config.get("image_size")
    if size:
        out["image_size"] = int(size)
    for key in PREPROCESSING_KEYS[1:]:
        if config.get(key) is not None:
            out[key] = tuple(config[key]) if key in ("mean", "std") else config[key]
    names = meta.get(CLASS_NAMES_KEY)
    if names is not None:
        out["class_names"] = tuple(str(n) for n in names)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(abs(float(x) - float(y)) < 1e-9 for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) < 1e-9
    return a == b


def _show(value: Any) -> str:
    return "[" + ", ".join(f"{v:g}" for v in value) + "]" if isinstance(value, (list, tuple)) else str(value)


def resolve_inference_setup(meta: Optional[Mapping[str, Any]], model: Optional[str] = None,
                            explicit: Optional[Mapping[str, Any]] = None, source: str = "the checkpoint",
                            flags: Optional[Mapping[str, str]] = None, origin: str = "the checkpoint's"
                            ) -> InferenceSetup:
    """Merge the checkpoint's meta (None = records nothing), the model's default cfg and the user's values.

    model: the name the user asked for (None: the checkpoint's). explicit: {key: value or None} for keys of
    `PREPROCESSING_KEYS`, `STRUCTURE_KEYS` and "class_names"; None means the user said nothing. source: the
    checkpoint path, for messages. flags: the command-line spelling of a key where it is not `--<key>` (export's
    `{"image_size": "--img_size"}`), so messages name the flag the user can type. origin: whose record the notes
    name ("the checkpoint's"; predict passes "the export JSON's" for a MINDIR file).

    Raises CheckpointError when the checkpoint was trained as another model or with another num_classes /
    in_channels than asked for, or records class names that do not match its class count; UsageError when no
    model is known (no --model and a checkpoint that records none), for an in_channels other than 1 or 3 (no
    image mode to decode to) and for a mean/std without one value per channel."""
    from .data import channel_mean_std, in_channels_problem
    from .models import get_default_cfg

    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    flags = dict(flags or {})
    flag = lambda key: flags.get(key, f"--{key}")  # noqa: E731
    recorded = recorded_setup(meta)
    notes: List[str] = []
    warnings: List[str] = []

    trained_as = recorded.get("model")
    if model and trained_as and model != trained_as:
        raise CheckpointError(f"'{source}' was trained as {trained_as}, not {model}; pass {flag('model')} "
                              f"{trained_as}")
    name = model or trained_as
    if not name:
        raise UsageError(f"{flag('model')} is needed: '{source}' does not record which model it holds")
    if not model:
        notes.append(f"using {origin} recorded model {name}")
    default = get_default_cfg(name)  # UsageError naming the registered models for an unknown name
    defaults: Dict[str, Any] = {"num_classes": default.num_classes, "in_channels": default.input_size[0],
                                "image_size": int(default.input_size[-1]), "crop_pct": float(default.crop_pct),
                                "interpolation": default.interpolation, "mean": tuple(default.mean),
                                "std": tuple(default.std)}
    values: Dict[str, Any] = {}
    for key in STRUCTURE_KEYS + PREPROCESSING_KEYS:
        if key in explicit and key in recorded and not _same(explicit[key], recorded[key]):
            if key in STRUCTURE_KEYS:  # the weights' shapes depend on these: loading would fail anyway
                raise CheckpointError(f"'{source}' was trained with {key} {recorded[key]}, but {flag(key)} "
                                      f"{explicit[key]} was given; pass {flag(key)} {recorded[key]} or leave it out")
            warnings.append(f"{flag(key)} {_show(explicit[key])} overrides {origin} recorded {key} "
                            f"{_show(recorded[key])} (the model was trained and validated with "
                            f"{_show(recorded[key])})")
        if key in explicit:
            values[key] = explicit[key]
        elif key in ("mean", "std") and key not in recorded:
            values[key] = None  # the model's default, for the resolved channel count (below)
        elif key in recorded:
            values[key] = recorded[key]
            if not _same(recorded[key], defaults[key]):
                notes.append(f"using {origin} recorded {key} {_show(recorded[key])} "
                             f"({name}'s default is {_show(defaults[key])})")
        else:
            values[key] = defaults[key]
    channels = int(values["in_channels"])
    if in_channels_problem(channels):
        where = flag("in_channels") if "in_channels" in explicit else f"{origin} recorded in_channels"
        raise UsageError(f"{where} is {channels}, but images decode only as L (in_channels 1, grey-scale) or RGB "
                         f"(in_channels 3): {name} with {channels} input channels cannot run on images")
    values["mean"], values["std"], grey_notes, problems = channel_mean_std(
        values["mean"], values["std"], defaults["mean"], defaults["std"], channels,
        flags={"mean": flag("mean"), "std": flag("std")})
    if problems:
        raise UsageError("; ".join(problems))
    notes += grey_notes
    if meta is None and set(PREPROCESSING_KEYS) - set(explicit):
        notes.append(f"'{source}' records no training config: using {name}'s default preprocessing "
                     f"(image_size {values['image_size']}, crop_pct {values['crop_pct']:g}, mean "
                     f"{_show(values['mean'])}, std {_show(values['std'])})")

    names = explicit.get("class_names", recorded.get("class_names"))
    if names is not None:
        names = tuple(str(n) for n in names)
        where = "--class_names" if "class_names" in explicit else f"{origin} '{CLASS_NAMES_KEY}'"
        if len(names) != values["num_classes"]:
            error = CheckpointError if "class_names" not in explicit else UsageError
            raise error(f"{where} lists {len(names)} names but the model has {values['num_classes']} classes")
        if "class_names" in explicit and "class_names" in recorded and names != recorded["class_names"]:
            warnings.append(f"--class_names overrides {origin} recorded class names "
                            f"({', '.join(recorded['class_names'][:5])}{', ...' if values['num_classes'] > 5 else ''})")
    return InferenceSetup(model=name, num_classes=int(values["num_classes"]), in_channels=int(values["in_channels"]),
                          image_size=int(values["image_size"]), crop_pct=float(values["crop_pct"]),
                          interpolation=str(values["interpolation"]), mean=values["mean"], std=values["std"],
                          class_names=names, notes=tuple(notes), warnings=tuple(warnings))


def setup_from_checkpoint(ckpt_path: str, model: Optional[str] = None,
                          explicit: Optional[Mapping[str, Any]] = None,
                          flags: Optional[Mapping[str, str]] = None) -> Tuple[Optional[Dict[str, Any]], InferenceSetup]:
    """`read_meta` + `resolve_inference_setup` for a checkpoint path: (meta or None, setup)."""
    meta = read_meta(ckpt_path, flags.get("ckpt_path", "--ckpt_path") if flags else "--ckpt_path")
    return meta, resolve_inference_setup(meta, model=model, explicit=explicit, source=ckpt_path, flags=flags)


def eval_transforms(setup: InferenceSetup) -> list:
    """MindSpore ops from encoded image bytes (uint8 array) to a normalized (in_channels, H, W) float32 array of
    `setup`'s size: the eval transform of `mindghost.data.build_eval_loader` (`mindghost.data.eval_ops`), so an
    image gets the same pixels in prediction as in validation (tests/test_predict.py checks it against the eval
    loader). Grey-scale models (in_channels 1) get the image's luma."""
    from .data import eval_ops

    return eval_ops(setup.preprocessing())


def read_class_names(path: str) -> Tuple[str, ...]:
    """Class names from a file: a JSON list, or one name per line (blank lines ignored), in class-index order."""
    if not os.path.isfile(path):
        raise UsageError(f"--class_names: file not found: '{path}'")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except ValueError as e:
            raise UsageError(f"--class_names '{path}' starts like a JSON list but is not valid JSON ({e})") from e
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names or not all(isinstance(n, (str, int)) for n in names):
        raise UsageError(f"--class_names '{path}' holds no names: write one per line, or a JSON list of strings")
    return tuple(str(n) for n in names)


def describe(setup: InferenceSetup) -> str:
    """One log line: model, classes and preprocessing."""
    return (f"{setup.model} ({setup.num_classes} classes, {setup.in_channels} channels): image_size "
            f"{setup.image_size}, crop_pct {setup.crop_pct:g}, {setup.interpolation}, mean {_show(setup.mean)}, "
            f"std {_show(setup.std)}")


__all__ = ["CLASS_NAMES_KEY", "InferenceSetup", "PREPROCESSING_KEYS", "STRUCTURE_KEYS", "check_ckpt_path",
           "describe", "eval_transforms", "find_checkpoints", "read_class_names", "read_meta", "recorded_setup",
           "resolve_inference_setup", "setup_from_checkpoint"]
