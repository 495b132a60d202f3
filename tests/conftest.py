"""Test session setup: the CPU fast path (before MindSpore loads), mode reset, and the shared fixtures.

`pyproject.toml` puts the repo root and tests/ on the path (`pythonpath`), so tests import `mindghost` and the
helper modules (`_tiny_data`, `_loopback`, `parity_recipe`) by name. Markers (`slow`, `distributed`, `stack`)
are declared there; `stack` is the fast tier run on the older stack (scripts/test.sh --stack py39).
"""
import os

# oneDNN reads this when MindSpore loads it: limit to AVX2 to avoid its slow reference convolutions on
# AVX-512 CPUs (see docs/performance.md). Outputs change only at rounding level; users' runs do the same.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

import pytest  # noqa: E402
from _tiny_data import load_entry_point, write_tiny_imagefolder  # noqa: E402

import mindspore as ms  # noqa: E402


@pytest.fixture(autouse=True)
def _pynative_by_default():
    """Each test starts in PyNative mode; GRAPH tests switch explicitly (and are put back afterwards)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny ImageFolder tree: 3 classes, 8 train / 5 val RGB images each at 32 px (`write_tiny_imagefolder`)."""
    return write_tiny_imagefolder(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def tiny12(tmp_path_factory):
    """3 classes x 4 train images (3 steps of 4 per epoch), 2 val each: the runs that are killed and resumed."""
    return write_tiny_imagefolder(str(tmp_path_factory.mktemp("tiny12")), train_per_class=4, val_per_class=2)


@pytest.fixture(scope="module")
def train_mod():
    """train.py as a module: `train_mod.main(argv)` runs it in process and returns the run's summary."""
    return load_entry_point("train")


@pytest.fixture(scope="module")
def validate_mod():
    """validate.py as a module: `validate_mod.main(argv)` returns the result dict."""
    return load_entry_point("validate")


# ---- every test that compiles a MindSpore graph is marked slow (pyproject: markers). Counted in this process:
# a graph-mode call of a Cell and every export go through the graph executor's compile (cache hits included);
# graphs compiled by a child process (msrun, a subprocess of train.py) are not seen here.
_GRAPH_COMPILES = [0]


def _count_graph_compiles() -> None:
    from mindspore.common import api

    executor = getattr(api, "_CellGraphExecutor", None)  # private; present in MindSpore 2.3 - 2.10
    if executor is None or getattr(executor.compile, "_mindghost_counted", False):
        return
    compile_graph = executor.compile

    def counted(self, *args, **kwargs):
        _GRAPH_COMPILES[0] += 1
        return compile_graph(self, *args, **kwargs)

    counted._mindghost_counted = True
    executor.compile = counted


_count_graph_compiles()
_COMPILES_BEFORE = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[_COMPILES_BEFORE] = _GRAPH_COMPILES[0]  # before the fixtures: a module fixture's run counts


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.passed or item.get_closest_marker("slow"):
        return
    compiles = _GRAPH_COMPILES[0] - item.stash.get(_COMPILES_BEFORE, _GRAPH_COMPILES[0])
    if compiles:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} compiled a MindSpore graph ({compiles} graph-mode calls or exports, its "
                           "fixtures included) but is not marked slow: add @pytest.mark.slow (and keep it small)")
