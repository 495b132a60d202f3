"""Back to PyTorch: a mindghost, MindCV or training checkpoint written as a `.safetensors` state dict in timm's
parameter names (GhostNet v1, V2, V3 in either form) or the authors' names (G-GhostNet, Ghost-ResNet), with the
`safetensors` package's numpy API (no torch).

The names are the inverse of the PyTorch -> mindghost mapping the converter applies on the way in
(`mindghost.weights.load.rename_torch_state_dict` and each family's `checkpoint_filter_fn`): BatchNorm
`gamma/beta/moving_mean/moving_variance` -> `weight/bias/running_mean/running_var` (+ `num_batches_tracked`), and
GhostNet's final 1x1 conv-BN `blocks.<last>.features.{0,1}` -> `blocks.<last>.0.{conv,bn1}`. Every file written is
checked by mapping it forward again with that same code: the result must be the model's own state, name for name
and bit for bit, so the two directions cannot drift apart.

    python -m mindghost.convert --to timm --ckpt_path runs/x/checkpoints/best.ckpt --out ghostnet_050.safetensors

In PyTorch: `timm.create_model("ghostnet_050", num_classes=10).load_state_dict(safetensors.torch.load_file(f))`
(docs/parity.md records the logits check).
"""
import json
import os
import sys
from typing import Any, Dict, Optional

import numpy as np

from ..errors import UsageError

_BN = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var"))
# families whose PyTorch names are timm's (the others: the authors' reference code)
TIMM_FAMILIES = ("mindghost.models.ghostnet", "mindghost.models.ghostnetv2", "mindghost.models.ghostnetv3")


def _forward_mapping(model):
    """The converter's PyTorch -> mindghost mapping for `model`'s family (`checkpoint_filter_fn`, else the generic
    BatchNorm renaming)."""
    from ..weights.load import rename_torch_state_dict

    module = sys.modules[type(model).__module__]
    return getattr(module, "checkpoint_filter_fn", None) or rename_torch_state_dict


def to_torch_names(model, state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """{mindghost name: array} of `model` -> {PyTorch name: array} (timm's, or the authors'). BatchNorm layers also
    get the `num_batches_tracked` counter PyTorch keeps (0: unknown here; PyTorch uses it only without momentum)."""
    bn_cells = {name for name, cell in model.cells_and_names() if type(cell).__name__.startswith("BatchNorm")}
    last = None
    if type(model).__module__ in TIMM_FAMILIES and hasattr(model, "blocks"):
        last = f"blocks.{len(model.blocks) - 1}"
    out: Dict[str, np.ndarray] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in bn_cells:
            leaf = dict(_BN).get(leaf, leaf)
            out.setdefault(f"{prefix}.num_batches_tracked", np.zeros((), np.int64))
        name = f"{prefix}.{leaf}"
        if last is not None:  # inverse of ghostnet.checkpoint_filter_fn's rename of the final conv-BN-ReLU
            name = name.replace(last + ".features.0.", last + ".0.conv.").replace(last + ".features.1.",
                                                                                 last + ".0.bn1.")
        out[name] = np.ascontiguousarray(value)
    # num_batches_tracked keys of renamed BN layers (the last stage) follow their layer
    if last is not None:
        out = {k.replace(last + ".features.1.", last + ".0.bn1."): v for k, v in out.items()}
    return out


def check_round_trip(model, torch_state: Dict[str, np.ndarray], state: Dict[str, np.ndarray]) -> None:
    """`torch_state` mapped forward by the converter's own code must give `state` exactly; RuntimeError naming the
    first differences otherwise (a mapping bug: nothing is written)."""
    back = _forward_mapping(model)(dict(torch_state), model)
    missing = sorted(set(state) - set(back))
    extra = sorted(set(back) - set(state))
    changed = sorted(k for k in set(state) & set(back) if not np.array_equal(np.asarray(back[k]), state[k]))
    if missing or extra or changed:
        raise RuntimeError(f"the PyTorch names do not map back to the model's own (missing {missing[:5]}, extra "
                           f"{extra[:5]}, changed {changed[:5]}); please report this with the model name")


def export_timm(ckpt_path: str, out: str, model_name: Optional[str] = None, ema: bool = False,
                overwrite: bool = False, num_classes: Optional[int] = None) -> Dict[str, Any]:
    """Write the weights of `ckpt_path` to `out` (.safetensors) in PyTorch names; returns the metadata written.

    A GhostNetV3 checkpoint keeps its form: train-form weights give timm's train-form names (`*_rpr_*` branches),
    fused ones timm's `convert_to_deploy()` names. `num_classes`: for a checkpoint that does not record it (else
    the model's default). UsageError for a bad --out or an existing file without `overwrite`; CheckpointError
    (from the strict loader) for weights that do not fit the model."""
    if not out.endswith(".safetensors"):
        raise UsageError(f"--out must end with .safetensors for --to timm, got '{out}'")
    if os.path.exists(out) and not overwrite:
        raise UsageError(f"'{out}' already exists; pass --overwrite true to replace it")
    from safetensors.numpy import save_file

    from ..inference import setup_from_checkpoint
    from ..models import create_model
    from ..weights import load_checkpoint

    _, setup = setup_from_checkpoint(ckpt_path, model_name, {"num_classes": num_classes})
    if setup.model_kwargs:  # e.g. cheap_op haar: a module timm's class cannot build, so no file timm could load
        raise UsageError(f"'{ckpt_path}' was trained with model_kwargs {dict(setup.model_kwargs)}, which timm's "
                         f"{setup.model} does not take: its names and shapes cannot hold these weights. Deploy it "
                         f"with python -m mindghost.tools.export --ckpt_path {ckpt_path} (MINDIR / ONNX) instead")
    model = create_model(setup.model, num_classes=setup.num_classes, in_channels=setup.in_channels)
    load_checkpoint(model, ckpt_path, ema=ema)
    state = {k: p.asnumpy() for k, p in model.parameters_dict().items()}
    torch_state = to_torch_names(model, state)
    check_round_trip(model, torch_state, state)
    names = "timm" if type(model).__module__ in TIMM_FAMILIES else "authors"
    meta = {"format": "pt", "mindghost_model": setup.model, "names": names, "num_classes": str(setup.num_classes),
            "in_channels": str(setup.in_channels), "ema": str(ema), "source": os.path.basename(ckpt_path),
            "reparameterized": str(bool(getattr(model, "reparameterized", False))),
            "preprocessing": json.dumps(setup.preprocessing_dict())}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    save_file(torch_state, tmp, metadata=meta)
    os.replace(tmp, out)
    return dict(meta, tensors=len(torch_state), file=out)
