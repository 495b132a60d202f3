"""Published pretrained weights: where each file lives, and fetching it once into a local cache, verified.

Standard library only (plus tqdm for the bar), so it can be imported before MindSpore and used on a login node.

Search order for a file (`fetch`): the mirror folders (the `mirror_dir` argument, then `$MINDGHOST_PRETRAINED_DIR`),
then the cache (`cache_dir()`), and only then the network. Ascend clusters are often offline: put the files into
a mirror folder under the exact names of `WEIGHTS` and nothing is downloaded.

A download goes to a temporary file in the cache folder, is checked (byte count against Content-Length, then the
sha256 and size the table gives) and only then renamed, atomically, to its final name: a cut-off, corrupt or
wrong file is deleted, never left where the next run would take it for good. A file already in a mirror or the
cache is checked against the same sha256 / size and refused, with both checksums, if it does not match.

Checksums: only the timm copy of ghostnet_100 comes with a checksum its publisher states (the Git LFS sha256 on
the Hugging Face file page). MindCV publishes none: its loader (`mindcv.utils.download`) never checks the 8 hex
digits in its file names and its docs do not say what they are, so we do not treat them as a sha256 prefix (a
guess that is wrong would refuse good files). Files without a checksum are checked for completeness only; the
strict loader then rejects a damaged file when it parses it. `fetch` logs the sha256 of every file it downloads
so that it can be pinned here once confirmed.

Environment variables:
  MINDGHOST_PRETRAINED_DIR  read-only mirror folder searched first (e.g. a shared folder on an offline cluster)
  MINDGHOST_WEIGHTS_CACHE   the cache folder itself (default: $MINDGHOST_CACHE/weights)
  MINDGHOST_CACHE           mindghost's cache root, shared with the compiled CPU kernels (default ~/.cache/mindghost)
"""
import hashlib
import http.client
import logging
import os
import re
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import PretrainedError

_LOG = logging.getLogger("mindghost")

ENV_MIRROR = "MINDGHOST_PRETRAINED_DIR"
ENV_WEIGHTS_CACHE = "MINDGHOST_WEIGHTS_CACHE"
ENV_CACHE_ROOT = "MINDGHOST_CACHE"  # also read by mindghost/cpu/depthwise.py (compiled kernels)

FORMATS = ("ckpt", "pth")
PUBLISHERS = ("mindcv", "huawei-noah", "timm")
_CHUNK = 1 << 20  # 1 MiB reads: a progress update per MiB, and bounded memory
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class WeightSource:
    """One published weight file.

    filename:  the name it has in the cache and mirror folders; unique across `WEIGHTS` (timm's files are all
               called `pytorch_model.bin`, so theirs carry the hub repository's name).
    url:       where it is downloaded from (http or https).
    format:    "ckpt" = MindSpore checkpoint in MindCV/mindghost parameter names, loaded as is;
               "pth"  = PyTorch pickle (.pth / .pth.tar / .bin), read by mindghost's torch-free reader and converted.
    publisher: "mindcv" | "huawei-noah" (the paper authors) | "timm".
    sha256:    full lowercase hex digest of the file when the publisher states one, else None.
    size:      exact size in bytes when known, else None.
    ema:       take the EMA copy (`state_dict_ema`, ...) out of a training checkpoint.
    top1:      the publisher's ImageNet-1k top-1 (%) for these weights, for the docs table.
    confirmed: True when the exact URL was read in the publisher's own code, docs or release notes; False when it
               is built from a release tag and an asset name the publisher lists (see `note`).
    note:      provenance and anything a user of the file must know.
    """

    filename: str
    url: str
    format: str
    publisher: str
    sha256: Optional[str] = None
    size: Optional[int] = None
    ema: bool = False
    top1: Optional[float] = None
    confirmed: bool = True
    note: str = ""

    def __post_init__(self):
        if not self.filename or os.path.basename(self.filename) != self.filename or self.filename.startswith("."):
            raise PretrainedError(f"WeightSource.filename must be a plain file name, got {self.filename!r}.")
        if not self.url.startswith(("https://", "http://")):
            raise PretrainedError(f"WeightSource.url must start with https:// or http://, got {self.url!r}.")
        if self.format not in FORMATS:
            raise PretrainedError(f"WeightSource.format must be one of {FORMATS}, got {self.format!r}.")
        if self.publisher not in PUBLISHERS:
            raise PretrainedError(f"WeightSource.publisher must be one of {PUBLISHERS}, got {self.publisher!r}.")
        if self.sha256 is not None and not _SHA256_RE.fullmatch(self.sha256):
            raise PretrainedError(f"WeightSource.sha256 must be 64 lowercase hex digits, got {self.sha256!r}.")
        if self.size is not None and self.size <= 0:
            raise PretrainedError(f"WeightSource.size must be a positive byte count, got {self.size!r}.")

    @property
    def verifiable(self) -> bool:
        """True when a wrong file with the right length would be caught (a sha256 is known)."""
        return self.sha256 is not None


