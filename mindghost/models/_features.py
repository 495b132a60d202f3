"""Backbone use of every family: `feature_info`, `forward_intermediates` and the features-only network.

One mechanism for all families. A model describes its trunk (the cells that `forward_features` runs one after
another, by their attribute paths) and which trunk cells end a feature stage (`feature_info[i]["module"]`).
Everything else is generic:

- `FeatureMixin.forward_intermediates(x, indices)` runs the trunk and returns (final features, chosen maps);
- `FeatureListNet(model, out_indices)` keeps only the trunk up to the last chosen stage (no later blocks, no
  head parameters) and returns a tuple of the chosen maps. Its `construct` is a fixed chain of cells, so GRAPH
  mode, `ms.export` (MINDIR) and `nn.GraphCell` all work on it.

Index conventions are timm's (which MindCV's `features_only` also follows): index 0 is the stem at reduction 2,
then one index per reduction 4, 8, 16, 32 (for GhostNet v1/v2/v3 the end of the last block at each stride:
`blocks.1`, `blocks.3`, `blocks.5`, `blocks.7`; for G-GhostNet and Ghost-ResNet `layer1` ... `layer4`).
timm names the GhostNet stem `conv_stem`; the map it returns (in `forward_intermediates`) is taken after BN
and ReLU, which is what `act1` here names.
"""
from typing import Dict, List, Sequence, Tuple, Union

from mindspore import Tensor, nn

from ..errors import UsageError
from ._reparam import forget_compiled_graphs

__all__ = ["FeatureListNet", "FeatureMixin", "feature_dict", "resolve_indices"]


def feature_dict(num_chs: int, reduction: int, module: str) -> Dict[str, object]:
    """One `feature_info` entry, timm's keys: channels, stride relative to the input, trunk cell it is taken at."""
    return {"num_chs": int(num_chs), "reduction": int(reduction), "module": module}


def resolve_indices(indices: Union[None, int, Sequence[int]], count: int, what: str = "out_indices") -> Tuple[int, ...]:
    """Feature indices as a sorted tuple in [0, count): None → all; an int n → the last n (timm's rule);
    a sequence → those (negative counts from the end). Raises UsageError naming the valid range."""
    if indices is None:
        return tuple(range(count))
    if isinstance(indices, bool):
        raise UsageError(f"{what} must be a tuple of ints in 0..{count - 1}, got {indices!r}")
    if isinstance(indices, int):
        if not 1 <= indices <= count:
            raise UsageError(f"{what}={indices}: an int asks for the last n feature maps, n in 1..{count}")
        return tuple(range(count - indices, count))
    chosen = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not -count <= i < count:
            raise UsageError(f"{what}={tuple(indices)!r}: each index must be an int in 0..{count - 1} (or "
                             f"-{count}..-1); this model has {count} feature maps")
        chosen.append(i % count)
    if not chosen or len(set(chosen)) != len(chosen):
        raise UsageError(f"{what}={tuple(indices)!r} must name at least one feature map and none twice")
    return tuple(sorted(chosen))


def _get_cell(model: nn.Cell, path: str) -> nn.Cell:
    cell = model
    for part in path.split("."):
        cell = cell[int(part)] if part.isdigit() else getattr(cell, part)
    return cell


class FeatureMixin:
    """For a model cell with `feature_info` (list of `feature_dict`) and `trunk_names` (the attribute paths of the
    cells `forward_features` runs in order; each feature's `module` is one of them)."""

    feature_info: List[Dict[str, object]]
    trunk_names: Tuple[str, ...]

    def trunk_cells(self) -> List[Tuple[str, nn.Cell]]:
        return [(name, _get_cell(self, name)) for name in self.trunk_names]

    def forward_intermediates(self, x: Tensor, indices: Union[None, int, Sequence[int]] = None,
                              intermediates_only: bool = False):
        """(final, [maps]) as timm: `final` is `forward_features(x)` (N, num_features, H/32, W/32) and `maps` the
        feature maps at `indices` (None: all, an int n: the last n; see `feature_info` for channels and
        reductions), each (N, num_chs, H/reduction, W/reduction). `intermediates_only=True` returns the list only
        and stops after the last chosen stage. Runs the cells one by one (PyNative); for a compiled backbone use
        `create_model(name, features_only=True)`."""
        take = resolve_indices(indices, len(self.feature_info), "indices")
        at = {self.feature_info[i]["module"]: i for i in take}
        last = max(self.trunk_names.index(self.feature_info[i]["module"]) for i in take)
        maps = []
        for position, (name, cell) in enumerate(self.trunk_cells()):
            if intermediates_only and position > last:
                break
            x = cell(x)
            if name in at:
                maps.append(x)
        return maps if intermediates_only else (x, maps)


class _Chain(nn.Cell):
    """Cells run in order. No name prefix of its own, so the cells keep their full-model parameter names."""

    def __init__(self, cells: Sequence[nn.Cell]) -> None:
        super().__init__(auto_prefix=False)
        self.chain = nn.CellList(list(cells), auto_prefix=False)

    def construct(self, x: Tensor) -> Tensor:
        for cell in self.chain:
            x = cell(x)
        return x


class FeatureListNet(nn.Cell):
    """The trunk of `model` up to its last chosen feature stage; `construct(x)` returns a tuple of feature maps.

    Parameter names are the full model's (`blocks.1.0.ghost1...`), so the full model's checkpoints and its own
    saved weights load into it; `dropped_param_names` lists the full model's parameters it does not hold (later
    blocks, the head), which `weights.load_state_dict` ignores. `feature_info` lists the chosen stages only.
    GhostNetV3 backbones keep `reparameterize()`.
    """

    def __init__(self, model: nn.Cell, out_indices: Union[None, int, Sequence[int]] = None) -> None:
        super().__init__(auto_prefix=False)
        if not isinstance(model, FeatureMixin):
            raise UsageError(f"{type(model).__name__} has no feature_info/trunk_names: it cannot be a backbone")
        self.out_indices = resolve_indices(out_indices, len(model.feature_info))
        self.feature_info = [dict(model.feature_info[i]) for i in self.out_indices]
        trunk = model.trunk_cells()
        names = [name for name, _ in trunk]
        ends = [names.index(model.feature_info[i]["module"]) for i in self.out_indices]
        stages, start = [], 0
        for end in ends:  # one chain per chosen map: the cells after the previous map up to and including this one
            stages.append(_Chain([cell for _, cell in trunk[start:end + 1]]))
            start = end + 1
        self.stages = nn.CellList(stages, auto_prefix=False)
        # Held outside the cell tree (not a child): the head and later blocks are not parameters of this network,
        # but GhostNetV3's reparameterize() and the PyTorch name mapping work on the whole model.
        object.__setattr__(self, "full_model", model)
        kept = set(self.parameters_dict())
        self.dropped_param_names = tuple(sorted(n for n in model.parameters_dict() if n not in kept))
        self.default_cfg = dict(getattr(model, "default_cfg", {}), features_only=True, out_indices=self.out_indices)

    @property
    def reparameterized(self) -> bool:
        return bool(getattr(self.full_model, "reparameterized", True))

    def reparameterize(self) -> "FeatureListNet":
        """Fuse a GhostNetV3 trunk in place (see ghostnetv3.py); a no-op for the other families. Returns self."""
        if callable(getattr(self.full_model, "reparameterize", None)) and not self.reparameterized:
            self.full_model.reparameterize()
            forget_compiled_graphs(self)
        return self

    def construct(self, x: Tensor) -> Tuple[Tensor, ...]:
        outs = ()
        for stage in self.stages:
            x = stage(x)
            outs = outs + (x,)
        return outs
