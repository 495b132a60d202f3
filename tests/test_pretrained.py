"""create_model(pretrained=True) through mindghost.hub on a loopback HTTP server, and fine-tuning loads:
a new classifier on request (or automatically for pretrained weights with another class count), every other
mismatch still an error, the dropped keys logged; GhostNetV3 checkpoints of either form into either model.

Nothing leaves 127.0.0.1: the weights table is monkeypatched to point at a throw-away server serving weights
generated here for narrow models (`width=0.25`)."""
import collections
import logging
import os
import socket
from http.server import BaseHTTPRequestHandler

import numpy as np
import parity_recipe
import pytest
from _loopback import isolate, serve
from test_convert import _cli, _to_torch_name, tensor, write_torch_zip  # noqa: E402  (torch.save emulation)

import mindspore as ms

from mindghost import hub
from mindghost.hub import PretrainedError, WeightSource
from mindghost.models import CheckpointError, create_model, get_default_cfg, load_checkpoint, load_state_dict

TINY = {"width": 0.25}
FILES = {}  # served path -> bytes


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (http.server's naming)
        body = FILES.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    with serve(_Handler) as url:
        yield url


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    return tmp_path


def _random_state(model, seed):
    rng = np.random.default_rng(seed)
    state = {}
    for name, p in model.parameters_dict().items():
        value = rng.standard_normal(p.shape).astype(np.float32)
        state[name] = np.abs(value) + 0.5 if name.endswith("moving_variance") else value
    return state


def _params(model):
    return {k: p.asnumpy() for k, p in model.parameters_dict().items()}


def _serve_ckpt(tmp_path, server, monkeypatch, name="ghostnet_050", seed=1, num_classes=1000):
    """A tiny-width checkpoint of `name` served as its only published source; returns the arrays it holds."""
    source = create_model(name, num_classes=num_classes, **TINY)
    state = _random_state(source, seed)
    path = str(tmp_path / "served.ckpt")
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in state.items()], path)
    with open(path, "rb") as f:
        FILES[f"/{name}-tiny.ckpt"] = f.read()
    monkeypatch.setitem(hub.WEIGHTS, name, (WeightSource(f"{name}-tiny.ckpt", f"{server}/{name}-tiny.ckpt", "ckpt",
                                                         "mindcv"),))
    return state


# ------------------------------------------------------------------------------------------- published weights
def test_pretrained_loads_exactly_the_published_weights(tmp_path, server, monkeypatch):
    state = _serve_ckpt(tmp_path, server, monkeypatch)
    model = create_model("ghostnet_050", pretrained=True, **TINY)
    got = _params(model)
    assert sorted(got) == sorted(state)
    for k, v in state.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    assert os.path.isfile(os.path.join(hub.cache_dir(), "ghostnet_050-tiny.ckpt"))  # downloaded once, cached
    assert "mindcv ghostnet_050-tiny.ckpt" == model.default_cfg["weights"]


def test_pretrained_pth_is_converted_on_the_fly(tmp_path, server, monkeypatch):
    source = create_model("ghostnet_050", **TINY)
    state = _random_state(source, 2)
    last = len(source.blocks) - 1
    torch_sd = collections.OrderedDict((_to_torch_name(k, last), tensor(v)) for k, v in state.items())
    path = str(tmp_path / "tiny.pth")
    write_torch_zip(path, {"state_dict": torch_sd})
    with open(path, "rb") as f:
        FILES["/tiny.pth"] = f.read()
    monkeypatch.setitem(hub.WEIGHTS, "ghostnet_050", (WeightSource("ghostnet_050-tiny.pth", f"{server}/tiny.pth",
                                                                   "pth", "huawei-noah"),))
    got = _params(create_model("ghostnet_050", pretrained=True, **TINY))
    for k, v in state.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_pretrained_backbone(tmp_path, server, monkeypatch):
    state = _serve_ckpt(tmp_path, server, monkeypatch)
    backbone = create_model("ghostnet_050", pretrained=True, features_only=True, out_indices=(1,), **TINY)
    got = _params(backbone)
    assert got and not [k for k in got if k.startswith("classifier.")]
    for k, v in got.items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)


