"""GhostNetV3: both forms' sizes, fusion that keeps the eval function, parity with timm in both forms, and the
weight converter for timm's and the authors' names (train form, fused form, and the authors' half-fused files)."""
import collections
import re

import numpy as np
import parity_recipe
import pytest
from test_convert import _cli, tensor, write_torch_zip  # noqa: E402  (torch.save emulation, converter CLI)
from test_parity import ATOL, _eval_graph, _fixture, _torch_state

import mindspore as ms
from mindspore import Tensor

import mindghost
from mindghost.models import (
    CheckpointError,
    create_model,
    get_default_cfg,
    ghostnetv3,
    load_state_dict,
    reparameterize_model,
)
from mindghost.tools.profile import count_params

# Trainable parameters at 1000 classes: timm 1.0.31's ghostnetv3_* before and after convert_to_deploy().
EXPECTED_FUSED_PARAMS = {"ghostnetv3_050": 2_853_176, "ghostnetv3_100": 6_147_588, "ghostnetv3_130": 8_948_296,
                         "ghostnetv3_160": 12_377_778}
EXPECTED_TRAIN_PARAMS = {"ghostnetv3_050": 3_395_384, "ghostnetv3_100": 8_129_028, "ghostnetv3_130": 12_217_720,
                         "ghostnetv3_160": 17_275_700}


def _recipe_weights(model, seed: int = 3):
    """Recipe values under our names: BN statistics far from (0, 1), so a fusion that ignored them would show."""
    state = parity_recipe.make_state(((k, p.shape) for k, p in model.parameters_dict().items()), seed)
    load_state_dict(model, state, source="parity recipe")
    return state


def test_registered_with_both_param_counts():
    assert mindghost.list_models("ghostnetv3*") == sorted(EXPECTED_FUSED_PARAMS)
    for name in sorted(EXPECTED_FUSED_PARAMS):
        fused = create_model(name, reparameterized=True)
        assert fused.reparameterized
        assert count_params(fused)["trainable"] == EXPECTED_FUSED_PARAMS[name]
        assert not [k for k in fused.parameters_dict() if "_rpr_" in k]
    train = create_model("ghostnetv3_050")
    assert not train.reparameterized and count_params(train)["trainable"] == EXPECTED_TRAIN_PARAMS["ghostnetv3_050"]
    cfg = train.default_cfg
    assert cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 0.875 and cfg["paper_top1"] is None
    assert get_default_cfg("ghostnetv3_100").paper_top1 == 77.1
    assert get_default_cfg("ghostnetv3_130").paper_top1 == 79.1


def test_branches_per_site_follow_timm():
    """Block 1 (stride 2, no attention) and block 3 (stride 2, attention, SE): which convs carry which branches."""
    names = set(create_model("ghostnetv3_050").parameters_dict())
    for block in ("blocks.1.0", "blocks.3.0"):
        for i in range(3):
            for site in ("ghost1.primary", "ghost1.cheap", "ghost2.primary", "ghost2.cheap", "dw"):
                assert f"{block}.{site}_rpr_conv.{i}.conv.weight" in names
                assert f"{block}.{site}_rpr_conv.{i}.bn1.moving_variance" in names
        assert f"{block}.ghost1.cheap_rpr_scale.conv.weight" in names and f"{block}.dw_rpr_scale.bn1.gamma" in names
        assert f"{block}.ghost1.cheap_rpr_skip.gamma" in names
        assert not [n for n in names if n.startswith((f"{block}.ghost1.primary_rpr_s", f"{block}.dw_rpr_skip"))]
    assert "blocks.3.0.ghost1.short_conv.0.weight" in names and "blocks.1.0.ghost1.short_conv.0.weight" not in names
    assert "blocks.2.0.ghost1.short_conv.0.weight" in names  # DFC from the third block on, as v2
    assert not [n for n in names if n.startswith("blocks.2.0.dw_") or n.startswith("blocks.2.0.conv_dw")]


# graph: the fused network after a compiled call (MindSpore keys graphs by a private creation time; mindghost.compat)
@pytest.mark.parametrize("mode", [pytest.param(ms.GRAPH_MODE, id="graph", marks=pytest.mark.slow),
                                  pytest.param(ms.PYNATIVE_MODE, id="pynative")])
def test_reparameterize_keeps_eval_logits(mode):
    """Fuse in place after a compiled call: the next call must run the fused network and give the same logits."""
    ms.set_context(mode=mode)
    model = create_model("ghostnetv3_050", num_classes=10)
    _recipe_weights(model)
    model.set_train(False)
    x = Tensor(parity_recipe.make_input((2, 3, 40, 48), 5))
    before = model(x).asnumpy()
    assert before.std() > 0.1, "degenerate logits: the comparison would prove nothing"
    assert reparameterize_model(model) is model and model.reparameterized
    assert count_params(model)["trainable"] == EXPECTED_FUSED_PARAMS["ghostnetv3_050"] - 990 * 1280 - 990
    names = [p.name for p in model.get_parameters()]  # fused convs attached late carry their full names
    assert names == [n for n, _ in model.parameters_and_names()] and len(set(names)) == len(names)
    assert not [n for n in names if "_rpr_" in n] and "blocks.1.0.conv_dw.bias" in names
    after = model(x).asnumpy()
    rel = float(np.abs(after - before).max() / np.abs(before).max())
    print(f"ghostnetv3_050 fused vs train form: max rel diff {rel:.2e}")
    assert rel <= 1e-5, rel
    # its weights are a fused checkpoint: they load strictly into a model built fused
    fused = create_model("ghostnetv3_050", num_classes=10, reparameterized=True)
    load_state_dict(fused, {k: p.asnumpy() for k, p in model.parameters_dict().items()}, source="fused model")
    fused.set_train(False)
    np.testing.assert_array_equal(fused(x).asnumpy(), after)


