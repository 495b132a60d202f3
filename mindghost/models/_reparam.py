"""Re-parameterisation: turn a model with training-time branches into its inference form.

GhostNetV3 (ghostnetv3.py) trains each re-parameterisable conv as a sum of conv+BN branches and folds them into one
conv for inference (paper: arXiv 2404.11202; timm's `convert_to_deploy()`). A model or cell takes part by having a
`reparameterize()` method and a `reparameterized` flag; this module knows no family, so any file can use it
without an import circle (_registry → _features → ghostnetv3 → _registry once was one).
"""
import time

from mindspore import nn

__all__ = ["forget_compiled_graphs", "reparameterize_model"]


def _pending(cell: nn.Cell) -> bool:
    """A cell that can be fused and is not yet."""
    return callable(getattr(cell, "reparameterize", None)) and getattr(cell, "reparameterized", None) is False


def forget_compiled_graphs(model: nn.Cell) -> None:
    """Make the next GRAPH-mode call of `model` compile its current structure.

    MindSpore keys a compiled GRAPH-mode network by (phase, the cell's creation time, id), not by its structure: a
    model called before `reparameterize()` would run its stale train-form graph. A new creation time on every cell
    makes the next call compile the fused network."""
    stamp = time.time_ns()
    for _, cell in model.cells_and_names():
        if hasattr(cell, "_create_time"):
            object.__setattr__(cell, "_create_time", stamp)


def reparameterize_model(model: nn.Cell) -> nn.Cell:
    """The inference form of any model, in place: fuses every re-parameterisable cell (GhostNetV3 today) and
    returns `model`; a no-op for models without branches (GhostNet v1/v2, G-GhostNet, Ghost-ResNet) and for
    models already fused. Entry points that only run inference (validate, export, benchmark, profile) call it."""
    if callable(getattr(model, "reparameterize", None)):
        if not getattr(model, "reparameterized", False):
            model.reparameterize()
        return model
    changed = False
    for _, cell in list(model.cells_and_names()):  # e.g. a wrapper holding a GhostNetV3
        if _pending(cell):  # a fused parent has already fused its children: they are no longer pending
            cell.reparameterize()
            changed = True
    if changed:
        forget_compiled_graphs(model)
    return model
