"""The `mindghost` logger of the entry points: console lines on every rank (warnings only off rank 0), and
`train.log` in the run directory once it exists.

Lines logged before the run directory is created (device choice, data checks) are kept in memory and written
to `train.log` first when it is attached, so the file holds the whole story of the run.
"""
import logging
import sys
from typing import List, Optional

LOG = logging.getLogger("mindghost")
_FILE_FORMAT = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")


class _TqdmHandler(logging.StreamHandler):
    """Console log lines that do not break a running tqdm bar."""

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover
            super().emit(record)


class _Backlog(logging.Handler):
    """Holds the records logged before train.log exists."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: List[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def show_progress_bars(requested: bool, is_main: bool) -> bool:
    """tqdm bars only where someone watches them: rank 0, and stderr is a terminal (a redirected log would fill
    with carriage-return frames; plain log lines are written there instead)."""
    return requested and is_main and sys.stderr.isatty()


def setup_logging(is_main: bool = True) -> logging.Logger:
    """Console handler (INFO on rank 0, WARNING elsewhere) and a backlog for `attach_log_file`."""
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    for h in list(LOG.handlers):
        LOG.removeHandler(h)
        h.close()
    console = _TqdmHandler() if is_main else logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    console.setLevel(logging.INFO if is_main else logging.WARNING)
    LOG.addHandler(console)
    if is_main:
        LOG.addHandler(_Backlog())
    return LOG


def attach_log_file(path: Optional[str]) -> None:
    """Write the log to `path` from now on, starting with what was logged before (rank 0 only: others pass None)."""
    backlog = [h for h in LOG.handlers if isinstance(h, _Backlog)]
    for h in backlog:
        LOG.removeHandler(h)
    if not path:
        return
    fh = logging.FileHandler(path)
    fh.setFormatter(_FILE_FORMAT)
    for h in backlog:
        for record in h.records:
            fh.handle(record)
    LOG.addHandler(fh)
