"""Numerical parity with PyTorch (timm) and with MindCV, in GRAPH mode, without torch installed.

The timm fixtures (tests/fixtures/parity_<model>.npz, written by scripts/make_parity_fixtures.py) hold the
logits timm computed for weights made by tests/parity_recipe.py under timm's PyTorch parameter names. Here the
same PyTorch-named weights are rebuilt, renamed by the production `checkpoint_filter_fn`, loaded strictly and
run: a wrong name mapping, layer or padding shows up as a logit mismatch.
"""
import json
import os
from typing import Dict

import numpy as np
import parity_recipe
import pytest

import mindspore as ms
from mindspore import Tensor, nn

from mindghost.cpu import accelerate
from mindghost.models import create_model, ghostnet, ghostnetv2, layers, load_state_dict

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
FILTER_FNS = {"ghostnet_050": ghostnet.checkpoint_filter_fn, "ghostnetv2_100": ghostnetv2.checkpoint_filter_fn}
ATOL = 1e-5


def _fixture(name: str) -> Dict[str, object]:
    with np.load(os.path.join(FIXTURES, f"parity_{name}.npz"), allow_pickle=False) as f:
        fx = {k: f[k] for k in f.files}
    assert int(fx["recipe_version"]) == parity_recipe.RECIPE_VERSION, \
        "fixture made with another recipe version: rerun scripts/make_parity_fixtures.py"
    return fx


def _torch_state(fx: Dict[str, object]) -> Dict[str, np.ndarray]:
    """The PyTorch-named weights the fixture's logits were computed with."""
    return parity_recipe.make_state(json.loads(str(fx["torch_state"])), int(fx["seed"]))


def _eval_graph(model: nn.Cell, x: np.ndarray) -> np.ndarray:
    ms.set_context(mode=ms.GRAPH_MODE)
    model.set_train(False)
    return model(Tensor(x)).asnumpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FILTER_FNS))
def test_matches_timm(name: str) -> None:
    fx = _fixture(name)
    expected = fx["logits"]
    model = create_model(name, num_classes=expected.shape[1])
    load_state_dict(model, FILTER_FNS[name](_torch_state(fx), model), source=f"parity recipe ({name})")
    logits = _eval_graph(model, parity_recipe.make_input(fx["input_shape"], int(fx["input_seed"])))
    assert logits.shape == expected.shape
    assert 0.5 < expected.std() < 50, "fixture logits are degenerate: the comparison would prove nothing"
    err = float(np.abs(logits - expected).max())
    print(f"{name}: max abs error vs timm {err:.2e} (logits std {expected.std():.2f})")
    assert err <= ATOL, f"{name}: max abs error vs timm {err:.3g} > {ATOL}"


def test_ghostnetv2_filter_fn_reads_official_layouts() -> None:
    """Official ck_ghostnetv2_*.pth.tar files carry thop's `total_ops`/`total_params` at every module (and at the
    top level); training checkpoints wrap the weights in `state_dict` and DataParallel adds `module.`."""
    state = _torch_state(_fixture("ghostnetv2_100"))
    model = create_model("ghostnetv2_100")
    expected = set(model.parameters_dict())
    official = dict(state)
    for prefix in ("", "blocks.2.0.", "blocks.2.0.ghost1.", "blocks.2.0.ghost1.gate_fn."):
        official[prefix + "total_ops"] = np.zeros((1,), np.float64)
        official[prefix + "total_params"] = np.zeros((1,), np.float64)
    wrapped = {"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 450}
    for layout in (official, wrapped):
        assert set(ghostnetv2.checkpoint_filter_fn(layout, model)) == expected


@pytest.mark.slow
@pytest.mark.parametrize("size", [(7, 7), (14, 14), (9, 11), (5, 6), (3, 3)])
def test_dfc_upsample_is_torch_nearest(size) -> None:
    """GhostModuleV2's gate upsample (`layers.gate_multiply`) must read index floor(i · in / out), PyTorch's
    `nearest` with `size=`."""

    class Upsample(nn.Cell):
        def construct(self, gate, ones):
            return layers.gate_multiply(ones, gate)

    h, w = size
    gate = np.random.RandomState(0).standard_normal((1, 2, h // 2, w // 2)).astype(np.float32)
    ms.set_context(mode=ms.GRAPH_MODE)
    out = Upsample()(Tensor(gate), Tensor(np.ones((1, 2, h, w), np.float32))).asnumpy()
    rows = np.floor(np.arange(h) * (h // 2) / h).astype(int)
    cols = np.floor(np.arange(w) * (w // 2) / w).astype(int)
    np.testing.assert_array_equal(out, gate[:, :, rows][:, :, :, cols])


@pytest.mark.slow
def test_matches_mindcv_ghostnet() -> None:
    """MindCV's ghostnet_050 and ours share parameter names; with the same weights they give the same logits."""
    from mindcv.models import create_model as mindcv_create_model

    theirs = mindcv_create_model("ghostnet_050", num_classes=10)
    seed = 11
    load_state_dict(theirs, parity_recipe.make_state(((k, p.shape) for k, p in theirs.parameters_dict().items()), seed),
                    source="parity recipe (MindCV ghostnet_050)")
    weights = {k: p.asnumpy() for k, p in theirs.parameters_dict().items()}
    x = parity_recipe.make_input((2, 3, 64, 64), seed)
    expected = _eval_graph(theirs, x)
    assert expected.std() > 0.1, "degenerate logits: the comparison would prove nothing"
    # As built (MindSpore's own ops: ReduceMean pooling, Conv2D depthwise, as MindCV uses): the same bits.
    same_ops = create_model("ghostnet_050", num_classes=10)
    load_state_dict(same_ops, weights, source="MindCV ghostnet_050")
    np.testing.assert_array_equal(_eval_graph(same_ops, x), expected)
    # With the CPU pass (AvgPool for the global pools, mindghost's depthwise kernel): rounding-level differences.
    ours = accelerate(create_model("ghostnet_050", num_classes=10))
    load_state_dict(ours, weights, source="MindCV ghostnet_050")
    logits = _eval_graph(ours, x)
    err = float(np.abs(logits - expected).max())
    print(f"ghostnet_050: max abs difference vs MindCV {err:.2e} (logits std {expected.std():.2f})")
    assert err <= 1e-6 * float(np.abs(expected).max()) + 1e-7, err
