"""Self-describing training checkpoints: written atomically, latest-k kept, best and last as hard links.

A file holds the network parameters under their own names, EMA copies (`ema.<name>`), optimizer state
under MindSpore's names (`moments.<name>`, `global_step`, ...), the loss scale, and a JSON string
`mindghost_meta` (epoch, step, batch position, config, versions, metrics). Resume reads the position from
that meta, never from the file name. `mindghost.models.load_checkpoint` reads the same files for inference.
"""
import contextlib
import logging
import os
import shutil
from typing import Any, Dict, List, Tuple

from ..weights import META_KEY, CheckpointError, CheckpointSaveError, atomic_save, decode_meta, read_checkpoint

__all__ = ["BEST", "LAST", "CheckpointManager", "CheckpointSaveError", "atomic_save", "load_training_state",
           "not_a_training_checkpoint", "training_params"]
LAST = "last.ckpt"
BEST = "best.ckpt"
_LOG = logging.getLogger("mindghost")


def _check_finite(params: List[Dict[str, Any]], path: str) -> None:
    """Never write a diverged (NaN/inf) state over good checkpoints."""
    import numpy as np

    for d in params:
        value = d["data"].asnumpy() if hasattr(d["data"], "asnumpy") else np.asarray(d["data"])
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise CheckpointSaveError(
                f"refusing to save '{path}': non-finite values in '{d['name']}' (the training diverged). "
                f"The previous checkpoints in '{os.path.dirname(path) or '.'}' are intact; lower --lr and resume "
                "from the last one.")


def _link(src: str, dst: str) -> None:
    """Point `dst` at `src`'s content atomically (hard link, or a copy where links are not supported)."""
    head, tail = os.path.split(dst)
    tmp = os.path.join(head, f".{tail}.tmp{os.getpid()}")
    if os.path.lexists(tmp):
        os.remove(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def training_params(train_step) -> List[Dict[str, Any]]:
    """Everything a resumed run needs, each parameter once, under its own name. A KD teacher's parameters and
    the loss-part recorders (`distill.is_distill_param`) are left out: the teacher is frozen and comes from
    teacher_ckpt at every start, and the student's file must load strictly into the bare student."""
    from .distill import is_distill_param

    seen = set()
    out = []
    for p in train_step.get_parameters():
        if p.name not in seen and not is_distill_param(p.name):
            seen.add(p.name)
            out.append({"name": p.name, "data": p})
    return out


class CheckpointManager:
    """Saves `epoch_XXXX.ckpt` (keeps the latest `keep`), and maintains `last.ckpt` and `best.ckpt` links."""

    def __init__(self, directory: str, keep: int):
        self.directory = directory
        self.keep = keep
        os.makedirs(directory, exist_ok=True)
        for f in sorted(os.listdir(directory)):  # left by a save that was killed: never a valid checkpoint
            if f.startswith(".") and ".tmp" in f:
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(directory, f))
                _LOG.info(f"removed an incomplete checkpoint left by an interrupted save: {f}")

    def save(self, train_step, meta: Dict[str, Any], name: str, is_best: bool = False) -> str:
        path = os.path.join(self.directory, name)
        params = training_params(train_step)
        _check_finite(params, path)
        atomic_save(params, path, meta)
        _link(path, os.path.join(self.directory, LAST))
        if is_best:
            _link(path, os.path.join(self.directory, BEST))
        self._prune()
        return path

    def _prune(self) -> None:
        epochs = sorted(f for f in os.listdir(self.directory) if f.startswith("epoch_") and f.endswith(".ckpt"))
        for f in epochs[: max(0, len(epochs) - self.keep)]:
            os.remove(os.path.join(self.directory, f))


def not_a_training_checkpoint(path: str) -> CheckpointError:
    """The error for a `--resume` file without mindghost metadata (weights only: MindCV, converted, .pth)."""
    return CheckpointError(f"'{path}' is not a mindghost training checkpoint (no '{META_KEY}' entry); "
                           "to start from its weights use --ckpt_path instead of --resume")