# ------------------------------------------------------------------------------------------------------------------
# Where the weights are published, per registered model name, in order of preference (a file found locally wins
# over any download, whatever its rank). Sources, and what each one confirms:
#   MindCV: configs/ghostnet/README.md and mindcv/models/ghostnet.py `default_cfgs` (8x Ascend 910 runs); the
#     README's 2025 revision lists a 910v2 re-run of ghostnet_050 on the download-mindspore.osinfra.cn host.
#   huawei-noah: ghostnet_1x.pth is the `ghostnet_pth` release asset timm used before moving to the HF hub;
#     state_dict_73.98.pth is the file in the repository that the authors' hubconf.py loads; GhostNetV2 links come
#     from ghostnetv2_pytorch/README.md; GhostNetV3 from timm's ghostnet.py (the authors' readme lists none);
#     G-Ghost asset names from g_ghost_pytorch/readme.md ("Github Release", tag g_ghost_regnet).
#   timm: hf_hub_id 'timm/' entries of timm/models/ghostnet.py; the HF file pages list pytorch_model.bin for
#     ghostnet_100 and ghostnetv2_{100,130,160} (the Git LFS sha256 was readable for ghostnet_100 only).
# ------------------------------------------------------------------------------------------------------------------
_MINDCV = "https://download.mindspore.cn/toolkits/mindcv/ghostnet/"
_MINDCV_V2 = "https://download-mindspore.osinfra.cn/toolkits/mindcv/ghostnet/"
_NOAH = "https://github.com/huawei-noah/Efficient-AI-Backbones/releases/download/"
_HF = "https://huggingface.co/timm/"


def _mindcv(name: str, top1: float, base: str = _MINDCV, note: str = "") -> WeightSource:
    return WeightSource(name, base + name, "ckpt", "mindcv", top1=top1,
                        note=note or "MindCV model zoo (8x Ascend 910); no checksum published")


def _timm(repo: str, top1: float, revision: str = "main", sha256: Optional[str] = None, confirmed: bool = True,
          note: str = "") -> WeightSource:
    return WeightSource(f"timm-{repo}.bin", f"{_HF}{repo}/resolve/{revision}/pytorch_model.bin", "pth", "timm",
                        sha256=sha256, top1=top1, confirmed=confirmed, note=note or f"HF hub timm/{repo}")


def _g_ghost(asset: str, top1: float) -> WeightSource:
    return WeightSource(asset, _NOAH + "g_ghost_regnet/" + asset, "pth", "huawei-noah", top1=top1, confirmed=False,
                        note="asset name and release tag from g_ghost_pytorch/readme.md; download URL built from them")


