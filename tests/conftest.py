"""Test session setup: the CPU fast path (before MindSpore loads), repo root on sys.path, mode reset."""
import os
import sys

# oneDNN reads this when MindSpore loads it: limit to AVX2 to avoid its slow reference convolutions on
# AVX-512 CPUs (see docs/performance.md). Outputs change only at rounding level; users' runs do the same.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402

import mindspore as ms  # noqa: E402


@pytest.fixture(autouse=True)
def _pynative_by_default():
    """Each test starts in PyNative mode; GRAPH tests switch explicitly (and are put back afterwards)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)