def _is_slot(name: str, weights) -> bool:
    """Optimizer, accumulation, EMA and loss-scale state (what a change of settings adds or drops), not a model
    weight: a scalar (`micro_step`, `beta1_power`: no dot) or a per-weight copy `<slot>.<weight name>`
    (`accum.`, `moments.`, `adam_m.`, `ema.`)."""
    return name not in weights and ("." not in name or name.split(".", 1)[1] in weights)


def _array(value):
    import numpy as np

    return np.asarray(value.asnumpy() if hasattr(value, "asnumpy") else value)


def _slot_summary(names: List[str]) -> str:
    """`accum.* (42), micro_step`: the names grouped by their first component."""
    groups: Dict[str, int] = {}
    for n in names:
        key = n.split(".", 1)[0] + ".*" if "." in n else n
        groups[key] = groups.get(key, 0) + 1
    return ", ".join(f"{k} ({v})" if k.endswith(".*") else k for k, v in groups.items())


def load_training_state(train_step, path: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Load every parameter of `train_step` from a training checkpoint. Returns (meta, state).

    The model's weights must match exactly (CheckpointError otherwise). State that other settings add or drop
    (accumulators `accum.*` and `micro_step` of accum_steps > 1, another optimizer's slots, `ema.*`) is remapped
    and logged by name: slots the checkpoint lacks start fresh (a new EMA at the resumed weights), slots this run
    does not have are dropped. plan.check_resume allows such changes only where the position stays meaningful."""
    import mindspore as ms

    from .distill import is_distill_param

    state = read_checkpoint(path)
    meta_raw = state.pop(META_KEY, None)
    if meta_raw is None:
        raise not_a_training_checkpoint(path)
    # the lr table is derived from the config (a resumed run may change epochs), so it is not restored
    names = {d["name"] for d in training_params(train_step)} - {"learning_rate"}
    if "skipped_steps" in names and "skipped_steps" not in state:  # saved before the counter existed
        names.discard("skipped_steps")
        _LOG.info(f"'{path}' predates the skipped-step counter: counting fp16-skipped steps from 0")
    weights = {p.name for p in train_step.network.get_parameters()} if hasattr(train_step, "network") else names
    missing = sorted(names - set(state))
    unexpected = sorted(k for k in set(state) - names if k not in ("epoch_num", "step_num", "learning_rate"))
    lost = [k for k in missing if not _is_slot(k, weights)]
    extra = [k for k in unexpected if not _is_slot(k, weights)]
    if lost or extra:
        raise CheckpointError(
            f"Cannot resume from '{path}': the run's model differs from the checkpoint's (missing "
            f"{lost[:6]}{'...' if len(lost) > 6 else ''}, unexpected {extra[:6]}{'...' if len(extra) > 6 else ''}). "
            "Resume with the checkpoint's model, num_classes and in_channels, or start a new run from its weights "
            "with --ckpt_path.")
    fresh = missing
    if fresh:  # a setting the checkpoint did not have (accum_steps > 1, another optimizer, ema): new slots
        _LOG.info(f"resume: state the checkpoint does not hold starts fresh: {_slot_summary(fresh)}")
        for k in fresh:
            if k.startswith("ema.") and k[4:] in state:  # a new EMA starts at the resumed weights
                state[k] = ms.Parameter(_array(state[k[4:]]).copy(), name=k, requires_grad=False)
        current = {p.name: p for p in train_step.get_parameters()}
        for k in fresh:
            if k not in state:  # its own fresh value, so that nothing counts as "not loaded"
                state[k] = ms.Parameter(current[k].asnumpy().copy(), name=k, requires_grad=False)
    if unexpected:
        partial = int(_array(state["micro_step"]).reshape(-1)[0]) if "micro_step" in state else 0
        _LOG.info(f"resume: checkpoint state this run's settings do not use is dropped: {_slot_summary(unexpected)}"
                  + (f" (a partial accumulation of {partial} micro-batches is lost)"
                     if partial and "micro_step" not in names else ""))
    not_loaded, _ = ms.load_param_into_net(train_step, {k: state[k] for k in names}, strict_load=True)
    not_loaded = [k for k in not_loaded if k != "learning_rate" and not is_distill_param(k)]  # teacher: from its ckpt
    if not_loaded:
        raise CheckpointError(f"Cannot resume from '{path}': not loaded: {not_loaded[:6]}")
    return decode_meta(meta_raw, path), state