WEIGHTS: Dict[str, Tuple[WeightSource, ...]] = {
    "ghostnet_050": (
        _mindcv("ghostnet_050-85b91860.ckpt", 66.03),
        _mindcv("ghostnet_050-ae7771cb-910v2.ckpt", 65.93, base=_MINDCV_V2,
                note="MindCV re-run on Ascend 910v2 (MindSpore 2.5); no checksum published"),
    ),
    "ghostnet_100": (
        # Weights trained by the authors, re-saved by timm; the only file here with a published checksum.
        _timm("ghostnet_100.in1k", 73.958, revision="d461b859bf5f6b4f1828eb79e1902fd883194c83",
              sha256="1dfc1e5e737afceb3bc984112bb8ff3498dd2483df33e8975ad852bca7e1dce3",
              note="HF hub timm/ghostnet_100.in1k at commit d461b85 (Git LFS sha256 from the file page)"),
        _mindcv("ghostnet_100-bef8025a.ckpt", 73.78),
        WeightSource("ghostnet_1x.pth", "https://github.com/huawei-noah/CV-backbones/releases/download/"
                     "ghostnet_pth/ghostnet_1x.pth", "pth", "huawei-noah", top1=73.98,
                     note="authors' release (repository since renamed Efficient-AI-Backbones; GitHub redirects)"),
        WeightSource("state_dict_73.98.pth", "https://github.com/huawei-noah/ghostnet/raw/master/ghostnet_pytorch/"
                     "models/state_dict_73.98.pth", "pth", "huawei-noah", top1=73.98,
                     note="the URL in the authors' hubconf.py; third parties quote md5 f7241350b4486bf00accbf9c"
                          "3a192331 and a sha256 starting 965143b0 (unconfirmed, not enforced)"),
    ),
    "ghostnet_130": (
        _mindcv("ghostnet_130-cf4c235c.ckpt", 75.50),
    ),
    "ghostnetv2_100": (
        WeightSource("ck_ghostnetv2_10.pth.tar", _NOAH + "GhostNetV2/ck_ghostnetv2_10.pth.tar", "pth", "huawei-noah",
                     top1=75.3, note="authors' release; carries profiler entries total_ops/total_params"),
        _timm("ghostnetv2_100.in1k", 75.186),
    ),
    "ghostnetv2_130": (
        WeightSource("ck_ghostnetv2_13.pth.tar", _NOAH + "GhostNetV2/ck_ghostnetv2_13.pth.tar", "pth", "huawei-noah",
                     top1=76.9, note="authors' release; carries profiler entries total_ops/total_params"),
        _timm("ghostnetv2_130.in1k", 76.746),
    ),
    "ghostnetv2_160": (
        WeightSource("ck_ghostnetv2_16.pth.tar", _NOAH + "GhostNetV2/ck_ghostnetv2_16.pth.tar", "pth", "huawei-noah",
                     top1=77.8, note="authors' release; carries profiler entries total_ops/total_params"),
        _timm("ghostnetv2_160.in1k", 77.836),
    ),
    "ghostnetv3_100": (
        WeightSource("ghostnetv3-1.0.pth.tar", _NOAH + "GhostNetV3/ghostnetv3-1.0.pth.tar", "pth", "huawei-noah",
                     top1=77.1, note="authors' release as named in timm's ghostnet.py; training (unfused) form"),
        _timm("ghostnetv3_100.in1k", 76.936, confirmed=False,
              note="timm lists hf_hub_id timm/ghostnetv3_100.in1k; the pytorch_model.bin file name is timm's "
                   "convention, not seen on the hub page"),
    ),
    "g_ghost_regnetx_032": (_g_ghost("g_ghost_regnet_3.2g_77.8.pth", 77.8),),
    "g_ghost_regnetx_040": (_g_ghost("g_ghost_regnet_4.0g_78.6.pth", 78.6),),
    "g_ghost_regnetx_080": (_g_ghost("g_ghost_regnet_8.0g_79.0.pth", 79.0),),
    "g_ghost_regnetx_160": (_g_ghost("g_ghost_regnet_16.0g_79.9.pth", 79.9),),
}


