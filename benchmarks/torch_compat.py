"""Import timm where torchvision is broken. Imports neither MindSpore nor mindghost: torch-only interpreters
(the benchmark's torch child benchmarks/worker.py, scripts/make_parity_fixtures.py) load it."""
import importlib.abc
import importlib.machinery
import sys
import types

__all__ = ["import_timm"]


class _StubType(type):
    """Any attribute of a stub is another stub class (timm reads e.g. `InterpolationMode.NEAREST` at import)."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubType(name, (), {})


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubType(name, (), {})


class _TorchvisionStub(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Stands in for every `torchvision.*` module."""

    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def import_timm():
    """timm; if it fails to import, again with an empty stand-in for torchvision.

    timm imports torchvision at load time but GhostNet uses none of it, and the torchvision wheels beside a
    CPU-only torch are CUDA builds that fail to load. The fallback is announced on stdout.
    """
    try:
        import timm
    except (ImportError, RuntimeError, OSError) as e:
        print(f"timm did not import ({type(e).__name__}: {e}); retrying with a torchvision stub")
        for name in [n for n in sys.modules if n == "timm" or n.startswith(("timm.", "torchvision"))]:
            del sys.modules[name]
        sys.meta_path.insert(0, _TorchvisionStub())
        import timm
    return timm
