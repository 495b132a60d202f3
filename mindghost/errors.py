"""Errors a user causes by what they ask for, outside config, data and checkpoints (those have their own
classes: `ConfigError`, `DataError`, `CheckpointError`). `runtime.run_main` prints these as one `error:` line
and exits 2; every other exception keeps its traceback."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model; the message says what to do.

    Defined here, free of MindSpore, so that `mindghost.hub.PretrainedError` (imported before MindSpore) derives
    from it; `mindghost.weights` and `mindghost.models` re-export it."""


class UsageError(ValueError):
    """An argument names something that does not exist or cannot work here (an unknown model name, a layer the
    model lacks, a file without the expected content). The message names the argument and the fix."""



class TrainingPreempted(SystemExit):
    """train.py stopped on SIGTERM/SIGUSR1 after saving a mid-epoch checkpoint (`training.preempt`). A SystemExit,
    so `runtime.run_main` exits with its `code` (128 + the signal number: 143 for SIGTERM, 138 for SIGUSR1);
    `summary` is what summary.json records (`stopped`, the checkpoint to resume from)."""

    def __init__(self, code: int, summary: dict) -> None:
        super().__init__(code)
        self.summary = summary
