"""Model registry: `register_model`, `list_models`, `create_model` and per-variant default cfgs."""
import difflib
import fnmatch
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ..errors import UsageError

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DefaultCfg:
    """What a variant's weights expect at evaluation, and where published numbers come from.

    validate.py builds its eval transforms from these fields unless the recipe overrides them. Where the
    published weight files live is not repeated here: `mindghost.hub.WEIGHTS` is the one table
    (`hub.describe(name)` gives the one-line summary that `model.default_cfg["weights"]` carries).
    """

    input_size: Tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: Tuple[float, float, float] = IMAGENET_DEFAULT_MEAN
    std: Tuple[float, float, float] = IMAGENET_DEFAULT_STD
    num_classes: int = 1000
    first_conv: str = "conv_stem"
    classifier: str = "classifier"
    paper_top1: Optional[float] = None
    paper: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


_model_entrypoints: Dict[str, Callable] = {}
_model_to_family: Dict[str, str] = {}
_model_default_cfgs: Dict[str, DefaultCfg] = {}


def register_model(fn: Callable) -> Callable:
    """Register a model constructor under its function name; its module must define `default_cfgs[name]`."""
    name = fn.__name__
    if name in _model_entrypoints:
        raise ValueError(f"model '{name}' is registered twice ({_model_to_family[name]} and {fn.__module__})")
    module = sys.modules[fn.__module__]
    cfgs = getattr(module, "default_cfgs", {})
    if name not in cfgs:
        raise ValueError(f"model '{name}' has no entry in {fn.__module__}.default_cfgs")
    _model_entrypoints[name] = fn
    _model_to_family[name] = fn.__module__.split(".")[-1]
    _model_default_cfgs[name] = cfgs[name]
    return fn


class Variant(NamedTuple):
    """One registered variant of a family: the keyword arguments it passes to the family's builder, and the
    one-line docstring of its entry point (size and cost at 224, published top-1)."""

    kwargs: Mapping[str, Any]
    doc: str = ""


def register_variants(builder: Callable[..., Any], variants: Mapping[str, Variant]) -> Dict[str, Callable[..., Any]]:
    """Register one entry point per variant: `name(**kwargs)` builds `builder(**{**variant.kwargs, **kwargs})`, so
    a caller's keyword (e.g. `width=`) overrides the variant's. Every family registers its models this way.

    The entry points belong to `builder`'s module (the family), whose `default_cfgs` must hold every name.
    Returns {name: entry point}; the family file assigns each to a module attribute of that name, one line per
    name (`ghostnet_100 = _entry["ghostnet_100"]`), so imports and editors find it (tests/test_models.py checks).
    """
    return {name: register_model(_entrypoint(builder, name, variant)) for name, variant in variants.items()}


def _entrypoint(builder: Callable[..., Any], name: str, variant: Variant) -> Callable[..., Any]:
    defaults = dict(variant.kwargs)

    def entrypoint(**kwargs):
        return builder(**{**defaults, **kwargs})

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = builder.__module__
    entrypoint.__doc__ = variant.doc
    return entrypoint


def list_models(pattern: str = "*", family: str = "") -> List[str]:
    """Sorted names of registered models matching a shell-style `pattern` (and optionally a family file)."""
    names = (n for n in _model_entrypoints if fnmatch.fnmatchcase(n, pattern))
    return sorted(n for n in names if not family or _model_to_family[n] == family)


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def model_family(name: str) -> str:
    return _model_to_family[_check_name(name)]


def get_default_cfg(name: str) -> DefaultCfg:
    return _model_default_cfgs[_check_name(name)]


