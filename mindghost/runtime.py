"""Device, execution mode and process setup; the CPU environment is prepared before MindSpore is imported.

`import mindghost` already applies the CPU environment (`apply_cpu_environment`) when MindSpore is not loaded yet;
entry points then call `prepare_environment(device)` (a re-check for an explicit device) and `setup_context(...)`.
All are idempotent.
"""
import errno
import glob
import logging
import os
import shutil
import sys
import traceback
import warnings
from typing import Tuple

from .errors import USER_ERRORS, DeviceError

_LOG = logging.getLogger("mindghost")


def _ascend_signs() -> str:
    return ", ".join(glob.glob("/dev/davinci[0-9]*")[:1] + (["npu-smi"] if shutil.which("npu-smi") else []))


def _gpu_signs() -> str:
    return ", ".join(glob.glob("/dev/nvidia[0-9]*")[:1] + (["nvidia-smi"] if shutil.which("nvidia-smi") else []))


def choose_device(device: str = "auto") -> Tuple[str, str]:
    """(device, why) without importing MindSpore. 'auto': Ascend if an NPU is visible (/dev/davinci*, npu-smi),
    else GPU (/dev/nvidia*, nvidia-smi), else CPU. An explicit Ascend or GPU that is not visible is a DeviceError
    (MindSpore would fail later with a less clear message, or a recipe would silently run elsewhere)."""
    ascend, gpu = _ascend_signs(), _gpu_signs()
    no_ascend = "no Ascend device found (no /dev/davinci*, no npu-smi)"
    no_gpu = "no GPU found (no /dev/nvidia*, no nvidia-smi)"
    if device == "auto":
        if ascend:
            return "Ascend", f"device auto: Ascend found ({ascend}); running on Ascend"
        if gpu:
            return "GPU", f"device auto: {no_ascend}; GPU found ({gpu}); running on GPU"
        return "CPU", f"device auto: {no_ascend}, {no_gpu}; running on CPU"
    missing = {"Ascend": (ascend, no_ascend, "the Ascend driver and CANN"),
               "GPU": (gpu, no_gpu, "the NVIDIA driver and CUDA")}.get(device)
    if missing is not None and not missing[0]:
        raise DeviceError(f"device {device} was requested (--device or the recipe's device) but {missing[1]} on "
                          f"this machine. Pass --device CPU (or --device auto), or run where {missing[2]} are "
                          "installed.")
    return device, f"device {device} (as requested)"


def detect_device(device: str = "auto") -> str:
    """Resolve 'auto' without importing MindSpore: Ascend if an NPU is visible, else GPU, else CPU."""
    return choose_device(device)[0]


def num_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def local_world_size() -> int:
    """Processes on this machine (msrun sets MS_LOCAL_WORKER / LOCAL_RANK_SIZE style variables)."""
    for key in ("MS_LOCAL_WORKER", "LOCAL_RANK_SIZE", "RANK_SIZE", "MS_WORKER_NUM"):
        if os.environ.get(key, "").isdigit():
            return max(1, int(os.environ[key]))
    return 1


ISA_VAR = "ONEDNN_MAX_CPU_ISA"
_ISA_SET_NOTE = f"CPU: set {ISA_VAR}=AVX2 (MindSpore's oneDNN is several times slower with AVX-512 here)"
_ISA_LATE_NOTE = (f"mindspore was imported before mindghost: {ISA_VAR}=AVX2 could not be applied, so on AVX-512 CPUs "
                  f"oneDNN runs its slow reference convolutions (~2-7x slower); import mindghost before mindspore, or "
                  f"set {ISA_VAR}=AVX2 in the environment yourself")
_ENV_STATE = {}  # "isa_set": mindghost set the ISA cap; "warned": the late-import warning was given


