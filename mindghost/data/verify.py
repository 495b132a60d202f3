"""A full-decode scan of an ImageFolder split (`verify_images`): every image decoded once, in parallel, and
remembered, so that later runs pay only a `stat` per file.

Why beyond the header scan (`checks.py`): a JPEG whose start and end markers are intact but whose data is not
passes it, then inside training MindSpore's decoder raises (the run dies mid-epoch, and again on every resume),
crashes the process (a damaged Huffman table: SIGSEGV) or half-decodes it (libjpeg fills the rest with grey and
only prints "Corrupt JPEG data: ..." on stderr, so the run trains on garbage). Each file is therefore decoded
twice here, in worker processes: by Pillow first (raises on damaged data, never crashes; truncated images are
not accepted), then, for JPEGs Pillow took, by MindSpore's own `Decode` with the process's stderr captured, so a
libjpeg warning (a half-decoded body) is an error too. A body that is valid entropy-coded data of the wrong
picture decodes without any warning in every decoder and cannot be found by decoding.

The cache: one JSON file per split folder under `~/.cache/mindghost/verified/` (`$XDG_CACHE_HOME` if set),
mapping each good file's path to its size and mtime; a file whose size or mtime changed is decoded again.
Bad files are never cached.
"""
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

from .checks import IMG_EXTENSIONS, check_image_file, non_file_reason

_JPEG = b"\xff\xd8\xff"


def cache_path(split_dir: str) -> str:
    """Where the verified files of `split_dir` are remembered."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha1(os.path.abspath(split_dir).encode()).hexdigest()[:16]
    return os.path.join(base, "mindghost", "verified", f"{os.path.basename(os.path.abspath(split_dir))}-{key}.json")


def _decoder_warnings(data) -> Tuple[Optional[str], str]:
    """(error, warnings) of MindSpore's Decode on `data`, with fd 2 captured: libjpeg prints its warnings there."""
    import numpy as np

    from mindspore.dataset import vision

    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        error = None
        try:
            vision.Decode()(np.frombuffer(data, np.uint8))
        except (RuntimeError, ValueError) as e:
            from .guard import _short, remove_decoder_dump

            error = _short(e)
            remove_decoder_dump(np.frombuffer(data, np.uint8))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace")
    # MindSpore's own log lines start with "[LEVEL]"; what remains is the decoder library's
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("[")]
    return error, "; ".join(dict.fromkeys(lines))


def verify_file(path: str) -> Optional[str]:
    """None when `path` decodes completely in Pillow and (JPEG) in MindSpore without a decoder warning, else the
    reason. Raises nothing for a bad file."""
    reason = check_image_file(path)
    if reason:
        return reason
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated body must raise, not come back padded
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        with Image.open(path) as im:
            im.load()
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError ... for damaged files
        return f"cannot be decoded ({type(e).__name__}: {e})"
    if not data.startswith(_JPEG):
        return None
    error, warnings = _decoder_warnings(data)
    if error:
        return f"MindSpore's decoder fails on it ({error})"
    if warnings:
        return f"only partly decoded (libjpeg: {warnings}); the rest of the picture would be grey"
    return None


def split_files(split_dir: str) -> List[str]:
    """The image files of every class folder of `split_dir` (regular files with an image extension), sorted."""
    found = []
    for c in sorted(os.listdir(split_dir)):
        folder = os.path.join(split_dir, c)
        if not os.path.isdir(folder):
            continue
        with os.scandir(folder) as it:
            found += [e.path for e in it if non_file_reason(e) is None and e.name.lower().endswith(IMG_EXTENSIONS)]
    return sorted(found)


def unverified(split_dir: str, images: int) -> int:
    """How many of the `images` image files of `split_dir` (the header scan's count) the verification cache does
    not vouch for (0: every file decoded before by `verify_split` and unchanged since: one `stat` per file, no
    decoding; without a cache nothing is listed again)."""
    try:
        with open(cache_path(split_dir)) as fh:
            cached = json.load(fh)
    except (OSError, ValueError):
        return images
    files = split_files(os.path.abspath(split_dir))  # the cache's keys: absolute paths
    return sum(1 for p in files if cached.get(p) != _stamp(p))


def _stamp(path: str) -> Optional[List[int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


_IN_PROCESS_BELOW = 256


def _verify_chunk(paths: Sequence[str]) -> List[Optional[str]]:
    return [verify_file(p) for p in paths]


def verify_split(split_dir: str, workers: int = 0, progress: bool = True, use_cache: bool = True
                 ) -> Tuple[int, int, List[Tuple[str, str]]]:
    """Decode every image of `split_dir` not verified before. Returns (files, of them already verified
    (cached), [(path, reason)] of the bad ones). workers: processes (0 = the usable cores)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from ..runtime import num_cores

    files = split_files(os.path.abspath(split_dir))  # the cache's keys: absolute paths
    cache_file = cache_path(split_dir)
    cached: Dict[str, List[int]] = {}
    if use_cache and os.path.isfile(cache_file):
        try:
            with open(cache_file) as fh:
                cached = json.load(fh)
        except (OSError, ValueError):
            cached = {}  # a damaged cache only costs a rescan
    stamps = {p: _stamp(p) for p in files}
    todo = [p for p in files if not (use_cache and cached.get(p) == stamps[p])]
    bad: List[Tuple[str, str]] = []
    if todo:
        workers = max(1, min(workers or num_cores(), len(todo)))
        chunk = max(1, min(64, len(todo) // (workers * 4) or 1))
        chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"verify_images {split_dir}", unit="img", dynamic_ncols=True)
        # spawn: a forked copy of a process that already runs MindSpore's threads can deadlock. A few hundred files
        # are decoded here instead: starting the spawned workers (each imports the caller's main module) costs more
        if workers == 1 or len(todo) < _IN_PROCESS_BELOW:
            results = map(_verify_chunk, chunks)
            pool = None
        else:
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
            results = pool.map(_verify_chunk, chunks)
        with pool or contextlib.nullcontext():
            for paths, reasons in zip(chunks, results):
                for p, r in zip(paths, reasons):
                    if r is None:
                        cached[p] = stamps[p]
                    else:
                        cached.pop(p, None)
                        bad.append((p, r))
                if bar is not None:
                    bar.update(len(paths))
        if bar is not None:
            bar.close()
        if use_cache:
            _write_cache(cache_file, {p: cached[p] for p in files if p in cached})
    return len(files), len(files) - len(todo), bad


def _write_cache(path: str, entries: Dict[str, List[int]]) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"  # msrun ranks may write at once
        with open(tmp, "w") as fh:
            json.dump(entries, fh)
        os.replace(tmp, path)
    except OSError as e:
        logging.getLogger("mindghost").warning(f"verify_images: could not remember the verified files in {path} "
                                               f"({e.strerror or e}): the next run decodes them again")
