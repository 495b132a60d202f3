"""PyTorch checkpoint reading without torch (`mindghost.weights.pth`) and the converter CLI.

CI has no torch, so the .pth files are written here by a small emulation of `torch.save` (pickle protocol 2 +
zipfile, or the legacy stream). It was checked once by hand against torch 2.13 both ways: torch.load reads
these files identically, and read_pth reads real torch.save output identically (see docs/convert.md);
`tests/fixtures/torch_made_{zip,legacy}.pth` are real torch.save files kept as a regression check.
"""
import argparse
import collections
import contextlib
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

from mindghost.models import CheckpointError, create_model, load_checkpoint
from mindghost.weights.pth import UnsafeCheckpointError, load_pth, read_pth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


# ------------------------------------------------------------------------------- torch.save emulation
class Global:
    """A global written as protocol-2 GLOBAL `module\\nname` without importing `module` (torch is not installed)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce wants a callable
        raise TypeError("only a pickling marker")


REBUILD_TENSOR_V2 = Global("torch._utils", "_rebuild_tensor_v2")
STORAGE_TYPES = {np.dtype(k): Global("torch", v) for k, v in {
    "float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage", "int64": "LongStorage",
    "int32": "IntStorage", "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage",
    "bool": "BoolStorage",
}.items()}
BF16 = Global("torch", "BFloat16Storage")


class Storage:
    """A flat torch storage; `bf16=True` stores float32 values truncated to bfloat16."""

    def __init__(self, data: np.ndarray, bf16: bool = False) -> None:
        self.data = np.ascontiguousarray(data).reshape(-1)
        self.bf16 = bf16

    def raw(self) -> bytes:
        if self.bf16:
            return (self.data.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        return self.data.astype(self.data.dtype.newbyteorder("<")).tobytes()


class Tensor:
    def __init__(self, storage: Storage, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def tensor(array, bf16: bool = False) -> Tensor:
    """A contiguous tensor with its own storage (what `state_dict()` usually holds)."""
    array = np.asarray(array)
    stride, acc = [], 1
    for n in reversed(array.shape):
        stride.insert(0, acc)
        acc *= n
    return Tensor(Storage(array, bf16), 0, array.shape, tuple(stride))


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table can be extended
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, legacy: bool) -> None:
        super().__init__(file, protocol=2)  # torch.save's default protocol
        self.legacy = legacy
        self.storages: Dict[int, Tuple[str, Storage]] = {}

    def _save_global(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    def _save_tensor(self, t: Tensor) -> None:
        args = (t.storage, t.offset, t.size, t.stride, False, collections.OrderedDict())
        self.save_reduce(REBUILD_TENSOR_V2, args, obj=t)

    dispatch[Global] = _save_global
    dispatch[Tensor] = _save_tensor

    def persistent_id(self, obj: Any):
        if not isinstance(obj, Storage):
            return None
        if id(obj) not in self.storages:  # zip keys count from 0; legacy keys are C pointers as strings
            n = len(self.storages)
            self.storages[id(obj)] = (str(94000000000000 + 64 * n) if self.legacy else str(n), obj)
        key = self.storages[id(obj)][0]
        pid = ("storage", BF16 if obj.bf16 else STORAGE_TYPES[obj.data.dtype], key, "cpu", obj.data.size)
        return pid + (None,) if self.legacy else pid  # legacy adds view_metadata


def write_torch_zip(path: str, obj: Any, archive: str = "archive") -> None:
    """What torch.save(obj, path) writes since torch 1.6: an uncompressed zip of data.pkl + data/<key>."""
    buf = io.BytesIO()
    pickler = _TorchPickler(buf, legacy=False)
    pickler.dump(obj)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", buf.getvalue())
        zf.writestr(f"{archive}/byteorder", "little")
        for key, storage in sorted(pickler.storages.values(), key=lambda ks: int(ks[0])):
            zf.writestr(f"{archive}/data/{key}", storage.raw())
        zf.writestr(f"{archive}/version", "3\n")


def write_torch_legacy(path, obj: Any) -> None:
    """What torch.save(obj, path, _use_new_zipfile_serialization=False) writes (and torch < 1.6 did)."""
    with (open(path, "wb") if isinstance(path, str) else contextlib.nullcontext(path)) as f:
        for header in (0x1950A86A20F9469CFC6C, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, f, protocol=2)
        pickler = _TorchPickler(f, legacy=True)
        pickler.dump(obj)
        storages = dict(pickler.storages.values())
        keys = sorted(storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            f.write(struct.pack("<q", storages[key].data.size))
            f.write(storages[key].raw())


class _PlainTorchPickler(_TorchPickler):
    """What plain `pickle.dump` of tensors writes: each storage is `torch.storage._load_from_bytes(<legacy
    torch.save of the storage>)` instead of a persistent id."""

    dispatch = dict(_TorchPickler.dispatch)

    def persistent_id(self, obj: Any):
        return None

    def _save_storage(self, storage: Storage) -> None:
        buf = io.BytesIO()
        write_torch_legacy(buf, storage)
        self.save_reduce(Global("torch.storage", "_load_from_bytes"), (buf.getvalue(),), obj=storage)

    dispatch[Storage] = _save_storage


def write_plain_pickle(path: str, obj: Any) -> None:
    with open(path, "wb") as f:
        _PlainTorchPickler(f, legacy=True).dump(obj)


WRITERS = {"zip": write_torch_zip, "legacy": write_torch_legacy, "pickle": write_plain_pickle}


def _sample() -> Tuple[Dict[str, Tensor], Dict[str, np.ndarray]]:
    """Tensors of several dtypes plus views sharing one storage; returns (to write, expected arrays)."""
    rng = np.random.default_rng(0)
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    shared = Storage(base)
    arrays = {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "half": rng.standard_normal(5).astype(np.float16),
        "long": np.array([1, -2, 3 << 40], dtype=np.int64),
        "mask": np.array([True, False, True]),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "double": np.array([0.1, 0.2], dtype=np.float64),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    tensors = {k: tensor(v) for k, v in arrays.items()}
    tensors["base"] = Tensor(shared, 0, (4, 6), (6, 1))
    tensors["transposed"] = Tensor(shared, 0, (6, 4), (1, 6))  # base.T: non-contiguous view
    tensors["window"] = Tensor(shared, 8, (2, 3), (6, 1))  # base[1:3, 2:5]: offset + strides
    bf = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)  # exactly representable in bfloat16
    tensors["bf16"] = tensor(bf, bf16=True)
    arrays.update(base=base, transposed=base.T, window=base[1:3, 2:5], bf16=bf)
    return tensors, arrays


def _assert_same(got: Dict[str, np.ndarray], expected: Dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    for k, v in expected.items():
        assert got[k].dtype == v.dtype, k
        assert got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)


# ------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_round_trip_dtypes_and_views(tmp_path, fmt):
    tensors, expected = _sample()
    path = str(tmp_path / "sd.pth")
    WRITERS[fmt](path, collections.OrderedDict(tensors))
    _assert_same(read_pth(path), expected)
    assert load_pth(path)[1] == ("pickle" if fmt == "pickle" else f"pytorch-{fmt}")


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_wrappers_and_module_prefix(tmp_path, fmt):
    tensors, expected = _sample()
    ema_expected = {k: np.full(v.shape, 2, v.dtype) for k, v in expected.items()}
    ema = {"module." + k: tensor(v) for k, v in ema_expected.items()}
    wrapped = {
        "epoch": 12, "arch": "ghostnet_100", "metric": 73.9, "args": argparse.Namespace(lr=0.4, epochs=600),
        "top1_history": np.array([70.1, 73.9]),  # a numpy array beside the wrapper: still a wrapper
        "state_dict": collections.OrderedDict(("module." + k, t) for k, t in tensors.items()),
        "state_dict_ema": ema,
    }
    path = str(tmp_path / "ckpt.pth.tar")
    WRITERS[fmt](path, wrapped)
    _assert_same(read_pth(path), expected)
    _assert_same(read_pth(path, ema=True), ema_expected)
    obj, _ = load_pth(path)
    assert obj["args"].lr == 0.4 and obj["epoch"] == 12
    np.testing.assert_array_equal(obj["top1_history"], [70.1, 73.9])
    WRITERS[fmt](path, {"model": {"state_dict": {"a": tensor(np.ones(2, np.float32))}}, "opt": [1, 2]})
    assert list(read_pth(path)) == ["a"]
    with pytest.raises(CheckpointError, match="state_dict_ema"):
        read_pth(path, ema=True)


def test_non_tensor_entries_dropped(tmp_path):
    path = str(tmp_path / "sd.pth")
    write_torch_zip(path, {"w": tensor(np.ones(3, np.float32)), "version": 2, "name": "x",
                           "total_ops": tensor(np.array([5.0]))})  # profiler keys stay: the family filter drops them
    assert sorted(read_pth(path)) == ["total_ops", "w"]


def test_real_torch_made_fixtures():
    """Real torch.save files (torch 2.13, zip and `_use_new_zipfile_serialization=False`) of this dict:
    base = torch.arange(24.).reshape(4, 6); {"half": torch.tensor([0.5, -1.0, 65504.0]).half(),
    "long": torch.tensor([1, -2, 3 << 40]), "mask": torch.tensor([True, False, True]),
    "transposed": base.t(), "window": base[1:3, 2:5]}"""
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    for fmt in ("zip", "legacy"):
        sd = read_pth(os.path.join(FIXTURES, f"torch_made_{fmt}.pth"))
        assert sorted(sd) == ["half", "long", "mask", "transposed", "window"]
        np.testing.assert_array_equal(sd["transposed"], base.T)
        np.testing.assert_array_equal(sd["window"], base[1:3, 2:5])
        assert sd["half"].dtype == np.float16
        np.testing.assert_array_equal(sd["half"], np.array([0.5, -1.0, 65504.0], dtype=np.float16))
        np.testing.assert_array_equal(sd["long"], np.array([1, -2, 3 << 40], dtype=np.int64))
        np.testing.assert_array_equal(sd["mask"], np.array([True, False, True]))


# ------------------------------------------------------------------------------- safety
class _Evil:
    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_payloads(marker: str) -> List[Tuple[str, Any]]:
    return [
        ("system", _Evil(os.system, f"touch {marker}")),
        ("exec", _Evil(exec, f"open({marker!r}, 'w').close()")),
        ("eval", _Evil(eval, f"open({marker!r}, 'w').close()")),
    ]


@pytest.mark.parametrize("fmt", ["zip", "legacy", "bare"])
@pytest.mark.parametrize("which", [0, 1, 2])
def test_malicious_pickle_is_refused_unexecuted(tmp_path, fmt, which):
    marker = str(tmp_path / "pwned")
    name, payload = _evil_payloads(marker)[which]
    path = str(tmp_path / "evil.pth")
    if fmt == "bare":
        with open(path, "wb") as f:  # protocol 4: STACK_GLOBAL also goes through find_class
            pickle.dump({"weight": [1.0, 2.0], "evil": payload}, f, protocol=4)
    else:
        WRITERS[fmt](path, {"weight": tensor(np.ones(2, np.float32)), "evil": payload})
    with pytest.raises(UnsafeCheckpointError, match=rf"global '[\w.]+\.{name}'") as info:
        read_pth(path)
    assert "Nothing was executed" in str(info.value)
    assert isinstance(info.value, CheckpointError)
    assert not os.path.exists(marker)


def test_unknown_class_and_storage_constructor_refused(tmp_path):
    path = str(tmp_path / "model.pth")
    with open(path, "wb") as f:  # torch.save(model): a pickled module class
        f.write(b"\x80\x02cmymodels.ghostnet\nGhostNet\nq\x00)\x81q\x01.")
    with pytest.raises(UnsafeCheckpointError, match="mymodels.ghostnet.GhostNet"):
        read_pth(path)
    with open(path, "wb") as f:  # calling a storage type must not reach torch either
        f.write(b"\x80\x02ctorch\nFloatStorage\nq\x00K\x03\x85q\x01Rq\x02.")
    with pytest.raises(UnsafeCheckpointError, match="FloatStorage"):
        read_pth(path)


def test_out_of_bounds_view_is_refused(tmp_path):
    path = str(tmp_path / "oob.pth")
    st = Storage(np.zeros(4, np.float32))
    write_torch_zip(path, {"w": Tensor(st, 2, (3, 3), (3, 1))})  # would read 11 elements of 4
    with pytest.raises(CheckpointError, match="past the end"):
        read_pth(path)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_truncated_file_is_a_clear_error(tmp_path, fmt):
    tensors, _ = _sample()
    path = str(tmp_path / "cut.pth")
    WRITERS[fmt](path, tensors)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        read_pth(path)


def test_not_a_checkpoint(tmp_path):
    path = str(tmp_path / "page.pth")
    with open(path, "wb") as f:
        f.write(b"<!DOCTYPE html><html>Google Drive - Virus scan warning</html>")
    with pytest.raises(CheckpointError, match="HTML page"):
        read_pth(path)


# ------------------------------------------------------------------------------- converter CLI
def _cli():
    from mindghost.convert.convert import main  # `python -m mindghost.convert` (scripts/convert_weights.py is gone)

    return main


def _to_torch_name(name: str, last_stage: int) -> str:
    """mindghost/MindCV parameter name → the PyTorch reference's (the inverse of the family filter)."""
    for ours, theirs in ((f"blocks.{last_stage}.features.0.", f"blocks.{last_stage}.0.conv."),
                         (f"blocks.{last_stage}.features.1.", f"blocks.{last_stage}.0.bn1.")):
        if name.startswith(ours):
            name = theirs + name[len(ours):]
    for ours, theirs in ((".gamma", ".weight"), (".beta", ".bias"), (".moving_mean", ".running_mean"),
                         (".moving_variance", ".running_var")):
        if name.endswith(ours):
            return name[: -len(ours)] + theirs
    return name


