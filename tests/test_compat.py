"""mindghost.compat, the MindSpore version branches: each newer call is used where it exists, each older fallback
is called correctly when the newer call is hidden (no CI stage has a MindSpore < 2.5; see the compat docstring),
and every module imports on the running Python + MindSpore (the older-stack stage's first check)."""
import importlib
import pkgutil
import sys

import pytest

import mindspore as ms

import mindghost
from mindghost import compat

pytestmark = pytest.mark.stack


def test_every_mindghost_module_imports():
    names = [m.name for m in pkgutil.walk_packages(mindghost.__path__, "mindghost.")]
    assert "mindghost.compat" in names and "mindghost.models.ghostnet" in names
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - the test reports every failing module at once
            failed[name] = f"{type(e).__name__}: {e}"
    assert not failed, failed


def test_version_is_read_and_an_older_one_is_refused_naming_the_version(monkeypatch):
    assert compat.mindspore_version()[:2] >= (2, 3)
    for text, parsed in (("2.7.0", (2, 7, 0)), ("2.7.1.post1", (2, 7, 1)), ("2.10.0rc1", (2, 10, 0)),
                         ("2.3", (2, 3, 0))):
        monkeypatch.setattr(ms, "__version__", text)
        assert compat.mindspore_version() == parsed
    monkeypatch.setattr(ms, "__version__", "2.4.1")
    with pytest.raises(RuntimeError, match=r"folding X needs MindSpore >= 2\.5; this is MindSpore 2\.4\.1"):
        compat.require((2, 5), "folding X")
    compat.require((2, 4), "folding X")


class _Calls:
    def __init__(self):
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))


def test_newer_calls_are_used_where_they_exist(monkeypatch):
    if not hasattr(ms, "set_device"):
        pytest.skip(f"MindSpore {ms.__version__} has no set_device (< 2.5)")
    set_device, set_deterministic, set_context = _Calls(), _Calls(), _Calls()
    monkeypatch.setattr(ms, "set_device", set_device)
    monkeypatch.setattr(ms, "set_deterministic", set_deterministic)
    monkeypatch.setattr(ms, "set_context", set_context)
    compat.set_device("CPU")
    compat.set_deterministic()
    assert set_device.calls == [(("CPU",), {})] and set_deterministic.calls == [((True,), {})]
    assert set_context.calls == []
    from mindspore.device_context.cpu import op_tuning

    threads_num = _Calls()
    monkeypatch.setattr(op_tuning, "threads_num", threads_num)
    compat.set_cpu_threads(3)
    assert threads_num.calls == [((3,), {})] and set_context.calls == []


def test_older_calls_are_used_when_the_newer_are_missing(monkeypatch):
    """What MindSpore 2.3 / 2.4 gets: no CI stage runs them, so our side of each branch is checked here."""
    set_context = _Calls()
    monkeypatch.delattr(ms, "set_device", raising=False)
    monkeypatch.delattr(ms, "set_deterministic", raising=False)
    monkeypatch.setattr(ms, "set_context", set_context)
    monkeypatch.setitem(sys.modules, "mindspore.device_context.cpu.op_tuning", None)  # import raises ImportError
    compat.set_device("CPU")
    compat.set_deterministic()
    compat.set_cpu_threads(3)
    assert set_context.calls == [((), {"device_target": "CPU"}), ((), {"deterministic": "ON"}),
                                 ((), {"runtime_num_threads": 3})]
