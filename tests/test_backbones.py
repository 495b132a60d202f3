"""Backbones: `feature_info`, `forward_intermediates` and `create_model(..., features_only=True)` for every family.

Channels and reductions are checked against the maps the models actually return (registry-generated); the GRAPH
compile runs for one model per family; checkpoints load into a backbone strictly apart from the cut-off head;
a backbone exports to MINDIR and reloads with the same outputs."""
import numpy as np
import pytest

import mindspore as ms

import mindghost
from mindghost.errors import UsageError
from mindghost.models import CheckpointError, create_model, load_checkpoint, load_state_dict, model_family
from mindghost.models._features import FeatureListNet
from tests import parity_recipe

ALL_MODELS = mindghost.list_models()
SIZE = 64
ONE_PER_FAMILY = ["ghostnet_050", "ghostnetv2_100", "ghostnetv3_050", "g_ghost_regnetx_002", "ghost_resnet50_s4"]


def _x(size=SIZE, batch=1, seed=0):
    return ms.Tensor(np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32))


def _randomize_bn(model, seed=1):
    """Non-trivial BN statistics and affine terms, so that fusing or mis-loading a BN shows in the outputs."""
    rng = np.random.default_rng(seed)
    for name, p in model.parameters_and_names():
        if name.endswith(("moving_mean", "beta")):
            p.set_data(ms.Tensor(rng.uniform(-0.1, 0.1, p.shape).astype(np.float32)))
        elif name.endswith(("moving_variance", "gamma")):
            p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))


def test_one_per_family_covers_every_family():
    assert sorted({model_family(n) for n in ONE_PER_FAMILY}) == sorted({model_family(n) for n in ALL_MODELS})


def test_ghostnet_feature_info_is_timms():
    """timm's ghostnet feature_info at 1.0x (v1, v2, v3 alike): channels, reductions, stage cells."""
    for name in ("ghostnet_100", "ghostnetv2_100", "ghostnetv3_100"):
        info = create_model(name).feature_info
        assert [f["num_chs"] for f in info] == [16, 24, 40, 80, 160], name
        assert [f["reduction"] for f in info] == [2, 4, 8, 16, 32], name
        assert [f["module"] for f in info] == ["act1", "blocks.1", "blocks.3", "blocks.5", "blocks.7"], name


@pytest.mark.parametrize("name", ALL_MODELS)
def test_feature_maps_match_feature_info(name):
    """The backbone's maps have the channels and reductions `feature_info` claims, and it holds no head."""
    model = create_model(name, features_only=True)
    model.set_train(False)
    outs = model(_x())
    assert len(outs) == len(model.feature_info) == 5
    for info, out in zip(model.feature_info, outs):
        side = SIZE // info["reduction"]
        assert out.shape == (1, info["num_chs"], side, side), (info, out.shape)
    head = model.full_model.default_cfg["classifier"]
    assert not [n for n in model.parameters_dict() if n.startswith(head + ".")]
    assert any(n.startswith(head + ".") for n in model.dropped_param_names)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_forward_intermediates_equals_backbone_and_features(name):
    model = create_model(name)
    _randomize_bn(model)
    model.set_train(False)
    x = _x()
    final, maps = model.forward_intermediates(x)
    np.testing.assert_allclose(final.asnumpy(), model.forward_features(x).asnumpy(), rtol=1e-5, atol=1e-5)
    backbone = FeatureListNet(model, (1, 3))
    backbone.set_train(False)
    outs = backbone(x)
    assert [o.shape for o in outs] == [maps[1].shape, maps[3].shape]
    for a, b in zip(outs, (maps[1], maps[3])):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-6)
    last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert [m.shape for m in last_two] == [maps[3].shape, maps[4].shape]


@pytest.mark.slow
@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_backbone_graph_mode_matches_pynative(name):
    model = create_model(name, features_only=True, out_indices=(0, 2, 4))
    _randomize_bn(model.full_model)
    model.set_train(False)
    x = _x()
    eager = [o.asnumpy() for o in model(x)]
    ms.set_context(mode=ms.GRAPH_MODE)
    graph = model(x)
    assert len(graph) == 3
    for a, b in zip(graph, eager):
        np.testing.assert_allclose(a.asnumpy(), b, rtol=1e-4, atol=1e-5)


def test_backbone_runs_only_to_the_last_chosen_stage():
    full = create_model("ghostnet_050", features_only=True)
    short = create_model("ghostnet_050", features_only=True, out_indices=(1,))
    assert not [n for n in short.parameters_dict() if n.startswith("blocks.2.")]
    assert len(short.parameters_dict()) < len(full.parameters_dict())
    assert short.feature_info == [full.feature_info[1]]


