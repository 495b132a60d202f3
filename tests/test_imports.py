"""mindghost's import graph has no cycle, read statically with ast (function-level imports too).

Two graphs. Between modules: a node per file (`mindghost.models._registry`, a package is its `__init__`), an edge
A → B when A imports B anywhere in its text, relative imports resolved, `from pkg import mod` pointing at the module
`pkg.mod`. A cycle there (such as _registry → _features → ghostnetv3 → _registry once was, through function-level
imports) means none of its files can be read, tested or moved alone, and only import order keeps it working.
Between parts: the first-level parts of mindghost (models, weights, cpu, convert, training, tools, data, runtime,
...), an edge when some module of A imports B (models ↔ convert once was a cycle there).
"""
import ast
import os
from typing import Dict, List, Set

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mindghost")


def _modules(package_dir: str) -> Dict[str, str]:
    """{dotted module name: file path} of every .py file under `package_dir` (a package by its `__init__`)."""
    root = os.path.dirname(package_dir)
    found = {}
    for folder, _, files in os.walk(package_dir):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), root)[: -len(".py")].replace(os.sep, ".")
                found[rel[: -len(".__init__")] if name == "__init__.py" else rel] = os.path.join(folder, name)
    return found


def _imports(path: str, module: str, is_package: bool, known: Set[str]) -> Set[str]:
    """The modules of `known` that the file at `path` (module `module`) imports, at any level of its code."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known)
    return found


def module_graph(package_dir: str = PACKAGE) -> Dict[str, Set[str]]:
    """{module: modules it imports}, over every module of the package (self-imports left out)."""
    modules = _modules(package_dir)
    known = set(modules)
    graph = {}
    for module, path in modules.items():
        is_package = os.path.basename(path) == "__init__.py"
        graph[module] = _imports(path, module, is_package, known) - {module}
    return graph


def _part(module: str) -> str:
    """'mindghost.models.layers' → 'models'; the package root itself → ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def package_graph(package_dir: str = PACKAGE) -> Dict[str, Set[str]]:
    """{part: parts it imports}; the root `__init__` (environment and lazy re-exports only) is left out."""
    graph: Dict[str, Set[str]] = {}
    for module, targets in module_graph(package_dir).items():
        source = _part(module)
        if not source:
            continue
        for target in targets:
            dest = _part(target)
            if dest and dest != source and not dest.startswith("__"):
                graph.setdefault(source, set()).add(dest)
    return graph


def _find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_graphs_are_read():
    modules = module_graph()
    assert "mindghost.models._registry" in modules["mindghost.models.ghostnet"]
    assert "mindghost.models._features" in modules["mindghost.models._registry"]  # a function-level import
    assert "mindghost.weights.io" in modules["mindghost.weights.load"]  # a relative `from .io import ...`
    assert "mindghost.runtime" in modules["mindghost"]  # `from . import runtime`: the module, not the package
    parts = package_graph()
    assert "weights" in parts.get("models", set()) and "weights" in parts.get("convert", set())


def test_no_import_cycle_between_modules():
    cycle = _find_cycle(module_graph())
    assert not cycle, "import cycle: " + " → ".join(cycle)


def test_no_import_cycle_between_parts():
    cycle = _find_cycle(package_graph())
    assert not cycle, "import cycle: " + " → ".join(cycle)


def test_detects_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_detects_a_cycle_through_function_level_imports(tmp_path):
    """Three files whose circle closes only inside a function body, as _registry → _features → ghostnetv3 did."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("def g():\n    from pkg.a import f\n")
    assert _find_cycle(module_graph(str(pkg))) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_weights_imports_no_other_part():
    """weights is imported by models, training and convert: it may use only the error classes, a leaf module."""
    graph = package_graph()
    assert graph.get("weights", set()) <= {"errors"}
    assert graph.get("errors", set()) == set()


def _exception_classes(path: str) -> List[str]:
    """Names of the classes in a file whose base is an exception (a name ending in Error/Exception, or one of the
    classes defined there already found)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found: List[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in
                     node.bases]
            if any(b.endswith(("Error", "Exception")) or b in found for b in bases):
                found.append(node.name)
    return found


def test_every_public_error_class_lives_in_errors_py():
    """One home for errors: a public exception class defined anywhere else would escape `errors.USER_ERRORS` (what
    `runtime.run_main` prints as one line). Private control-flow exceptions (`_Name`) may stay where they are used."""
    import mindghost.errors as errors

    elsewhere = {module: names for module, path in _modules(PACKAGE).items() if module != "mindghost.errors"
                 for names in [[n for n in _exception_classes(path) if not n.startswith("_")]] if names}
    assert not elsewhere, f"define these in mindghost/errors.py and re-import them: {elsewhere}"
    for name in errors.__all__:
        if name != "USER_ERRORS":
            assert issubclass(getattr(errors, name), errors.USER_ERRORS), name
