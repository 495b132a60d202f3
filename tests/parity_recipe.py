"""Deterministic, numpy-only weights and inputs for the cross-framework parity tests.

Shared by scripts/make_parity_fixtures.py (PyTorch + timm side, run by hand) and tests/test_parity.py
(MindSpore side, no torch): both call `make_state(keys_and_shapes, seed)` and get identical arrays, because
each tensor comes from its own `RandomState(seed ^ crc32(name))` stream (legacy RandomState streams are
fixed across numpy versions). Names may be PyTorch's (`weight`/`bias`/`running_*`) or MindSpore's
(`gamma`/`beta`/`moving_*`); the kind of tensor decides its distribution:

- conv / linear weights (≥ 2-D): normal · sqrt(GAIN / fan_in) (activations stay O(1) through all blocks);
- BN scale: uniform(0.5, 1.5), halved inside GhostNetV3's re-parameterisation branches (names with `_rpr_`):
  3–5 branches are summed per site, and at full scale the train-form logits reach 1e10 (halved: std 0.7);
- BN shift and every bias: normal · 0.1;
- BN running mean: normal · 0.1; BN running variance: uniform(0.5, 1.5);
- `num_batches_tracked`: 0 (int64).

Bump RECIPE_VERSION whenever any of this changes, and regenerate the fixtures. (The `_rpr_` rule came with the
V3 fixtures and changes no tensor of the earlier ones, so the version stayed 1.)
"""
import zlib
from typing import Dict, Iterable, Sequence, Tuple

import numpy as np

RECIPE_VERSION = 1
GAIN = 1.0  # 2.0 (He) makes the linear residual sums grow ~3x per stage: logits 1e5; 1.0 keeps them O(1)


def _rng(seed: int, name: str) -> np.random.RandomState:
    return np.random.RandomState((seed ^ zlib.crc32(name.encode("utf-8"))) & 0xFFFFFFFF)


def make_tensor(name: str, shape: Sequence[int], seed: int) -> np.ndarray:
    """The recipe's value for one named tensor."""
    shape = tuple(int(s) for s in shape)
    if name.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    rng = _rng(seed, name)
    if name.endswith((".running_var", ".moving_variance")):
        value = rng.uniform(0.5, 1.5, shape)
    elif name.endswith((".running_mean", ".moving_mean")):
        value = rng.standard_normal(shape) * 0.1
    elif len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        value = rng.standard_normal(shape) * np.sqrt(GAIN / fan_in)
    elif name.endswith((".weight", ".gamma")):  # every 1-D weight in the Ghost family is a BN scale
        value = rng.uniform(0.5, 1.5, shape) * (0.5 if "_rpr_" in name else 1.0)
    else:  # BN shift, conv and linear biases
        value = rng.standard_normal(shape) * 0.1
    return value.astype(np.float32)


def make_state(keys_and_shapes: Iterable[Tuple[str, Sequence[int]]], seed: int) -> Dict[str, np.ndarray]:
    return {name: make_tensor(name, shape, seed) for name, shape in keys_and_shapes}


def make_input(shape: Sequence[int], seed: int) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal(tuple(int(s) for s in shape)).astype(np.float32)
