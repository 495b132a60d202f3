"""A fast scan of an ImageFolder split for files MindSpore's decoder cannot take.

Why a scan before training: MindSpore 2.10's pipeline does not report a bad file cleanly. A zero-byte or
non-image file fails deep in a worker with an opaque `map operation: [Decode] failed`; a truncated JPEG
kills the whole process with SIGFPE; a JPEG whose body is garbage hangs the iterator forever. None of
these can be caught once training runs, so they are found here, before anything is compiled.

What is checked, per file, without decoding (ImageNet: one `stat` and two small reads per file):
- the extension is an image type (MindCV's ImageFolder reads every file in a class folder);
- the size is not zero;
- the first bytes are a known image signature (JPEG, PNG, BMP, TIFF, WebP, PPM/PGM);
- JPEG ends with its end-of-image marker and PNG with its IEND chunk (a cut-off copy or download does not).
Only files that fail the end-marker test are decoded fully (with Pillow) to confirm: some valid JPEGs carry
trailing bytes. Images that decode but are unusual (greyscale, RGBA, CMYK, 16-bit PNG) are fine: MindSpore
converts them to 8-bit RGB, and a grey-scale model (in_channels 1) then takes their luma (`channels.py`), so the
same check serves both channel counts.
"""
import os
from typing import List, Optional, Tuple

# The one list of image file types (datasets, predict, redundancy): those MindSpore's decoder reads.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"RIFF",
               b"P2", b"P3", b"P5", b"P6")
_TAIL = 1024  # JPEG EOI / PNG IEND are searched for in the last bytes (some writers pad the end)


def check_image_file(path: str, size: Optional[int] = None) -> Optional[str]:
    """None if `path` looks decodable, else a short reason ('empty file (0 bytes)', ...)."""
    if not path.lower().endswith(IMG_EXTENSIONS):
        return "not an image file (extension)"
    if size is None:
        size = os.path.getsize(path)
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if not head.startswith(_SIGNATURES) or (head.startswith(b"RIFF") and head[8:12] != b"WEBP"):
                return "not an image (unknown file header)"
            if head.startswith(b"\xff\xd8\xff"):
                marker = b"\xff\xd9"
            elif head.startswith(b"\x89PNG"):
                marker = b"IEND"
            else:
                return None
            fh.seek(max(0, size - _TAIL))
            tail = fh.read()
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if marker in tail:
        return None
    return _full_decode(path)


def _full_decode(path: str) -> Optional[str]:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with MindCV
        return "truncated (no end-of-image marker)"
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError ... for damaged files
        return f"truncated or corrupt ({type(e).__name__}: {e})"
    return None


def scan_class_folder(folder: str) -> Tuple[int, List[Tuple[str, str]]]:
    """(number of good images, [(path, reason), ...] for the files that would break the pipeline)."""
    good = 0
    bad: List[Tuple[str, str]] = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_dir():
                continue
            try:
                size = entry.stat().st_size
            except OSError as e:
                bad.append((entry.path, f"unreadable ({e.strerror or e})"))
                continue
            reason = check_image_file(entry.path, size)
            if reason is None:
                good += 1
            else:
                bad.append((entry.path, reason))
    return good, bad


def format_bad_files(root: str, bad: List[Tuple[str, str]], limit: int = 8) -> str:
    lines = [f"'{root}': {len(bad)} file(s) cannot be decoded by the training pipeline "
             "(MindSpore would fail, crash or hang on them):"]
    lines += [f"  {path}: {reason}" for path, reason in sorted(bad)[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    lines.append("Remove or replace these files (or move them out of the class folders), then rerun.")
    return "\n".join(lines)
