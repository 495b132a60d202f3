"""Reading weight files and loading them into a model strictly; PyTorch → MindSpore renaming helpers.

Accepted files: mindghost checkpoints (plain weights, or training checkpoints that also hold optimizer
state, EMA copies as ``ema.<name>`` and a ``mindghost_meta`` entry), MindCV checkpoints, `.safetensors`,
and PyTorch state dicts (`.pth`, `.pth.tar`, `.pt`, read without torch and without executing pickled code).
Every model parameter must be present with the right shape; anything else is an error listing the keys.
"""
import glob
import logging
import os
import sys
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from mindspore import Parameter, Tensor, load_param_into_net, nn
from mindspore import load_checkpoint as ms_load_checkpoint

from .io import META_KEY, TORCH_SUFFIXES, CheckpointError, decode_meta
from .pth import read_pth, unwrap_state_dict

_LOG = logging.getLogger("mindghost")

# What to pass to start from a checkpoint whose classifier has another class count (one name everywhere).
NEW_CLASSIFIER_HINT = ("to fine-tune with a new classifier, pass new_classifier=True (create_model / load_checkpoint; "
                       "train.py --new_classifier True; python -m mindghost.convert --new_classifier)")


def find_checkpoints(run_dir: str) -> List[str]:
    """The .ckpt files of a run directory (its checkpoints/ folder, or the folder itself), best and last first."""
    found = sorted(glob.glob(os.path.join(run_dir, "*.ckpt")) + glob.glob(os.path.join(run_dir, "*", "*.ckpt")))
    rank = {"best.ckpt": 0, "last.ckpt": 1}
    return sorted(found, key=lambda p: (rank.get(os.path.basename(p), 2), p))


def check_ckpt_path(path: str, flag: str = "--ckpt_path") -> str:
    """`path` if it is a file. A folder (e.g. a run directory) is refused naming the checkpoint files inside it,
    a missing path naming the kinds of file `flag` takes (CheckpointError)."""
    if path and os.path.isdir(path):
        found = find_checkpoints(path)
        if not found:
            raise CheckpointError(f"{flag} '{path}' is a folder and holds no .ckpt files; pass a checkpoint file")
        shown = "\n  ".join(found[:6]) + (f"\n  ... ({len(found) - 6} more)" if len(found) > 6 else "")
        raise CheckpointError(f"{flag} '{path}' is a run directory, not a checkpoint file; pass one of the files "
                              f"inside it (best.ckpt: best validation accuracy, last.ckpt: the latest epoch):\n  "
                              f"{shown}")
    if not path or not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint not found: '{path}'. Pass an existing file to {flag} (a .ckpt from "
                              "mindghost or MindCV, a .safetensors, or an official .pth).")
    return path


def read_checkpoint(path: str, ema: bool = False) -> Dict[str, object]:
    """Read a checkpoint file into {name: Parameter or ndarray}, with a clear error for bad paths or files.

    For PyTorch files `ema=True` picks the EMA state dict (`state_dict_ema`, ...) already here."""
    check_ckpt_path(path)
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"Checkpoint '{path}' is an empty file (0 bytes); it was probably cut off while saving.")
    if path.endswith(TORCH_SUFFIXES):
        return dict(read_pth(path, ema=ema))  # no torch needed: a restricted unpickler
    fmt = "safetensors" if path.endswith(".safetensors") else "ckpt"
    try:
        return dict(ms_load_checkpoint(path, format=fmt))
    except Exception as e:  # MindSpore raises ValueError/RuntimeError with a terse message for damaged files
        raise CheckpointError(
            f"Could not read '{path}' as a MindSpore {fmt} checkpoint ({type(e).__name__}: {e}). "
            "The file is truncated, corrupt or not a checkpoint; use another checkpoint from the run directory."
        ) from e


def read_meta(path: str, flag: str = "--ckpt_path") -> Optional[Dict[str, Any]]:
    """The mindghost metadata of a checkpoint file (the `META_KEY` JSON entry: model, classes, config, epoch, ...)
    without loading its tensors; None when the file has none (MindCV checkpoints, .pth, .safetensors).

    The one reader of checkpoint metadata (inference, resume, tests). A folder or missing path is refused naming
    `flag` (`check_ckpt_path`); an unreadable file or invalid JSON raises CheckpointError."""
    check_ckpt_path(path, flag)
    if not path.endswith(".ckpt"):
        return None
    kept = []

    def meta_and_one(name: str) -> bool:
        # the meta plus one tensor: MindSpore raises when the filter leaves nothing (a checkpoint without meta)
        if name == META_KEY or not kept:
            kept.append(name)
            return True
        return False

    try:
        entries = ms_load_checkpoint(path, choice_func=meta_and_one)
    except Exception as e:  # MindSpore's terse ValueError/RuntimeError for damaged files
        raise CheckpointError(f"could not read '{path}' as a MindSpore checkpoint ({type(e).__name__}: {e}); the "
                              "file is truncated, corrupt or not a checkpoint") from e
    raw = entries.get(META_KEY)
    return None if raw is None else decode_meta(raw, path)


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (Parameter, Tensor)):
        return value.asnumpy()
    return np.asarray(value)


