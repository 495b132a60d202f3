"""The import graph of mindghost's packages has no cycle (read statically with ast, function-level imports too).

Nodes are the first-level parts of mindghost (models, weights, cpu, convert, training, tools, data, runtime, ...);
an edge A → B means some module of A imports B. A cycle (such as models ↔ convert once was) means neither part
can be understood, tested or moved without the other."""
import ast
import os
from typing import Dict, List, Set

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mindghost")


def _part(module: str) -> str:
    """'mindghost.models.layers' → 'models'; the package root itself → ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: str, module: str, is_package: bool) -> Set[str]:
    """Fully qualified mindghost modules (or names inside them) that the file at `path` imports."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "mindghost")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mindghost":
                continue
            # `from mindghost import runtime` imports the part `runtime`; `from .. import __version__` the root
            found.update(f"{target}.{a.name}" if target == "mindghost" else target for a in node.names)
    return found


def package_graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), os.path.dirname(PACKAGE))[: -len(".py")]
            is_package = name == "__init__.py"
            module = rel.replace(os.sep, ".")
            if is_package:
                module = module[: -len(".__init__")]
            source = _part(module)
            if not source:
                continue  # the root __init__ only applies the environment and re-exports lazily
            for target in _imports(os.path.join(folder, name), module, is_package):
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


def test_graph_is_read():
    graph = package_graph()
    assert "weights" in graph.get("models", set()) and "weights" in graph.get("convert", set())


def test_no_import_cycle_between_parts():
    cycle = _find_cycle(package_graph())
    assert not cycle, "import cycle: " + " → ".join(cycle)


def test_detects_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_weights_imports_no_other_part():
    """weights is imported by models, training and convert: it may use only the error classes, a leaf module."""
    graph = package_graph()
    assert graph.get("weights", set()) <= {"errors"}
    assert graph.get("errors", set()) == set()