def apply_cpu_environment(device: str = "auto") -> str:
    """Set the process environment MindSpore reads when it is imported; returns a note for the log ("" if none).

    Always `GLOG_v=3` unless set (MindSpore's C++ warnings otherwise flood the console). When `device` (resolved
    by `detect_device`) is CPU and the user did not set `ONEDNN_MAX_CPU_ISA`: `AVX2`, because MindSpore's bundled
    oneDNN runs a naive reference kernel for every k>1 convolution on AVX-512 machines (~3-7x slower for GhostNet;
    outputs change only at rounding level). If MindSpore is already imported it is too late: one RuntimeWarning
    (once per process) says so and how to fix it; the entry points also log the returned note.
    """
    os.environ.setdefault("GLOG_v", "3")
    if detect_device(device) != "CPU":
        return ""
    if _ENV_STATE.get("isa_set"):
        return _ISA_SET_NOTE
    if ISA_VAR in os.environ:
        return ""  # the user's choice is respected
    if "mindspore" not in sys.modules:
        os.environ[ISA_VAR] = "AVX2"
        _ENV_STATE["isa_set"] = True
        return _ISA_SET_NOTE
    if not _ENV_STATE.get("warned"):
        _ENV_STATE["warned"] = True  # a warning, not also a log record: a script without logging set up saw it twice
        warnings.warn(_ISA_LATE_NOTE, RuntimeWarning, stacklevel=3)
    return _ISA_LATE_NOTE


def prepare_environment(device: str) -> Tuple[str, str]:
    """The entry points' first call: (resolved device, note for the log). `import mindghost` has normally done
    the work already (see `apply_cpu_environment`); this re-checks for an explicit `device`."""
    device = detect_device(device)
    return device, apply_cpu_environment(device)


