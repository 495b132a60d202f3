"""Stopping cleanly when a scheduler asks: SLURM, Kubernetes and ModelArts send SIGTERM before they kill a job,
SLURM's `--signal` sends SIGUSR1 (or what it names) ahead of the time limit.

On the first such signal the loop finishes the step in flight, saves a mid-epoch checkpoint (atomically, as
every save), writes a `stopped:` line to train.log and summary.json and exits with 128 + the signal number
(143 for SIGTERM, 138 for SIGUSR1). A rerun with the same --output_dir resumes at that batch, bitwise as after
`max_steps`. A second signal exits at once, without saving.

Under msrun the ranks must stop after the same step (the checkpoint is rank 0's, and a rank that stops alone
leaves the others waiting in their next gradient all-reduce). A signal may reach one rank only (a scheduler
signalling the launcher's process group reaches all; `kill PID` one). So every `check_every` steps each rank
all-reduces which signals it has seen, and all stop when any has: the check happens at the same step numbers on
every rank, so they agree without a leader. The all-reduce is a host-side sync, so it is not done every step:
10 steps bounds both its cost and the delay (a few seconds of training at ImageNet speeds, inside SLURM's and
Kubernetes' default grace of 30 s or more). One process checks its own flag at every step (free).
"""
import os
import signal
import threading
from typing import Optional

import numpy as np

STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)
CHECK_EVERY = 10  # steps between the ranks' agreements under msrun (see the module docstring)


def exit_code(signum: int) -> int:
    """The exit code of a run stopped by `signum`: the shell's convention for "ended by signal N"."""
    return 128 + int(signum)


class StopRequest:
    """Records the first stop signal; `due(step)` says whether the loop should stop after `step`.

    `size` > 1: the ranks agree through `allreduce` (a function summing a host array over ranks) every
    `check_every` steps. Handlers are installed by `install()` (main thread only: elsewhere Python cannot) and
    the previous ones put back by `uninstall()`."""

    def __init__(self, size: int = 1, check_every: int = CHECK_EVERY, allreduce=None) -> None:
        self.size = size
        self.check_every = max(1, check_every) if size > 1 else 1
        self.allreduce = allreduce
        self.signum: Optional[int] = None  # the signal that stops the run (seen here or on another rank)
        self._previous = {}

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s in STOP_SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)

    def uninstall(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:  # os.write: a logging call could wait on a lock the interrupted code holds
            os.write(2, f"\n{name} again: exiting now without saving (exit {exit_code(signum)})\n".encode())
            os._exit(exit_code(signum))
        self.signum = signum
        os.write(2, f"\n{name} received: finishing the current step, then saving a checkpoint and exiting "
                    f"(send it again to exit at once)\n".encode())

    def due(self, step: int) -> bool:
        if self.size <= 1:
            return self.signum is not None
        if step % self.check_every:
            return False
        seen = np.array([float(self.signum == s) for s in STOP_SIGNALS])
        total = self.allreduce(seen)
        if self.signum is None and total.any():  # another rank was signalled
            self.signum = STOP_SIGNALS[int(np.argmax(total > 0))]
        return bool(total.any())
