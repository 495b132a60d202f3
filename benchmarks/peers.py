"""Benchmark peers that cannot share the benchmark's process: each runs in a persistent child
(benchmarks/worker.py) asked for one timed call at a time, so that its calls interleave with the in-process
implementations of `mindghost.tools.benchmark`."""
import json
import os
import select
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

SUBPROCESS_PEERS = ("shipped", "shipped_mindghost", "torch", "torch_cl")
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")


class PeerError(RuntimeError):
    pass


class SubprocessPeer:
    """A peer in a persistent child process (benchmarks/worker.py), started once and asked for one
    measurement at a time, so that its calls interleave with the in-process implementations.

    `argv` are the worker's arguments, `python` its interpreter, `env` its environment. The child's stderr
    (library noise) goes to a temporary log whose tail is quoted when the child fails.
    """

    def __init__(self, name: str, python: str, argv: Sequence[str], env: Optional[Dict[str, str]] = None,
                 timeout_s: float = 900.0) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([python, WORKER] + list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=env, text=True, bufsize=1)
        try:
            self.info = self._receive()["info"]
        except PeerError:
            self.close()
            raise

    def _receive(self) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            why = f"gave no reply within {self.timeout_s:.0f} s" if not ready else "exited"
            raise PeerError(f"{self.name}: child {why}{self._log_tail()}")
        message = json.loads(line)
        if not message.get("ok"):
            raise PeerError(f"{self.name}: {message.get('error')}")
        return message

    def _log_tail(self, chars: int = 1500) -> str:
        try:
            self.log.seek(0)
            text = self.log.read().strip()
        except (OSError, ValueError):
            return ""
        return f"; its stderr ends:\n{text[-chars:]}" if text else ""

    def run(self, task: str, count: int = 1) -> List[float]:
        """`count` timed calls of `task` in the child (timed there, so the pipe is not counted)."""
        if self.proc.poll() is not None:
            raise PeerError(f"{self.name}: child has exited")
        self.proc.stdin.write(f"run {task} {count}\n")
        self.proc.stdin.flush()
        return self._receive()["times_s"]

    def runner(self, task: str):
        return lambda count: self.run(task, count)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start_subprocess_peers(peers: Sequence[str], model: str, img_size: int, batch: int, num_classes: int,
                           threads: int, device: str, torch_python: str,
                           torch_env: Optional[Dict[str, str]] = None,
                           user_isa: bool = False) -> Dict[str, SubprocessPeer]:
    """Start the children of the requested subprocess peers; a peer that cannot start raises PeerError.

    - `shipped`: MindSpore as a MindCV user gets it: MindCV's model, oneDNN's default ISA (ONEDNN_MAX_CPU_ISA
      removed from the child's environment), MindSpore's default thread count.
    - `shipped_mindghost`: mindghost's model with oneDNN's default ISA (isolates the ISA setting).
    - `torch` / `torch_cl`: timm's model in PyTorch eager (NCHW / channels_last), `threads` threads, run by
      `torch_python`, with `torch_env` added to the environment. PyTorch bundles its own oneDNN, which reads
      ONEDNN_MAX_CPU_ISA too: the torch children keep it only if the user set it (`user_isa`), not mindghost.
    """
    common = ["--model", model, "--image_size", str(img_size), "--batch_size", str(batch), "--num_classes",
              str(num_classes), "--device", device]
    shipped_env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    torch_env = dict(os.environ if user_isa else shipped_env, **(torch_env or {}))
    specs = {
        "shipped": (sys.executable, ["--framework", "mindspore", "--source", "mindcv", "--cpu_threads", "0"],
                    shipped_env),
        "shipped_mindghost": (sys.executable, ["--framework", "mindspore", "--source", "mindghost",
                                               "--cpu_threads", str(threads)], shipped_env),
        "torch": (torch_python, ["--framework", "torch", "--source", "timm", "--cpu_threads", str(threads)], torch_env),
        "torch_cl": (torch_python, ["--framework", "torch", "--source", "timm", "--cpu_threads", str(threads),
                                    "--channels_last", "true"], torch_env),
    }
    started: Dict[str, SubprocessPeer] = {}
    try:
        for name in peers:
            python, argv, env = specs[name]
            if name.startswith("torch") and not torch_python:
                raise PeerError(f"{name}: needs --torch_python (an interpreter with torch and timm)")
            if name.startswith("torch") and not os.path.exists(torch_python):
                raise PeerError(f"{name}: --torch_python {torch_python} does not exist")
            started[name] = SubprocessPeer(name, python, argv + common, env)
    except PeerError:
        for peer in started.values():
            peer.close()
        raise
    return started