@pytest.fixture(scope="module")
def ghostnet_050_pth(tmp_path_factory):
    """A PyTorch-named ghostnet_050 checkpoint (timm-style wrapper, DataParallel prefix) and its arrays."""
    model = create_model("ghostnet_050")
    last = len(model.blocks) - 1
    rng = np.random.default_rng(1)
    ours, torch_sd = {}, collections.OrderedDict()
    for name, p in model.parameters_dict().items():
        value = rng.standard_normal(p.shape).astype(np.float32)
        if name.endswith("moving_variance"):
            value = np.abs(value) + 0.5
        ours[name] = value
        torch_name = _to_torch_name(name, last)
        torch_sd["module." + torch_name] = tensor(value)
        if name.endswith(".moving_variance"):
            torch_sd["module." + torch_name[: -len("running_var")] + "num_batches_tracked"] = tensor(np.array(9))
    assert any(k.endswith(f"blocks.{last}.0.conv.weight") for k in torch_sd)
    path = str(tmp_path_factory.mktemp("pth") / "ghostnet_050_torch.pth.tar")
    write_torch_legacy(path, {"epoch": 599, "state_dict": torch_sd})
    return path, ours


def test_convert_end_to_end(tmp_path, ghostnet_050_pth, capsys):
    src, expected = ghostnet_050_pth
    out = str(tmp_path / "ghostnet_050_converted.ckpt")
    assert _cli()(["--model", "ghostnet_050", "--src", src, "--out", out]) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and f"converted {len(expected)} tensors" in summary[0] and out in summary[0]
    assert os.listdir(tmp_path) == ["ghostnet_050_converted.ckpt"]  # no temporary file left behind

    model = create_model("ghostnet_050", checkpoint_path=out)
    got = {k: p.asnumpy() for k, p in model.parameters_dict().items()}
    _assert_same(got, expected)

    meta = load_checkpoint(create_model("ghostnet_050"), out)
    assert meta["architecture"] == "ghostnet_050" and meta["num_classes"] == 1000
    assert meta["source"]["file"] == os.path.basename(src) and meta["source"]["format"] == "pytorch"
    assert len(meta["source"]["sha256"]) == 64 and meta["tensors"] == len(expected)
    assert meta["eval"]["crop_pct"] == 0.875 and meta["eval"]["input_size"] == [3, 224, 224]

    # --overwrite overwrites; the already converted .ckpt (our names) converts again as a MindSpore source
    again = str(tmp_path / "again.ckpt")
    assert _cli()(["--model", "ghostnet_050", "--src", out, "--out", again]) == 0
    assert load_checkpoint(create_model("ghostnet_050"), again)["source"]["meta"]["architecture"] == "ghostnet_050"
    assert _cli()(["--model", "ghostnet_050", "--src", src, "--out", again, "--overwrite"]) == 0


