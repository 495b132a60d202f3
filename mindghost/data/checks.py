"""A fast scan of an ImageFolder split for files MindSpore's decoder cannot take.

Why a scan before training: MindSpore 2.10's pipeline does not report a bad file cleanly. A zero-byte or
non-image file fails deep in a worker with an opaque `map operation: [Decode] failed`; a truncated JPEG
kills the whole process with SIGFPE; a JPEG whose body is garbage hangs the iterator forever. None of
these can be caught once training runs, so they are found here, before anything is compiled.

What is checked, per entry, without decoding (ImageNet: one `stat` and two small reads per file):
- the entry is a regular file: MindSpore's ImageFolderDataset lists every entry of a class folder (any name,
  hidden ones too) and reads each as an image, so a sub-folder (`.ipynb_checkpoints/`, a NAS's `@eaDir/`), a
  socket or a dangling link would stop the run at its first batch; they are refused here, each named;
- the extension is an image type (ImageFolderDataset reads every file in a class folder);
- the size is not zero;
- the first bytes are a known image signature (JPEG, PNG, BMP, TIFF, WebP, PPM/PGM);
- JPEG ends with its end-of-image marker and PNG with its IEND chunk (a cut-off copy or download does not).
Only files that fail the end-marker test are decoded fully (with Pillow) to confirm: some valid JPEGs carry
trailing bytes. Images that decode but are unusual (greyscale, RGBA, CMYK, 16-bit PNG) are fine: MindSpore
converts them to 8-bit RGB, and a grey-scale model (in_channels 1) then takes their luma (`channels.py`), so the
same check serves both channel counts.

JPEGs whose EXIF Orientation tag is not 1 (phone photos stored sideways) are counted from the bytes already
read, and the check says what the pipelines do with them: MindSpore's Decode ignores the tag, so every
pipeline's decode op applies it (`guard.py`, docs/data.md). A full decode of every file is `verify.py`
(`verify_images`).
"""
import os
import stat
import struct
from typing import List, Optional, Tuple

# The one list of image file types (datasets, predict, redundancy): those MindSpore's decoder reads.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"RIFF",
               b"P2", b"P3", b"P5", b"P6")
_TAIL = 1024  # JPEG EOI / PNG IEND are searched for in the last bytes (some writers pad the end)
_NOT_A_FILE = ", not an image file: ImageFolderDataset would read it as one"
_HEAD = 24  # signature; for JPEG also the first segment and, after a JFIF APP0 (16 bytes), the next marker
_EXIF_MAX = 4096  # an EXIF block's first directory lies within its first bytes (read only when there is one)


def non_file_reason(entry: os.DirEntry) -> Optional[str]:
    """None for a regular file (or a link to one), else what the entry is ('a directory', 'a dangling symlink')."""
    try:
        if entry.is_file():
            return None
        if entry.is_dir():
            return "a directory"
        mode = entry.stat().st_mode
    except FileNotFoundError:
        return "a dangling symlink (its target does not exist)"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    kinds = ((stat.S_ISSOCK, "a socket"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def exif_orientation(head: bytes) -> int:
    """The EXIF Orientation (tag 0x0112: 1 = as stored, 2-8 = mirrored and/or rotated) of a JPEG from its first
    bytes; 1 when there is no EXIF block or the tag is not within `head`. Reference: EXIF 2.32 (CIPA DC-008),
    TIFF 6.0 image file directories."""
    at = 2
    while at + 4 <= len(head) and head[at] == 0xFF:
        marker, length = head[at + 1], struct.unpack(">H", head[at + 2:at + 4])[0]
        if marker == 0xE1 and head[at + 4:at + 10] == b"Exif\x00\x00":
            tiff = at + 10
            order = {b"II": "<", b"MM": ">"}.get(head[tiff:tiff + 2])
            if order is None or tiff + 8 > len(head):
                return 1
            ifd = tiff + struct.unpack(order + "I", head[tiff + 4:tiff + 8])[0]
            if ifd + 2 > len(head):
                return 1
            for i in range(struct.unpack(order + "H", head[ifd:ifd + 2])[0]):
                e = ifd + 2 + 12 * i
                if e + 12 > len(head):
                    return 1
                if struct.unpack(order + "H", head[e:e + 2])[0] == 0x0112:
                    return struct.unpack(order + "H", head[e + 8:e + 10])[0]
            return 1
        if marker in (0xDA, 0xD9):  # image data starts: no EXIF block before it
            return 1
        at += 2 + length
    return 1


def _jpeg_orientation(fh, head: bytes) -> int:
    """EXIF orientation of an open JPEG whose first `_HEAD` bytes are `head`: reads more only when an APP1 block
    starts the file or follows its JFIF APP0 (cameras and phones write it there)."""
    for at in (2, 4 + struct.unpack(">H", head[4:6])[0] if head[2:4] == b"\xff\xe0" else None):
        if at is not None and at + 4 <= len(head) and head[at:at + 2] == b"\xff\xe1":
            fh.seek(0)
            return exif_orientation(fh.read(at + 4 + _EXIF_MAX))
    return 1


def check_image_file(path: str, size: Optional[int] = None, orientation: Optional[List[int]] = None) -> Optional[str]:
    """None if `path` looks decodable, else a short reason ('empty file (0 bytes)', ...). `orientation`, when
    given, gets the JPEG's EXIF orientation appended (1 for other formats)."""
    if not path.lower().endswith(IMG_EXTENSIONS):
        return "not an image file (extension)"
    if size is None:
        size = os.path.getsize(path)
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
            if not head.startswith(_SIGNATURES) or (head.startswith(b"RIFF") and head[8:12] != b"WEBP"):
                return "not an image (unknown file header)"
            if head.startswith(b"\xff\xd8\xff"):
                marker = b"\xff\xd9"
                if orientation is not None:
                    orientation.append(_jpeg_orientation(fh, head))
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


def scan_class_folder(folder: str, rotated: Optional[List[str]] = None) -> Tuple[int, List[Tuple[str, str]]]:
    """(number of good images, [(path, reason), ...] for the entries that would break the pipeline: files it
    cannot decode and entries that are not files). `rotated`, when given, gets the paths of JPEGs whose EXIF
    orientation is not 1."""
    good = 0
    bad: List[Tuple[str, str]] = []
    with os.scandir(folder) as it:
        for entry in it:
            kind = non_file_reason(entry)
            if kind is not None:
                bad.append((entry.path, f"{kind}{_NOT_A_FILE}"))
                continue
            try:
                size = entry.stat().st_size
            except OSError as e:
                bad.append((entry.path, f"unreadable ({e.strerror or e})"))
                continue
            orientation: List[int] = []
            reason = check_image_file(entry.path, size, orientation)
            if reason is None:
                good += 1
                if rotated is not None and orientation and orientation[0] != 1:
                    rotated.append(entry.path)
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
    if any(_NOT_A_FILE in reason for _, reason in bad):
        lines.append(f"Folders and other non-files inside class folders are read as images too: "
                     f"`find {root} -mindepth 2 ! -type f` lists them all.")
    return "\n".join(lines)
