"""Back to PyTorch (issue #20 item 3): `python -m mindghost.convert --to timm` writes timm's parameter names and
shapes (checked against the state-dict manifests timm wrote into the parity fixtures, tests/fixtures/parity_*.npz:
GhostNet v1, V2 and V3 in both forms; docs/parity.md says how they were made), and the file converts back to the
identical mindghost checkpoint."""
import json
import os

import numpy as np
import pytest

import mindspore as ms

import mindghost
from mindghost.convert.convert import main as convert_main
from mindghost.deploy.timm import check_round_trip, to_torch_names

safetensors_numpy = pytest.importorskip("safetensors.numpy")

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
# fixture -> (mindghost model, fused form); timm's models have 1000 classes
MANIFESTS = {"ghostnet_050": ("ghostnet_050", False), "ghostnetv2_100": ("ghostnetv2_100", False),
             "ghostnetv3_050": ("ghostnetv3_050", False), "ghostnetv3_050_fused": ("ghostnetv3_050", True)}


def _timm_manifest(fixture: str):
    """{timm key: shape} of timm's state dict, as the parity fixture recorded it."""
    with np.load(os.path.join(FIXTURES, f"parity_{fixture}.npz"), allow_pickle=False) as f:
        return {k: list(shape) for k, shape in json.loads(str(f["torch_state"]))}


def _state(net):
    return {k: p.asnumpy() for k, p in net.parameters_dict().items()}


@pytest.mark.parametrize("fixture", sorted(MANIFESTS))
def test_names_and_shapes_are_timms(fixture):
    """Every key of timm's state dict with its shape, nothing more, nothing less."""
    name, fused = MANIFESTS[fixture]
    net = mindghost.create_model(name, num_classes=1000)
    if fused:
        net.reparameterize()
    ours = {k: list(np.shape(v)) for k, v in to_torch_names(net, _state(net)).items()}
    theirs = _timm_manifest(fixture)
    assert sorted(set(theirs) - set(ours)) == [] and sorted(set(ours) - set(theirs)) == []
    assert {k: v for k, v in ours.items() if theirs[k] != v} == {}


def test_round_trip_check_catches_a_wrong_name():
    net = mindghost.create_model("ghostnet_050", num_classes=3)
    state = _state(net)
    torch_state = to_torch_names(net, state)
    check_round_trip(net, torch_state, state)
    key = next(k for k in torch_state if k.endswith(".running_var"))
    torch_state[key.replace("running_var", "running_variance")] = torch_state.pop(key)
    with pytest.raises(RuntimeError, match="do not map back"):
        check_round_trip(net, torch_state, state)


@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnetv3_050", "g_ghost_regnetx_002"])
def test_mindghost_timm_mindghost_is_exact(tmp_path, name):
    net = mindghost.create_model(name, num_classes=4)
    src = str(tmp_path / "src.ckpt")
    ms.save_checkpoint(net, src)
    out = str(tmp_path / f"{name}.safetensors")
    assert convert_main(["--to", "timm", "--ckpt_path", src, "--model", name, "--num_classes", "4",
                         "--out", out]) == 0
    written = safetensors_numpy.load_file(out)
    assert not any(k.endswith((".gamma", ".beta", ".moving_mean", ".moving_variance")) for k in written)
    back = str(tmp_path / "back.ckpt")
    assert convert_main(["--model", name, "--num_classes", "4", "--src", out, "--out", back]) == 0
    a, b = ms.load_checkpoint(src), ms.load_checkpoint(back)
    b.pop("mindghost_meta", None)
    assert set(a) == set(b)
    assert all(np.array_equal(a[k].asnumpy(), b[k].asnumpy()) for k in a)


def test_timm_refuses_existing_output_and_wrong_suffix(tmp_path):
    from mindghost.errors import UsageError

    src = str(tmp_path / "src.ckpt")
    ms.save_checkpoint(mindghost.create_model("ghostnet_050", num_classes=3), src)
    with pytest.raises(UsageError, match=".safetensors"):
        convert_main(["--to", "timm", "--ckpt_path", src, "--model", "ghostnet_050", "--num_classes", "3",
                      "--out", str(tmp_path / "x.pth")])
    out = tmp_path / "x.safetensors"
    out.write_bytes(b"")
    with pytest.raises(UsageError, match="overwrite"):
        convert_main(["--to", "timm", "--ckpt_path", src, "--model", "ghostnet_050", "--num_classes", "3",
                      "--out", str(out)])