def _check_name(name: str) -> str:
    if name not in _model_entrypoints:
        close = difflib.get_close_matches(name, _model_entrypoints, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UsageError(
            f"Unknown model '{name}'.{hint} Registered models: {', '.join(sorted(_model_entrypoints))}."
        )
    return name


def create_model(
    name: str,
    num_classes: int = 1000,
    in_channels: int = 3,
    drop_rate: Optional[float] = None,
    checkpoint_path: Optional[str] = None,
    ema: bool = False,
    pretrained: bool = False,
    pretrained_dir: Optional[str] = None,
    new_classifier: bool = False,
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    **kwargs: Any,
):
    """Build a registered model; `checkpoint_path` loads weights strictly (a missing or mismatched key raises).

    `drop_rate=None` keeps the variant's published default. `ema=True` loads the EMA copy of a
    mindghost training checkpoint. Extra keyword arguments go to the family's model class
    (for example `width=`, `ratio=`, `dw_size=` for GhostNet).

    Published weights: `pretrained=True` loads the variant's published ImageNet weights (`mindghost.hub.WEIGHTS`:
    found in `pretrained_dir`, `$MINDGHOST_PRETRAINED_DIR` or the cache, else downloaded once; PyTorch files are
    converted on the fly), strictly. A model without published weights, or a file that cannot be found or
    trusted, raises `hub.PretrainedError` (a CheckpointError) naming the models that have weights / the file,
    URL and folder. With `num_classes` other than the weights' (1000) the classifier is replaced automatically
    (timm's behaviour), and the dropped keys are logged.

    Fine-tuning: `new_classifier=True` with `checkpoint_path` (or `pretrained`) loads every tensor but the
    classifier (the parameters under `default_cfg["classifier"]`) strictly and keeps a freshly initialised
    classifier of `num_classes` outputs; it logs which keys were dropped. Without it, a classifier of another
    size is an error that names this option.

    Backbones: `features_only=True` returns a `FeatureListNet` whose call gives a tuple of feature maps, one per
    index in `out_indices` (default: all five, timm's convention; see `model.feature_info` for each map's
    channels, reduction and cell, and docs/backbones.md). Weights are loaded into the whole model first, so a
    full-model checkpoint (or a PyTorch file) loads strictly; then the head and the blocks after the last chosen
    map are cut off.
    """
    fn = _model_entrypoints[_check_name(name)]
    if out_indices is not None and not features_only:
        raise UsageError("out_indices only applies with features_only=True (a backbone); drop it or set "
                         "features_only=True.")
    if pretrained and checkpoint_path:
        raise UsageError(f"create_model('{name}'): pass either pretrained=True (published weights) or "
                         f"checkpoint_path='{checkpoint_path}' (your file), not both.")
    if new_classifier and not (pretrained or checkpoint_path):
        raise UsageError("new_classifier=True replaces the classifier of loaded weights: pass checkpoint_path= or "
                         "pretrained=True with it.")
    if pretrained_dir and not pretrained:
        raise UsageError("pretrained_dir is the folder searched for published weights: it needs pretrained=True.")
    from .. import hub

    if pretrained:
        hub.sources_for(name)  # fails before building when the variant has no published weights
    if drop_rate is not None:
        kwargs["drop_rate"] = drop_rate
    model = fn(num_classes=num_classes, in_channels=in_channels, **kwargs)
    cfg = _model_default_cfgs[name].to_dict()
    cfg.update(num_classes=num_classes, input_size=(in_channels,) + tuple(cfg["input_size"][1:]), architecture=name,
               weights=hub.describe(name))
    model.default_cfg = cfg
    if checkpoint_path or pretrained:
        from ..weights import load_checkpoint

        reason = "new_classifier=True"
        if pretrained:
            checkpoint_path, source = hub.fetch_pretrained(name, mirror_dir=pretrained_dir)
            published = _model_default_cfgs[name].num_classes
            if num_classes != published and not new_classifier:
                new_classifier = True
                reason = f"the published weights have {published} classes, num_classes={num_classes}"
            ema = source.ema
        load_checkpoint(model, checkpoint_path, ema=ema, new_classifier=new_classifier, new_classifier_reason=reason)
    if features_only:
        from ._features import FeatureListNet

        model = FeatureListNet(model, out_indices)
    return model
