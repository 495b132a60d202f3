"""Read PyTorch checkpoints (`torch.save` files) into numpy arrays without torch and without running pickled code.

A `.pth` file is a pickle, and unpickling calls whatever global the file names: `torch.load` of a hostile file
can run `os.system`. This reader unpickles with `find_class` restricted to an allowlist of the few globals a
state dict needs (tensor rebuilders, storage types, `collections.OrderedDict`, ...), each mapped to a stand-in
written here; anything else raises `UnsafeCheckpointError` naming the global, before it is called.

Both layouts `torch.save` has written are read:
- zip (torch >= 1.6): `<dir>/data.pkl` plus one raw little-endian record `<dir>/data/<key>` per storage;
- legacy (torch < 1.6, or `_use_new_zipfile_serialization=False`): pickles of the magic number, protocol
  version and sys info, the main pickle, the list of storage keys, then each storage as an int64 element
  count followed by its raw little-endian bytes.
"""
import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Dict, Mapping, Optional, Tuple

import numpy as np

from ..errors import CheckpointError, UnsafeCheckpointError

__all__ = ["UnsafeCheckpointError", "load_pth", "read_pth", "unwrap_state_dict"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION
# Wrapper keys tried in order when the file is not a plain state dict (timm / training-script checkpoints).
WRAPPER_KEYS = ("state_dict", "model")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema")


# ---------------------------------------------------------------------------------------------- stand-ins
class _StandIn:
    """Base of the stand-ins: a pickle may not BUILD (set attributes on) them, so a hostile file cannot change a
    shared storage type or a storage's size after it was checked."""

    __slots__ = ()

    def __setstate__(self, state) -> None:
        raise UnsafeCheckpointError(f"the checkpoint tries to set the state of a {type(self).__name__}; refused")


class _StorageType(_StandIn):
    """Stand-in for `torch.FloatStorage` & co.: only carries the element dtype. Immutable (shared by all loads)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)  # numpy dtype string, or "bfloat16"

    def __setattr__(self, key, value) -> None:
        raise UnsafeCheckpointError(f"the checkpoint tries to modify torch.{self.name}; refused")

    def __call__(self, *args, **kwargs):
        raise UnsafeCheckpointError(f"the checkpoint tries to construct torch.{self.name} directly; refused")

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?", "ComplexFloatStorage": "<c8", "ComplexDoubleStorage": "<c16", "UntypedStorage": "u1",
}


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise CheckpointError(f"invalid {what} in the checkpoint: {value!r}")
    return int(value)


class _Storage(_StandIn):
    """One storage of the file: its bytes are attached when read (at once for zip, after the pickle for legacy)."""

    __slots__ = ("stype", "key", "numel", "data")

    def __init__(self, stype: _StorageType, key: str, numel: int) -> None:
        self.stype = stype
        self.key = key
        self.numel = _count(numel, "storage size")
        self.data: Optional[np.ndarray] = None  # 1-D, `numel` elements

    def attach(self, raw: bytes, big_endian: bool = False) -> None:
        nbytes = self.numel * self.stype.itemsize
        if len(raw) < nbytes:
            raise CheckpointError(f"storage '{self.key}' holds {len(raw)} bytes, expected {nbytes}: "
                                  "the file is truncated")
        if self.stype.dtype == "bfloat16":  # bf16 is the top half of a float32
            u16 = np.frombuffer(raw, dtype=">u2" if big_endian else "<u2", count=self.numel)
            self.data = (u16.astype(np.uint32) << 16).view(np.float32)
        else:
            dt = np.dtype(self.stype.dtype)
            if big_endian:
                dt = dt.newbyteorder(">")
            self.data = np.frombuffer(raw, dtype=dt, count=self.numel).astype(dt.newbyteorder("="))

    def array(self) -> np.ndarray:
        if self.data is None:
            raise CheckpointError(f"storage '{self.key}' is referenced but its data is missing from the file")
        return self.data


class _StorageView(_Storage):
    """A legacy storage view (`view_metadata`): elements [offset, offset + numel) of a root storage."""

    __slots__ = ("root", "offset")

    def __init__(self, root: _Storage, offset: int, numel: int) -> None:
        super().__init__(root.stype, root.key, numel)
        self.root, self.offset = root, _count(offset, "storage view offset")

    def array(self) -> np.ndarray:
        data = self.root.array()
        if self.offset + self.numel > data.size:
            raise CheckpointError(f"storage view of '{self.key}' lies outside its storage")
        return data[self.offset:self.offset + self.numel]


class _TensorRef(_StandIn):
    """A tensor whose storage bytes may not be read yet; `_materialize` turns it into an ndarray."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _Storage, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...]) -> None:
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
        if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)) or len(size) != len(stride):
            raise CheckpointError(f"tensor with invalid size {size!r} / stride {stride!r}")
        self.storage = storage
        self.offset = _count(offset, "tensor offset")
        self.size = tuple(_count(n, "tensor size") for n in size)
        self.stride = tuple(_count(n, "tensor stride") for n in stride)

    def to_numpy(self) -> np.ndarray:
        data = self.storage.array()
        if 0 in self.size:
            return np.zeros(self.size, dtype=data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= data.size:  # bounds check before as_strided, which would otherwise read foreign memory
            raise CheckpointError(f"tensor (size {self.size}, stride {self.stride}, offset {self.offset}) reaches "
                                  f"past the end of its storage of {data.size} elements")
        base = data[self.offset:]
        view = np.lib.stride_tricks.as_strided(base, shape=self.size, strides=[s * base.itemsize for s in self.stride],
                                               writeable=False)
        return np.array(view, copy=True, order="C")


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> _TensorRef:
    """torch._utils._rebuild_tensor(_v2)(storage, offset, size, stride[, requires_grad, hooks[, metadata]])."""
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None) -> Any:
    return data  # a Parameter is its tensor for our purposes


