"""What running a checkpoint needs to know, read from the checkpoint itself: its model, class count, input
channels, eval preprocessing and class names, merged with what the user passed explicitly; and the one builder
of a model ready for inference from it.

Every entry point that runs weights (validate.py, predict, export, benchmark, redundancy) builds its model with
`build_inference_model`, so a ghostnet_050 trained at 32 px with its own mean/std is run at 32 px with that
mean/std everywhere, in the same form (GhostNetV3 fused, BN folded on CPU), and each tool says where every value
came from:

    built = build_inference_model(args.ckpt_path, model=args.model, explicit={"image_size": args.image_size},
                                  ema=args.ema, fuse_bn=args.fuse_bn, device=device)
    for line in built.messages(): print(line)  # "using the checkpoint's recorded image_size 32", warnings
    logits = built.model(x)                     # x: (N, built.setup.in_channels, size, size)

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
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)  # architecture options (cheap_op, ratio, ...)
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
    if config.get("model_kwargs"):
        out["model_kwargs"] = dict(config["model_kwargs"])
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
    `{"image_size": "--size"}`), so messages name the flag the user can type. origin: whose record the notes
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

    model_kwargs = dict(recorded.get("model_kwargs") or {})
    if "model_kwargs" in explicit and dict(explicit["model_kwargs"]) != model_kwargs:
        if "model_kwargs" in recorded or explicit["model_kwargs"]:
            raise CheckpointError(f"'{source}' was trained with model_kwargs {model_kwargs or '{}'}, but "
                                  f"{explicit['model_kwargs'] or '{}'} was given; leave model_kwargs out (the "
                                  "checkpoint's are used) or pass the recorded ones")
    if model_kwargs and "model_kwargs" in recorded:
        notes.append(f"using {origin} recorded model_kwargs {model_kwargs}")

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
                          class_names=names, model_kwargs=model_kwargs, notes=tuple(notes),
                          warnings=tuple(warnings))


def setup_from_checkpoint(ckpt_path: str, model: Optional[str] = None,
                          explicit: Optional[Mapping[str, Any]] = None,
                          flags: Optional[Mapping[str, str]] = None) -> Tuple[Optional[Dict[str, Any]], InferenceSetup]:
    """`read_meta` + `resolve_inference_setup` for a checkpoint path: (meta or None, setup)."""
    meta = read_meta(ckpt_path, flags.get("ckpt_path", "--ckpt_path") if flags else "--ckpt_path")
    return meta, resolve_inference_setup(meta, model=model, explicit=explicit, source=ckpt_path, flags=flags)


FUSE_BN_CHOICES = ("auto", "true", "false")


@dataclass(frozen=True)
class InferenceSource:
    """Where a model's weights come from and what they need: `ckpt_path` ("" for random weights; the fetched file
    for `pretrained`), the checkpoint's mindghost `meta` (None when it records none) and the resolved `setup`."""

    ckpt_path: str
    meta: Optional[Dict[str, Any]]
    setup: InferenceSetup


@dataclass
class InferenceModel:
    """A model ready to run (eval mode, inference form) and what it was built from.

    model: the `nn.Cell`, input (N, setup.in_channels, setup.image_size, setup.image_size) float32, output
    (N, setup.num_classes) logits. bn_folded: the number of BatchNorm layers folded into their convs (0: none);
    reparameterized: GhostNetV3 branches fused; cpu_pass: `mindghost.cpu.accelerate_on_cpu` applied. unfused: with
    `keep_unfused`, the same weights before BN folding and the CPU pass (export's parity reference), else None."""

    model: Any
    setup: InferenceSetup
    meta: Optional[Dict[str, Any]]
    ckpt_path: str
    device: str
    ema: bool
    bn_folded: int
    reparameterized: bool
    cpu_pass: bool
    unfused: Any = None
    notes: Tuple[str, ...] = ()

    def messages(self) -> List[str]:
        """The setup's notes and warnings, then the builder's own notes (BN folding)."""
        return self.setup.messages() + list(self.notes)


def resolve_source(ckpt_path: str = "", model: Optional[str] = None, explicit: Optional[Mapping[str, Any]] = None,
                   *, pretrained: bool = False, pretrained_dir: str = "", random_weights: bool = False,
                   flags: Optional[Mapping[str, str]] = None) -> InferenceSource:
    """The weights to load and the `InferenceSetup` they need (`setup_from_checkpoint`; the first half of
    `build_inference_model`, for callers that check their data against the setup before building).

    Exactly one source: `ckpt_path`, `pretrained` (needs `model`; the file is found in `pretrained_dir`, the cache,
    or downloaded: `mindghost.hub.fetch_pretrained`), or `random_weights=True` (untrained, on purpose: benchmark,
    profile, deployment tests). Raises UsageError for none or two of them, CheckpointError for a checkpoint that
    cannot run as asked (see `resolve_inference_setup`)."""
    flags = dict(flags or {})
    given = [name for name, on in (("ckpt_path", bool(ckpt_path)), ("pretrained", pretrained),
                                   ("random_weights", random_weights)) if on]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(flags.get(g, '--' + g) for g in given)} both name the weights: keep one")
    if not given:
        raise UsageError(f"no weights given: pass {flags.get('ckpt_path', '--ckpt_path')} /path/to/checkpoint, or "
                         "--pretrained for the model's published weights (random weights are never used silently)")
    if random_weights:
        return InferenceSource("", None, resolve_inference_setup({}, model, explicit, source="random weights",
                                                                  flags=flags))
    if pretrained:
        if not model:
            raise UsageError(f"--pretrained needs {flags.get('model', '--model')}: the published weights of which "
                             "model?")
        from .hub import fetch_pretrained

        ckpt_path = fetch_pretrained(model, pretrained_dir or None)[0]
    meta, setup = setup_from_checkpoint(ckpt_path, model, explicit, flags)
    return InferenceSource(ckpt_path, meta, setup)