def test_convert_wrong_model_exits_2(tmp_path, ghostnet_050_pth, capsys):
    src, _ = ghostnet_050_pth
    out = str(tmp_path / "wrong.ckpt")
    assert _cli()(["--model", "ghostnet_100", "--src", src, "--out", out]) == 2
    err = capsys.readouterr().err
    assert "does not match model 'ghostnet_100'" in err and "shape mismatch" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_convert_refuses_existing_out_and_bad_sources(tmp_path, ghostnet_050_pth, capsys):
    src, _ = ghostnet_050_pth
    out = tmp_path / "exists.ckpt"
    out.write_bytes(b"keep me")
    assert _cli()(["--model", "ghostnet_050", "--src", src, "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"

    missing = str(tmp_path / "nope.pth")
    assert _cli()(["--model", "ghostnet_050", "--src", missing, "--out", str(tmp_path / "a.ckpt")]) == 2
    assert "not found" in capsys.readouterr().err

    evil = str(tmp_path / "evil.pth")
    marker = str(tmp_path / "pwned")
    write_torch_zip(evil, {"w": _Evil(os.system, f"touch {marker}")})
    assert _cli()(["--model", "ghostnet_050", "--src", evil, "--out", str(tmp_path / "b.ckpt"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "system" in err and "refused" in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["evil.pth", "exists.ckpt"]
