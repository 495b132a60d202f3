"""Every error a user causes by what they ask for, in one module (standard library only, imported before MindSpore).

`runtime.run_main` prints any of `USER_ERRORS` as one `error:` line and exits 2; every other exception keeps its
traceback. Each class is also importable from the module that raises it (`from mindghost.training.config import
ConfigError`, `from mindghost.hub import PretrainedError`, ...), so callers need not know this file.

    ValueError ─ CheckpointError ─ PretrainedError, UnsafeCheckpointError
               ├ ConfigError ─ RunCheckError
               ├ DataError ─ BadImageLimit
               ├ ConvertError, DeviceError, UsageError
    RuntimeError ─ CheckpointSaveError, TrainingDiverged, TrainingStalled
"""

__all__ = ["USER_ERRORS", "BadImageLimit", "CheckpointError", "CheckpointSaveError", "ConfigError", "ConvertError",
           "DataError", "DeviceError", "PretrainedError", "RunCheckError", "TrainingDiverged", "TrainingStalled",
           "UnsafeCheckpointError", "UsageError"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model; the message says what to do.

    Raised by `mindghost.weights` (re-exported there and from `mindghost.models`)."""


class PretrainedError(CheckpointError):
    """Pretrained weights that cannot be found, fetched or trusted; the message names the file, URL and the fix.

    A `CheckpointError` (and so a ValueError): callers that handle bad checkpoints handle these too. Raised by
    `mindghost.hub`."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle names a global outside the allowlist; nothing it names has been called (`weights.pth`)."""


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written (disk full, permissions, non-finite weights); earlier ones are intact."""


class ConfigError(ValueError):
    """A recipe or command line that does not fit the schema; the message names the key (`training.config`)."""


class RunCheckError(ConfigError):
    """Several problems with a run's config or data, all listed in the message (`training.plan`)."""


class ConvertError(ValueError):
    """A conversion refused before any weights were read: bad arguments, existing output (`convert`)."""


class DataError(ValueError):
    """A dataset folder that cannot be used; the message says what is wrong and what to do (`data`)."""


class BadImageLimit(DataError):
    """Too many training images failed to decode (`max_bad_images` in a row or in all); the message names them and
    the way out (`mindghost.data.guard`)."""


class DeviceError(ValueError):
    """An explicitly requested device that this machine does not have (`runtime`)."""


class UsageError(ValueError):
    """An argument names something that does not exist or cannot work here (an unknown model name, a layer the
    model lacks, a file without the expected content). The message names the argument and the fix."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the run stopped before saving anything from the diverged state."""


class TrainingStalled(RuntimeError):
    """fp16 gradients overflowed at every step of a stretch, so every update was skipped: the run would train on
    nothing. The message names the loss-scale settings to change."""


# What `runtime.run_main` reports as the user's doing (one line, exit 2). Subclasses count too.
USER_ERRORS = (CheckpointError, CheckpointSaveError, ConfigError, ConvertError, DataError, DeviceError, UsageError,
               TrainingDiverged, TrainingStalled)


class TrainingPreempted(SystemExit):
    """train.py stopped on SIGTERM/SIGUSR1 after saving a mid-epoch checkpoint (`training.preempt`). A SystemExit,
    so `runtime.run_main` exits with its `code` (128 + the signal number: 143 for SIGTERM, 138 for SIGUSR1);
    `summary` is what summary.json records (`stopped`, the checkpoint to resume from)."""

    def __init__(self, code: int, summary: dict) -> None:
        super().__init__(code)
        self.summary = summary