def setup_context(device: str, mode: str = "graph", deterministic: bool = False, seed: int = 42,
                  cpu_threads: int = 0) -> None:
    """Select the device, execution mode ("graph" or "pynative"), seed, determinism and CPU kernel threads
    (`cpu_threads` 0: the cores per local rank), with the current MindSpore API (older calls as fallback).

    Every entry point calls it: train.py, validate.py and the tools. The device, determinism and thread count are
    set once per process (MindSpore fixes them at the first kernel); a later call, e.g. a tool run in-process
    after other MindSpore work, only changes the mode and the seed."""
    import mindspore as ms

    if hasattr(ms, "set_device"):  # MindSpore >= 2.5
        _once("device", lambda: ms.set_device(device))
    else:
        _once("device", lambda: ms.set_context(device_target=device))
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    ms.set_seed(seed)
    if deterministic:
        if hasattr(ms, "set_deterministic"):
            _once("deterministic", lambda: ms.set_deterministic(True))
        else:
            ms.set_context(deterministic="ON")
    if device == "CPU":
        threads = cpu_threads or max(1, num_cores() // local_world_size())
        os.environ.setdefault("MINDGHOST_KERNEL_THREADS", str(threads))  # read by cpu/csrc/depthwise.cc
        try:
            from mindspore.device_context.cpu.op_tuning import threads_num  # MindSpore >= 2.5

            _once("threads", lambda: threads_num(threads))
        except ImportError:
            _once("threads", lambda: ms.set_context(runtime_num_threads=threads))


_DONE = {}


def _once(key: str, fn) -> None:
    """MindSpore >= 2.5 refuses to set the device, determinism or threads twice in one process (tests call
    train.main repeatedly): the first call wins."""
    if key not in _DONE:
        try:
            fn()
        except RuntimeError as e:  # set earlier in this process (e.g. by MindSpore itself after a kernel ran)
            if "initialized" not in str(e) and "already" not in str(e):
                raise
            _LOG.debug(f"{key}: {e}")
        _DONE[key] = True


def quiet_cell_teardown() -> None:
    """Silence MindSpore 2.10's exit noise in users' own scripts: at interpreter shutdown `Cell.__del__` runs after
    its module's globals are cleared and prints `Exception ignored ... 'NoneType' object has no attribute
    'total_instance_count'` once per live cell (hundreds for one model). Errors of `Cell.__del__` are dropped
    only while the interpreter is finalizing; before that they propagate as before. Idempotent; called when
    `mindghost.models` is imported (entry points also leave through `run_main`, which never reaches that stage)."""
    from mindspore import nn

    original = nn.Cell.__del__
    if getattr(original, "_mindghost_quiet", False):
        return

    def __del__(self, _original=original, _finalizing=sys.is_finalizing):  # defaults: bound before teardown
        try:
            _original(self)
        except Exception:
            if not _finalizing():
                raise

    __del__._mindghost_quiet = True
    nn.Cell.__del__ = __del__


# OSErrors that the user causes and can fix: a missing or existing path, permissions, a full or read-only disk.
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
_USER_ERRNOS = frozenset((errno.ENOENT, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
                          errno.ENAMETOOLONG, errno.ENOSPC, errno.EDQUOT, errno.EROFS))


def _is_user_error(e: BaseException) -> bool:
    """One of mindghost's user error classes (`errors.USER_ERRORS`: ConfigError, DataError, CheckpointError,
    UsageError, CheckpointSaveError, TrainingDiverged, ...) or an OSError the user caused (by class or errno).

    A bare ValueError is not a user error: it comes from our own code's assertions or from inside MindSpore or
    MindCV, and its traceback is what a bug report needs. Code that refuses user input raises our classes."""
    if isinstance(e, _USER_OS_ERRORS):
        return True
    if isinstance(e, USER_ERRORS):
        return True
    return isinstance(e, OSError) and e.errno in _USER_ERRNOS


def _to_log_files(line: str) -> None:
    """The failure, also in the run's train.log (only file handlers: the console already has it)."""
    for h in logging.getLogger("mindghost").handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(logging.LogRecord("mindghost", logging.ERROR, __file__, 0, line, None, None))


def run_main(main, argv) -> None:
    """Run an entry point. A user error (`_is_user_error`) prints one `error: ...` line and exits 2; any other
    RuntimeError or OSError (e.g. from inside MindSpore) prints its traceback, then the same line, and exits 1.

    The process ends with os._exit after flushing: MindSpore 2.10 otherwise prints `Exception ignored in
    Cell.__del__ ... total_instance_count` for every cell still alive at interpreter shutdown. msrun workers
    are the exception (see the end).
    """
    code = 0
    try:
        result = main(argv)
        code = result if isinstance(result, int) else 0  # a main that returns an int sets the exit code
    except SystemExit as e:  # argparse, or `raise SystemExit("error: ...")`
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:  # what the interpreter would do: print the message, exit 1
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        print("interrupted: rerun with the same --output_dir (or --resume RUN_DIR/checkpoints/last.ckpt) to continue "
              "from the last saved checkpoint", file=sys.stderr)
        code = 130
    except (ValueError, OSError, RuntimeError) as e:
        if _is_user_error(e):
            if os.environ.get("MINDGHOST_TRACEBACK"):
                raise
            print(f"error: {e}", file=sys.stderr)
            print("(set MINDGHOST_TRACEBACK=1 to see the traceback)", file=sys.stderr)
            _to_log_files(f"error: {e}")
            code = 2
        else:  # not the user's doing (e.g. a MindSpore crash): the traceback is what a bug report needs
            traceback.print_exc()
            first_line = next((line for line in str(e).splitlines() if line.strip()), "")
            print(f"error: {type(e).__name__}: {first_line} (an internal error; traceback above)", file=sys.stderr)
            _to_log_files(f"error: {type(e).__name__}: {e}\n{traceback.format_exc()}")
            code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    if "MS_ROLE" in os.environ:
        # an msrun worker must leave through the interpreter's normal exit, which deregisters it from the
        # cluster; after os._exit the scheduler counts it as timed out and msrun fails the finished job
        sys.exit(code)
    os._exit(code)
