"""The first op of every image pipeline (train, validation, prediction), wrapped: EXIF orientation applied, and in
training a sample that fails to decode skipped, named and counted instead of ending the run.

Orientation: MindSpore's Decode (and RandomCropDecodeResize) ignore the EXIF Orientation tag, so a phone photo
stored sideways would reach the network sideways. `ImageGuard` reads the tag from the encoded bytes (a few
hundred bytes, `checks.exif_orientation`) and, only for a JPEG whose tag is not 1, turns the decoded array as
the tag says (EXIF 2.32, tag 0x0112). For the train crop this is exact in distribution: a random-resized crop of
the stored image, turned, is a random-resized crop of the upright image (the aspect-ratio range is symmetric and
the output square).

Bad samples (training only): MindSpore's error-samples mode REPLACE (`dataset.config.set_error_samples_mode`,
MindSpore >= 2.0) replaces a row whose map op raised with an earlier healthy row, so the epoch keeps its length
and a resume its positions. `ImageGuard` records each failure first: the file (found by its bytes among the
split's files of that size), the reason, a warning line; `BadImages` counts them (this epoch, the run, distinct
files) and stops the run when `max_consecutive_bad_images` failures come in a row or more than `max_bad_images`
distinct files failed (timm's ImageDataset skips similarly, up to 50 consecutive failures). Without the REPLACE
mode the first failure stops the run with the file named. What cannot be caught in the process: a body that
crashes libjpeg (some damaged Huffman tables: SIGSEGV) and one it half-decodes without raising; the full-decode
scan `verify_images` finds both before a run.
"""
import logging
import os
import threading
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import BadImageLimit  # noqa: F401  (raised here; defined with the other errors)
from .checks import IMG_EXTENSIONS, exif_orientation