def _check_unique_filenames(table: Dict[str, Tuple[WeightSource, ...]]) -> None:
    """Cache and mirror folders are flat, so two sources must never share a file name."""
    names = [src.filename for sources in table.values() for src in sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PretrainedError(f"Weight file names used twice in WEIGHTS: {twice}.")


_check_unique_filenames(WEIGHTS)


# ------------------------------------------------------------------------------------------------------------------
# Folders
# ------------------------------------------------------------------------------------------------------------------
def cache_dir() -> str:
    """The folder downloads go to: `$MINDGHOST_WEIGHTS_CACHE`, else `$MINDGHOST_CACHE/weights`, else
    `~/.cache/mindghost/weights`. Read at every call, so changing the variable moves the cache; not created here."""
    explicit = os.environ.get(ENV_WEIGHTS_CACHE)
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    root = os.environ.get(ENV_CACHE_ROOT) or os.path.join("~", ".cache", "mindghost")
    return os.path.abspath(os.path.join(os.path.expanduser(root), "weights"))


def mirror_dirs(mirror_dir: Optional[str] = None) -> List[str]:
    """The read-only folders searched before the cache: `mirror_dir`, then `$MINDGHOST_PRETRAINED_DIR`.

    Raises PretrainedError if a folder named either way does not exist (a typo would otherwise send an offline
    job to the network and fail with a less useful message)."""
    dirs: List[str] = []
    for given, origin in ((mirror_dir, "mirror_dir / --pretrained_dir"), (os.environ.get(ENV_MIRROR), ENV_MIRROR)):
        if not given:
            continue
        path = os.path.abspath(os.path.expanduser(given))
        if not os.path.isdir(path):
            raise PretrainedError(f"The pretrained-weights mirror folder '{path}' (from {origin}) does not exist. "
                                  "Create it and put the weight files in it, or unset/fix the setting.")
        if path not in dirs:
            dirs.append(path)
    return dirs


def _where_to_put(mirrors: Sequence[str]) -> str:
    if mirrors:
        return f"into the mirror folder {mirrors[0]}"
    return (f"into a folder of your choice and set {ENV_MIRROR}=<that folder> (or pass --pretrained_dir / "
            f"mirror_dir=), or directly into the cache folder {cache_dir()}")


# ------------------------------------------------------------------------------------------------------------------
# Verification
# ------------------------------------------------------------------------------------------------------------------
def sha256_of(path: str) -> str:
    """Lowercase hex sha256 of a file, read in 1 MiB chunks: the one file checksum (hub checks, convert records)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: str, source: WeightSource) -> str:
    """Check a local file against `source`: not empty, its size and sha256 where the table knows them.

    Returns the file's sha256. Raises PretrainedError naming the expected and actual values and what to do."""
    size = os.path.getsize(path)
    fix = (f"Delete it (rm '{path}') to download it again, or replace it with the file from {source.url} "
           f"saved as '{source.filename}'.")
    if size == 0:
        raise PretrainedError(f"Pretrained weight file '{path}' is empty (0 bytes). {fix}")
    if source.size is not None and size != source.size:
        raise PretrainedError(f"Pretrained weight file '{path}' has {size:,} bytes, expected {source.size:,} "
                              f"({source.filename} from {source.url}). {fix}")
    actual = sha256_of(path)
    if source.sha256 is not None and actual != source.sha256:
        raise PretrainedError(f"Pretrained weight file '{path}' has sha256 {actual}, expected {source.sha256} "
                              f"({source.filename} from {source.url}): it is damaged or a different file. {fix}")
    return actual


def _varint(f) -> Optional[int]:
    shift, value = 0, 0
    while True:
        b = f.read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            return None


def _ckpt_problem(path: str) -> str:
    """A MindSpore checkpoint is a protobuf `Checkpoint` of `Value` entries (field 1, each starting with its name,
    field 1 again): walk the top-level fields without MindSpore; they must end exactly at the end of the file."""
    size = os.path.getsize(path)
    entries = 0
    with open(path, "rb") as f:
        while f.tell() < size:
            at = f.tell()
            key = _varint(f)
            if key is None or key >> 3 == 0:
                return f"no protobuf field at byte {at:,}"
            wire = key & 7
            if wire == 2:
                length = _varint(f)
                if length is None or f.tell() + length > size:
                    return f"an entry at byte {at:,} runs past the end of the file (truncated)"
                if key >> 3 == 1:
                    if f.read(1) != b"\x0a":
                        return f"entry {entries + 1} at byte {at:,} has no parameter name"
                    entries += 1
                    f.seek(at)
                    _varint(f)
                    _varint(f)
                f.seek(length, os.SEEK_CUR)
            elif wire == 0:
                if _varint(f) is None:
                    return "truncated"
            elif wire in (1, 5):
                f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
            else:
                return f"no protobuf field at byte {at:,}"
    if entries == 0:
        return "no parameter entries"
    return ""


def _safetensors_problem(path: str) -> str:
    """8-byte little-endian header length, a JSON header, then exactly the tensor bytes it describes."""
    import json
    import struct

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "shorter than a safetensors header"
        n = struct.unpack("<Q", head)[0]
        if n > size - 8:
            return "the header length runs past the end of the file"
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except ValueError as e:
            return f"the header is not JSON ({e})"
    if not isinstance(header, dict):
        return "the header is not a JSON object"
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    expected = 8 + n + max(ends, default=0)
    if expected != size:
        return f"the header describes {expected:,} bytes, the file has {size:,} (truncated or padded)"
    return ""


def format_problem(path: str, source: WeightSource) -> str:
    """Why the file at `path` does not parse as `source`'s declared format ("" when it does): `.safetensors`
    header and sizes; MindSpore `.ckpt` protobuf structure; PyTorch `.pth`/`.bin` through mindghost's torch-free
    reader (`weights.pth.load_pth`, needs numpy). Catches an HTML page served with status 200 (a proxy's or a
    login portal's) and a transfer cut short without a Content-Length."""
    with open(path, "rb") as f:
        start = f.read(64).lstrip().lower()
    if start.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        return "it is an HTML page, not weights (a proxy, login or error page served in its place?)"
    if source.filename.endswith(".safetensors"):  # (its first byte may be '{': the header length's low byte)
        return _safetensors_problem(path)
    if start.startswith(b"{"):
        return "it is a JSON document, not weights (an API error served in its place?)"
    if source.format == "ckpt":
        return _ckpt_problem(path)
    try:
        from .weights.pth import load_pth

        load_pth(path)
    except ImportError:
        return ""  # no numpy on this machine: the loader checks it later
    except Exception as e:  # CheckpointError, pickle/zip errors of a damaged file
        return f"the PyTorch reader cannot read it ({type(e).__name__}: {e})"
    return ""


def _set_aside(path: str) -> str:
    bad = path + ".bad"
    os.replace(path, bad)
    return bad


def find_local(source: WeightSource, mirror_dir: Optional[str] = None) -> Optional[str]:
    """Path of `source.filename` in a mirror folder or the cache (first found, verified), or None if absent.

    A file that is present but fails verification (size, sha256, declared format: `format_problem`) is never
    skipped silently: in the cache it is moved aside as `<name>.bad` (logged; the caller then fetches it again,
    once), in a mirror folder (read-only, shared) PretrainedError names the exact file to replace."""
    mirrors = mirror_dirs(mirror_dir)
    for folder in mirrors + [cache_dir()]:
        path = os.path.join(folder, source.filename)
        if os.path.isfile(path):
            in_cache = folder not in mirrors
            digest = verify(path, source)  # a wrong size or checksum is refused as it is: both values named
            problem = format_problem(path, source)
            if problem:
                what = f"'{path}' does not load as a {source.format} file: {problem}."
                if not in_cache:
                    raise PretrainedError(f"Pretrained weight file {what} Replace it with the file from {source.url} "
                                          f"saved as '{source.filename}', or remove it (rm '{path}').")
                _LOG.warning("cached %s Moved aside to %s; fetching it again.", what, _set_aside(path))
                continue
            if source.sha256 is None:
                _LOG.info("using %s (sha256 %s; the publisher gives no checksum to compare with)", path, digest)
            return path
    return None


# ------------------------------------------------------------------------------------------------------------------
# Download
# ------------------------------------------------------------------------------------------------------------------
class _Progress:
    """A tqdm bar on a terminal, a log line every ~10% (or 16 MiB when the size is unknown) otherwise."""

    def __init__(self, total: Optional[int], label: str, enabled: bool):
        self.total, self.label, self.done, self.next_log = total, label, 0, 0
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and self.done >= self.next_log:
            if self.total:
                _LOG.info("downloading %s: %d%% (%s of %s bytes)", self.label, 100 * self.done // self.total,
                          f"{self.done:,}", f"{self.total:,}")
                self.next_log = self.done + max(self.total // 10, 1)
            else:
                _LOG.info("downloading %s: %s bytes", self.label, f"{self.done:,}")
                self.next_log = self.done + 16 * _CHUNK

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _DownloadFailed(Exception):
    """Internal: why one download did not produce a good file (network or integrity), turned into PretrainedError."""


_HF_URL = re.compile(r"https://huggingface\.co/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")


def _hf_download(source: WeightSource, folder: str, match) -> Optional[str]:
    """A Hugging Face file through `huggingface_hub.hf_hub_download` when that package is installed (it honours
    HF_ENDPOINT mirrors, HF_TOKEN and resumes cut-off transfers); None when it is not. The file lands in
    `<folder>/.hf/` and is verified like any download before it gets its cache name."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    final = os.path.join(folder, source.filename)
    try:
        got = hf_hub_download(repo_id=match["repo"], filename=match["file"], revision=match["revision"],
                              local_dir=os.path.join(folder, ".hf"))
    except Exception as e:  # huggingface_hub's HTTP, offline and not-found errors have no common base besides it
        raise _DownloadFailed(f"huggingface_hub: {type(e).__name__}: {e}") from e
    problem = _integrity_problem(got, source)
    if problem:
        os.remove(got)
        raise _DownloadFailed(problem)
    os.replace(got, final)
    _LOG.info("downloaded %s with huggingface_hub (%s bytes)", final, f"{os.path.getsize(final):,}")
    return final


def _integrity_problem(path: str, source: WeightSource) -> str:
    """Size, sha256 and declared format of a received file ("" when it is good)."""
    size = os.path.getsize(path)
    if size == 0:
        return "the server sent an empty file"
    if source.size is not None and size != source.size:
        return f"received {size:,} bytes, the published file has {source.size:,}"
    if source.sha256 is not None:
        actual = sha256_of(path)
        if actual != source.sha256:
            return (f"checksum mismatch: sha256 {actual}, expected {source.sha256} (corrupted in transit, or the "
                    "publisher replaced the file)")
    problem = format_problem(path, source)
    return f"what was received is not a {source.format} weight file: {problem}" if problem else ""


def _download(source: WeightSource, folder: str, progress: bool, timeout: float) -> str:
    os.makedirs(folder, exist_ok=True)
    match = _HF_URL.match(source.url)
    if match:
        got = _hf_download(source, folder, match)
        if got is not None:
            return got
    final = os.path.join(folder, source.filename)
    # The temporary file sits next to the final one so that os.replace is an atomic rename on the same file system;
    # its name starts with a dot and ends in .part, so nothing looks for it under the real name.
    fd, tmp = tempfile.mkstemp(prefix=f".{source.filename}.", suffix=".part", dir=folder)
    try:
        digest, received, expected = hashlib.sha256(), 0, None
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(source.url, headers={"User-Agent": "mindghost-hub"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    expected = int(length) if length and length.isdigit() else None
                    bar = _Progress(expected, source.filename, progress)
                    try:
                        while True:
                            chunk = response.read(_CHUNK)
                            if not chunk:
                                break
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                    finally:
                        bar.close()
            except urllib.error.HTTPError as e:
                raise _DownloadFailed(f"the server answered HTTP {e.code} {e.reason}") from e
            except urllib.error.URLError as e:
                raise _DownloadFailed(f"no connection ({e.reason})") from e
            except http.client.IncompleteRead as e:
                raise _DownloadFailed(f"the connection closed after {received:,} bytes (truncated: {e})") from e
            except (http.client.HTTPException, socket.timeout, OSError) as e:
                raise _DownloadFailed(f"the transfer failed after {received:,} bytes ({type(e).__name__}: {e})") from e
            out.flush()
            os.fsync(out.fileno())
        # http.client does not raise when a server closes the connection before Content-Length bytes were sent:
        # read() just returns b"". Counting is the only way to notice a cut-off transfer.
        if expected is not None and received != expected:
            raise _DownloadFailed(f"the connection closed after {received:,} of {expected:,} bytes (truncated)")
        if received == 0:
            raise _DownloadFailed("the server sent an empty file")
        if source.size is not None and received != source.size:
            raise _DownloadFailed(f"received {received:,} bytes, the published file has {source.size:,}")
        actual = digest.hexdigest()
        if source.sha256 is not None and actual != source.sha256:
            raise _DownloadFailed(f"checksum mismatch: sha256 {actual}, expected {source.sha256} "
                                  "(corrupted in transit, or the publisher replaced the file)")
        problem = format_problem(tmp, source)  # before the real name: an HTML page or a cut-off file never gets it
        if problem:
            raise _DownloadFailed(f"what was received ({received:,} bytes) is not a {source.format} weight file: "
                                  f"{problem}")
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if source.sha256 is None:
        _LOG.info("downloaded %s (%s bytes, sha256 %s; no published checksum to compare with)", final,
                  f"{received:,}", actual)
    else:
        _LOG.info("downloaded %s (%s bytes, sha256 verified)", final, f"{received:,}")
    return final


def _failure_message(subject: str, failures: Sequence[Tuple[WeightSource, str]], mirrors: Sequence[str]) -> str:
    lines = [f"Could not get the pretrained weights for {subject}: no copy was found locally and the download "
             f"failed. Fetch {'this file' if len(failures) == 1 else 'one of these files'} on a machine with "
             f"internet access and put it, under exactly this name, {_where_to_put(mirrors)}:"]
    for src, reason in failures:
        lines.append(f"  {src.filename}  <-  {src.url}   ({reason})")
    if not mirrors:
        lines.append(f"Searched: the cache folder {cache_dir()} ({ENV_MIRROR} is not set).")
    else:
        lines.append(f"Searched: {', '.join(mirrors)} and the cache folder {cache_dir()}.")
    for src, _ in failures:
        bad = os.path.join(cache_dir(), src.filename + ".bad")
        if os.path.isfile(bad):
            lines.append(f"The cached copy that did not load was moved to '{bad}': remove it (rm '{bad}').")
    return "\n".join(lines)


def fetch(source: WeightSource, mirror_dir: Optional[str] = None, progress: bool = True,
          timeout: float = 30.0) -> str:
    """Local path of a verified copy of `source`, downloading it into `cache_dir()` if no copy is found.

    Searches `mirror_dir`, `$MINDGHOST_PRETRAINED_DIR`, then the cache (see `find_local`). Downloads show a tqdm
    bar on a terminal, log lines otherwise (`progress=False`: silent); `timeout` (seconds) applies to the
    connection and to each read. Raises PretrainedError when a local copy fails verification (expected and actual
    sha256 / size) or the download fails (unreachable, HTTP error, truncated, wrong checksum); the message names
    the file name, the URL and the folder to put the file into. No partial file is left behind."""
    found = find_local(source, mirror_dir)
    if found is not None:
        return found
    mirrors = mirror_dirs(mirror_dir)
    try:
        return _download(source, cache_dir(), progress, timeout)
    except _DownloadFailed as e:
        raise PretrainedError(_failure_message(source.filename, [(source, str(e))], mirrors)) from e


def sources_for(model_name: str) -> Tuple[WeightSource, ...]:
    """The published weight files of a registered model name, in order of preference."""
    if model_name not in WEIGHTS:
        raise PretrainedError(f"No published pretrained weights are known for '{model_name}'. Models with weights: "
                              f"{', '.join(sorted(WEIGHTS))}. Train it, or pass your own file with --ckpt_path.")
    return WEIGHTS[model_name]


def models_with_weights() -> List[str]:
    """Sorted registered names that have published weights in `WEIGHTS`."""
    return sorted(WEIGHTS)


def describe(model_name: str) -> str:
    """One line naming a model's published weight files ("publisher file; ..."), "" when it has none: the
    README table's weights column and `default_cfg["weights"]`, derived from `WEIGHTS` (the one source)."""
    return "; ".join(f"{src.publisher} {src.filename}" for src in WEIGHTS.get(model_name, ()))


def fetch_pretrained(model_name: str, mirror_dir: Optional[str] = None, progress: bool = True,
                     timeout: float = 30.0) -> Tuple[str, WeightSource]:
    """(local path, source) of the best available published weights for `model_name`.

    First any of its files already in a mirror folder or the cache (in table order), so that an offline machine
    with one of the files never touches the network; else each source is downloaded in turn until one succeeds.
    A source that failed before another succeeded is logged as a warning. Raises PretrainedError if no source
    works (every file name, URL and reason listed) or if a local copy fails verification."""
    sources = sources_for(model_name)
    for src in sources:
        found = find_local(src, mirror_dir)
        if found is not None:
            return found, src
    mirrors = mirror_dirs(mirror_dir)
    failures: List[Tuple[WeightSource, str]] = []
    for src in sources:
        try:
            path = _download(src, cache_dir(), progress, timeout)
        except _DownloadFailed as e:
            failures.append((src, str(e)))
            continue
        for failed, reason in failures:
            _LOG.warning("pretrained %s: %s from %s failed (%s); using %s from %s instead", model_name,
                         failed.filename, failed.publisher, reason, src.filename, src.publisher)
        return path, src
    raise PretrainedError(_failure_message(model_name, failures, mirrors))