def test_reparameterize_model_is_a_noop_without_branches():
    model = create_model("ghostnet_050", num_classes=3)
    before = {k: p.asnumpy().copy() for k, p in model.parameters_dict().items()}
    assert reparameterize_model(model) is model
    after = model.parameters_dict()
    assert list(after) == list(before) and all(np.array_equal(before[k], after[k].asnumpy()) for k in before)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["ghostnetv3_050", "ghostnetv3_050_fused"])
def test_matches_timm(fixture):
    """timm's logits for the recipe weights under timm's names, in the train form and in the fused form."""
    fx = _fixture(fixture)
    expected = fx["logits"]
    assert bool(fx["fused"]) == fixture.endswith("_fused")
    model = create_model("ghostnetv3_050", reparameterized=bool(fx["fused"]))
    load_state_dict(model, ghostnetv3.checkpoint_filter_fn(_torch_state(fx), model), source=f"parity ({fixture})")
    logits = _eval_graph(model, parity_recipe.make_input(fx["input_shape"], int(fx["input_seed"])))
    assert 0.5 < expected.std() < 50, "fixture logits are degenerate: the comparison would prove nothing"
    err = float(np.abs(logits - expected).max())
    print(f"{fixture}: max abs error vs timm {err:.2e} (logits std {expected.std():.2f})")
    assert err <= ATOL, f"{fixture}: max abs error vs timm {err:.3g} > {ATOL}"


def _authors_names(state):
    """timm's V3 names → the authors' (`ghostnetv3_pytorch/ghostnetv3.py`: branch BNs are `bn`, not `bn1`)."""
    return collections.OrderedDict((re.sub(r"(_rpr_(?:conv\.\d+|scale))\.bn1\.", r"\1.bn.", k), v)
                                   for k, v in state.items())


@pytest.mark.slow
def test_train_form_weights_fuse_on_load_in_every_naming():
    """The train-form fixture's weights (timm's names; the authors' names in a training-checkpoint wrapper; the
    authors' `reparameterize()` output, which fuses the Ghost modules but keeps each bottleneck's `dw_rpr_*`)
    load into a model built fused and reproduce timm's train-form logits."""
    fx = _fixture("ghostnetv3_050")
    timm_state = _torch_state(fx)
    authors = _authors_names(timm_state)
    assert authors != timm_state and any(".dw_rpr_conv.0.bn.running_var" in k for k in authors)
    wrapped = {"state_dict": {"module." + k: v for k, v in authors.items()}, "epoch": 599}
    for k in [k for k in authors if k.endswith("running_var")][:3]:
        authors[k[: -len("running_var")] + "total_ops"] = np.zeros((1,), np.float64)
    # the authors' half-fused file: Ghost modules as primary_conv.0 / cheap_operation.0 (same names in both
    # frameworks), bottleneck depthwise convs still as branches
    train = create_model("ghostnetv3_050")
    ours = ghostnetv3.checkpoint_filter_fn(timm_state, train)
    half = collections.OrderedDict((k, v) for k, v in authors.items() if not re.search(r"\.ghost\d\.\w+_rpr_", k))
    for name, cell in train.cells_and_names():
        if isinstance(cell, ghostnetv3.GhostModuleV3):
            for site, fused in cell.rep_sites.items():
                weight, bias, _ = ghostnetv3.fuse_branches(ours, f"{name}.{site}")
                half[f"{name}.{fused}.weight"], half[f"{name}.{fused}.bias"] = weight, bias
    x = parity_recipe.make_input(fx["input_shape"], int(fx["input_seed"]))
    for layout in (timm_state, wrapped, half):
        model = create_model("ghostnetv3_050", reparameterized=True)
        load_state_dict(model, ghostnetv3.checkpoint_filter_fn(layout, model), source="V3 weights")
        err = float(np.abs(_eval_graph(model, x) - fx["logits"]).max())
        assert err <= ATOL, err
    # the authors' names in the train form map to exactly our train-form parameters
    assert set(ghostnetv3.checkpoint_filter_fn(wrapped, train)) == set(train.parameters_dict())


def test_fused_weights_into_train_form_name_the_fix():
    fx = _fixture("ghostnetv3_050_fused")
    model = create_model("ghostnetv3_050")
    with pytest.raises(CheckpointError, match=r"fused .*reparameterized=True"):
        ghostnetv3.checkpoint_filter_fn(_torch_state(fx), model)


def test_converter_cli_reads_a_v3_pth(tmp_path, capsys):
    """A timm-named train-form .pth (written without torch) through `scripts/convert_weights.py`."""
    fx = _fixture("ghostnetv3_050")
    state = _torch_state(fx)
    src = str(tmp_path / "ghostnetv3_050_timm.pth")
    write_torch_zip(src, collections.OrderedDict((k, tensor(v)) for k, v in state.items()))
    out = str(tmp_path / "ghostnetv3_050.ckpt")
    assert _cli()(["--model", "ghostnetv3_050", "--src", src, "--out", out]) == 0
    assert "converted" in capsys.readouterr().out
    model = create_model("ghostnetv3_050", checkpoint_path=out)
    expected = ghostnetv3.checkpoint_filter_fn(state, model)
    got = model.parameters_dict()
    assert set(got) == set(expected) and all(np.array_equal(got[k].asnumpy(), expected[k]) for k in expected)