def test_pretrained_offline_error_names_file_url_and_folder(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ghostnet_050-gone.ckpt"
    monkeypatch.setitem(hub.WEIGHTS, "ghostnet_050", (WeightSource("ghostnet_050-gone.ckpt", url, "ckpt", "mindcv"),))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with pytest.raises(PretrainedError) as info:
        create_model("ghostnet_050", pretrained=True, pretrained_dir=str(mirror), **TINY)
    message = str(info.value)
    assert "ghostnet_050-gone.ckpt" in message and url in message and str(mirror) in message
    assert isinstance(info.value, CheckpointError)


def test_pretrained_from_the_mirror_folder_without_network(tmp_path, server, monkeypatch):
    state = _serve_ckpt(tmp_path, server, monkeypatch)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "ghostnet_050-tiny.ckpt").write_bytes(FILES["/ghostnet_050-tiny.ckpt"])
    dead = WeightSource("ghostnet_050-tiny.ckpt", "http://127.0.0.1:9/never", "ckpt", "mindcv")
    monkeypatch.setitem(hub.WEIGHTS, "ghostnet_050", (dead,))
    got = _params(create_model("ghostnet_050", pretrained=True, pretrained_dir=str(mirror), **TINY))
    np.testing.assert_array_equal(got["conv_stem.weight"], state["conv_stem.weight"])


def test_pretrained_without_published_weights_names_the_models_that_have_them():
    with pytest.raises(PretrainedError, match=r"'ghost_resnet50'.*Models with weights: .*ghostnet_100"):
        create_model("ghost_resnet50", pretrained=True)


def test_pretrained_and_checkpoint_path_together_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        create_model("ghostnet_050", pretrained=True, checkpoint_path=str(tmp_path / "x.ckpt"))


def test_weights_column_comes_from_the_hub_table():
    assert hub.describe("ghostnet_130") == "mindcv ghostnet_130-cf4c235c.ckpt"
    assert hub.describe("ghost_resnet50") == ""
    assert "weights" not in get_default_cfg("ghostnet_050").to_dict()  # no second copy in the default cfgs


# ------------------------------------------------------------------------------------------- fine-tuning loads
def _full_ckpt(tmp_path, name="ghostnet_050", seed=4, num_classes=1000, **kwargs):
    source = create_model(name, num_classes=num_classes, **TINY, **kwargs)
    state = _random_state(source, seed)
    path = str(tmp_path / f"{name}_{num_classes}.ckpt")
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in state.items()], path)
    return path, state


@pytest.mark.parametrize("name", ["ghostnet_050", "g_ghost_regnetx_002", "ghost_resnet50_s4"])
def test_new_classifier_drops_and_reinitialises_only_the_classifier(tmp_path, caplog, name):
    """Each family's default cfg names its classifier (`classifier`, G-Ghost's `fc`, Ghost-ResNet's GhostDense)."""
    kwargs = TINY if name == "ghostnet_050" else {}
    source = create_model(name, **kwargs)
    state = _random_state(source, 4)
    path = str(tmp_path / "full.ckpt")
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in state.items()], path)
    head = get_default_cfg(name).classifier
    head_keys = sorted(k for k in state if k.startswith(head + "."))
    assert head_keys, f"{name}: default cfg classifier '{head}' names no parameter"
    with caplog.at_level(logging.WARNING, logger="mindghost"):
        model = create_model(name, num_classes=3, checkpoint_path=path, new_classifier=True, **kwargs)
    got = _params(model)
    fresh = {k: p.shape for k, p in create_model(name, num_classes=3, **kwargs).parameters_dict().items()}
    assert {k: v.shape for k, v in got.items()} == fresh
    for k, v in got.items():
        if not k.startswith(head + "."):
            np.testing.assert_array_equal(v, state[k], err_msg=k)
    assert all(k in caplog.text for k in head_keys), caplog.text  # every dropped key is named
    assert "new_classifier=True" in caplog.text


def test_classifier_is_reinitialised_even_after_an_earlier_load(tmp_path):
    path, state = _full_ckpt(tmp_path, num_classes=3)
    model = create_model("ghostnet_050", num_classes=3, checkpoint_path=path, **TINY)
    np.testing.assert_array_equal(model.classifier.weight.asnumpy(), state["classifier.weight"])
    load_checkpoint(model, path, new_classifier=True)  # same shapes, but asked for a new classifier
    assert not np.array_equal(model.classifier.weight.asnumpy(), state["classifier.weight"])
    assert np.abs(model.classifier.weight.asnumpy()).std() < 0.05  # the model's init: N(0, 0.01)
    np.testing.assert_array_equal(model.conv_stem.weight.asnumpy(), state["conv_stem.weight"])


def test_other_class_count_without_opt_in_names_the_option(tmp_path):
    path, _ = _full_ckpt(tmp_path)
    with pytest.raises(CheckpointError, match=r"new_classifier=True .*train\.py --new_classifier True"):
        create_model("ghostnet_050", num_classes=3, checkpoint_path=path, **TINY)