LOG = logging.getLogger("mindghost")
_JPEG = b"\xff\xd8\xff"


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """An HWC (or HW) array decoded as stored, turned upright for EXIF `orientation` (1-8)."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
           7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1], 8: lambda a: np.swapaxes(a, 0, 1)[::-1]}
    op = ops.get(int(orientation))
    return np.ascontiguousarray(op(image)) if op else image


def orientation_of(data: np.ndarray) -> int:
    """EXIF orientation of encoded image bytes (a uint8 array); 1 for other formats or no tag."""
    head = data[:4096].tobytes()
    return exif_orientation(head) if head.startswith(_JPEG) else 1


class BadImages:
    """Decode failures of one split during a run (thread-safe: MindSpore's map workers are threads)."""

    def __init__(self, split_dir: str, max_bad: int, max_consecutive: int, replace: bool):
        self.split_dir = split_dir
        self.max_bad, self.max_consecutive, self.replace = max_bad, max_consecutive, replace
        self.files: Dict[str, str] = {}  # path -> reason (distinct files of the run)
        self.total = 0  # failures of the run (a file counts again in each epoch)
        self.epoch = 0  # failures since `new_epoch`
        self.consecutive = 0
        self.fatal: Optional[str] = None
        self._sizes: Optional[Dict[int, List[str]]] = None
        self._lock = threading.Lock()

    def new_epoch(self) -> None:
        with self._lock:
            self.epoch = 0

    def good(self) -> None:
        self.consecutive = 0  # a race between threads only blurs "in a row" by a sample

    def identify(self, data: np.ndarray) -> str:
        """The split's file holding exactly these bytes (an index by size is built at the first failure)."""
        if self._sizes is None:
            sizes: Dict[int, List[str]] = {}
            for root, _, files in os.walk(self.split_dir):
                for f in files:
                    if f.lower().endswith(IMG_EXTENSIONS):
                        p = os.path.join(root, f)
                        try:
                            sizes.setdefault(os.path.getsize(p), []).append(p)
                        except OSError:
                            continue
            self._sizes = sizes
        raw = data.tobytes()
        for p in self._sizes.get(len(raw), []):
            try:
                with open(p, "rb") as fh:
                    if fh.read() == raw:
                        return p
            except OSError:
                continue
        return f"an image of {len(raw)} bytes under {self.split_dir}"

    def failed(self, data: np.ndarray, error: Exception) -> str:
        """Record one failure; returns the message of the error the pipeline should raise."""
        path = self.identify(data)
        reason = _short(error)
        with self._lock:
            self.total += 1
            self.epoch += 1
            self.consecutive += 1
            self.files[path] = reason
            if not self.replace:
                self.fatal = (f"training image {path} cannot be decoded ({reason}); this MindSpore has no "
                              "set_error_samples_mode to skip it: remove or replace the file, then resume")
            elif self.consecutive >= self.max_consecutive or len(self.files) > self.max_bad:
                what = (f"{self.consecutive} images in a row" if self.consecutive >= self.max_consecutive
                        else f"{len(self.files)} distinct images (more than max_bad_images {self.max_bad})")
                self.fatal = (f"{what} failed to decode: stopping. {self.report(8)}. Run `python -m "
                              f"mindghost.tools.verify_images --data_dir {os.path.dirname(self.split_dir)}` to list "
                              "every bad file, remove or replace them, then resume (or raise max_bad_images / "
                              "max_consecutive_bad_images)")
        if self.fatal is None:
            LOG.warning(f"skipped a training image that cannot be decoded: {path} ({reason}); "
                        f"{self.epoch} this epoch, {len(self.files)} distinct file(s) in this run")
        return self.fatal or f"bad image {path}: {reason}"

    def report(self, limit: int = 5) -> str:
        items = sorted(self.files.items())
        shown = "; ".join(f"{p}: {r}" for p, r in items[:limit])
        return f"{len(items)} bad file(s): {shown}" + (" ..." if len(items) > limit else "")

    def summary(self) -> Dict[str, object]:
        return {"failures": self.total, "files": dict(sorted(self.files.items()))}


def _short(error: Exception) -> str:
    lines = [x.strip() for x in str(error).splitlines() if x.strip() and not set(x.strip()) <= set("-")]
    line = next((x for x in lines if "libjpeg" in x or "[ERROR]" in x), lines[0] if lines else type(error).__name__)
    return line.replace("[ERROR]", "").split(" Dump the abnormal image")[0].strip()


def remove_decoder_dump(data: np.ndarray) -> None:
    """MindSpore's Decode writes an image it cannot decode to `./abnormal_image.<ext>` in the working directory;
    where mindghost handles the failure itself (a skipped training image, verify_images) that copy is removed,
    and only when its bytes are the failed image's (a user's file of that name is never touched)."""
    import glob

    raw = None
    for path in glob.glob("abnormal_image.*"):
        try:
            if os.path.getsize(path) != data.size:
                continue
            raw = data.tobytes() if raw is None else raw
            with open(path, "rb") as fh:
                if fh.read() == raw:
                    os.remove(path)
        except OSError:
            continue


class ImageGuard:
    """`op` (a MindSpore decode op: encoded bytes -> HWC uint8) with the EXIF orientation applied and, when
    `bad` is given, decode failures recorded there (see the module docstring)."""

    def __init__(self, op, bad: Optional[BadImages] = None):
        self.op = op
        self.bad = bad

    def __call__(self, data: np.ndarray) -> np.ndarray:
        try:
            image = self.op(data)
        except (RuntimeError, ValueError) as e:
            if self.bad is None:
                raise
            remove_decoder_dump(data)
            raise RuntimeError(self.bad.failed(data, e)) from None
        if self.bad is not None:
            self.bad.good()
        o = orientation_of(data)
        return orient(image, o) if o != 1 else image


def error_samples_replace(on: bool) -> bool:
    """Switch MindSpore's error-samples mode to REPLACE (train) or RETURN (eval: a failure is an error).
    Returns False when this MindSpore has no such mode (< 2.0). Read while a pipeline runs, so it is set right
    before each loader is built (train and eval never run at the same time)."""
    import mindspore.dataset as ds

    if not hasattr(ds.config, "set_error_samples_mode"):
        return False
    mode = ds.config.ErrorSamplesMode.REPLACE if on else ds.config.ErrorSamplesMode.RETURN
    ds.config.set_error_samples_mode(mode)
    return True


_TRACKERS: Dict[str, BadImages] = {}


def tracker(split_dir: str, max_bad: int, max_consecutive: int, replace: bool) -> BadImages:
    """The one BadImages of `split_dir` in this process (kept over the epochs of a run)."""
    key = os.path.abspath(split_dir)
    if key not in _TRACKERS:
        _TRACKERS[key] = BadImages(split_dir, max_bad, max_consecutive, replace)
    return _TRACKERS[key]


def trackers() -> Tuple[BadImages, ...]:
    return tuple(_TRACKERS.values())


class BadImageMonitor:
    """A training-loop callback (every rank): stops the run with `BadImageLimit` at the first step after a limit
    was passed, and puts the epoch's count into the epoch metrics (`bad_images`) with a log line naming them."""

    def on_train_begin(self, state) -> None:
        pass

    def on_step_end(self, state) -> None:
        for t in trackers():
            if t.fatal:
                raise BadImageLimit(t.fatal)

    def on_epoch_end(self, state) -> None:
        count = sum(t.epoch for t in trackers())
        state.metrics["bad_images"] = count
        if count:
            LOG.warning(f"epoch {state.epoch + 1}: {count} training image(s) failed to decode and were replaced by "
                        f"other samples; {'; '.join(t.report() for t in trackers() if t.files)}")

    def on_stop_mid_epoch(self, state) -> None:
        pass

    def on_train_end(self, state) -> None:
        pass


def bad_image_summary() -> Dict[str, object]:
    """For summary.json: decode failures of the run and the files (path -> reason)."""
    files: Dict[str, str] = {}
    for t in trackers():
        files.update(t.files)
    return {"failures": sum(t.total for t in trackers()), "files": dict(sorted(files.items()))}
