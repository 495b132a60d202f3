"""Every MindSpore version branch of mindghost, in one place: the code calls these instead of testing versions.

mindghost supports MindSpore >= 2.3 (what Ascend servers run, matched to their CANN). Where a newer MindSpore
replaced a call, the function below uses the newer one when it exists and the older one otherwise; where the
older MindSpore lacks something outright, `require` refuses with the version needed. Nothing here imports
MindSpore at module level: `mindghost.runtime` imports this before MindSpore loads (the CPU environment must
be set first).

CI has two stages (`.ci/run`, `scripts/test.sh`): stage 1 runs the full suite on Python 3.11 + MindSpore 2.10
(requirements.txt), stage 2 the `stack` tier on Python 3.9 + MindSpore 2.7 (requirements-py39.txt). Both are
>= 2.5, so the < 2.5 fallbacks run in no CI stage against a real old MindSpore; tests/test_compat.py runs each
fallback on the CI MindSpore with the newer call hidden (both stages), which checks our side of the branch, not
that the old MindSpore accepts it.

| function              | newer call (since)                 | older call                              | 2.10  | 2.7   |
|-----------------------|------------------------------------|-----------------------------------------|-------|-------|
| `set_device(d)`       | `ms.set_device(d)` (2.5)           | `ms.set_context(device_target=d)`       | newer | newer |
| `set_deterministic()` | `ms.set_deterministic(True)` (2.5) | `ms.set_context(deterministic="ON")`    | newer | newer |
| `set_cpu_threads(n)`  | `threads_num(n)` [1] (2.5)         | `ms.set_context(runtime_num_threads=n)` | newer | newer |

[1] `mindspore.device_context.cpu.op_tuning.threads_num`.

Older-side rows: reached in no CI stage with a real MindSpore < 2.5 (the registry serves none for Python
3.9-3.11); tests/test_compat.py exercises them with the newer call hidden.

Not a version branch, but version-sensitive: `models.ghostnetv3._forget_compiled_graphs` resets the private
`Cell._create_time` (MindSpore keys compiled graphs by it, 2.3 - 2.10); tests/test_ghostnetv3.py checks the
fused graph after `reparameterize()` in stage 1 (not in the fast tier: 3 compiles; passed on 2.7.0 by hand).
"""
import re
from typing import Tuple


def mindspore_version() -> Tuple[int, int, int]:
    """The installed MindSpore's (major, minor, patch); a suffix such as `rc1` or `.post1` is ignored."""
    import mindspore

    parts = [int(re.match(r"\d*", piece).group() or 0) for piece in mindspore.__version__.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def require(version: Tuple[int, int], what: str) -> None:
    """Raise RuntimeError naming `what` and the MindSpore version it needs when the installed one is older."""
    if mindspore_version()[:2] < tuple(version):
        import mindspore

        raise RuntimeError(f"{what} needs MindSpore >= {version[0]}.{version[1]}; this is MindSpore "
                           f"{mindspore.__version__}. Upgrade MindSpore (matched to your CANN on Ascend).")


def set_device(device: str) -> None:
    """Select the device target ("CPU", "GPU", "Ascend"): `ms.set_device` (2.5), else `set_context`."""
    import mindspore as ms

    if hasattr(ms, "set_device"):
        ms.set_device(device)
    else:
        ms.set_context(device_target=device)


def set_deterministic() -> None:
    """Deterministic kernels: `ms.set_deterministic(True)` (2.5), else `set_context(deterministic="ON")`."""
    import mindspore as ms

    if hasattr(ms, "set_deterministic"):
        ms.set_deterministic(True)
    else:
        ms.set_context(deterministic="ON")


def set_cpu_threads(threads: int) -> None:
    """MindSpore's CPU kernel threads: `device_context.cpu.op_tuning.threads_num` (2.5), else
    `set_context(runtime_num_threads=...)`."""
    try:
        from mindspore.device_context.cpu.op_tuning import threads_num
    except ImportError:
        import mindspore as ms

        ms.set_context(runtime_num_threads=threads)
    else:
        threads_num(threads)