def _codecs_encode(obj, encoding="latin1", errors="strict") -> bytes:
    """Protocol-2 pickles write `bytes` as `_codecs.encode(text, 'latin1')`."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise UnsafeCheckpointError("_codecs.encode called with unexpected arguments; refused")
    return obj.encode(encoding, errors)


class _Namespace:
    """Stand-in for `argparse.Namespace` (the `args` entry of timm/ImageNet-script training checkpoints)."""

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def _torch_size(dims=()) -> Tuple[int, ...]:
    return tuple(int(d) for d in dims)


class _Marker(_StandIn):
    """A global that may only appear as an argument (not be called): numpy.ndarray for `_reconstruct`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_NDARRAY = _Marker("numpy.ndarray")


def _numpy_reconstruct(subtype, shape, dtype_code) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise UnsafeCheckpointError("numpy _reconstruct of a non-ndarray type; refused")
    return np.ndarray((0,), dtype=np.uint8)  # shape, dtype and data come with the BUILD (ndarray.__setstate__)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafeCheckpointError("numpy scalar of object dtype; refused")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


_ALLOWED: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): _torch_size,
    ("_codecs", "encode"): _codecs_encode,
    ("argparse", "Namespace"): _Namespace,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
}
for _b in ("set", "frozenset", "complex"):
    _ALLOWED[("builtins", _b)] = getattr(__import__("builtins"), _b)
    _ALLOWED[("__builtin__", _b)] = _ALLOWED[("builtins", _b)]
for _name, _dt in _STORAGE_DTYPES.items():
    _ALLOWED[("torch", _name)] = _StorageType(_name, _dt)
    if _name != "UntypedStorage":
        _ALLOWED[("torch.cuda", _name)] = _ALLOWED[("torch", _name)]  # storages saved from GPU (torch < 1.13)