def test_new_classifier_keeps_every_other_mismatch_an_error(tmp_path):
    path, _ = _full_ckpt(tmp_path)
    with pytest.raises(CheckpointError, match=r"shape mismatch"):  # another width: not only the classifier
        create_model("ghostnet_050", num_classes=3, checkpoint_path=path, new_classifier=True, width=0.5)
    params = [{"name": k, "data": ms.Tensor(v)} for k, v in _full_ckpt(tmp_path)[1].items() if k != "bn1.gamma"]
    partial = str(tmp_path / "partial.ckpt")
    ms.save_checkpoint(params, partial)
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): bn1\.gamma"):
        create_model("ghostnet_050", num_classes=3, checkpoint_path=partial, new_classifier=True, **TINY)


def test_new_classifier_needs_weights():
    with pytest.raises(ValueError, match="checkpoint_path= or pretrained=True"):
        create_model("ghostnet_050", new_classifier=True)


def test_pretrained_with_other_classes_replaces_the_classifier_automatically(tmp_path, server, monkeypatch, caplog):
    state = _serve_ckpt(tmp_path, server, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="mindghost"):
        model = create_model("ghostnet_050", pretrained=True, num_classes=5, **TINY)
    got = _params(model)
    assert got["classifier.weight"].shape == (5, 1280)
    np.testing.assert_array_equal(got["blocks.3.0.ghost1.primary_conv.0.weight"],
                                  state["blocks.3.0.ghost1.primary_conv.0.weight"])
    assert "published weights have 1000 classes, num_classes=5" in caplog.text
    assert "classifier.weight (1000, 1280)" in caplog.text and "classifier.bias (1000,)" in caplog.text


def test_converter_new_classifier(tmp_path, caplog):
    source = create_model("ghostnet_050")  # the converter builds the registered variant as it is
    state = _random_state(source, 5)
    path = str(tmp_path / "ghostnet_050_1000.ckpt")
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in state.items()], path)
    out = str(tmp_path / "finetune_start.ckpt")
    with caplog.at_level(logging.WARNING, logger="mindghost"):
        assert _cli()(["--model", "ghostnet_050", "--src", path, "--out", out, "--num_classes", "7",
                       "--new_classifier"]) == 0
    assert "classifier.weight (1000, 1280)" in caplog.text
    # the converted file is an ordinary 7-class checkpoint: it loads strictly, without the opt-in
    model = create_model("ghostnet_050", num_classes=7)
    meta = load_checkpoint(model, out)
    np.testing.assert_array_equal(model.conv_stem.weight.asnumpy(), state["conv_stem.weight"])
    assert meta["new_classifier"] is True and meta["num_classes"] == 7
    assert _cli()(["--model", "ghostnet_050", "--src", path, "--out", str(tmp_path / "x.ckpt"),
                   "--num_classes", "7"]) == 2  # without the opt-in: the strict error


# ------------------------------------------------------------------------------------------- GhostNetV3 forms
def test_fused_v3_checkpoint_loads_into_create_model_without_flags(tmp_path, caplog):
    fused = create_model("ghostnetv3_050", num_classes=10, reparameterized=True)
    state = _random_state(fused, 6)
    path = str(tmp_path / "v3_fused.ckpt")
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(v)} for k, v in state.items()], path)
    with caplog.at_level(logging.WARNING, logger="mindghost"):
        model = create_model("ghostnetv3_050", num_classes=10, checkpoint_path=path)
    assert model.reparameterized and "reparameterized to match" in caplog.text
    got = _params(model)
    for k, v in state.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_train_form_v3_checkpoint_fuses_into_a_fused_model(tmp_path):
    train = create_model("ghostnetv3_050", num_classes=10)
    # the V3 parity recipe: sane scales (a default-init V3 gives 1e8 logits, where rounding decides)
    load_state_dict(train, parity_recipe.make_state(((k, p.shape) for k, p in train.parameters_dict().items()), 3))
    path = str(tmp_path / "v3_train.ckpt")
    ms.save_checkpoint(train, path)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32))
    train.set_train(False)
    expected = train(x).asnumpy()
    fused = create_model("ghostnetv3_050", num_classes=10, reparameterized=True, checkpoint_path=path)
    fused.set_train(False)
    np.testing.assert_allclose(fused(x).asnumpy(), expected, rtol=0, atol=1e-5 * np.abs(expected).max())