def test_full_checkpoint_loads_into_backbone(tmp_path):
    source = create_model("ghostnet_050")
    _randomize_bn(source, seed=3)
    source.set_train(False)
    path = str(tmp_path / "full.ckpt")
    ms.save_checkpoint(source, path)
    x = _x()
    _, expected = source.forward_intermediates(x)

    loaded = create_model("ghostnet_050", features_only=True, checkpoint_path=path)  # through the whole model
    loaded.set_train(False)
    for a, b in zip(loaded(x), expected):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-6)

    later = create_model("ghostnet_050", features_only=True, out_indices=(2,))  # into the backbone itself
    load_checkpoint(later, path)
    later.set_train(False)
    np.testing.assert_allclose(later(x)[0].asnumpy(), expected[2].asnumpy(), rtol=1e-5, atol=1e-6)

    own = str(tmp_path / "backbone.ckpt")  # a backbone's own save has no head: it loads into a backbone
    ms.save_checkpoint(later, own)
    again = create_model("ghostnet_050", features_only=True, out_indices=(2,))
    load_checkpoint(again, own)
    again.set_train(False)
    np.testing.assert_allclose(again(x)[0].asnumpy(), expected[2].asnumpy(), rtol=1e-5, atol=1e-6)


def test_backbone_load_stays_strict_on_its_own_parameters(tmp_path):
    source = create_model("ghostnet_050")
    params = [{"name": n, "data": p} for n, p in source.parameters_dict().items() if not n.startswith("blocks.1.")]
    path = str(tmp_path / "partial.ckpt")
    ms.save_checkpoint(params, path)
    backbone = create_model("ghostnet_050", features_only=True)
    with pytest.raises(CheckpointError, match=r"missing .*blocks\.1\."):
        load_checkpoint(backbone, path)
    with pytest.raises(CheckpointError, match=r"missing .*blocks\.1\."):
        create_model("ghostnet_050", features_only=True, checkpoint_path=path)


def test_ghostnetv3_backbone_train_form_and_fused_agree():
    model = create_model("ghostnetv3_050", features_only=True)
    whole = model.full_model  # the V3 parity recipe: weights and BN statistics of a sane scale, far from (0, 1)
    load_state_dict(whole, parity_recipe.make_state(((k, p.shape) for k, p in whole.parameters_dict().items()), 3))
    model.set_train(False)
    x = _x()
    train_form = [o.asnumpy() for o in model(x)]
    assert not model.reparameterized
    assert model.reparameterize() is model and model.reparameterized
    assert not [n for n in model.parameters_dict() if "_rpr_" in n]
    for a, b in zip(model(x), train_form):  # fusing changes only float rounding: 1e-5 of the map's scale
        np.testing.assert_allclose(a.asnumpy(), b, rtol=0, atol=1e-5 * np.abs(b).max())


def test_ghostnetv3_fused_backbone_builds_directly():
    model = create_model("ghostnetv3_050", features_only=True, out_indices=(4,), reparameterized=True)
    assert model.reparameterized
    assert model(_x())[0].shape == (1, 80, 2, 2)


@pytest.mark.slow
def test_backbone_exports_to_mindir(tmp_path):
    model = create_model("ghostnet_050", features_only=True, out_indices=(1, 2, 4))
    _randomize_bn(model.full_model, seed=7)
    model.set_train(False)
    x = _x()
    expected = [o.asnumpy() for o in model(x)]
    ms.set_context(mode=ms.GRAPH_MODE)
    stem = str(tmp_path / "backbone")
    ms.export(model, x, file_name=stem, file_format="MINDIR")
    graph = ms.nn.GraphCell(ms.load(stem + ".mindir"))
    outs = graph(x)
    assert len(outs) == 3
    for a, b in zip(outs, expected):
        np.testing.assert_allclose(a.asnumpy(), b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [(5,), (0, 0), (), ("1",), 6, 0])
def test_bad_out_indices_name_the_range(bad):
    with pytest.raises(UsageError, match=r"out_indices"):
        create_model("ghostnet_050", features_only=True, out_indices=bad)


def test_out_indices_without_features_only_is_an_error():
    with pytest.raises(UsageError, match="features_only=True"):
        create_model("ghostnet_050", out_indices=(1, 2))


def test_negative_and_int_out_indices():
    assert create_model("ghostnet_050", features_only=True, out_indices=(-1,)).out_indices == (4,)
    assert create_model("ghostnet_050", features_only=True, out_indices=3).out_indices == (2, 3, 4)