# ---------------------------------------------------------------------------------------------- unpickling
class _RestrictedUnpickler(pickle.Unpickler):
    """`find_class` answers only from `_ALLOWED`; `persistent_load` turns storage ids into `_Storage` objects."""

    def __init__(self, file: BinaryIO, storages: Dict[str, _Storage], depth: int = 0) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages = storages  # key → root storage, shared with the caller that attaches the bytes
        self.depth = depth

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return self._load_from_bytes
        hint = ""
        if module.split(".")[0] == "torch":
            hint = (" (a torch object this reader does not support, such as a sparse or quantized tensor or a "
                    "whole pickled model: save `model.state_dict()` instead)")
        elif module not in ("builtins", "__builtin__", "os", "posix", "nt", "subprocess", "sys"):
            hint = " (a pickled Python object; only state dicts of tensors are read: save `model.state_dict()`)"
        raise UnsafeCheckpointError(
            f"refused to load global '{module}.{name}' from the checkpoint: it is not on the allowlist of "
            f"tensor/state-dict types, and unpickling it could run arbitrary code{hint}. Nothing was executed.")

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or _ascii(pid[0]) != "storage":
            raise CheckpointError(f"unknown persistent id in the checkpoint: {str(pid)[:80]}")
        stype, key, _location, numel = pid[1], _ascii(pid[2]), pid[3], pid[4]
        if not isinstance(stype, _StorageType):
            raise CheckpointError(f"persistent id names {stype!r}, not a torch storage type")
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = _Storage(stype, key, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is not None:  # legacy storage views: (view_key, offset, numel) in elements
            return _StorageView(root, view[1], view[2])
        return root

    def _load_from_bytes(self, data: bytes) -> _Storage:
        """`torch.storage._load_from_bytes`: a storage pickled by plain `pickle` is a nested `torch.save`."""
        if self.depth > 0 or not isinstance(data, (bytes, bytearray)):
            raise UnsafeCheckpointError("nested torch.storage._load_from_bytes; refused")
        obj, _ = _load_any(io.BytesIO(bytes(data)), "<nested storage>", depth=self.depth + 1, resolve=False)
        if not isinstance(obj, _Storage):
            raise CheckpointError("torch.storage._load_from_bytes did not hold a storage")
        return obj


def _ascii(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _resolve(obj: Any) -> Any:
    try:
        return _materialize(obj)
    except RecursionError as e:
        raise CheckpointError("the checkpoint is nested too deeply to be a state dict") from e


def _materialize(obj: Any, memo: Optional[Dict[int, Any]] = None) -> Any:
    """Replace every `_TensorRef` in a tree of dicts/lists/tuples/namespaces with its ndarray."""
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, _TensorRef):
        out: Any = obj.to_numpy()
    elif isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        memo[id(obj)] = out
        for k, v in obj.items():
            out[k] = _materialize(v, memo)
        return out
    elif isinstance(obj, list):
        out = []
        memo[id(obj)] = out
        out.extend(_materialize(v, memo) for v in obj)
        return out
    elif isinstance(obj, tuple):
        out = tuple(_materialize(v, memo) for v in obj)
    elif isinstance(obj, _Namespace):
        out = _Namespace()
        memo[id(obj)] = out
        for k, v in vars(obj).items():
            setattr(out, k, _materialize(v, memo))
        return out
    else:
        out = obj
    memo[id(obj)] = out
    return out


def _unpickle(f: BinaryIO, storages: Dict[str, _Storage], depth: int = 0) -> Any:
    return _RestrictedUnpickler(f, storages, depth).load()


def _load_any(f: BinaryIO, name: str, depth: int = 0, resolve: bool = True) -> Tuple[Any, str]:
    """Load a torch.save file (zip or legacy) or a bare pickle from an open binary file; returns (object, format)."""
    head = f.read(4)
    f.seek(0)
    if head[:2] == b"PK":
        return _load_zip(f, name, depth, resolve), "pytorch-zip"
    storages: Dict[str, _Storage] = {}
    try:
        first = _unpickle(f, storages, depth)
    except CheckpointError:
        raise
    except Exception as e:
        hint = " It looks like an HTML page: the download failed." if head.lstrip()[:1] == b"<" else ""
        raise CheckpointError(f"'{name}' is not a PyTorch checkpoint: neither a zip archive nor a legacy torch.save "
                              f"file ({type(e).__name__}: {e}).{hint}") from e
    if not (isinstance(first, int) and first == LEGACY_MAGIC):
        # A bare `pickle.dump(state_dict)`: tensors inside are nested torch.save storages (_load_from_bytes).
        return (_resolve(first) if resolve else first), "pickle"
    storages.clear()
    try:
        protocol = _unpickle(f, {}, depth)
        if protocol != LEGACY_PROTOCOL:
            raise CheckpointError(f"'{name}': unsupported legacy torch protocol {protocol!r} "
                                  f"(expected {LEGACY_PROTOCOL})")
        _unpickle(f, {}, depth)  # sys_info: byte order and type sizes; storages are always little-endian
        obj = _unpickle(f, storages, depth)
        keys = _unpickle(f, {}, depth)
        for key in keys:
            key = _ascii(key)
            if key not in storages:
                raise CheckpointError(f"'{name}': storage '{key}' is listed but never used")
            header = f.read(8)
            if len(header) < 8:
                raise CheckpointError(f"'{name}' ends before storage '{key}': the file is truncated")
            (numel,) = struct.unpack("<q", header)
            st = storages[key]
            if numel != st.numel:
                raise CheckpointError(f"'{name}': storage '{key}' has {numel} elements, the pickle says {st.numel}")
            st.attach(f.read(numel * st.stype.itemsize))
    except CheckpointError:
        raise
    except Exception as e:  # EOFError, UnpicklingError, ... from a cut-off or damaged file
        raise CheckpointError(f"could not read '{name}' as a legacy torch.save file ({type(e).__name__}: {e}); "
                              "the file is truncated or corrupt") from e
    return (_resolve(obj) if resolve else obj), "pytorch-legacy"


def _load_zip(f: BinaryIO, name: str, depth: int = 0, resolve: bool = True) -> Any:
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"'{name}' starts like a torch zip checkpoint but is not a readable zip ({e}): "
                              "the file is truncated or corrupt; download or save it again") from e
    with zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise CheckpointError(f"'{name}' is a zip file but not a torch checkpoint (no '<dir>/data.pkl' record)")
        prefix = pkls[0][: -len("data.pkl")]
        big_endian = False
        if prefix + "byteorder" in names:  # written since torch 2.1; older files are little-endian
            big_endian = zf.read(prefix + "byteorder").strip() == b"big"
        storages: Dict[str, _Storage] = {}
        try:
            with zf.open(pkls[0]) as pf:
                obj = _unpickle(io.BytesIO(pf.read()), storages, depth)
            for key, st in storages.items():
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise CheckpointError(f"'{name}': storage record '{record}' is missing")
                st.attach(zf.read(record), big_endian=big_endian)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"could not read '{name}' as a torch zip checkpoint ({type(e).__name__}: {e}); "
                                  "the file is truncated or corrupt") from e
    return _resolve(obj) if resolve else obj