def build_inference_model(ckpt_path: str = "", model: Optional[str] = None,
                          explicit: Optional[Mapping[str, Any]] = None, *, pretrained: bool = False,
                          pretrained_dir: str = "", random_weights: bool = False, ema: bool = False,
                          fuse_bn: str = "auto", device: str = "CPU", cpu_pass: bool = True,
                          cpu_options: Optional[Mapping[str, bool]] = None, keep_unfused: bool = False,
                          flags: Optional[Mapping[str, str]] = None,
                          source: Optional[InferenceSource] = None) -> InferenceModel:
    """The one way every entry point (validate.py, predict, export, benchmark, redundancy) turns weights into a
    model ready for inference.

    ckpt_path / pretrained (+ pretrained_dir) / random_weights, model, explicit, flags: see `resolve_source`
    (`source`: its result, when the caller resolved it already). Then, in this order:
    1. `create_model` with the setup's model, num_classes and in_channels;
    2. strict loading (`ema`: the EMA copy of a training checkpoint); CheckpointError for a missing or mismatched
       tensor, or no EMA copy;
    3. GhostNetV3 re-parameterised to its inference form (`reparameterize_model`; exact up to rounding);
    4. BatchNorm folded into the convs when `fuse_bn` is "true", or "auto" and `device` is CPU (outputs change at
       ~1e-6 relative; `mindghost.models.fuse_bn`);
    5. on CPU when `cpu_pass`: `mindghost.cpu.accelerate_on_cpu(**cpu_options)`, after folding (the folded
       depthwise convs keep the kernel). Export passes `cpu_pass=False`: a graph file holds plain cells;
    6. eval mode.
    device: the resolved device ("CPU", "GPU", "Ascend"). keep_unfused: also return the model before step 4-5."""
    from .models import create_model, load_checkpoint, reparameterize_model

    fuse_bn = {True: "true", False: "false", "on": "true", "off": "false"}.get(fuse_bn, fuse_bn)
    if fuse_bn not in FUSE_BN_CHOICES:
        raise UsageError(f"fuse_bn must be one of {list(FUSE_BN_CHOICES)}, got {fuse_bn!r}")
    if source is None:
        source = resolve_source(ckpt_path, model, explicit, pretrained=pretrained, pretrained_dir=pretrained_dir,
                                random_weights=random_weights, flags=flags)
    setup = source.setup
    net = create_model(setup.model, num_classes=setup.num_classes, in_channels=setup.in_channels,
                       **setup.model_kwargs)
    meta = source.meta
    if source.ckpt_path:
        meta = load_checkpoint(net, source.ckpt_path, ema=ema)
    # a training checkpoint of GhostNetV3 holds the train form: run the fused inference form (exact up to rounding,
    # fewer convs); a no-op for the other families and for fused weights
    net = reparameterize_model(net)
    net.set_train(False)
    unfused = net if keep_unfused else None
    notes: List[str] = []
    folded = 0
    if fuse_bn == "true" or (fuse_bn == "auto" and device == "CPU"):
        from .models import fuse_bn as fold

        net = fold(net, input_shape=(1, setup.in_channels, setup.image_size, setup.image_size),
                   inplace=not keep_unfused)
        folded = len(net.fused_pairs)
        notes.append(f"folded {folded} BatchNorm layers into their convs (--fuse_bn false keeps them)")
    accelerated = bool(cpu_pass and device == "CPU")
    if accelerated:
        from .cpu import accelerate_on_cpu

        net = accelerate_on_cpu(net, device, **dict(cpu_options or {}))
    net.set_train(False)
    return InferenceModel(model=net, setup=setup, meta=meta, ckpt_path=source.ckpt_path, device=device, ema=ema,
                          bn_folded=folded, reparameterized=bool(getattr(net, "reparameterized", False)),
                          cpu_pass=accelerated, unfused=unfused, notes=tuple(notes))


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


__all__ = ["CLASS_NAMES_KEY", "FUSE_BN_CHOICES", "InferenceModel", "InferenceSetup", "InferenceSource",
           "PREPROCESSING_KEYS", "STRUCTURE_KEYS", "build_inference_model", "check_ckpt_path",
           "describe", "eval_transforms", "find_checkpoints", "read_class_names", "read_meta", "recorded_setup",
           "resolve_inference_setup", "resolve_source", "setup_from_checkpoint"]