def _is_training_state(key: str, model_keys: Mapping[str, object]) -> bool:
    """Optimizer slots (`moments.<param>`), EMA copies (`ema.<param>`) and scalar bookkeeping entries."""
    if "." not in key:
        return True  # learning_rate, global_step, mindghost_meta, epoch_num, ...
    return key.split(".", 1)[1] in model_keys


def _format_keys(keys: List[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _classifier_name(model: nn.Cell) -> str:
    return getattr(model, "default_cfg", {}).get("classifier", "classifier")


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def _drop_classifier(model: nn.Cell, state: Mapping[str, object], params: Mapping[str, Parameter], source: str,
                     why: str) -> Dict[str, object]:
    """`state` without the classifier's keys (`default_cfg["classifier"]`), logging exactly what is dropped."""
    head = _classifier_name(model)
    dropped = sorted(k for k in state if _under(k, head))
    # a training checkpoint also holds the old classifier's optimizer slots and EMA copy (`adam_m.classifier.weight`,
    # `ema.classifier.bias`, ...): they belong to the dropped classifier, so they go too (else: "unexpected keys")
    slots = sorted(k for k in state if k not in dropped and "." in k and _under(k.split(".", 1)[1], head))
    kept = {k: v for k, v in state.items() if k not in dropped and k not in slots}
    fresh = sorted(k for k in params if _under(k, head))
    shown = ", ".join(f"{k} {tuple(_as_numpy(state[k]).shape)}" for k in dropped) or "none"
    if slots:
        shown += f" (and its {len(slots)} optimizer/EMA slot(s): {_format_keys(slots, 6)})"
    _LOG.warning("%s: new classifier (%s): dropped the checkpoint's classifier keys %s; the model's %s %s "
                 "keep their fresh initialisation. Every other tensor loads strictly.", source, why, shown,
                 head, ", ".join(f"{k} {tuple(params[k].shape)}" for k in fresh) or "(none: the model has no "
                 "classifier)")
    return kept


def load_state_dict(model: nn.Cell, state: Mapping[str, object], source: str = "checkpoint", ema: bool = False,
                    new_classifier: bool = False, new_classifier_reason: str = "new_classifier=True") -> None:
    """Load {name: array} into `model` strictly: missing, unexpected or mis-shaped keys raise CheckpointError.

    `new_classifier=True` (fine-tuning on other classes): the classifier's keys (the parameters under
    `model.default_cfg["classifier"]`, e.g. `classifier.*`, `fc.*`) are dropped from `state` and the model's
    classifier is re-initialised (`model.init_classifier()`); both are logged, key by key, with
    `new_classifier_reason` saying why. Every other tensor still loads strictly."""
    params = model.parameters_dict()
    if ema:
        ema_state = {k[len("ema."):]: v for k, v in state.items() if k.startswith("ema.")}
        if not ema_state:
            raise CheckpointError(f"--ema was asked for, but {source} holds no EMA weights ('ema.*' keys).")
        state = ema_state
    head = _classifier_name(model)
    if new_classifier:
        state = _drop_classifier(model, state, params, source, new_classifier_reason)
        params = {k: p for k, p in params.items() if not _under(k, head)}
    missing = sorted(k for k in params if k not in state)
    # A backbone (features_only) takes the full model's checkpoints: the head and later blocks it cut off are
    # expected in the file and skipped; every parameter it holds must still be there.
    cut_off = set(getattr(model, "dropped_param_names", ()))
    known = set(params) | cut_off
    unexpected = sorted(k for k in state if k not in known and not _is_training_state(k, known))
    shapes = []
    for k, p in params.items():
        if k in state:
            shape = tuple(_as_numpy(state[k]).shape)
            if shape != tuple(p.shape):
                shapes.append(f"{k}: checkpoint {shape} vs model {tuple(p.shape)}")
    if missing or unexpected or shapes:
        arch = getattr(model, "default_cfg", {}).get("architecture", type(model).__name__)
        lines = [f"{source} does not match model '{arch}':"]
        if missing:
            lines.append(f"  missing {len(missing)} key(s): {_format_keys(missing)}")
        if unexpected:
            lines.append(f"  unexpected {len(unexpected)} key(s): {_format_keys(unexpected)}")
        if shapes:
            lines.append(f"  {len(shapes)} shape mismatch(es): {_format_keys(shapes, 6)}")
        if any(_under(k.split(":")[0], head) for k in missing + unexpected + shapes):
            lines.append(f"  The classifier differs ('{head}.*'): set num_classes to the checkpoint's class count to "
                         f"use its classifier, or, {NEW_CLASSIFIER_HINT}.")
        lines.append("  Check that the model name and num_classes match the run that wrote the checkpoint; "
                     "official PyTorch weights go through `python -m mindghost.convert`.")
        raise CheckpointError("\n".join(lines))
    to_load = {}
    for k, p in model.parameters_dict().items():  # the new classifier keeps its values (re-initialised below)
        value = state[k] if k in params else p.asnumpy()
        to_load[k] = Parameter(Tensor(_as_numpy(value), dtype=p.dtype), name=k)
    not_loaded, _ = load_param_into_net(model, to_load, strict_load=True)
    if not_loaded:  # load_param_into_net returns, rather than raises, what it skipped
        raise CheckpointError(f"{source}: parameters not loaded: {_format_keys(sorted(not_loaded))}")
    if new_classifier and callable(getattr(model, "init_classifier", None)):
        model.init_classifier()  # fresh even when the model had loaded other weights before


def load_checkpoint(model: nn.Cell, path: str, ema: bool = False, filter_fn=None, new_classifier: bool = False,
                    new_classifier_reason: str = "new_classifier=True") -> Optional[dict]:
    """Load weights from `path` into `model`; returns the mindghost metadata dict when the file has one.

    Strict (see `load_state_dict`); `new_classifier=True` drops and re-initialises the classifier only.
    A re-parameterisable model (GhostNetV3) takes a checkpoint of either form: a fused (inference-form) file
    fuses a training-form model first, a training-form file is fused on the fly into a fused model; both logged."""
    state = read_checkpoint(path, ema=ema)
    meta = state.pop(META_KEY, None)
    whole = getattr(model, "full_model", model)  # a backbone: names are mapped against the whole network
    torch_file = path.endswith(TORCH_SUFFIXES)
    form_of = getattr(whole, "checkpoint_form", None)
    if callable(form_of):
        keys = list(unwrap_state_dict(state)) if torch_file else [k[4:] if ema and k.startswith("ema.") else k
                                                                  for k in state]
        form = form_of(keys)
        if form == "fused" and not whole.reparameterized:
            _LOG.warning("Checkpoint '%s' holds the fused (re-parameterised) form: the model is reparameterized "
                         "to match it before loading.", path)
            model.reparameterize()
        elif form == "train" and whole.reparameterized and filter_fn is None:
            _LOG.info("Checkpoint '%s' holds the training form: its branches are fused while loading.", path)
            filter_fn = _family_filter_fn(whole)
    if torch_file:
        ema = False  # read_pth already chose the EMA state dict
        filter_fn = filter_fn or _family_filter_fn(whole)
    if filter_fn is not None:
        if not torch_file:  # MindSpore files give Parameters; the filters work on arrays
            state = {k: _as_numpy(v) for k, v in state.items()}
        state = filter_fn(state, whole)
    load_state_dict(model, state, source=f"Checkpoint '{path}'", ema=ema, new_classifier=new_classifier,
                    new_classifier_reason=new_classifier_reason)
    return None if meta is None else decode_meta(meta, path)


def _family_filter_fn(model: nn.Cell):
    """The `checkpoint_filter_fn` of the family file that defines `model`'s class (PyTorch → mindghost names)."""
    module = sys.modules[type(model).__module__]
    fn = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:
        raise CheckpointError(f"{type(model).__name__} has no PyTorch weight mapping (checkpoint_filter_fn).")
    return fn


def torch_bn_rename(key: str) -> str:
    """PyTorch BatchNorm names → MindSpore's (weight→gamma, bias→beta, running_*→moving_*)."""
    for old, new in ((".running_mean", ".moving_mean"), (".running_var", ".moving_variance")):
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def rename_torch_state_dict(state: Mapping[str, object], model: nn.Cell, rename=None) -> Dict[str, np.ndarray]:
    """Generic PyTorch → MindSpore renaming: apply `rename`, then BN names; drop `num_batches_tracked`
    and profiler entries (`total_ops`, `total_params`). BN weight/bias become gamma/beta only where the
    model has a BN there, so convolution and linear weights keep their names."""
    params = model.parameters_dict()
    out = {}
    for key, value in state.items():
        if key.endswith(("num_batches_tracked", "total_ops", "total_params")):
            continue
        key = rename(key) if rename else key
        key = torch_bn_rename(key)
        for old, new in ((".weight", ".gamma"), (".bias", ".beta")):
            if key.endswith(old) and key not in params and key[: -len(old)] + new in params:
                key = key[: -len(old)] + new
        out[key] = _as_numpy(value)
    return out