# ---------------------------------------------------------------------------------------------- public API
def load_pth(path: str) -> Tuple[Any, str]:
    """Unpickle a torch.save file safely. Returns (object, format) where tensors are numpy arrays
    (bfloat16 widened to float32) and format is 'pytorch-zip' or 'pytorch-legacy'."""
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint not found: '{path}'")
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b" or _is_tar(path):
            raise CheckpointError(f"'{path}' is a tar/gzip archive (torch < 0.4 format?); not supported")
        f.seek(0)
        return _load_any(f, path)


def _is_tar(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(257)
        return f.read(5) == b"ustar"


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and any(isinstance(v, np.ndarray) for v in obj.values())


def unwrap_state_dict(obj: Any, ema: bool = False) -> Dict[str, np.ndarray]:
    """The state dict inside a loaded checkpoint, as {name: ndarray}.

    A dict with a 'state_dict' (else 'model') entry that is itself a dict is a wrapper (timm and training-script
    checkpoints; repeated for nested wrappers); otherwise the dict is the state dict. With `ema=True` the
    'state_dict_ema' / 'model_ema' / 'ema' entry is taken instead. Entries that are not tensors (ints, strings)
    are dropped; a `module.` prefix on every key (DataParallel) is stripped.
    """
    node = obj
    if ema:
        key = next((k for k in EMA_KEYS if isinstance(node, Mapping) and isinstance(node.get(k), Mapping)), None)
        if key is None:
            found = sorted(map(str, node)) if isinstance(node, Mapping) else type(node).__name__
            raise CheckpointError(f"EMA weights were asked for, but the checkpoint has no {' / '.join(EMA_KEYS)} "
                                  f"entry (top-level keys: {found})")
        node = node[key]
    for _ in range(4):
        key = next((k for k in WRAPPER_KEYS if isinstance(node, Mapping) and isinstance(node.get(k), Mapping)), None)
        if key is None:
            break
        node = node[key]
    if not _is_tensor_dict(node):
        if isinstance(node, Mapping):
            keys = ", ".join(sorted(map(str, node))[:12])
            raise CheckpointError(f"no state dict found in the checkpoint: no tensors at the top level and no "
                                  f"{' / '.join(repr(k) for k in WRAPPER_KEYS)} entry (keys: {keys})")
        raise CheckpointError(f"the checkpoint holds a {type(node).__name__}, not a state dict")
    state = {str(k): v for k, v in node.items() if isinstance(v, np.ndarray)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_pth(path: str, ema: bool = False) -> Dict[str, np.ndarray]:
    """Read a PyTorch checkpoint's state dict as {name: ndarray}; see `unwrap_state_dict` for wrappers."""
    obj, _ = load_pth(path)
    return unwrap_state_dict(obj, ema=ema)
